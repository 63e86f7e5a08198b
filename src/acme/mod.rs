//! The ACME client: accounts, orders, challenge responders and certificate download.
//!
//! This is the only module that talks ACME and the only one that depends on
//! `instant_acme`; everything it exposes is certinel's own vocabulary, so the rest of the
//! crate never sees an `instant_acme` type.
//!
//! The flow for one certificate is:
//!
//! ```text
//!   load_or_create_account(settings, accounts)  ── credentials kept by the store's
//!            │                                    AccountStore, keyed by directory URL
//!            ▼
//!   issue(account, request)
//!     key + CSR (keys.rs) ─► new order ─► authorizations (valid ones skipped)
//!       ─► responder (solvers/) serves http-01 or tls-alpn-01, or publishes dns-01 TXT
//!          records and waits until they are visible ─► poll until ready
//!       ─► finalize with our CSR ─► poll until valid ─► download the chain
//! ```
//!
//! Every HTTP request goes through [`http`]'s client, which retries 5xx, 429 and network
//! errors with the backoff of [`retry`] and reports each request to an [`AcmeObserver`].
//! Every failure is an [`AcmeError`] carrying a [`Stage`] and a problem keyword.
//!
//! The renewer takes one of the CA directory's [`OrderSlots`] (`max_concurrent_orders`)
//! after the CAA preflight and holds it until the chain is downloaded.

mod account;
mod caa;
mod error;
mod http;
mod keys;
mod order;
mod order_slots;
mod order_steps;
mod preflight;
mod renewal_info;
pub mod retry;
mod revoke;
mod solvers;

use std::fmt;
use std::path::PathBuf;

pub use account::{
    AcmeAccount, AdoptedAccount, Deactivation, ForeignAccount, ForeignKey, ForeignKeyError,
    ForeignKeyKind, KeyRollover, account_file_name, adopt_account, load_account,
    load_or_create_account, register_new_account,
};
pub use error::{AcmeError, Stage, is_replaces_rejection};
pub use http::{AcmeObserver, BodyTooLarge, MAX_BODY_BYTES, NoopObserver, endpoint_for_path};
pub use order::{CaaAllowed, caa_preflight, issue, place_allowed_order, place_order};
pub use order_slots::{OrderLimits, OrderPermit, OrderSlots, SlotRequest};
pub use order_steps::{
    OrderProgress, download_order, finalize_order, new_private_key, prepare_order,
};
pub use preflight::{CaaRefusal, PreflightSettings};
pub use renewal_info::{
    DirectoryFacts, RenewalInfo, ari_certificate_id, refresh_directory, renewal_info,
};
pub use retry::{PollPolicy, RetryPolicy};
pub use revoke::{RevocationReason, UnknownRevocationReason, revoke};

use crate::cert::{ChallengeSpec, Eab, Identifier, KeyAlgorithm};

/// Everything needed to talk to one ACME CA.
#[derive(Clone, Debug)]
pub struct AcmeSettings {
    /// The directory URL, for example `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// Contact URLs for the account, usually `mailto:` addresses.
    pub contact: Vec<String>,
    /// A PEM file with the roots that sign the CA's HTTPS certificate. When set, it replaces
    /// the system roots (a private CA is the usual reason to set it).
    pub ca_file: Option<PathBuf>,
    /// External account binding, required by some CAs to create an account.
    pub eab: Option<Eab>,
    /// How long to wait for the CA while polling orders and validations.
    pub poll: PollPolicy,
    /// How individual HTTP requests are retried on 5xx, 429 and network errors.
    pub retry: RetryPolicy,
    /// The CAA preflight: where to look CAA up and the CA's issuer domains.
    pub preflight: PreflightSettings,
}

impl AcmeSettings {
    /// Settings for `directory` with no contact, system roots, no EAB and default policies.
    pub fn new(directory: impl Into<String>) -> Self {
        Self {
            directory: directory.into(),
            contact: Vec::new(),
            ca_file: None,
            eab: None,
            poll: PollPolicy::default(),
            retry: RetryPolicy::default(),
            preflight: PreflightSettings::default(),
        }
    }
}

/// One certificate to obtain.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// The identifiers, in the order they should appear in the certificate.
    pub names: Vec<Identifier>,
    /// The type of the new private key.
    pub key: KeyAlgorithm,
    /// How to answer the challenges.
    pub challenge: ChallengeSpec,
    /// The ACME profile to ask for, when the CA offers profiles.
    pub profile: Option<String>,
    /// The ARI certificate identifier (`base64url(AKI).base64url(serial)`) of the certificate
    /// this order replaces, when the CA supports ARI.
    pub replaces: Option<String>,
}

/// A freshly issued certificate with its private key.
#[derive(Clone)]
pub struct Issued {
    /// The new private key, PKCS#8 PEM. Never logged: `Debug` redacts it.
    pub key_pem: String,
    /// The certificate chain as served by the CA, leaf first, PEM.
    pub cert_chain_pem: String,
    /// The URL of the order, for the audit log.
    pub order_url: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("key_pem", &"<redacted>")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("order_url", &self.order_url)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_private_material() {
        let issued = Issued {
            key_pem: "-----BEGIN PRIVATE KEY-----SECRET".into(),
            cert_chain_pem: "chain".into(),
            order_url: "https://ca/order/1".into(),
        };
        let eab = Eab {
            kid: "kid-1".into(),
            hmac_key: "SECRET".into(),
        };
        assert!(!format!("{issued:?}").contains("SECRET"));
        assert!(!format!("{eab:?}").contains("SECRET"));
        assert!(format!("{eab:?}").contains("kid-1"));
    }
}
