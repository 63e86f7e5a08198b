//! The handshake floor: the least work a TLS expiry probe can do, to measure certinel against.
//!
//! For every target of a `bench/setup-nginx` fixture it connects, completes a tokio-rustls
//! handshake (aws-lc-rs, TLS 1.3 and 1.2 like certinel) whose chain rustls verifies against
//! the bench CA for the target's IP, parses the leaf with x509-parser, checks its notAfter
//! against the one minted for that port, and closes politely (close_notify, then FIN), as
//! certinel's probe does. Nothing else: no logging, no reports, no state.
//!
//! ```text
//! cargo build --release --example handshake-floor
//! target/release/examples/handshake-floor --targets bench/out/targets.tsv \
//!     --ca-file bench/out/ca.pem [--concurrency 32] [--repeat 1] [--rate 0] [--sni-names 0]
//! ```
//!
//! With `--sni-names K` every target is probed K times, under the SNI names
//! `s0.bench.test` .. `s{K-1}.bench.test` (the names `bench/latency` gives certinel, all
//! covered by the bench leaves' `*.bench.test`), and the chain is verified for that name.
//!
//! It prints one JSON object: handshakes, failures, wall seconds and the CPU seconds of the
//! handshake loop alone (every thread of the process, from `/proc/self/task/*/schedstat`,
//! so the process start, the CA load and the seeding of aws-lc's random generator are left
//! out). `bench/floor` runs it.

use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Command-line arguments.
#[derive(Debug, Parser)]
struct Args {
    /// `bench/out/targets.tsv`: `IP:PORT<TAB>notAfter in Unix seconds` per line.
    #[arg(long)]
    targets: PathBuf,
    /// The CA that issued every leaf (`bench/out/ca.pem`).
    #[arg(long)]
    ca_file: PathBuf,
    /// Most handshakes in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How many passes over the targets.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Start at most this many handshakes per second (0: as fast as possible), to compare
    /// with a scheduled sweep, whose probes arrive at the rate its interval sets.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Probe each target under this many SNI names `sI.bench.test` (0: no SNI, the chain
    /// verified for the target's IP).
    #[arg(long, default_value_t = 0)]
    sni_names: u32,
}

/// One target and the notAfter its leaf must carry.
#[derive(Debug, Clone, Copy)]
struct Target {
    address: SocketAddr,
    not_after: i64,
    /// `Some(I)`: sent as SNI `sI.bench.test` and verified for that name.
    sni: Option<u32>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let targets = read_targets(&args.targets)?;
    let config = client_config(&args.ca_file)?;
    let runtime = tokio::runtime::Runtime::new()?;
    // aws-lc seeds its random generator from CPU jitter on first use, once per process
    // (about 0.1 s of CPU): a cost of starting, not of handshakes, so it is paid here.
    let mut seed = [0; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut seed)
        .map_err(|_| "aws-lc cannot produce random bytes")?;
    let cpu_before = process_cpu_ns()?;
    let started = Instant::now();
    // Each (target, name) pair is one handshake.
    let targets: Vec<Target> = if args.sni_names == 0 {
        targets
    } else {
        targets
            .iter()
            .flat_map(|target| {
                (0..args.sni_names).map(|index| Target {
                    sni: Some(index),
                    ..*target
                })
            })
            .collect()
    };
    let work = targets
        .iter()
        .copied()
        .cycle()
        .take(targets.len() * args.repeat);
    let pace = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let failures = runtime.block_on(handshake_all(work, config, args.concurrency.max(1), pace));
    let wall = started.elapsed().as_secs_f64();
    let cpu = (process_cpu_ns()? - cpu_before) as f64 / 1e9;
    let handshakes = targets.len() * args.repeat;
    for failure in failures.iter().take(5) {
        eprintln!("handshake-floor: {failure}");
    }
    println!(
        "{{\"handshakes\": {handshakes}, \"failures\": {}, \"wall_s\": {wall:.6}, \
         \"cpu_s\": {cpu:.6}, \"cpu_s_per_1000\": {:.6}}}",
        failures.len(),
        cpu * 1000.0 / handshakes.max(1) as f64
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {handshakes} handshakes failed", failures.len()).into())
    }
}

/// Probes every target with at most `concurrency` in flight, one every `pace` if given;
/// returns the failures.
async fn handshake_all(
    mut work: impl Iterator<Item = Target>,
    config: Arc<ClientConfig>,
    concurrency: usize,
    pace: Option<Duration>,
) -> Vec<String> {
    let connector = TlsConnector::from(config);
    let mut in_flight = JoinSet::new();
    let mut failures = Vec::new();
    let mut ticks = pace.map(tokio::time::interval);
    loop {
        while in_flight.len() < concurrency {
            if let Some(ticks) = &mut ticks {
                // Paced: wait for the next start, collecting what finished meanwhile.
                tokio::select! {
                    _ = ticks.tick() => {}
                    Some(joined) = in_flight.join_next() => {
                        record(joined, &mut failures);
                        continue;
                    }
                }
            }
            let Some(target) = work.next() else { break };
            let connector = connector.clone();
            in_flight.spawn(async move {
                handshake(&connector, target)
                    .await
                    .map_err(|error| format!("{}: {error}", target.address))
            });
        }
        match in_flight.join_next().await {
            None => return failures,
            Some(joined) => record(joined, &mut failures),
        }
    }
}

fn record(
    joined: std::result::Result<std::result::Result<(), String>, tokio::task::JoinError>,
    failures: &mut Vec<String>,
) {
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(failure)) => failures.push(failure),
        Err(join_error) => failures.push(join_error.to_string()),
    }
}

/// Connect, verified handshake, parse the leaf, compare its notAfter, close.
async fn handshake(connector: &TlsConnector, target: Target) -> Result<()> {
    let tcp = TcpStream::connect(target.address).await?;
    let name = match target.sni {
        None => ServerName::IpAddress(target.address.ip().into()),
        Some(index) => ServerName::try_from(format!("s{index}.bench.test"))?,
    };
    let mut tls = connector.connect(name, tcp).await?;
    let (_, connection) = tls.get_ref();
    let leaf = connection
        .peer_certificates()
        .and_then(<[CertificateDer<'_>]>::first)
        .ok_or("no certificate presented")?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())?;
    let not_after = parsed.validity().not_after.timestamp();
    if not_after != target.not_after {
        return Err(format!("notAfter {not_after}, minted {}", target.not_after).into());
    }
    tls.shutdown().await?;
    Ok(())
}

/// A client that verifies chains against `ca_file` only, TLS 1.3 and 1.2, aws-lc-rs.
fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>> {
    let pem = std::fs::read(ca_file)?;
    let mut roots = RootCertStore::empty();
    for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(certificate?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_targets(path: &Path) -> Result<Vec<Target>> {
    let text = std::fs::read_to_string(path)?;
    let mut targets = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let (Some(address), Some(not_after)) = (fields.next(), fields.next()) else {
            return Err(format!("{}: malformed line `{line}`", path.display()).into());
        };
        targets.push(Target {
            address: address.parse()?,
            not_after: not_after.parse()?,
            sni: None,
        });
    }
    if targets.is_empty() {
        return Err(format!("{}: no targets", path.display()).into());
    }
    Ok(targets)
}

/// CPU time of every live thread of this process, in nanoseconds (the first field of each
/// thread's schedstat). Tokio's worker threads live as long as the runtime, so the
/// difference over the handshake loop is the loop's CPU, to the nanosecond.
fn process_cpu_ns() -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let schedstat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        let on_cpu = schedstat
            .split_whitespace()
            .next()
            .ok_or("empty schedstat")?;
        total += on_cpu.parse::<u64>()?;
    }
    Ok(total)
}
