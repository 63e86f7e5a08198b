//! When an exporter connection has waited too long: a pure decision over what the
//! connection has done so far and the moment it is asked, so the policy is tested without
//! sockets or clocks.
//!
//! The two limits follow nginx and Go's `net/http`: `idle_timeout` bounds the wait for the
//! first byte of a request (after accept, or after the previous response was written), and
//! `header_read_timeout` bounds the time from that byte to the end of the request head.
//! Handlers that are running are never timed out here.

use std::time::Duration;

use tokio::time::Instant;

/// What a connection is doing, as far as its deadlines are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No request is being handled.
    Waiting {
        /// When the wait began: the accept, or the last byte of the previous response that
        /// the client took.
        since: Instant,
        /// When the first byte of the next request arrived, if it has.
        first_byte: Option<Instant>,
    },
    /// A handler is running; its response has not been produced yet.
    Serving,
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No request began within `idle_timeout`.
    Idle,
    /// A request began but its head was not complete within `header_read_timeout`.
    SlowHeader,
}

/// What to do with a connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it; ask again at `until` (or when its phase changes, if `None`).
    Keep {
        /// The next deadline.
        until: Option<Instant>,
    },
    /// Close it.
    Close(CloseReason),
}

/// The limits a connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From a request's first byte to the end of its head.
    pub header_read_timeout: Duration,
    /// From the start of a wait to the first byte of the next request.
    pub idle_timeout: Duration,
}

impl Phase {
    /// A connection that starts waiting at `now`.
    pub fn waiting(now: Instant) -> Phase {
        Phase::Waiting {
            since: now,
            first_byte: None,
        }
    }

    /// The client sent bytes at `now`.
    pub fn on_read(self, now: Instant) -> Phase {
        match self {
            Phase::Waiting {
                since,
                first_byte: None,
            } => Phase::Waiting {
                since,
                first_byte: Some(now),
            },
            other => other,
        }
    }

    /// The client took response bytes at `now`: a slow reader is not idle while it reads.
    pub fn on_write(self, now: Instant) -> Phase {
        match self {
            Phase::Waiting {
                first_byte: None, ..
            } => Phase::waiting(now),
            other => other,
        }
    }
}

/// Whether a connection in `phase` may stay open at `now`.
pub fn verdict(phase: Phase, now: Instant, limits: Deadlines) -> Verdict {
    let (deadline, reason) = match phase {
        Phase::Serving => return Verdict::Keep { until: None },
        Phase::Waiting {
            since,
            first_byte: None,
        } => (since.checked_add(limits.idle_timeout), CloseReason::Idle),
        Phase::Waiting {
            first_byte: Some(first_byte),
            ..
        } => (
            first_byte.checked_add(limits.header_read_timeout),
            CloseReason::SlowHeader,
        ),
    };
    match deadline {
        Some(deadline) if now >= deadline => Verdict::Close(reason),
        // A deadline beyond what the clock can represent never comes.
        until => Verdict::Keep { until },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Deadlines = Deadlines {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };

    fn at(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    /// `phase` is still kept `kept_at` seconds after `start`, until `closes_at`, and is
    /// closed for `reason` on that second.
    fn check_closes(
        phase: Phase,
        start: Instant,
        kept_at: u64,
        closes_at: u64,
        reason: CloseReason,
    ) {
        let until = Some(at(start, closes_at));
        assert_eq!(
            verdict(phase, at(start, kept_at), LIMITS),
            Verdict::Keep { until }
        );
        let closing = verdict(phase, at(start, closes_at), LIMITS);
        assert_eq!(closing, Verdict::Close(reason));
    }

    #[test]
    fn a_silent_connection_is_closed_when_the_idle_timeout_ends() {
        let start = Instant::now();
        check_closes(Phase::waiting(start), start, 59, 60, CloseReason::Idle);
    }

    #[test]
    fn a_started_request_head_has_the_header_timeout_from_its_first_byte() {
        let start = Instant::now();
        let phase = Phase::waiting(start).on_read(at(start, 55));
        // The idle deadline no longer applies; the head has until 55 + 10 s.
        check_closes(phase, start, 61, 65, CloseReason::SlowHeader);
    }

    #[test]
    fn later_bytes_of_a_slow_head_do_not_extend_its_deadline() {
        let start = Instant::now();
        let phase = Phase::waiting(start)
            .on_read(at(start, 1))
            .on_read(at(start, 9))
            .on_write(at(start, 9));
        assert_eq!(
            verdict(phase, at(start, 11), LIMITS),
            Verdict::Close(CloseReason::SlowHeader)
        );
    }

    #[test]
    fn a_running_handler_is_never_timed_out() {
        let start = Instant::now();
        assert_eq!(
            verdict(Phase::Serving, at(start, 3600), LIMITS),
            Verdict::Keep { until: None }
        );
        assert_eq!(Phase::Serving.on_read(at(start, 1)), Phase::Serving);
    }

    #[test]
    fn a_deadline_beyond_the_clock_never_closes() {
        let start = Instant::now();
        let endless = Deadlines {
            header_read_timeout: Duration::MAX,
            idle_timeout: Duration::MAX,
        };
        assert_eq!(
            verdict(Phase::waiting(start), at(start, 1), endless),
            Verdict::Keep { until: None }
        );
    }

    #[test]
    fn response_bytes_taken_by_the_client_restart_the_idle_wait() {
        let start = Instant::now();
        let phase = Phase::waiting(start).on_write(at(start, 50));
        assert_eq!(
            verdict(phase, at(start, 100), LIMITS),
            Verdict::Keep {
                until: Some(at(start, 110))
            }
        );
    }
}
