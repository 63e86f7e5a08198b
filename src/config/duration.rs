//! Durations as written in the configuration: `500ms`, `30s`, `5m`, `720h`, `90d`, `1h30m`.

use std::fmt;
use std::time::Duration;

use crate::config::invalid_input::InvalidInput;

/// A duration string that could not be parsed. The message quotes the input and says what
/// to write instead.
pub type DurationError = InvalidInput<DurationProblem>;

/// What exactly is wrong with a duration string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationProblem {
    /// Nothing was written.
    #[error("empty; write a number and a unit, e.g. 30s")]
    Empty,
    /// A leading minus sign.
    #[error("negative durations are not allowed")]
    Negative,
    /// The whole input is a number without a unit.
    #[error("missing unit; write {number}s, not {number}")]
    BareNumber {
        /// The number as written.
        number: String,
    },
    /// A number at the end of a compound duration has no unit.
    #[error("missing unit after {number} (use ms, s, m, h or d)")]
    MissingUnit {
        /// The number as written.
        number: String,
    },
    /// A unit other than ms, s, m, h, d.
    #[error("unknown unit {unit:?} (use ms, s, m, h or d)")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// A character that is neither a digit nor a unit letter, or a unit without a number.
    #[error("unexpected {found:?}; write whole numbers with units, e.g. 1h30m")]
    Unexpected {
        /// The offending character.
        found: char,
    },
    /// The value does not fit.
    #[error("too large")]
    Overflow,
}

/// The units certinel accepts, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a duration: one or more `NUMBER UNIT` groups, units `ms`, `s`, `m`, `h` and `d`.
///
/// Whole numbers only; groups add up (`1h30m` is 90 minutes). A bare number is rejected
/// because `30` could mean seconds or minutes.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    parse_millis(s)
        .map(Duration::from_millis)
        .map_err(|problem| InvalidInput::new("duration", s, problem))
}

/// Formats `d` in the shortest form [`parse_duration`] reads back (`90m`, `1h1s`, `30d`).
///
/// Sub-millisecond parts are dropped; zero is `0s`.
pub fn format_duration(d: Duration) -> String {
    let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return "0s".to_owned();
    }
    shortest(millis, 0)
}

/// A [`Duration`] read from the configuration through [`parse_duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConfigDuration(pub(crate) Duration);

impl<'de> serde::Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }
}

struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = ConfigDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"30s\" or \"1h30m\"")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_duration(v).map(ConfigDuration).map_err(E::custom)
    }

    // A TOML integer is the most likely mistake; say how to write it instead.
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "invalid duration {v}: missing unit; write \"{v}s\" (a quoted string), not {v}"
        )))
    }
}

fn parse_millis(s: &str) -> Result<u64, DurationProblem> {
    if s.is_empty() {
        return Err(DurationProblem::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationProblem::Negative);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, after_number) = rest.split_at(digits_end);
        if number.is_empty() {
            // The loop only continues while `rest` is non-empty, so a first char exists.
            let found = after_number.chars().next().unwrap_or(' ');
            return Err(DurationProblem::Unexpected { found });
        }
        let unit_end = after_number
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_end);
        if unit.is_empty() {
            return Err(match after_number.chars().next() {
                None if total == 0 && rest.len() == s.len() => DurationProblem::BareNumber {
                    number: number.to_owned(),
                },
                None => DurationProblem::MissingUnit {
                    number: number.to_owned(),
                },
                Some(found) => DurationProblem::Unexpected { found },
            });
        }
        let Some(&(_, unit_millis)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationProblem::UnknownUnit {
                unit: unit.to_owned(),
            });
        };
        let count: u64 = number.parse().map_err(|_| DurationProblem::Overflow)?;
        total = count
            .checked_mul(unit_millis)
            .and_then(|millis| total.checked_add(millis))
            .ok_or(DurationProblem::Overflow)?;
        rest = after_unit;
    }
    Ok(total)
}

/// The shortest rendering of `millis` using units from `UNITS[first_unit..]`.
///
/// At each step either the next unit takes as much as it can, or it is skipped; with five
/// units that is at most 32 candidates, and `ms` always finishes the job.
fn shortest(millis: u64, first_unit: usize) -> String {
    if millis == 0 {
        return String::new();
    }
    let mut best: Option<String> = None;
    for (index, (name, unit_millis)) in UNITS.iter().enumerate().skip(first_unit) {
        let count = millis / unit_millis;
        if count == 0 {
            continue;
        }
        let candidate = format!("{count}{name}{}", shortest(millis % unit_millis, index + 1));
        // Strictly shorter only: on a tie the larger unit, tried first, wins.
        if best.as_ref().is_none_or(|b| candidate.len() < b.len()) {
            best = Some(candidate);
        }
    }
    best.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::invalid_input::{parsed, refusal};

    fn ok(s: &str) -> Duration {
        parsed(s, parse_duration)
    }

    fn err(s: &str) -> String {
        refusal(s, parse_duration)
    }

    #[test]
    fn each_unit_parses() {
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("720h"), Duration::from_secs(720 * 3600));
        assert_eq!(ok("90d"), Duration::from_secs(90 * 86_400));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn compound_durations_add_up() {
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1d2h3m4s5ms"), Duration::from_millis(93_784_005));
    }

    #[test]
    fn bad_durations_say_what_to_write() {
        assert_eq!(
            err(""),
            r#"invalid duration "": empty; write a number and a unit, e.g. 30s"#
        );
        assert_eq!(
            err("-5s"),
            r#"invalid duration "-5s": negative durations are not allowed"#
        );
        assert_eq!(
            err("30"),
            r#"invalid duration "30": missing unit; write 30s, not 30"#
        );
        assert_eq!(
            err("1h30"),
            r#"invalid duration "1h30": missing unit after 30 (use ms, s, m, h or d)"#
        );
        assert_eq!(
            err("30x"),
            r#"invalid duration "30x": unknown unit "x" (use ms, s, m, h or d)"#
        );
        assert_eq!(
            err("1.5h"),
            r#"invalid duration "1.5h": unexpected '.'; write whole numbers with units, e.g. 1h30m"#
        );
        assert_eq!(
            err("1h 30m"),
            r#"invalid duration "1h 30m": unexpected ' '; write whole numbers with units, e.g. 1h30m"#
        );
        assert_eq!(
            err("h"),
            r#"invalid duration "h": unexpected 'h'; write whole numbers with units, e.g. 1h30m"#
        );
    }

    #[test]
    fn overflow_is_rejected_not_wrapped() {
        assert_eq!(
            err("99999999999999999999s"),
            r#"invalid duration "99999999999999999999s": too large"#
        );
        assert_eq!(
            err("999999999999999d"),
            r#"invalid duration "999999999999999d": too large"#
        );
    }

    #[test]
    fn format_picks_the_shortest_form() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(5400), "90m"),
            (Duration::from_secs(3660), "61m"),
            (Duration::from_secs(3601), "1h1s"),
            (Duration::from_secs(36 * 3600), "36h"),
            (Duration::from_secs(720 * 3600), "30d"),
            (Duration::from_secs(86_400 + 1), "1d1s"),
        ];
        for (duration, expected) in cases {
            assert_eq!(format_duration(duration), expected, "{duration:?}");
        }
    }

    #[test]
    fn format_round_trips_through_parse() {
        for millis in [1, 999, 1000, 61_000, 3_599_999, 86_400_000, 93_784_005] {
            let d = Duration::from_millis(millis);
            assert_eq!(ok(&format_duration(d)), d, "{millis}ms");
        }
    }
}
