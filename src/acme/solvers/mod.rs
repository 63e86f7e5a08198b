//! Challenge responders: they publish the answer for each pending authorization for as
//! long as one order is being validated, then disappear (listeners closed, files and TXT
//! records removed). The built-in listeners are shared per address by the orders
//! validating at the same time (`shared`): each order withdraws only its own answers.

mod dns01;
mod http01;
mod shared;
mod tls_alpn;

pub(crate) use dns01::{CaaAnswer, WireError, caa_records, system_nameserver};

use instant_acme::{ChallengeType, KeyAuthorization};

use crate::acme::AcmeError;

use crate::cert::{ChallengeSpec, Identifier};

/// A running responder for one order.
pub(crate) enum Responder {
    /// The built-in http-01 listener.
    Http(http01::Standalone),
    /// Files under a webroot served by someone else.
    Webroot(http01::Webroot),
    /// The built-in tls-alpn-01 listener.
    TlsAlpn(tls_alpn::Standalone),
    /// TXT records published through a DNS provider.
    Dns(dns01::Dns01),
}

impl Responder {
    /// Binds the listener (or checks nothing for a webroot) before any challenge is
    /// announced to the CA, so a busy port fails the order early.
    pub(crate) async fn start(spec: &ChallengeSpec) -> Result<Self, AcmeError> {
        Ok(match spec {
            ChallengeSpec::Http01Listen(addr) => {
                Self::Http(http01::Standalone::start(*addr).await?)
            }
            ChallengeSpec::Http01Webroot(dir) => Self::Webroot(http01::Webroot::new(dir)),
            ChallengeSpec::TlsAlpn01Listen(addr) => {
                Self::TlsAlpn(tls_alpn::Standalone::start(*addr).await?)
            }
            ChallengeSpec::Dns01(spec) => Self::Dns(dns01::Dns01::new(spec)),
        })
    }

    /// The challenge type this responder answers.
    pub(crate) fn challenge_type(&self) -> ChallengeType {
        match self {
            Self::Http(_) | Self::Webroot(_) => ChallengeType::Http01,
            Self::TlsAlpn(_) => ChallengeType::TlsAlpn01,
            Self::Dns(_) => ChallengeType::Dns01,
        }
    }

    /// The challenge type's name, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) | Self::Webroot(_) => "http-01",
            Self::TlsAlpn(_) => "tls-alpn-01",
            Self::Dns(_) => "dns-01",
        }
    }

    /// Publishes the answer to one challenge.
    pub(crate) async fn add(
        &mut self,
        identifier: &Identifier,
        token: &str,
        key_authorization: &KeyAuthorization,
    ) -> Result<(), AcmeError> {
        if !is_valid_token(token) {
            return Err(AcmeError::Protocol {
                stage: crate::acme::Stage::Challenge,
                message: format!("challenge token {token:?} is not base64url"),
            });
        }
        match self {
            Self::Http(responder) => responder.add(token, key_authorization.as_str()),
            Self::Webroot(responder) => responder.add(token, key_authorization.as_str()),
            Self::TlsAlpn(responder) => {
                responder.add(identifier, key_authorization.digest().as_ref())
            }
            Self::Dns(responder) => {
                responder
                    .add(identifier, &key_authorization.dns_value())
                    .await
            }
        }
    }

    /// Returns once every published answer can be seen by the CA: at once for the
    /// listeners and webroots, after the propagation checks for dns-01.
    pub(crate) async fn ready(&self) -> Result<(), AcmeError> {
        match self {
            Self::Dns(responder) => responder.wait_until_visible().await,
            Self::Http(_) | Self::Webroot(_) | Self::TlsAlpn(_) => Ok(()),
        }
    }

    /// Stops serving: closes the listener and waits for it, or removes the files or the
    /// TXT records.
    pub(crate) async fn shutdown(self) {
        match self {
            Self::Http(responder) => responder.shutdown().await,
            Self::Webroot(responder) => drop(responder),
            Self::TlsAlpn(responder) => responder.shutdown().await,
            Self::Dns(responder) => responder.cleanup().await,
        }
    }
}

/// Tokens come from the CA and become file names and URL paths: only base64url passes.
fn is_valid_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_base64url_tokens_are_accepted() {
        assert!(is_valid_token(
            "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
        ));
        assert!(!is_valid_token(""));
        assert!(!is_valid_token("../../etc/passwd"));
        assert!(!is_valid_token("a/b"));
        assert!(!is_valid_token("a.b"));
    }
}
