//! Every STARTTLS reader against arbitrary server bytes: protocol words mixed with random
//! bytes and long runs of one byte, delivered through an in-memory stream whose buffer size
//! (1 byte to 64 KiB) decides how the bytes are split between reads. The server closes after
//! its bytes, so every upgrade must end — with an error or success — without panicking,
//! within the case time limit, and having read at most `PLAINTEXT_LIMIT` bytes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use certinel::config::model::StartTls;
use certinel::scan::starttls::{PLAINTEXT_LIMIT, upgrade};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use crate::common::plaintext_servers::EVERY_STARTTLS;
use certinel_testkit::fuzz::{config, within_time_limit};

/// How long an upgrade may wait, in paused (virtual) time, before it counts as hung: the
/// server has closed by then, so a reader still waiting waits for nothing.
const VIRTUAL_WAIT_LIMIT: Duration = Duration::from_secs(3600);

/// The client end of the in-memory connection, counting the bytes the reader takes.
struct CountingStream {
    inner: DuplexStream,
    read: Arc<AtomicUsize>,
}

impl AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let count = buf.filled().len() - before;
        self.read.fetch_add(count, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What one upgrade did.
#[derive(Debug)]
struct Outcome {
    /// `None` when the upgrade was still waiting at [`VIRTUAL_WAIT_LIMIT`].
    succeeded: Option<bool>,
    /// Bytes the reader took from the stream.
    bytes_read: usize,
}

/// Runs the upgrade of `protocol` against a server that sends `server_bytes` (through a
/// buffer of `buffer_size` bytes), reads and discards whatever the client sends, and then
/// closes its side.
fn run_upgrade(protocol: StartTls, server_bytes: Vec<u8>, buffer_size: usize) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async move {
        let (client, server) = tokio::io::duplex(buffer_size);
        let (mut server_reader, mut server_writer) = tokio::io::split(server);
        let drain = tokio::spawn(async move {
            let mut sink = [0u8; 1024];
            while matches!(server_reader.read(&mut sink).await, Ok(count) if count > 0) {}
        });
        let speak = tokio::spawn(async move {
            // The client may stop reading and drop its end early; that ends the writes.
            let _ = server_writer.write_all(&server_bytes).await;
            let _ = server_writer.shutdown().await;
        });
        let read = Arc::new(AtomicUsize::new(0));
        let mut stream = CountingStream {
            inner: client,
            read: Arc::clone(&read),
        };
        let upgraded = tokio::time::timeout(
            VIRTUAL_WAIT_LIMIT,
            upgrade(&mut stream, protocol, "chat.example"),
        )
        .await;
        drop(stream);
        drain.abort();
        speak.abort();
        Outcome {
            succeeded: upgraded.ok().map(|result| result.is_ok()),
            bytes_read: read.load(Ordering::Relaxed),
        }
    })
}

fn protocol() -> impl Strategy<Value = StartTls> {
    proptest::sample::select(EVERY_STARTTLS.to_vec())
}

/// Words of every protocol's replies, so random sequences get past the first checks.
const WORDS: &[&[u8]] = &[
    b"220 ",
    b"220-",
    b"250-",
    b"250 ",
    b"234 ",
    b"120-",
    b"STARTTLS",
    b"\r\n",
    b"\n",
    b" ",
    b"* OK ",
    b"* ",
    b"a1 OK ",
    b"a1 NO ",
    b"+OK",
    b"-ERR",
    b"<stream:features>",
    b"</stream:features>",
    b"<stream:features/>",
    b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    b"<proceed",
    b"<failure",
    b"/>",
    b">",
    b"</proceed>",
    b"</stream:stream>",
    b"<stream:error",
    b"S",
    b"N",
    b"E",
    b"\x00\x00\x00\x08",
    b"\xff\xff\xff\xff",
    // An LDAP ExtendedResponse with resultCode 0, and a header with a 4-octet length.
    b"\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04\x00",
    b"\x30\x84\x7f\xff\xff\xff",
    b"\x30\x84\x00\x00\xff\xff",
    b"\x30\x81",
    // A MySQL protocol 10 handshake offering SSL and protocol 4.1.
    b"\x20\x00\x00\x00\x0a8.0\x00\x01\x00\x00\x00saltsalt\x00\x00\x0a\x21\x00\x00\x00\x00\x00",
    b"\xff\xff\xff\x00",
    b"\x0a",
];

/// One piece of what the server says.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(WORDS).prop_map(<[u8]>::to_vec),
        3 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (any::<u8>(), 0..100_000usize).prop_map(|(byte, count)| vec![byte; count]),
    ]
}

fn server_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(fragment(), 0..24).prop_map(|fragments| fragments.concat())
}

fn buffer_size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1), Just(7), Just(64), Just(4096), Just(65_536)]
}

/// Checks the three properties for one case.
fn check(protocol: StartTls, server_bytes: Vec<u8>, buffer_size: usize) {
    let sent = server_bytes.len();
    let outcome = within_time_limit(&format!("{protocol:?} over {sent} bytes"), || {
        run_upgrade(protocol, server_bytes, buffer_size)
    });
    assert!(
        outcome.succeeded.is_some(),
        "{protocol:?} still waiting after the server sent {sent} bytes and closed"
    );
    assert!(
        outcome.bytes_read <= PLAINTEXT_LIMIT,
        "{protocol:?} read {} bytes, beyond the {PLAINTEXT_LIMIT}-byte limit",
        outcome.bytes_read
    );
}

proptest! {
    #![proptest_config(config(1_500))]

    #[test]
    fn starttls_readers_end_within_limits_on_arbitrary_server_bytes(
        protocol in protocol(),
        bytes in server_bytes(),
        buffer in buffer_size(),
    ) {
        check(protocol, bytes, buffer);
    }
}

/// A server trickling a long reply one byte per read: each read must not search everything
/// received so far again. Before the fix one SMTP upgrade took 10.7 s here; the five
/// line- and tag-based readers together must now fit in one case's time limit.
#[test]
fn starttls_readers_stay_fast_when_a_long_reply_arrives_one_byte_at_a_time() {
    let trickled = [
        StartTls::Smtp,
        StartTls::Imap,
        StartTls::Pop3,
        StartTls::Ftp,
        StartTls::Xmpp,
    ];
    within_time_limit(
        "five readers over 64 KiB trickled one byte per read",
        || {
            for protocol in trickled {
                let outcome = run_upgrade(protocol, vec![b'x'; PLAINTEXT_LIMIT + 10], 1);
                assert_eq!(outcome.succeeded, Some(false), "{protocol:?}");
                assert_eq!(outcome.bytes_read, PLAINTEXT_LIMIT, "{protocol:?}");
            }
        },
    );
}
