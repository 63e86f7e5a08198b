//! Migration from certbot and lego: their files are read ([`read`]), turned into an
//! [`ImportPlan`] by pure parsers ([`certbot`], [`lego`]), adopted into certinel's store
//! and account directory ([`adopt`]) and rendered as configuration ([`render`]).
//!
//! **Invariant:** the parsers and the renderer touch no file, socket or clock; `read`
//! only reads, and `adopt` writes only through `store` (certificates) and `acme`
//! (the account), plus certbot's `live/` links when asked to.

pub mod adopt;
pub mod certbot;
pub mod key_pem;
pub mod lego;
pub mod plan;
pub mod read;
pub mod render;
#[cfg(test)]
mod testing;

use std::path::PathBuf;

pub use adopt::{AdoptOptions, AdoptReport, CertificateOutcome, adopt};
pub use plan::{AccountPlan, CertificatePlan, ChallengePlan, ImportPlan, LiveFiles, Tool};

/// Why an import cannot go on. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A file or directory cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The directory is not what the command expects.
    #[error("{path} {problem}")]
    NotFound {
        /// The directory given.
        path: PathBuf,
        /// What is missing and what to do.
        problem: String,
    },
    /// A file does not parse.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// certinel's state already holds something else under the certificate's name.
    #[error("{path} {message}")]
    Occupied {
        /// The certificate's directory in the store.
        path: PathBuf,
        /// What it holds and what to do.
        message: String,
    },
    /// An account key cannot be used.
    #[error("{path}: {source}")]
    AccountKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: crate::acme::ForeignKeyError,
    },
    /// A certificate or its key is unusable (or they do not match).
    #[error("{path}: {source}; renew it with {tool} first or leave it out")]
    Certificate {
        /// The file that names them.
        path: PathBuf,
        /// The client they came from.
        tool: &'static str,
        /// Why.
        source: crate::store::VerifyError,
    },
    /// The certificates renew against several ACME directories; certinel has one.
    #[error(
        "the certificates renew against {} ACME directories ({}): import one at a time \
         with --server URL",
        servers.len(),
        servers.join(", ")
    )]
    SeveralServers {
        /// The directory URLs.
        servers: Vec<String>,
    },
    /// The ACME directory URL is not recorded and was not given.
    #[error("{0}")]
    Server(String),
    /// Adopting the account failed.
    #[error("adopting the ACME account: {0}")]
    Account(#[from] crate::acme::AcmeError),
    /// Writing certinel's state failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
