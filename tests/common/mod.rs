//! Helpers shared by the integration tests: a test PKI, live loopback TLS and plaintext
//! servers, a real PostgreSQL, and Debian's Pebble ACME test CA.

pub mod pebble;
pub mod pki;
pub mod plaintext_servers;
pub mod postgres;
pub mod tls_server;
