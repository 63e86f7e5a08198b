//! The hook runner against real `sh` processes: deadlines, process groups, leftovers,
//! output and environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::cert::HookEnv;

fn shell<'a>(script: &'a str, env: &'a HookEnv, leftovers: Leftovers) -> HookCommand<'a> {
    HookCommand {
        kind: HookKind::Deploy,
        label: script,
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        env,
        certinel_vars: vec![("CERTINEL_NAME", "api".into())],
        timeout: NO_HURRY,
        leftovers,
    }
}

/// A timeout no test here comes near unless it tests timeouts.
const NO_HURRY: Duration = Duration::from_secs(10);

async fn run_shell(script: &str, leftovers: Leftovers, timeout: Duration) -> Result<(), HookError> {
    let env = HookEnv::default();
    let command = HookCommand {
        timeout,
        ..shell(script, &env, leftovers)
    };
    run(&command, |_| {}).await
}

/// Whether process `pid` is gone (or a zombie waiting for init), waiting a bounded moment:
/// SIGKILL is delivered at once, but the exit and the reaping are not synchronous with
/// kill(2).
fn gone(pid: &str) -> bool {
    let stat = format!("/proc/{}/stat", pid.trim());
    (0..200).any(|_| {
        let alive = std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"));
        if alive {
            std::thread::sleep(Duration::from_millis(10));
        }
        !alive
    })
}

/// A file for a hook to write a pid to, in a temporary directory that lives as long as
/// the returned guard.
fn pid_file() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("pid");
    (temp, path)
}

fn read_pid(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_failing_hook_reports_its_status_and_last_stderr_line() {
    let error = run_shell("echo oops >&2; exit 3", Leftovers::Survive, NO_HURRY)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "deploy command \"echo oops >&2; exit 3\" failed with exit status 3: oops"
    );
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_naming_it() {
    let env = HookEnv::default();
    let command = HookCommand {
        kind: HookKind::Dns01Exec,
        label: "/nonexistent/dns-hook present",
        program: "/nonexistent/dns-hook".into(),
        args: vec![],
        env: &env,
        certinel_vars: vec![],
        timeout: NO_HURRY,
        leftovers: Leftovers::Killed,
    };
    let error = run(&command, |_| panic!("nothing was spawned"))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("dns-01 hook \"/nonexistent/dns-hook present\" could not start"),
        "{error}"
    );
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let (_temp, pid_file) = pid_file();
    let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let error = run_shell(&script, Leftovers::Survive, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(error, HookError::Timeout { .. }), "{error}");
    let pid = read_pid(&pid_file);
    assert!(gone(&pid), "the backgrounded grandchild {pid} survived");
}

#[tokio::test]
async fn a_hook_that_backgrounds_a_process_does_not_hold_up_its_caller() {
    let started = std::time::Instant::now();
    run_shell("sleep 30 & echo started", Leftovers::Survive, NO_HURRY)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn leftovers_of_a_hook_that_exited_are_killed_when_asked() {
    let (_temp, pid_file) = pid_file();
    let script = format!("sleep 30 & echo $! > {}; exit 0", pid_file.display());
    let started = std::time::Instant::now();
    run_shell(&script, Leftovers::Killed, NO_HURRY)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = read_pid(&pid_file);
    assert!(gone(&pid), "the leftover {pid} survived");
}

#[tokio::test]
async fn leftovers_survive_when_allowed() {
    let (_temp, pid_file) = pid_file();
    let script = format!("sleep 30 & echo $! > {}; exit 0", pid_file.display());
    run_shell(&script, Leftovers::Survive, NO_HURRY)
        .await
        .unwrap();
    let pid = read_pid(&pid_file);
    let alive = Path::new(&format!("/proc/{pid}")).exists();
    // Clean up before asserting. The leftover shares the hook's group (whose leader was
    // the hook), so it is killed by its own pid.
    if let Some(leftover) = Pid::from_raw(pid.parse().unwrap()) {
        let _ = rustix::process::kill_process(leftover, Signal::KILL);
    }
    assert!(
        alive,
        "the leftover {pid} was killed although allowed to live"
    );
}

#[tokio::test]
async fn the_caller_learns_the_hooks_process_group() {
    let (_temp, pid_file) = pid_file();
    let script = format!("echo $$ > {}", pid_file.display());
    let env = HookEnv::default();
    let mut learned = None;
    run(&shell(&script, &env, Leftovers::Killed), |group| {
        learned = Some(group.id())
    })
    .await
    .unwrap();
    assert_eq!(learned.map(|id| id.to_string()), Some(read_pid(&pid_file)));
}

#[tokio::test]
async fn a_private_key_printed_by_a_hook_is_redacted_from_its_error() {
    let script = "printf -- '-----BEGIN PRIVATE KEY-----\\nSECRETBYTES\\n-----END PRIVATE KEY-----\\n' >&2; exit 1";
    let error = run_shell(script, Leftovers::Survive, NO_HURRY)
        .await
        .unwrap_err();
    let HookError::Failed { stderr, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(stderr, "[redacted private key]");
}

#[tokio::test]
async fn a_hook_sees_only_its_minimal_environment() {
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("env");
    let script = format!("env > {}", out.display());
    let env = HookEnv {
        set: BTreeMap::from([("ZONE".into(), "example.com".into())]),
        passthrough: vec![],
    };
    run(&shell(&script, &env, Leftovers::Killed), |_| {})
        .await
        .unwrap();
    let text = std::fs::read_to_string(out).unwrap();
    let mut names: Vec<&str> = text.lines().filter_map(|l| l.split('=').next()).collect();
    // What sh itself adds.
    names.retain(|name| !matches!(*name, "PWD" | "SHLVL" | "_" | "OLDPWD"));
    names.retain(|name| !BASE_VARIABLES.contains(name));
    names.sort_unstable();
    assert_eq!(names, ["CERTINEL_NAME", "ZONE"], "{text}");
    assert!(text.contains("ZONE=example.com\n") && text.contains("CERTINEL_NAME=api\n"));
    assert!(text.lines().any(|l| l.starts_with("PATH=")), "{text}");
}
