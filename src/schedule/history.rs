//! The schedule state persisted per certificate (`NAME/schedule.json`): failures, backoff,
//! Retry-After, failed authorizations, the jitter draw and the CA's renewal information
//! (ARI), so a restart neither forgets a backoff nor renews early nor asks the CA too often.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::schedule::ari::AriState;
use crate::store::audit::redact_private_keys;
use crate::store::{Store, StoreError};

/// How long a failed authorization counts against an identifier's rate limit.
pub const FAILED_AUTHORIZATION_WINDOW: Duration = Duration::HOUR;

/// What the planner must remember between runs about one certificate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ScheduleState {
    /// Renewals failed in a row since the last success.
    pub consecutive_failures: u32,
    /// When the last renewal failed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_failure_at: Option<OffsetDateTime>,
    /// The last failure's message (private keys redacted), shown until a renewal works.
    pub last_error: Option<String>,
    /// The CA asked not to retry before this moment (HTTP 429/503 Retry-After).
    #[serde(with = "time::serde::rfc3339::option")]
    pub retry_after: Option<OffsetDateTime>,
    /// Failed authorizations per identifier within the last hour.
    #[serde(with = "rfc3339_map")]
    pub failed_authorizations: BTreeMap<String, Vec<OffsetDateTime>>,
    /// The random value drawn for the current certificate, reused until it is replaced so
    /// a restart computes the same renewal time.
    pub jitter: Option<JitterDraw>,
    /// When a renewal last succeeded (absent in files written before it existed).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success_at: Option<OffsetDateTime>,
    /// When a renewal was last attempted, successfully or not.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    /// What the CA last said about the current certificate's renewal (ARI), if it
    /// supports renewal information.
    pub ari: Option<AriState>,
    /// The current version's rollout failed (its deploy commands or verification) and it
    /// stayed current because there was nothing to roll back to; no rollout has worked
    /// since. The planner treats the certificate as due (after the backoff).
    pub rollout_failed: bool,
    /// Renewals failed in a row at each CA (by its name in the certificate's `ca` list) for
    /// reasons other than the CA being unable to serve; emptied by a success. Decides which
    /// CA the next attempt starts with (`renew::ca_choice`).
    pub ca_failures: BTreeMap<String, u32>,
    /// What the last CRL check of the current certificate found (`certinel run` checks it
    /// against the CRLs its leaf names). The planner renews a certificate revoked at once.
    pub revocation: Option<RevocationCheck>,
}

/// The verdict of the last CRL check of one certificate, tied to its serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationCheck {
    /// Serial of the certificate checked (lowercase hex, as in its metadata).
    pub serial: String,
    /// The distribution point whose CRL decided.
    pub url: String,
    /// When this verdict was first reached (a check that finds the same writes nothing).
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    /// When the CA revoked it; `None`: the CRL does not list it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// The CRL entry's reasonCode (RFC 5280 §5.3.1), when the CA gave one.
    pub reason_code: Option<u8>,
}

impl RevocationCheck {
    /// Whether `other` says the same about the same certificate, whenever it was reached.
    pub fn same_verdict(&self, other: &RevocationCheck) -> bool {
        (&self.serial, &self.url, self.revoked_at, self.reason_code)
            == (
                &other.serial,
                &other.url,
                other.revoked_at,
                other.reason_code,
            )
    }

    /// One line for people and the audit log: which CRL said what, and when.
    pub fn describe(&self) -> String {
        let reason = match self.reason_code {
            Some(code) => format!(", reason code {code}"),
            None => String::new(),
        };
        match self.revoked_at {
            Some(at) => format!(
                "serial {} revoked at {at} per {}{reason}",
                self.serial, self.url
            ),
            None => format!("serial {} not revoked per {}", self.serial, self.url),
        }
    }
}

/// A random value in [0, 1) tied to the certificate it was drawn for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JitterDraw {
    /// Serial of the certificate.
    pub serial: String,
    /// The value.
    pub value: f64,
}

impl ScheduleState {
    /// Records a failed renewal at `now`: the error, the CA's Retry-After if it sent one,
    /// and the identifiers whose authorization failed.
    pub fn record_failure(
        &mut self,
        now: OffsetDateTime,
        error: &str,
        retry_after: Option<OffsetDateTime>,
        failed_identifiers: &[String],
    ) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_failure_at = Some(now);
        self.last_attempt_at = Some(now);
        self.last_error = Some(redact_private_keys(error));
        self.retry_after = retry_after;
        for identifier in failed_identifiers {
            self.failed_authorizations
                .entry(identifier.to_ascii_lowercase())
                .or_default()
                .push(now);
        }
        self.forget_before(now);
    }

    /// Records a successful renewal: the failure streak and Retry-After end. Failed
    /// authorizations still count against the CA's hourly limit, so they stay.
    pub fn record_success(&mut self, now: OffsetDateTime) {
        self.consecutive_failures = 0;
        self.last_failure_at = None;
        self.last_success_at = Some(now);
        self.last_attempt_at = Some(now);
        self.last_error = None;
        self.retry_after = None;
        self.rollout_failed = false;
        self.forget_before(now);
    }

    /// Records that the version left current failed its rollout (first issuance: no
    /// previous version to restore). Call together with [`record_failure`](Self::record_failure).
    pub fn record_failed_rollout(&mut self) {
        self.rollout_failed = true;
    }

    /// The jitter value for the certificate with `serial`: the stored one when it was drawn
    /// for this certificate, else `fresh` (which is then stored).
    pub fn jitter_for(&mut self, serial: &str, fresh: f64) -> f64 {
        match &self.jitter {
            Some(draw) if draw.serial == serial => draw.value,
            _ => {
                self.jitter = Some(JitterDraw {
                    serial: serial.to_string(),
                    value: fresh,
                });
                fresh
            }
        }
    }

    /// The last CRL check of the certificate with `serial`, if its verdict is about it.
    pub fn revocation_of(&self, serial: &str) -> Option<&RevocationCheck> {
        self.revocation
            .as_ref()
            .filter(|check| check.serial == serial)
    }

    /// Whether the last CRL check found the certificate with `serial` revoked.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.revocation_of(serial)
            .is_some_and(|check| check.revoked_at.is_some())
    }

    /// Drops failed authorizations that no longer count at `now`.
    pub fn forget_before(&mut self, now: OffsetDateTime) {
        let horizon = now - FAILED_AUTHORIZATION_WINDOW;
        self.failed_authorizations.retain(|_, times| {
            times.retain(|t| *t > horizon);
            !times.is_empty()
        });
    }
}

/// Reads the state of certificate `name` from `store`; none saved yet is a fresh state.
pub fn load_from(store: &dyn Store, name: &str) -> Result<ScheduleState, StoreError> {
    match store.schedule_record(name)? {
        Some(record) => serde_json::from_slice(&record.bytes).map_err(|source| StoreError::Json {
            path: record.location,
            source,
        }),
        None => Ok(ScheduleState::default()),
    }
}

/// Saves the state of certificate `name` in `store`, replacing the old one at once.
pub fn save_to(store: &dyn Store, name: &str, state: &ScheduleState) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(state).map_err(|source| StoreError::Json {
        path: PathBuf::from(name),
        source,
    })?;
    store.save_schedule_record(name, &json)
}

mod rfc3339_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use time::OffsetDateTime;

    #[derive(Serialize, Deserialize)]
    struct Stamp(#[serde(with = "time::serde::rfc3339")] OffsetDateTime);

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, Vec<OffsetDateTime>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let stamped: BTreeMap<&String, Vec<Stamp>> = map
            .iter()
            .map(|(k, v)| (k, v.iter().copied().map(Stamp).collect()))
            .collect();
        stamped.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Vec<OffsetDateTime>>, D::Error> {
        let stamped = BTreeMap::<String, Vec<Stamp>>::deserialize(d)?;
        Ok(stamped
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|Stamp(t)| t).collect()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn state_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::FsStore::new(dir.path());
        let now = datetime!(2025-03-01 12:00 UTC);
        let mut state = ScheduleState::default();
        state.record_failure(
            now,
            "rate limited",
            Some(now + Duration::hours(2)),
            &["Example.com".into()],
        );
        state.jitter_for("0a1b", 0.25);
        save_to(&store, "api", &state).unwrap();
        assert_eq!(load_from(&store, "api").unwrap(), state);
        assert_eq!(state.failed_authorizations["example.com"], [now]);
    }

    #[test]
    fn a_file_written_before_the_attempt_times_existed_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::FsStore::new(dir.path());
        let written_before =
            r#"{"consecutive_failures": 2, "last_failure_at": "2025-03-01T12:00:00Z"}"#;
        store
            .save_schedule_record("api", written_before.as_bytes())
            .unwrap();
        let state = load_from(&store, "api").unwrap();
        assert_eq!(state.consecutive_failures, 2);
        assert_eq!(state.last_success_at, None);
        assert_eq!(state.last_attempt_at, None);
    }

    #[test]
    fn attempts_and_successes_are_timestamped() {
        let t1 = datetime!(2025-03-01 12:00 UTC);
        let t2 = datetime!(2025-03-01 13:00 UTC);
        let mut state = ScheduleState::default();
        state.record_success(t1);
        state.record_failure(t2, "down", None, &[]);
        assert_eq!(state.last_success_at, Some(t1));
        assert_eq!(state.last_attempt_at, Some(t2));
        state.record_success(t2);
        assert_eq!(state.last_success_at, Some(t2));
    }

    #[test]
    fn a_revocation_verdict_counts_only_for_the_serial_it_was_reached_for() {
        let state = ScheduleState {
            revocation: Some(RevocationCheck {
                serial: "0a".into(),
                url: "http://crl.test/1.crl".into(),
                checked_at: datetime!(2025-03-01 12:00 UTC),
                revoked_at: Some(datetime!(2025-03-01 11:00 UTC)),
                reason_code: Some(1),
            }),
            ..ScheduleState::default()
        };
        assert!(state.is_revoked("0a"));
        let mut later = state.revocation.clone().unwrap();
        later.checked_at += Duration::hours(1);
        assert!(later.same_verdict(state.revocation.as_ref().unwrap()));
        later.revoked_at = None;
        assert!(!later.same_verdict(state.revocation.as_ref().unwrap()));
        assert!(
            !state.is_revoked("0b"),
            "a renewed certificate is not revoked"
        );
        assert!(state.revocation_of("0b").is_none());
    }

    #[test]
    fn a_missing_file_is_a_fresh_state() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load_from(&crate::store::FsStore::new(dir.path()), "api").unwrap(),
            ScheduleState::default()
        );
    }

    #[test]
    fn success_ends_the_streak_but_keeps_recent_failed_authorizations() {
        let now = datetime!(2025-03-01 12:00 UTC);
        let mut state = ScheduleState::default();
        state.record_failure(
            now - Duration::minutes(90),
            "old",
            None,
            &["a.example".into()],
        );
        state.record_failure(
            now - Duration::minutes(10),
            "new",
            None,
            &["a.example".into()],
        );
        assert_eq!(state.consecutive_failures, 2);
        state.record_success(now);
        assert_eq!(state.consecutive_failures, 0);
        assert_eq!(state.last_error, None);
        assert_eq!(
            state.failed_authorizations["a.example"],
            [now - Duration::minutes(10)]
        );
    }

    #[test]
    fn a_failed_rollout_is_remembered_until_a_renewal_succeeds() {
        let now = datetime!(2025-03-01 12:00 UTC);
        let mut state = ScheduleState::default();
        state.record_failure(now, "deploy (hook): exit 1", None, &[]);
        state.record_failed_rollout();
        state.record_failure(now + Duration::minutes(5), "network", None, &[]);
        assert!(state.rollout_failed, "a later failure keeps it");
        state.record_success(now + Duration::minutes(20));
        assert!(!state.rollout_failed);
    }

    #[test]
    fn the_jitter_draw_is_kept_for_the_same_certificate_only() {
        let mut state = ScheduleState::default();
        assert_eq!(state.jitter_for("01", 0.3), 0.3);
        assert_eq!(state.jitter_for("01", 0.9), 0.3);
        assert_eq!(state.jitter_for("02", 0.9), 0.9);
    }

    #[test]
    fn a_key_in_a_failure_message_is_redacted_before_it_is_stored() {
        let mut state = ScheduleState::default();
        let error = "bad -----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----";
        state.record_failure(datetime!(2025-03-01 12:00 UTC), error, None, &[]);
        assert_eq!(
            state.last_error.as_deref(),
            Some("bad [redacted private key]")
        );
    }
}
