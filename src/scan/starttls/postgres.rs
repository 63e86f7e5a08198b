//! PostgreSQL `SSLRequest` (protocol 3, "SSL Session Encryption").

use tokio::io::{AsyncRead, AsyncWrite};

use super::StartTlsError;
use super::wire::Wire;

/// Int32 length 8, then the SSLRequest code 80877103 (1234 << 16 | 5679).
const SSL_REQUEST: [u8; 8] = [0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f];

/// Sends SSLRequest and requires the single byte `S`.
pub(super) async fn upgrade<S>(wire: &mut Wire<'_, S>) -> Result<(), StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    wire.send(&SSL_REQUEST).await?;
    let waiting_for = "the answer to SSLRequest";
    let answer = wire.exact(1, waiting_for).await?;
    match answer[0] {
        b'S' => Ok(()),
        b'N' => Err(wire.error("server does not accept SSL (it answered 'N' to SSLRequest)")),
        // Servers too old to know SSLRequest answer with an ErrorResponse and hang up.
        b'E' => {
            let length_bytes = wire.exact(4, waiting_for).await?;
            let length = u32::from_be_bytes([
                length_bytes[0],
                length_bytes[1],
                length_bytes[2],
                length_bytes[3],
            ]);
            let body_length = usize::try_from(length)
                .unwrap_or(usize::MAX)
                .saturating_sub(4);
            let body = wire.exact(body_length, waiting_for).await?;
            Err(wire.error(format!(
                "server answered SSLRequest with an error: {}",
                error_response_text(&body)
            )))
        }
        _ => Err(wire.unexpected("'S' or 'N' in answer to SSLRequest", &answer)),
    }
}

/// `SEVERITY CODE: message` from the fields of an ErrorResponse body.
fn error_response_text(body: &[u8]) -> String {
    let mut severity = None;
    let mut code = None;
    let mut message = None;
    for field in body.split(|&byte| byte == 0) {
        let Some((&kind, value)) = field.split_first() else {
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        match kind {
            b'S' => severity = Some(value),
            b'C' => code = Some(value),
            b'M' => message = Some(value),
            _ => {}
        }
    }
    let prefix: Vec<String> = [severity, code].into_iter().flatten().collect();
    let message = message.unwrap_or_else(|| "(no message)".to_string());
    if prefix.is_empty() {
        message
    } else {
        format!("{}: {message}", prefix.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_request_code_is_80877103() {
        assert_eq!(u32::from_be_bytes([0x04, 0xd2, 0x16, 0x2f]), 80_877_103);
    }

    #[test]
    fn error_response_fields_become_severity_code_and_message() {
        let body = b"SFATAL\0C0A000\0Munsupported frontend protocol\0\0";
        assert_eq!(
            error_response_text(body),
            "FATAL 0A000: unsupported frontend protocol"
        );
        assert_eq!(error_response_text(b"\0"), "(no message)");
    }
}
