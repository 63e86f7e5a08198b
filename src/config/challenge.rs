//! Validation of a certificate's `challenge = { type = ... }`: http-01, tls-alpn-01 and
//! dns-01 with its RFC 2136 and exec providers.

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use toml::Spanned;

use crate::cert::HookEnv;
use crate::cert::{
    ChallengeSpec, DEFAULT_PROPAGATION_TIMEOUT, Dns01Spec, DnsProvider, Rfc2136Settings,
    TsigAlgorithm, TsigSecret,
};
use crate::config::ConfigError;
use crate::config::hook_env::hook_env;
use crate::config::locate::join;
use crate::config::raw::RawChallenge;
use crate::config::target::parse_dns_name;
use crate::config::validate::Context;

/// `challenge` of the certificate whose key prefix is `key`; `certificate_env` is what
/// the certificate's `env` and `env_passthrough` give all its hooks.
pub(crate) fn challenge(
    raw: &Spanned<RawChallenge>,
    key: &str,
    certificate_env: &HookEnv,
    cx: &Context<'_>,
) -> Result<ChallengeSpec, ConfigError> {
    let table = Table { raw, key, cx };
    let inner = raw.get_ref();
    let kind = inner.kind.get_ref().as_str();
    if kind == "dns-01" {
        return dns01(&table, certificate_env).map(ChallengeSpec::Dns01);
    }
    if let Some((name, span)) = dns01_keys(inner).into_iter().next() {
        return Err(table.error_at(
            span,
            name,
            format!("{name} applies only to type = \"dns-01\"; remove it"),
        ));
    }
    let listen = |value: &Spanned<String>| {
        socket_addr(
            value,
            &table.sub("listen"),
            "\"0.0.0.0:80\" or \"[::]:443\"",
            cx,
        )
    };
    match (kind, &inner.listen, &inner.webroot) {
        ("http-01", Some(address), None) => Ok(ChallengeSpec::Http01Listen(listen(address)?)),
        ("http-01", None, Some(webroot)) => Ok(ChallengeSpec::Http01Webroot(
            cx.path(webroot, table.sub("webroot"))?,
        )),
        ("http-01", Some(_), Some(webroot)) => Err(table.error_at(
            webroot.span(),
            "webroot",
            "set listen or webroot, not both".to_owned(),
        )),
        ("http-01", None, None) => Err(table.error(
            "http-01 needs listen = \"0.0.0.0:80\" or webroot = \"/var/www/html\"".to_owned(),
        )),
        ("tls-alpn-01", _, Some(webroot)) => Err(table.error_at(
            webroot.span(),
            "webroot",
            "tls-alpn-01 cannot use a webroot; set listen = \"0.0.0.0:443\"".to_owned(),
        )),
        ("tls-alpn-01", Some(address), None) => {
            Ok(ChallengeSpec::TlsAlpn01Listen(listen(address)?))
        }
        ("tls-alpn-01", None, None) => {
            Err(table.error("tls-alpn-01 needs listen = \"0.0.0.0:443\"".to_owned()))
        }
        (other, _, _) => Err(table.error_at(
            inner.kind.span(),
            "type",
            format!(
                "unknown challenge type {other:?}; use \"http-01\", \"tls-alpn-01\" or \"dns-01\""
            ),
        )),
    }
}

/// The `challenge` table being validated, with its key and the context that words errors:
/// what every step below needs.
struct Table<'a> {
    raw: &'a Spanned<RawChallenge>,
    key: &'a str,
    cx: &'a Context<'a>,
}

impl Table<'_> {
    /// The key of `name` inside the table.
    fn sub(&self, name: &str) -> String {
        join(Some(self.key), name)
    }

    /// An error about the whole table.
    fn error(&self, problem: String) -> ConfigError {
        self.cx.error(self.raw.span(), self.key.to_owned(), problem)
    }

    /// An error about the key `name` inside the table, written at `span`.
    fn error_at(&self, span: std::ops::Range<usize>, name: &str, problem: String) -> ConfigError {
        self.cx.error(span, self.sub(name), problem)
    }

    /// The value of `name`, a key the provider cannot do without.
    fn required<'v>(
        &self,
        value: &'v Option<Spanned<String>>,
        name: &str,
        example: &str,
    ) -> Result<&'v Spanned<String>, ConfigError> {
        match value {
            Some(value) if !value.get_ref().trim().is_empty() => Ok(value),
            Some(value) => Err(self.error_at(
                value.span(),
                name,
                format!("empty {name}; write e.g. {name} = {example}"),
            )),
            None => Err(self.error(format!(
                "this dns-01 provider needs {name}, e.g. {name} = {example}"
            ))),
        }
    }
}

fn dns01(table: &Table<'_>, certificate_env: &HookEnv) -> Result<Dns01Spec, ConfigError> {
    let (inner, key, cx) = (table.raw.get_ref(), table.key, table.cx);
    for (name, value) in [("listen", &inner.listen), ("webroot", &inner.webroot)] {
        if let Some(value) = value {
            return Err(table.error_at(
                value.span(),
                name,
                format!("dns-01 publishes TXT records and uses no {name}; remove it"),
            ));
        }
    }
    let Some(provider) = &inner.provider else {
        return Err(table.error(
            "dns-01 needs provider = \"rfc2136\" (with server, zone and a TSIG key) or \
             provider = \"exec\" (with command)"
                .to_owned(),
        ));
    };
    let provider = match provider.get_ref().as_str() {
        "rfc2136" => DnsProvider::Rfc2136(rfc2136(table)?),
        "exec" => {
            if let Some((name, span)) = rfc2136_keys(inner).into_iter().next() {
                return Err(table.error_at(
                    span,
                    name,
                    format!("{name} applies only to provider = \"rfc2136\"; remove it"),
                ));
            }
            let command =
                table.required(&inner.command, "command", "\"/usr/local/bin/dns-hook\"")?;
            let own_env = hook_env(inner.env.as_ref(), inner.env_passthrough.as_ref(), key, cx)?;
            DnsProvider::Exec {
                command: cx.path(command, table.sub("command"))?,
                env: certificate_env.extended_with(&own_env),
            }
        }
        other => {
            return Err(table.error_at(
                provider.span(),
                "provider",
                format!("unknown dns-01 provider {other:?}; use \"rfc2136\" or \"exec\""),
            ));
        }
    };
    let propagation_resolver = resolver_addr(
        inner.propagation_resolver.as_ref(),
        &table.sub("propagation_resolver"),
        cx,
    )?;
    let propagation_timeout = cx.timeout(
        inner.propagation_timeout.as_ref(),
        table.sub("propagation_timeout"),
        DEFAULT_PROPAGATION_TIMEOUT,
    )?;
    Ok(Dns01Spec {
        provider,
        propagation_resolver,
        propagation_timeout,
        authoritative_port_override: None,
    })
}

fn rfc2136(table: &Table<'_>) -> Result<Rfc2136Settings, ConfigError> {
    let (inner, cx) = (table.raw.get_ref(), table.cx);
    let exec_only = [
        ("command", inner.command.as_ref().map(Spanned::span)),
        ("env", inner.env.as_ref().map(Spanned::span)),
        (
            "env_passthrough",
            inner.env_passthrough.as_ref().map(Spanned::span),
        ),
    ];
    if let Some((name, Some(span))) = exec_only.into_iter().find(|(_, span)| span.is_some()) {
        return Err(table.error_at(
            span,
            name,
            format!("{name} applies only to provider = \"exec\"; remove it"),
        ));
    }
    let server = table.required(&inner.server, "server", "\"192.0.2.53:53\"")?;
    let server = socket_addr(server, &table.sub("server"), "\"192.0.2.53:53\"", cx)?;
    let zone = table.required(&inner.zone, "zone", "\"example.com.\"")?;
    let zone = absolute_name(zone, &table.sub("zone"), cx)?;
    let key_name = table.required(&inner.tsig_key_name, "tsig_key_name", "\"certinel\"")?;
    let tsig_key_name = absolute_name(key_name, &table.sub("tsig_key_name"), cx)?;
    let secret = table.required(
        &inner.tsig_key,
        "tsig_key",
        "\"BASE64\" (the secret from the server's key file)",
    )?;
    let tsig_key = match STANDARD.decode(secret.get_ref().trim()) {
        Ok(bytes) if !bytes.is_empty() => TsigSecret(bytes),
        // Never quote the key: it is a secret.
        _ => {
            return Err(table.error_at(
                secret.span(),
                "tsig_key",
                "not a base64 key; copy the secret exactly as the DNS server's key file \
                 has it"
                    .to_owned(),
            ));
        }
    };
    let tsig_algorithm = cx.parsed_or(
        inner.tsig_algorithm.as_ref(),
        table.sub("tsig_algorithm"),
        TsigAlgorithm::HmacSha256,
    )?;
    Ok(Rfc2136Settings {
        server,
        zone,
        tsig_key_name,
        tsig_key,
        tsig_algorithm,
    })
}

/// An optional DNS resolver address (`preflight_resolver`, `propagation_resolver`).
pub(crate) fn resolver_addr(
    value: Option<&Spanned<String>>,
    key: &str,
    cx: &Context<'_>,
) -> Result<Option<SocketAddr>, ConfigError> {
    value
        .map(|value| socket_addr(value, key, "\"192.0.2.53:53\"", cx))
        .transpose()
}

pub(crate) fn socket_addr(
    value: &Spanned<String>,
    key: &str,
    example: &str,
    cx: &Context<'_>,
) -> Result<SocketAddr, ConfigError> {
    value.get_ref().parse::<SocketAddr>().map_err(|_| {
        cx.error(
            value.span(),
            key.to_owned(),
            format!("{:?} is not IP:PORT; write e.g. {example}", value.get_ref()),
        )
    })
}

/// A DNS name, lower case with the final dot.
fn absolute_name(
    value: &Spanned<String>,
    key: &str,
    cx: &Context<'_>,
) -> Result<String, ConfigError> {
    parse_dns_name(value.get_ref().trim())
        .map(|name| format!("{}.", name.trim_end_matches('.')))
        .map_err(|error| cx.error(value.span(), key.to_owned(), error.to_string()))
}

/// The dns-01-only keys that are set, with their spans.
fn dns01_keys(raw: &RawChallenge) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let mut keys = vec![
        ("provider", &raw.provider),
        ("command", &raw.command),
        ("propagation_resolver", &raw.propagation_resolver),
    ];
    keys.extend(rfc2136_key_values(raw));
    let mut found: Vec<_> = keys
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|value| (name, value.span())))
        .collect();
    if let Some(timeout) = &raw.propagation_timeout {
        found.push(("propagation_timeout", timeout.span()));
    }
    if let Some(env) = &raw.env {
        found.push(("env", env.span()));
    }
    if let Some(passthrough) = &raw.env_passthrough {
        found.push(("env_passthrough", passthrough.span()));
    }
    found
}

/// The rfc2136-only keys that are set, with their spans.
fn rfc2136_keys(raw: &RawChallenge) -> Vec<(&'static str, std::ops::Range<usize>)> {
    rfc2136_key_values(raw)
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|value| (name, value.span())))
        .collect()
}

fn rfc2136_key_values(raw: &RawChallenge) -> [(&'static str, &Option<Spanned<String>>); 5] {
    [
        ("server", &raw.server),
        ("zone", &raw.zone),
        ("tsig_key_name", &raw.tsig_key_name),
        ("tsig_key", &raw.tsig_key),
        ("tsig_algorithm", &raw.tsig_algorithm),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cert::Identifier;
    use crate::config::parse;

    use super::*;

    fn only_certificate(challenge: &str, names: &str) -> crate::config::model::CertificateConfig {
        let text = format!(
            "[acme]\ndirectory = \"https://127.0.0.1:14000/dir\"\n\n[[certificate]]\n\
             name = \"c\"\ndns_names = {names}\nchallenge = {challenge}\n"
        );
        let mut config = parse(&text, None).unwrap_or_else(|e| panic!("{e}"));
        config.certificates.remove(0)
    }

    #[test]
    fn rfc2136_loads_with_a_decoded_key_an_absolute_zone_and_defaults() {
        let certificate = only_certificate(
            r#"{ type = "dns-01", provider = "rfc2136", server = "127.0.0.1:5353", zone = "Example.com", tsig_key_name = "certinel", tsig_key = "c2VjcmV0" }"#,
            r#"["*.example.com", "example.com"]"#,
        );
        assert_eq!(
            certificate.identifiers,
            [
                Identifier::Dns("*.example.com".into()),
                Identifier::Dns("example.com".into())
            ]
        );
        assert_eq!(
            certificate.challenge,
            ChallengeSpec::Dns01(Dns01Spec {
                provider: DnsProvider::Rfc2136(Rfc2136Settings {
                    server: "127.0.0.1:5353".parse().unwrap(),
                    zone: "example.com.".into(),
                    tsig_key_name: "certinel.".into(),
                    tsig_key: TsigSecret(b"secret".to_vec()),
                    tsig_algorithm: TsigAlgorithm::HmacSha256,
                }),
                propagation_resolver: None,
                propagation_timeout: DEFAULT_PROPAGATION_TIMEOUT,
                authoritative_port_override: None,
            })
        );
    }

    #[test]
    fn exec_loads_with_its_resolver_and_timeout() {
        let certificate = only_certificate(
            r#"{ type = "dns-01", provider = "exec", command = "/usr/local/bin/hook", propagation_resolver = "127.0.0.1:53", propagation_timeout = "30s" }"#,
            r#"["www.example.com"]"#,
        );
        assert_eq!(
            certificate.challenge,
            ChallengeSpec::Dns01(Dns01Spec {
                provider: DnsProvider::Exec {
                    command: "/usr/local/bin/hook".into(),
                    env: HookEnv::default(),
                },
                propagation_resolver: Some("127.0.0.1:53".parse().unwrap()),
                propagation_timeout: Duration::from_secs(30),
                authoritative_port_override: None,
            })
        );
    }
}
