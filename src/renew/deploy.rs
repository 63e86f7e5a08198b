//! Deploy commands: each runs as `sh -c COMMAND` with a deadline and environment variables
//! naming the live files, in its own process group (a timeout kills everything it started);
//! its output goes to the log bounded and with private-key blocks redacted.

use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::store::audit::redact_private_keys;
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
#[cfg(test)]
pub(crate) async fn run_all(
    commands: &[String],
    env: &DeployEnv<'_>,
    timeout: Duration,
) -> Result<(), HookError> {
    run_all_tracked(commands, env, timeout, &Untracked).await
}

/// Told about each command's life, so the caller can record what would outlive a crash.
pub(crate) trait HookTracker: Sync {
    /// A command is about to start: record `id` (it is passed to the command as
    /// `CERTINEL_HOOK_ID`) before this returns.
    fn starting(&self, id: &str);
    /// It started as `pid`, the leader of its own process group; called before waiting.
    fn started(&self, pid: u32);
    /// It ended (or was killed).
    fn ended(&self);
}

#[cfg(test)]
struct Untracked;

#[cfg(test)]
impl HookTracker for Untracked {
    fn starting(&self, _id: &str) {}
    fn started(&self, _pid: u32) {}
    fn ended(&self) {}
}

/// [`run_all`], telling `tracker` about each command.
pub(crate) async fn run_all_tracked(
    commands: &[String],
    env: &DeployEnv<'_>,
    timeout: Duration,
    tracker: &dyn HookTracker,
) -> Result<(), HookError> {
    for command in commands {
        let id = format!("{:032x}", rand::random::<u128>());
        tracker.starting(&id);
        let result = run_one(command, env, timeout, &id, tracker).await;
        tracker.ended();
        result?;
    }
    Ok(())
}

/// How many bytes of each output stream are kept; the rest is read and discarded so the
/// command never blocks on a full pipe.
const OUTPUT_KEPT_BYTES: usize = 16 * 1024;

/// How long the pipes are still read after the command exits. A command that leaves a
/// background process behind (`daemon &`) hands it the pipes; waiting for them to close
/// would wait for that process.
const PIPE_GRACE: Duration = Duration::from_millis(250);

async fn run_one(
    command: &str,
    env: &DeployEnv<'_>,
    timeout: Duration,
    id: &str,
    tracker: &dyn HookTracker,
) -> Result<(), HookError> {
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
        .env("CERTINEL_HOOK_ID", id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills everything the command started.
        .process_group(0)
        .kill_on_drop(true);
    let mut spawned = child.spawn().map_err(|e| HookError::Spawn {
        command: command.to_owned(),
        message: e.to_string(),
    })?;
    // Until the command exits by itself, dropping this future (a timeout, a cancelled
    // renewal) kills its whole process group.
    let mut group = GroupKiller::new(spawned.id());
    if let Some(pid) = spawned.id() {
        tracker.started(pid);
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let stdout_pipe = spawned.stdout.take();
    let stderr_pipe = spawned.stderr.take();
    let waited = {
        let reading = async {
            tokio::join!(
                read_bounded(stdout_pipe, &mut stdout),
                read_bounded(stderr_pipe, &mut stderr),
            )
        };
        tokio::pin!(reading);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut reading_done = false;
        let waited = loop {
            tokio::select! {
                status = spawned.wait() => break Some(status),
                _ = reading.as_mut(), if !reading_done => reading_done = true,
                () = tokio::time::sleep_until(deadline) => break None,
            }
        };
        if waited.is_none() {
            group.kill();
            // SIGKILL cannot be ignored: the direct child dies at once.
            let _ = spawned.wait().await;
        }
        if !reading_done {
            let _ = tokio::time::timeout(PIPE_GRACE, reading.as_mut()).await;
        }
        waited
    };
    let status = match waited {
        None => {
            log_output(command, &stdout, &stderr);
            tracing::warn!(command, "deploy command timed out");
            return Err(HookError::Timeout {
                command: command.to_owned(),
                timeout,
            });
        }
        Some(Err(e)) => {
            return Err(HookError::Spawn {
                command: command.to_owned(),
                message: e.to_string(),
            });
        }
        Some(Ok(status)) => status,
    };
    // The command exited by itself: what it left in the background is allowed to live.
    group.disarm();
    let stderr = log_output(command, &stdout, &stderr);
    if status.success() {
        return Ok(());
    }
    let status = match (status.code(), signal_of(&status)) {
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

/// Logs both streams line by line, redacted, and hands back the redacted standard error.
fn log_output(command: &str, stdout: &[u8], stderr: &[u8]) -> String {
    let stdout = redacted_output(stdout);
    let stderr = redacted_output(stderr);
    for line in stdout.lines() {
        tracing::info!(command, stream = "stdout", "{line}");
    }
    for line in stderr.lines() {
        tracing::info!(command, stream = "stderr", "{line}");
    }
    stderr
}

/// A command's captured output as text fit for the log and the audit trail: private-key
/// PEM blocks redacted (a careless `cat $CERTINEL_KEY` must not leak the key) and at most
/// [`OUTPUT_KEPT_BYTES`] long.
fn redacted_output(bytes: &[u8]) -> String {
    let mut text = redact_private_keys(&String::from_utf8_lossy(bytes));
    if text.len() > OUTPUT_KEPT_BYTES {
        let mut cut = OUTPUT_KEPT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" [output truncated]");
    }
    text
}

/// Reads `pipe` to its end, keeping the first [`OUTPUT_KEPT_BYTES`] in `kept`.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>, kept: &mut Vec<u8>) {
    let Some(mut pipe) = pipe else { return };
    let mut buffer = [0u8; 4096];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = OUTPUT_KEPT_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
}

/// Kills a command's process group with SIGKILL when told to or when dropped armed.
struct GroupKiller(Option<Pid>);

impl GroupKiller {
    fn new(child_id: Option<u32>) -> Self {
        // `process_group(0)` made the child the leader of a group with its own pid.
        Self(child_id.and_then(|id| Pid::from_raw(i32::try_from(id).ok()?)))
    }

    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            // ESRCH only means everyone in the group is already gone.
            let _ = kill_process_group(group, Signal::KILL);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
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

    fn env_for(files: &VersionFiles) -> DeployEnv<'_> {
        DeployEnv {
            name: "api",
            version: VersionId(1),
            files,
            dry_run: false,
        }
    }

    #[tokio::test]
    async fn a_command_that_backgrounds_a_process_does_not_hold_up_the_deploy() {
        let files = files();
        let started = std::time::Instant::now();
        run_all(
            &["sleep 30 & echo started".into()],
            &env_for(&files),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let temp = tempfile::tempdir().unwrap();
        let pid_file = temp.path().join("pid");
        let files = files();
        let command = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let error = run_all(&[command], &env_for(&files), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(error, HookError::Timeout { .. }), "{error}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        // SIGKILL is delivered at once, but the exit and the reaping by init are not
        // synchronous with kill(2): give them a bounded moment.
        let gone = (0..200).any(|_| {
            let alive = std::fs::read_to_string(&stat)
                .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"));
            if alive {
                std::thread::sleep(Duration::from_millis(10));
            }
            !alive
        });
        assert!(gone, "the backgrounded grandchild {} survived", pid.trim());
    }

    #[tokio::test]
    async fn a_private_key_printed_by_a_command_is_redacted_from_its_error() {
        let files = files();
        let command = "printf -- '-----BEGIN PRIVATE KEY-----\\nSECRETBYTES\\n-----END PRIVATE KEY-----\\n' >&2; exit 1";
        let error = run_all(&[command.into()], &env_for(&files), Duration::from_secs(10))
            .await
            .unwrap_err();
        let HookError::Failed { stderr, .. } = &error else {
            panic!("{error}");
        };
        assert_eq!(stderr, "[redacted private key]");
    }

    #[test]
    fn captured_output_is_redacted_and_capped() {
        let key = "x\n-----BEGIN EC PRIVATE KEY-----\nSECRET\n-----END EC PRIVATE KEY-----\ny";
        assert_eq!(
            redacted_output(key.as_bytes()),
            "x\n[redacted private key]\ny"
        );
        let long = "é".repeat(OUTPUT_KEPT_BYTES);
        let capped = redacted_output(long.as_bytes());
        assert!(capped.len() <= OUTPUT_KEPT_BYTES + " [output truncated]".len());
        assert!(capped.ends_with(" [output truncated]"));
    }
}
