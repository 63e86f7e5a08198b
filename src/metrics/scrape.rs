//! The `/metrics` response: gzip when the scraper accepts it (Prometheus does), and a body
//! streamed in chunks from a blocking task, so no scrape holds the whole body, plain or
//! compressed.
//!
//! [`accepts_gzip`] is pure; [`stream_body`] moves the rendering to a blocking thread
//! (copying 20 MB of text is milliseconds of CPU) and hands its output to hyper through a
//! small bounded channel: the renderer waits while the client reads.

use std::io;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::metrics::http::TEXT_FORMAT;
use crate::metrics::render::{self, Snapshot};

/// Chunks in flight between the renderer and the connection (each about 64 KiB).
const CHUNKS_IN_FLIGHT: usize = 4;

/// Whether `Accept-Encoding` lists `gzip` with a non-zero quality.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|parameter| {
                parameter
                    .strip_prefix("q=")
                    .and_then(|quality| quality.parse::<f64>().ok())
                    .is_some_and(|quality| quality <= 0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// The `/metrics` response for the snapshot `take_snapshot` returns, at `now`: the
/// Prometheus text format, gzipped (fastest level: the body is repetitive, and CPU is what
/// a scrape should not cost) when `gzip`, streamed either way. The snapshot is taken on
/// the blocking thread too: sorting 100,000 endpoints is no work for an I/O thread.
pub fn stream_body(
    take_snapshot: impl FnOnce() -> Snapshot + Send + 'static,
    now: OffsetDateTime,
    gzip: bool,
) -> Response {
    let (sender, mut receiver) = mpsc::channel::<Result<Bytes, io::Error>>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let snapshot = take_snapshot();
        let mut writer = ChannelWriter { sender };
        let written = if gzip {
            let mut encoder = GzEncoder::new(&mut writer, Compression::fast());
            render::write_snapshot(&snapshot, now, &mut encoder)
                .and_then(|()| encoder.finish().map(drop).map_err(Into::into))
        } else {
            render::write_snapshot(&snapshot, now, &mut writer)
        };
        if let Err(error) = written {
            // The only way writing fails: the connection went away mid-body.
            tracing::debug!(%error, "scrape ended before its body was sent");
        }
    });
    let chunks = futures::stream::poll_fn(move |context| receiver.poll_recv(context));
    let mut response = (
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        Body::from_stream(chunks),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Sends everything written as one chunk to the response body; fails once the body is
/// dropped (the client went away), which stops the renderer.
struct ChannelWriter {
    sender: mpsc::Sender<Result<Bytes, io::Error>>,
}

impl io::Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        self.sender
            .blocking_send(Ok(Bytes::copy_from_slice(bytes)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "scraper went away"))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use http_body_util::BodyExt as _;
    use time::macros::datetime;

    use super::*;
    use crate::metrics::render::tests::bulk_endpoints;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
        headers
    }

    #[test]
    fn gzip_is_chosen_only_when_accepted_with_a_positive_quality() {
        assert!(accepts_gzip(&accept("gzip")));
        assert!(accepts_gzip(&accept("identity, GZIP;q=0.5")));
        assert!(accepts_gzip(&accept("br;q=1.0, gzip")));
        assert!(!accepts_gzip(&accept("gzip;q=0")));
        assert!(!accepts_gzip(&accept("identity")));
        assert!(!accepts_gzip(&accept("x-gzip-like")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    fn thousand_endpoints() -> Snapshot {
        Snapshot::with_endpoints(bulk_endpoints(1000))
    }

    async fn body_of(response: Response) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn a_gzip_scrape_decompresses_to_the_plain_body() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let snapshot = thousand_endpoints();
        let copy = snapshot.clone();
        let plain = stream_body(move || copy, now, false);
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let plain = body_of(plain).await;
        assert_eq!(
            plain,
            render::render_snapshot(&snapshot, now)
                .unwrap()
                .into_bytes()
        );

        let copy = snapshot.clone();
        let gzipped = stream_body(move || copy, now, true);
        assert_eq!(gzipped.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(gzipped.headers()[header::CONTENT_TYPE], TEXT_FORMAT);
        let compressed = body_of(gzipped).await;
        assert!(compressed.len() * 10 < plain.len(), "{}", compressed.len());
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, plain);
    }
}
