//! lego's files as certinel sees them: `.lego/certificates/NAME.crt|.key|.json` and
//! `.lego/accounts/HOST_PORT/EMAIL/account.json` + `keys/EMAIL.key`. lego records neither
//! the directory URL's path nor how it proved control, so those come from the command line
//! ([`LegoOptions`]). Pure: [`super::read`] reads the files, [`plan`] decides.

use std::path::PathBuf;

use crate::acme::ForeignKey;
use crate::import::plan::{
    AccountPlan, CertificatePlan, ChallengePlan, ImportPlan, Tool, contact_urls, fit_challenge,
    key_algorithm_for,
};
use crate::import::{ImportError, key_pem};
use crate::store::{SecretPem, check_pems};

/// Let's Encrypt's directories, the only ones whose URL follows from lego's account
/// directory name.
const KNOWN_DIRECTORIES: [&str; 2] = [
    "https://acme-v02.api.letsencrypt.org/directory",
    "https://acme-staging-v02.api.letsencrypt.org/directory",
];

/// One account as read from disk.
#[derive(Debug, Clone)]
pub struct LegoAccountFiles {
    /// The server directory name (`acme-v02.api.letsencrypt.org`, `127.0.0.1_14000`).
    pub server_dir: String,
    /// The e-mail directory name.
    pub email: String,
    /// `account.json`'s path.
    pub account_path: PathBuf,
    /// `account.json`.
    pub account_json: Vec<u8>,
    /// `keys/EMAIL.key`'s path.
    pub key_path: PathBuf,
    /// `keys/EMAIL.key` (secret).
    pub key_pem: SecretPem,
}

/// One certificate as read from disk.
#[derive(Debug, Clone)]
pub struct LegoCertificateFiles {
    /// The file stem (`example.com`, `_.example.com` for a wildcard).
    pub name: String,
    /// `NAME.crt`'s path.
    pub crt_path: PathBuf,
    /// `NAME.crt`: the leaf and its issuer.
    pub crt_pem: String,
    /// `NAME.key` (secret).
    pub key_pem: SecretPem,
}

/// Everything read from `.lego`.
#[derive(Debug, Clone)]
pub struct LegoFiles {
    /// The `.lego` directory.
    pub root: PathBuf,
    /// The accounts.
    pub accounts: Vec<LegoAccountFiles>,
    /// The certificates, in name order.
    pub certificates: Vec<LegoCertificateFiles>,
}

/// What lego does not record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegoOptions {
    /// The ACME directory URL; needed unless the account is Let's Encrypt's.
    pub server: Option<String>,
    /// The account's e-mail; needed when several accounts exist for the server.
    pub email: Option<String>,
    /// How renewals prove control.
    pub challenge: ChallengePlan,
}

/// The plan for every certificate of `files`, with the one account for the directory.
pub fn plan(files: &LegoFiles, options: &LegoOptions) -> Result<ImportPlan, ImportError> {
    let accounts_dir = files.root.join("accounts");
    let directory = match &options.server {
        Some(server) => server.clone(),
        None => {
            let servers: Vec<&str> = files
                .accounts
                .iter()
                .map(|account| account.server_dir.as_str())
                .collect();
            KNOWN_DIRECTORIES
                .iter()
                .find(|url| servers.iter().any(|dir| server_dir_name(url) == *dir))
                .map(|url| (*url).to_owned())
                .ok_or_else(|| {
                    ImportError::Server(format!(
                        "lego does not record the ACME directory URL of {}: pass --server URL",
                        if servers.is_empty() {
                            accounts_dir.display().to_string()
                        } else {
                            servers.join(", ")
                        }
                    ))
                })?
        }
    };
    let server_dir = server_dir_name(&directory);
    let candidates: Vec<&LegoAccountFiles> = files
        .accounts
        .iter()
        .filter(|account| account.server_dir == server_dir)
        .filter(|account| {
            options
                .email
                .as_deref()
                .is_none_or(|email| account.email == email)
        })
        .collect();
    let mut notes = Vec::new();
    let (account, contact) = match candidates[..] {
        [] => {
            notes.push(format!(
                "no lego account for {directory} in {}: certinel registers a new one",
                accounts_dir.display()
            ));
            (None, Vec::new())
        }
        [one] => {
            let (plan, contact) = account_plan(one)?;
            (Some(plan), contact)
        }
        _ => {
            return Err(ImportError::Server(format!(
                "{} holds {} accounts for {directory}: choose one with --email",
                accounts_dir.join(&server_dir).display(),
                candidates.len()
            )));
        }
    };
    notes.push(
        "lego does not record how it proved control: check each `challenge` (--http-listen or \
         --webroot set it)"
            .to_owned(),
    );
    let planned = files.certificates.iter().map(|certificate| {
        (
            certificate.name.clone(),
            certificate_plan(certificate, &options.challenge),
        )
    });
    Ok(ImportPlan::new(
        Tool::Lego,
        files.root.clone(),
        directory,
        (account, contact),
        planned,
        notes,
    ))
}

/// lego's account directory name for a directory URL: its host, with `:PORT` as `_PORT`.
pub fn server_dir_name(directory: &str) -> String {
    let without_scheme = directory
        .split_once("://")
        .map_or(directory, |(_, rest)| rest);
    let authority = without_scheme.split('/').next().unwrap_or_default();
    authority.replace(':', "_")
}

fn account_plan(files: &LegoAccountFiles) -> Result<(AccountPlan, Vec<String>), ImportError> {
    let parse_error = |message: String| ImportError::Parse {
        path: files.account_path.clone(),
        message,
    };
    let account: serde_json::Value = serde_json::from_slice(&files.account_json)
        .map_err(|error| parse_error(format!("not JSON ({error}): restore it from a backup")))?;
    let url = account["registration"]["uri"]
        .as_str()
        .ok_or_else(|| {
            parse_error(
                "has no account URL (`registration.uri`): restore it from a backup".to_owned(),
            )
        })?
        .to_owned();
    let mut contact = contact_urls(&account["registration"]["body"]);
    if contact.is_empty() {
        if let Some(email) = account["email"].as_str().filter(|email| !email.is_empty()) {
            contact.push(format!("mailto:{email}"));
        }
    }
    let key =
        ForeignKey::from_pem(files.key_pem.expose()).map_err(|source| ImportError::AccountKey {
            path: files.key_path.clone(),
            source,
        })?;
    Ok((
        AccountPlan {
            url,
            key,
            key_file: files.key_path.clone(),
        },
        contact,
    ))
}

fn certificate_plan(
    files: &LegoCertificateFiles,
    challenge: &ChallengePlan,
) -> Result<CertificatePlan, ImportError> {
    let key_pem =
        key_pem::to_pkcs8_pem(files.key_pem.expose()).map_err(|error| ImportError::Parse {
            path: files.crt_path.with_extension("key"),
            message: error.to_string(),
        })?;
    let facts = check_pems(&files.crt_pem, key_pem.expose(), &[]).map_err(|source| {
        ImportError::Certificate {
            path: files.crt_path.clone(),
            tool: "lego",
            source,
        }
    })?;
    let mut notes = Vec::new();
    let key = key_algorithm_for(facts.key_type).unwrap_or_else(|| {
        notes.push("certinel cannot generate this key type; renewals use ecdsa-p256".to_owned());
        crate::cert::KeyAlgorithm::EcdsaP256
    });
    let challenge = fit_challenge(challenge.clone(), &facts.dns_names, &mut notes);
    Ok(CertificatePlan {
        name: files.name.clone(),
        dns_names: facts.dns_names,
        serial: facts.serial,
        not_after: facts.not_after,
        key,
        challenge,
        renew_before_days: None,
        deploy: Vec::new(),
        chain_pem: files.crt_pem.clone(),
        key_pem,
        live: None,
        described_by: files.crt_path.clone(),
        notes,
    })
}

#[cfg(test)]
mod tests;
