//! The network client under [`super::InstrumentedClient`]: hyper over rustls, with every
//! response body capped at [`MAX_BODY_BYTES`] while it streams in, so a CA (or whatever
//! answers in its name) cannot make certinel buffer an unbounded answer.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::Request;
use http_body_util::{LengthLimitError, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::Connect;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

/// The most bytes certinel reads from one ACME response body. Directory, order, problem
/// and authorization documents are a few KiB; a PEM chain of three certificates is under
/// 10 KiB, so 1 MiB leaves room for any honest CA.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A response body larger than [`MAX_BODY_BYTES`]; nothing of it is used.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{url}: the response body exceeds {limit} bytes; refused without reading further")]
pub struct BodyTooLarge {
    url: String,
    limit: usize,
}

impl BodyTooLarge {
    pub(crate) fn new(url: &str, limit: usize) -> Self {
        Self {
            url: url.to_owned(),
            limit,
        }
    }
}

/// A hyper client whose response bodies fail with [`LengthLimitError`] once they grow past
/// `limit` bytes.
pub(super) struct CappedClient<C> {
    inner: HyperClient<C, BodyWrapper<Bytes>>,
    limit: usize,
}

impl<C> CappedClient<C> {
    pub(super) fn new(inner: HyperClient<C, BodyWrapper<Bytes>>, limit: usize) -> Self {
        Self { inner, limit }
    }
}

impl<C: Connect + Clone + Send + Sync + 'static> HttpClient for CappedClient<C> {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let sent = self.inner.request(request);
        let limit = self.limit;
        Box::pin(async move {
            let response = sent
                .await
                .map_err(|error| instant_acme::Error::Other(Box::new(error)))?;
            Ok(BytesResponse::from(
                response.map(|body| Limited::new(body, limit)),
            ))
        })
    }
}

/// Whether reading a body failed because it passed the cap.
pub(super) fn is_over_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<LengthLimitError>() {
            return true;
        }
        current = error.source();
    }
    false
}
