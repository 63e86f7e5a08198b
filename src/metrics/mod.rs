//! The exporter's HTTP face: `/metrics`, `/probe`, `/healthz`, `/readyz` and the `/` status
//! page. Metric names live in [`names`]; [`render`], [`allow`] and [`status_page`] are pure.
//!
//! Invariant: nothing here schedules probes. A `/metrics` scrape reads a [`render::Snapshot`]
//! of the service state and never starts network work; only `/probe` probes, on demand,
//! after its allow-list check.

pub mod allow;
pub mod certificates;
pub mod cluster;
pub mod endpoint_sources;
pub mod http;
pub mod label_values;
pub mod names;
pub mod probe_handler;
pub mod render;
mod revocation;
pub mod scrape;
pub mod status_page;
