//! The audit log in etcd: one key per event, `P/audit/TIME-MEMBER-SEQ`, so replicas
//! append without contending and a range read returns the events in time order. Private
//! keys are redacted from every text field as in the file log.

use std::sync::atomic::Ordering;

use crate::store::StoreError;
use crate::store::audit::{AuditEvent, AuditHistory, audit_line};
use crate::store::etcd::Shared;
use crate::store::etcd::retry::Repeat;

impl Shared {
    /// Writes `event` under a key of its own.
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
        Ok(())
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
