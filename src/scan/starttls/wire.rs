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
        // Bytes already searched are not searched again: a server trickling a long line one
        // byte per read must cost linear time, not quadratic.
        let mut searched = 0;
        loop {
            let unsearched = &self.pending[searched..];
            if let Some(offset) = unsearched.iter().position(|&byte| byte == b'\n') {
                let newline = searched + offset;
                let mut line: Vec<u8> = self.pending.drain(..=newline).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            searched = self.pending.len();
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
        // As in `line`, only new bytes are searched, plus the tail of the old ones where a
        // needle split across two reads may begin.
        let longest = needles.iter().map(|needle| needle.len()).max().unwrap_or(0);
        let mut searched: usize = 0;
        loop {
            let from = searched.saturating_sub(longest.saturating_sub(1));
            let earliest = needles
                .iter()
                .enumerate()
                .filter_map(|(index, needle)| {
                    find(&self.pending[from..], needle).map(|at| (from + at + needle.len(), index))
                })
                .min();
            if let Some((end, index)) = earliest {
                return Ok((self.pending.drain(..end).collect(), index));
            }
            searched = self.pending.len();
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
        // Read straight into `pending`'s spare capacity: no zeroed buffer per read.
        let wanted = room.min(CHUNK);
        self.pending.reserve(wanted);
        let mut limited = (&mut *self.stream).take(wanted as u64);
        let count = match limited.read_buf(&mut self.pending).await {
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

    #[tokio::test]
    async fn lines_and_needles_split_across_one_byte_reads_are_found() {
        // A one-byte buffer delivers every byte in its own read.
        let (mut client, mut server) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            server.write_all(b"220 hi\r\nab</proceed>").await.unwrap();
            server
        });
        let mut wire = Wire::new(&mut client, "test");
        assert_eq!(wire.line("a line").await.unwrap(), b"220 hi");
        let (found, index) = wire
            .until(&[b"<none>", b"</proceed>"], "a needle")
            .await
            .unwrap();
        assert_eq!((found.as_slice(), index), (b"ab</proceed>".as_slice(), 1));
        drop(writer.await.unwrap());
    }

    #[test]
    fn find_locates_the_first_occurrence() {
        assert_eq!(find(b"abcabc", b"ca"), Some(2));
        assert_eq!(find(b"abc", b"abcd"), None);
    }
}
