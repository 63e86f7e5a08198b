//! The plaintext side of a STARTTLS exchange: bounded, buffered reads and error wording.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{PLAINTEXT_LIMIT, StartTlsError};

/// How many bytes of server output an error message quotes.
const QUOTED_BYTES: usize = 120;

/// How many bytes one read asks for.
const CHUNK: usize = 4096;

/// A stream during its plaintext phase.
///
/// Reads go through `pending`, so a reply split across TCP segments and several replies in
/// one segment both work. The total read is capped at [`PLAINTEXT_LIMIT`].
pub(super) struct Wire<'s, S> {
    stream: &'s mut S,
    protocol: &'static str,
    /// Received and not yet consumed by a parser.
    pending: Vec<u8>,
    /// Everything received so far, consumed or not.
    received: usize,
}

impl<'s, S> Wire<'s, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps `stream` for the exchange of `protocol`.
    pub(super) fn new(stream: &'s mut S, protocol: &'static str) -> Self {
        Wire {
            stream,
            protocol,
            pending: Vec::new(),
            received: 0,
        }
    }

    /// Sends `bytes` and flushes them.
    pub(super) async fn send(&mut self, bytes: &[u8]) -> Result<(), StartTlsError> {
        let written = match self.stream.write_all(bytes).await {
            Ok(()) => self.stream.flush().await,
            Err(error) => Err(error),
        };
        written.map_err(|error| self.error(format!("cannot send {}: {error}", quote(bytes))))
    }

    /// Reads one line and returns it without its CRLF (a bare LF is accepted too).
    pub(super) async fn line(&mut self, waiting_for: &str) -> Result<Vec<u8>, StartTlsError> {
        loop {
            if let Some(newline) = self.pending.iter().position(|&byte| byte == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=newline).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            self.fill(waiting_for).await?;
        }
    }

    /// Reads exactly `count` bytes.
    pub(super) async fn exact(
        &mut self,
        count: usize,
        waiting_for: &str,
    ) -> Result<Vec<u8>, StartTlsError> {
        if count > PLAINTEXT_LIMIT {
            return Err(self.error(format!(
                "server announced {count} bytes for {waiting_for}, more than the \
                 {PLAINTEXT_LIMIT}-byte plaintext limit"
            )));
        }
        while self.pending.len() < count {
            self.fill(waiting_for).await?;
        }
        Ok(self.pending.drain(..count).collect())
    }

    /// Reads until the first of `needles` appears and returns everything up to and including
    /// it, with the index of the needle found.
    pub(super) async fn until(
        &mut self,
        needles: &[&[u8]],
        waiting_for: &str,
    ) -> Result<(Vec<u8>, usize), StartTlsError> {
        loop {
            let earliest = needles
                .iter()
                .enumerate()
                .filter_map(|(index, needle)| {
                    find(&self.pending, needle).map(|at| (at + needle.len(), index))
                })
                .min();
            if let Some((end, index)) = earliest {
                return Ok((self.pending.drain(..end).collect(), index));
            }
            self.fill(waiting_for).await?;
        }
    }

    /// Ends the plaintext phase: fails if the server sent anything beyond its final reply.
    pub(super) fn finish(self) -> Result<(), StartTlsError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        Err(self.error(format!(
            "server sent {} after its final plaintext reply, before the TLS handshake",
            quote(&self.pending)
        )))
    }

    /// An error of this exchange.
    pub(super) fn error(&self, detail: impl Into<String>) -> StartTlsError {
        StartTlsError {
            protocol: self.protocol,
            detail: detail.into(),
        }
    }

    /// An error saying what was expected and quoting what the server sent instead: `sent`,
    /// followed by whatever arrived after it and is not parsed yet.
    pub(super) fn unexpected(&self, expected: &str, sent: &[u8]) -> StartTlsError {
        let shown = [sent, self.pending.as_slice()].concat();
        self.error(format!(
            "expected {expected}, server sent {}",
            quote(&shown)
        ))
    }

    /// Reads one more chunk into `pending`, within the plaintext limit.
    async fn fill(&mut self, waiting_for: &str) -> Result<(), StartTlsError> {
        let room = PLAINTEXT_LIMIT.saturating_sub(self.received);
        if room == 0 {
            return Err(self.error(format!(
                "server sent {PLAINTEXT_LIMIT} bytes of plaintext without completing \
                 {waiting_for}; the unparsed part begins {}",
                quote(&self.pending)
            )));
        }
        let mut chunk = [0u8; CHUNK];
        let wanted = room.min(CHUNK);
        let count = match self.stream.read(&mut chunk[..wanted]).await {
            Ok(count) => count,
            Err(error) => return Err(self.error(format!("cannot read {waiting_for}: {error}"))),
        };
        if count == 0 {
            let mut detail = format!("server closed the connection before sending {waiting_for}");
            if !self.pending.is_empty() {
                detail.push_str(&format!("; it had sent {}", quote(&self.pending)));
            }
            return Err(self.error(detail));
        }
        self.received += count;
        self.pending.extend_from_slice(&chunk[..count]);
        Ok(())
    }
}

/// Quotes server output for an error message: printable ASCII as is, everything else escaped
/// (`\r`, `\n`, `\t`, `\xNN`), truncated to [`QUOTED_BYTES`].
pub(super) fn quote(bytes: &[u8]) -> String {
    let mut quoted = String::from("\"");
    for &byte in bytes.iter().take(QUOTED_BYTES) {
        match byte {
            b'"' => quoted.push_str("\\\""),
            b'\\' => quoted.push_str("\\\\"),
            b'\r' => quoted.push_str("\\r"),
            b'\n' => quoted.push_str("\\n"),
            b'\t' => quoted.push_str("\\t"),
            b' '..=b'~' => quoted.push(char::from(byte)),
            _ => quoted.push_str(&format!("\\x{byte:02x}")),
        }
    }
    quoted.push('"');
    if bytes.len() > QUOTED_BYTES {
        quoted.push_str(&format!("... ({} bytes in all)", bytes.len()));
    }
    quoted
}

/// The position of the first occurrence of `needle` in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_control_bytes_and_truncates_long_output() {
        assert_eq!(quote(b"220 ok\r\n\x00"), r#""220 ok\r\n\x00""#);
        assert_eq!(quote(b"to='a\"b'"), r#""to='a\"b'""#);
        let long = vec![b'A'; 500];
        let quoted = quote(&long);
        assert!(quoted.ends_with("... (500 bytes in all)"), "{quoted}");
        assert_eq!(quoted.matches('A').count(), QUOTED_BYTES);
    }

    #[test]
    fn find_locates_the_first_occurrence() {
        assert_eq!(find(b"abcabc", b"ca"), Some(2));
        assert_eq!(find(b"abc", b"abcd"), None);
    }
}
