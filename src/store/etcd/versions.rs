//! Versions and `current`/`previous` in etcd: staging a version is a create-if-absent of
//! its key, promotion and rollback move `links` and the versions' states in one fenced
//! transaction, pruning deletes versions only if `links` and `inflight` did not change.

use etcd_client::{DeleteOptions, TxnOp};

use crate::store::StoreError;
use crate::store::etcd::Shared;
use crate::store::etcd::cert_state::{Links, StoredVersion, VersionDoc, decode, seal, to_json};
use crate::store::etcd::txn::{Plan, unchanged};
use crate::store::metadata::{VersionId, VersionMetadata, VersionState};
use crate::store::versions::{CheckedVersion, prunable};

impl Shared {
    /// Stores a checked new version after the highest one, not yet live.
    pub(crate) fn stage_pending(
        &self,
        name: &str,
        new: CheckedVersion,
    ) -> Result<VersionMetadata, StoreError> {
        self.update(name, || {
            let state = self.cert_state(name)?;
            let version = state
                .versions
                .keys()
                .next_back()
                .map_or(VersionId(1), |v| v.next());
            let key = self.keys.version(name, version)?;
            let doc = VersionDoc {
                meta: VersionMetadata {
                    version,
                    ..new.meta.clone()
                },
                cert: new.cert.clone(),
                chain: new.chain.clone(),
                key_sealed: seal(self, &key, new.key_pem.as_bytes())?,
            };
            Ok(Plan::Write {
                compares: vec![unchanged(&key, None)],
                ops: vec![TxnOp::put(key.as_str(), to_json(&key, &doc)?, None)],
                then: doc.meta,
            })
        })
    }

    /// Makes `version` live; idempotent.
    pub(crate) fn promote(&self, name: &str, version: VersionId) -> Result<(), StoreError> {
        let links_key = self.keys.links(name)?;
        self.update(name, || {
            let state = self.cert_state(name)?;
            let stored = state
                .versions
                .get(&version)
                .ok_or_else(|| StoreError::NoSuchVersion {
                    name: name.to_owned(),
                    version,
                })?;
            let mut ops = Vec::new();
            if state.links.current != Some(version) {
                let links = Links {
                    current: Some(version),
                    previous: state.links.current.or(state.links.previous),
                };
                ops.push(TxnOp::put(
                    links_key.as_str(),
                    to_json(&links_key, &links)?,
                    None,
                ));
            }
            if stored.doc.meta.state != VersionState::Active {
                ops.push(self.put_state(stored, VersionState::Active)?);
            }
            if ops.is_empty() {
                return Ok(Plan::Nothing(()));
            }
            Ok(Plan::Write {
                compares: vec![
                    unchanged(&links_key, state.links_entry.as_ref()),
                    unchanged(&stored.entry.key, Some(&stored.entry)),
                ],
                ops,
                then: (),
            })
        })
    }

    /// Makes `previous` live again, marks the abandoned version failed and points
    /// `previous` at the newest older version that was live and never failed.
    pub(crate) fn rollback(&self, name: &str) -> Result<VersionId, StoreError> {
        let links_key = self.keys.links(name)?;
        self.update(name, || {
            let state = self.cert_state(name)?;
            let target = state
                .links
                .previous
                .ok_or_else(|| StoreError::NoPrevious(name.to_owned()))?;
            let abandoned = state
                .links
                .current
                .filter(|current| *current != target)
                .and_then(|current| state.versions.get(&current));
            let mut compares = vec![unchanged(&links_key, state.links_entry.as_ref())];
            let mut ops = Vec::new();
            if let Some(abandoned) = abandoned {
                compares.push(unchanged(&abandoned.entry.key, Some(&abandoned.entry)));
                if abandoned.doc.meta.state != VersionState::Failed {
                    ops.push(self.put_state(abandoned, VersionState::Failed)?);
                }
            }
            let abandoned_version = abandoned.map(|stored| stored.doc.meta.version);
            let older = state
                .versions
                .values()
                .map(|stored| &stored.doc.meta)
                .filter(|meta| Some(meta.version) != abandoned_version)
                .filter(|meta| meta.version < target && meta.state == VersionState::Active)
                .map(|meta| meta.version)
                .next_back();
            let links = Links {
                current: Some(target),
                previous: older,
            };
            ops.push(TxnOp::put(
                links_key.as_str(),
                to_json(&links_key, &links)?,
                None,
            ));
            Ok(Plan::Write {
                compares,
                ops,
                then: target,
            })
        })
    }

    /// Rewrites the state of one version.
    pub(crate) fn set_state(
        &self,
        name: &str,
        version: VersionId,
        state: VersionState,
    ) -> Result<(), StoreError> {
        self.update(name, || {
            let stored = self.version(name, version)?;
            if stored.doc.meta.state == state {
                return Ok(Plan::Nothing(()));
            }
            Ok(Plan::Write {
                compares: vec![unchanged(&stored.entry.key, Some(&stored.entry))],
                ops: vec![self.put_state(&stored, state)?],
                then: (),
            })
        })
    }

    /// Deletes all but the `keep` newest versions, never one still needed.
    pub(crate) fn prune(&self, name: &str, keep: usize) -> Result<Vec<VersionId>, StoreError> {
        let links_key = self.keys.links(name)?;
        let inflight_key = self.keys.inflight(name)?;
        self.update(name, || {
            let state = self.cert_state(name)?;
            let inflight = match &state.inflight {
                Some(entry) => Some(self.open_inflight(entry)?),
                None => None,
            };
            let ids: Vec<VersionId> = state.versions.keys().copied().collect();
            let doomed = prunable(
                &ids,
                keep,
                state.links.current,
                state.links.previous,
                inflight.as_ref(),
            );
            if doomed.is_empty() {
                return Ok(Plan::Nothing(doomed));
            }
            let mut compares = vec![
                unchanged(&links_key, state.links_entry.as_ref()),
                unchanged(&inflight_key, state.inflight.as_ref()),
            ];
            let mut ops = Vec::new();
            for version in &doomed {
                if let Some(stored) = state.versions.get(version) {
                    compares.push(unchanged(&stored.entry.key, Some(&stored.entry)));
                    ops.push(TxnOp::delete(stored.entry.key.as_str(), None));
                    let reports = self.keys.rollout_reports(name, *version)?;
                    let everything = DeleteOptions::new().with_prefix();
                    ops.push(TxnOp::delete(reports.as_str(), Some(everything)));
                }
            }
            Ok(Plan::Write {
                compares,
                ops,
                then: doomed,
            })
        })
    }

    /// The put that rewrites `stored` with `state`. Its key stays sealed as it is, unless
    /// with a key-encryption key rotated out: then it is sealed again with the current one.
    fn put_state(&self, stored: &StoredVersion, state: VersionState) -> Result<TxnOp, StoreError> {
        let mut doc = stored.doc.clone();
        doc.meta.state = state;
        if self
            .keyring
            .is_stale(&decode(&stored.entry.key, &doc.key_sealed)?)
        {
            let key_pem = stored.key_pem(self)?;
            doc.key_sealed = seal(self, &stored.entry.key, key_pem.as_bytes())?;
        }
        Ok(TxnOp::put(
            stored.entry.key.as_str(),
            to_json(&stored.entry.key, &doc)?,
            None,
        ))
    }
}
