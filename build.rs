//! Records the git commit certinel is built from, for `certinel --version` and
//! `certinel_build_info`: `CERTINEL_COMMIT` is 12 hex digits, with `-dirty` when the work
//! tree has changes, or `unknown` outside a git checkout (a source tarball, no git).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = commit(&manifest_dir).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CERTINEL_COMMIT={commit}");
}

/// The short commit of the checkout at `manifest_dir`, or `None` when git is missing or the
/// sources are not the top of a git work tree.
fn commit(manifest_dir: &Path) -> Option<String> {
    // A tarball unpacked inside some other repository must not borrow that repository's
    // commit: only a work tree whose top is this package counts.
    let top = git(manifest_dir, &["rev-parse", "--show-toplevel"])?;
    let same_tree = match (Path::new(&top).canonicalize(), manifest_dir.canonicalize()) {
        (Ok(top), Ok(manifest_dir)) => top == manifest_dir,
        _ => false,
    };
    if !same_tree {
        return None;
    }
    watch(manifest_dir);
    let hash = git(manifest_dir, &["rev-parse", "--short=12", "HEAD"])?;
    let status = git(manifest_dir, &["status", "--porcelain"])?;
    Some(if status.is_empty() {
        hash
    } else {
        format!("{hash}-dirty")
    })
}

/// Asks cargo to run this script again when the commit or the index moves. `--git-path`
/// resolves the files of linked work trees too, where `.git` is a file, not a directory.
fn watch(manifest_dir: &Path) {
    let mut watched = vec!["HEAD".to_owned(), "index".to_owned()];
    if let Some(branch) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
        // A branch whose loose ref was packed by `git gc` lives in packed-refs.
        watched.push("packed-refs".to_owned());
    }
    for name in watched {
        if let Some(path) = git(manifest_dir, &["rev-parse", "--git-path", &name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    // Edits to the sources change the `-dirty` mark without touching git's files.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
}

/// The trimmed standard output of `git ARGS` run in `dir`, or `None` when it fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned())
}
