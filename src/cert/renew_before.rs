//! When to renew, as configured: a fixed time or a share of the lifetime before expiry.

/// How long before expiry to renew.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RenewBefore {
    /// A fixed time before notAfter (cert-manager `renewBefore`).
    Duration(std::time::Duration),
    /// This percentage of the actual lifetime before notAfter, in (0, 100)
    /// (cert-manager `renewBeforePercentage`).
    Percentage(f64),
    /// One third of the lifetime; one half for lifetimes of 10 days or less.
    Default,
}

/// A `renew_before` that cannot work with the certificate duration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RenewBeforeError {
    /// `renew_before` is not shorter than the certificate duration.
    #[error(
        "renew_before ({renew_before}) must be shorter than the certificate duration ({duration}), or every certificate is renewed as soon as it is issued"
    )]
    RenewBeforeTooLong {
        /// The configured renew_before, human-readable.
        renew_before: String,
        /// The configured duration, human-readable.
        duration: String,
    },
    /// `renew_before` is zero: the certificate would be renewed as it expires.
    #[error("renew_before must be longer than zero")]
    RenewBeforeZero,
    /// The percentage is outside (0, 100).
    #[error("renew_before_percentage must be between 0 and 100 (exclusive), not {0}")]
    PercentageOutOfRange(f64),
}

impl RenewBefore {
    /// Checks `self` against the requested certificate `duration` (at config load).
    pub fn validate(&self, duration: std::time::Duration) -> Result<(), RenewBeforeError> {
        match *self {
            RenewBefore::Duration(d) if d.is_zero() => Err(RenewBeforeError::RenewBeforeZero),
            RenewBefore::Duration(d) if d >= duration => {
                Err(RenewBeforeError::RenewBeforeTooLong {
                    renew_before: compact_duration(d),
                    duration: compact_duration(duration),
                })
            }
            RenewBefore::Percentage(p) if !(p > 0.0 && p < 100.0) => {
                Err(RenewBeforeError::PercentageOutOfRange(p))
            }
            _ => Ok(()),
        }
    }
}

/// `90d`, `12h`, `1d12h`, `30m`, `45s`.
pub(crate) fn compact_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let text: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() { "0s".into() } else { text }
}

#[cfg(test)]
mod tests {
    use std::time::Duration as StdDuration;

    use super::*;

    #[test]
    fn validate_rejects_a_renew_before_as_long_as_the_duration() {
        let days = |n: u64| StdDuration::from_secs(n * 86_400);
        let err = RenewBefore::Duration(days(90))
            .validate(days(90))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "renew_before (90d) must be shorter than the certificate duration (90d), or every certificate is renewed as soon as it is issued"
        );
        assert!(RenewBefore::Duration(days(30)).validate(days(90)).is_ok());
        assert_eq!(
            RenewBefore::Duration(StdDuration::ZERO).validate(days(90)),
            Err(RenewBeforeError::RenewBeforeZero)
        );
        assert!(RenewBefore::Percentage(100.0).validate(days(90)).is_err());
        assert!(
            RenewBefore::Percentage(f64::NAN)
                .validate(days(90))
                .is_err()
        );
        assert!(RenewBefore::Percentage(33.0).validate(days(90)).is_ok());
        assert!(RenewBefore::Default.validate(days(6)).is_ok());
    }

    #[test]
    fn durations_print_compactly() {
        assert_eq!(
            compact_duration(StdDuration::from_secs(36 * 3600 + 90)),
            "1d12h1m30s"
        );
        assert_eq!(compact_duration(StdDuration::ZERO), "0s");
    }
}
