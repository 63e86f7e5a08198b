//! What an import will do: the account to adopt, each certificate to adopt as `v0001` and
//! the configuration that keeps renewing it. Built by the pure parsers
//! ([`super::certbot`], [`super::lego`]); carried out by [`super::adopt`].

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::acme::ForeignKey;
use crate::cert::KeyAlgorithm;
use crate::cert::KeyType;
use crate::store::SecretPem;

use super::ImportError;

/// The client whose files are imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// certbot (`/etc/letsencrypt`).
    Certbot,
    /// lego (`.lego`).
    Lego,
}

impl Tool {
    /// `certbot` or `lego`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Certbot => "certbot",
            Tool::Lego => "lego",
        }
    }
}

/// Everything one import adopts and configures, for one ACME directory.
#[derive(Debug)]
pub struct ImportPlan {
    /// Where the files came from.
    pub tool: Tool,
    /// The directory that was read (`/etc/letsencrypt`, `.lego`).
    pub source: PathBuf,
    /// The ACME directory URL every imported certificate renews against.
    pub directory: String,
    /// Account contact URLs (`mailto:`), when the other client recorded them.
    pub contact: Vec<String>,
    /// The account to adopt; `None` when none was found (certinel then registers one).
    pub account: Option<AccountPlan>,
    /// The certificates, in name order.
    pub certificates: Vec<CertificatePlan>,
    /// Certificates left out, by name, and why (an unreadable or mismatched key, ...).
    pub skipped: Vec<(String, ImportError)>,
    /// Things the user must check by hand, one sentence each.
    pub notes: Vec<String>,
}

impl ImportPlan {
    /// The plan of `tool`'s files at `source`: the account found (with its contact URLs),
    /// every certificate whose planning worked, and the others as skipped, with why.
    pub(crate) fn new(
        tool: Tool,
        source: PathBuf,
        directory: String,
        (account, contact): (Option<AccountPlan>, Vec<String>),
        planned: impl IntoIterator<Item = (String, Result<CertificatePlan, ImportError>)>,
        notes: Vec<String>,
    ) -> ImportPlan {
        let mut certificates = Vec::new();
        let mut skipped = Vec::new();
        for (name, result) in planned {
            match result {
                Ok(certificate) => certificates.push(certificate),
                Err(error) => skipped.push((name, error)),
            }
        }
        ImportPlan {
            tool,
            source,
            directory,
            contact,
            account,
            certificates,
            skipped,
            notes,
        }
    }
}

/// An account another client registered.
#[derive(Debug, Clone)]
pub struct AccountPlan {
    /// The account URL.
    pub url: String,
    /// Its private key.
    pub key: ForeignKey,
    /// The file the key came from, for messages.
    pub key_file: PathBuf,
}

/// One certificate to adopt and keep renewing.
#[derive(Debug, Clone)]
pub struct CertificatePlan {
    /// certinel's name for it (certbot's lineage name, lego's file name).
    pub name: String,
    /// The DNS names the certificate covers (from the certificate itself).
    pub dns_names: Vec<String>,
    /// Its serial, lowercase hex.
    pub serial: String,
    /// When it expires.
    pub not_after: OffsetDateTime,
    /// The key type renewals generate.
    pub key: KeyAlgorithm,
    /// How renewals prove control.
    pub challenge: ChallengePlan,
    /// `renew_before`, in days, when the other client was told one.
    pub renew_before_days: Option<u32>,
    /// Deploy commands (certbot's deploy/renew hooks), run with `sh -c`.
    pub deploy: Vec<String>,
    /// The certificate chain, leaf first (PEM).
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: SecretPem,
    /// certbot's `live/NAME/` files, which `--link-live` points at certinel's `current/`.
    pub live: Option<LiveFiles>,
    /// The file that described it (the renewal conf, the `.crt`), for messages.
    pub described_by: PathBuf,
    /// Things to check about this certificate, one sentence each.
    pub notes: Vec<String>,
}

/// certbot's `live/NAME/` paths as its renewal conf names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFiles {
    /// `cert.pem`: the leaf.
    pub cert: PathBuf,
    /// `chain.pem`: the intermediates.
    pub chain: PathBuf,
    /// `fullchain.pem`: leaf and intermediates.
    pub fullchain: PathBuf,
    /// `privkey.pem`: the key.
    pub privkey: PathBuf,
}

/// How renewals prove control of the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengePlan {
    /// http-01 with certinel's own listener on this `IP:PORT` (certbot's standalone).
    HttpListen(String),
    /// http-01 through files under this web root (certbot's webroot).
    HttpWebroot(String),
    /// dns-01 through an exec hook (lego's convention): the placeholder for wildcard
    /// names and certbot's DNS plugins, which the user must fill in.
    Dns01Exec(String),
}

/// The hook path the configuration names when dns-01 is needed; the user writes it.
pub const DNS_HOOK_PLACEHOLDER: &str = "/usr/local/bin/certinel-dns-hook";

/// `challenge`, or dns-01 when a name is a wildcard, which http-01 cannot validate.
pub fn fit_challenge(
    challenge: ChallengePlan,
    dns_names: &[String],
    notes: &mut Vec<String>,
) -> ChallengePlan {
    let wildcard = dns_names.iter().any(|name| name.starts_with("*."));
    if wildcard && !matches!(challenge, ChallengePlan::Dns01Exec(_)) {
        notes.push(format!(
            "wildcard names need dns-01: write {DNS_HOOK_PLACEHOLDER} (called as `HOOK \
             present|cleanup NAME VALUE`) or use provider = \"rfc2136\""
        ));
        return ChallengePlan::Dns01Exec(DNS_HOOK_PLACEHOLDER.to_owned());
    }
    challenge
}

/// The key type certinel generates for a certificate whose current key is `key_type`;
/// `None` for a type certinel cannot generate.
pub fn key_algorithm_for(key_type: KeyType) -> Option<KeyAlgorithm> {
    Some(match key_type {
        KeyType::EcdsaP256 => KeyAlgorithm::EcdsaP256,
        KeyType::EcdsaP384 => KeyAlgorithm::EcdsaP384,
        KeyType::Ed25519 => KeyAlgorithm::Ed25519,
        KeyType::Rsa(2048) => KeyAlgorithm::Rsa2048,
        KeyType::Rsa(3072) => KeyAlgorithm::Rsa3072,
        KeyType::Rsa(4096) => KeyAlgorithm::Rsa4096,
        _ => return None,
    })
}

/// The contact URLs of an ACME account object (RFC 8555 section 7.1.2) as the tools saved
/// it; missing or non-string entries are left out.
pub fn contact_urls(account: &serde_json::Value) -> Vec<String> {
    account["contact"]
        .as_array()
        .map(|contacts| {
            contacts
                .iter()
                .filter_map(|contact| contact.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
