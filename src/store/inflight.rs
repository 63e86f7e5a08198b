//! The renewal in progress for one certificate (`NAME/inflight.json`), so a crash at any
//! step resumes where it stopped instead of placing a second order.

use std::fs;
use std::io::ErrorKind;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::StoreError;
use crate::store::atomic::{MODE_PUBLIC, sync_dir, write_atomic};
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
        let record = Inflight {
            version: None,
            stage: Stage::Ordering,
            order_url: None,
            started_at,
        };
        self.write_inflight(name, &record)?;
        Ok(record)
    }

    /// Records the ACME order URL as soon as the order exists.
    pub fn record_order(&self, name: &str, order_url: &str) -> Result<Inflight, StoreError> {
        let mut record = self.require_inflight(name)?;
        record.order_url = Some(order_url.to_string());
        self.write_inflight(name, &record)?;
        Ok(record)
    }

    /// Records that the renewal reached `stage` with `version`.
    pub fn advance(
        &self,
        name: &str,
        stage: Stage,
        version: VersionId,
    ) -> Result<Inflight, StoreError> {
        let mut record = self.require_inflight(name)?;
        record.stage = stage;
        record.version = Some(version);
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
        write_atomic(&path, &json, MODE_PUBLIC)
    }
}
