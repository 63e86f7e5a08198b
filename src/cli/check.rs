//! `certinel check`: one sweep, a table or JSON lines, a monitoring-plugin exit code.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use time::OffsetDateTime;

use crate::cli::ExitCode;
use crate::config::model::{Config, Endpoint, FileSource, IpFamily, StartTls, Target};
use crate::config::{self, parse_duration};
use crate::metrics::render;
use crate::report::{self, Row, Thresholds};
use crate::scan::budget::ConnectionBudget;
use crate::scan::crl::fetch::CrlFetcher;
use crate::scan::crl::watch;
use crate::scan::files;
use crate::scan::probe::{EndpointReport, ProbeContext};
use crate::scan::resolve::Resolver;
use crate::scan::sweep::sweep_endpoints;
use crate::scan::trust::TrustCache;
use crate::service::endpoint_sources::{EndpointSources, Settings};

/// Arguments of `certinel check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Targets: `host:port`, `https://host[:port]`, or a PEM file, directory or glob.
    /// Without targets, those of the configuration are checked.
    pub targets: Vec<String>,
    /// Configuration file whose endpoints and files are checked (when no target is given)
    /// and whose scanner settings apply.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// WARNING when a certificate expires within this (e.g. `21d`).
    #[arg(long, default_value = "21d", value_parser = parse_duration)]
    pub warn: Duration,
    /// CRITICAL when a certificate expires within this (e.g. `7d`).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub crit: Duration,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Also write the Prometheus text of the checked targets to this file, atomically (a
    /// temporary file renamed over it), for node_exporter's textfile collector.
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<PathBuf>,
    /// SNI name for command-line targets (default: the target's host).
    #[arg(long)]
    pub sni: Option<String>,
    /// STARTTLS protocol for command-line targets.
    /// (`smtp`, `imap`, `pop3`, `ftp`, `ldap`, `postgres`, `mysql`, `xmpp`).
    #[arg(long)]
    pub starttls: Option<StartTls>,
    /// Extra trust roots (PEM) for command-line targets.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Per-address deadline for command-line targets.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Probe only IPv4 or IPv6 addresses of command-line targets.
    /// (`any`, `ipv4`, `ipv6`).
    #[arg(long, default_value = "any")]
    pub ip_family: IpFamily,
    /// Answer names from this hosts-format file before DNS.
    #[arg(long)]
    pub hosts_file: Option<PathBuf>,
    /// Most probes in flight at once.
    #[arg(long)]
    pub concurrency: Option<usize>,
}

/// Output formats of `certinel check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A table for people.
    Table,
    /// One JSON object per endpoint address or file.
    Json,
    /// The Prometheus text format: the families `/metrics` would export for these targets.
    Prometheus,
}

/// Runs one check and returns the worst status as the exit code.
pub fn run(args: CheckArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Some(config::load(path)?),
        None => None,
    };
    let plan = plan(&args, config.as_ref())?;
    let checked = runtime.block_on(sweep(plan))?;
    let rows = checked.rows();
    let metrics = || {
        render::render_targets(&checked.endpoints, &checked.files, checked.at)
            .context("cannot render the metrics")
    };
    if let Some(path) = &args.textfile {
        crate::disk::write_atomic(path, metrics()?.as_bytes(), crate::disk::MODE_PUBLIC)
            .with_context(|| format!("cannot write the textfile {}", path.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    match args.output {
        Output::Table => stdout.write_all(report::table::render(&rows).as_bytes())?,
        Output::Json => {
            for row in &rows {
                report::json::write_row(&mut stdout, row)?;
                stdout.write_all(b"\n")?;
            }
        }
        Output::Prometheus => stdout.write_all(metrics()?.as_bytes())?,
    }
    Ok(ExitCode(report::overall(&rows).exit_code()))
}

/// What one check will probe and read, decided before any I/O.
struct Plan {
    endpoints: Vec<Endpoint>,
    files: Vec<FileSource>,
    hosts_file: Option<PathBuf>,
    concurrency: usize,
    /// `[scanner] max_connections`; `None` derives it from the descriptor limit.
    max_connections: Option<usize>,
    max_addresses: usize,
    /// `[scanner] crl` (on without a configuration): check leaves against their CRLs.
    crl: bool,
    thresholds: Thresholds,
}

fn plan(args: &CheckArgs, config: Option<&Config>) -> anyhow::Result<Plan> {
    if args.crit > args.warn {
        anyhow::bail!("--crit must not be longer than --warn");
    }
    let scanner = config.map(|config| &config.scanner);
    let mut plan = Plan {
        endpoints: Vec::new(),
        files: Vec::new(),
        hosts_file: args
            .hosts_file
            .clone()
            .or_else(|| scanner.and_then(|scanner| scanner.hosts_file.clone())),
        concurrency: args
            .concurrency
            .or(scanner.map(|scanner| scanner.concurrency))
            .unwrap_or(crate::config::DEFAULT_CONCURRENCY),
        max_connections: scanner.and_then(|scanner| scanner.max_connections),
        max_addresses: scanner.map_or(crate::scan::probe::DEFAULT_MAX_ADDRESSES, |scanner| {
            scanner.max_addresses
        }),
        crl: scanner.is_none_or(|scanner| scanner.crl),
        thresholds: Thresholds {
            warn: args.warn,
            crit: args.crit,
        },
    };
    if plan.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    if args.targets.is_empty() {
        let Some(config) = config else {
            anyhow::bail!(
                "nothing to check: give targets (host:port, https://host, a PEM file or \
                 directory) or --config FILE"
            );
        };
        // The targets of `[[endpoint_source]]` files too, as `certinel run` would schedule
        // them; a rejected file is logged and adds none.
        let mut sources = EndpointSources::default();
        sources.refresh(&Settings::of(config));
        plan.endpoints = sources.merge(&config.endpoints);
        plan.files = config.files.clone();
        return Ok(plan);
    }
    for argument in &args.targets {
        if looks_like_path(argument) {
            plan.files.push(FileSource {
                path: argument.clone(),
                interval: Duration::from_secs(300),
            });
            continue;
        }
        // The error quotes the argument itself; a context would repeat it.
        let target: Target = argument.parse()?;
        let mut endpoint = Endpoint::new(target, args.timeout);
        endpoint.probe.sni = args.sni.clone();
        endpoint.probe.starttls = args.starttls;
        endpoint.probe.ca_file = args.ca_file.clone();
        endpoint.probe.ip_family = args.ip_family;
        plan.endpoints.push(endpoint);
    }
    Ok(plan)
}

/// A command-line argument names files when it exists on disk or contains a glob
/// character; `host:port` and URLs never do.
fn looks_like_path(argument: &str) -> bool {
    std::path::Path::new(argument).exists() || argument.contains(['*', '?'])
}

/// What one sweep found, and when it was judged.
struct Checked {
    endpoints: Vec<EndpointReport>,
    files: Vec<files::FileReport>,
    thresholds: Thresholds,
    at: OffsetDateTime,
}

impl Checked {
    /// One row per endpoint address and file, judged against the thresholds.
    fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .endpoints
            .iter()
            .flat_map(|report| report::endpoint_rows(report, self.thresholds, self.at))
            .collect();
        rows.extend(
            self.files
                .iter()
                .map(|report| report::file_row(report, self.thresholds, self.at)),
        );
        rows
    }
}

async fn sweep(plan: Plan) -> anyhow::Result<Checked> {
    let resolver = match &plan.hosts_file {
        Some(path) => Resolver::with_hosts_file(path)
            .with_context(|| format!("cannot read hosts file {}", path.display()))?,
        None => Resolver::system(),
    };
    let budget = ConnectionBudget::for_process(plan.max_connections);
    let context = ProbeContext::new(resolver.clone(), TrustCache::system(), budget.clone())
        .with_max_addresses(plan.max_addresses);
    let context = Arc::new(if plan.crl {
        context.with_crl(Arc::new(CrlFetcher::new(resolver, budget)))
    } else {
        context
    });
    let total = plan.endpoints.len();
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Progress::start(total, done.clone());
    let record = move |finished: usize, _total: usize| done.store(finished, Ordering::Relaxed);
    let crl = context.crl.clone();
    let reports = sweep_endpoints(&plan.endpoints, context, plan.concurrency, &record).await;
    progress.finish();

    let mut files = tokio::task::spawn_blocking(move || read_files(&plan.files)).await?;
    if let Some(fetcher) = &crl {
        // One run: the fetcher is new, so any interval fetches each URL once.
        let once = std::time::Duration::from_secs(3600);
        watch::check_files(fetcher, &mut files, OffsetDateTime::now_utc(), once).await;
    }
    Ok(Checked {
        endpoints: reports,
        files,
        thresholds: plan.thresholds,
        at: OffsetDateTime::now_utc(),
    })
}

fn read_files(sources: &[FileSource]) -> Vec<files::FileReport> {
    let mut reports = Vec::new();
    for source in sources {
        match files::expand(&source.path) {
            Ok(paths) => reports.extend(paths.iter().map(|path| files::inspect_file(path))),
            Err(error) => reports.push(files::FileReport {
                revocation: None,
                path: PathBuf::from(&source.path),
                outcome: Err(error),
            }),
        }
    }
    reports
}

/// A progress line on standard error, shown only on a terminal and only once a sweep has
/// taken longer than a second.
struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(total: usize, done: Arc<AtomicUsize>) -> Progress {
        if total == 0 || !std::io::stderr().is_terminal() {
            return Progress { task: None };
        }
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut ticker = tokio::time::interval(Duration::from_millis(200));
            loop {
                ticker.tick().await;
                let finished = done.load(Ordering::Relaxed);
                eprint!("\rprobing: {finished}/{total} endpoints");
            }
        });
        Progress { task: Some(task) }
    }

    fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
            eprint!("\r\x1b[2K");
        }
    }
}
