//! A latency front for the benchmarks: a TCP proxy that makes loopback servers look far away.
//!
//! Kernel netem is not available on the bench machines, so this user-space proxy listens
//! on `--ports` consecutive loopback ports from `--listen-base` and forwards each one to
//! the port at the same offset from `--upstream-base`. Every segment it forwards waits
//! RTT/2 in each direction, and nothing the client sends is forwarded before one full RTT
//! after the connection was accepted: the client's `connect` returns at once on loopback,
//! while over a real path the TCP handshake takes that round trip. A TLS probe therefore
//! needs about three RTTs (TCP, TLS, the server's answer to the client's Finished and
//! close_notify overlap) as it would on a real path.
//!
//! ```text
//! cargo build --release --example latency-front
//! target/release/examples/latency-front --listen-base 30000 --upstream-base 20000 \
//!     --ports 1000 --rtt-ms 100
//! ```
//!
//! It prints `ready` once every port listens, and runs until killed. `bench/latency` runs it.

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Command-line arguments.
#[derive(Debug, Parser)]
struct Args {
    /// First port the proxy listens on (127.0.0.1).
    #[arg(long)]
    listen_base: u16,
    /// First upstream port (127.0.0.1); port `listen_base + i` forwards to `upstream_base + i`.
    #[arg(long)]
    upstream_base: u16,
    /// How many consecutive ports.
    #[arg(long, default_value_t = 1)]
    ports: u16,
    /// Round-trip time to add, in milliseconds: RTT/2 each way.
    #[arg(long, default_value_t = 100)]
    rtt_ms: u64,
}

/// One chunk of bytes in flight, or the end of the stream, due at `due`.
struct Segment {
    due: Instant,
    bytes: Option<Vec<u8>>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let rtt = Duration::from_millis(args.rtt_ms);
    for offset in 0..args.ports {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, args.listen_base + offset));
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, args.upstream_base + offset));
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
        tokio::spawn(accept_loop(listener, upstream, rtt));
    }
    println!("ready");
    std::future::pending::<()>().await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, rtt: Duration) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let accepted = Instant::now();
        tokio::spawn(async move {
            if let Err(error) = relay(client, upstream, accepted, rtt).await {
                eprintln!("latency-front: {upstream}: {error}");
            }
        });
    }
}

/// Forwards both directions of one connection, each segment delayed by RTT/2.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    accepted: Instant,
    rtt: Duration,
) -> Result<()> {
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let half = rtt / 2;
    // The client's bytes leave no earlier than the emulated TCP handshake allows.
    let to_server = pipe(client_read, server_write, half, accepted + rtt);
    let to_client = pipe(server_read, client_write, half, accepted);
    let (sent, received) = tokio::join!(to_server, to_client);
    sent.and(received)
}

/// Copies `from` to `to`, each chunk written `delay` after it was read (and not before
/// `not_before`), in order; the end of the stream is passed on the same way.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    not_before: Instant,
) -> Result<()> {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Segment>();
    let reader = async move {
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let read = from.read(&mut buffer).await.unwrap_or(0);
            let due = Instant::now().max(not_before) + delay;
            let bytes = (read > 0).then(|| buffer[..read].to_vec());
            let end = bytes.is_none();
            if sender.send(Segment { due, bytes }).is_err() || end {
                return;
            }
        }
    };
    let writer = async move {
        // Segments arrive in order and all wait the same delay, so their due times rise.
        while let Some(segment) = receiver.recv().await {
            tokio::time::sleep_until(segment.due).await;
            match segment.bytes {
                Some(bytes) => to.write_all(&bytes).await?,
                None => return to.shutdown().await,
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let ((), written) = tokio::join!(reader, writer);
    Ok(written?)
}
