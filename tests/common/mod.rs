//! Helpers shared by the integration tests: a test PKI, live loopback TLS and plaintext
//! servers, child process assertions, a real PostgreSQL, Debian's Pebble ACME test CA (and an ARI front for it), Knot
//! DNS, nginx and Prometheus, and a running
//! `certinel run`.

pub mod ari_front;
pub mod ari_setup;
pub mod cli;
pub mod config_text;
pub mod crl;
pub mod etcd;
pub mod eventually;
pub mod knot;
pub mod nginx;
pub mod pebble;
pub mod pki;
pub mod plaintext_servers;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod service;
pub mod tls_server;
