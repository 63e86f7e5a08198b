//! The integration tests, in one binary: real servers on loopback, fixtures as files.

/// `certinel account rollover|deactivate` against a real Pebble: old keys and deactivated
/// accounts are refused by the CA, the stored credentials follow, both are audited;
/// `--ca NAME` changes that CA's account only.
mod account;
/// The ACME client against a real Pebble: challenges, key types, accounts, EAB, failures.
mod acme;
/// The module boundaries ARCHITECTURE.md promises, checked on `src/`: the allowed import
/// graph between top-level modules, pure files that never read the clock, randomness,
/// files or sockets, and metric names spelled only in `metrics::names`.
mod architecture;
/// ACME Renewal Information and profiles through a front that adds them to Pebble: windows
/// move the schedule, `replaces` is sent, a profile is sent or refused, polls back off.
mod ari;
/// The audit log stamps each renewal step with the moment it happened (injected clock).
mod audit_time;
/// The CAA preflight (RFC 8659, RFC 8657) against a real Knot serving CAA records and a
/// real Pebble: allowed names issue, forbidden ones fail before any order.
mod caa;
/// `certinel check` as a user runs it: fixture files and live servers, output and exit codes.
mod check_cli;
/// Replicas carrying different `[[certificate]]` lists on one etcd: a rollout waits only
/// for the replicas that carry the certificate; the others get none of its files.
mod cluster_carriers;
/// `certinel cluster keygen` and `config check` with `[cluster]`: the built binary, a key
/// file that is 0600 and never overwritten, a summary without the password.
mod cluster_cli;
/// `cluster::connect` against a real etcd: plain, TLS with client certificates, user and
/// password; unreachable and refusing clusters are one clear error, quickly.
mod cluster_connect;
/// `config/prometheus/prometheus-cluster.yml` in a real Prometheus: `hashmod` sends each
/// `/probe` target to exactly one of two `certinel run` replicas (counted at the target).
mod cluster_hashmod;
/// `cluster::membership` against a real three-member etcd: who is listed, leaving, lease
/// expiry, losing and regaining quorum.
mod cluster_membership;
/// Three `certinel run` replicas over a real three-member etcd and Pebble: one order for the
/// fleet, a fleet-wide rollback, a killed holder's renewal finished elsewhere, a paused
/// holder fenced.
mod cluster_replicas;
/// `certinel run` with `[cluster]` against a real three-member etcd and Pebble: issued
/// into etcd, materialised locally, renewed with one etcd member down.
mod cluster_run;
/// Sharded scanning: 300 endpoints over three `certinel run` replicas with `[cluster]` on a
/// real etcd, each in exactly one replica's `/metrics`; a killed replica's share moves.
mod cluster_sharding;
/// The one etcd watch per replica: the store's view follows other replicas and etcd
/// restarts; a replica reads (almost) nothing at rest; the lock-ownership metric.
mod cluster_watch;
/// Shared helpers: test PKI, loopback TLS and plaintext servers, PostgreSQL, Pebble, Knot.
mod common;
/// Configuration files: bad fixtures and their one-line messages, good fixtures and the model.
mod config_files;
/// The CRL watch: a test CA's CRL served on 127.0.0.1, endpoints whose leaves point at it;
/// revocation between two scans, a forged CRL (an error, not a verdict), one fetch for many.
mod crl;
/// The Debian package installed with dpkg on this machine (root only, refuses when certinel
/// is installed): files, user, unit hardening score, man pages, completions, purge.
mod debian_package;
/// dns-01 against a real Knot DNS that Pebble also asks: RFC 2136 with TSIG and an exec
/// hook, wildcard and multi-name certificates, CNAME delegation, cleanup, wrong keys.
mod dns01;
/// The dns-01 exec hook runs like a deploy command: leftovers and hung hooks are killed with
/// their process group, and the cleanup always runs.
mod dns01_exec;
/// dns-01 propagation to every authoritative server: two Knots serve one zone, the second
/// lags, and certinel tells the CA nothing until the second answers too.
mod dns01_propagation;
/// `[[endpoint_source]]` Prometheus file_sd files in a running `certinel run`: targets and
/// their labels appear, a rewritten file adds a target, a broken file keeps its last good
/// targets probed and says so in `/metrics`.
mod endpoint_sources;
/// Fleet-wide rollout against a real Pebble: the renewing replica waits for every replica's
/// report, a failed deploy on another replica rolls the fleet back, a silent replica keeps it.
mod fleet_rollout;
/// What hooks see of certinel's environment: a minimal one, plus what the certificate's
/// `env` and `env_passthrough` (and the exec challenge's) add.
mod hook_env;
/// The exporter's HTTP connection limits: header and idle timeouts, `max_connections`, and
/// a SIGTERM that does not wait for slow clients.
mod http_limits;
/// `certinel import certbot|lego` after Debian's real certbot and lego issued from Pebble:
/// adopted as v0001 with the other client's account, shown by status, renewed into v0002.
mod import;
/// `certinel inventory` against a real Pebble: the rotation checklist of a renewed certificate.
mod inventory;
/// A managed certificate found revoked on its CRL (adopted from the in-test CA) is renewed
/// from Pebble at once by `certinel run`.
mod managed_revocation;
/// The mass-revocation drill: twenty certificates behind the ARI front whose windows move
/// into the past at once all renew with `replaces`, without a storm of failed requests.
mod mass_revocation;
/// A 2,000-SAN certificate scraped from a real `certinel run`: label values stay under the
/// cap and promtool accepts the page.
mod metric_labels;
/// The shipped alert rules, Prometheus config and Grafana dashboard: promtool, lint, and a
/// real Prometheus scraping a real certinel.
mod monitoring;
/// Multi-CA failover against two Pebbles: hand-over within an attempt, the return to the
/// first CA, a missing profile, and `replaces` that never crosses CAs.
mod multi_ca;
/// `max_concurrent_orders` against a real Pebble: six due certificates under a cap of two
/// never have more than two orders open at the CA, and all six issue.
mod order_cap;
/// What a package ships beside the binary: bash, zsh and fish completions (a real bash
/// loads them), man pages (a real groff renders them without warnings), `--version`.
mod packaging;
/// Probing live TLS endpoints end to end: handshake, chain facts, verification, failures.
mod probe;
/// Property tests: parsers and readers on arbitrary and damaged input never panic, hang or
/// buffer without bound (`CERTINEL_FUZZ_CASES` sets the case count; `scripts/fuzz` runs long).
mod properties;
/// The renewer against a real Pebble: `certinel renew/status/rollback`, renewal windows,
/// deploy rollbacks, dry runs, resuming interrupted renewals, an unreachable CA.
mod renew;
/// `kill -9` at every step boundary, inside a deploy command and at random moments of
/// `certinel run` (the chaos test): no second order, nothing left behind.
mod renew_crash;
/// The CA's limits (Retry-After, failed authorizations) hold `renew --force` and `revoke`.
mod renew_gates;
/// The renewal and ACME metrics of an in-process `certinel run` against a real Pebble:
/// renewals, a hung CA and recovery, certificate tasks following reloads.
mod renew_metrics;
/// A download that fails after finalization is resumed with the saved key, not reordered.
mod renew_resume;
/// Failed rollouts: a first version whose deploy failed is retried after the backoff, and
/// every automatic rollback redeploys the version it restores.
mod renew_rollout;
/// Renewals inside `certinel run` and the per-certificate lock, against a real Pebble.
mod renew_service;
/// `certinel revoke` against a real Pebble: revoked at the CA, replaced with a new key, audited.
mod revoke;
/// Served-certificate verification with a real nginx and Pebble: a reloading deploy passes,
/// one that does not reload is rolled back (or kept), and the drift check reports it.
mod served;
/// After a failed served check: parked versions rolled out again without a new order, and
/// no rollback for an endpoint that does not answer.
mod served_retry;
/// `certinel run`: the real binary's /metrics, /probe, reloads and shutdown.
mod service;
/// STARTTLS upgrades for eight protocols against scripted servers and a real PostgreSQL.
mod starttls;
/// What every store does: one behaviour function over `&dyn Store`, run by `store_etcd`
/// on the filesystem store and the etcd store.
mod store_behaviour;
/// The etcd store against a real etcd: the store behaviour shared with the filesystem
/// store, secrets sealed, fenced writes of a holder whose lease expired.
mod store_etcd;
/// The etcd store's audit retention against a real etcd: old events deleted by one range
/// request, recent ones kept, no reads on append.
mod store_etcd_audit;
/// Renewals through the etcd store against a real Pebble: no secret in plaintext after an
/// issuance; a replica whose lock was taken over mid-renewal is fenced and audits it.
mod store_etcd_renewal;
/// `certinel run` under systemd's `Type=notify`: READY once serving, RELOADING/READY around
/// a SIGHUP reload, STOPPING on SIGTERM, against a fake `$NOTIFY_SOCKET`.
mod systemd_notify;
/// A certificate with control characters in its names: `certinel check` escapes them in
/// the table and the log lines, from a file and from a live server.
mod terminal_injection;
