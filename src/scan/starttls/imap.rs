//! IMAP `STARTTLS` (RFC 3501 §6.2.1).

use tokio::io::{AsyncRead, AsyncWrite};

use super::StartTlsError;
use super::wire::Wire;

/// Runs the exchange up to the server's tagged `OK` to `STARTTLS`.
pub(super) async fn upgrade<S>(wire: &mut Wire<'_, S>) -> Result<(), StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let greeting = wire.line("the greeting").await?;
    // A PREAUTH greeting is no use either: RFC 3501 forbids STARTTLS after it.
    if status(&greeting, b"*") != Some(true) {
        return Err(wire.unexpected("an untagged \"* OK\" greeting", &greeting));
    }
    wire.send(b"a1 STARTTLS\r\n").await?;
    loop {
        let line = wire.line("the reply to STARTTLS").await?;
        // Untagged data such as a CAPABILITY list may precede the tagged reply.
        if status(&line, b"*").is_some() {
            continue;
        }
        return match status(&line, b"a1") {
            Some(true) => Ok(()),
            Some(false) => Err(wire.unexpected("\"a1 OK\" in reply to STARTTLS", &line)),
            None => Err(wire.unexpected("a reply tagged a1 to STARTTLS", &line)),
        };
    }
}

/// For a line carrying `tag`, whether its status word is `OK`; `None` for other tags.
fn status(line: &[u8], tag: &[u8]) -> Option<bool> {
    let mut words = line.split(|&byte| byte == b' ');
    if words.next() != Some(tag) {
        return None;
    }
    Some(
        words
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case(b"OK")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_matches_the_tag_then_reads_the_status_word() {
        assert_eq!(status(b"* OK IMAP4rev1 ready", b"*"), Some(true));
        assert_eq!(status(b"* PREAUTH hello", b"*"), Some(false));
        assert_eq!(status(b"a1 ok begin TLS", b"a1"), Some(true));
        assert_eq!(status(b"a1 BAD no", b"a1"), Some(false));
        assert_eq!(status(b"a10 OK", b"a1"), None);
    }
}
