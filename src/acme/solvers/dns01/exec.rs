//! The exec DNS provider: `COMMAND present FQDN VALUE` and `COMMAND cleanup FQDN VALUE`,
//! lego's convention, so any DNS provider with a command-line tool works. It runs through
//! [`crate::hook`] like a deploy command, and whatever it leaves running is killed when it
//! exits.

use std::path::Path;
use std::time::Duration;

use crate::hook::{self, HookCommand, HookError, HookKind, Leftovers};

use crate::cert::HookEnv;

/// Whether the hook publishes or removes the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// `present`
    Present,
    /// `cleanup`
    Cleanup,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Present => "present",
            Action::Cleanup => "cleanup",
        }
    }
}

/// Runs `command action fqdn value` and waits at most `timeout` for it.
pub(crate) async fn run(
    command: &Path,
    env: &HookEnv,
    action: Action,
    fqdn: &str,
    value: &str,
    timeout: Duration,
) -> Result<(), HookError> {
    let label = format!("{} {} {fqdn}", command.display(), action.as_str());
    let hook_command = HookCommand {
        kind: HookKind::Dns01Exec,
        label: &label,
        program: command.into(),
        args: vec![action.as_str().into(), fqdn.into(), value.into()],
        env,
        certinel_vars: Vec::new(),
        timeout,
        leftovers: Leftovers::Killed,
    };
    hook::run(&hook_command, |_| {}).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `command present _acme-challenge.example.com. v`, which must fail.
    async fn present_fails(command: &Path) -> HookError {
        run(
            command,
            &HookEnv::default(),
            Action::Present,
            "_acme-challenge.example.com.",
            "v",
            Duration::from_secs(10),
        )
        .await
        .unwrap_err()
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_stderr() {
        let temp = tempfile::tempdir().unwrap();
        let script = temp.path().join("hook");
        std::fs::write(&script, "#!/bin/sh\necho no such zone >&2\nexit 3\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let error = present_fails(&script).await;
        let message = error.to_string();
        assert!(message.contains("no such zone"), "{message}");
        assert!(message.contains("exit status 3"), "{message}");
        assert!(
            message.contains("present _acme-challenge.example.com."),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_missing_command_is_a_clear_error() {
        let error = present_fails(Path::new("/nonexistent/dns-hook")).await;
        assert!(matches!(error, HookError::Spawn { .. }), "{error}");
        assert!(
            error.to_string().contains("/nonexistent/dns-hook"),
            "{error}"
        );
    }
}
