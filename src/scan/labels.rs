//! Stable text labels for scanner enums, shared by the CLI output and the metrics.

use crate::scan::inspect::{KeyType, Role};

impl KeyType {
    /// `ecdsa-p256`, `rsa-2048`, `ed25519`, ... (the same spelling as the renewer's `key`).
    pub fn label(self) -> String {
        match self {
            KeyType::Rsa(bits) => format!("rsa-{bits}"),
            KeyType::EcdsaP256 => "ecdsa-p256".to_owned(),
            KeyType::EcdsaP384 => "ecdsa-p384".to_owned(),
            KeyType::EcdsaP521 => "ecdsa-p521".to_owned(),
            KeyType::Ed25519 => "ed25519".to_owned(),
            KeyType::Other => "other".to_owned(),
        }
    }
}

impl Role {
    /// `leaf`, `intermediate` or `root`.
    pub fn label(self) -> &'static str {
        match self {
            Role::Leaf => "leaf",
            Role::Intermediate => "intermediate",
            Role::Root => "root",
        }
    }
}
