//! `certinel completions SHELL` and `certinel man DIR`: shell completion scripts and roff
//! man pages generated from the clap definitions, so they never disagree with `--help`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{CommandFactory, ValueEnum};

use crate::cli::{Cli, ExitCode};

/// The shells `certinel completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// GNU Bash: `source <(certinel completions bash)`.
    Bash,
    /// Z shell: save as `_certinel` in a directory of `$fpath`.
    Zsh,
    /// fish: save as `certinel.fish` in `~/.config/fish/completions/`.
    Fish,
}

/// Prints the completion script for `shell` on standard output.
pub fn completions(shell: CompletionShell) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    write_completions(shell, &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("write the completion script to standard output")?;
    Ok(ExitCode(0))
}

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(shell: CompletionShell, out: &mut dyn Write) {
    let generator = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command();
    clap_complete::generate(generator, &mut command, "certinel", out);
}

/// Writes the man pages into `dir` (created if missing) and prints one path per line.
pub fn man(dir: &Path) -> anyhow::Result<ExitCode> {
    let pages = write_man_pages(dir)?;
    for page in pages {
        println!("{}", page.display());
    }
    Ok(ExitCode(0))
}

/// Writes `certinel.1` and one page per visible subcommand, nested ones included
/// (`certinel-config-check.1`), into `dir`; returns their paths, parents first.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut command = Cli::command().disable_help_subcommand(true);
    // Building gives every subcommand its display name (`certinel-config-check`), which
    // names its page and its title.
    command.build();
    let mut pages = Vec::new();
    write_page_and_children(command, dir, &mut pages)?;
    Ok(pages)
}

/// Writes the page of `command`, then those of its visible subcommands.
fn write_page_and_children(
    command: clap::Command,
    dir: &Path,
    pages: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(command.clone());
    let path = dir.join(man.get_filename());
    man.generate_to(dir)
        .with_context(|| format!("write {}", path.display()))?;
    pages.push(path);
    for child in command
        .get_subcommands()
        .filter(|child| !child.is_hide_set())
    {
        write_page_and_children(child.clone(), dir, pages)?;
    }
    Ok(())
}
