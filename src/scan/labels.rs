//! Stable text labels for scanner enums, shared by the CLI output and the metrics.

use crate::scan::inspect::Role;

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
