//! The environment a hook runs with: not certinel's own, but a minimal one (`PATH`, `LANG`,
//! `HOME`), what the configuration adds (`env`, `env_passthrough`) and the `CERTINEL_*`
//! variables describing the work, so a secret in certinel's environment reaches only the
//! hooks it was passed to.

use std::collections::BTreeMap;
use std::ffi::OsString;

use crate::cert::HookEnv;

/// The variables copied from certinel's own environment into every hook's, when set.
pub const BASE_VARIABLES: [&str; 3] = ["PATH", "LANG", "HOME"];

/// `PATH` for hooks when certinel itself runs without one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The prefix of the variables certinel sets itself; the configuration cannot set them.
pub const RESERVED_PREFIX: &str = "CERTINEL_";

/// Why a name cannot be used in `env` or `env_passthrough`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvNameError {
    /// Not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error(
        "{0:?} is not an environment variable name; use letters, digits and '_', not starting with a digit"
    )]
    Invalid(String),
    /// A `CERTINEL_*` name, which certinel sets itself.
    #[error("{0:?} is set by certinel itself; choose a name that does not start with CERTINEL_")]
    Reserved(String),
}

/// Checks that `name` is a portable environment variable name the configuration may set.
pub fn check_env_name(name: &str) -> Result<(), EnvNameError> {
    let mut bytes = name.bytes();
    let valid = bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(EnvNameError::Invalid(name.to_owned()));
    }
    if name.to_ascii_uppercase().starts_with(RESERVED_PREFIX) {
        return Err(EnvNameError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// The complete environment of a hook, in the order it is applied (a later entry wins):
/// the base variables and the passed-through ones as `parent` (certinel's own environment)
/// has them, then `env`'s, then `certinel`'s.
pub(crate) fn environment(
    env: &HookEnv,
    certinel: &[(&str, String)],
    parent: impl Fn(&str) -> Option<OsString>,
) -> Vec<(OsString, OsString)> {
    let mut vars: BTreeMap<OsString, OsString> = BTreeMap::new();
    vars.insert("PATH".into(), DEFAULT_PATH.into());
    let inherited = BASE_VARIABLES
        .iter()
        .copied()
        .chain(env.passthrough.iter().map(String::as_str));
    for name in inherited {
        if let Some(value) = parent(name) {
            vars.insert(name.into(), value);
        }
    }
    for (name, value) in &env.set {
        vars.insert(name.into(), value.into());
    }
    for (name, value) in certinel {
        vars.insert((*name).into(), value.into());
    }
    vars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(name: &str) -> Option<OsString> {
        match name {
            "PATH" => Some("/opt/bin:/usr/bin".into()),
            "HOME" => Some("/var/lib/certinel".into()),
            "SECRET" => Some("not for hooks".into()),
            "TOKEN" => Some("for hooks".into()),
            _ => None,
        }
    }

    fn names_and_values(vars: &[(OsString, OsString)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
            .collect()
    }

    #[test]
    fn only_the_base_passed_through_configured_and_certinel_variables_reach_a_hook() {
        let env = HookEnv {
            set: BTreeMap::from([("ZONE".into(), "example.com".into())]),
            passthrough: vec!["TOKEN".into(), "UNSET_HERE".into()],
        };
        let vars = environment(&env, &[("CERTINEL_NAME", "api".into())], parent);
        assert_eq!(
            names_and_values(&vars),
            [
                ("CERTINEL_NAME".into(), "api".into()),
                ("HOME".into(), "/var/lib/certinel".into()),
                ("PATH".into(), "/opt/bin:/usr/bin".into()),
                ("TOKEN".into(), "for hooks".into()),
                ("ZONE".into(), "example.com".into()),
            ]
        );
    }

    #[test]
    fn a_hook_gets_a_default_path_when_certinel_has_none() {
        let vars = environment(&HookEnv::default(), &[], |_| None);
        assert_eq!(
            names_and_values(&vars),
            [("PATH".into(), DEFAULT_PATH.into())]
        );
    }

    #[test]
    fn names_must_be_portable_and_outside_certinels_prefix() {
        assert_eq!(check_env_name("CF_API_TOKEN"), Ok(()));
        assert_eq!(check_env_name("_x1"), Ok(()));
        let refused = [
            ("1X", "invalid"),
            ("A-B", "invalid"),
            ("", "invalid"),
            ("A=B", "invalid"),
            ("CERTINEL_KEY", "reserved"),
            ("certinel_key", "reserved"),
        ];
        for (name, why) in refused {
            let refusal = match check_env_name(name) {
                Err(EnvNameError::Invalid(_)) => "invalid",
                Err(EnvNameError::Reserved(_)) => "reserved",
                Ok(()) => "accepted",
            };
            assert_eq!(refusal, why, "{name:?}");
        }
    }
}
