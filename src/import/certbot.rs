//! certbot's files as certinel sees them: `renewal/NAME.conf` (a configobj INI file),
//! the lineage's certificate and key, and `accounts/SERVER/directory/ID/` (`regr.json`
//! with the account URL, `private_key.json` with its JWK). Pure: [`super::read`] reads the
//! files, [`plan`] decides.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::acme::ForeignKey;
use crate::cert::KeyAlgorithm;
use crate::import::plan::{
    AccountPlan, CertificatePlan, ChallengePlan, DNS_HOOK_PLACEHOLDER, ImportPlan, LiveFiles, Tool,
    contact_urls, fit_challenge, key_algorithm_for,
};
use crate::import::{ImportError, key_pem};
use crate::store::check_pems;

/// The parts of a renewal conf certinel uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenewalConf {
    /// Top-level `key = value` lines (`cert`, `privkey`, `fullchain`, `renew_before_expiry`).
    pub top: BTreeMap<String, String>,
    /// `[renewalparams]` (`account`, `server`, `authenticator`, hooks, key type, ...).
    pub params: BTreeMap<String, String>,
    /// `[[webroot_map]]`: name and web root, in file order.
    pub webroot_map: Vec<(String, String)>,
}

/// One lineage as read from disk.
#[derive(Debug, Clone)]
pub struct LineageFiles {
    /// The lineage name (`renewal/NAME.conf`).
    pub name: String,
    /// The renewal conf's path.
    pub conf_path: PathBuf,
    /// The parsed conf.
    pub conf: RenewalConf,
    /// The full chain's text (`fullchain`).
    pub fullchain_pem: String,
    /// The private key's text (`privkey`); secret.
    pub key_pem: crate::store::SecretPem,
}

/// One account directory (`accounts/SERVER/directory/ID/`).
#[derive(Debug, Clone)]
pub struct AccountFiles {
    /// Its id (the directory name, which renewal confs name in `account`).
    pub id: String,
    /// The directory.
    pub dir: PathBuf,
    /// `private_key.json` (a JWK; secret).
    pub private_key_json: Vec<u8>,
    /// `regr.json` (`uri` is the account URL).
    pub regr_json: Vec<u8>,
}

/// Everything read from certbot's configuration directory.
#[derive(Debug, Clone)]
pub struct CertbotFiles {
    /// The configuration directory (`/etc/letsencrypt`).
    pub root: PathBuf,
    /// The lineages, in name order.
    pub lineages: Vec<LineageFiles>,
    /// The accounts.
    pub accounts: Vec<AccountFiles>,
    /// Executables in `renewal-hooks/deploy/`, which certbot runs after every renewal.
    pub deploy_hook_scripts: Vec<PathBuf>,
    /// Executables in `renewal-hooks/pre/` and `renewal-hooks/post/`.
    pub pre_post_hook_scripts: Vec<PathBuf>,
}

/// Why a certbot renewal conf does not parse; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenewalConfError {
    /// A `[section]` header that is empty or nests deeper than the one before allows.
    #[error("line {line}: unexpected section {text:?}")]
    Section {
        /// The line number.
        line: usize,
        /// The trimmed line.
        text: String,
    },
    /// A line that is neither a header, a comment nor `key = value`.
    #[error("line {line}: expected `key = value`, found {text:?}")]
    NotKeyValue {
        /// The line number.
        line: usize,
        /// The trimmed line.
        text: String,
    },
}

/// Parses the configobj subset certbot writes: `key = value`, `[section]`,
/// `[[subsection]]`, `#` comments, quoted values.
pub fn parse_renewal_conf(text: &str) -> Result<RenewalConf, RenewalConfError> {
    let mut conf = RenewalConf::default();
    let mut section: Vec<String> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            let depth = line.bytes().take_while(|byte| *byte == b'[').count();
            let name = line
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .to_owned();
            if depth == 0 || depth > section.len() + 1 || name.is_empty() {
                return Err(RenewalConfError::Section {
                    line: index + 1,
                    text: line.to_owned(),
                });
            }
            section.truncate(depth - 1);
            section.push(name);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(RenewalConfError::NotKeyValue {
                line: index + 1,
                text: line.to_owned(),
            });
        };
        let (key, value) = (key.trim().to_owned(), unquote(value.trim()));
        match section.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            [] => {
                conf.top.insert(key, value);
            }
            ["renewalparams"] => {
                conf.params.insert(key, value);
            }
            ["renewalparams", "webroot_map"] => conf.webroot_map.push((key, value)),
            _ => {}
        }
    }
    Ok(conf)
}

/// The plan for every lineage of `files` (those renewing against `server` when given).
pub fn plan(files: &CertbotFiles, server: Option<&str>) -> Result<ImportPlan, ImportError> {
    let servers: BTreeSet<&str> = files
        .lineages
        .iter()
        .filter_map(|lineage| lineage.conf.params.get("server").map(String::as_str))
        .filter(|url| server.is_none_or(|wanted| wanted == *url))
        .collect();
    let directory = match (servers.len(), server) {
        (1, _) => servers.into_iter().next().unwrap_or_default().to_owned(),
        (0, Some(wanted)) => {
            return Err(ImportError::Server(format!(
                "no lineage in {} renews against {wanted}",
                files.root.join("renewal").display()
            )));
        }
        (0, None) => {
            return Err(ImportError::NotFound {
                path: files.root.join("renewal"),
                problem: "holds no renewal conf with a `server`: pass certbot's configuration \
                          directory (default /etc/letsencrypt)"
                    .to_owned(),
            });
        }
        _ => {
            return Err(ImportError::SeveralServers {
                servers: servers.into_iter().map(str::to_owned).collect(),
            });
        }
    };
    let lineages: Vec<&LineageFiles> = files
        .lineages
        .iter()
        .filter(|lineage| lineage.conf.params.get("server") == Some(&directory))
        .collect();

    let mut notes = Vec::new();
    let account_ids: BTreeSet<&str> = lineages
        .iter()
        .filter_map(|lineage| lineage.conf.params.get("account").map(String::as_str))
        .collect();
    let (account, contact) = match account_ids.iter().next() {
        Some(id) => {
            if account_ids.len() > 1 {
                notes.push(format!(
                    "the lineages use {} certbot accounts; certinel keeps one per CA and \
                     adopts {id}",
                    account_ids.len()
                ));
            }
            let files = files
                .accounts
                .iter()
                .find(|account| account.id == *id)
                .ok_or_else(|| ImportError::NotFound {
                    path: files.root.join("accounts"),
                    problem: format!(
                        "holds no account {id} (named by the renewal confs): restore it, or \
                         remove `account` from the confs to let certinel register a new one"
                    ),
                })?;
            let (plan, contact) = account_plan(files)?;
            (Some(plan), contact)
        }
        None => {
            notes.push("no certbot account is named: certinel registers a new one".to_owned());
            (None, Vec::new())
        }
    };

    let other_servers: Vec<&str> = files
        .lineages
        .iter()
        .filter(|lineage| lineage.conf.params.get("server") != Some(&directory))
        .map(|lineage| lineage.name.as_str())
        .collect();
    if !other_servers.is_empty() {
        notes.push(format!(
            "left out (another ACME directory, or none): {}",
            other_servers.join(", ")
        ));
    }
    if !files.pre_post_hook_scripts.is_empty() {
        notes.push(format!(
            "certbot runs {} around every renewal; certinel has no pre/post hooks: make them \
             deploy commands or drop them",
            join_paths(&files.pre_post_hook_scripts)
        ));
    }
    let planned = lineages
        .iter()
        .map(|lineage| (lineage.name.clone(), certificate_plan(lineage, files)));
    Ok(ImportPlan::new(
        Tool::Certbot,
        files.root.clone(),
        directory,
        (account, contact),
        planned,
        notes,
    ))
}

fn account_plan(files: &AccountFiles) -> Result<(AccountPlan, Vec<String>), ImportError> {
    let regr_path = files.dir.join("regr.json");
    let regr: serde_json::Value =
        serde_json::from_slice(&files.regr_json).map_err(|error| ImportError::Parse {
            path: regr_path.clone(),
            message: format!("not JSON ({error}): restore it from a backup"),
        })?;
    let url = regr["uri"]
        .as_str()
        .ok_or_else(|| ImportError::Parse {
            path: regr_path,
            message: "has no account URL (`uri`): restore it from a backup".to_owned(),
        })?
        .to_owned();
    let contact = contact_urls(&regr["body"]);
    let key_file = files.dir.join("private_key.json");
    let key = ForeignKey::from_jwk(&files.private_key_json).map_err(|source| {
        ImportError::AccountKey {
            path: key_file.clone(),
            source,
        }
    })?;
    Ok((AccountPlan { url, key, key_file }, contact))
}

fn certificate_plan(
    lineage: &LineageFiles,
    files: &CertbotFiles,
) -> Result<CertificatePlan, ImportError> {
    let params = &lineage.conf.params;
    let mut notes = Vec::new();
    let key_pem =
        key_pem::to_pkcs8_pem(lineage.key_pem.expose()).map_err(|error| ImportError::Parse {
            path: lineage.conf_path.clone(),
            message: format!("privkey: {error}"),
        })?;
    let facts = check_pems(&lineage.fullchain_pem, key_pem.expose(), &[]).map_err(|source| {
        ImportError::Certificate {
            path: lineage.conf_path.clone(),
            tool: "certbot",
            source,
        }
    })?;
    let key = renewal_key(params, facts.key_type, &mut notes);
    let challenge = fit_challenge(challenge(lineage, &mut notes), &facts.dns_names, &mut notes);
    let mut deploy: Vec<String> = ["renew_hook", "deploy_hook"]
        .iter()
        .filter_map(|key| params.get(*key))
        .filter(|command| !command.is_empty())
        .cloned()
        .collect();
    deploy.dedup();
    deploy.extend(
        files
            .deploy_hook_scripts
            .iter()
            .map(|script| script.display().to_string()),
    );
    if deploy.iter().any(|command| command.contains("RENEWED_")) {
        notes.push(
            "a deploy command reads certbot's RENEWED_LINEAGE or RENEWED_DOMAINS; certinel sets \
             CERTINEL_NAME, CERTINEL_CERT, CERTINEL_KEY, ... instead"
                .to_owned(),
        );
    }
    for hook in ["pre_hook", "post_hook"] {
        if let Some(command) = params.get(hook).filter(|command| !command.is_empty()) {
            notes.push(format!(
                "certbot ran {hook} `{command}`; certinel has no such hook"
            ));
        }
    }
    let renew_before_days = lineage
        .conf
        .top
        .get("renew_before_expiry")
        .and_then(|text| parse_days(text));
    let top = &lineage.conf.top;
    let live = match (
        top.get("cert"),
        top.get("chain"),
        top.get("fullchain"),
        top.get("privkey"),
    ) {
        (Some(cert), Some(chain), Some(fullchain), Some(privkey)) => Some(LiveFiles {
            cert: cert.into(),
            chain: chain.into(),
            fullchain: fullchain.into(),
            privkey: privkey.into(),
        }),
        _ => None,
    };
    Ok(CertificatePlan {
        name: lineage.name.clone(),
        dns_names: facts.dns_names,
        serial: facts.serial,
        not_after: facts.not_after,
        key,
        challenge,
        renew_before_days,
        deploy,
        chain_pem: lineage.fullchain_pem.clone(),
        key_pem,
        live,
        described_by: lineage.conf_path.clone(),
        notes,
    })
}

/// certbot's `key_type` (`rsa`, `ecdsa`), `rsa_key_size` and `elliptic_curve`; the current
/// key's type when those name something certinel cannot generate.
fn renewal_key(
    params: &BTreeMap<String, String>,
    current: crate::cert::KeyType,
    notes: &mut Vec<String>,
) -> KeyAlgorithm {
    let wanted = match params.get("key_type").map(String::as_str) {
        Some("ecdsa") => match params.get("elliptic_curve").map(String::as_str) {
            None | Some("secp256r1") => Some(KeyAlgorithm::EcdsaP256),
            Some("secp384r1") => Some(KeyAlgorithm::EcdsaP384),
            Some(_) => None,
        },
        None | Some("rsa") => match params.get("rsa_key_size").map(String::as_str) {
            None | Some("2048") => Some(KeyAlgorithm::Rsa2048),
            Some("3072") => Some(KeyAlgorithm::Rsa3072),
            Some("4096") => Some(KeyAlgorithm::Rsa4096),
            Some(_) => None,
        },
        Some(_) => None,
    };
    wanted
        .or_else(|| key_algorithm_for(current))
        .unwrap_or_else(|| {
            notes
                .push("certinel cannot generate this key type; renewals use ecdsa-p256".to_owned());
            KeyAlgorithm::EcdsaP256
        })
}

fn challenge(lineage: &LineageFiles, notes: &mut Vec<String>) -> ChallengePlan {
    let params = &lineage.conf.params;
    let authenticator = params
        .get("authenticator")
        .map(String::as_str)
        .unwrap_or("");
    match authenticator {
        "standalone" => {
            let address = params
                .get("http01_address")
                .map(String::as_str)
                .filter(|address| !address.is_empty())
                .unwrap_or("0.0.0.0");
            let port = params
                .get("http01_port")
                .map(String::as_str)
                .filter(|port| !port.is_empty())
                .unwrap_or("80");
            if address.contains(':') {
                ChallengePlan::HttpListen(format!("[{address}]:{port}"))
            } else {
                ChallengePlan::HttpListen(format!("{address}:{port}"))
            }
        }
        "webroot" => {
            let webroot_map = &lineage.conf.webroot_map;
            let roots: BTreeSet<&str> = webroot_map.iter().map(|(_, root)| root.as_str()).collect();
            let first = webroot_map
                .first()
                .map(|(_, root)| root.clone())
                .or_else(|| {
                    params
                        .get("webroot_path")
                        .and_then(|paths| list(paths).into_iter().next())
                });
            if roots.len() > 1 {
                notes.push(format!(
                    "certbot used {} web roots for these names; certinel uses one per \
                     certificate: check that every name serves it",
                    roots.len()
                ));
            }
            match first {
                Some(root) => ChallengePlan::HttpWebroot(root),
                None => {
                    notes.push(
                        "the webroot authenticator names no web root: set `webroot`".to_owned(),
                    );
                    ChallengePlan::HttpWebroot("/var/www/html".to_owned())
                }
            }
        }
        dns if dns.starts_with("dns-") => {
            notes.push(format!(
                "certbot used the {dns:?} plugin: write {DNS_HOOK_PLACEHOLDER} (called as \
                 `HOOK present|cleanup NAME VALUE`) or use provider = \"rfc2136\""
            ));
            ChallengePlan::Dns01Exec(DNS_HOOK_PLACEHOLDER.to_owned())
        }
        other => {
            notes.push(format!(
                "certbot used the {other:?} authenticator, which certinel does not have: \
                 change `challenge` (http-01 webroot or listen, tls-alpn-01, dns-01) before \
                 the first renewal"
            ));
            ChallengePlan::HttpListen("0.0.0.0:80".to_owned())
        }
    }
}

/// configobj's quoting: `"text"` or `'text'` is `text`; an unquoted value ends at ` #`.
fn unquote(value: &str) -> String {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return value[1..value.len() - 1].to_owned();
        }
    }
    match value.find(" #") {
        Some(comment) => value[..comment].trim_end().to_owned(),
        None => value.to_owned(),
    }
}

/// A configobj list: `a, b,` is `[a, b]`.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `30 days` or `30d` as 30; other units (certbot also accepts weeks, hours) as `None`.
fn parse_days(text: &str) -> Option<u32> {
    let text = text.trim();
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let unit = text[digits.len()..].trim();
    matches!(unit, "d" | "day" | "days")
        .then(|| digits.parse().ok())
        .flatten()
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
