//! Numbered certificate versions per name, and the `current`/`previous` pointers to them.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::store::StoreError;
use crate::store::atomic::{
    MODE_PUBLIC, MODE_SECRET, replace_symlink_atomic, sync_dir, write_atomic,
};
use crate::store::inflight::{Inflight, Stage};
use crate::store::metadata::{Origin, VersionId, VersionMetadata, VersionState};
use crate::store::version_check::{certificate_blocks, check_pems};

const CURRENT: &str = "current";
const PREVIOUS: &str = "previous";
const META: &str = "meta.json";

/// Certificate storage under `state_dir/certs/`. Cheap to clone; holds only a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertStore {
    certs_dir: PathBuf,
}

/// The files of one version (or of `current/`, which servers read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFiles {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// The leaf certificate.
    pub cert: PathBuf,
    /// The intermediates, without the leaf.
    pub chain: PathBuf,
    /// Leaf followed by intermediates: what a server serves.
    pub fullchain: PathBuf,
    /// The private key (mode 0600).
    pub key: PathBuf,
    /// `meta.json`.
    pub metadata: PathBuf,
}

/// What a new version is made of, as [`Store::stage_pending`](crate::store::Store::stage_pending)
/// is handed it. Not `Debug`, so that the key is never logged.
#[derive(Clone, Copy)]
pub struct NewVersion<'a> {
    /// The private key, PEM; it must match the chain's leaf.
    pub key_pem: &'a str,
    /// The leaf followed by its intermediates, PEM.
    pub chain_pem: &'a str,
    /// When and from where the certificate was obtained.
    pub origin: &'a Origin,
}

impl VersionFiles {
    /// The standard file names inside `dir`.
    pub fn in_dir(dir: PathBuf) -> VersionFiles {
        VersionFiles {
            cert: dir.join("cert.pem"),
            chain: dir.join("chain.pem"),
            fullchain: dir.join("fullchain.pem"),
            key: dir.join("key.pem"),
            metadata: dir.join(META),
            dir,
        }
    }
}

impl CertStore {
    /// Opens (creating if needed) the store under `state_dir/certs`.
    pub fn open(state_dir: &Path) -> Result<CertStore, StoreError> {
        let certs_dir = state_dir.join("certs");
        fs::create_dir_all(&certs_dir).map_err(|e| StoreError::io("create", &certs_dir, e))?;
        Ok(CertStore { certs_dir })
    }

    /// `state_dir/certs/NAME`, after checking that `name` is a safe path component.
    pub fn cert_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        if !crate::cert::is_safe_name(name) {
            return Err(StoreError::InvalidName(name.to_string()));
        }
        Ok(self.certs_dir.join(name))
    }

    /// `NAME/schedule.json`, read and written by [`crate::schedule::history`].
    pub fn schedule_path(&self, name: &str) -> Result<PathBuf, StoreError> {
        Ok(self.cert_dir(name)?.join("schedule.json"))
    }

    /// The files of one version.
    pub fn files(&self, name: &str, version: VersionId) -> Result<VersionFiles, StoreError> {
        Ok(VersionFiles::in_dir(
            self.cert_dir(name)?.join(version.to_string()),
        ))
    }

    /// The files as servers see them, through the `current` link.
    pub fn current_files(&self, name: &str) -> Result<VersionFiles, StoreError> {
        Ok(VersionFiles::in_dir(self.cert_dir(name)?.join(CURRENT)))
    }

    /// Stores a new version, not yet live: the key must match the chain's leaf. The version
    /// directory appears complete, in one rename, or not at all.
    pub fn stage_pending(
        &self,
        name: &str,
        new: NewVersion,
    ) -> Result<VersionMetadata, StoreError> {
        let CheckedVersion {
            mut meta,
            key_pem,
            cert,
            chain,
        } = new.check()?;
        let dir = self.cert_dir(name)?;
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        sync_dir(&self.certs_dir)?;

        let version = self
            .version_ids(name)?
            .last()
            .map_or(VersionId(1), |v| v.next());
        meta.version = version;

        let partial = dir.join(format!(".{version}.partial"));
        remove_any(&partial)?;
        fs::create_dir(&partial).map_err(|e| StoreError::io("create", &partial, e))?;
        let files = VersionFiles::in_dir(partial.clone());
        write_atomic(&files.key, key_pem.as_bytes(), MODE_SECRET)?;
        write_atomic(&files.cert, cert.as_bytes(), MODE_PUBLIC)?;
        write_atomic(&files.chain, chain.as_bytes(), MODE_PUBLIC)?;
        write_atomic(
            &files.fullchain,
            format!("{cert}{chain}").as_bytes(),
            MODE_PUBLIC,
        )?;
        write_meta(&files.metadata, &meta)?;
        let final_dir = dir.join(version.to_string());
        fs::rename(&partial, &final_dir).map_err(|e| StoreError::io("rename", &final_dir, e))?;
        sync_dir(&dir)?;
        Ok(meta)
    }

    /// Makes `version` live: `previous` := `current`, then `current` := `version`.
    /// Idempotent, so a promotion interrupted by a crash can simply be repeated.
    pub fn promote(&self, name: &str, version: VersionId) -> Result<(), StoreError> {
        let dir = self.cert_dir(name)?;
        let mut meta = self.metadata(name, version)?;
        let current = self.current(name)?;
        if current != Some(version) {
            if let Some(current) = current {
                replace_symlink_atomic(&dir.join(PREVIOUS), Path::new(&current.to_string()))?;
            }
            replace_symlink_atomic(&dir.join(CURRENT), Path::new(&version.to_string()))?;
        }
        if meta.state != VersionState::Active {
            meta.state = VersionState::Active;
            write_meta(&self.files(name, version)?.metadata, &meta)?;
        }
        Ok(())
    }

    /// Makes `previous` live again and marks the abandoned version failed. The new
    /// `previous` is the newest older version that was once live and never failed, if any.
    /// Returns the version now current.
    pub fn rollback(&self, name: &str) -> Result<VersionId, StoreError> {
        let dir = self.cert_dir(name)?;
        let target = self
            .previous(name)?
            .ok_or_else(|| StoreError::NoPrevious(name.to_string()))?;
        let abandoned = self.current(name)?;
        replace_symlink_atomic(&dir.join(CURRENT), Path::new(&target.to_string()))?;
        if let Some(abandoned) = abandoned.filter(|v| *v != target) {
            self.set_state(name, abandoned, VersionState::Failed)?;
        }
        let older = self
            .versions(name)?
            .into_iter()
            .filter(|m| m.version < target && m.state == VersionState::Active)
            .map(|m| m.version)
            .next_back();
        match older {
            Some(older) => {
                replace_symlink_atomic(&dir.join(PREVIOUS), Path::new(&older.to_string()))?
            }
            None => remove_link(&dir.join(PREVIOUS))?,
        }
        Ok(target)
    }

    /// The version `current` points at, if any.
    pub fn current(&self, name: &str) -> Result<Option<VersionId>, StoreError> {
        read_version_link(&self.cert_dir(name)?.join(CURRENT))
    }

    /// The version `previous` points at, if any.
    pub fn previous(&self, name: &str) -> Result<Option<VersionId>, StoreError> {
        read_version_link(&self.cert_dir(name)?.join(PREVIOUS))
    }

    /// Metadata of every stored version, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<VersionMetadata>, StoreError> {
        self.version_ids(name)?
            .into_iter()
            .map(|v| self.metadata(name, v))
            .collect()
    }

    /// Metadata of one version.
    pub fn metadata(&self, name: &str, version: VersionId) -> Result<VersionMetadata, StoreError> {
        let path = self.files(name, version)?.metadata;
        let text = fs::read_to_string(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => StoreError::NoSuchVersion {
                name: name.to_string(),
                version,
            },
            _ => StoreError::io("read", &path, e),
        })?;
        serde_json::from_str(&text).map_err(|source| StoreError::Json { path, source })
    }

    /// Rewrites the state in a version's metadata.
    pub fn set_state(
        &self,
        name: &str,
        version: VersionId,
        state: VersionState,
    ) -> Result<(), StoreError> {
        let mut meta = self.metadata(name, version)?;
        if meta.state != state {
            meta.state = state;
            write_meta(&self.files(name, version)?.metadata, &meta)?;
        }
        Ok(())
    }

    /// Deletes all but the `keep` newest versions, never `current`, `previous` or a version
    /// an in-flight renewal may own. Returns the deleted versions.
    pub fn prune(&self, name: &str, keep: usize) -> Result<Vec<VersionId>, StoreError> {
        let dir = self.cert_dir(name)?;
        let doomed_versions = prunable(
            &self.version_ids(name)?,
            keep,
            self.current(name)?,
            self.previous(name)?,
            self.inflight(name)?.as_ref(),
        );
        let mut removed = Vec::new();
        for version in &doomed_versions {
            // Rename first so a crash never leaves a half-deleted `vNNNN`.
            let doomed = dir.join(format!(".{version}.deleting"));
            let live = dir.join(version.to_string());
            fs::rename(&live, &doomed).map_err(|e| StoreError::io("rename", &live, e))?;
            remove_any(&doomed)?;
            removed.push(*version);
        }
        if !removed.is_empty() {
            sync_dir(&dir)?;
        }
        Ok(removed)
    }

    /// Deletes dot-prefixed leftovers (temp files, partial or half-deleted versions) of a
    /// crash. Only safe while no renewal of `name` is running. Returns the deleted names.
    pub fn remove_leftovers(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.cert_dir(name)?;
        let removed = self.leftovers(name)?;
        let mut touched = std::collections::BTreeSet::new();
        for entry in &removed {
            let path = dir.join(entry);
            remove_any(&path)?;
            touched.insert(path.parent().map(Path::to_path_buf).unwrap_or(dir.clone()));
        }
        for parent in touched {
            sync_dir(&parent)?;
        }
        Ok(removed)
    }

    /// Dot-prefixed entries of `NAME/` and of each version directory in it (the atomic
    /// writer's temporary files, partial or half-deleted versions), as paths relative to
    /// `NAME/`, sorted.
    pub(crate) fn leftovers(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.cert_dir(name)?;
        let mut leftovers = Vec::new();
        for entry in list_dir(&dir)? {
            if entry.starts_with('.') {
                leftovers.push(entry);
            } else if entry.parse::<VersionId>().is_ok() && dir.join(&entry).is_dir() {
                for inner in list_dir(&dir.join(&entry))? {
                    if inner.starts_with('.') {
                        leftovers.push(format!("{entry}/{inner}"));
                    }
                }
            }
        }
        leftovers.sort();
        Ok(leftovers)
    }

    /// Names of entries in `NAME/` (empty when it does not exist), sorted.
    pub(crate) fn entries(&self, name: &str) -> Result<Vec<String>, StoreError> {
        list_dir(&self.cert_dir(name)?)
    }

    /// Version numbers present, ascending.
    fn version_ids(&self, name: &str) -> Result<Vec<VersionId>, StoreError> {
        let mut ids: Vec<VersionId> = self
            .entries(name)?
            .iter()
            .filter_map(|e| e.parse().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// Which of `ids` (ascending) pruning down to `keep` deletes: never `current`,
/// `previous` or the version the renewal in flight owns. Pure.
pub(crate) fn prunable(
    ids: &[VersionId],
    keep: usize,
    current: Option<VersionId>,
    previous: Option<VersionId>,
    inflight: Option<&Inflight>,
) -> Vec<VersionId> {
    let protected = [current, previous, inflight.and_then(|i| i.version)];
    // While a renewal is ordering, a newer version may be one it stored but has not
    // recorded yet (recovery adopts it), so nothing newer than `current` is deleted.
    let ordering = inflight.is_some_and(|i| i.stage == Stage::Ordering);
    let maybe_adopted = |v: VersionId| ordering && current.is_none_or(|c| v > c);
    let old = &ids[..ids.len().saturating_sub(keep)];
    old.iter()
        .copied()
        .filter(|v| !protected.contains(&Some(*v)) && !maybe_adopted(*v))
        .collect()
}

/// A new version whose key was checked against its chain's leaf, ready to be numbered and
/// stored.
pub(crate) struct CheckedVersion<'a> {
    /// Its metadata: pending, numbered `v0000` until the store numbers it.
    pub(crate) meta: VersionMetadata,
    /// The private key, PEM.
    pub(crate) key_pem: &'a str,
    /// The leaf certificate, PEM.
    pub(crate) cert: String,
    /// The intermediates, PEM.
    pub(crate) chain: String,
}

impl<'a> NewVersion<'a> {
    /// Checks the key against the chain's leaf and describes the version
    /// ([`CheckedVersion`]).
    pub(crate) fn check(self) -> Result<CheckedVersion<'a>, StoreError> {
        let facts = check_pems(self.chain_pem, self.key_pem, &[])?;
        let blocks = certificate_blocks(self.chain_pem);
        let cert = blocks.first().cloned().unwrap_or_default();
        let chain = blocks[1.min(blocks.len())..].concat();
        let meta = VersionMetadata {
            version: VersionId(0),
            serial: facts.serial,
            not_before: facts.not_before,
            not_after: facts.not_after,
            dns_names: facts.dns_names,
            key_type: facts.key_type,
            issuer: facts.issuer,
            created_at: self.origin.created_at,
            source: self.origin.source.clone(),
            state: VersionState::Pending,
        };
        Ok(CheckedVersion {
            meta,
            key_pem: self.key_pem,
            cert,
            chain,
        })
    }
}

fn write_meta(path: &Path, meta: &VersionMetadata) -> Result<(), StoreError> {
    let mut json = serde_json::to_vec_pretty(meta).map_err(|source| StoreError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    json.push(b'\n');
    write_atomic(path, &json, MODE_PUBLIC)
}

fn read_version_link(link: &Path) -> Result<Option<VersionId>, StoreError> {
    match fs::read_link(link) {
        Ok(target) => target
            .to_str()
            .and_then(|t| t.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                StoreError::io(
                    "read link",
                    link,
                    std::io::Error::new(ErrorKind::InvalidData, "does not point at a version"),
                )
            }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read link", link, e)),
    }
}

fn remove_link(link: &Path) -> Result<(), StoreError> {
    match fs::remove_file(link) {
        Ok(()) => link.parent().map_or(Ok(()), sync_dir),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("remove", link, e)),
    }
}

fn remove_any(path: &Path) -> Result<(), StoreError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::io("remove", path, e)),
        _ => Ok(()),
    }
}

fn list_dir(dir: &Path) -> Result<Vec<String>, StoreError> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}
