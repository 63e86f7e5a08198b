//! Property tests of what certinel itself reads from a CA's HTTP answers: any status,
//! `Retry-After` and `Date` header and any body (directory documents with odd
//! `renewalInfo` and `meta.profiles`, problem documents, garbage) go through the retrying
//! client and the problem conversion without a panic and within the case time limit.

use http::HeaderValue;
use http_body_util::Full;
use certinel_testkit::fuzz;
use proptest::prelude::*;

use super::*;
use crate::acme::{AcmeError, Stage};

/// One answer, given to every attempt.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    retry_after: Option<HeaderValue>,
    date: Option<HeaderValue>,
    body: Vec<u8>,
}

/// Answers every request with the same [`Answer`].
struct Always(Answer);

impl HttpClient for Always {
    fn request(
        &self,
        _request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let answer = self.0.clone();
        Box::pin(async move {
            let mut response = http::Response::builder().status(answer.status);
            if let Some(value) = answer.retry_after {
                response = response.header(http::header::RETRY_AFTER, value);
            }
            if let Some(value) = answer.date {
                response = response.header(http::header::DATE, value);
            }
            let response = response
                .body(Full::new(Bytes::from(answer.body)))
                .map_err(|error| instant_acme::Error::Other(Box::new(error)))?;
            Ok(BytesResponse::from(response))
        })
    }
}

/// Sends one request for `url` to a client whose CA always gives `answer`, then reads
/// everything certinel keeps from it.
fn exchange(answer: Answer, url: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        let policy = RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
        };
        let client = InstrumentedClient::wrap(
            Box::new(Always(answer)),
            "https://ca.test/dir",
            policy,
            Arc::new(NoopObserver),
        );
        let request = Request::builder()
            .uri(url)
            .body(BodyWrapper::from(b"{}".to_vec()))
            .expect("a request");
        let (answer, facts) = exchange::recorded(client.request(request)).await;
        if let Ok(mut response) = answer {
            let body = response.body.into_bytes().await.unwrap_or_default();
            if let Ok(problem) = serde_json::from_slice::<instant_acme::Problem>(&body) {
                let error = AcmeError::from_problem(Stage::Order, &problem)
                    .with_retry_after(facts.retry_after);
                assert!(!error.to_string().is_empty());
                let _ = (error.problem(), error.retry_after());
            }
        }
        let _ = (client.directory_facts(), client.clock_skew());
    });
}

fn retry_after() -> impl Strategy<Value = Option<HeaderValue>> {
    let text = prop_oneof![
        any::<u64>().prop_map(|seconds| seconds.to_string()),
        (0u64..100_000_000_000_000).prop_map(|seconds| seconds.to_string()),
        "[0-9]{1,40}",
        prop::sample::select(fuzz::HTTP_DATES).prop_map(str::to_owned),
        "[ -~]{0,40}",
    ];
    prop::option::of(
        text.prop_filter_map("a header value", |text| HeaderValue::from_str(&text).ok()),
    )
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => fuzz::json_value().prop_map(|value| {
            let directory = serde_json::json!({
                "newNonce": "https://ca.test/nonce",
                "newOrder": value.clone(),
                "renewalInfo": value.clone(),
                "meta": {"profiles": value.clone()},
            });
            directory.to_string().into_bytes()
        }),
        2 => fuzz::json_value().prop_map(|value| {
            serde_json::json!({
                "type": value.clone(),
                "detail": value.clone(),
                "subproblems": [{"type": "urn:ietf:params:acme:error:dns", "detail": value.clone(),
                                 "identifier": value}],
            })
            .to_string()
            .into_bytes()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        prop_oneof![Just(200u16), Just(429), Just(503), Just(400), 100u16..600],
        retry_after(),
        prop::option::of(
            prop::sample::select(fuzz::HTTP_DATES)
                .prop_filter_map("a header value", |text| HeaderValue::from_str(text).ok()),
        ),
        body(),
    )
        .prop_map(|(status, retry_after, date, body)| Answer {
            status,
            retry_after,
            date,
            body,
        })
}

proptest! {
    #![proptest_config(fuzz::config(1_500))]

    #[test]
    fn ca_answers_of_any_shape_never_panic_the_http_layer(
        answer in answer(),
        url in prop::sample::select(&["https://ca.test/dir", "https://ca.test/acme/order/1"][..]),
    ) {
        fuzz::within_time_limit("a CA exchange", || exchange(answer, url));
    }
}

/// Found by the property above: a 429 whose `Retry-After` lies beyond the year 9999
/// overflowed the moment it was turned into, and the panic took the renewal task down.
#[test]
fn a_retry_after_beyond_the_last_representable_date_does_not_panic() {
    exchange(
        Answer {
            status: 429,
            retry_after: Some(HeaderValue::from_static("999999999999")),
            date: None,
            body: Vec::new(),
        },
        "https://ca.test/acme/order/1",
    );
}
