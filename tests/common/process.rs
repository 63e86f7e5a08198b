//! Assertions about finished child processes (initdb, promtool, dpkg, ...).

use std::process::Output;

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
