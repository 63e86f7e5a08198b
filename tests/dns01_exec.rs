//! The dns-01 exec hook's process discipline against a real Knot and Pebble: what a hook
//! leaves running is killed without holding up the order, a hook past its deadline is
//! killed with its whole process group, and the cleanup runs in both cases.

use std::path::Path;
use std::time::{Duration, Instant};

use certinel::acme::{Stage, issue};

use crate::acme::assert_acme_failure;
use crate::common::eventually::eventually_blocking;
use crate::common::process::write_script;
use crate::dns01::{
    account, exec_spec, knot_pebble_and_calls_log, leaf_names, request, write_hook,
};

/// Writes an executable `sh` script `name` in `dir`.
/// The first word of each line of the call log.
fn actions(calls: &Path) -> Vec<String> {
    std::fs::read_to_string(calls)
        .unwrap_or_default()
        .lines()
        .map(|line| line.split(' ').next().unwrap_or_default().to_owned())
        .collect()
}

/// Asserts that the process whose pid `pid_file` holds is gone (a zombie counts as gone),
/// allowing a bounded moment for the kill to take effect.
fn assert_gone(pid_file: &Path, what: &str) {
    let pid = std::fs::read_to_string(pid_file).expect("the hook wrote the pid");
    let stat = format!("/proc/{}/stat", pid.trim());
    eventually_blocking(Duration::from_secs(2), || {
        let alive = std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z"));
        (!alive)
            .then_some(())
            .ok_or_else(|| format!("{what}: {stat} still runs"))
    });
}

#[tokio::test]
async fn an_exec_hook_that_leaves_a_process_behind_does_not_hold_up_the_order_and_it_is_killed() {
    let (knot, pebble, dir, calls) = knot_pebble_and_calls_log().await;
    let publisher = write_hook(&knot, dir.path(), &calls);
    let straggler = dir.path().join("straggler.pid");
    // Publishes for real, then leaves a sleeper holding its stdout and stderr.
    let hook = write_script(
        dir.path(),
        "leaves-a-sleeper",
        &format!(
            "{} \"$@\" || exit 1\n\
             if [ \"$1\" = present ]; then sleep 30 & echo $! > {}; fi\nexit 0\n",
            publisher.display(),
            straggler.display()
        ),
    );
    let started = Instant::now();
    let state = tempfile::tempdir().unwrap();
    let account = account(&pebble, state.path()).await;
    let spec = exec_spec(hook, knot.addr, Duration::from_secs(20));
    let issued = issue(&account, &request(&["sleeper.certinel.test"], spec))
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\n--- knot ---\n{}", knot.log()));
    assert_eq!(leaf_names(&issued), ["sleeper.certinel.test"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "waited {:?} for the sleeper's pipes",
        started.elapsed()
    );
    assert_gone(&straggler, "the hook's leftover sleeper survived");
    assert_eq!(actions(&calls), ["present", "cleanup"]);
    knot.assert_no_txt("_acme-challenge.sleeper.certinel.test.");
}

#[tokio::test]
async fn an_exec_hook_past_its_deadline_is_killed_with_its_group_and_still_cleaned_up() {
    let (knot, pebble, dir, calls) = knot_pebble_and_calls_log().await;
    let sleeper = dir.path().join("sleeper.pid");
    // `present` hangs (with a child of its own); `cleanup` returns at once.
    let hook = write_script(
        dir.path(),
        "hangs",
        &format!(
            "echo \"$@\" >> {calls}\n\
             if [ \"$1\" = present ]; then sleep 30 & echo $! > {sleeper}; wait; fi\n",
            calls = calls.display(),
            sleeper = sleeper.display()
        ),
    );
    let state = tempfile::tempdir().unwrap();
    let account = account(&pebble, state.path()).await;
    let spec = exec_spec(hook, knot.addr, Duration::from_secs(2));
    let error = issue(&account, &request(&["hangs.certinel.test"], spec))
        .await
        .expect_err("the hook never finishes");
    assert_acme_failure(&error, Stage::Challenge, "dnsExec", &["timed out"]);
    assert_gone(&sleeper, "the hung hook's child survived");
    assert_eq!(
        actions(&calls),
        ["present", "cleanup"],
        "a record that may have been published is cleaned up"
    );
}
