//! Validation of the CAs a certificate may be obtained from: the `[ca.NAME]` tables and a
//! certificate's ordered `ca = [...]` list with its `ca_failover_after`.

use std::collections::BTreeMap;

use toml::Spanned;

use crate::config::ConfigError;
use crate::config::certificates::ca_settings;
use crate::config::locate::join;
use crate::config::model::{
    AcmeConfig, DEFAULT_CA, DEFAULT_CA_FAILOVER_AFTER, DEFAULT_MAX_CONCURRENT_ORDERS,
    MAX_CONCURRENT_ORDERS_LIMIT,
};
use crate::config::raw::{RawAcme, RawCertificate};
use crate::config::validate::Context;

/// Every `[ca.NAME]` table, validated like `[acme]`; each needs its own `directory`.
pub(crate) fn cas(
    raw: BTreeMap<Spanned<String>, Spanned<RawAcme>>,
    cx: &Context<'_>,
) -> Result<BTreeMap<String, AcmeConfig>, ConfigError> {
    let mut cas = BTreeMap::new();
    for (name, table) in raw {
        let prefix = format!("ca.{}", name.get_ref());
        if name.get_ref() == DEFAULT_CA {
            return Err(cx.error(
                name.span(),
                prefix,
                format!(
                    "{DEFAULT_CA:?} names the [acme] table; configure it there or give this CA \
                     another name"
                ),
            ));
        }
        if !is_ca_name(name.get_ref()) {
            return Err(cx.error(
                name.span(),
                prefix,
                "a CA name uses letters, digits, '.', '_' or '-'; e.g. [ca.zerossl]".to_owned(),
            ));
        }
        let span = table.span();
        let table = table.into_inner();
        let Some(directory) = table.directory.clone() else {
            return Err(cx.error(
                span,
                format!("{prefix}.directory"),
                "required for every [ca.NAME] table; add e.g. \
                 directory = \"https://acme.zerossl.com/v2/DV90\""
                    .to_owned(),
            ));
        };
        let settings = ca_settings(table, &directory, &prefix, cx)?;
        cas.insert(name.into_inner(), settings);
    }
    Ok(cas)
}

/// Whether a certificate relies on `[acme]`: it sets no `ca`, or lists [`DEFAULT_CA`].
pub(crate) fn uses_default_ca(raw: &RawCertificate) -> bool {
    match &raw.ca {
        None => true,
        Some(list) => list
            .get_ref()
            .iter()
            .any(|name| name.get_ref() == DEFAULT_CA),
    }
}

/// A certificate's `ca` list (names checked against `known`, in configuration order, each
/// once) and `ca_failover_after`.
pub(crate) fn ca_choice(
    raw: &RawCertificate,
    known: &[&str],
    prefix: &str,
    cx: &Context<'_>,
) -> Result<(Vec<String>, u32), ConfigError> {
    let key = |name: &str| join(Some(prefix), name);
    let list = match &raw.ca {
        None => vec![DEFAULT_CA.to_owned()],
        Some(list) if list.get_ref().is_empty() => {
            return Err(cx.error(
                list.span(),
                key("ca"),
                "empty list; name at least one CA, e.g. [\"acme\"], or remove the key".to_owned(),
            ));
        }
        Some(list) => {
            let mut names: Vec<String> = Vec::with_capacity(list.get_ref().len());
            for (index, name) in list.get_ref().iter().enumerate() {
                let text = name.get_ref();
                let entry = format!("{}[{index}]", key("ca"));
                if !known.contains(&text.as_str()) {
                    let defined = if known.is_empty() {
                        "none is defined".to_owned()
                    } else {
                        format!("defined: {}", known.join(", "))
                    };
                    return Err(cx.error(
                        name.span(),
                        entry,
                        format!(
                            "unknown CA {text:?}; define [ca.{text}] or list a defined one \
                             ({defined})"
                        ),
                    ));
                }
                cx.push_once(&mut names, name, entry, |text| {
                    format!("CA {text:?} is listed twice; list each CA once")
                })?;
            }
            names
        }
    };
    let failover_after = cx.at_least(
        raw.ca_failover_after.as_ref(),
        key("ca_failover_after"),
        (1, DEFAULT_CA_FAILOVER_AFTER),
        |written| {
            format!(
                "{written} is not a count of failures; write 1 or more (default \
                 {DEFAULT_CA_FAILOVER_AFTER})"
            )
        },
    )?;
    Ok((list, failover_after))
}

/// `max_concurrent_orders` of `[acme]` or a `[ca.NAME]` (`key` names the table's keys):
/// 1 to [`MAX_CONCURRENT_ORDERS_LIMIT`], [`DEFAULT_MAX_CONCURRENT_ORDERS`] when absent.
pub(crate) fn max_concurrent_orders(
    value: Option<&Spanned<i64>>,
    key: &dyn Fn(&str) -> String,
    cx: &Context<'_>,
) -> Result<usize, ConfigError> {
    let Some(value) = value else {
        return Ok(DEFAULT_MAX_CONCURRENT_ORDERS);
    };
    match usize::try_from(*value.get_ref()) {
        Ok(cap) if (1..=MAX_CONCURRENT_ORDERS_LIMIT).contains(&cap) => Ok(cap),
        _ => Err(cx.error(
            value.span(),
            key("max_concurrent_orders"),
            format!(
                "{} is not a number of orders; write 1 to {MAX_CONCURRENT_ORDERS_LIMIT} \
                 (default {DEFAULT_MAX_CONCURRENT_ORDERS})",
                value.get_ref()
            ),
        )),
    }
}

/// The names a certificate may list: [`DEFAULT_CA`] when `[acme]` is configured, then every
/// `[ca.NAME]`.
pub(crate) fn known_names<'a>(
    acme: Option<&AcmeConfig>,
    cas: &'a BTreeMap<String, AcmeConfig>,
) -> Vec<&'a str> {
    acme.map(|_| DEFAULT_CA)
        .into_iter()
        .chain(cas.keys().map(String::as_str))
        .collect()
}

fn is_ca_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use crate::config::model::{DEFAULT_CA_FAILOVER_AFTER, DEFAULT_MAX_CONCURRENT_ORDERS};
    use crate::config::parse;

    const CAS: &str = r#"
[acme]
directory = "https://127.0.0.1:14000/dir"

[ca.backup]
directory = "https://127.0.0.1:14001/dir"
contact = ["mailto:ops@example.com"]
poll_timeout = "30s"

[[certificate]]
name = "plain"
dns_names = ["plain.example.com"]
challenge = { type = "http-01", listen = "127.0.0.1:5002" }

[[certificate]]
name = "failover"
dns_names = ["failover.example.com"]
challenge = { type = "http-01", listen = "127.0.0.1:5002" }
ca = ["backup", "acme"]
ca_failover_after = 2
"#;

    #[test]
    fn a_certificate_without_ca_uses_acme_and_a_listed_order_is_kept() {
        let config = parse(CAS, None).unwrap_or_else(|e| panic!("{e}"));
        let [plain, failover] = config.certificates.as_slice() else {
            panic!("two certificates");
        };
        assert_eq!(plain.ca, ["acme"]);
        assert_eq!(plain.ca_failover_after, DEFAULT_CA_FAILOVER_AFTER);
        assert_eq!(failover.ca, ["backup", "acme"]);
        assert_eq!(failover.ca_failover_after, 2);
        let backup = config.ca("backup").expect("[ca.backup]");
        assert_eq!(backup.directory, "https://127.0.0.1:14001/dir");
        assert_eq!(backup.poll_timeout, std::time::Duration::from_secs(30));
        assert_eq!(
            config.ca("acme").map(|acme| acme.directory.as_str()),
            Some("https://127.0.0.1:14000/dir")
        );
    }

    #[test]
    fn max_concurrent_orders_defaults_to_32_and_is_set_per_ca() {
        let config = parse(CAS, None).unwrap_or_else(|e| panic!("{e}"));
        let acme = config.ca("acme").expect("[acme]");
        assert_eq!(acme.max_concurrent_orders, DEFAULT_MAX_CONCURRENT_ORDERS);
        assert_eq!(DEFAULT_MAX_CONCURRENT_ORDERS, 32);
        let text = CAS
            .replace("[ca.backup]\n", "[ca.backup]\nmax_concurrent_orders = 1\n")
            .replace("[acme]\n", "[acme]\nmax_concurrent_orders = 1024\n");
        let config = parse(&text, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.ca("acme").map(|ca| ca.max_concurrent_orders),
            Some(1024)
        );
        assert_eq!(
            config.ca("backup").map(|ca| ca.max_concurrent_orders),
            Some(1)
        );
    }

    #[test]
    fn max_concurrent_orders_outside_1_to_1024_names_the_line_and_the_range() {
        for (table, written) in [("[acme]", "0"), ("[ca.backup]", "1025"), ("[acme]", "-3")] {
            let text = CAS.replace(
                &format!("{table}\n"),
                &format!("{table}\nmax_concurrent_orders = {written}\n"),
            );
            let error = parse(&text, None).expect_err("refused").to_string();
            let key = if table == "[acme]" {
                "acme.max_concurrent_orders"
            } else {
                "ca.backup.max_concurrent_orders"
            };
            let line = text
                .lines()
                .position(|line| line.starts_with("max_concurrent_orders"))
                .expect("the key's line")
                + 1;
            assert_eq!(
                error,
                format!(
                    "<config>:{line}:25: {key}: {written} is not a number of orders; write 1 \
                     to 1024 (default 32)"
                )
            );
        }
        let error = parse(
            &CAS.replace("[acme]\n", "[acme]\nmax_concurrent_orders = \"8\"\n"),
            None,
        )
        .expect_err("a string is refused")
        .to_string();
        assert!(error.starts_with("<config>:3:"), "{error}");
    }

    #[test]
    fn certificates_that_list_only_named_cas_need_no_acme_table() {
        let text = r#"
[ca.backup]
directory = "https://127.0.0.1:14001/dir"

[[certificate]]
name = "api"
dns_names = ["api.example.com"]
challenge = { type = "http-01", listen = "127.0.0.1:5002" }
ca = ["backup"]
"#;
        let config = parse(text, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.acme.is_none());
        assert_eq!(config.certificates[0].ca, ["backup"]);
    }
}
