//! A sweep: probes many endpoints with bounded concurrency; one bad endpoint never stops it.

use std::sync::Arc;

use crate::config::model::Endpoint;
use crate::scan::probe::{EndpointReport, ProbeContext};

/// Probes every endpoint with at most `concurrency` in flight; results come back in the
/// order of `endpoints`. `progress(done, total)` is called as each endpoint finishes.
pub async fn sweep_endpoints(
    endpoints: &[Endpoint],
    ctx: Arc<ProbeContext>,
    concurrency: usize,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Vec<EndpointReport> {
    let _ = (endpoints, ctx, concurrency, progress);
    todo!("probe helper")
}
