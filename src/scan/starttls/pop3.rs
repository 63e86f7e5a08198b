//! POP3 `STLS` (RFC 2595 §4).

use tokio::io::{AsyncRead, AsyncWrite};

use super::StartTlsError;
use super::wire::Wire;

/// Runs the exchange up to the server's `+OK` reply to `STLS`.
pub(super) async fn upgrade<S>(wire: &mut Wire<'_, S>) -> Result<(), StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let greeting = wire.line("the greeting").await?;
    if !is_ok(&greeting) {
        return Err(wire.unexpected("a +OK greeting", &greeting));
    }
    wire.send(b"STLS\r\n").await?;
    let reply = wire.line("the reply to STLS").await?;
    if !is_ok(&reply) {
        return Err(wire.unexpected("+OK in reply to STLS", &reply));
    }
    Ok(())
}

/// Whether a status line is positive (`+OK`, alone or followed by text).
fn is_ok(line: &[u8]) -> bool {
    line.get(..3)
        .is_some_and(|status| status.eq_ignore_ascii_case(b"+OK"))
        && matches!(line.get(3), None | Some(b' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plus_ok_status_lines_are_positive() {
        assert!(is_ok(b"+OK POP3 ready"));
        assert!(is_ok(b"+OK"));
        assert!(!is_ok(b"-ERR not now"));
        assert!(!is_ok(b"+OKAY"));
    }
}
