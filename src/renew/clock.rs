//! The clock the renewer stamps each step with as it happens: the system clock in
//! production, a clock the test controls in tests.

use std::sync::Mutex;

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The moments of one run's steps: the run's `now` plus what the clock says has passed
/// since the run began, never earlier than the step before (a system clock stepped back
/// would otherwise put lines out of order).
///
/// Measuring from the run's `now` rather than reading the clock outright keeps a run that
/// is told another moment (a test renewing "in a month") consistent with itself.
pub(crate) struct StepClock<'a> {
    clock: &'a dyn Clock,
    run_now: OffsetDateTime,
    clock_at_start: OffsetDateTime,
    last: Mutex<OffsetDateTime>,
}

impl<'a> StepClock<'a> {
    /// Starts measuring at `run_now`.
    pub(crate) fn start(clock: &'a dyn Clock, run_now: OffsetDateTime) -> StepClock<'a> {
        StepClock {
            clock,
            run_now,
            clock_at_start: clock.now(),
            last: Mutex::new(run_now),
        }
    }

    /// The moment of a step happening now.
    pub(crate) fn stamp(&self) -> OffsetDateTime {
        let elapsed = self.clock.now() - self.clock_at_start;
        let moment = self.run_now + elapsed.max(time::Duration::ZERO);
        // A poisoned lock only means another stamp panicked; the moment in it is fine.
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last).max(moment);
        *last
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Mutex;

    use time::{Duration, OffsetDateTime};

    use super::Clock;

    /// A clock that moves `step` forward every time it is read.
    pub(crate) struct SteppingClock {
        next: Mutex<OffsetDateTime>,
        step: Duration,
    }

    impl SteppingClock {
        pub(crate) fn new(start: OffsetDateTime, step: Duration) -> SteppingClock {
            SteppingClock {
                next: Mutex::new(start),
                step,
            }
        }
    }

    impl Clock for SteppingClock {
        fn now(&self) -> OffsetDateTime {
            let mut next = self.next.lock().unwrap();
            let now = *next;
            *next += self.step;
            now
        }
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::testing::SteppingClock;
    use super::*;

    /// A clock that goes backwards once.
    struct Stepped(Mutex<Vec<OffsetDateTime>>);

    impl Clock for Stepped {
        fn now(&self) -> OffsetDateTime {
            self.0.lock().unwrap().remove(0)
        }
    }

    #[test]
    fn each_stamp_is_the_run_moment_plus_the_time_the_clock_says_passed() {
        let clock = SteppingClock::new(datetime!(2030-01-01 0:00 UTC), Duration::minutes(1));
        let steps = StepClock::start(&clock, datetime!(2026-05-01 12:00 UTC));
        assert_eq!(steps.stamp(), datetime!(2026-05-01 12:01 UTC));
        assert_eq!(steps.stamp(), datetime!(2026-05-01 12:02 UTC));
    }

    #[test]
    fn a_clock_stepped_back_never_puts_a_stamp_before_the_previous_one() {
        let clock = Stepped(Mutex::new(vec![
            datetime!(2026-05-01 12:00 UTC),
            datetime!(2026-05-01 12:05 UTC),
            datetime!(2026-05-01 11:00 UTC),
        ]));
        let steps = StepClock::start(&clock, datetime!(2026-05-01 12:00 UTC));
        assert_eq!(steps.stamp(), datetime!(2026-05-01 12:05 UTC));
        assert_eq!(steps.stamp(), datetime!(2026-05-01 12:05 UTC));
    }
}
