//! The renewal in progress for one certificate (`NAME/inflight.json`, 0600: it holds the
//! new private key once one is made), so a crash at any step resumes where it stopped
//! instead of placing a second order.

use std::fmt;
use std::fs;
use std::io::ErrorKind;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::StoreError;
use crate::store::atomic::{MODE_SECRET, sync_dir, write_atomic};
use crate::store::metadata::VersionId;
use crate::store::versions::CertStore;

const INFLIGHT: &str = "inflight.json";

/// How far a renewal got. Each stage is recorded only after its work is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Started; an ACME order may exist (see `order_url`), nothing is stored yet.
    Ordering,
    /// New key and certificate stored as a version, not live.
    Pending,
    /// `current` switched to the version and deploy commands run.
    Deployed,
    /// The live files parsed, the key matched and the names were covered.
    Verified,
}

/// The contents of `inflight.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inflight {
    /// The version being rolled out; none while ordering.
    pub version: Option<VersionId>,
    /// How far it got.
    pub stage: Stage,
    /// The ACME order, once placed, so a restart polls it instead of ordering again.
    pub order_url: Option<String>,
    /// When the renewal began.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The private key the order is (or is about to be) finalized with, saved before the
    /// CSR is sent: a restart after finalization downloads the certificate and pairs it
    /// with this key instead of ordering another certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<SecretPem>,
    /// The deploy command running right now, so a restart after a crash can stop it
    /// before deploying again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookProcess>,
}

impl Inflight {
    /// The record of a renewal that starts at `started_at`: ordering, nothing placed or
    /// saved yet.
    pub fn starting(started_at: OffsetDateTime) -> Inflight {
        Inflight {
            version: None,
            stage: Stage::Ordering,
            order_url: None,
            started_at,
            key_pem: None,
            hook: None,
        }
    }
}

/// A PEM private key that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretPem(String);

impl SecretPem {
    /// Wraps a PEM private key.
    pub fn new(pem: String) -> SecretPem {
        SecretPem(pem)
    }

    /// The PEM text, for the code that signs with it or stores it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem(<redacted>)")
    }
}

/// A deploy command, as recorded while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookProcess {
    /// A random id recorded before the command starts and passed to it in its
    /// environment (`CERTINEL_HOOK_ID`), which its processes inherit: it finds them even
    /// when the process died before it could record their group.
    pub id: String,
    /// Its process group, recorded once it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<HookGroup>,
}

/// A deploy command's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookGroup {
    /// The group id, which is also the pid of its leader (`sh -c`).
    pub pgid: i32,
    /// The leader's start time in clock ticks since boot (`/proc/PID/stat` field 22), so
    /// a recycled pid is never mistaken for the hook.
    pub start_ticks: u64,
}

impl CertStore {
    /// The renewal in flight for `name`, if any.
    pub fn inflight(&self, name: &str) -> Result<Option<Inflight>, StoreError> {
        let path = self.cert_dir(name)?.join(INFLIGHT);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|source| StoreError::Json { path, source }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path, e)),
        }
    }

    /// Records that a renewal of `name` starts; fails if one is already in flight.
    pub fn begin(&self, name: &str, started_at: OffsetDateTime) -> Result<Inflight, StoreError> {
        if let Some(existing) = self.inflight(name)? {
            return Err(StoreError::InflightExists {
                name: name.to_string(),
                stage: existing.stage,
            });
        }
        let dir = self.cert_dir(name)?;
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        let record = Inflight::starting(started_at);
        self.write_inflight(name, &record)?;
        Ok(record)
    }

    /// Records the ACME order URL as soon as the order exists. A key saved for an earlier
    /// order is dropped: the new order gets a new key.
    pub fn record_order(&self, name: &str, order_url: &str) -> Result<Inflight, StoreError> {
        let mut record = self.require_inflight(name)?;
        record.order_url = Some(order_url.to_string());
        record.key_pem = None;
        self.write_inflight(name, &record)?;
        Ok(record)
    }

    /// Saves the private key the recorded order is about to be finalized with (0600,
    /// fsynced) before the CSR leaves the process.
    pub fn record_key(&self, name: &str, key_pem: &SecretPem) -> Result<Inflight, StoreError> {
        let mut record = self.require_inflight(name)?;
        record.key_pem = Some(key_pem.clone());
        self.write_inflight(name, &record)?;
        Ok(record)
    }

    /// Records the deploy command now running (`Some`) or that none is (`None`). Without a
    /// renewal in flight (a manual rollback) there is nothing to record into.
    pub fn record_hook(&self, name: &str, hook: Option<HookProcess>) -> Result<(), StoreError> {
        let Some(mut record) = self.inflight(name)? else {
            return Ok(());
        };
        if record.hook == hook {
            return Ok(());
        }
        record.hook = hook;
        self.write_inflight(name, &record)
    }

    /// Records that the renewal reached `stage` with `version`. The saved key is dropped
    /// from the record: from here on it lives in the version's `key.pem`.
    pub fn advance(
        &self,
        name: &str,
        stage: Stage,
        version: VersionId,
    ) -> Result<Inflight, StoreError> {
        let mut record = self.require_inflight(name)?;
        record.stage = stage;
        record.version = Some(version);
        record.key_pem = None;
        self.write_inflight(name, &record)?;
        Ok(record)
    }

    /// Ends the renewal (done, or abandoned after its version was marked failed).
    pub fn finish(&self, name: &str) -> Result<(), StoreError> {
        let dir = self.cert_dir(name)?;
        let path = dir.join(INFLIGHT);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&dir),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", &path, e)),
        }
    }

    fn require_inflight(&self, name: &str) -> Result<Inflight, StoreError> {
        self.inflight(name)?
            .ok_or_else(|| StoreError::NoInflight(name.to_string()))
    }

    fn write_inflight(&self, name: &str, record: &Inflight) -> Result<(), StoreError> {
        let path = self.cert_dir(name)?.join(INFLIGHT);
        let json = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &json, MODE_SECRET)
    }
}
