//! Child processes of the tests (initdb, promtool, knsupdate, dpkg, ...): feeding their
//! standard input and asserting that they succeeded.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Asserts that `output` comes from a successful run of `what`, showing its status, standard
/// output and standard error otherwise.
pub fn assert_succeeded(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes `input` to the piped standard input of `child` (`what` names it in a failure) and
/// closes it, so the child sees the end of its input.
pub fn feed_stdin(child: &mut Child, input: &[u8], what: &str) {
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .unwrap_or_else(|error| panic!("write to {what}: {error}"));
}

/// Writes an executable (0700) shell script `name` in `dir` running `body`; returns its path.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
        .expect("make the script executable");
    path
}

/// Starts `command` (`what` names it in a failure) with no standard input and both output
/// streams appended to `log`.
pub fn spawn_logged(command: &mut Command, log: File, what: &str) -> Child {
    let stdout = log
        .try_clone()
        .unwrap_or_else(|error| panic!("clone the log handle of {what}: {error}"));
    command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| panic!("spawn {what}: {error}"))
}

/// A long-running child (a server a test started), killed and reaped when dropped. Declare
/// it before the directory the child works in, so that the child is gone first.
pub struct KilledOnDrop(pub Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
