//! Helpers shared by the integration tests: a test PKI, live loopback TLS and plaintext
//! servers, and a real PostgreSQL.

pub mod pki;
pub mod plaintext_servers;
pub mod postgres;
pub mod tls_server;
