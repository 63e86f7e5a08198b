//! The renewal in flight in etcd (`P/certs/NAME/inflight`): created only when absent,
//! changed by compare-and-swap on its revision, every write fenced by the lock. The saved
//! private key is sealed; the record names the replica that wrote it, because a deploy
//! command's process group only means something on its own host.

use etcd_client::TxnOp;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::StoreError;
use crate::store::etcd::Shared;
use crate::store::etcd::cert_state::{decode, parse_json, seal, to_json};
use crate::store::etcd::txn::{Entry, Plan, unchanged};
use crate::store::inflight::{HookProcess, Inflight, SecretPem};
use crate::store::sealed::SealError;

/// The in-flight value: the record without its key, the key sealed, and who wrote it.
#[derive(Debug, Serialize, Deserialize)]
struct InflightDoc {
    #[serde(flatten)]
    record: Inflight,
    /// The saved private key sealed under the value's key name, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_sealed: Option<String>,
    /// The replica that wrote the record.
    member: String,
}

impl Shared {
    /// The renewal in flight for `name`, if any.
    pub(crate) fn inflight(&self, name: &str) -> Result<Option<Inflight>, StoreError> {
        match self.get(&self.keys.inflight(name)?)? {
            Some(entry) => Ok(Some(self.open_inflight(&entry)?)),
            None => Ok(None),
        }
    }

    /// Records that a renewal starts; [`StoreError::InflightExists`] if one is in flight.
    pub(crate) fn begin(
        &self,
        name: &str,
        started_at: OffsetDateTime,
    ) -> Result<Inflight, StoreError> {
        let key = self.keys.inflight(name)?;
        let record = Inflight::starting(started_at);
        self.update(name, || {
            if let Some(existing) = self.inflight(name)? {
                return Err(StoreError::InflightExists {
                    name: name.to_owned(),
                    stage: existing.stage,
                });
            }
            Ok(Plan::Write {
                compares: vec![unchanged(&key, None)],
                ops: vec![self.put_inflight(&key, &record)?],
                then: record.clone(),
            })
        })
    }

    /// Applies `change` to the record in flight ([`StoreError::NoInflight`] without one).
    pub(crate) fn change_inflight(
        &self,
        name: &str,
        change: impl Fn(&mut Inflight),
    ) -> Result<Inflight, StoreError> {
        let key = self.keys.inflight(name)?;
        self.update(name, || {
            let entry = self
                .get(&key)?
                .ok_or_else(|| StoreError::NoInflight(name.to_owned()))?;
            let mut record = self.open_inflight(&entry)?;
            change(&mut record);
            Ok(Plan::Write {
                compares: vec![unchanged(&key, Some(&entry))],
                ops: vec![self.put_inflight(&key, &record)?],
                then: record,
            })
        })
    }

    /// Records the deploy command now running; nothing to do without a record.
    pub(crate) fn record_hook(
        &self,
        name: &str,
        hook: Option<HookProcess>,
    ) -> Result<(), StoreError> {
        let key = self.keys.inflight(name)?;
        self.update(name, || {
            let Some(entry) = self.get(&key)? else {
                return Ok(Plan::Nothing(()));
            };
            let mut record = self.open_inflight(&entry)?;
            if record.hook == hook {
                return Ok(Plan::Nothing(()));
            }
            record.hook = hook.clone();
            Ok(Plan::Write {
                compares: vec![unchanged(&key, Some(&entry))],
                ops: vec![self.put_inflight(&key, &record)?],
                then: (),
            })
        })
    }

    /// Ends the renewal in flight (none is fine).
    pub(crate) fn finish(&self, name: &str) -> Result<(), StoreError> {
        let key = self.keys.inflight(name)?;
        self.update(name, || {
            Ok(Plan::Write {
                compares: Vec::new(),
                ops: vec![TxnOp::delete(key.as_str(), None)],
                then: (),
            })
        })
    }

    /// The record in `entry`, its key opened. A deploy command recorded by another
    /// replica is left out: its process group is not one of this host's.
    pub(crate) fn open_inflight(&self, entry: &Entry) -> Result<Inflight, StoreError> {
        let doc: InflightDoc = parse_json(entry)?;
        let mut record = doc.record;
        if let Some(sealed) = doc.key_sealed {
            let opened = self
                .keyring
                .open(&entry.key, &decode(&entry.key, &sealed)?)?;
            let pem = String::from_utf8(opened).map_err(|_| {
                StoreError::Sealed(SealError::Tampered {
                    name: entry.key.clone(),
                })
            })?;
            record.key_pem = Some(SecretPem::new(pem));
        }
        if doc.member != self.member {
            record.hook = None;
        }
        Ok(record)
    }

    fn put_inflight(&self, key: &str, record: &Inflight) -> Result<TxnOp, StoreError> {
        let key_sealed = match &record.key_pem {
            Some(pem) => Some(seal(self, key, pem.expose().as_bytes())?),
            None => None,
        };
        let doc = InflightDoc {
            record: Inflight {
                key_pem: None,
                ..record.clone()
            },
            key_sealed,
            member: self.member.clone(),
        };
        Ok(TxnOp::put(key, to_json(key, &doc)?, None))
    }
}
