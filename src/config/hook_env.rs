//! Validation of what hooks get beyond their minimal environment: `env = { NAME = "value" }`
//! and `env_passthrough = ["NAME", ...]`, on a certificate (all its hooks) and on a dns-01
//! exec challenge (that hook alone).

use std::collections::BTreeMap;

use toml::Spanned;

use crate::cert::HookEnv;
use crate::config::ConfigError;
use crate::config::locate::join;
use crate::config::validate::Context;
use crate::hook::check_env_name;

/// `env = { NAME = "value" }` as the file has it.
pub(crate) type RawEnv = Spanned<BTreeMap<Spanned<String>, Spanned<String>>>;
/// `env_passthrough = ["NAME", ...]` as the file has it.
pub(crate) type RawPassthrough = Spanned<Vec<Spanned<String>>>;

/// The `env` and `env_passthrough` of the table whose key prefix is `prefix`.
pub(crate) fn hook_env(
    env: Option<&RawEnv>,
    passthrough: Option<&RawPassthrough>,
    prefix: &str,
    cx: &Context<'_>,
) -> Result<HookEnv, ConfigError> {
    let mut set = BTreeMap::new();
    for (name, value) in env.map(Spanned::get_ref).into_iter().flatten() {
        let key = join(Some(&join(Some(prefix), "env")), name.get_ref());
        check_env_name(name.get_ref())
            .map_err(|error| cx.error(name.span(), key.clone(), error.to_string()))?;
        if value.get_ref().contains('\0') {
            // Never quote the value: it is often a secret.
            return Err(cx.error(
                value.span(),
                key,
                "the value contains a NUL byte, which no environment variable can hold".to_owned(),
            ));
        }
        set.insert(name.get_ref().clone(), value.get_ref().clone());
    }
    let mut names: Vec<String> = Vec::new();
    for (index, name) in passthrough
        .map(Spanned::get_ref)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let key = format!("{}[{index}]", join(Some(prefix), "env_passthrough"));
        let text = name.get_ref();
        check_env_name(text)
            .map_err(|error| cx.error(name.span(), key.clone(), error.to_string()))?;
        if set.contains_key(text) {
            return Err(cx.error(
                name.span(),
                key,
                format!("{text} is also set in env; keep one of the two"),
            ));
        }
        cx.push_once(&mut names, name, key, |text| {
            format!("{text} is listed twice; remove one")
        })?;
    }
    Ok(HookEnv {
        set,
        passthrough: names,
    })
}

#[cfg(test)]
mod tests {
    use crate::cert::{ChallengeSpec, Dns01Spec, DnsProvider};
    use crate::config::model::CertificateConfig;
    use crate::config::parse;

    use super::*;

    fn certificate(extra: &str) -> Result<CertificateConfig, ConfigError> {
        let text = format!(
            "[acme]\ndirectory = \"https://127.0.0.1:14000/dir\"\n\n[[certificate]]\n\
             name = \"c\"\ndns_names = [\"www.example.com\"]\n{extra}\n"
        );
        parse(&text, None).map(|mut config| config.certificates.remove(0))
    }

    fn http01(extra: &str) -> Result<CertificateConfig, ConfigError> {
        certificate(&format!(
            "challenge = {{ type = \"http-01\", listen = \"127.0.0.1:80\" }}\n{extra}"
        ))
    }

    fn error(result: Result<CertificateConfig, ConfigError>) -> String {
        result.map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn a_certificate_sets_and_passes_through_variables_for_its_hooks() {
        let certificate =
            http01("env = { RELOAD = \"nginx\" }\nenv_passthrough = [\"CF_API_TOKEN\"]").unwrap();
        assert_eq!(
            certificate.env,
            HookEnv {
                set: [("RELOAD".to_owned(), "nginx".to_owned())].into(),
                passthrough: vec!["CF_API_TOKEN".into()],
            }
        );
    }

    #[test]
    fn the_exec_hook_gets_the_certificates_variables_and_its_own() {
        let certificate = certificate(
            "env = { A = \"cert\", B = \"cert\" }\nenv_passthrough = [\"HTTP_PROXY\"]\n\
             challenge = { type = \"dns-01\", provider = \"exec\", command = \"/bin/hook\", \
             env = { B = \"challenge\" }, env_passthrough = [\"CF_API_TOKEN\"] }",
        )
        .unwrap();
        let ChallengeSpec::Dns01(Dns01Spec {
            provider: DnsProvider::Exec { env, .. },
            ..
        }) = certificate.challenge
        else {
            panic!("{:?}", certificate.challenge);
        };
        assert_eq!(
            env,
            HookEnv {
                set: [
                    ("A".to_owned(), "cert".to_owned()),
                    ("B".to_owned(), "challenge".to_owned())
                ]
                .into(),
                passthrough: vec!["HTTP_PROXY".into(), "CF_API_TOKEN".into()],
            }
        );
        // The deploy commands do not see the DNS provider's variables.
        assert_eq!(certificate.env.passthrough, ["HTTP_PROXY"]);
    }

    #[test]
    fn challenge_env_belongs_to_the_exec_provider_only() {
        let message = error(certificate(
            "challenge = { type = \"http-01\", listen = \"127.0.0.1:80\", env = { X = \"1\" } }",
        ));
        assert!(message.contains("challenge.env"), "{message}");
        let message = error(certificate(
            "challenge = { type = \"dns-01\", provider = \"rfc2136\", server = \
             \"127.0.0.1:53\", zone = \"example.com\", tsig_key_name = \"k\", tsig_key = \
             \"c2VjcmV0\", env_passthrough = [\"X\"] }",
        ));
        assert!(
            message.contains("challenge.env_passthrough")
                && message.contains("only to provider = \"exec\""),
            "{message}"
        );
    }
}
