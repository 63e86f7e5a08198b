//! The HTTP routes: `/metrics`, `/probe`, `/healthz`, `/readyz` and `/`.
//!
//! Handlers read the clock (scrape time) and hand it to the pure renderers. They know the
//! service only through [`StateView`], so this module knows nothing about scheduling.

use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use time::OffsetDateTime;

use crate::config::model::ExporterSettings;
use crate::metrics::render::Snapshot;
use crate::metrics::{probe_handler, scrape, status_page};
use crate::scan::probe::ProbeContext;

/// The content type of the Prometheus text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the HTTP handlers need to know about the service's state.
pub trait StateView: Send + Sync + 'static {
    /// A copy of the current results.
    fn snapshot(&self) -> Snapshot;
    /// What `/metrics` needs: the snapshot without the endpoint reports (their lines
    /// are in [`Snapshot::endpoint_lines`]).
    fn metrics_snapshot(&self) -> Snapshot {
        self.snapshot()
    }
    /// Every scheduled target has produced a result since start or the last reload.
    fn is_ready(&self) -> bool;
}

/// The `/probe` settings of the running configuration; swapped on reload.
#[derive(Debug, Clone)]
pub struct ProbeSetup {
    /// Allow-list and modules.
    pub exporter: ExporterSettings,
    /// Resolver and trust roots.
    pub context: Arc<ProbeContext>,
}

/// Everything the routes share.
pub struct HttpShared {
    /// The service's results.
    pub state: Arc<dyn StateView>,
    /// The current `/probe` settings.
    pub probe: RwLock<ProbeSetup>,
}

impl HttpShared {
    /// The current `/probe` settings.
    pub fn probe_setup(&self) -> ProbeSetup {
        // Writers replace the whole value, so a poisoned lock still holds a valid one.
        self.probe
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Installs the settings of a newly loaded configuration.
    pub fn set_probe_setup(&self, setup: ProbeSetup) {
        *self.probe.write().unwrap_or_else(PoisonError::into_inner) = setup;
    }
}

/// The exporter's routes.
pub fn router(shared: Arc<HttpShared>) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/metrics", get(metrics))
        .route(
            "/probe",
            get(probe_handler::probe).layer(Extension(probe_handler::ProbeLimiter::new(
                probe_handler::PROBE_CONCURRENCY_LIMIT,
            ))),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<HttpShared>>, headers: HeaderMap) -> Response {
    let now = OffsetDateTime::now_utc();
    let gzip = scrape::accepts_gzip(&headers);
    scrape::stream_body(move || shared.state.metrics_snapshot(), now, gzip)
}

async fn status(State(shared): State<Arc<HttpShared>>) -> Html<String> {
    let snapshot = shared.state.snapshot();
    Html(status_page::render_page(
        &snapshot,
        OffsetDateTime::now_utc(),
    ))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Arc<HttpShared>>) -> (StatusCode, &'static str) {
    if shared.state.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the first result of every target\n",
        )
    }
}

/// A 200 response in the Prometheus text format.
pub fn text_format(body: String) -> Response {
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response()
}
