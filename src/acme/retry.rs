//! Retry and polling arithmetic for ACME requests: pure functions of attempt counts,
//! server hints and a jitter sample, so the I/O code only sleeps where these say.
//!
//! instant-acme retries `badNonce` by itself; everything else that is worth retrying
//! (server errors, rate limiting with a short `Retry-After`, network failures) is
//! decided here.

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// How one HTTP request to the CA is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included. `1` disables retrying.
    pub max_attempts: u32,
    /// The backoff before the first retry; it doubles with every further retry.
    pub base_delay: Duration,
    /// The backoff never grows beyond this.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for inside one request: the failure
    /// goes back to the caller (the renewal scheduler will try again later).
    pub max_retry_after: Duration,
    /// Each attempt is abandoned after this long and counts as a network error.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// How long and how often an order is polled while the CA validates or issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollPolicy {
    /// The wait before the second poll; later waits grow by half each time. Short by
    /// default: a CA that validates at once (a local one, or a cached authorization) is
    /// seen at once, and the growth keeps a slow CA from being asked often.
    pub initial_interval: Duration,
    /// The wait between polls never grows beyond this.
    pub max_interval: Duration,
    /// Polling gives up (problem `timeout`) once this much time has passed. Real CAs can
    /// take minutes under load, so the default is generous.
    pub timeout: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_secs(15),
            timeout: Duration::from_secs(300),
        }
    }
}

/// What came back from one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The CA answered with this HTTP status and, maybe, a `Retry-After` delay.
    Status {
        /// The HTTP status code.
        status: u16,
        /// The parsed `Retry-After`, if the response had one.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, TLS failure, request timeout.
    NetworkError,
}

/// What to do after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Hand this outcome to the caller, success or failure.
    Stop,
    /// Wait this long, then send the request again.
    Retry(Duration),
}

/// Decides whether to retry after `attempts_made` attempts ended with `outcome`.
///
/// `jitter` is a sample from `[0, 1]`; it spreads the backoff of many clients apart.
pub fn decide(
    policy: &RetryPolicy,
    attempts_made: u32,
    outcome: AttemptOutcome,
    jitter: f64,
) -> RetryDecision {
    let retry_after = match outcome {
        AttemptOutcome::Status { status, .. } if status != 429 && status < 500 => {
            return RetryDecision::Stop;
        }
        AttemptOutcome::Status { retry_after, .. } => retry_after,
        AttemptOutcome::NetworkError => None,
    };
    if attempts_made >= policy.max_attempts {
        return RetryDecision::Stop;
    }
    match retry_after {
        Some(wait) if wait > policy.max_retry_after => RetryDecision::Stop,
        Some(wait) => RetryDecision::Retry(wait),
        None => RetryDecision::Retry(backoff_delay(
            policy,
            attempts_made.saturating_sub(1),
            jitter,
        )),
    }
}

/// The wait before retry number `retry_number` (0 for the first retry): exponential,
/// capped, with "equal jitter" (half fixed, half scaled by `jitter` in `[0, 1]`).
pub fn backoff_delay(policy: &RetryPolicy, retry_number: u32, jitter: f64) -> Duration {
    let factor = 2u32.saturating_pow(retry_number.min(20));
    let exponential = policy
        .base_delay
        .saturating_mul(factor)
        .min(policy.max_delay);
    let half = exponential / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// The wait after poll number `poll_number` (0 after the first poll).
pub fn poll_interval(policy: &PollPolicy, poll_number: u32) -> Duration {
    let grown = policy
        .initial_interval
        .mul_f64(1.5f64.powi(poll_number.min(40) as i32));
    grown.min(policy.max_interval)
}

/// Parses a `Retry-After` header value (delay-seconds or an HTTP-date) into a wait
/// relative to `now`. A date in the past means no wait.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    let date = SystemTime::from(date);
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The moment `wait` after `now`: when a CA's `Retry-After` lets it be asked again. A wait
/// beyond the last moment `time` can represent (the end of the year 9999) ends there, so a
/// CA sending an absurd delay-seconds value means "not in this lifetime", never a panic.
pub fn retry_moment(now: OffsetDateTime, wait: Duration) -> OffsetDateTime {
    time::Duration::try_from(wait)
        .ok()
        .and_then(|wait| now.checked_add(wait))
        .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
        }
    }

    fn status(status: u16, retry_after: Option<u64>) -> AttemptOutcome {
        AttemptOutcome::Status {
            status,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy();
        let full: Vec<u64> = (0..6)
            .map(|n| backoff_delay(&p, n, 1.0).as_secs())
            .collect();
        assert_eq!(full, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff_delay(&p, 3, 0.0), Duration::from_secs(4));
        assert_eq!(backoff_delay(&p, 3, 0.5), Duration::from_secs(6));
        assert_eq!(backoff_delay(&p, u32::MAX, 1.0), Duration::from_secs(10));
    }

    #[test]
    fn jitter_outside_unit_interval_is_clamped() {
        let p = policy();
        assert_eq!(backoff_delay(&p, 1, -3.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(&p, 1, 7.0), Duration::from_secs(2));
    }

    #[test]
    fn success_and_client_errors_are_never_retried() {
        for code in [200, 201, 204, 400, 401, 403, 404] {
            assert_eq!(
                decide(&policy(), 1, status(code, None), 0.5),
                RetryDecision::Stop
            );
        }
    }

    #[test]
    fn server_errors_and_network_errors_back_off_until_attempts_run_out() {
        let p = policy();
        assert_eq!(
            decide(&p, 1, status(503, None), 1.0),
            RetryDecision::Retry(Duration::from_secs(1))
        );
        assert_eq!(
            decide(&p, 3, AttemptOutcome::NetworkError, 1.0),
            RetryDecision::Retry(Duration::from_secs(4))
        );
        assert_eq!(decide(&p, 4, status(500, None), 1.0), RetryDecision::Stop);
        assert_eq!(
            decide(&p, 4, AttemptOutcome::NetworkError, 1.0),
            RetryDecision::Stop
        );
    }

    #[test]
    fn rate_limiting_honours_short_retry_after_and_gives_up_on_long_ones() {
        let p = policy();
        assert_eq!(
            decide(&p, 1, status(429, Some(7)), 0.0),
            RetryDecision::Retry(Duration::from_secs(7))
        );
        assert_eq!(
            decide(&p, 1, status(429, Some(3600)), 0.0),
            RetryDecision::Stop
        );
        assert_eq!(
            decide(&p, 2, status(429, None), 1.0),
            RetryDecision::Retry(Duration::from_secs(2))
        );
    }

    #[test]
    fn poll_interval_grows_by_half_and_is_capped() {
        let p = PollPolicy {
            initial_interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
        };
        assert_eq!(poll_interval(&p, 0), Duration::from_secs(2));
        assert_eq!(poll_interval(&p, 1), Duration::from_secs(3));
        assert_eq!(poll_interval(&p, 2), Duration::from_millis(4500));
        assert_eq!(poll_interval(&p, 3), Duration::from_secs(5));
        assert_eq!(poll_interval(&p, u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn the_default_poll_asks_again_within_a_tenth_of_a_second_then_backs_off() {
        let p = PollPolicy::default();
        assert!(
            poll_interval(&p, 0) <= Duration::from_millis(100),
            "first re-poll after {:?}",
            poll_interval(&p, 0)
        );
        // An order that takes the whole poll timeout still costs few requests.
        let mut waited = Duration::ZERO;
        let mut polls = 0;
        while waited < p.timeout {
            waited += poll_interval(&p, polls);
            polls += 1;
        }
        assert!(polls <= 40, "{polls} polls in {:?}", p.timeout);
        assert_eq!(poll_interval(&p, 40), p.max_interval);
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_767); // 08:49:27 GMT
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_moment_adds_the_wait_and_ends_at_the_last_representable_moment() {
        let now = time::macros::datetime!(2026-12-03 07:00 UTC);
        assert_eq!(
            retry_moment(now, Duration::from_secs(60)),
            time::macros::datetime!(2026-12-03 07:01 UTC)
        );
        let last = time::PrimitiveDateTime::MAX.assume_utc();
        assert_eq!(
            retry_moment(now, Duration::from_secs(999_999_999_999)),
            last
        );
        assert_eq!(retry_moment(now, Duration::MAX), last);
    }
}
