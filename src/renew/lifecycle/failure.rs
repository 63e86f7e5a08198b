//! What a failed renewal leaves in the schedule state: the message, the CA's Retry-After
//! and the identifiers whose authorization failed (for the hourly limit).

use time::OffsetDateTime;

use super::Run;
use crate::cert::Identifier;
use crate::renew::RenewError;
use crate::schedule::history::{self as schedule_state, ScheduleState};
use crate::store::StoreError;

/// The facts of one failure the planner needs later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailureRecord {
    /// The CA asked not to be asked again before this moment.
    pub(crate) retry_after: Option<OffsetDateTime>,
    /// Identifiers that count against the failed-authorization limit.
    pub(crate) failed_identifiers: Vec<String>,
}

/// What `error` means for the schedule of a certificate for `identifiers`.
pub(crate) fn failure_record(error: &RenewError, identifiers: &[Identifier]) -> FailureRecord {
    let RenewError::Acme { source, .. } = error else {
        return FailureRecord {
            retry_after: None,
            failed_identifiers: Vec::new(),
        };
    };
    // Only authorizations the CA marked invalid count against its limit; a CA that could
    // not be reached, or that timed out, failed nobody's validation.
    let failed_identifiers = source
        .invalid_authorizations()
        .iter()
        .filter(|failed| {
            identifiers
                .iter()
                .any(|wanted| wanted.to_string().eq_ignore_ascii_case(failed))
        })
        .cloned()
        .collect();
    FailureRecord {
        retry_after: source.retry_after(),
        failed_identifiers,
    }
}

impl Run<'_> {
    /// Counts `error` as a failed renewal in the schedule state, then hands it back.
    pub(crate) fn count_failure(&self, error: RenewError) -> RenewError {
        let record = failure_record(&error, &self.certificate.identifiers);
        let message = format!("{} ({}): {error}", error.stage(), error.problem());
        let saved = self.update_schedule(|state, now| {
            state.record_failure(
                now,
                &message,
                record.retry_after,
                &record.failed_identifiers,
            )
        });
        if let Err(e) = saved {
            tracing::warn!(error = %e, "cannot record the failure in the schedule state");
        }
        tracing::warn!(
            stage = error.stage(),
            problem = error.problem(),
            retry_after = ?record.retry_after,
            "{error}"
        );
        error
    }

    /// Loads the schedule state, applies `change` at the moment it happens (the run's
    /// clock), saves it atomically.
    pub(crate) fn update_schedule(
        &self,
        change: impl FnOnce(&mut ScheduleState, OffsetDateTime),
    ) -> Result<(), StoreError> {
        let mut state = schedule_state::load_from(&*self.store, self.name())?;
        change(&mut state, self.event_time());
        schedule_state::save_to(&*self.store, self.name(), &state)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::acme::{AcmeError, Stage as AcmeStage};

    fn acme(source: AcmeError) -> RenewError {
        RenewError::Acme {
            name: "api".into(),
            source,
        }
    }

    fn names() -> Vec<Identifier> {
        vec![
            Identifier::parse("a.example"),
            Identifier::parse("b.example"),
        ]
    }

    #[test]
    fn a_rate_limit_with_retry_after_reaches_the_schedule() {
        let until = datetime!(2026-01-01 13:00 UTC);
        let error = acme(AcmeError::Server {
            stage: AcmeStage::Order,
            problem: "rateLimited".into(),
            detail: "too many certificates".into(),
            retry_after: Some(until),
            invalid_authorizations: Vec::new(),
        });
        let record = failure_record(&error, &names());
        assert_eq!(record.retry_after, Some(until));
        assert!(record.failed_identifiers.is_empty());
    }

    fn challenge_problem(invalid: &[&str]) -> RenewError {
        acme(AcmeError::Server {
            stage: AcmeStage::Challenge,
            problem: "unauthorized".into(),
            detail: "b.example: wrong answer".into(),
            retry_after: None,
            invalid_authorizations: invalid.iter().map(|name| name.to_string()).collect(),
        })
    }

    #[test]
    fn only_identifiers_whose_authorization_became_invalid_are_counted() {
        let record = failure_record(&challenge_problem(&["b.example"]), &names());
        assert_eq!(record.failed_identifiers, ["b.example"]);
    }

    #[test]
    fn a_challenge_problem_about_no_authorization_counts_nobody() {
        let record = failure_record(&challenge_problem(&[]), &names());
        assert!(record.failed_identifiers.is_empty());
    }

    #[test]
    fn network_failures_and_timeouts_during_validation_count_nobody() {
        let timeout = acme(AcmeError::Timeout {
            stage: AcmeStage::Challenge,
            waited: std::time::Duration::from_secs(300),
        });
        assert!(
            failure_record(&timeout, &names())
                .failed_identifiers
                .is_empty()
        );
        let network = acme(AcmeError::Responder {
            kind: "http-01",
            location: "127.0.0.1:80".into(),
            source: std::io::Error::other("address in use"),
        });
        assert!(
            failure_record(&network, &names())
                .failed_identifiers
                .is_empty()
        );
    }

    #[test]
    fn failures_without_retry_after_leave_none() {
        let error = acme(AcmeError::Timeout {
            stage: AcmeStage::Finalize,
            waited: std::time::Duration::from_secs(300),
        });
        assert_eq!(failure_record(&error, &names()).retry_after, None);
        let store = RenewError::NoAcme;
        assert_eq!(failure_record(&store, &names()).retry_after, None);
    }
}
