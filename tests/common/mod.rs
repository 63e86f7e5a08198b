//! Helpers shared by the integration tests: a test PKI, live loopback TLS servers and a
//! running `certinel run` process.

pub mod pki;
pub mod service;
pub mod tls_server;
