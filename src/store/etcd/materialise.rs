//! The files servers and deploy commands read, materialised from etcd into the local
//! directory with the filesystem store's layout (`certs/NAME/vNNNN/{cert,chain,fullchain,
//! key}.pem, meta.json` and the `current`/`previous` links), every file written by the one
//! atomic writer, so nginx configurations do not change. A version directory appears
//! complete (written under a dot-prefixed name, then renamed) or not at all.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::store::StoreError;
use crate::store::atomic::{
    MODE_PUBLIC, MODE_SECRET, replace_symlink_atomic, sync_dir, write_atomic,
};
use crate::store::etcd::Shared;
use crate::store::etcd::cert_state::StoredVersion;
use crate::store::metadata::VersionId;
use crate::store::versions::VersionFiles;

impl Shared {
    /// `local_dir/certs/NAME/current/...`.
    pub(crate) fn local_current(&self, name: &str) -> VersionFiles {
        VersionFiles::in_dir(self.local_cert_dir(name).join("current"))
    }

    /// Writes `version` of `name` locally (when etcd has it) and returns its files.
    pub(crate) fn materialise_version(
        &self,
        name: &str,
        version: VersionId,
    ) -> Result<VersionFiles, StoreError> {
        self.keys.cert(name)?;
        let files = VersionFiles::in_dir(self.local_cert_dir(name).join(version.to_string()));
        match self.version(name, version) {
            Ok(stored) => self.write_version(name, &stored)?,
            Err(StoreError::NoSuchVersion { .. }) => {}
            Err(error) => return Err(error),
        }
        Ok(files)
    }

    /// Writes `current` and `previous` of `name` locally and points the links at them.
    pub(crate) fn materialise_current(&self, name: &str) -> Result<(), StoreError> {
        let links = self.links(name)?;
        let dir = self.local_cert_dir(name);
        for (link, version) in [("current", links.current), ("previous", links.previous)] {
            let path = dir.join(link);
            match version {
                Some(version) => {
                    self.materialise_version(name, version)?;
                    replace_symlink_atomic(&path, Path::new(&version.to_string()))?;
                }
                None => remove_if_present(&path)?,
            }
        }
        Ok(())
    }

    /// Deletes the local directories of `versions` (pruned from etcd). Other replicas keep
    /// theirs until they prune.
    pub(crate) fn forget_local(
        &self,
        name: &str,
        versions: &[VersionId],
    ) -> Result<(), StoreError> {
        let dir = self.local_cert_dir(name);
        for version in versions {
            // Renamed first, so a crash never leaves a half-deleted `vNNNN`.
            let live = dir.join(version.to_string());
            if !live.exists() {
                continue;
            }
            let doomed = dir.join(format!(".{version}.deleting"));
            std::fs::rename(&live, &doomed).map_err(|e| StoreError::io("rename", &live, e))?;
            remove_if_present(&doomed)?;
        }
        if !versions.is_empty() && dir.exists() {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Waits for and takes the exclusive `flock(2)` of `local_dir/locks/NAME.materialise`,
    /// held while the returned file is open.
    fn lock_local(&self, name: &str) -> Result<std::fs::File, StoreError> {
        let locks = self.local_dir.join("locks");
        std::fs::create_dir_all(&locks).map_err(|e| StoreError::io("create", &locks, e))?;
        let path = locks.join(format!("{name}.materialise"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(MODE_SECRET)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| StoreError::io("lock", &path, e.into()))?;
        Ok(file)
    }

    fn local_cert_dir(&self, name: &str) -> PathBuf {
        self.local_dir.join("certs").join(name)
    }

    /// Writes one version's directory unless it already holds this certificate; its
    /// `meta.json` follows the state in etcd.
    fn write_version(&self, name: &str, stored: &StoredVersion) -> Result<(), StoreError> {
        let doc = &stored.doc;
        let dir = self.local_cert_dir(name);
        let target = dir.join(doc.meta.version.to_string());
        let meta = meta_json(&target, &doc.meta)?;
        let files = VersionFiles::in_dir(target.clone());
        if std::fs::read_to_string(&files.cert).ok().as_deref() == Some(doc.cert.as_str()) {
            if std::fs::read(&files.metadata).ok().as_deref() != Some(meta.as_slice()) {
                write_atomic(&files.metadata, &meta, MODE_PUBLIC)?;
            }
            return Ok(());
        }
        // Another process on this state directory (a `certinel renew` beside `certinel run`,
        // which follows the new version the moment etcd says it is current) may write the
        // same version now: one writes, the other then finds it written.
        let _writing = self.lock_local(name)?;
        if std::fs::read_to_string(&files.cert).ok().as_deref() == Some(doc.cert.as_str()) {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        let partial = dir.join(format!(".{}.partial", doc.meta.version));
        remove_if_present(&partial)?;
        std::fs::create_dir(&partial).map_err(|e| StoreError::io("create", &partial, e))?;
        let staged = VersionFiles::in_dir(partial.clone());
        write_atomic(&staged.key, stored.key_pem(self)?.as_bytes(), MODE_SECRET)?;
        write_atomic(&staged.cert, doc.cert.as_bytes(), MODE_PUBLIC)?;
        write_atomic(&staged.chain, doc.chain.as_bytes(), MODE_PUBLIC)?;
        let fullchain = format!("{}{}", doc.cert, doc.chain);
        write_atomic(&staged.fullchain, fullchain.as_bytes(), MODE_PUBLIC)?;
        write_atomic(&staged.metadata, &meta, MODE_PUBLIC)?;
        // A directory of the same number holding another certificate (etcd was reset) is
        // replaced.
        let replaced = dir.join(format!(".{}.deleting", doc.meta.version));
        if target.exists() {
            std::fs::rename(&target, &replaced)
                .map_err(|e| StoreError::io("rename", &target, e))?;
        }
        std::fs::rename(&partial, &target).map_err(|e| StoreError::io("rename", &target, e))?;
        remove_if_present(&replaced)?;
        sync_dir(&dir)
    }
}

fn meta_json(
    dir: &Path,
    meta: &crate::store::metadata::VersionMetadata,
) -> Result<Vec<u8>, StoreError> {
    let mut json = serde_json::to_vec_pretty(meta).map_err(|source| StoreError::Json {
        path: dir.join("meta.json"),
        source,
    })?;
    json.push(b'\n');
    Ok(json)
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(error) => Err(error),
    };
    match result {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::io("remove", path, error))
        }
        _ => Ok(()),
    }
}
