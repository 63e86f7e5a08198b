//! The key layout of one certinel installation in etcd, under its prefix `P/`: pure names,
//! no I/O.
//!
//! ```text
//! P/certs/NAME/links          {current, previous}: both pointers in one value
//! P/certs/NAME/v/v0001        one version: metadata, certificate, chain, sealed key
//! P/certs/NAME/inflight       the renewal in flight (its saved key sealed)
//! P/certs/NAME/schedule       the schedule document (crate::schedule::state)
//! P/certs/NAME/rollout/vNNNN/MEMBER  each replica's report on rolling out a version
//! P/locks/NAME                the renewal lock: the holder's member name, on its lease
//! P/audit/TIME-MEMBER-SEQ     one audit event per key, ordered by key
//! P/accounts/account-HASH     ACME credentials (sealed), `.rollover`, `.adopting`,
//!                             `.deactivated` beside them
//! P/dry-run/accounts/...      the dry runs' ACME credentials
//! ```

use time::OffsetDateTime;

use crate::cert::is_safe_name;
use crate::store::StoreError;
use crate::store::backend::ReportOn;
use crate::store::metadata::VersionId;

/// The names of every key of one installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    /// The prefix, ending with `/`.
    prefix: String,
}

impl Keys {
    /// The layout under `prefix` (a `/` is appended when missing).
    pub(crate) fn new(prefix: &str) -> Keys {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix }
    }

    /// `P/certs/NAME/`, after checking that `name` is a safe single path component (the
    /// same rule as the filesystem store, so both accept the same names).
    pub(crate) fn cert(&self, name: &str) -> Result<String, StoreError> {
        if !is_safe_name(name) {
            return Err(StoreError::InvalidName(name.to_owned()));
        }
        Ok(format!("{}certs/{name}/", self.prefix))
    }

    /// `P/certs/NAME/links`.
    pub(crate) fn links(&self, name: &str) -> Result<String, StoreError> {
        Ok(format!("{}links", self.cert(name)?))
    }

    /// `P/certs/NAME/v/`, the prefix of every version.
    pub(crate) fn versions(&self, name: &str) -> Result<String, StoreError> {
        Ok(format!("{}v/", self.cert(name)?))
    }

    /// `P/certs/NAME/v/vNNNN`.
    pub(crate) fn version(&self, name: &str, version: VersionId) -> Result<String, StoreError> {
        Ok(format!("{}{version}", self.versions(name)?))
    }

    /// `P/certs/NAME/inflight`.
    pub(crate) fn inflight(&self, name: &str) -> Result<String, StoreError> {
        Ok(format!("{}inflight", self.cert(name)?))
    }

    /// `P/certs/NAME/schedule`.
    pub(crate) fn schedule(&self, name: &str) -> Result<String, StoreError> {
        Ok(format!("{}schedule", self.cert(name)?))
    }

    /// `P/certs/NAME/rollout/vNNNN/`, the prefix of every replica's report on a version.
    pub(crate) fn rollout_reports(
        &self,
        name: &str,
        version: VersionId,
    ) -> Result<String, StoreError> {
        Ok(format!("{}rollout/{version}/", self.cert(name)?))
    }

    /// `P/certs/NAME/rollout/vNNNN/MEMBER` (a member name follows the certificate names'
    /// rule).
    pub(crate) fn rollout_report(&self, on: ReportOn<'_>) -> Result<String, StoreError> {
        if !is_safe_name(on.member) {
            return Err(StoreError::InvalidName(on.member.to_owned()));
        }
        Ok(format!(
            "{}{}",
            self.rollout_reports(on.name, on.version)?,
            on.member
        ))
    }

    /// `P/locks/NAME`.
    pub(crate) fn lock(&self, name: &str) -> Result<String, StoreError> {
        self.cert(name)?;
        Ok(format!("{}locks/{name}", self.prefix))
    }

    /// `P/audit/`, the prefix of every audit event.
    pub(crate) fn audit(&self) -> String {
        format!("{}audit/", self.prefix)
    }

    /// `P/audit/TIME-MEMBER-SEQ`: keys sort by the event's time (UTC, fixed width), then
    /// by member and by the member's own counter.
    pub(crate) fn audit_event(&self, time: OffsetDateTime, member: &str, seq: u64) -> String {
        let utc = time.to_offset(time::UtcOffset::UTC);
        format!(
            "{}{:04}{:02}{:02}T{:02}{:02}{:02}.{:09}Z-{member}-{seq:012}",
            self.audit(),
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second(),
            utc.nanosecond()
        )
    }

    /// `P/accounts/` or `P/dry-run/accounts/`.
    pub(crate) fn accounts(&self, dry_run: bool) -> String {
        if dry_run {
            format!("{}dry-run/accounts/", self.prefix)
        } else {
            format!("{}accounts/", self.prefix)
        }
    }

    /// The installation's prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// The version named by the last segment of a version key, if it is one.
pub(crate) fn version_of_key(key: &[u8]) -> Option<VersionId> {
    let key = std::str::from_utf8(key).ok()?;
    key.rsplit('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn every_key_lives_under_the_prefix_and_names_are_checked() {
        let keys = Keys::new("/certinel");
        assert_eq!(keys.links("web").unwrap(), "/certinel/certs/web/links");
        assert_eq!(
            keys.version("web", VersionId(3)).unwrap(),
            "/certinel/certs/web/v/v0003"
        );
        assert_eq!(keys.lock("web").unwrap(), "/certinel/locks/web");
        assert_eq!(keys.accounts(true), "/certinel/dry-run/accounts/");
        for bad in ["", "..", ".hidden", "a/b", "a b"] {
            assert!(matches!(keys.lock(bad), Err(StoreError::InvalidName(_))));
        }
        assert_eq!(
            version_of_key(b"/certinel/certs/web/v/v0012"),
            Some(VersionId(12))
        );
    }

    #[test]
    fn audit_keys_sort_by_time_then_member_then_sequence() {
        let keys = Keys::new("/p/");
        let early = keys.audit_event(datetime!(2025-01-01 9:59:59.5 UTC), "zz", 9);
        let later = keys.audit_event(datetime!(2025-01-01 10:00 UTC), "aa", 1);
        let later_again = keys.audit_event(datetime!(2025-01-01 10:00 UTC), "aa", 2);
        let offset = keys.audit_event(datetime!(2025-01-01 11:00 +01:00), "ab", 0);
        assert_eq!(early, "/p/audit/20250101T095959.500000000Z-zz-000000000009");
        assert!(early < later && later < later_again && later_again < offset);
    }
}
