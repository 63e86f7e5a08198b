//! External account binding credentials (RFC 8555 section 7.3.4): what `[acme] eab` holds
//! and what the ACME client signs a new account's binding with.

use std::fmt;

/// An external account binding key, required by some CAs to create an account. `Debug`
/// never shows the MAC key.
#[derive(Clone, PartialEq, Eq)]
pub struct Eab {
    /// The key identifier the CA gave out.
    pub kid: String,
    /// The MAC key, base64url-encoded as CAs hand it out.
    pub hmac_key: String,
}

impl fmt::Debug for Eab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}
