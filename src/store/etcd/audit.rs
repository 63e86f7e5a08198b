//! The audit log in etcd: one key per event, `P/audit/TIME-MEMBER-SEQ`, so replicas
//! append without contending and a range read returns the events in time order. Private
//! keys are redacted from every text field as in the file log.
//!
//! Retention: because keys sort by time, every event older than a moment lies in one key
//! range, `[P/audit/, P/audit/TIME)`, and one DeleteRange request removes it however many
//! keys it holds. A replica with a retention ([`EtcdStore::with_audit_retention`]) sends
//! that request on its first append and then at most once per [`PRUNE_INTERVAL`] of event
//! time, never a scan; a failed prune is logged and tried again on the next append.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use etcd_client::DeleteOptions;
use time::OffsetDateTime;

use crate::store::StoreError;
use crate::store::audit::{AuditEvent, AuditHistory, audit_line};
use crate::store::etcd::keys::Keys;
use crate::store::etcd::retry::Repeat;
use crate::store::etcd::{EtcdStore, Shared};

/// The least event time between two prunes of one replica.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// How long audit events are kept, and when this replica last deleted older ones.
#[derive(Debug, Default)]
pub(crate) struct AuditRetention {
    state: Mutex<RetentionState>,
}

#[derive(Debug, Default)]
struct RetentionState {
    /// `None`: events are kept forever.
    keep: Option<Duration>,
    /// The event time of the last prune this replica sent.
    last_pruned: Option<OffsetDateTime>,
}

impl EtcdStore {
    /// Keeps audit events for `keep` (by their time): older ones are deleted in one range
    /// request on the first append, then at most once per [`PRUNE_INTERVAL`].
    pub fn with_audit_retention(self, keep: Duration) -> EtcdStore {
        self.shared.audit_retention.state().keep = Some(keep);
        self
    }
}

impl AuditRetention {
    fn state(&self) -> std::sync::MutexGuard<'_, RetentionState> {
        // Two plain values: a panic elsewhere cannot leave them half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The moment to delete events before, when a prune is due at event time `now`; the
    /// prune counts as sent.
    fn due(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let mut state = self.state();
        let cutoff = prune_cutoff(state.keep, state.last_pruned, now)?;
        state.last_pruned = Some(now);
        Some(cutoff)
    }

    /// Forgets the last prune (it failed), so the next append tries again.
    fn failed(&self) {
        self.state().last_pruned = None;
    }
}

/// Whether a prune is due at `now` and, if so, the moment before which events go: with a
/// retention, on the first append and once [`PRUNE_INTERVAL`] of event time has passed
/// (either way, so a clock set back does not stop pruning).
fn prune_cutoff(
    keep: Option<Duration>,
    last_pruned: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let keep = keep?;
    if let Some(last) = last_pruned {
        if (now - last).unsigned_abs() < PRUNE_INTERVAL {
            return None;
        }
    }
    now.checked_sub(time::Duration::try_from(keep).ok()?)
}

/// The first key of an event at `moment`: every event before it sorts below, every event
/// at or after it above (`P/audit/TIME`, the time's fixed-width part of the key alone).
fn first_key_at(keys: &Keys, moment: OffsetDateTime) -> String {
    let key = keys.audit_event(moment, "", 0);
    // The time part ends with `Z`, before the `-MEMBER-SEQ` that follows it.
    let time_end = key[keys.audit().len()..]
        .find('Z')
        .map_or(key.len(), |at| keys.audit().len() + at + 1);
    key[..time_end].to_owned()
}

impl Shared {
    /// Writes `event` under a key of its own, then deletes the events past the retention
    /// when a prune is due.
    pub(crate) fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let sequence = self.audit_sequence.fetch_add(1, Ordering::SeqCst);
        let key = self.keys.audit_event(event.time, &self.member, sequence);
        let line = audit_line(event).map_err(|source| StoreError::Json {
            path: key.clone().into(),
            source,
        })?;
        let owned = key.clone();
        let value = line.trim_end().as_bytes().to_vec();
        // The same key and value however often it lands.
        self.request("put", &key, Repeat::Idempotent, move |mut client| {
            let (owned, value) = (owned.clone(), value.clone());
            async move { client.put(owned, value, None).await }
        })?;
        if let Some(cutoff) = self.audit_retention.due(event.time) {
            match self.prune_audit(cutoff) {
                Ok(deleted) => {
                    tracing::debug!(member = %self.member, deleted, before = %cutoff, "deleted audit events past the retention")
                }
                Err(error) => {
                    self.audit_retention.failed();
                    tracing::warn!(member = %self.member, %error, "deleting old audit events failed; trying again on the next event");
                }
            }
        }
        Ok(())
    }

    /// Deletes every audit event older than `before`: one DeleteRange request.
    pub(crate) fn prune_audit(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let start = self.keys.audit();
        let end = first_key_at(&self.keys, before);
        let owned = start.clone();
        let response = self.request("delete", &start, Repeat::Idempotent, move |mut client| {
            let owned = owned.clone();
            let options = DeleteOptions::new().with_range(end.clone());
            async move { client.delete(owned, Some(options)).await }
        })?;
        Ok(u64::try_from(response.deleted()).unwrap_or(0))
    }

    /// Every event, in key order; values that are not events are numbered from 1.
    pub(crate) fn audit_history(&self) -> Result<AuditHistory, StoreError> {
        let mut history = AuditHistory::default();
        for (index, entry) in self.range(&self.keys.audit())?.into_iter().enumerate() {
            match serde_json::from_slice(&entry.value) {
                Ok(event) => history.events.push(event),
                Err(_) => history.unreadable_lines.push(index + 1),
            }
        }
        Ok(history)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn without_a_retention_nothing_is_ever_pruned() {
        assert_eq!(
            prune_cutoff(None, None, datetime!(2026-01-01 0:00 UTC)),
            None
        );
    }

    #[test]
    fn a_prune_is_due_on_the_first_append_then_once_an_hour_of_event_time() {
        let now = datetime!(2026-03-01 12:00 UTC);
        let keep = Some(90 * DAY);
        assert_eq!(
            prune_cutoff(keep, None, now),
            Some(datetime!(2025-12-01 12:00 UTC))
        );
        let last = Some(now);
        assert_eq!(
            prune_cutoff(keep, last, now + time::Duration::minutes(59)),
            None
        );
        assert_eq!(
            prune_cutoff(keep, last, now + time::Duration::hours(1)),
            Some(datetime!(2025-12-01 13:00 UTC))
        );
        // A clock set back a day does not stop pruning.
        assert!(prune_cutoff(keep, last, now - time::Duration::days(1)).is_some());
    }

    #[test]
    fn the_range_end_splits_events_at_the_cutoff_whatever_their_member() {
        let keys = Keys::new("/p/");
        let cutoff = datetime!(2026-01-01 10:00 UTC);
        let end = first_key_at(&keys, cutoff);
        assert_eq!(end, "/p/audit/20260101T100000.000000000Z");
        let just_before = keys.audit_event(datetime!(2026-01-01 9:59:59.999999999 UTC), "zz", 999);
        let at = keys.audit_event(cutoff, "-", 0);
        let after = keys.audit_event(datetime!(2026-01-01 10:00:00.000000001 UTC), "a", 0);
        assert!(keys.audit() <= just_before && just_before < end);
        assert!(end < at && at < after);
    }
}
