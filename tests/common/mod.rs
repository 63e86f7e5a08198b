//! Helpers shared by the integration tests.

pub mod plaintext_servers;
pub mod postgres;
