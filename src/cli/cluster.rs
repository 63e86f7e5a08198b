//! `certinel cluster keygen FILE`: write a new key-encryption key for `[cluster]`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::ExitCode;
use crate::store::sealed::Kek;

/// `certinel cluster ...`
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Write a new random key-encryption key to FILE (mode 0600; an existing file is never
    /// replaced) and print its id. Every replica needs the same file, named by
    /// `[cluster] key_encryption_key_file`.
    Keygen {
        /// The key file to create.
        file: PathBuf,
    },
}

/// Runs `certinel cluster ...`.
pub fn run(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClusterCommand::Keygen { file } => keygen(&file),
    }
}

/// Writes the key, prints its id on standard output and what to do next on standard error.
fn keygen(file: &Path) -> anyhow::Result<ExitCode> {
    let id = Kek::generate_file(file).context("cannot write a key-encryption key")?;
    println!("{id}");
    eprintln!(
        "wrote key-encryption key {id} to {} (mode 0600); copy it to every replica over a \
         secure channel and name it in [cluster] key_encryption_key_file",
        file.display()
    );
    Ok(ExitCode(0))
}
