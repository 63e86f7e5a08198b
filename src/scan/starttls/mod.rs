//! STARTTLS: the plaintext exchanges that upgrade SMTP, IMAP, POP3, FTP, LDAP, PostgreSQL,
//! MySQL and XMPP connections to TLS.
//!
//! Each protocol module speaks only the client side of its exchange through [`wire::Wire`],
//! which bounds the plaintext read to [`PLAINTEXT_LIMIT`] bytes and refuses any byte the
//! server sends after its final reply. The byte parsers inside the modules are pure.

mod ftp;
mod imap;
mod ldap;
mod mysql;
mod numeric;
mod pop3;
mod postgres;
mod smtp;
mod wire;
mod xmpp;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::model::StartTls;
use wire::Wire;

/// The most plaintext one upgrade reads before giving up: real servers need a few KiB at most,
/// and a server sending garbage must not make us hold more.
pub const PLAINTEXT_LIMIT: usize = 64 * 1024;

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
///
/// The TLS client speaks first, so a conforming server sends nothing after its final
/// plaintext reply until our ClientHello arrives. Bytes already received beyond that reply
/// would have been injected before encryption started; they make the upgrade fail.
pub async fn upgrade<S>(
    stream: &mut S,
    protocol: StartTls,
    server_name: &str,
) -> Result<(), StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut wire = Wire::new(stream, protocol_name(protocol));
    match protocol {
        StartTls::Smtp => smtp::upgrade(&mut wire).await?,
        StartTls::Imap => imap::upgrade(&mut wire).await?,
        StartTls::Pop3 => pop3::upgrade(&mut wire).await?,
        StartTls::Ftp => ftp::upgrade(&mut wire).await?,
        StartTls::Ldap => ldap::upgrade(&mut wire).await?,
        StartTls::Postgres => postgres::upgrade(&mut wire).await?,
        StartTls::Mysql => mysql::upgrade(&mut wire).await?,
        StartTls::Xmpp => xmpp::upgrade(&mut wire, server_name).await?,
    }
    wire.finish()
}

/// The lowercase name of `protocol`, as used in configuration and error messages.
pub fn protocol_name(protocol: StartTls) -> &'static str {
    match protocol {
        StartTls::Smtp => "smtp",
        StartTls::Imap => "imap",
        StartTls::Pop3 => "pop3",
        StartTls::Ftp => "ftp",
        StartTls::Ldap => "ldap",
        StartTls::Postgres => "postgres",
        StartTls::Mysql => "mysql",
        StartTls::Xmpp => "xmpp",
    }
}
