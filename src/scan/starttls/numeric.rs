//! Three-digit replies shared by SMTP (RFC 5321 §4.2) and FTP (RFC 959 §4.2).

use tokio::io::{AsyncRead, AsyncWrite};

use super::StartTlsError;
use super::wire::Wire;

/// One complete, possibly multi-line, reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NumericReply {
    /// The reply code of the first line.
    pub(super) code: u16,
    /// The text of each line after its code and separator (whole line when it has none).
    pub(super) lines: Vec<String>,
    /// The reply as received, for error messages.
    pub(super) raw: Vec<u8>,
}

/// Reads one reply. A first line `DDD-` opens a multi-line reply that ends at the first line
/// starting with the same code and a space (or the bare code); lines in between may be any
/// text, as FTP allows.
pub(super) async fn read_reply<S>(
    wire: &mut Wire<'_, S>,
    waiting_for: &str,
) -> Result<NumericReply, StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = wire.line(waiting_for).await?;
    let Some((code, continues)) = reply_code(&first) else {
        return Err(wire.unexpected(&format!("a three-digit reply as {waiting_for}"), &first));
    };
    let mut reply = NumericReply {
        code,
        lines: vec![line_text(&first)],
        raw: [first.as_slice(), b"\r\n"].concat(),
    };
    let mut more = continues;
    while more {
        let line = wire.line(waiting_for).await?;
        reply.raw.extend_from_slice(&line);
        reply.raw.extend_from_slice(b"\r\n");
        match reply_code(&line) {
            Some((line_code, continues)) if line_code == code => {
                reply.lines.push(line_text(&line));
                more = continues;
            }
            _ => reply
                .lines
                .push(String::from_utf8_lossy(&line).into_owned()),
        }
    }
    Ok(reply)
}

/// Sends `line` (the command `verb` with its arguments and CRLF) and reads the reply, which
/// must carry `code`.
pub(super) async fn command<S>(
    wire: &mut Wire<'_, S>,
    verb: &str,
    line: &[u8],
    code: u16,
) -> Result<NumericReply, StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    wire.send(line).await?;
    let reply = read_reply(wire, &format!("the reply to {verb}")).await?;
    if reply.code != code {
        return Err(wire.unexpected(&format!("a {code} reply to {verb}"), &reply.raw));
    }
    Ok(reply)
}

/// The code of a reply line and whether the reply continues (`DDD-`) or ends (`DDD `, `DDD`).
fn reply_code(line: &[u8]) -> Option<(u16, bool)> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0'));
    match line.get(3) {
        None | Some(b' ') => Some((code, false)),
        Some(b'-') => Some((code, true)),
        Some(_) => None,
    }
}

/// The text after the code and separator.
fn line_text(line: &[u8]) -> String {
    String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_code_reads_final_and_continued_lines() {
        assert_eq!(reply_code(b"220 mail.example ESMTP"), Some((220, false)));
        assert_eq!(reply_code(b"250-STARTTLS"), Some((250, true)));
        assert_eq!(reply_code(b"250"), Some((250, false)));
    }

    #[test]
    fn reply_code_rejects_lines_that_are_not_replies() {
        assert_eq!(reply_code(b"22"), None);
        assert_eq!(reply_code(b"2x0 hi"), None);
        assert_eq!(reply_code(b"2200"), None);
        assert_eq!(reply_code(b"999 nope"), None);
        assert_eq!(reply_code(b"\x16\x03\x01"), None);
    }
}
