//! Plain HTTP/1.1 on the server side of hand-written test servers.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads a request head (request line and headers, up to and including the blank line)
/// one byte at a time, so that nothing after it is consumed. `None` when the client closed
/// the connection first.
pub async fn read_request_head(stream: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}
