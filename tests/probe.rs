//! Probing live TLS endpoints end to end against real loopback servers: what the probe
//! reports (reason keyword, leaf notAfter, earliest notAfter, version, errors) per case.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certinel::cert::KeyType;
use certinel::config::model::{
    ClientAuth, Endpoint, Host, IpFamily, ResolveMode, StartTls, Target,
};
use certinel::scan::budget::ConnectionBudget;
use certinel::scan::probe::{EndpointReport, Handshake, ProbeContext, ProbeError, probe_endpoint};
use certinel::scan::resolve::Resolver;
use certinel::scan::sweep::sweep_endpoints;
use certinel::scan::trust::TrustCache;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use crate::common::pki::{Ca, KeyKind, Leaf, LeafSpec, TwoTierPki, Validity, write_key, write_pem};
use crate::common::tls_server::{
    ServerHandle, ServerOptions, bind, bind_pair, spawn_closing, spawn_garbage, spawn_silent,
    spawn_tls,
};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const NAME: &str = "service.test";

/// The probe tests' PKI: "Test Root" and "Test Intermediate", leaves for [`NAME`].
type TestPki = TwoTierPki;

fn test_pki() -> TestPki {
    TwoTierPki::new("Test", NAME)
}

/// An endpoint at `addr`, named [`NAME`], trusting only `ca_file`, with a 5 s deadline.
fn endpoint_at(addr: SocketAddr, ca_file: &Path) -> Endpoint {
    let target = Target {
        host: Host::Ip(addr.ip()),
        port: addr.port(),
    };
    let mut endpoint = Endpoint::new(target, Duration::from_secs(5));
    endpoint.probe.sni = Some(NAME.to_string());
    endpoint.probe.ca_file = Some(ca_file.to_path_buf());
    endpoint
}

fn context() -> ProbeContext {
    ProbeContext::new(
        Resolver::system(),
        TrustCache::empty(),
        ConnectionBudget::new(256),
    )
}

async fn serve(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> ServerHandle {
    spawn_tls(
        bind(LOCALHOST).await,
        ServerOptions::new(chain, key).acceptor(),
    )
}

async fn probe(endpoint: &Endpoint) -> EndpointReport {
    probe_endpoint(endpoint, &context()).await
}

/// The handshake of a report that probed exactly one address successfully.
fn only_handshake(report: &EndpointReport) -> &Handshake {
    assert_eq!(report.resolve_error, None);
    assert_eq!(report.addresses.len(), 1, "{report:#?}");
    match &report.addresses[0].outcome {
        Ok(handshake) => handshake,
        Err(error) => panic!("expected a handshake, got: {error}"),
    }
}

/// The error of a report that probed exactly one address and failed.
fn only_error(report: &EndpointReport) -> &ProbeError {
    assert_eq!(report.resolve_error, None);
    assert_eq!(report.addresses.len(), 1, "{report:#?}");
    match &report.addresses[0].outcome {
        Ok(handshake) => panic!("expected an error, got a handshake: {handshake:#?}"),
        Err(error) => error,
    }
}

/// What a handshake's chain verdict and expiry facts must be.
struct Expect {
    verified: bool,
    reason: Option<&'static str>,
    leaf_not_after: OffsetDateTime,
    earliest_not_after: OffsetDateTime,
}

impl Expect {
    /// The verdict for a chain whose leaf expires first.
    fn leaf_first(
        verified: bool,
        reason: Option<&'static str>,
        leaf_not_after: OffsetDateTime,
    ) -> Expect {
        Expect {
            verified,
            reason,
            leaf_not_after,
            earliest_not_after: leaf_not_after,
        }
    }
}

fn check(handshake: &Handshake, expect: Expect) {
    check_case("the probed chain", handshake, expect);
}

/// [`check`] for one case of a table; a failure names the `case`.
fn check_case(case: &str, handshake: &Handshake, expect: Expect) {
    let verification = &handshake.verification;
    assert_eq!(
        (
            verification.verified,
            verification.reason.map(|reason| reason.keyword())
        ),
        (expect.verified, expect.reason),
        "{case}: verification detail: {}",
        verification.detail
    );
    let leaf_not_after = handshake.chain.leaf().not_after;
    assert_eq!(leaf_not_after, expect.leaf_not_after, "{case}");
    let earliest_not_after = handshake.chain.earliest_not_after;
    assert_eq!(earliest_not_after, expect.earliest_not_after, "{case}");
}

mod addresses;
mod capacity;
mod chain_verdicts;
mod client_auth;
mod critical_extension;
mod failures;
