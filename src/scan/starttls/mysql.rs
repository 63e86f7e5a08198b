//! MySQL / MariaDB: read the initial handshake, answer with an SSL Request packet.

use tokio::io::{AsyncRead, AsyncWrite};

use super::wire::Wire;
use super::{PLAINTEXT_LIMIT, StartTlsError};

/// Capability flags (MySQL `CLIENT_*`).
const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_SSL: u32 = 0x0000_0800;
const CLIENT_TRANSACTIONS: u32 = 0x0000_2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;

/// What we claim in the SSL Request: a modern client that will authenticate after TLS.
const CLIENT_FLAGS: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_PROTOCOL_41
    | CLIENT_SSL
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_PLUGIN_AUTH;

/// utf8_general_ci, used when the server names no character set.
const DEFAULT_CHARSET: u8 = 0x21;

/// The largest packet we say we accept (16 MiB, the protocol's single-packet maximum).
const MAX_PACKET_SIZE: u32 = 0x00ff_ffff;

/// The parts of the initial handshake packet (protocol 10) we use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Handshake {
    server_version: String,
    capabilities: u32,
    charset: Option<u8>,
}

/// Reads the server's handshake and, if it offers TLS, sends the SSL Request packet.
pub(super) async fn upgrade<S>(wire: &mut Wire<'_, S>) -> Result<(), StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let waiting_for = "the initial handshake packet";
    let header = wire.exact(4, waiting_for).await?;
    let length =
        usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let sequence = header[3];
    if length > PLAINTEXT_LIMIT {
        return Err(wire.unexpected("a handshake packet of at most 64 KiB", &header));
    }
    let payload = wire.exact(length, waiting_for).await?;
    if payload.first() == Some(&0xff) {
        return Err(wire.error(format!(
            "server refused the connection: {}",
            error_packet_text(&payload)
        )));
    }
    let handshake = parse_handshake(&payload).map_err(|why| {
        let sent = [header.as_slice(), payload.as_slice()].concat();
        wire.unexpected(&format!("a protocol 10 handshake packet ({why})"), &sent)
    })?;
    if handshake.capabilities & CLIENT_SSL == 0 {
        return Err(wire.error(format!(
            "server {} does not offer SSL (no CLIENT_SSL in its capabilities {:#010x})",
            handshake.server_version, handshake.capabilities
        )));
    }
    if handshake.capabilities & CLIENT_PROTOCOL_41 == 0 {
        return Err(wire.error(format!(
            "server {} does not speak protocol 4.1 (no CLIENT_PROTOCOL_41)",
            handshake.server_version
        )));
    }
    wire.send(&ssl_request(sequence.wrapping_add(1), handshake.charset))
        .await
}

/// Why an initial handshake packet does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum HandshakeError {
    #[error("empty packet")]
    Empty,
    #[error("protocol version {0}")]
    Protocol(u8),
    #[error("server version not NUL-terminated")]
    UnterminatedVersion,
    #[error("packet ends before the capability flags")]
    NoCapabilities,
}

/// Parses a protocol 10 initial handshake payload.
fn parse_handshake(payload: &[u8]) -> Result<Handshake, HandshakeError> {
    let (&protocol, rest) = payload.split_first().ok_or(HandshakeError::Empty)?;
    if protocol != 10 {
        return Err(HandshakeError::Protocol(protocol));
    }
    let version_end = rest
        .iter()
        .position(|&byte| byte == 0)
        .ok_or(HandshakeError::UnterminatedVersion)?;
    let server_version = String::from_utf8_lossy(&rest[..version_end]).into_owned();
    // After the version: connection id (4), auth-plugin-data part 1 (8), filler (1).
    let fixed = &rest[version_end + 1..];
    let lower = fixed.get(13..15).ok_or(HandshakeError::NoCapabilities)?;
    let mut capabilities = u32::from(u16::from_le_bytes([lower[0], lower[1]]));
    // Then, optionally: character set (1), status flags (2), upper capability flags (2).
    let charset = fixed.get(15).copied();
    if let Some(upper) = fixed.get(18..20) {
        capabilities |= u32::from(u16::from_le_bytes([upper[0], upper[1]])) << 16;
    }
    Ok(Handshake {
        server_version,
        capabilities,
        charset,
    })
}

/// The 32-byte SSL Request payload behind its 4-byte packet header.
fn ssl_request(sequence: u8, charset: Option<u8>) -> Vec<u8> {
    let mut packet = vec![32, 0, 0, sequence];
    packet.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    packet.extend_from_slice(&MAX_PACKET_SIZE.to_le_bytes());
    packet.push(charset.unwrap_or(DEFAULT_CHARSET));
    packet.extend_from_slice(&[0; 23]);
    packet
}

/// `error 1130: message` from an ERR packet (with or without the `#SQLSTATE` marker).
fn error_packet_text(payload: &[u8]) -> String {
    let Some(code) = payload.get(1..3) else {
        return "an empty error packet".to_string();
    };
    let code = u16::from_le_bytes([code[0], code[1]]);
    let mut message = &payload[3..];
    if message.first() == Some(&b'#') && message.len() >= 6 {
        message = &message[6..];
    }
    format!("error {code}: {}", String::from_utf8_lossy(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake_payload(lower: u16, tail: &[u8]) -> Vec<u8> {
        let mut payload = vec![10];
        payload.extend_from_slice(b"8.0.36\0");
        payload.extend_from_slice(&[1, 0, 0, 0]);
        payload.extend_from_slice(b"saltsalt\0");
        payload.extend_from_slice(&lower.to_le_bytes());
        payload.extend_from_slice(tail);
        payload
    }

    #[test]
    fn handshake_combines_lower_and_upper_capability_flags() {
        let payload = handshake_payload(0xf7ff, &[0x2d, 0x02, 0x00, 0xff, 0xdf, 21]);
        assert_eq!(
            parse_handshake(&payload),
            Ok(Handshake {
                server_version: "8.0.36".to_string(),
                capabilities: 0xdfff_f7ff,
                charset: Some(0x2d),
            })
        );
    }

    #[test]
    fn short_handshake_has_only_lower_flags() {
        let parsed = parse_handshake(&handshake_payload(0x0800, &[]));
        assert_eq!(parsed.map(|handshake| handshake.capabilities), Ok(0x0800));
    }

    #[test]
    fn handshake_of_other_protocol_versions_is_rejected() {
        assert!(parse_handshake(&[9, b'x', 0]).is_err());
        assert!(parse_handshake(&handshake_payload(0x0800, &[])[..12]).is_err());
    }

    #[test]
    fn ssl_request_is_32_bytes_with_ssl_and_protocol_41() {
        let packet = ssl_request(1, None);
        assert_eq!(packet.len(), 36);
        assert_eq!(packet[..4], [32, 0, 0, 1]);
        let flags = u32::from_le_bytes([packet[4], packet[5], packet[6], packet[7]]);
        assert_eq!(
            flags & (CLIENT_SSL | CLIENT_PROTOCOL_41),
            CLIENT_SSL | CLIENT_PROTOCOL_41
        );
        assert_eq!(packet[12], DEFAULT_CHARSET);
    }

    #[test]
    fn error_packet_reports_code_and_message() {
        let mut payload = vec![0xff, 0x6a, 0x04];
        payload.extend_from_slice(b"Host '10.0.0.1' is not allowed");
        assert_eq!(
            error_packet_text(&payload),
            "error 1130: Host '10.0.0.1' is not allowed"
        );
        let mut with_state = vec![0xff, 0x15, 0x04];
        with_state.extend_from_slice(b"#28000Access denied");
        assert_eq!(error_packet_text(&with_state), "error 1045: Access denied");
    }
}
