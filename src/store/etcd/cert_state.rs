//! One certificate's values in etcd read back: the `links` pointers, the versions (one
//! value each: metadata, certificate, chain and the sealed key) and the whole key space of
//! the certificate at one revision, which [`DiskState`] is made from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::StoreError;
use crate::store::etcd::Shared;
use crate::store::etcd::keys::version_of_key;
use crate::store::etcd::txn::Entry;
use crate::store::metadata::{VersionId, VersionMetadata};
use crate::store::recovery::DiskState;
use crate::store::sealed::SealError;

/// `P/certs/NAME/links`: both pointers in one value, so they move together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Links {
    /// The live version.
    pub(crate) current: Option<VersionId>,
    /// The version a rollback restores.
    pub(crate) previous: Option<VersionId>,
}

/// `P/certs/NAME/v/vNNNN`: one version in one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VersionDoc {
    /// What `meta.json` holds on the filesystem.
    pub(crate) meta: VersionMetadata,
    /// The leaf certificate, PEM.
    pub(crate) cert: String,
    /// The intermediates, PEM.
    pub(crate) chain: String,
    /// The private key sealed under this value's key name, base64.
    pub(crate) key_sealed: String,
}

/// A version as stored, with the entry it was read from (for its revision).
#[derive(Debug, Clone)]
pub(crate) struct StoredVersion {
    pub(crate) entry: Entry,
    pub(crate) doc: VersionDoc,
}

/// Every value of one certificate at one revision.
#[derive(Debug, Default)]
pub(crate) struct CertState {
    /// The `links` value, when there is one.
    pub(crate) links_entry: Option<Entry>,
    /// The pointers (none when `links` does not exist).
    pub(crate) links: Links,
    /// The in-flight record's value.
    pub(crate) inflight: Option<Entry>,
    /// The versions, ascending.
    pub(crate) versions: BTreeMap<VersionId, StoredVersion>,
}

impl StoredVersion {
    /// The version's private key, opened.
    pub(crate) fn key_pem(&self, shared: &Shared) -> Result<String, StoreError> {
        let sealed = decode(&self.entry.key, &self.doc.key_sealed)?;
        let opened = shared.keyring.open(&self.entry.key, &sealed)?;
        String::from_utf8(opened).map_err(|_| {
            StoreError::Sealed(SealError::Tampered {
                name: self.entry.key.clone(),
            })
        })
    }
}

impl Shared {
    /// Reads every value under `P/certs/NAME/` at one revision.
    pub(crate) fn cert_state(&self, name: &str) -> Result<CertState, StoreError> {
        let links_key = self.keys.links(name)?;
        let inflight_key = self.keys.inflight(name)?;
        let versions_prefix = self.keys.versions(name)?;
        let mut state = CertState::default();
        for entry in self.range(&self.keys.cert(name)?)? {
            if entry.key == links_key {
                state.links = parse_json(&entry)?;
                state.links_entry = Some(entry);
            } else if entry.key == inflight_key {
                state.inflight = Some(entry);
            } else if entry.key.starts_with(&versions_prefix) {
                let stored = stored_version(entry)?;
                state.versions.insert(stored.doc.meta.version, stored);
            }
        }
        Ok(state)
    }

    /// The pointers of `name`.
    pub(crate) fn links(&self, name: &str) -> Result<Links, StoreError> {
        match self.get(&self.keys.links(name)?)? {
            Some(entry) => parse_json(&entry),
            None => Ok(Links::default()),
        }
    }

    /// One version of `name`.
    pub(crate) fn version(
        &self,
        name: &str,
        version: VersionId,
    ) -> Result<StoredVersion, StoreError> {
        match self.get(&self.keys.version(name, version)?)? {
            Some(entry) => stored_version(entry),
            None => Err(StoreError::NoSuchVersion {
                name: name.to_owned(),
                version,
            }),
        }
    }

    /// Metadata of every version of `name`, oldest first.
    pub(crate) fn versions(&self, name: &str) -> Result<Vec<VersionMetadata>, StoreError> {
        let mut versions = Vec::new();
        for entry in self.range(&self.keys.versions(name)?)? {
            versions.push(stored_version(entry)?.doc.meta);
        }
        versions.sort_by_key(|meta| meta.version);
        Ok(versions)
    }

    /// What crash recovery needs, from one read; transactions leave no leftovers.
    pub(crate) fn disk_state(&self, name: &str) -> Result<DiskState, StoreError> {
        let state = self.cert_state(name)?;
        let inflight = match &state.inflight {
            Some(entry) => Some(self.open_inflight(entry)?),
            None => None,
        };
        Ok(DiskState {
            current: state.links.current,
            previous: state.links.previous,
            inflight,
            versions: state
                .versions
                .values()
                .map(|stored| (stored.doc.meta.version, stored.doc.meta.state))
                .collect(),
            leftovers: Vec::new(),
        })
    }
}

/// A version value parsed; its key must name the version its metadata says.
fn stored_version(entry: Entry) -> Result<StoredVersion, StoreError> {
    let doc: VersionDoc = parse_json(&entry)?;
    if version_of_key(entry.key.as_bytes()) != Some(doc.meta.version) {
        return Err(StoreError::Conflict { key: entry.key });
    }
    Ok(StoredVersion { entry, doc })
}

/// The JSON document in `entry`.
pub(crate) fn parse_json<T: DeserializeOwned>(entry: &Entry) -> Result<T, StoreError> {
    serde_json::from_slice(&entry.value).map_err(|source| StoreError::Json {
        path: PathBuf::from(&entry.key),
        source,
    })
}

/// `value` as JSON bytes.
pub(crate) fn to_json<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Json {
        path: PathBuf::from(key),
        source,
    })
}

/// `plaintext` sealed under the value name `key`, as base64.
pub(crate) fn seal(shared: &Shared, key: &str, plaintext: &[u8]) -> Result<String, StoreError> {
    Ok(STANDARD.encode(shared.keyring.seal(key, plaintext)?))
}

/// The sealed bytes in a base64 field of the value `key`.
pub(crate) fn decode(key: &str, text: &str) -> Result<Vec<u8>, StoreError> {
    STANDARD.decode(text).map_err(|_| {
        StoreError::Sealed(SealError::NotSealed {
            name: key.to_owned(),
        })
    })
}
