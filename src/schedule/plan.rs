//! The renewal decision. Pure: time, the random draw and every fact come in as inputs;
//! nothing here reads the clock, an RNG, a file or a socket.
//!
//! The decision has two halves. First, when the certificate *should* be renewed: at once
//! when it is missing, expired, no longer matches the wanted names or key type, or was
//! found revoked; else at
//! the renewal window computed from the certificate actually issued (or from the CA's
//! suggested window, ARI). Second, when the CA *allows* another attempt: after a backoff
//! (5 min doubling to 24 h) following failures, after any Retry-After, and never while an
//! identifier has had 5 failed authorizations in the last hour. The later of the two wins.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::cert::{KeyType, RenewBefore};
use crate::schedule::ari::AriChoice;
use crate::schedule::history::{FAILED_AUTHORIZATION_WINDOW, ScheduleState};
use crate::store::metadata::VersionMetadata;
use crate::store::version_check::{VersionFacts, name_covered};

/// First retry delay after a failure.
pub const BACKOFF_BASE: Duration = Duration::minutes(5);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::hours(24);
/// Let's Encrypt's limit: failed authorizations per identifier per rolling hour.
pub const MAX_FAILED_AUTHORIZATIONS_PER_HOUR: usize = 5;

/// The renewal policy of one certificate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// When to renew.
    pub renew_before: RenewBefore,
    /// Up to this fraction of the renew-before period is taken off at random, so a fleet
    /// does not renew at the same instant. Clamped to [0, 1].
    pub jitter_fraction: f64,
    /// The first retry delay after a failure, doubling per further failure up to
    /// [`BACKOFF_CAP`]. [`BACKOFF_BASE`] unless a test or a small private CA sets it lower.
    pub backoff_base: Duration,
}

/// The facts of the live certificate the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentCert {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// DNS names it covers.
    pub dns_names: Vec<String>,
    /// Its key type.
    pub key_type: KeyType,
}

/// Which rule placed the renewal window; serialised as [`Rule::as_str`] spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The CA's suggested window (ARI), bounded by the safety floor.
    Ari,
    /// The configured `renew_before` (or its default share of the lifetime).
    RenewBefore,
}

impl Rule {
    /// The label value: `ari` or `renew_before`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Ari => "ari",
            Rule::RenewBefore => "renew_before",
        }
    }
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The present moment.
    pub now: OffsetDateTime,
    /// The live certificate, if there is one.
    pub current: Option<&'a CurrentCert>,
    /// The renewal policy.
    pub policy: &'a Policy,
    /// Names the certificate must cover.
    pub wanted_names: &'a [String],
    /// Key type the certificate must have.
    pub wanted_key_type: KeyType,
    /// Failures and limits remembered between runs.
    pub state: &'a ScheduleState,
    /// The CA's suggested window and the moment chosen in it; when present it replaces the
    /// policy's window.
    pub ari: Option<AriChoice>,
    /// A random value in [0, 1) (clamped) for the policy's jitter, drawn once per
    /// certificate by the caller.
    pub random: f64,
    /// The last CRL check found the live certificate revoked: it is due at once, whatever
    /// its window (the backoff and the CA's limits still hold).
    pub revoked: bool,
}

/// When to renew next, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Renew at this moment (never before `now`; equal to `now` means at once).
    pub renew_at: OffsetDateTime,
    /// Why then.
    pub reason: Reason,
    /// Which rule placed the renewal window.
    pub rule: Rule,
    /// Renewals failed in a row; non-zero keeps a failing certificate visible.
    pub consecutive_failures: u32,
}

/// Why a renewal happens when it does; serialised as [`Reason::as_str`] spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// There is no certificate.
    Missing,
    /// The certificate has expired.
    Expired,
    /// It does not cover every wanted name.
    NamesChanged,
    /// Its key type is not the wanted one.
    KeyTypeChanged,
    /// Its renewal window has opened.
    WindowOpen,
    /// Its renewal window opens at `renew_at`.
    Scheduled,
    /// Waiting out the exponential backoff after failures.
    Backoff,
    /// Waiting for the CA's Retry-After.
    RetryAfter,
    /// An identifier hit the failed-authorization limit.
    RateLimited,
    /// The current version's rollout failed and nothing older could replace it.
    RolloutFailed,
    /// Its CA revoked it (found in a CRL its distribution points name).
    Revoked,
}

impl Reason {
    /// A stable name: `missing`, `expired`, `names_changed`, `key_type_changed`,
    /// `window_open`, `scheduled`, `backoff`, `retry_after`, `rate_limited`,
    /// `rollout_failed`, `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Expired => "expired",
            Reason::NamesChanged => "names_changed",
            Reason::KeyTypeChanged => "key_type_changed",
            Reason::WindowOpen => "window_open",
            Reason::Scheduled => "scheduled",
            Reason::Backoff => "backoff",
            Reason::RetryAfter => "retry_after",
            Reason::RateLimited => "rate_limited",
            Reason::RolloutFailed => "rollout_failed",
            Reason::Revoked => "revoked",
        }
    }
}

/// A limit of the CA that holds off any attempt, forced or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaGate {
    /// No attempt before this moment.
    pub until: OffsetDateTime,
    /// [`Reason::RetryAfter`] or [`Reason::RateLimited`].
    pub reason: Reason,
}

impl From<&VersionMetadata> for CurrentCert {
    fn from(meta: &VersionMetadata) -> CurrentCert {
        CurrentCert {
            not_before: meta.not_before,
            not_after: meta.not_after,
            dns_names: meta.dns_names.clone(),
            key_type: meta.key_type,
        }
    }
}

impl From<&VersionFacts> for CurrentCert {
    fn from(facts: &VersionFacts) -> CurrentCert {
        CurrentCert {
            not_before: facts.not_before,
            not_after: facts.not_after,
            dns_names: facts.dns_names.clone(),
            key_type: facts.key_type,
        }
    }
}

/// Decides when to renew.
pub fn plan(input: &PlanInput<'_>) -> Decision {
    let (due, due_reason) = due(input);
    let rule = if input.ari.is_some() {
        Rule::Ari
    } else {
        Rule::RenewBefore
    };
    let gate = [
        (
            backoff_until(input.state, input.policy.backoff_base),
            Reason::Backoff,
        ),
        (input.state.retry_after, Reason::RetryAfter),
        (
            rate_limited_until(input.now, input.state, input.wanted_names),
            Reason::RateLimited,
        ),
    ]
    .into_iter()
    .filter_map(|(until, reason)| until.map(|t| (t, reason)))
    // On a tie the later entry wins, so the most specific reason is reported.
    .max_by_key(|(until, _)| *until);
    let (renew_at, reason) = match gate {
        Some((until, reason)) if until > due => (until, reason),
        _ => (due, due_reason),
    };
    Decision {
        renew_at,
        reason,
        rule,
        consecutive_failures: input.state.consecutive_failures,
    }
}

/// The CA's limits at `now`, which even `certinel renew --force` honours (it skips only the
/// renewal window and certinel's own backoff): the CA's Retry-After, and the
/// failed-authorization limit (5 per identifier per hour) for `wanted_names`. The later of
/// the two when both hold; `None` when an attempt is allowed now.
pub fn ca_gate(
    now: OffsetDateTime,
    state: &ScheduleState,
    wanted_names: &[String],
) -> Option<CaGate> {
    [
        (state.retry_after, Reason::RetryAfter),
        (
            rate_limited_until(now, state, wanted_names),
            Reason::RateLimited,
        ),
    ]
    .into_iter()
    .filter_map(|(until, reason)| until.map(|until| CaGate { until, reason }))
    .filter(|gate| gate.until > now)
    .max_by_key(|gate| gate.until)
}

/// When the certificate should be renewed if nothing stood in the way (never before now).
fn due(input: &PlanInput<'_>) -> (OffsetDateTime, Reason) {
    let now = input.now;
    let Some(cert) = input.current else {
        return (now, Reason::Missing);
    };
    if now >= cert.not_after {
        return (now, Reason::Expired);
    }
    if !input
        .wanted_names
        .iter()
        .all(|name| name_covered(name, &cert.dns_names))
    {
        return (now, Reason::NamesChanged);
    }
    if cert.key_type != input.wanted_key_type {
        return (now, Reason::KeyTypeChanged);
    }
    // Revoked: clients may refuse it any moment, so no window (not even the CA's own ARI
    // window) may hold the renewal back.
    if input.revoked {
        return (now, Reason::Revoked);
    }
    // The live version never rolled out (its deploy commands or verification failed on a
    // first issuance): valid as it is, it is retried like any failure, not at its window.
    if input.state.rollout_failed {
        return (now, Reason::RolloutFailed);
    }
    let random = input.random.clamp(0.0, 1.0);
    let at = match input.ari {
        Some(choice) => ari_time(cert, choice),
        None => policy_time(cert, input.policy, random),
    };
    if at <= now {
        (now, Reason::WindowOpen)
    } else {
        (at, Reason::Scheduled)
    }
}

/// `not_after - renew_before - jitter`, from the certificate's actual lifetime.
fn policy_time(cert: &CurrentCert, policy: &Policy, random: f64) -> OffsetDateTime {
    let lifetime = cert.not_after - cert.not_before;
    let default = if lifetime <= Duration::days(10) {
        lifetime / 2
    } else {
        lifetime / 3
    };
    let renew_before = match policy.renew_before {
        RenewBefore::Duration(d) => Duration::try_from(d).unwrap_or(Duration::MAX),
        RenewBefore::Percentage(p) => lifetime * (p.clamp(0.0, 100.0) / 100.0),
        RenewBefore::Default => default,
    };
    // The CA may issue a shorter certificate than requested; a renew_before as long as the
    // actual lifetime would renew forever, so fall back to the default share.
    let renew_before = if renew_before >= lifetime || renew_before <= Duration::ZERO {
        default
    } else {
        renew_before
    };
    let jitter = renew_before * (policy.jitter_fraction.clamp(0.0, 1.0) * random);
    (cert.not_after - renew_before - jitter).max(cert.not_before)
}

/// The moment chosen in the CA's window, but no later than the safety floor: once less
/// than a twentieth of the lifetime remains the certificate is renewed whatever the CA
/// suggests (a window far out, or past expiry, must not let it lapse).
fn ari_time(cert: &CurrentCert, choice: AriChoice) -> OffsetDateTime {
    let lifetime = cert.not_after - cert.not_before;
    let floor = cert.not_after - lifetime / 20;
    choice.renew_at.min(floor)
}

/// The end of the backoff after `consecutive_failures` failures: base · 2^(n−1), ≤ 24 h
/// (base is 5 min by default).
fn backoff_until(state: &ScheduleState, base: Duration) -> Option<OffsetDateTime> {
    let last = state.last_failure_at?;
    let n = state.consecutive_failures;
    if n == 0 {
        return None;
    }
    // The exponent is bounded so 2^exponent fits an i32; the product saturates.
    let delay = base
        .max(Duration::ZERO)
        .saturating_mul(2_i32.pow((n - 1).min(30)));
    Some(last + delay.min(BACKOFF_CAP))
}

/// When every wanted identifier is back under the failed-authorization limit, if one is not.
fn rate_limited_until(
    now: OffsetDateTime,
    state: &ScheduleState,
    wanted_names: &[String],
) -> Option<OffsetDateTime> {
    let horizon = now - FAILED_AUTHORIZATION_WINDOW;
    wanted_names
        .iter()
        .filter_map(|name| {
            let times = state
                .failed_authorizations
                .get(&name.to_ascii_lowercase())?;
            let mut recent: Vec<OffsetDateTime> =
                times.iter().copied().filter(|t| *t > horizon).collect();
            if recent.len() < MAX_FAILED_AUTHORIZATIONS_PER_HOUR {
                return None;
            }
            recent.sort();
            // Attempts resume once the fifth-newest failure leaves the window.
            let fifth_newest = recent[recent.len() - MAX_FAILED_AUTHORIZATIONS_PER_HOUR];
            Some(fifth_newest + FAILED_AUTHORIZATION_WINDOW)
        })
        .max()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod gate_tests;
