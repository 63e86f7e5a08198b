//! Helpers shared by the integration tests: a test PKI and live loopback TLS servers.

pub mod pki;
pub mod tls_server;
