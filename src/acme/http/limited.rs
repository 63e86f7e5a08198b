//! The network client under the retrying layer: hyper, with every response body capped at
//! [`MAX_RESPONSE_BODY`] bytes, so a CA (or anything answering in its place) streaming an
//! endless body cannot make certinel buffer it.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::Request;
use http_body_util::Limited;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

/// The largest response body read from a CA. Real answers (directories, orders with many
/// identifiers, certificate chains) are a few KiB to a few tens of KiB.
pub(crate) const MAX_RESPONSE_BODY: usize = 1024 * 1024;

/// hyper with capped response bodies; reading a longer body fails with
/// [`BodyTooLarge`].
pub(crate) struct LimitedClient<C> {
    inner: HyperClient<C, BodyWrapper<Bytes>>,
}

/// A response body longer than [`MAX_RESPONSE_BODY`].
#[derive(Debug, thiserror::Error)]
#[error("the response body is larger than {MAX_RESPONSE_BODY} bytes")]
pub(crate) struct BodyTooLarge;

impl LimitedClient<HttpsConnector<HttpConnector>> {
    /// Wraps `inner`.
    pub(crate) fn new(
        inner: HyperClient<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    ) -> Self {
        LimitedClient { inner }
    }
}

impl<C: Connect + Clone + Send + Sync + 'static> HttpClient for LimitedClient<C> {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.inner.request(request);
        Box::pin(async move {
            let response = response
                .await
                .map_err(|error| instant_acme::Error::Other(Box::new(error)))?;
            let limited = response.map(|body| Limited::new(body, MAX_RESPONSE_BODY));
            Ok(BytesResponse::from(limited))
        })
    }
}

/// Names a body that hit the cap plainly instead of as http-body's "length limit exceeded".
pub(crate) fn explain_body_error(
    error: Box<dyn std::error::Error + Send + Sync>,
) -> Box<dyn std::error::Error + Send + Sync> {
    if error.is::<http_body_util::LengthLimitError>() {
        Box::new(BodyTooLarge)
    } else {
        error
    }
}
