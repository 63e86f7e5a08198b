//! Adopting an ACME account another client registered (certbot, lego), so certinel renews
//! with it instead of registering a new one.
//!
//! A P-256 key is stored as it is. An RSA key (certbot's only kind) cannot sign for
//! instant-acme, so the account is first rolled over (RFC 8555 §7.3.5) to a new P-256
//! key: the outer request is signed here with the old RSA key (RS256), the inner one with
//! the new key (ES256). The account URL stays the same; the other client's copy of the
//! old key stops working. Either way the CA is then asked, with `onlyReturnExisting`, which
//! account the key belongs to, and the answer must be the adopted URL before the
//! credentials file is written (0600). The new key is saved (0600, `*.json.adopting`)
//! before the CA is asked to switch, so an import that dies or fails after the switch is
//! finished by the next one instead of losing the account.

use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, Request};
use instant_acme::{Account, BodyWrapper, HttpClient, Key};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

use super::foreign_key::{ForeignKey, ForeignKeyKind};
use super::{StoredAccount, build_client, store_error};
use crate::acme::error::retry_bad_nonce;
use crate::acme::http::InstrumentedClient;
use crate::acme::{AcmeError, AcmeSettings, NoopObserver, Stage};
use crate::store::{AccountStore, Aside};

/// An account registered by another client: the CA's URL for it and its key.
#[derive(Debug, Clone)]
pub struct ForeignAccount {
    /// The account URL (certbot's `regr.json` `uri`, lego's `registration.uri`).
    pub url: String,
    /// Its private key.
    pub key: ForeignKey,
}

/// What adopting an account did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedAccount {
    /// The account URL, as the CA confirmed it.
    pub url: String,
    /// The credentials file certinel loads from now on.
    pub credentials_path: PathBuf,
    /// Whether the key was rolled over from RSA to a new P-256 key at the CA.
    pub rolled_over: bool,
    /// Whether the credentials file already held this account (nothing was changed).
    pub already_adopted: bool,
}

/// Makes `foreign` certinel's account for `settings.directory` in `accounts` (the
/// renewer's are the store's). Refuses when `accounts` already holds a different account
/// for that directory; does nothing when it holds this one.
pub async fn adopt_account(
    settings: &AcmeSettings,
    accounts: &dyn AccountStore,
    foreign: &ForeignAccount,
) -> Result<AdoptedAccount, AcmeError> {
    let credentials_path = accounts.account_location(&settings.directory);
    if let Some(existing) = stored_account_url(accounts, &settings.directory)? {
        if existing == foreign.url {
            return Ok(AdoptedAccount {
                url: existing,
                credentials_path,
                rolled_over: false,
                already_adopted: true,
            });
        }
        return Err(AcmeError::Invalid {
            stage: Stage::Account,
            message: format!(
                "{} already holds account {existing} for {}; move it away to adopt {}",
                credentials_path.display(),
                settings.directory,
                foreign.url
            ),
        });
    }
    let client = build_client(settings, Arc::new(NoopObserver))?;
    let (credentials, rolled_over) = match foreign.key.kind() {
        ForeignKeyKind::EcdsaP256 => (
            confirm(&client, settings, foreign, foreign.key.pkcs8()).await?,
            false,
        ),
        ForeignKeyKind::Rsa => {
            let (new_key, resumed) = pending_key(accounts, &settings.directory, &foreign.url)?;
            // An earlier import may have died after the CA switched to the saved key.
            let earlier = if resumed {
                confirm(&client, settings, foreign, &new_key).await.ok()
            } else {
                None
            };
            let credentials = match earlier {
                Some(confirmed) => confirmed,
                None => {
                    roll_over_rsa_key(&client, &settings.directory, foreign, &new_key).await?;
                    tracing::info!(
                        account = %foreign.url,
                        directory = %settings.directory,
                        "rolled the adopted account's RSA key over to a new ECDSA P-256 key"
                    );
                    confirm(&client, settings, foreign, &new_key).await?
                }
            };
            (credentials, true)
        }
    };
    let stored = StoredAccount {
        directory: settings.directory.clone(),
        credentials,
    };
    let json = stored.to_bytes(&credentials_path)?;
    accounts
        .save_account(&settings.directory, &json)
        .map_err(|error| store_error(&credentials_path, error))?;
    if rolled_over
        && let Err(error) = accounts.remove_account_aside(Aside::adopting(&settings.directory))
    {
        tracing::warn!(%error, "cannot remove the adoption's saved key");
    }
    tracing::info!(
        account = %foreign.url,
        directory = %settings.directory,
        credentials = %credentials_path.display(),
        "adopted ACME account"
    );
    Ok(AdoptedAccount {
        url: foreign.url.clone(),
        credentials_path,
        rolled_over,
        already_adopted: false,
    })
}

/// Asks the CA (`onlyReturnExisting`) which account `pkcs8` belongs to; it must be
/// `foreign.url`. Returns the credentials for that key and account.
async fn confirm(
    client: &InstrumentedClient,
    settings: &AcmeSettings,
    foreign: &ForeignAccount,
    pkcs8: &[u8],
) -> Result<instant_acme::AccountCredentials, AcmeError> {
    let (account, credentials) = retry_bad_nonce!(
        Account::builder_with_http(Box::new(client.clone()))
            .from_key(
                (signing_key(pkcs8)?, private_key_der(pkcs8)),
                settings.directory.clone(),
            )
            .await
    )
    .map_err(|error| AcmeError::from_acme(Stage::Account, error))?;
    if account.id() != foreign.url {
        return Err(AcmeError::Protocol {
            stage: Stage::Account,
            message: format!(
                "the key belongs to account {}, not to {}",
                account.id(),
                foreign.url
            ),
        });
    }
    Ok(credentials)
}

/// The new P-256 key an RSA account is rolled over to, saved (0600, beside the
/// credentials) before the CA is asked to switch, so a crash or a failure after the switch
/// never loses the account: the next import finds it. Returns the key and whether it was
/// found there.
fn pending_key(
    accounts: &dyn AccountStore,
    directory: &str,
    account_url: &str,
) -> Result<(Vec<u8>, bool), AcmeError> {
    let location = accounts.account_location(directory);
    if let Ok(Some(record)) = accounts.account_aside(Aside::adopting(directory)) {
        let pending: Value =
            serde_json::from_slice(&record.bytes).map_err(|error| AcmeError::AccountFile {
                path: record.location.clone(),
                source: std::io::Error::other(error),
            })?;
        let key = pending["key_pkcs8"]
            .as_str()
            .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok());
        if let (Some(key), Some(url)) = (key, pending["account"].as_str())
            && url == account_url
        {
            return Ok((key, true));
        }
    }
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|error| AcmeError::Invalid {
            stage: Stage::Account,
            message: format!("new P-256 key: {error}"),
        })?
        .as_ref()
        .to_vec();
    let pending = json!({ "account": account_url, "key_pkcs8": b64(&key) });
    accounts
        .save_account_aside(Aside::adopting(directory), pending.to_string().as_bytes())
        .map_err(|error| store_error(&location, error))?;
    Ok((key, false))
}

/// The account URL in the stored credentials for `directory`, `None` when there are none.
fn stored_account_url(
    accounts: &dyn AccountStore,
    directory: &str,
) -> Result<Option<String>, AcmeError> {
    let Some(record) = accounts
        .account(directory)
        .map_err(|error| store_error(&accounts.account_location(directory), error))?
    else {
        return Ok(None);
    };
    let stored: Value =
        serde_json::from_slice(&record.bytes).map_err(|error| AcmeError::AccountFile {
            path: record.location.clone(),
            source: std::io::Error::other(error),
        })?;
    Ok(stored["credentials"]["id"].as_str().map(str::to_owned))
}

fn signing_key(pkcs8: &[u8]) -> Result<Key, AcmeError> {
    Key::from_pkcs8_der(PrivatePkcs8KeyDer::from(pkcs8.to_vec()))
        .map_err(|error| AcmeError::from_acme(Stage::Account, error))
}

fn private_key_der(pkcs8: &[u8]) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec()))
}

/// Rolls the account over from its RSA key to `new_pkcs8` (a P-256 key, PKCS#8 DER). Retries a `badNonce` answer twice with the nonce it carried.
async fn roll_over_rsa_key(
    client: &InstrumentedClient,
    directory_url: &str,
    foreign: &ForeignAccount,
    new_pkcs8: &[u8],
) -> Result<(), AcmeError> {
    let rejected = |message: String| AcmeError::Invalid {
        stage: Stage::Account,
        message,
    };
    let rng = SystemRandom::new();
    let old_key = RsaKeyPair::from_pkcs8(foreign.key.pkcs8())
        .map_err(|error| rejected(format!("the RSA account key: {error}")))?;
    let new_key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, new_pkcs8)
        .map_err(|error| rejected(format!("new P-256 key: {error}")))?;

    let (_, directory) = send(client, Method::GET, directory_url).await?;
    let directory: Value = serde_json::from_slice(&directory)
        .map_err(|error| protocol(format!("{directory_url} is not an ACME directory: {error}")))?;
    let url_of = |member: &str| {
        directory[member]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| protocol(format!("the directory has no {member}")))
    };
    let key_change = url_of("keyChange")?;
    let new_nonce = url_of("newNonce")?;

    let public = old_key.public_key();
    let old_jwk = json!({
        "e": b64(public.exponent().big_endian_without_leading_zero()),
        "kty": "RSA",
        "n": b64(public.modulus().big_endian_without_leading_zero()),
    });
    let point = new_key.public_key().as_ref();
    let new_jwk = json!({
        "crv": "P-256",
        "kty": "EC",
        "x": b64(&point[1..33]),
        "y": b64(&point[33..]),
    });
    let inner_protected = json!({ "alg": "ES256", "jwk": new_jwk, "url": key_change });
    let inner_payload = json!({ "account": foreign.url, "oldKey": old_jwk });
    let inner = jws(&inner_protected, &inner_payload.to_string(), |input| {
        new_key
            .sign(&rng, input)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|error| rejected(format!("signing with the new key: {error}")))
    })?;

    let (headers, _) = send(client, Method::HEAD, &new_nonce).await?;
    let mut nonce = replay_nonce(&headers)?;
    for attempt in 1..=3 {
        let outer_protected = json!({
            "alg": "RS256",
            "kid": foreign.url,
            "nonce": nonce,
            "url": key_change,
        });
        let outer = jws(&outer_protected, &inner.to_string(), |input| {
            let mut signature = vec![0; old_key.public_modulus_len()];
            old_key
                .sign(&RSA_PKCS1_SHA256, &rng, input, &mut signature)
                .map_err(|error| rejected(format!("signing with the RSA key: {error}")))?;
            Ok(signature)
        })?;
        let body = outer.to_string().into_bytes();
        let request = Request::builder()
            .method(Method::POST)
            .uri(&key_change)
            .header(http::header::CONTENT_TYPE, "application/jose+json")
            .body(BodyWrapper::from(body))
            .map_err(|error| rejected(format!("{key_change}: {error}")))?;
        let mut response = client
            .request(request)
            .await
            .map_err(|error| AcmeError::from_acme(Stage::Account, error))?;
        let status = response.parts.status;
        let answer = response
            .body
            .into_bytes()
            .await
            .map_err(|error| protocol(format!("{key_change}: {error}")))?;
        if status.is_success() {
            return Ok(());
        }
        let problem: instant_acme::Problem = serde_json::from_slice(&answer).map_err(|_| {
            protocol(format!(
                "{key_change} answered {status} without a problem document"
            ))
        })?;
        let error = AcmeError::from_problem(Stage::Account, &problem);
        let bad_nonce = problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce");
        match replay_nonce(&response.parts.headers) {
            Ok(fresh) if bad_nonce && attempt < 3 => nonce = fresh,
            _ => return Err(error),
        }
    }
    Err(protocol(format!(
        "{key_change}: no answer after three nonces"
    )))
}

/// A flattened JWS (RFC 7515 §7.2.2) over `payload`, signed by `sign`.
fn jws(
    protected: &Value,
    payload: &str,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, AcmeError>,
) -> Result<Value, AcmeError> {
    let protected = b64(protected.to_string().as_bytes());
    let payload = b64(payload.as_bytes());
    let signature = sign(format!("{protected}.{payload}").as_bytes())?;
    Ok(json!({ "protected": protected, "payload": payload, "signature": b64(&signature) }))
}

/// Sends one request without a JWS (the directory, a nonce); returns headers and body.
async fn send(
    client: &InstrumentedClient,
    method: Method,
    url: &str,
) -> Result<(http::HeaderMap, Bytes), AcmeError> {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .body(BodyWrapper::<Bytes>::default())
        .map_err(|error| protocol(format!("{url}: {error}")))?;
    let mut response = client
        .request(request)
        .await
        .map_err(|error| AcmeError::from_acme(Stage::Account, error))?;
    if !response.parts.status.is_success() {
        return Err(protocol(format!(
            "{url} answered {}",
            response.parts.status
        )));
    }
    let bytes = response
        .body
        .into_bytes()
        .await
        .map_err(|error| protocol(format!("{url}: {error}")))?;
    Ok((response.parts.headers, bytes))
}

fn replay_nonce(headers: &http::HeaderMap) -> Result<String, AcmeError> {
    headers
        .get("replay-nonce")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| protocol("the CA sent no Replay-Nonce".to_owned()))
}

fn protocol(message: String) -> AcmeError {
    AcmeError::Protocol {
        stage: Stage::Account,
        message,
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_saved_rollover_key_is_private_and_found_again_for_the_same_account_only() {
        let temp = tempfile::tempdir().unwrap();
        let accounts = crate::store::FsAccounts::new(&temp.path().join("acme"));
        let directory = "https://ca/dir";
        let (key, resumed) = pending_key(&accounts, directory, "https://ca/acct/1").unwrap();
        assert!(!resumed);
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key).unwrap();
        let path = accounts
            .account_location(directory)
            .with_extension("json.adopting");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            pending_key(&accounts, directory, "https://ca/acct/1").unwrap(),
            (key.clone(), true)
        );
        let (other, resumed) = pending_key(&accounts, directory, "https://ca/acct/2").unwrap();
        assert!(!resumed);
        assert_ne!(other, key);
    }
}
