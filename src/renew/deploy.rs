//! Deploy commands: each runs as `sh -c COMMAND` through [`crate::hook`] (own process
//! group killed on timeout, minimal environment, bounded and redacted output) with
//! environment variables naming the live files.

use std::time::Duration;

use crate::hook::{self, HookCommand, HookError, HookKind, Leftovers, ProcessGroup};

use crate::cert::HookEnv;
use crate::store::{StoreError, VersionFiles, VersionId};

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
    /// What the certificate's `env` and `env_passthrough` add to the environment.
    pub(crate) hook_env: &'a HookEnv,
}

/// Why deploying a version stopped short.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeployError {
    /// A command could not start, failed or timed out.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// The tracker refused to let a command start: this replica may no longer act for the
    /// certificate (another replica holds its renewal lock now).
    #[error("deploy command {command:?} was not started: {source}")]
    NotStarted {
        /// The command.
        command: String,
        /// Why the tracker refused.
        #[source]
        source: StoreError,
    },
}

/// Told about each command's life, so the caller can record what would outlive a crash.
pub(crate) trait HookTracker: Sync {
    /// A command is about to start: record `id` (it is passed to the command as
    /// `CERTINEL_HOOK_ID`) before this returns. An error refuses the start: the command
    /// does not run, and neither do the ones after it.
    fn starting(&self, id: &str) -> Result<(), StoreError>;
    /// It started as the leader of its own process group `group`; called before waiting.
    fn started(&self, group: ProcessGroup);
    /// It ended (or was killed).
    fn ended(&self);
}

/// A tracker that records nothing: tests, and a follower's rollout (no renewal is in
/// flight on that replica, so there is no record for crash recovery to read).
pub(crate) struct Untracked;

impl HookTracker for Untracked {
    fn starting(&self, _id: &str) -> Result<(), StoreError> {
        Ok(())
    }
    fn started(&self, _group: ProcessGroup) {}
    fn ended(&self) {}
}

/// Runs `commands` in order, stopping at the first failure.
#[cfg(test)]
pub(crate) async fn run_all(
    commands: &[String],
    env: &DeployEnv<'_>,
    timeout: Duration,
) -> Result<(), DeployError> {
    run_all_tracked(commands, env, timeout, &Untracked).await
}

/// [`run_all`], telling `tracker` about each command.
pub(crate) async fn run_all_tracked(
    commands: &[String],
    env: &DeployEnv<'_>,
    timeout: Duration,
    tracker: &dyn HookTracker,
) -> Result<(), DeployError> {
    for command in commands {
        let id = format!("{:032x}", rand::random::<u128>());
        tracker
            .starting(&id)
            .map_err(|source| DeployError::NotStarted {
                command: command.clone(),
                source,
            })?;
        let hook = deploy_command(command, env, timeout, &id);
        let result = hook::run(&hook, |group| tracker.started(group)).await;
        tracker.ended();
        result?;
    }
    Ok(())
}

/// `sh -c COMMAND` with the `CERTINEL_*` variables of `env` and the command's `id`
/// (`CERTINEL_HOOK_ID`, how recovery recognises it after a crash). What a command leaves
/// running in the background lives on: restarting a daemon is a deploy command's job.
fn deploy_command<'a>(
    command: &'a str,
    env: &DeployEnv<'a>,
    timeout: Duration,
    id: &str,
) -> HookCommand<'a> {
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    HookCommand {
        kind: HookKind::Deploy,
        label: command,
        program: "sh".into(),
        args: vec!["-c".into(), command.into()],
        env: env.hook_env,
        certinel_vars: vec![
            ("CERTINEL_NAME", env.name.to_owned()),
            ("CERTINEL_VERSION", env.version.to_string()),
            ("CERTINEL_CERT", path(&env.files.cert)),
            ("CERTINEL_CHAIN", path(&env.files.chain)),
            ("CERTINEL_FULLCHAIN", path(&env.files.fullchain)),
            ("CERTINEL_KEY", path(&env.files.key)),
            (
                "CERTINEL_DRY_RUN",
                if env.dry_run { "1" } else { "0" }.to_owned(),
            ),
            ("CERTINEL_HOOK_ID", id.to_owned()),
        ],
        timeout,
        leftovers: Leftovers::Survive,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn files() -> VersionFiles {
        VersionFiles::in_dir(PathBuf::from("/state/certs/api/current"))
    }

    fn env_for<'a>(files: &'a VersionFiles, hook_env: &'a HookEnv) -> DeployEnv<'a> {
        DeployEnv {
            name: "api",
            version: VersionId(1),
            files,
            dry_run: false,
            hook_env,
        }
    }

    #[tokio::test]
    async fn commands_see_the_certificate_environment() {
        let temp = tempfile::tempdir().unwrap();
        let out = temp.path().join("env");
        let files = files();
        let hook_env = HookEnv {
            set: [("RELOAD".to_owned(), "nginx".to_owned())].into(),
            passthrough: vec![],
        };
        let env = DeployEnv {
            version: VersionId(3),
            dry_run: true,
            ..env_for(&files, &hook_env)
        };
        let command = format!(
            "echo \"$CERTINEL_NAME $CERTINEL_VERSION $CERTINEL_KEY $CERTINEL_DRY_RUN $RELOAD\" > {}",
            out.display()
        );
        run_all(&[command], &env, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(out).unwrap(),
            "api v0003 /state/certs/api/current/key.pem 1 nginx\n"
        );
    }

    #[tokio::test]
    async fn the_first_failing_command_stops_the_rest_and_reports_its_stderr() {
        let temp = tempfile::tempdir().unwrap();
        let marker = temp.path().join("ran");
        let files = files();
        let hook_env = HookEnv::default();
        let error = run_all(
            &[
                "true".into(),
                "echo oops >&2; exit 3".into(),
                format!("touch {}", marker.display()),
            ],
            &env_for(&files, &hook_env),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "deploy command \"echo oops >&2; exit 3\" failed with exit status 3: oops"
        );
        assert!(!marker.exists(), "no command runs after a failure");
    }

    #[tokio::test]
    async fn a_command_past_its_deadline_is_killed() {
        let files = files();
        let hook_env = HookEnv::default();
        let error = run_all(
            &["sleep 30".into()],
            &env_for(&files, &hook_env),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, DeployError::Hook(HookError::Timeout { .. })),
            "{error}"
        );
    }

    /// A tracker whose record is rejected the way etcd rejects a fenced holder's write.
    struct Fenced;

    impl HookTracker for Fenced {
        fn starting(&self, _id: &str) -> Result<(), StoreError> {
            Err(StoreError::Fenced {
                name: "api".into(),
                key: "/certinel/locks/api".into(),
                held: 7,
                found: Some(9),
            })
        }
        fn started(&self, _group: ProcessGroup) {}
        fn ended(&self) {}
    }

    #[tokio::test]
    async fn a_command_whose_start_the_tracker_refuses_never_runs_nor_do_the_rest() {
        let temp = tempfile::tempdir().unwrap();
        let marker = |n: u8| temp.path().join(format!("ran{n}"));
        let files = files();
        let hook_env = HookEnv::default();
        let commands = [1, 2].map(|n| format!("touch {}", marker(n).display()));
        let error = run_all_tracked(
            &commands,
            &env_for(&files, &hook_env),
            Duration::from_secs(10),
            &Fenced,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                error,
                DeployError::NotStarted {
                    source: StoreError::Fenced { .. },
                    ..
                }
            ),
            "{error}"
        );
        assert!(!marker(1).exists() && !marker(2).exists(), "nothing ran");
    }
}
