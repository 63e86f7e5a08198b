//! ACME Renewal Information (RFC 9773) bookkeeping, pure: what one answer from the CA's
//! `renewalInfo` resource (or its absence) does to the persisted ARI state — the window,
//! the moment drawn inside it and when to ask again. Time and the random draw come in as
//! parameters; the fetch itself happens in the renewer.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// A renewal window suggested by the CA (ACME Renewal Information, RFC 9773).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuggestedWindow {
    /// Renew no earlier than this.
    pub start: OffsetDateTime,
    /// Renew before this.
    pub end: OffsetDateTime,
}

/// The CA's window with the moment drawn inside it once per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AriChoice {
    /// The suggested window.
    pub window: SuggestedWindow,
    /// The moment chosen for the renewal (the present or earlier means at once).
    pub renew_at: OffsetDateTime,
}

/// The shortest wait before asking for renewal information again.
pub const MIN_POLL: Duration = Duration::MINUTE;
/// The longest wait before asking again, whatever Retry-After says.
pub const MAX_POLL: Duration = Duration::DAY;
/// The wait after an error, a missing or invalid Retry-After, or an unusable window.
pub const FALLBACK_POLL: Duration = Duration::hours(6);

/// Why one renewal information request brought no answer; the message is what
/// [`AriState::last_error`] keeps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AriFetchError {
    /// The ACME account could not be loaded, so the CA was not asked.
    #[error("cannot reach the ACME account: {0}")]
    Account(String),
    /// The CA did not answer, or answered with an error or a document that does not parse.
    #[error("{0}")]
    Request(String),
}

/// What the CA answered to one renewal information request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AriAnswer {
    /// The suggested window as sent (possibly with `end <= start`, which is unusable).
    pub window: SuggestedWindow,
    /// The Retry-After delay, when the header was present and valid.
    pub retry_after: Option<std::time::Duration>,
}

/// The persisted ARI state of one certificate (in `schedule.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriState {
    /// The ARI certificate identifier (`base64url(AKI).base64url(serial)`) it is about.
    pub cert_id: String,
    /// The last usable suggested window.
    #[serde(with = "time::serde::rfc3339::option")]
    pub window_start: Option<OffsetDateTime>,
    /// End of the last usable suggested window.
    #[serde(with = "time::serde::rfc3339::option")]
    pub window_end: Option<OffsetDateTime>,
    /// The moment chosen for the renewal, drawn once per window.
    #[serde(with = "time::serde::rfc3339::option")]
    pub renew_at: Option<OffsetDateTime>,
    /// When to ask the CA again.
    #[serde(with = "time::serde::rfc3339")]
    pub next_poll: OffsetDateTime,
    /// Why the last request gave no usable answer, if it did not.
    pub last_error: Option<String>,
    /// The page the CA linked to explain its suggested window (RFC 9773 section 4.2,
    /// `explanationURL`), from the last answer that had a window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation_url: Option<String>,
}

impl AriState {
    /// The usable window, if one was received.
    pub fn window(&self) -> Option<SuggestedWindow> {
        match (self.window_start, self.window_end) {
            (Some(start), Some(end)) if end > start => Some(SuggestedWindow { start, end }),
            _ => None,
        }
    }

    /// The window with its chosen moment, for the plan.
    pub fn choice(&self) -> Option<AriChoice> {
        Some(AriChoice {
            window: self.window()?,
            renew_at: self.renew_at?,
        })
    }

    /// Whether this state is about the certificate with `serial` (lowercase hex, as the
    /// store records it): the identifier's second half is the DER serial, base64url.
    pub fn is_for_serial(&self, serial: &str) -> bool {
        let Some((_, encoded)) = self.cert_id.split_once('.') else {
            return false;
        };
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(encoded) else {
            return false;
        };
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let trimmed = hex.trim_start_matches('0');
        let wanted = serial.trim_start_matches('0');
        trimmed.eq_ignore_ascii_case(wanted)
    }

    /// Whether the CA should be asked again at `now` about `cert_id`.
    pub fn poll_due(state: Option<&AriState>, cert_id: &str, now: OffsetDateTime) -> bool {
        match state {
            Some(state) if state.cert_id == cert_id => state.next_poll <= now,
            _ => true,
        }
    }
}

/// The ARI state after the CA answered `fetched` (or failed as the `Err` says) at
/// `now` about `cert_id`, given the `previous` state. `random` in [0, 1) places the renewal
/// inside a window seen for the first time.
///
/// A window seen before keeps its moment. A new window whose end comes before the moment
/// chosen earlier means the CA pulled the renewal in (as before a mass revocation): renew
/// at once, and so does a window that has already begun when first seen. An error or an unusable window keeps the last usable window and asks again in
/// six hours.
pub fn absorb(
    previous: Option<&AriState>,
    cert_id: &str,
    fetched: Result<AriAnswer, AriFetchError>,
    now: OffsetDateTime,
    random: f64,
) -> AriState {
    let previous = previous.filter(|state| state.cert_id == cert_id);
    let kept = |next_poll: OffsetDateTime, error: String| AriState {
        cert_id: cert_id.to_owned(),
        window_start: previous.and_then(|p| p.window_start),
        window_end: previous.and_then(|p| p.window_end),
        renew_at: previous.and_then(|p| p.renew_at),
        next_poll,
        last_error: Some(error),
        explanation_url: previous.and_then(|p| p.explanation_url.clone()),
    };
    let answer = match fetched {
        Ok(answer) => answer,
        Err(error) => return kept(now + FALLBACK_POLL, error.to_string()),
    };
    let window = answer.window;
    if window.end <= window.start {
        return kept(
            now + FALLBACK_POLL,
            format!(
                "the suggested window ends ({}) before it starts ({})",
                window.end, window.start
            ),
        );
    }
    let (next_poll, last_error) = match answer.retry_after {
        Some(delay) => {
            let delay = Duration::try_from(delay).unwrap_or(MAX_POLL);
            (now + delay.clamp(MIN_POLL, MAX_POLL), None)
        }
        None => (
            now + FALLBACK_POLL,
            Some("no valid Retry-After in the renewal information answer".to_owned()),
        ),
    };
    let previous_moment = previous.and_then(|p| {
        let moment = p.renew_at?;
        Some((p.window()?, moment))
    });
    let renew_at = match previous_moment {
        Some((seen, moment)) if seen == window => moment,
        Some((_, moment)) if window.end < moment => now,
        // RFC 9773 would draw inside a window that has begun too; renewing at once keeps a
        // certificate whose window opened while certinel was not asking from waiting more.
        _ if window.start <= now => now,
        _ => window.start + (window.end - window.start) * random.clamp(0.0, 1.0),
    };
    AriState {
        cert_id: cert_id.to_owned(),
        window_start: Some(window.start),
        window_end: Some(window.end),
        renew_at: Some(renew_at),
        next_poll,
        last_error,
        // The renewer fills it in from the answer.
        explanation_url: None,
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_state_belongs_to_the_certificate_whose_serial_is_in_the_identifier() {
        let state = AriState {
            // Serial 0x00a1b2 (DER keeps the leading zero byte).
            cert_id: "a2V5aWQ.AKGy".into(),
            window_start: None,
            window_end: None,
            renew_at: None,
            next_poll: datetime!(2025-01-01 0:00 UTC),
            explanation_url: None,
            last_error: None,
        };
        assert!(state.is_for_serial("a1b2"));
        assert!(!state.is_for_serial("a1b3"));
    }
}
