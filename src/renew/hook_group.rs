//! Deploy commands left running by a process that died. Each command runs in its own
//! process group; before it starts, the in-flight record gets a random id that the command
//! inherits as `CERTINEL_HOOK_ID`, and once it runs, its group. Recovery stops those
//! processes before deploying again, so an old command never runs alongside a new one.
//!
//! A pid (and so a group id) can be recycled once its processes are gone, so a group is
//! stopped only while it is provably the command's: its leader still has the recorded
//! start time, or one of its processes carries the recorded id in its environment.

use std::collections::BTreeSet;
use std::fs;

use rustix::process::{Pid, Signal, kill_process_group};

use crate::hook::ProcessGroup;
use crate::renew::deploy::HookTracker;
use crate::store::{HookGroup, HookProcess, Store, StoreError};

/// Records each deploy command of one certificate in its in-flight record.
pub(crate) struct Recorder<'a> {
    store: &'a dyn Store,
    name: &'a str,
    id: std::sync::Mutex<String>,
}

impl<'a> Recorder<'a> {
    /// Records into `name`'s in-flight record in `store`.
    pub(crate) fn new(store: &'a dyn Store, name: &'a str) -> Recorder<'a> {
        Recorder {
            store,
            name,
            id: std::sync::Mutex::new(String::new()),
        }
    }

    /// Records `hook`. A failure is not fatal (the renewal goes on; only a crash right now
    /// would miss the record), except a fenced write: another replica holds the renewal
    /// lock now, so this one must not act for the certificate any more.
    fn record(&self, hook: Option<HookProcess>) -> Result<(), StoreError> {
        only_fencing_refuses(self.store.record_hook(self.name, hook))
    }
}

/// What a failed record means for the command: a fenced write refuses it; any other
/// failure is logged and the command goes on.
fn only_fencing_refuses(recorded: Result<(), StoreError>) -> Result<(), StoreError> {
    match recorded {
        Err(error @ StoreError::Fenced { .. }) => Err(error),
        Err(error) => {
            tracing::warn!(%error, "cannot record the running deploy command");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

impl HookTracker for Recorder<'_> {
    fn starting(&self, id: &str) -> Result<(), StoreError> {
        id.clone_into(&mut self.id.lock().unwrap_or_else(|p| p.into_inner()));
        self.record(Some(HookProcess {
            id: id.to_owned(),
            group: None,
        }))
    }

    fn started(&self, group: ProcessGroup) {
        let id = self.id.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // The command runs already; a fenced record stops the next one, in `starting`.
        let _ = self.record(Some(HookProcess {
            id,
            group: u32::try_from(group.id()).ok().and_then(identify),
        }));
    }

    fn ended(&self) {
        let _ = self.record(None);
    }
}

/// The process group of a command just spawned as `pid` (its own group leader). `None`
/// when `/proc` cannot tell its start time.
fn identify(pid: u32) -> Option<HookGroup> {
    let stat = read_stat(pid)?;
    Some(HookGroup {
        pgid: i32::try_from(pid).ok()?,
        start_ticks: stat.start_ticks,
    })
}

/// Stops with SIGKILL every process group that is still the recorded command's. Returns
/// how many groups it signalled.
///
/// Only the command's own group is stopped: a daemon it started in a session of its own
/// (`setsid`, an init script) inherited `CERTINEL_HOOK_ID` too, but it is the deploy's
/// result, not the command. When the group was not recorded yet (a crash right after the
/// id was), every group carrying the id is stopped: nothing had time to daemonise.
pub(crate) fn stop(hook: &HookProcess) -> usize {
    let carrying = groups_carrying(&format!("CERTINEL_HOOK_ID={}", hook.id));
    let mut groups = BTreeSet::new();
    match hook.group {
        Some(group) => {
            let leader = u32::try_from(group.pgid).ok().and_then(read_stat);
            let leader_is_ours = leader.is_some_and(|stat| {
                stat.pgrp == group.pgid && stat.start_ticks == group.start_ticks
            });
            // With its leader gone, members still carrying the id prove the group is ours.
            if leader_is_ours || carrying.contains(&group.pgid) {
                groups.insert(group.pgid);
            }
        }
        None => groups.extend(carrying),
    }
    groups
        .into_iter()
        .filter_map(Pid::from_raw)
        // ESRCH only means the group ended in the meantime.
        .filter(|group| kill_process_group(*group, Signal::KILL).is_ok())
        .count()
}

/// The process groups of every process whose environment holds `entry`.
fn groups_carrying(entry: &str) -> BTreeSet<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| has_environment_entry(*pid, entry))
        .filter_map(|pid| read_stat(pid).map(|stat| stat.pgrp))
        // Never this process's own group, whatever its environment says.
        .filter(|pgrp| *pgrp != own_group())
        .collect()
}

fn own_group() -> i32 {
    rustix::process::getpgrp().as_raw_nonzero().get()
}

/// The fields of `/proc/PID/stat` this module needs.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    pgrp: i32,
    start_ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `/proc/PID/stat`: the command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: field 3 (state) is index 0, field 5 (pgrp) index 2, field 22
    // (starttime) index 19.
    Some(Stat {
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

fn has_environment_entry(pid: u32, entry: &str) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|environ| environ.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_a_fenced_record_refuses_the_command_other_failures_let_it_run() {
        let fenced = StoreError::Fenced {
            name: "www".into(),
            key: "P/locks/www".into(),
            held: 7,
            found: Some(9),
        };
        assert!(matches!(
            only_fencing_refuses(Err(fenced)),
            Err(StoreError::Fenced { held: 7, .. })
        ));
        let others = [
            StoreError::io(
                "write",
                "/state/inflight.json",
                std::io::Error::other("disk full"),
            ),
            StoreError::Etcd {
                action: "transaction",
                key: "P/inflight/www".into(),
                reason: "timed out".into(),
            },
            StoreError::Conflict {
                key: "P/inflight/www".into(),
            },
        ];
        for error in others {
            let shown = error.to_string();
            assert!(only_fencing_refuses(Err(error)).is_ok(), "{shown}");
        }
        assert!(only_fencing_refuses(Ok(())).is_ok());
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis_of_the_name() {
        let text = "4242 (sh (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 \
                    987654 2000000 100 18446744073709551615";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                pgrp: 4242,
                start_ticks: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_recorded_group_whose_leader_has_another_start_time_is_left_alone() {
        let me = identify(std::process::id()).unwrap();
        let recycled = HookProcess {
            id: "no process carries this id".into(),
            group: Some(HookGroup {
                pgid: me.pgid,
                start_ticks: me.start_ticks + 1,
            }),
        };
        // This test process is alive with another start time: never signalled.
        assert_eq!(stop(&recycled), 0);
    }

    /// Starts `sh -c script` in its own group with `CERTINEL_HOOK_ID=id`; waits until the
    /// pid it backgrounded is written to `pid_file`.
    async fn spawn_hook(id: &str, pid_file: &Path) -> (tokio::process::Child, u32) {
        spawn_hook_with(id, pid_file, "").await
    }

    /// [`spawn_hook`], running `before` first.
    async fn spawn_hook_with(
        id: &str,
        pid_file: &Path,
        before: &str,
    ) -> (tokio::process::Child, u32) {
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{before}sleep 30 & echo $! > {}; wait",
                pid_file.display()
            ))
            .env("CERTINEL_HOOK_ID", id)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        (child, pid_written_to(pid_file).await)
    }

    /// Waits until `file` holds a pid and returns it.
    async fn pid_written_to(file: &Path) -> u32 {
        loop {
            if let Some(pid) = fs::read_to_string(file)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops `hook`, which names the group of `child` alone, and waits until the command
    /// and the process it backgrounded are gone.
    async fn assert_stops_the_command(
        hook: &HookProcess,
        child: &mut tokio::process::Child,
        background: u32,
    ) {
        assert_eq!(stop(hook), 1, "{}: only the command's own group", hook.id);
        child.wait().await.unwrap();
        assert_gone(background).await;
    }

    /// Whether `pid` is gone or a zombie waiting for its parent.
    fn gone(pid: u32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.starts_with(" Z"))
        })
    }

    async fn assert_gone(pid: u32) {
        for _ in 0..500 {
            if gone(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("process {pid} survived");
    }

    #[tokio::test]
    async fn a_command_recorded_by_group_or_only_by_id_is_stopped_with_what_it_backgrounded() {
        // (the command's id, whether its group was recorded too)
        for (id, group_recorded) in [("a1", true), ("b2", false)] {
            let dir = tempfile::tempdir().unwrap();
            let (mut child, background) = spawn_hook(id, &dir.path().join("pid")).await;
            let group = match group_recorded {
                true => identify(child.id().unwrap()),
                false => None,
            };
            let hook = HookProcess {
                id: id.into(),
                group,
            };
            assert_stops_the_command(&hook, &mut child, background).await;
        }
    }

    #[tokio::test]
    async fn a_daemon_the_command_started_in_a_session_of_its_own_is_left_running() {
        // A deploy command that restarts a daemon (`setsid`, an init script) leaves it in
        // another process group; it inherited CERTINEL_HOOK_ID but is not the command's.
        let dir = tempfile::tempdir().unwrap();
        let daemon_file = dir.path().join("daemon");
        let before = format!("setsid sleep 60 & echo $! > {}; ", daemon_file.display());
        let (mut child, background) = spawn_hook_with("c3", &dir.path().join("pid"), &before).await;
        let daemon = pid_written_to(&daemon_file).await;
        // `$!` is known before the background child has run `setsid`: until it has, it is
        // still in the command's group. Wait for its own session.
        let daemon_pid = Pid::from_raw(i32::try_from(daemon).unwrap()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rustix::process::getsid(Some(daemon_pid)).ok() != Some(daemon_pid) {
            assert!(std::time::Instant::now() < deadline, "setsid never ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let hook = HookProcess {
            id: "c3".into(),
            group: identify(child.id().unwrap()),
        };
        assert_stops_the_command(&hook, &mut child, background).await;
        let alive = !gone(daemon);
        let _ = rustix::process::kill_process(daemon_pid, Signal::KILL);
        assert!(alive, "the daemon in its own session was killed");
    }
}
