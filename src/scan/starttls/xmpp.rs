//! XMPP STARTTLS (RFC 6120 §5): open a client stream, read its features, send `<starttls/>`.
//!
//! This is not an XML parser: it looks for the few fixed markers RFC 6120 servers send, which
//! is enough to decide whether to proceed, and quotes the server's XML when it is not.

use tokio::io::{AsyncRead, AsyncWrite};

use super::StartTlsError;
use super::wire::{Wire, find, quote};
use crate::escape::markup;

const FEATURES_END: &[u8] = b"</stream:features>";
const FEATURES_EMPTY: &[u8] = b"<stream:features/>";
const STREAM_END: &[u8] = b"</stream:stream>";
const STARTTLS: &[u8] = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

/// Opens the stream to `server_name` and runs the exchange up to the server's `<proceed/>`.
pub(super) async fn upgrade<S>(
    wire: &mut Wire<'_, S>,
    server_name: &str,
) -> Result<(), StartTlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    wire.send(stream_header(server_name).as_bytes()).await?;
    let (opening, found) = wire
        .until(
            &[FEATURES_END, FEATURES_EMPTY, STREAM_END],
            "the stream features",
        )
        .await?;
    if found == 2 {
        let error = find(&opening, b"<stream:error").map_or(&opening[..], |at| &opening[at..]);
        return Err(wire.unexpected("stream features", error));
    }
    let features = find(&opening, b"<stream:features").map_or(&opening[..], |at| &opening[at..]);
    if find(features, b"<starttls").is_none() {
        return Err(wire.unexpected("stream features offering <starttls>", features));
    }
    wire.send(STARTTLS).await?;
    let (answer, found) = wire
        .until(
            &[b"<proceed", b"<failure", STREAM_END],
            "the answer to <starttls/>",
        )
        .await?;
    if found == 2 {
        return Err(wire.unexpected("<proceed/>", &answer));
    }
    let (rest_of_tag, _) = wire
        .until(&[b">"], "the end of the answer to <starttls/>")
        .await?;
    if found == 1 {
        return Err(wire.error(format!(
            "server refused <starttls/>: it sent {}",
            quote(&[answer, rest_of_tag].concat())
        )));
    }
    // `<proceed .../>` is complete; `<proceed ...>` still owes its end tag.
    if !rest_of_tag.ends_with(b"/>") {
        wire.until(&[b"</proceed>"], "the end of <proceed>").await?;
    }
    Ok(())
}

/// The client's stream header, with `server_name` escaped for a single-quoted attribute.
fn stream_header(server_name: &str) -> String {
    let escaped = markup(server_name);
    format!(
        "<?xml version='1.0'?><stream:stream to='{escaped}' version='1.0' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_header_names_the_server_and_escapes_it() {
        let header = stream_header("chat.example");
        assert!(header.contains("to='chat.example'"), "{header}");
        assert!(stream_header("a'b<c").contains("to='a&#39;b&lt;c'"));
    }
}
