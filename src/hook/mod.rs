//! Running a hook: a deploy command or a dns-01 exec hook, as a child in its own process
//! group with a deadline (a timeout kills everything it started), a minimal environment
//! (`env`), and its output read bounded, logged and redacted (`output`).
//!
//! This module sits at the bottom of the crate: it knows nothing about ACME, the store or
//! the renewer, so both `acme` and `renew` use it.

mod env;
mod output;

use std::ffi::OsString;
use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};

use crate::cert::HookEnv;

pub use env::{BASE_VARIABLES, DEFAULT_PATH, EnvNameError, RESERVED_PREFIX, check_env_name};

/// How long the pipes are still read after the hook exits. A hook that leaves a background
/// process behind (`daemon &`) hands it the pipes; waiting for them to close would wait for
/// that process.
const PIPE_GRACE: Duration = Duration::from_millis(250);

/// Which kind of hook runs; names it in logs and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookKind {
    /// A certificate's `deploy` command.
    Deploy,
    /// The dns-01 exec provider's `command`.
    Dns01Exec,
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookKind::Deploy => "deploy command",
            HookKind::Dns01Exec => "dns-01 hook",
        })
    }
}

/// What happens to processes a hook left running when it exits by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftovers {
    /// They live on: a deploy command may start a daemon.
    Survive,
    /// The hook's process group is killed: a dns-01 hook has no business leaving anything.
    Killed,
}

/// One hook to run.
#[derive(Debug, Clone)]
pub struct HookCommand<'a> {
    /// Deploy command or dns-01 hook.
    pub kind: HookKind,
    /// How logs and errors name it: the shell command, or the program and its action.
    pub label: &'a str,
    /// The program (`sh` for deploy commands).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// What the configuration adds to the minimal environment.
    pub env: &'a HookEnv,
    /// The `CERTINEL_*` variables describing the work.
    pub certinel_vars: Vec<(&'static str, String)>,
    /// The deadline, from the start.
    pub timeout: Duration,
    /// What happens to its background processes after it exits.
    pub leftovers: Leftovers,
}

/// Why a hook failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The program could not be started.
    #[error("{kind} {command:?} could not start: {message}")]
    Spawn {
        /// Deploy command or dns-01 hook.
        kind: HookKind,
        /// The command.
        command: String,
        /// The operating system's message.
        message: String,
    },
    /// The hook exited unsuccessfully.
    #[error("{kind} {command:?} failed with {status}{}", stderr_suffix(.stderr))]
    Failed {
        /// Deploy command or dns-01 hook.
        kind: HookKind,
        /// The command.
        command: String,
        /// `exit status 3`, `signal 9`, ...
        status: String,
        /// The last line it wrote to standard error (redacted), if any.
        stderr: String,
    },
    /// The hook outlived its deadline and its process group was killed.
    #[error("{kind} {command:?} timed out after {}s and was killed", timeout.as_secs_f64())]
    Timeout {
        /// Deploy command or dns-01 hook.
        kind: HookKind,
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

/// A running hook's process group (the hook is its leader, so the id is the hook's pid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessGroup(Pid);

impl ProcessGroup {
    /// The group recorded earlier as [`ProcessGroup::id`], e.g. by a crashed certinel.
    /// `None` for ids that cannot be a process group (0, negative).
    pub fn from_id(id: i32) -> Option<Self> {
        Pid::from_raw(id).map(Self)
    }

    /// The process group id.
    pub fn id(self) -> i32 {
        self.0.as_raw_nonzero().get()
    }

    /// Sends SIGKILL to every process in the group; a group that is gone is not an error.
    pub fn kill(self) {
        // ESRCH only means everyone in the group is already gone.
        let _ = kill_process_group(self.0, Signal::KILL);
    }
}

/// Runs `command` to completion or to its deadline. `on_spawn` learns the hook's process
/// group as soon as it exists (to record it for crash recovery); it is not called when the
/// program cannot be started.
pub async fn run(
    command: &HookCommand<'_>,
    on_spawn: impl FnOnce(ProcessGroup),
) -> Result<(), HookError> {
    let HookCommand {
        kind,
        label,
        timeout,
        ..
    } = *command;
    let spawn_error = |message: String| HookError::Spawn {
        kind,
        command: label.to_owned(),
        message,
    };
    let vars = env::environment(command.env, &command.certinel_vars, |name| {
        std::env::var_os(name)
    });
    let mut spawned = tokio::process::Command::new(&command.program)
        .args(&command.args)
        .env_clear()
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills everything the hook started.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_error(e.to_string()))?;
    // `process_group(0)` made the child the leader of a group with its own pid.
    let group = spawned
        .id()
        .and_then(|id| ProcessGroup::from_id(i32::try_from(id).ok()?));
    if let Some(group) = group {
        on_spawn(group);
    }
    // Until the hook exits by itself, dropping this future (a timeout, a cancelled renewal)
    // kills its whole process group.
    let mut killer = GroupKiller(group);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let stdout_pipe = spawned.stdout.take();
    let stderr_pipe = spawned.stderr.take();
    let waited = {
        let reading = async {
            tokio::join!(
                output::read_bounded(stdout_pipe, &mut stdout),
                output::read_bounded(stderr_pipe, &mut stderr),
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
            killer.kill();
            // SIGKILL cannot be ignored: the direct child dies at once.
            let _ = spawned.wait().await;
        } else if command.leftovers == Leftovers::Killed {
            // The group id stays reserved while any member lives, so this reaches only the
            // hook's own leftovers.
            killer.kill();
        }
        if !reading_done {
            let _ = tokio::time::timeout(PIPE_GRACE, reading.as_mut()).await;
        }
        waited
    };
    let status = match waited {
        None => {
            output::log_output(kind, label, &stdout, &stderr);
            tracing::warn!(hook = %kind, command = label, "hook timed out; killed its process group");
            return Err(HookError::Timeout {
                kind,
                command: label.to_owned(),
                timeout,
            });
        }
        Some(Err(e)) => return Err(spawn_error(e.to_string())),
        Some(Ok(status)) => status,
    };
    // The hook exited by itself: with `Leftovers::Survive` what it left in the background
    // is allowed to live.
    killer.disarm();
    let stderr = output::log_output(kind, label, &stdout, &stderr);
    if status.success() {
        return Ok(());
    }
    let status = match (status.code(), signal_of(&status)) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "an unknown status".to_owned(),
    };
    Err(HookError::Failed {
        kind,
        command: label.to_owned(),
        status,
        stderr: stderr.lines().last().unwrap_or_default().trim().to_owned(),
    })
}

/// Kills a hook's process group with SIGKILL when told to or when dropped armed.
struct GroupKiller(Option<ProcessGroup>);

impl GroupKiller {
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            group.kill();
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
mod tests;
