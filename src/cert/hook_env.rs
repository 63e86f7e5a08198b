//! What the configuration adds to a hook's environment (`env`, `env_passthrough`): data
//! shared by the configuration, the deploy commands and the dns-01 exec provider; `hook`
//! builds the environment from it.

use std::collections::BTreeMap;
use std::fmt;

/// What the configuration adds to a hook's minimal environment. `Debug` shows the names
/// only: the values are often API tokens.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HookEnv {
    /// `env = { NAME = "value" }`: set as written.
    pub set: BTreeMap<String, String>,
    /// `env_passthrough = ["NAME", ...]`: copied from certinel's environment when set there.
    pub passthrough: Vec<String>,
}

impl HookEnv {
    /// `self` with `more`'s entries added after it (a name in both takes `more`'s value).
    pub fn extended_with(&self, more: &HookEnv) -> HookEnv {
        let mut set = self.set.clone();
        set.extend(more.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut passthrough = self.passthrough.clone();
        for name in &more.passthrough {
            if !passthrough.contains(name) {
                passthrough.push(name.clone());
            }
        }
        HookEnv { set, passthrough }
    }
}

impl fmt::Debug for HookEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookEnv")
            .field("set", &self.set.keys().collect::<Vec<_>>())
            .field("passthrough", &self.passthrough)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_value() {
        let env = HookEnv {
            set: BTreeMap::from([("TOKEN".into(), "s3cr3t".into())]),
            passthrough: vec![],
        };
        let shown = format!("{env:?}");
        assert!(
            shown.contains("TOKEN") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }
}
