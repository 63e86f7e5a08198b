//! Deploy commands: each runs as `sh -c COMMAND` with a deadline and environment variables
//! naming the live files; its output goes to the log (it never contains the key, only the
//! key's path).

use std::process::Stdio;
use std::time::Duration;

use crate::store::{VersionFiles, VersionId};

/// What the commands are told about the version they deploy.
#[derive(Debug, Clone)]
pub(crate) struct DeployEnv<'a> {
    /// Certificate name.
    pub(crate) name: &'a str,
    /// The version now live.
    pub(crate) version: VersionId,
    /// Its files, through the `current` link.
    pub(crate) files: &'a VersionFiles,
    /// Whether this is a dry run (`CERTINEL_DRY_RUN=1`).
    pub(crate) dry_run: bool,
}

/// Why a deploy command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// `sh` could not be started.
    #[error("deploy command {command:?} could not start: {message}")]
    Spawn {
        /// The command.
        command: String,
        /// The operating system's message.
        message: String,
    },
    /// The command exited unsuccessfully.
    #[error("deploy command {command:?} failed with {status}{}", stderr_suffix(.stderr))]
    Failed {
        /// The command.
        command: String,
        /// `exit status 3`, `signal 9`, ...
        status: String,
        /// The last line it wrote to standard error, if any.
        stderr: String,
    },
    /// The command outlived its deadline and was killed.
    #[error("deploy command {command:?} timed out after {}s and was killed", timeout.as_secs_f64())]
    Timeout {
        /// The command.
        command: String,
        /// The deadline.
        timeout: Duration,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// Runs `commands` in order, stopping at the first failure.
pub(crate) async fn run_all(
    commands: &[String],
    env: &DeployEnv<'_>,
    timeout: Duration,
) -> Result<(), HookError> {
    for command in commands {
        run_one(command, env, timeout).await?;
    }
    Ok(())
}

async fn run_one(command: &str, env: &DeployEnv<'_>, timeout: Duration) -> Result<(), HookError> {
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let mut child = tokio::process::Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .env("CERTINEL_NAME", env.name)
        .env("CERTINEL_VERSION", env.version.to_string())
        .env("CERTINEL_CERT", path(&env.files.cert))
        .env("CERTINEL_CHAIN", path(&env.files.chain))
        .env("CERTINEL_FULLCHAIN", path(&env.files.fullchain))
        .env("CERTINEL_KEY", path(&env.files.key))
        .env("CERTINEL_DRY_RUN", if env.dry_run { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A timed-out command is killed when the future holding it is dropped.
        .kill_on_drop(true);
    let spawned = child.spawn().map_err(|e| HookError::Spawn {
        command: command.to_owned(),
        message: e.to_string(),
    })?;
    let output = match tokio::time::timeout(timeout, spawned.wait_with_output()).await {
        Err(_elapsed) => {
            tracing::warn!(command, "deploy command timed out");
            return Err(HookError::Timeout {
                command: command.to_owned(),
                timeout,
            });
        }
        Ok(Err(e)) => {
            return Err(HookError::Spawn {
                command: command.to_owned(),
                message: e.to_string(),
            });
        }
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stdout.lines() {
        tracing::info!(command, stream = "stdout", "{line}");
    }
    for line in stderr.lines() {
        tracing::info!(command, stream = "stderr", "{line}");
    }
    if output.status.success() {
        return Ok(());
    }
    let status = match (output.status.code(), signal_of(&output.status)) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "an unknown status".to_owned(),
    };
    Err(HookError::Failed {
        command: command.to_owned(),
        status,
        stderr: stderr.lines().last().unwrap_or_default().trim().to_owned(),
    })
}

fn signal_of(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn files() -> VersionFiles {
        VersionFiles::in_dir(PathBuf::from("/state/certs/api/current"))
    }

    #[tokio::test]
    async fn commands_see_the_certificate_environment() {
        let temp = tempfile::tempdir().unwrap();
        let out = temp.path().join("env");
        let files = files();
        let env = DeployEnv {
            name: "api",
            version: VersionId(3),
            files: &files,
            dry_run: true,
        };
        let command = format!(
            "echo \"$CERTINEL_NAME $CERTINEL_VERSION $CERTINEL_KEY $CERTINEL_DRY_RUN\" > {}",
            out.display()
        );
        run_all(&[command], &env, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(out).unwrap(),
            "api v0003 /state/certs/api/current/key.pem 1\n"
        );
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_status_and_last_stderr_line() {
        let files = files();
        let env = DeployEnv {
            name: "api",
            version: VersionId(1),
            files: &files,
            dry_run: false,
        };
        let error = run_all(
            &["true".into(), "echo oops >&2; exit 3".into(), "true".into()],
            &env,
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "deploy command \"echo oops >&2; exit 3\" failed with exit status 3: oops"
        );
    }

    #[tokio::test]
    async fn a_command_past_its_deadline_is_killed() {
        let files = files();
        let env = DeployEnv {
            name: "api",
            version: VersionId(1),
            files: &files,
            dry_run: false,
        };
        let error = run_all(&["sleep 30".into()], &env, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(error, HookError::Timeout { .. }), "{error}");
    }
}
