//! SMTP STARTTLS (RFC 3207): greeting, EHLO, STARTTLS.

use tokio::io::{AsyncRead, AsyncWrite};

use super::StartTlsError;
use super::numeric::{NumericReply, command, read_reply};
use super::wire::Wire;

/// The name we greet with: ours, and in a reserved TLD so it can never mean a real host.
const EHLO: &[u8] = b"EHLO certinel.invalid\r\n";

/// Runs the exchange up to the server's `220` reply to `STARTTLS`.
pub(super) async fn upgrade<S>(wire: &mut Wire<'_, S>) -> Result<(), StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let greeting = read_reply(wire, "the greeting").await?;
    if greeting.code != 220 {
        return Err(wire.unexpected("a 220 greeting", &greeting.raw));
    }
    let ehlo = command(wire, "EHLO", EHLO, 250).await?;
    if !advertises_starttls(&ehlo) {
        return Err(wire.unexpected("a 250 reply to EHLO advertising STARTTLS", &ehlo.raw));
    }
    command(wire, "STARTTLS", b"STARTTLS\r\n", 220).await?;
    Ok(())
}

/// Whether an EHLO reply lists the STARTTLS extension. The first line is the server's
/// greeting, not an extension, so it does not count.
fn advertises_starttls(ehlo: &NumericReply) -> bool {
    ehlo.lines.iter().skip(1).any(|line| {
        line.split_ascii_whitespace()
            .next()
            .is_some_and(|keyword| keyword.eq_ignore_ascii_case("STARTTLS"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ehlo_reply(lines: &[&str]) -> NumericReply {
        NumericReply {
            code: 250,
            lines: lines.iter().map(|line| line.to_string()).collect(),
            raw: Vec::new(),
        }
    }

    #[test]
    fn starttls_keyword_is_found_in_any_case_after_the_greeting_line() {
        assert!(advertises_starttls(&ehlo_reply(&[
            "mx", "SIZE 100", "starttls"
        ])));
        assert!(!advertises_starttls(&ehlo_reply(&["STARTTLS", "SIZE 100"])));
        assert!(!advertises_starttls(&ehlo_reply(&["mx", "X-STARTTLSISH"])));
    }
}
