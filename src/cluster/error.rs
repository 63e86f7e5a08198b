//! [`ClusterError`]: why a replica could not join its etcd cluster, each with what to do.

use std::path::PathBuf;

use crate::store::sealed::SealError;

/// A `[cluster]` that could not be used: etcd unreachable or refusing us, a TLS file that
/// does not load, or a key-encryption key that does not. Never carries the password or key
/// material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A TLS file of `[cluster]` could not be read.
    #[error("cannot read [cluster] {key} {path}: {source}")]
    TlsFile {
        /// The configuration key naming the file (`ca_file`, `client_cert`, `client_key`).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A TLS file of `[cluster]` does not hold what its key names.
    #[error("[cluster] {key} {path} holds no {expected}; write the PEM file there")]
    NotPem {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What it should hold: `PEM certificate` or `PEM private key`.
        expected: &'static str,
    },
    /// Settings etcd's client library refused.
    #[error("cannot use [cluster] for etcd at {endpoints}: {source}")]
    Settings {
        /// The configured endpoints, comma-separated.
        endpoints: String,
        /// The client library's error.
        source: etcd_client::Error,
    },
    /// No endpoint answered, or none completed a connection (refused, TLS handshake).
    #[error(
        "cannot reach etcd at {endpoints} ({cause}); check that etcd runs there with a \
         majority of its members up and that [cluster] etcd lists its client URLs, that no \
         firewall is in the way, and for https:// that ca_file is the CA of etcd's certificate \
         and client_cert is one etcd trusts"
    )]
    Unreachable {
        /// The configured endpoints, comma-separated.
        endpoints: String,
        /// What was seen: no answer within the timeout, or the connection's error.
        cause: String,
    },
    /// etcd answered with an error: authentication or permission failed, or it has no leader.
    #[error(
        "etcd at {endpoints} refused certinel ({detail}); check [cluster] username and password \
         (and that the user may read and write keys under {prefix})"
    )]
    Refused {
        /// The configured endpoints, comma-separated.
        endpoints: String,
        /// The key prefix certinel uses.
        prefix: String,
        /// What etcd said (never the password).
        detail: String,
    },
    /// A key-encryption key file could not be loaded.
    #[error("[cluster] {key}: {source}")]
    Kek {
        /// `key_encryption_key_file` or `key_encryption_key_previous`.
        key: &'static str,
        /// What went wrong; never key material.
        source: SealError,
    },
    /// The thread that keeps this replica's membership could not be started.
    #[error("cannot start the cluster membership thread: {0}")]
    Runtime(#[source] std::io::Error),
}
