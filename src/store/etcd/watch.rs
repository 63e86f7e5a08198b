//! One etcd watch per process over every certificate's `links`, in-flight record and lock
//! ([`Store::watch`](crate::store::Store::watch)): the renewal tasks wait on it instead of
//! reading etcd every second each.
//!
//! The watch runs on the store's own runtime (`bridge.rs`), never on the service's workers.
//! It reads the watched range once at a revision R (in pages), publishes what it found,
//! then watches from R+1. When the watch fails, is cancelled (its revision compacted) or
//! ends, it reads the range again and notifies **every** certificate, changed or not: a
//! change made while nobody watched is never missed. As a cheap safety net it also reads
//! the range again every few minutes (jittered per process), then notifying only the
//! certificates whose view differs.
//!
//! The view is one `tokio::sync::watch` channel per certificate; the task starts with the
//! first subscription, so a CLI command that never watches never pays for the read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use rand::Rng;
use tokio::sync::watch;

use crate::store::backend::Watched;
use crate::store::etcd::bridge::REQUEST_TIMEOUT;
use crate::store::etcd::keys::Keys;
use crate::store::etcd::view::{self, classify};

/// How many keys one page of the range read asks for (versions and rollout reports are in
/// the range too, so a page stays far below gRPC's message limit).
const PAGE: i64 = 200;

/// How often the whole view is read again when the watch has not failed (plus up to a
/// fifth of it, drawn per process so replicas do not read at once).
const RESYNC: Duration = Duration::from_secs(300);

/// The first wait after a failed read or watch; doubled per failure up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(250);
/// The longest wait between two tries while etcd cannot be read.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Every certificate's view and its subscribers, shared by the store and its watch task.
#[derive(Debug)]
pub(crate) struct Hub {
    keys: Keys,
    member: String,
    channels: Mutex<HashMap<String, watch::Sender<Watched>>>,
    started: Once,
}

/// Why the watch of one round ended.
enum Ended {
    /// It failed, was cancelled or closed: events may have been missed.
    Lost,
    /// The periodic read is due.
    Resync,
}

impl Hub {
    /// An empty view of the certificates under `keys`, for replica `member`.
    pub(crate) fn new(keys: Keys, member: String) -> Hub {
        Hub {
            keys,
            member,
            channels: Mutex::new(HashMap::new()),
            started: Once::new(),
        }
    }

    /// A receiver of `name`'s view; the first call starts the watch on `runtime` with
    /// `client`.
    pub(crate) fn subscribe(
        self: &Arc<Hub>,
        name: &str,
        runtime: &tokio::runtime::Handle,
        client: &etcd_client::Client,
    ) -> watch::Receiver<Watched> {
        self.started.call_once(|| {
            runtime.spawn(follow_changes(Arc::clone(self), client.clone()));
        });
        let mut channels = self.lock();
        channels
            .entry(name.to_owned())
            .or_insert_with(|| watch::Sender::new(Watched::default()))
            .subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Watched>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one watched key's new value (`None`: deleted); notifies only on a change.
    fn apply(&self, key: &str, value: Option<&[u8]>) {
        let Some((name, field)) = classify(&self.keys, key) else {
            return;
        };
        let mut channels = self.lock();
        let sender = channels
            .entry(name.to_owned())
            .or_insert_with(|| watch::Sender::new(Watched::default()));
        sender.send_if_modified(|watched| {
            let after = view::apply(*watched, field, value, &self.member);
            let changed = after != *watched;
            *watched = after;
            changed
        });
    }

    /// Replaces every view with `fresh` (a certificate missing from it has nothing in
    /// etcd); notifies every certificate when `notify_all`, else only the changed ones.
    fn replace(&self, mut fresh: HashMap<String, Watched>, notify_all: bool) {
        let mut channels = self.lock();
        for (name, sender) in channels.iter() {
            let after = fresh.remove(name).unwrap_or_default();
            sender.send_if_modified(|watched| {
                let changed = after != *watched;
                *watched = after;
                changed || notify_all
            });
        }
        for (name, watched) in fresh {
            channels.insert(name, watch::Sender::new(watched));
        }
    }
}

/// The watch task: read, watch, and read again whenever the watch may have missed
/// something; ends with the store's runtime.
async fn follow_changes(hub: Arc<Hub>, client: etcd_client::Client) {
    let (start, end) = watched_range(&hub.keys);
    let resync_every = RESYNC + RESYNC.mul_f64(rand::rng().random_range(0.0..0.2));
    let mut notify_all = true;
    let mut retry = RETRY_MIN;
    loop {
        let revision = match read_range(&client, &start, &end).await {
            Ok((entries, revision)) => {
                let pairs = entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
                hub.replace(view::snapshot(&hub.keys, &hub.member, pairs), notify_all);
                revision
            }
            Err(error) => {
                tracing::warn!(prefix = hub.keys.prefix(), %error, "watching certificates: reading etcd failed; trying again");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                notify_all = true;
                continue;
            }
        };
        let watching = tokio::time::Instant::now();
        let ended = watch_from(&hub, &client, (&start, &end), revision + 1, resync_every).await;
        // A watch that lived a while was not failing: the next failure starts over short.
        if watching.elapsed() > RETRY_MAX {
            retry = RETRY_MIN;
        }
        notify_all = match ended {
            Ended::Resync => false,
            Ended::Lost => {
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                true
            }
        };
    }
}

/// `[P/certs/, P/locks0)`: the certificates' keys, the (small) dry-run accounts and the
/// locks, and nothing else (`0` follows `/`).
fn watched_range(keys: &Keys) -> (String, String) {
    let prefix = keys.prefix();
    (format!("{prefix}certs/"), format!("{prefix}locks0"))
}

/// Every key and value in `[start, end)` at one revision, read in pages, and that revision.
async fn read_range(
    client: &etcd_client::Client,
    start: &str,
    end: &str,
) -> Result<(Vec<(String, Vec<u8>)>, i64), etcd_client::Error> {
    let mut client = client.clone();
    let mut entries = Vec::new();
    let mut from = start.as_bytes().to_vec();
    let mut revision = 0;
    loop {
        let mut options = GetOptions::new().with_range(end).with_limit(PAGE);
        if revision != 0 {
            options = options.with_revision(revision);
        }
        let page = tokio::time::timeout(REQUEST_TIMEOUT, client.get(from.clone(), Some(options)))
            .await
            .map_err(|_| etcd_client::Error::WatchError("range read timed out".to_owned()))??;
        if revision == 0 {
            revision = page.header().map(|header| header.revision()).unwrap_or(0);
        }
        let more = page.more();
        for kv in page.kvs() {
            entries.push((
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.value().to_vec(),
            ));
        }
        match page.kvs().last() {
            Some(last) if more => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((entries, revision)),
        }
    }
}

/// Applies every event of a watch on `range` from `revision` until it is lost or
/// `resync_every` has passed.
async fn watch_from(
    hub: &Hub,
    client: &etcd_client::Client,
    (start, end): (&str, &str),
    revision: i64,
    resync_every: Duration,
) -> Ended {
    let options = WatchOptions::new()
        .with_range(end)
        .with_start_revision(revision);
    let mut client = client.clone();
    let mut stream = match client.watch(start, Some(options)).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(prefix = hub.keys.prefix(), %error, "watching certificates: the watch did not start");
            return Ended::Lost;
        }
    };
    let resync = tokio::time::sleep(resync_every);
    tokio::pin!(resync);
    loop {
        let message = tokio::select! {
            () = &mut resync => return Ended::Resync,
            message = stream.message() => message,
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => {
                tracing::warn!(
                    prefix = hub.keys.prefix(),
                    "watching certificates: etcd closed the watch"
                );
                return Ended::Lost;
            }
            Err(error) => {
                tracing::warn!(prefix = hub.keys.prefix(), %error, "watching certificates: the watch failed");
                return Ended::Lost;
            }
        };
        if response.canceled() {
            tracing::warn!(
                prefix = hub.keys.prefix(),
                compact_revision = response.compact_revision(),
                reason = response.cancel_reason(),
                "watching certificates: etcd cancelled the watch; reading everything again"
            );
            return Ended::Lost;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key());
            match event.event_type() {
                EventType::Put => hub.apply(&key, Some(kv.value())),
                EventType::Delete => hub.apply(&key, None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::backend::LockHolder;
    use crate::store::metadata::VersionId;

    use super::*;

    fn hub() -> Hub {
        Hub::new(Keys::new("/p/"), "r1".to_owned())
    }

    fn receiver(hub: &Hub, name: &str) -> watch::Receiver<Watched> {
        hub.lock()
            .entry(name.to_owned())
            .or_insert_with(|| watch::Sender::new(Watched::default()))
            .subscribe()
    }

    #[test]
    fn an_event_notifies_only_its_certificate_and_only_when_it_changes_the_view() {
        let hub = hub();
        let (mut a, mut b) = (receiver(&hub, "a"), receiver(&hub, "b"));
        hub.apply("/p/locks/a", Some(b"r2"));
        assert!(a.has_changed().unwrap() && !b.has_changed().unwrap());
        assert_eq!(a.borrow_and_update().lock, LockHolder::OtherMember);
        hub.apply("/p/locks/a", Some(b"r2"));
        hub.apply("/p/certs/a/schedule", Some(b"{}"));
        assert!(!a.has_changed().unwrap());
        hub.apply(
            "/p/certs/b/links",
            Some(br#"{"current":"v0003","previous":null}"#),
        );
        assert_eq!(b.borrow_and_update().current, Some(VersionId(3)));
    }

    #[test]
    fn a_read_after_a_lost_watch_notifies_everyone_a_periodic_one_only_the_changed() {
        let hub = hub();
        let (mut a, b) = (receiver(&hub, "a"), receiver(&hub, "b"));
        let fresh = HashMap::from([(
            "a".to_owned(),
            Watched {
                inflight: true,
                ..Watched::default()
            },
        )]);
        hub.replace(fresh.clone(), false);
        assert!(a.has_changed().unwrap() && !b.has_changed().unwrap());
        assert!(a.borrow_and_update().inflight);
        hub.replace(fresh, true);
        assert!(a.has_changed().unwrap() && b.has_changed().unwrap());
        // A certificate etcd no longer has anything of is emptied.
        hub.replace(HashMap::new(), false);
        assert!(!a.borrow_and_update().inflight);
    }

    #[test]
    fn the_watched_range_holds_certificates_and_locks_but_not_members_or_audit() {
        let (start, end) = watched_range(&Keys::new("/p/"));
        for inside in ["/p/certs/a/links", "/p/locks/a", "/p/locks/zzz"] {
            assert!(
                start.as_str() <= inside && inside < end.as_str(),
                "{inside}"
            );
        }
        for outside in [
            "/p/members/r1",
            "/p/audit/x",
            "/p/accounts/a",
            "/p/locksmith",
        ] {
            assert!(
                !(start.as_str() <= outside && outside < end.as_str()),
                "{outside}"
            );
        }
    }
}
