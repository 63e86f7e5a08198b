//! The one way a test waits for a condition it can only poll: `eventually(deadline, probe)`.
//!
//! A probe looks once and answers `Ok(value)` when the condition holds or `Err(seen)` with
//! what it saw instead; when the deadline passes, the wait fails with the last thing seen,
//! so a timeout says why. Waits for an event (a child's exit, a line on a pipe) stay
//! event-driven and do not use this.

use std::fmt::Display;
use std::time::Duration;

/// The first pause between two looks; it doubles up to [`SLOWEST_POLL`], so a quick
/// condition is seen at once and a slow one is not polled hard.
const FIRST_POLL: Duration = Duration::from_millis(5);
/// The longest pause between two looks.
const SLOWEST_POLL: Duration = Duration::from_millis(200);

/// Calls `probe` until it returns `Ok`, for at most `deadline`, and returns the value;
/// panics with the last `Err` it returned when the deadline passes. Reads tokio's clock,
/// so it works under paused time too.
pub async fn eventually<T, Seen: Display>(
    deadline: Duration,
    probe: impl AsyncFnMut() -> Result<T, Seen>,
) -> T {
    expect_within(deadline, polls(FIRST_POLL, SLOWEST_POLL), probe).await
}

/// [`eventually`] looking every `pause` without backing off, for a test that must act
/// within moments of the condition (killing a process at a step it only passes through).
pub async fn eventually_every<T, Seen: Display>(
    deadline: Duration,
    pause: Duration,
    probe: impl AsyncFnMut() -> Result<T, Seen>,
) -> T {
    expect_within(deadline, polls(pause, pause), probe).await
}

/// [`eventually`] for a caller that recovers from the timeout: `Err` holds the last
/// thing the probe saw.
pub async fn within<T, Seen>(
    deadline: Duration,
    probe: impl AsyncFnMut() -> Result<T, Seen>,
) -> Result<T, Seen> {
    poll_until(deadline, polls(FIRST_POLL, SLOWEST_POLL), probe).await
}

/// [`eventually`] for synchronous code (no runtime, or a helper that must not yield):
/// sleeps the thread between looks.
pub fn eventually_blocking<T, Seen: Display>(
    deadline: Duration,
    mut probe: impl FnMut() -> Result<T, Seen>,
) -> T {
    let give_up = std::time::Instant::now() + deadline;
    let mut pauses = polls(FIRST_POLL, SLOWEST_POLL);
    loop {
        let seen = match probe() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        assert!(
            std::time::Instant::now() < give_up,
            "not within {deadline:?}; last seen: {seen}"
        );
        std::thread::sleep(pauses.next().unwrap_or(SLOWEST_POLL));
    }
}

async fn expect_within<T, Seen: Display>(
    deadline: Duration,
    pauses: impl Iterator<Item = Duration>,
    probe: impl AsyncFnMut() -> Result<T, Seen>,
) -> T {
    match poll_until(deadline, pauses, probe).await {
        Ok(value) => value,
        Err(seen) => panic!("not within {deadline:?}; last seen: {seen}"),
    }
}

async fn poll_until<T, Seen>(
    deadline: Duration,
    mut pauses: impl Iterator<Item = Duration>,
    mut probe: impl AsyncFnMut() -> Result<T, Seen>,
) -> Result<T, Seen> {
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        let seen = match probe().await {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= give_up {
            return Err(seen);
        }
        tokio::time::sleep(pauses.next().unwrap_or(SLOWEST_POLL)).await;
    }
}

/// Pauses from `first`, doubling up to `slowest`, without end.
fn polls(first: Duration, slowest: Duration) -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(first), move |pause| Some((*pause * 2).min(slowest)))
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "not within 1s; last seen: 11 looks")]
async fn a_timeout_reports_what_the_probe_saw_last() {
    let mut looks = 0;
    eventually(Duration::from_secs(1), async || -> Result<(), String> {
        looks += 1;
        Err(format!("{looks} looks"))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_value_of_the_first_successful_look_is_returned() {
    let mut looks = 0;
    let value = eventually(Duration::from_secs(1), async || {
        looks += 1;
        if looks == 3 {
            Ok(looks * 10)
        } else {
            Err("not yet")
        }
    })
    .await;
    assert_eq!(value, 30);
}
