//! What the CA's answers said besides their bodies (its clock, Retry-After, the Location
//! of a new order), handed to the ACME operation that made the requests and to no other.
//!
//! instant-acme sits between the order code and [`super::InstrumentedClient`], so these
//! facts cannot ride back on its return values. Instead each operation runs inside
//! [`recorded`], which collects the facts of the requests sent while it is polled: two
//! renewals sharing one client never see each other's answers.

use std::cell::RefCell;
use std::future::Future;

use time::OffsetDateTime;

/// The facts of one request's answer (after retries), or of every request of one
/// operation merged in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ResponseFacts {
    /// CA time minus local time in seconds, from the last `Date` header.
    pub(crate) clock_skew: Option<f64>,
    /// When the CA asked to be left alone until, from the `Retry-After` of a final error
    /// answer.
    pub(crate) retry_after: Option<OffsetDateTime>,
    /// The `Location` of a newOrder answer: the order the CA created, even when
    /// instant-acme then refuses the answer.
    pub(crate) new_order_location: Option<String>,
}

impl ResponseFacts {
    /// Folds the facts of a later answer into these: what it says wins, what it leaves
    /// out keeps the earlier value.
    fn absorb(&mut self, later: &ResponseFacts) {
        if later.clock_skew.is_some() {
            self.clock_skew = later.clock_skew;
        }
        if later.retry_after.is_some() {
            self.retry_after = later.retry_after;
        }
        if later.new_order_location.is_some() {
            self.new_order_location
                .clone_from(&later.new_order_location);
        }
    }
}

tokio::task_local! {
    /// The facts collected for the operation being polled, if it runs inside [`recorded`].
    static RECORDING: RefCell<ResponseFacts>;
}

/// Runs `operation` and returns its output with the facts of every request it sent. A
/// recorded operation inside another one also reports to the outer one.
pub(crate) async fn recorded<F: Future>(operation: F) -> (F::Output, ResponseFacts) {
    // Boxed: an ACME operation is a large future, and nesting it inline in every caller's
    // future overflows a test thread's stack in debug builds.
    let (output, facts) = RECORDING
        .scope(
            RefCell::new(ResponseFacts::default()),
            Box::pin(async {
                let output = operation.await;
                (output, RECORDING.with(RefCell::take))
            }),
        )
        .await;
    deliver(&facts);
    (output, facts)
}

/// Hands the facts of one answer to the operation being polled; outside [`recorded`]
/// nobody asked for them and they are dropped.
pub(crate) fn deliver(facts: &ResponseFacts) {
    // `try_with` fails only outside a recording scope.
    let _ = RECORDING.try_with(|recording| recording.borrow_mut().absorb(facts));
}
