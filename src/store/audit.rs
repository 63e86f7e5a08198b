//! The audit log `state_dir/audit.jsonl`: one JSON line per renewal step or rollback,
//! appended with `O_APPEND` and fsynced (in groups: `journal.rs`). Never holds a private
//! key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::StoreError;
use crate::store::journal::Journal;
use crate::store::metadata::VersionId;

/// A renewal step as written to the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A renewal started.
    Begin,
    /// An ACME order was placed or resumed.
    Order,
    /// The new version was stored, not live.
    Pending,
    /// `current` was switched and deploy commands ran.
    Deployed,
    /// The `verify` endpoints were probed for the new serial.
    Served,
    /// The live files were checked.
    Verified,
    /// The renewal completed.
    Done,
    /// `current` was switched back to `previous`.
    Rollback,
    /// A renewal was given up (after a failure or on recovery).
    Abandon,
    /// A restart picked up an interrupted renewal.
    Recover,
    /// The current certificate was revoked at the CA.
    Revoke,
    /// The ACME account's key was rolled over (RFC 8555 §7.3.5).
    AccountKeyRollover,
    /// The ACME account was deactivated at the CA (RFC 8555 §7.3.6).
    AccountDeactivate,
    /// The renewal stopped: a write was rejected because another replica holds the
    /// certificate's lock now (a shared store's fencing).
    Fenced,
}

/// Whether a step worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It worked.
    Ok,
    /// It failed; see `error`.
    Error,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Certificate name.
    pub certificate: String,
    /// The version concerned, when there is one.
    pub version: Option<VersionId>,
    /// The certificate serial, when known.
    pub serial: Option<String>,
    /// The step.
    pub step: Step,
    /// Whether it worked.
    pub outcome: Outcome,
    /// The error, when it failed. Private key blocks are redacted before writing.
    pub error: Option<String>,
    /// What a successful step found, when it says more than the step itself (which
    /// endpoint served which serial); for an account change, also when it failed, the CA
    /// it was asked of. Left out of the line when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEvent {
    /// `step` of `certificate` at `time` with its `outcome`, and nothing more known: no
    /// version, serial, error or detail (set those fields where there are).
    pub fn new(
        time: OffsetDateTime,
        certificate: &str,
        step: Step,
        outcome: Outcome,
    ) -> AuditEvent {
        AuditEvent {
            time,
            certificate: certificate.to_owned(),
            version: None,
            serial: None,
            step,
            outcome,
            error: None,
            detail: None,
        }
    }
}

/// The audit log read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditHistory {
    /// Every line that is an event, in file order.
    pub events: Vec<AuditEvent>,
    /// The numbers (from 1) of the lines that are not: a torn last line after a crash, or
    /// a line written by a version of certinel that knew other steps.
    pub unreadable_lines: Vec<usize>,
}

impl AuditHistory {
    /// Reads the log at `path`; a log not written yet is empty.
    pub fn read(path: &Path) -> Result<AuditHistory, StoreError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(StoreError::io("read", path, e)),
        };
        Ok(AuditHistory::parse(&text))
    }

    /// The events of a log's text, one JSON object per line.
    pub fn parse(text: &str) -> AuditHistory {
        let mut history = AuditHistory::default();
        for (index, line) in text.lines().enumerate() {
            match serde_json::from_str(line) {
                Ok(event) => history.events.push(event),
                Err(_) => history.unreadable_lines.push(index + 1),
            }
        }
        history
    }
}

/// An append-only audit log file. Appends from every task and thread of the process are
/// queued in one order and committed in groups ([`Journal`]): each returns once its line is
/// written and fsynced.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    journal: Arc<Journal>,
}

impl AuditLog {
    /// Opens (creating with mode 0600 if needed) the log at `path` for appending.
    pub fn open(path: &Path) -> Result<AuditLog, StoreError> {
        let journal = Journal::for_path(path);
        journal.check_open()?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            journal,
        })
    }

    /// Appends `event` as one line, durable when this returns.
    pub fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.journal.append(|| self.line(event))
    }

    /// Appends `event` stamped with `stamp()`, read while every other append of this
    /// process waits to queue: lines from concurrent renewals land in the order of their
    /// times.
    pub fn append_stamped(
        &self,
        mut event: AuditEvent,
        stamp: &dyn Fn() -> OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.journal.append(|| {
            event.time = stamp();
            self.line(&event)
        })
    }

    fn line(&self, event: &AuditEvent) -> Result<String, StoreError> {
        audit_line(event).map_err(|source| StoreError::Json {
            path: self.path.clone(),
            source,
        })
    }
}

/// The JSON line for `event`, newline-terminated, with private keys redacted from every
/// text field.
pub fn audit_line(event: &AuditEvent) -> Result<String, serde_json::Error> {
    let redacted = AuditEvent {
        certificate: redact_private_keys(&event.certificate),
        serial: event.serial.as_deref().map(redact_private_keys),
        error: event.error.as_deref().map(redact_private_keys),
        detail: event.detail.as_deref().map(redact_private_keys),
        ..event.clone()
    };
    let mut line = serde_json::to_string(&redacted)?;
    line.push('\n');
    Ok(line)
}

/// Re-exported where the audit log has always offered it.
pub use crate::redact::redact_private_keys;

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::store::testing::key_pem_of;

    fn event(error: Option<String>) -> AuditEvent {
        AuditEvent {
            time: time::macros::datetime!(2025-03-01 12:00 UTC),
            certificate: "www".into(),
            version: Some(VersionId(3)),
            serial: Some("0abc".into()),
            step: Step::Deployed,
            outcome: if error.is_some() {
                Outcome::Error
            } else {
                Outcome::Ok
            },
            error,
            detail: None,
        }
    }

    #[test]
    fn each_append_is_one_json_line_with_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.append(&event(None)).unwrap();
        log.append(&event(Some("deploy command exited 1".into())))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            r#"{"time":"2025-03-01T12:00:00Z","certificate":"www","version":"v0003","serial":"0abc","step":"deployed","outcome":"ok","error":null}"#
        );
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["outcome"], "error");
        assert_eq!(second["error"], "deploy command exited 1");
    }

    #[test]
    fn every_line_written_reads_back_as_the_same_event_and_a_torn_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let with_detail = AuditEvent {
            detail: Some("203.0.113.7:443 serves 0abc".into()),
            ..event(None)
        };
        log.append(&with_detail).unwrap();
        log.append(&event(Some("deploy command exited 1".into())))
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"time\":\"2025-03-01T12:00:00Z\",\"certif")
            .unwrap();
        let history = AuditHistory::read(&path).unwrap();
        assert_eq!(
            history.events,
            [with_detail, event(Some("deploy command exited 1".into()))]
        );
        assert_eq!(history.unreadable_lines, [3]);
        assert_eq!(
            AuditHistory::read(&dir.path().join("none.jsonl")).unwrap(),
            AuditHistory::default()
        );
    }

    #[test]
    fn reopening_appends_instead_of_truncating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        AuditLog::open(&path).unwrap().append(&event(None)).unwrap();
        AuditLog::open(&path).unwrap().append(&event(None)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[test]
    fn a_log_moved_away_by_a_rotation_is_never_written_again_and_the_next_event_starts_a_new_one() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let log = AuditLog::open(&path).unwrap();
        log.append(&event(None)).unwrap();
        // What logrotate does without copytruncate or create (packaging/debian).
        std::fs::rename(&path, &rotated).unwrap();
        log.append(&event(Some("deploy command exited 1".into())))
            .unwrap();
        assert_eq!(AuditHistory::read(&rotated).unwrap().events, [event(None)]);
        assert_eq!(
            AuditHistory::read(&path).unwrap().events,
            [event(Some("deploy command exited 1".into()))]
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_private_key_inside_an_error_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let key = key_pem_of(&rcgen::PKCS_ECDSA_P256_SHA256);
        let key_body = key.lines().nth(1).unwrap().to_string();
        let error = format!("hook printed {key} and failed");
        AuditLog::open(&path)
            .unwrap()
            .append(&event(Some(error)))
            .unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(!written.contains(&key_body), "{written}");
        assert!(!written.contains("PRIVATE KEY"), "{written}");
        assert!(
            written.contains(r#""error":"hook printed [redacted private key]\n and failed""#),
            "{written}"
        );
    }

    #[test]
    fn redaction_covers_rsa_and_ec_labels_and_a_missing_end_line() {
        assert_eq!(
            redact_private_keys(
                "a -----BEGIN RSA PRIVATE KEY-----\nAAA\n-----END RSA PRIVATE KEY----- b"
            ),
            "a [redacted private key] b"
        );
        assert_eq!(
            redact_private_keys("x -----BEGIN EC PRIVATE KEY-----\nBBB (truncated"),
            "x [redacted private key]"
        );
        let cert = "-----BEGIN CERTIFICATE-----\nCCC\n-----END CERTIFICATE-----";
        assert_eq!(redact_private_keys(cert), cert);
    }
}
