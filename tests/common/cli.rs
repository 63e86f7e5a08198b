//! Runs the real `certinel` binary for one command with a configuration file and waits
//! for it to finish.

use std::path::Path;
use std::process::Output;

/// `certinel ARGS --config CONFIG`, ready for a test to add environment and run.
pub fn certinel_command(args: &[&str], config: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_certinel"));
    command.args(args).arg("--config").arg(config);
    command
}

/// Runs `certinel ARGS --config CONFIG` to the end.
pub async fn run_certinel(args: &[&str], config: &Path) -> Output {
    certinel_command(args, config)
        .output()
        .await
        .expect("run certinel")
}

/// A command's stdout and stderr, labelled, for assertion messages.
pub fn output_text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
