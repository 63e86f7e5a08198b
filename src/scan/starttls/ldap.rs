//! LDAP StartTLS extended operation (RFC 4511 §4.14) and the bit of BER it needs.

use tokio::io::{AsyncRead, AsyncWrite};

use super::wire::Wire;
use super::{PLAINTEXT_LIMIT, StartTlsError};

/// The StartTLS extended operation's name.
const START_TLS_OID: &[u8] = b"1.3.6.1.4.1.1466.20037";

/// Our request's messageID; the server's response must carry it.
const MESSAGE_ID: u8 = 1;

/// BER tags used here (all low-tag-number, single byte).
const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_ENUMERATED: u8 = 0x0a;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_EXTENDED_REQUEST: u8 = 0x77;
const TAG_EXTENDED_RESPONSE: u8 = 0x78;
const TAG_REQUEST_NAME: u8 = 0x80;

/// The parts of an ExtendedResponse we report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExtendedResponse {
    message_id: u32,
    result_code: u32,
    diagnostic_message: String,
}

/// Sends the StartTLS request and requires a `success` response.
pub(super) async fn upgrade<S>(wire: &mut Wire<'_, S>) -> Result<(), StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    wire.send(&start_tls_request()).await?;
    let waiting_for = "the StartTLS response";
    let mut message = wire.exact(2, waiting_for).await?;
    if message[0] != TAG_SEQUENCE {
        return Err(wire.unexpected("an LDAPMessage (a BER SEQUENCE)", &message));
    }
    let extra_length_octets = match message[1] {
        first if first > 0x80 => usize::from(first & 0x7f),
        _ => 0,
    };
    message.extend(wire.exact(extra_length_octets, waiting_for).await?);
    let content_length = match parse_header(&message) {
        Ok(Some((_, content_length))) if content_length <= PLAINTEXT_LIMIT => content_length,
        Ok(Some(_)) => return Err(wire.unexpected("an LDAPMessage of at most 64 KiB", &message)),
        Ok(None) => return Err(wire.unexpected("a BER length", &message)),
        Err(why) => return Err(wire.error(format!("bad LDAPMessage: {why}"))),
    };
    message.extend(wire.exact(content_length, waiting_for).await?);
    let response = parse_extended_response(&message)
        .map_err(|why| wire.error(format!("bad StartTLS response: {why}")))?;
    if response.message_id == 0 {
        return Err(wire.error(format!(
            "server sent a notice of disconnection: {}",
            describe_result(&response)
        )));
    }
    if response.message_id != u32::from(MESSAGE_ID) {
        return Err(wire.error(format!(
            "expected a response to messageID {MESSAGE_ID}, server answered messageID {}",
            response.message_id
        )));
    }
    if response.result_code != 0 {
        return Err(wire.error(format!(
            "server refused StartTLS: {}",
            describe_result(&response)
        )));
    }
    Ok(())
}

/// `LDAPMessage { messageID 1, extendedReq { requestName StartTLS } }`.
fn start_tls_request() -> Vec<u8> {
    let request = element(
        TAG_EXTENDED_REQUEST,
        &element(TAG_REQUEST_NAME, START_TLS_OID),
    );
    let message_id = element(TAG_INTEGER, &[MESSAGE_ID]);
    element(TAG_SEQUENCE, &[message_id, request].concat())
}

/// One BER element with a short-form length.
fn element(tag: u8, content: &[u8]) -> Vec<u8> {
    // Invariant: only called on our fixed request, whose parts are all under 128 bytes.
    debug_assert!(content.len() < 0x80);
    let mut encoded = vec![tag, content.len() as u8];
    encoded.extend_from_slice(content);
    encoded
}

/// Why a BER element of the server's answer does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum BerError {
    #[error("multi-byte tag {0:#04x} is not used by LDAP")]
    MultiByteTag(u8),
    #[error("indefinite length is not allowed in LDAP")]
    IndefiniteLength,
    #[error("a {0}-octet length is too long")]
    LongLength(usize),
    #[error("element header truncated")]
    TruncatedHeader,
    #[error("element of {0} bytes overruns its container")]
    Overrun(usize),
    #[error("expected {what} (tag {tag:#04x}), found tag {found:#04x}")]
    UnexpectedTag {
        what: &'static str,
        tag: u8,
        found: u8,
    },
    #[error("{0} is negative")]
    Negative(&'static str),
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{0} does not fit in 32 bits")]
    TooLarge(&'static str),
}

/// Parses an element header: `Some((header length, content length))`, or `None` when
/// `bytes` holds only part of the header.
fn parse_header(bytes: &[u8]) -> Result<Option<(usize, usize)>, BerError> {
    let (Some(&tag), Some(&first)) = (bytes.first(), bytes.get(1)) else {
        return Ok(None);
    };
    if tag & 0x1f == 0x1f {
        return Err(BerError::MultiByteTag(tag));
    }
    match first {
        0..0x80 => Ok(Some((2, usize::from(first)))),
        0x80 => Err(BerError::IndefiniteLength),
        _ => {
            let octets = usize::from(first & 0x7f);
            if octets > 4 {
                return Err(BerError::LongLength(octets));
            }
            let Some(length_bytes) = bytes.get(2..2 + octets) else {
                return Ok(None);
            };
            let length = length_bytes
                .iter()
                .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
            Ok(Some((2 + octets, length)))
        }
    }
}

/// Splits the first element off `input`: its tag, its content and what follows it.
fn next_element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), BerError> {
    let Some((header_length, content_length)) = parse_header(input)? else {
        return Err(BerError::TruncatedHeader);
    };
    let end = header_length
        .checked_add(content_length)
        .filter(|&end| end <= input.len())
        .ok_or(BerError::Overrun(content_length))?;
    Ok((input[0], &input[header_length..end], &input[end..]))
}

/// Splits off the first element and requires its tag.
fn expect_element<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), BerError> {
    let (found, content, rest) = next_element(input)?;
    if found != tag {
        return Err(BerError::UnexpectedTag { what, tag, found });
    }
    Ok((content, rest))
}

/// A non-negative INTEGER or ENUMERATED that fits in 32 bits.
fn unsigned(content: &[u8], what: &'static str) -> Result<u32, BerError> {
    let significant = match content {
        [0, rest @ ..] => rest,
        [first, ..] if first & 0x80 != 0 => return Err(BerError::Negative(what)),
        [] => return Err(BerError::Empty(what)),
        _ => content,
    };
    if significant.len() > 4 {
        return Err(BerError::TooLarge(what));
    }
    Ok(significant
        .iter()
        .fold(0u32, |value, &byte| (value << 8) | u32::from(byte)))
}

/// Parses an LDAPMessage carrying an ExtendedResponse.
fn parse_extended_response(message: &[u8]) -> Result<ExtendedResponse, BerError> {
    let (body, _) = expect_element(message, TAG_SEQUENCE, "LDAPMessage")?;
    let (id, rest) = expect_element(body, TAG_INTEGER, "messageID")?;
    let message_id = unsigned(id, "messageID")?;
    let (operation, _controls) = expect_element(rest, TAG_EXTENDED_RESPONSE, "ExtendedResponse")?;
    let (code, rest) = expect_element(operation, TAG_ENUMERATED, "resultCode")?;
    let result_code = unsigned(code, "resultCode")?;
    let (_matched_dn, rest) = expect_element(rest, TAG_OCTET_STRING, "matchedDN")?;
    let (diagnostic, _) = expect_element(rest, TAG_OCTET_STRING, "diagnosticMessage")?;
    Ok(ExtendedResponse {
        message_id,
        result_code,
        diagnostic_message: String::from_utf8_lossy(diagnostic).into_owned(),
    })
}

/// `resultCode 52 (unavailable): "diagnostic"`.
fn describe_result(response: &ExtendedResponse) -> String {
    let mut described = format!("resultCode {}", response.result_code);
    if let Some(name) = result_code_name(response.result_code) {
        described.push_str(&format!(" ({name})"));
    }
    if !response.diagnostic_message.is_empty() {
        described.push_str(&format!(": {:?}", response.diagnostic_message));
    }
    described
}

/// RFC 4511 Appendix A names of the codes a StartTLS request plausibly gets.
fn result_code_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_the_rfc_4511_extended_request_with_message_id_1() {
        let mut expected = vec![0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16];
        expected.extend_from_slice(b"1.3.6.1.4.1.1466.20037");
        assert_eq!(start_tls_request(), expected);
    }

    #[test]
    fn header_lengths_parse_in_short_and_long_form() {
        assert_eq!(parse_header(&[0x30, 0x05]), Ok(Some((2, 5))));
        assert_eq!(parse_header(&[0x30, 0x81, 0xc8]), Ok(Some((3, 200))));
        assert_eq!(parse_header(&[0x30, 0x82, 0x01, 0x00]), Ok(Some((4, 256))));
        assert_eq!(parse_header(&[0x30, 0x82, 0x01]), Ok(None));
        assert!(parse_header(&[0x30, 0x80]).is_err());
        assert!(parse_header(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
    }

    #[test]
    fn extended_response_yields_message_id_result_code_and_diagnostic() {
        let response = [
            0x30, 0x12, 0x02, 0x01, 0x01, 0x78, 0x0d, 0x0a, 0x01, 0x35, 0x04, 0x00, 0x04, 0x06,
            b'n', b'o', b' ', b't', b'l', b's',
        ];
        let parsed = parse_extended_response(&response[..]).map_err(|e| e.to_string());
        assert_eq!(
            parsed,
            Ok(ExtendedResponse {
                message_id: 1,
                result_code: 53,
                diagnostic_message: "no tls".to_string(),
            })
        );
    }

    #[test]
    fn truncated_or_mistagged_responses_are_errors() {
        assert!(parse_extended_response(&[0x30, 0x05, 0x02, 0x01]).is_err());
        assert!(parse_extended_response(&[0x30, 0x03, 0x04, 0x01, 0x01]).is_err());
        assert!(unsigned(&[0xff], "resultCode").is_err());
        assert_eq!(unsigned(&[0x00, 0xff], "resultCode"), Ok(255));
    }
}
