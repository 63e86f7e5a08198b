//! The replica's keyring: the current key-encryption key and the previous ones, loaded from
//! the files `[cluster]` names (each must be readable by its owner only).

use crate::cluster::ClusterError;
use crate::config::model::ClusterConfig;
use crate::store::sealed::{Kek, Keyring};

/// Loads `key_encryption_key_file` (seals new values) and `key_encryption_key_previous`
/// (still open values sealed before a rotation). A file its group or others can read is
/// refused.
pub fn keyring(cluster: &ClusterConfig) -> Result<Keyring, ClusterError> {
    let current =
        Kek::load(&cluster.key_encryption_key_file).map_err(|source| ClusterError::Kek {
            key: "key_encryption_key_file",
            source,
        })?;
    let previous = cluster
        .key_encryption_key_previous
        .iter()
        .map(|path| {
            Kek::load(path).map_err(|source| ClusterError::Kek {
                key: "key_encryption_key_previous",
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Keyring::new(current, previous))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use super::*;

    /// The `[cluster]` of a configuration naming these key files, as a user writes it.
    fn cluster(current: &Path, previous: Vec<PathBuf>) -> ClusterConfig {
        let text = format!(
            "[cluster]\netcd = [\"http://127.0.0.1:2379\"]\nmember = \"a\"\n\
             key_encryption_key_file = {current:?}\nkey_encryption_key_previous = {previous:?}\n"
        );
        crate::config::parse(&text, None)
            .expect("a valid configuration")
            .cluster
            .expect("a [cluster] table")
    }

    /// A fresh key file `name` in `dir`, and its key id.
    fn key_file(dir: &tempfile::TempDir, name: &str) -> (PathBuf, String) {
        let path = dir.path().join(name);
        let id = Kek::generate_file(&path).expect("key file");
        (path, id)
    }

    #[test]
    fn after_a_rotation_values_sealed_with_the_previous_key_still_open() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (old, _) = key_file(&dir, "old.kek");
        let (new, new_id) = key_file(&dir, "new.kek");
        let before = keyring(&cluster(&old, Vec::new())).expect("old keyring");
        let sealed = before
            .seal("/certinel/certs/a/key", b"pkcs8")
            .expect("seal");
        let after = keyring(&cluster(&new, vec![old])).expect("rotated keyring");
        assert_eq!(after.current_id(), new_id);
        let opened = after.open("/certinel/certs/a/key", &sealed).expect("open");
        assert_eq!(opened, b"pkcs8");
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_naming_the_setting() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (current, _) = key_file(&dir, "current.kek");
        let (previous, _) = key_file(&dir, "previous.kek");
        std::fs::set_permissions(&previous, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = keyring(&cluster(&current, vec![previous])).expect_err("mode 0644");
        let message = error.to_string();
        assert!(
            message.starts_with("[cluster] key_encryption_key_previous: "),
            "{message}"
        );
        assert!(message.contains("chmod 600"), "{message}");
    }
}
