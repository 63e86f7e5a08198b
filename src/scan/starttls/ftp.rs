//! FTP `AUTH TLS` (RFC 4217).

use tokio::io::{AsyncRead, AsyncWrite};

use super::StartTlsError;
use super::numeric::{command, read_reply};
use super::wire::Wire;

/// How many `1xx` "wait" replies we accept before the greeting.
const MAX_PRELIMINARY_REPLIES: usize = 3;

/// Runs the exchange up to the server's `234` reply to `AUTH TLS`.
pub(super) async fn upgrade<S>(wire: &mut Wire<'_, S>) -> Result<(), StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // RFC 959 lets a busy server send "120 ready in nnn minutes" before its 220 greeting.
    let mut greeting = read_reply(wire, "the greeting").await?;
    for _ in 0..MAX_PRELIMINARY_REPLIES {
        if greeting.code >= 200 {
            break;
        }
        greeting = read_reply(wire, "the greeting").await?;
    }
    if greeting.code != 220 {
        return Err(wire.unexpected("a 220 greeting", &greeting.raw));
    }
    command(wire, "AUTH TLS", b"AUTH TLS\r\n", 234).await?;
    Ok(())
}
