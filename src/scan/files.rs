//! Certificate files: expands a path, directory or glob and inspects each PEM/DER file.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;

use crate::disk::{ReadCappedError, read_capped};
use crate::scan::crl::watch::RevocationStatus;
use crate::scan::inspect::{ChainFacts, inspect_chain};

/// File name extensions taken from a directory (compared without regard to case).
pub const CERTIFICATE_EXTENSIONS: [&str; 4] = ["pem", "crt", "cer", "cert"];

/// The largest certificate file read: a full CA bundle (Mozilla's is about 220 KiB as PEM)
/// fits many times over; a bigger file is refused rather than read whole.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The result of inspecting one certificate file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The file read.
    pub path: PathBuf,
    /// The certificates it holds (first is treated as the leaf), or why none could be read.
    pub outcome: Result<ChainFacts, FileError>,
    /// What the leaf's CRL says, when CRL checking is on, the leaf names an `http://`
    /// distribution point and the file holds its issuer after it (see
    /// [`crate::scan::crl::watch::check_files`]).
    pub revocation: Option<RevocationStatus>,
}

/// A certificate file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The pattern matched nothing.
    #[error("{pattern}: no such file, or no certificate file in that directory or glob")]
    NoMatch {
        /// The configured path or pattern.
        pattern: String,
    },
    /// Reading failed.
    #[error("cannot read {path}: {detail}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        detail: String,
    },
    /// The file is larger than [`MAX_FILE_BYTES`]; it was not read whole.
    #[error("{path}: larger than {limit} bytes, too large for a certificate file; not read")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap in bytes.
        limit: u64,
    },
    /// The file holds no certificate, or one that does not parse.
    #[error("{path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Expands a configured path: a file, every certificate file in a directory, or a glob.
///
/// A directory yields its files ending in one of [`CERTIFICATE_EXTENSIONS`] (not
/// recursively); a glob yields every file it matches. Both are sorted by path.
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>, FileError> {
    let path = Path::new(pattern);
    let mut paths = if path.is_file() {
        return Ok(vec![path.to_owned()]);
    } else if path.is_dir() {
        certificate_files_in(path)?
    } else {
        let no_match = || FileError::NoMatch {
            pattern: pattern.to_owned(),
        };
        glob::glob(pattern)
            .map_err(|_| no_match())?
            // Entries the glob cannot read (permissions) are skipped like non-matches.
            .filter_map(Result::ok)
            .filter(|candidate| candidate.is_file())
            .collect()
    };
    if paths.is_empty() {
        return Err(FileError::NoMatch {
            pattern: pattern.to_owned(),
        });
    }
    paths.sort();
    Ok(paths)
}

/// Reads and inspects one certificate file.
///
/// PEM files may hold several CERTIFICATE blocks (the first is the leaf) and other blocks
/// such as private keys, which are skipped without being kept. A file without PEM
/// markers is read as one DER certificate.
pub fn inspect_file(path: &Path) -> FileReport {
    FileReport {
        path: path.to_owned(),
        outcome: read_der_chain(path).and_then(|chain| {
            inspect_chain(&chain).map_err(|err| parse_error(path, err.to_string()))
        }),
        revocation: None,
    }
}

fn certificate_files_in(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let io_error = |err: std::io::Error| FileError::Io {
        path: dir.to_owned(),
        detail: err.to_string(),
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        let wanted = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| {
                CERTIFICATE_EXTENSIONS
                    .iter()
                    .any(|wanted| extension.eq_ignore_ascii_case(wanted))
            });
        if wanted && path.is_file() {
            paths.push(path);
        }
    }
    Ok(paths)
}

/// The certificates of a file as DER, in file order (PEM blocks other than certificates
/// skipped; a file without PEM markers is one DER certificate), read within
/// [`MAX_FILE_BYTES`].
pub fn read_der_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let bytes = read_capped(path, MAX_FILE_BYTES).map_err(|err| match err {
        ReadCappedError::TooLarge { limit } => FileError::TooLarge {
            path: path.to_owned(),
            limit,
        },
        ReadCappedError::Io(err) => FileError::Io {
            path: path.to_owned(),
            detail: err.to_string(),
        },
    })?;
    if looks_like_pem(&bytes) {
        pem_certificates(&bytes).map_err(|error| parse_error(path, error.to_string()))
    } else {
        Ok(vec![CertificateDer::from(bytes)])
    }
}

fn parse_error(path: &Path, detail: String) -> FileError {
    FileError::Parse {
        path: path.to_owned(),
        detail,
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    const MARKER: &[u8] = b"-----BEGIN ";
    bytes.windows(MARKER.len()).any(|window| window == MARKER)
}

/// Why a PEM file yields no certificate.
#[derive(Debug, thiserror::Error)]
enum PemError {
    /// A block does not decode (the message says where, not what the block held).
    #[error("malformed PEM: {0}")]
    Malformed(#[source] std::io::Error),
    /// Only other blocks, or none.
    #[error("no CERTIFICATE block found; the file must be PEM with a certificate, or DER")]
    NoCertificate,
}

/// The CERTIFICATE blocks of a PEM file, in order. Other blocks (keys, CRLs, parameters)
/// are dropped as soon as they are read, so their contents never reach a message or log.
fn pem_certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let mut reader = bytes;
    let mut certificates = Vec::new();
    loop {
        match rustls_pemfile::read_one(&mut reader) {
            Ok(Some(rustls_pemfile::Item::X509Certificate(certificate))) => {
                certificates.push(certificate);
            }
            Ok(Some(_other_block)) => {}
            Ok(None) => break,
            // The message says where base64 decoding failed, not what the block held.
            Err(err) => return Err(PemError::Malformed(err)),
        }
    }
    if certificates.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests;
