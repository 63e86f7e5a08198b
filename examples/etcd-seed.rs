//! Seeds certificate versions into the etcd store of a `[cluster]` configuration, for
//! bench/etcd-scale: the state a renewal leaves, without an ACME order.
//!
//! `etcd-seed CONFIG seed COUNT` stages and promotes one self-signed version of each of
//! `c00001.bench.test` ... (names `c00001` ...); `etcd-seed CONFIG bump NAME` stages and
//! promotes the next version of one of them. CONFIG is a certinel configuration with
//! `[cluster]` (its `state_dir` receives the materialised files of this process). Each
//! version is written under the certificate's renewal lock, as a renewal writes it.

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use certinel::store::{NewVersion, Origin, Store};
use rcgen::{CertificateParams, KeyPair};
use time::{Duration, OffsetDateTime};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The ACME directory recorded as the versions' source (never contacted).
const SOURCE: &str = "https://127.0.0.1:9/bench-seed";

/// The certificate name of index `index` (1-based), as bench/etcd-scale configures it.
fn cert_name(index: usize) -> String {
    format!("c{index:05}")
}

/// The DNS name of certificate `name`.
fn dns_name(name: &str) -> String {
    format!("{name}.bench.test")
}

/// Stages a fresh self-signed leaf for `name` (valid for a year) and makes it current.
/// Returns the version and when the promote returned (seconds since the Unix epoch).
fn stage_and_promote(store: &dyn Store, name: &str) -> Result<(u32, f64)> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::new(vec![dns_name(name)])?;
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(365);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let _lock = store
        .lock(name)
        .map_err(|error| format!("lock {name}: {error}"))?;
    let origin = Origin {
        created_at: now,
        source: SOURCE.to_owned(),
    };
    let new = NewVersion {
        key_pem: &key.serialize_pem(),
        chain_pem: &cert.pem(),
        origin: &origin,
    };
    let staged = store.stage_pending(name, new)?;
    store.promote(name, staged.version)?;
    let promoted_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    Ok((staged.version.0, promoted_at.as_secs_f64()))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: etcd-seed CONFIG seed COUNT | etcd-seed CONFIG bump NAME";
    let [_, config, mode, operand] = args.as_slice() else {
        return Err(usage.into());
    };
    let config = certinel::config::load(Path::new(config))?;
    let store = certinel::cluster::open_store(&config)?;
    let started = Instant::now();
    match mode.as_str() {
        "seed" => {
            let count: usize = operand.parse()?;
            for index in 1..=count {
                stage_and_promote(store.as_ref(), &cert_name(index))?;
            }
            println!("{:.3}", started.elapsed().as_secs_f64());
        }
        "bump" => {
            let (version, promoted_at) = stage_and_promote(store.as_ref(), operand)?;
            println!("{version} {promoted_at:.6}");
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
