//! Secrets at rest in a shared store: private keys and ACME account credentials sealed with
//! AES-256-GCM under a key-encryption key (KEK) that never leaves the replica's disk.
//!
//! A KEK file holds one line, `certinel-kek-v1:` and 32 random bytes in base64; it must be
//! readable by its owner only (mode 0600 or 0400). A sealed value is
//! `SEALED_MAGIC ‖ key id (8 bytes) ‖ nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`. The
//! key id (the first 8 bytes of the SHA-256 of the key) lets a [`Keyring`] that holds the
//! current KEK and the previous ones open values sealed before a rotation. The associated
//! data is the value's name in the store, so a sealed value copied to another key does not
//! open.
//!
//! **Invariant:** nothing here logs, formats or returns key material in an error.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// The first bytes of every sealed value (format version 1).
pub const SEALED_MAGIC: &[u8; 4] = b"cks1";

/// The line prefix of a KEK file.
const FILE_PREFIX: &str = "certinel-kek-v1:";

/// Bytes in a KEK (AES-256).
const KEY_LEN: usize = 32;

/// Bytes of the key id written into every sealed value.
const KEY_ID_LEN: usize = 8;

/// Bytes of the GCM tag at the end of every sealed value.
const TAG_LEN: usize = 16;

/// What can go wrong loading a KEK or opening a sealed value. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The KEK file could not be read or written.
    #[error("key-encryption key {path}: {source}")]
    Io {
        /// The KEK file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The KEK file can be read by its group or others.
    #[error(
        "key-encryption key {path} has mode {mode:o}: it must be readable by its owner only \
         (chmod 600 {path})"
    )]
    Permissions {
        /// The KEK file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The KEK file is not one `certinel-kek-v1:` line with 32 bytes of base64.
    #[error(
        "key-encryption key {path} is not a certinel key file (one line `certinel-kek-v1:` and \
         32 bytes in base64; `certinel cluster keygen FILE` writes one)"
    )]
    Malformed {
        /// The KEK file.
        path: PathBuf,
    },
    /// The KEK file to be written already exists.
    #[error("{path} already exists; refusing to overwrite a key-encryption key")]
    Exists {
        /// The KEK file.
        path: PathBuf,
    },
    /// A value is not in the sealed format.
    #[error("{name} is not a sealed value")]
    NotSealed {
        /// The value's name in the store.
        name: String,
    },
    /// A value was sealed with a KEK this replica does not have.
    #[error(
        "{name} was sealed with key-encryption key {key_id}, which this replica does not have \
         (add that key's file to key_encryption_key_previous)"
    )]
    UnknownKey {
        /// The value's name in the store.
        name: String,
        /// The key id in the value, hex.
        key_id: String,
    },
    /// Authentication failed: the value was altered, or sealed under another name.
    #[error("{name} does not open: it was altered or belongs to another key")]
    Tampered {
        /// The value's name in the store.
        name: String,
    },
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
}

/// One key-encryption key.
pub struct Kek {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").field("id", &self.id_hex()).finish()
    }
}

impl Kek {
    /// A KEK from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Kek {
        let digest = Sha256::digest(bytes);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        // AES-256 takes exactly KEY_LEN bytes, which the array type guarantees.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key");
        Kek {
            id,
            key: LessSafeKey::new(unbound),
        }
    }

    /// Reads a KEK file, refusing one its group or others can read.
    pub fn load(path: &Path) -> Result<Kek, SealError> {
        let io = |source| SealError::Io {
            path: path.to_owned(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(io)?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SealError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let malformed = || SealError::Malformed {
            path: path.to_owned(),
        };
        let encoded = text
            .trim()
            .strip_prefix(FILE_PREFIX)
            .ok_or_else(malformed)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| malformed())?;
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| malformed())?;
        Ok(Kek::from_bytes(&bytes))
    }

    /// Writes a new random KEK to `path` (created 0600, never replacing a file) and returns
    /// its id.
    pub fn generate_file(path: &Path) -> Result<String, SealError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Random)?;
        let io = |source| SealError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::AlreadyExists => SealError::Exists {
                    path: path.to_owned(),
                },
                _ => io(error),
            })?;
        let line = format!("{FILE_PREFIX}{}\n", STANDARD.encode(bytes));
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            crate::disk::sync_dir(dir).map_err(|error| io(error.source))?;
        }
        Ok(Kek::from_bytes(&bytes).id_hex())
    }

    /// The key id, hex: what a sealed value names and `cluster keygen` prints.
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }
}

/// The KEK that seals new values and the previous ones that still open old values.
#[derive(Debug)]
pub struct Keyring {
    current: Kek,
    previous: Vec<Kek>,
}

impl Keyring {
    /// A keyring sealing with `current` and also opening with `previous`.
    pub fn new(current: Kek, previous: Vec<Kek>) -> Keyring {
        Keyring { current, previous }
    }

    /// Seals `plaintext` stored under `name` with the current KEK and a fresh random nonce.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut in_out = plaintext.to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| SealError::Random)?;
        let mut sealed =
            Vec::with_capacity(SEALED_MAGIC.len() + KEY_ID_LEN + NONCE_LEN + in_out.len());
        sealed.extend_from_slice(SEALED_MAGIC);
        sealed.extend_from_slice(&self.current.id);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// Opens a value sealed under `name` by this keyring's current or a previous KEK.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let not_sealed = || SealError::NotSealed {
            name: name.to_owned(),
        };
        let rest = sealed
            .strip_prefix(SEALED_MAGIC.as_slice())
            .ok_or_else(not_sealed)?;
        if rest.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN {
            return Err(not_sealed());
        }
        let (id, rest) = rest.split_at(KEY_ID_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let kek = self.key_with_id(id).ok_or_else(|| SealError::UnknownKey {
            name: name.to_owned(),
            key_id: hex(id),
        })?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| not_sealed())?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = kek
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| SealError::Tampered {
                name: name.to_owned(),
            })?;
        Ok(plaintext.to_vec())
    }

    /// Whether `sealed` was sealed with a KEK other than the current one (a rotation left
    /// it to be sealed again).
    pub fn is_stale(&self, sealed: &[u8]) -> bool {
        sealed
            .strip_prefix(SEALED_MAGIC.as_slice())
            .and_then(|rest| rest.get(..KEY_ID_LEN))
            .is_some_and(|id| id != self.current.id)
    }

    /// The current KEK's id, hex.
    pub fn current_id(&self) -> String {
        self.current.id_hex()
    }

    fn key_with_id(&self, id: &[u8]) -> Option<&Kek> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|kek| kek.id == id)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(seed: u8) -> Keyring {
        Keyring::new(Kek::from_bytes(&[seed; KEY_LEN]), Vec::new())
    }

    #[test]
    fn a_sealed_value_opens_under_its_name_and_hides_the_plaintext() {
        let ring = keyring(1);
        let sealed = ring
            .seal("certs/web/v/0001/key", b"-----BEGIN PRIVATE KEY-----")
            .unwrap();
        assert!(sealed.starts_with(SEALED_MAGIC));
        assert!(!sealed.windows(5).any(|window| window == b"BEGIN"));
        let opened = ring.open("certs/web/v/0001/key", &sealed).unwrap();
        assert_eq!(opened, b"-----BEGIN PRIVATE KEY-----");
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let ring = keyring(1);
        assert_ne!(ring.seal("a", b"x").unwrap(), ring.seal("a", b"x").unwrap());
    }

    #[test]
    fn a_value_moved_to_another_name_or_altered_does_not_open() {
        let ring = keyring(1);
        let mut sealed = ring.seal("certs/web/key", b"secret").unwrap();
        assert!(matches!(
            ring.open("certs/api/key", &sealed),
            Err(SealError::Tampered { .. })
        ));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(
            ring.open("certs/web/key", &sealed),
            Err(SealError::Tampered { .. })
        ));
    }

    #[test]
    fn a_rotated_keyring_opens_old_values_and_marks_them_stale() {
        let old = keyring(1);
        let sealed = old.seal("k", b"secret").unwrap();
        let rotated = Keyring::new(
            Kek::from_bytes(&[2; KEY_LEN]),
            vec![Kek::from_bytes(&[1; KEY_LEN])],
        );
        assert_eq!(rotated.open("k", &sealed).unwrap(), b"secret");
        assert!(rotated.is_stale(&sealed));
        assert!(!rotated.is_stale(&rotated.seal("k", b"secret").unwrap()));
        let without_old = keyring(2);
        let error = without_old.open("k", &sealed).unwrap_err();
        assert!(matches!(error, SealError::UnknownKey { .. }), "{error}");
    }

    #[test]
    fn plaintext_and_truncated_values_are_not_sealed() {
        let ring = keyring(1);
        assert!(matches!(
            ring.open("k", b"{\"plain\":1}"),
            Err(SealError::NotSealed { .. })
        ));
        assert!(matches!(
            ring.open("k", b"cks1short"),
            Err(SealError::NotSealed { .. })
        ));
    }

    #[test]
    fn a_generated_file_is_0600_loads_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let id = Kek::generate_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Kek::load(&path).unwrap().id_hex(), id);
        assert!(matches!(
            Kek::generate_file(&path),
            Err(SealError::Exists { .. })
        ));
        let debug = format!("{:?}", Kek::load(&path).unwrap());
        assert_eq!(debug, format!("Kek {{ id: {id:?} }}"));
    }

    #[test]
    fn a_kek_file_others_can_read_or_with_a_bad_body_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        Kek::generate_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = Kek::load(&path).unwrap_err();
        assert!(error.to_string().contains("chmod 600"), "{error}");
        std::fs::write(&path, "certinel-kek-v1:c2hvcnQ=\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(Kek::load(&path), Err(SealError::Malformed { .. })));
    }
}
