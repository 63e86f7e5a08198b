//! The exec DNS provider: `COMMAND present FQDN VALUE` and `COMMAND cleanup FQDN VALUE`,
//! lego's convention, so any DNS provider with a command-line tool works.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// How much of the command's stderr goes into the error message.
const STDERR_TAIL: usize = 400;

/// Runs `command action fqdn value` and waits at most `timeout` for it.
pub(crate) async fn run(
    command: &Path,
    action: &str,
    fqdn: &str,
    value: &str,
    timeout: Duration,
) -> Result<(), String> {
    let child = tokio::process::Command::new(command)
        .args([action, fqdn, value])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", command.display()))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "{} {action} did not finish within {timeout:?}",
                command.display()
            )
        })?
        .map_err(|error| format!("{} {action}: {error}", command.display()))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!(
        "{} {action} failed ({}): {}",
        command.display(),
        output.status,
        tail(stderr.trim(), STDERR_TAIL)
    ))
}

/// The last `limit` bytes of `text`, cut at a character boundary.
fn tail(text: &str, limit: usize) -> &str {
    let mut start = text.len().saturating_sub(limit);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_and_respects_character_boundaries() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 10), "ab");
        assert_eq!(tail("aé", 1), "");
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_stderr() {
        let error = run(
            Path::new("/bin/sh"),
            "-c",
            "echo no such zone >&2; exit 3",
            "unused",
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(error.contains("no such zone"), "{error}");
        assert!(error.contains("exit status: 3"), "{error}");
    }

    #[tokio::test]
    async fn a_missing_command_is_a_clear_error() {
        let error = run(
            Path::new("/nonexistent/dns-hook"),
            "present",
            "_acme-challenge.example.com.",
            "v",
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(
            error.contains("cannot start /nonexistent/dns-hook"),
            "{error}"
        );
    }
}
