//! The cap on concurrent orders at one CA: a renewal holds an [`OrderPermit`] of its CA
//! directory's [`OrderSlots`] while it talks to the CA about its order (new-order,
//! authorizations, challenges, finalize, download), and waits for one when all are taken.
//!
//! A real CA rate-limits, and a small one (Pebble) wedges when a thousand orders arrive in
//! the same second; with the cap, a fleet that falls due at once reaches the CA a few
//! orders at a time. Waiting is not a failure and has no deadline: the CA's own poll
//! timeout starts once the permit is held.
//!
//! [`OrderLimits`] keeps one [`OrderSlots`] per directory URL and cap for the whole
//! process, so every renewer (each configuration generation of the service, each CA of a
//! failover list) shares the cap of a directory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::acme::AcmeObserver;

/// Every CA directory's [`OrderSlots`], shared by the renewers of one process. Cloning
/// shares the same slots.
#[derive(Clone, Default)]
pub struct OrderLimits {
    by_directory: Arc<Mutex<HashMap<PoolKey, Arc<OrderSlots>>>>,
}

/// A pool's directory URL and cap.
type PoolKey = (String, usize);

/// The order slots of one CA directory: at most `cap` permits out at once.
#[derive(Debug)]
pub struct OrderSlots {
    cap: usize,
    semaphore: Arc<Semaphore>,
    in_flight: AtomicUsize,
    waiting: AtomicUsize,
}

/// Who is asking for a slot, for the log line and the gauges: the certificate, the CA's
/// configured name and the observer that renders `certinel_acme_orders_*{ca}`.
pub struct SlotRequest<'a> {
    /// The certificate whose renewal wants to order.
    pub certificate: &'a str,
    /// The CA's configured name (`acme` or a `[ca.NAME]`).
    pub ca: &'a str,
    /// Told the slots' counts whenever they change.
    pub observer: Arc<dyn AcmeObserver>,
}

/// One order slot, held while a renewal talks to the CA about its order; dropping it
/// frees the slot for the next waiting renewal.
pub struct OrderPermit {
    slots: Arc<OrderSlots>,
    ca: String,
    observer: Arc<dyn AcmeObserver>,
    _permit: OwnedSemaphorePermit,
}

impl OrderLimits {
    /// The slots of `directory` with at most `cap` permits. Another `cap` (a reloaded
    /// configuration, a second CA table on the same directory) gets slots of its own;
    /// renewals that hold a permit of the old ones finish under it.
    pub fn slots(&self, directory: &str, cap: usize) -> Arc<OrderSlots> {
        // Every update below leaves the map consistent, so a poisoned lock's map is sound.
        let mut by_directory = self
            .by_directory
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        by_directory
            .entry((directory.to_owned(), cap))
            .or_insert_with(|| Arc::new(OrderSlots::new(cap)))
            .clone()
    }
}

impl std::fmt::Debug for OrderLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderLimits").finish_non_exhaustive()
    }
}

impl OrderSlots {
    /// Slots for at most `cap` concurrent orders (at least one).
    pub fn new(cap: usize) -> OrderSlots {
        let cap = cap.max(1);
        OrderSlots {
            cap,
            semaphore: Arc::new(Semaphore::new(cap)),
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The most orders held at once.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// How many permits are held now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// How many renewals wait for a permit now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// A permit, at once when a slot is free; otherwise logs that `request.certificate`
    /// waits for `request.ca` and waits as long as it takes.
    pub async fn acquire(self: &Arc<Self>, request: SlotRequest<'_>) -> OrderPermit {
        let permit = match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracing::info!(
                    certificate = request.certificate,
                    ca = request.ca,
                    in_flight = self.in_flight(),
                    cap = self.cap,
                    "every order slot at the CA is taken; waiting for one"
                );
                let waiting = Waiting::enter(self, &request);
                // Invariant: the semaphore is never closed, so acquiring only ever waits.
                let permit = self
                    .semaphore
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("order slots are never closed");
                drop(waiting);
                permit
            }
        };
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.report(request.ca, request.observer.as_ref());
        OrderPermit {
            slots: self.clone(),
            ca: request.ca.to_owned(),
            observer: request.observer,
            _permit: permit,
        }
    }

    fn report(&self, ca: &str, observer: &dyn AcmeObserver) {
        observer.order_slots_changed(ca, self.in_flight(), self.waiting());
    }
}

impl Drop for OrderPermit {
    fn drop(&mut self) {
        self.slots.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.slots.report(&self.ca, self.observer.as_ref());
    }
}

/// Counts one waiting renewal until dropped, also when the wait is cancelled.
struct Waiting<'a> {
    slots: &'a OrderSlots,
    ca: &'a str,
    observer: &'a dyn AcmeObserver,
}

impl<'a> Waiting<'a> {
    fn enter(slots: &'a OrderSlots, request: &'a SlotRequest<'_>) -> Waiting<'a> {
        slots.waiting.fetch_add(1, Ordering::SeqCst);
        slots.report(request.ca, request.observer.as_ref());
        Waiting {
            slots,
            ca: request.ca,
            observer: request.observer.as_ref(),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.slots.waiting.fetch_sub(1, Ordering::SeqCst);
        self.slots.report(self.ca, self.observer);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Records the last counts reported per CA.
    #[derive(Default)]
    struct Counts(Mutex<Vec<(String, usize, usize)>>);

    impl AcmeObserver for Counts {
        fn request_done(&self, _endpoint: &'static str, _status: &str, _elapsed: Duration) {}

        fn order_slots_changed(&self, ca: &str, in_flight: usize, waiting: usize) {
            self.0
                .lock()
                .unwrap()
                .push((ca.to_owned(), in_flight, waiting));
        }
    }

    fn request(observer: &Arc<Counts>) -> SlotRequest<'static> {
        SlotRequest {
            certificate: "web",
            ca: "acme",
            observer: observer.clone(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_beyond_the_cap_waits_until_a_permit_is_dropped() {
        let observer = Arc::new(Counts::default());
        let slots = Arc::new(OrderSlots::new(2));
        let first = slots.acquire(request(&observer)).await;
        let _second = slots.acquire(request(&observer)).await;
        assert_eq!(slots.in_flight(), 2);

        let waiter = tokio::spawn({
            let slots = slots.clone();
            let observer = observer.clone();
            async move { slots.acquire(request(&observer)).await }
        });
        tokio::task::yield_now().await;
        assert_eq!((slots.in_flight(), slots.waiting()), (2, 1));
        assert!(!waiter.is_finished());

        drop(first);
        let _third = waiter.await.unwrap();
        assert_eq!((slots.in_flight(), slots.waiting()), (2, 0));
        let reported = observer.0.lock().unwrap().clone();
        assert!(
            reported
                .iter()
                .all(|(ca, in_flight, _)| ca == "acme" && *in_flight <= 2)
        );
        assert_eq!(reported.last(), Some(&("acme".to_owned(), 2, 0)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_is_no_longer_counted_as_waiting() {
        let observer = Arc::new(Counts::default());
        let slots = Arc::new(OrderSlots::new(1));
        let _held = slots.acquire(request(&observer)).await;
        let waited =
            tokio::time::timeout(Duration::from_secs(1), slots.acquire(request(&observer))).await;
        assert!(waited.is_err());
        assert_eq!((slots.in_flight(), slots.waiting()), (1, 0));
    }

    #[test]
    fn renewers_share_a_directorys_slots_until_its_cap_changes() {
        let limits = OrderLimits::default();
        let first = limits.slots("https://ca/dir", 8);
        assert!(Arc::ptr_eq(
            &first,
            &limits.clone().slots("https://ca/dir", 8)
        ));
        assert!(!Arc::ptr_eq(&first, &limits.slots("https://other/dir", 8)));
        let reloaded = limits.slots("https://ca/dir", 4);
        assert_eq!(reloaded.cap(), 4);
        assert!(!Arc::ptr_eq(&first, &reloaded));
    }

    #[test]
    fn two_cas_on_one_directory_with_different_caps_each_keep_their_slots() {
        // `[acme]` and a `[ca.NAME]` with the same directory (two accounts at one CA),
        // asking in turn: each keeps one pool instead of getting a fresh, empty one on
        // every call, which would cap nothing.
        let limits = OrderLimits::default();
        let eight = limits.slots("https://ca/dir", 8);
        let four = limits.slots("https://ca/dir", 4);
        assert!(Arc::ptr_eq(&eight, &limits.slots("https://ca/dir", 8)));
        assert!(Arc::ptr_eq(&four, &limits.slots("https://ca/dir", 4)));
    }
}
