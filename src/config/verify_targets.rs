//! Validation of a certificate's served-certificate check: the `verify` targets.
//!
//! The targets use the `[[endpoint]]` syntax and parser; they are parsed here rather than by
//! serde because toml reports an array element's error at the whole array.

use std::time::Duration;

use toml::Spanned;

use crate::config::ConfigError;
use crate::config::locate::join;
use crate::config::model::Target;
use crate::config::validate::Context;

/// How long the `verify` endpoints may take to serve a new version when `verify_timeout`
/// is not set.
pub(crate) const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(120);

/// The `verify` entries of the certificate at `prefix`, parsed and without duplicates.
pub(crate) fn verify_targets(
    raw: &[Spanned<String>],
    prefix: &str,
    cx: &Context<'_>,
) -> Result<Vec<Target>, ConfigError> {
    let mut targets: Vec<Target> = Vec::with_capacity(raw.len());
    for (index, value) in raw.iter().enumerate() {
        let key = format!("{}[{index}]", join(Some(prefix), "verify"));
        let target: Target = value
            .get_ref()
            .parse()
            .map_err(|e: crate::config::TargetError| {
                cx.error(value.span(), key.clone(), e.to_string())
            })?;
        if let Some(first) = targets.iter().position(|seen| *seen == target) {
            return Err(cx.error(
                value.span(),
                key,
                format!("duplicate target {target}, also verify[{first}]; remove one"),
            ));
        }
        targets.push(target);
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use crate::config::model::{CertificateConfig, Host, OnVerifyFailure};
    use crate::config::parse;

    use super::*;

    fn certificate(extra: &str) -> CertificateConfig {
        let text = format!(
            "[acme]\ndirectory = \"https://127.0.0.1:14000/dir\"\n\n[[certificate]]\n\
             name = \"c\"\ndns_names = [\"c.example.com\"]\n\
             challenge = {{ type = \"http-01\", listen = \"127.0.0.1:80\" }}\n{extra}"
        );
        let mut config = parse(&text, None).unwrap_or_else(|e| panic!("{e}"));
        config.certificates.remove(0)
    }

    #[test]
    fn without_verify_there_is_no_check_and_the_defaults_apply() {
        let certificate = certificate("");
        assert!(certificate.verify.is_empty());
        assert_eq!(certificate.verify_timeout, DEFAULT_VERIFY_TIMEOUT);
        assert_eq!(certificate.on_verify_failure, OnVerifyFailure::Rollback);
    }

    #[test]
    fn verify_targets_use_the_endpoint_syntax_and_keep_their_order() {
        let certificate = certificate(
            "verify = [\"API.example.com:8443\", \"https://[::1]\"]\n\
             verify_timeout = \"30s\"\non_verify_failure = \"keep\"\n",
        );
        assert_eq!(
            certificate.verify,
            [
                Target {
                    host: Host::Name("api.example.com".into()),
                    port: 8443
                },
                Target {
                    host: Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                    port: 443
                },
            ]
        );
        assert_eq!(certificate.verify_timeout, Duration::from_secs(30));
        assert_eq!(certificate.on_verify_failure, OnVerifyFailure::Keep);
    }
}
