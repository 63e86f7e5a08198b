//! STARTTLS: the plaintext exchanges that upgrade SMTP, IMAP, POP3, FTP, LDAP, PostgreSQL,
//! MySQL and XMPP connections to TLS.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::model::StartTls;

/// A plaintext upgrade that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{protocol}: {detail}")]
pub struct StartTlsError {
    /// The protocol name (`smtp`, ...).
    pub protocol: &'static str,
    /// What the server said or did.
    pub detail: String,
}

/// Runs the plaintext exchange of `protocol` on `stream`; on success the next bytes on the
/// stream belong to the TLS handshake. `server_name` is used where the protocol names the
/// server (XMPP's `to`, SMTP's EHLO is ours).
pub async fn upgrade<S>(
    stream: &mut S,
    protocol: StartTls,
    server_name: &str,
) -> Result<(), StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = (stream, protocol, server_name);
    todo!("starttls helper")
}
