//! Whether and when a certificate with no renewal in flight renews: the jitter draw, the
//! CA's renewal information (when to ask, what its answer means), the plan, the CA's limits
//! and a parked version to roll out again. Pure, like the rest of the state machine.

use time::OffsetDateTime;

use super::{Action, Observed};
use crate::renew::decision::{applicable_ari, decide};
use crate::renew::lifecycle::reusable_version;
use crate::schedule::ari::{AriAnswer, AriFetchError, AriState, absorb};
use crate::schedule::plan::{Decision, ca_gate};
use crate::store::VersionId;
use crate::store::metadata::parse_key_type;

/// When the certificate should be looked at again after a renewal that ended: the planned
/// renewal (after a failure, the backoff), or the next ARI poll when that comes first.
pub(crate) fn next_wake_up(observed: &Observed<'_>) -> OffsetDateTime {
    let decision = decision(observed);
    next_check(&decision, observed)
}

/// No renewal in flight: with `--force`, renew unless the CA's limits forbid it; otherwise
/// draw the jitter once per certificate, ask the CA when a poll is due, then plan.
pub(super) fn when_idle(observed: &Observed<'_>) -> Action {
    if observed.force {
        return ca_refusal(observed).unwrap_or_else(|| renew_now(observed));
    }
    let plan = observed.plan;
    match &plan.current {
        Some(meta)
            if plan
                .schedule
                .jitter
                .as_ref()
                .is_none_or(|draw| draw.serial != meta.serial) =>
        {
            Action::SaveJitter {
                serial: meta.serial.clone(),
                value: observed.draw,
            }
        }
        _ => ask_ca_or_decide(observed),
    }
}

/// Asks the CA for renewal information about the current certificate when a poll is due,
/// else plans.
pub(super) fn ask_ca_or_decide(observed: &Observed<'_>) -> Action {
    let (Some(directory), Some(meta)) = (observed.directory, &observed.plan.current) else {
        return decide_when(observed);
    };
    let previous = observed.plan.schedule.ari.as_ref();
    if meta.source != directory {
        // Imported, or issued by another CA: this CA cannot know it.
        return match previous {
            Some(_) => Action::SaveRenewalInfo { state: None },
            None => decide_when(observed),
        };
    }
    let Some(cert_id) = observed.current_ari_id else {
        return decide_when(observed);
    };
    // RFC 9773 section 4.3: no renewal information about an expired certificate.
    if meta.not_after <= observed.now || !AriState::poll_due(previous, cert_id, observed.now) {
        return decide_when(observed);
    }
    Action::PollRenewalInfo {
        cert_id: cert_id.to_owned(),
    }
}

/// Sleep until the planned renewal, or renew now.
pub(super) fn decide_when(observed: &Observed<'_>) -> Action {
    let decision = decision(observed);
    if decision.renew_at > observed.now {
        Action::Sleep {
            renew_at: decision.renew_at,
            reason: decision.reason,
            rule: decision.rule,
            next_check: next_check(&decision, observed),
        }
    } else {
        renew_now(observed)
    }
}

/// A due renewal: roll a parked version out again (every order spends the CA's
/// duplicate-certificate limit), or order. The account comes first, so an unreachable CA
/// leaves no in-flight record behind.
pub(super) fn renew_now(observed: &Observed<'_>) -> Action {
    match parked_version(observed) {
        Some(version) => Action::Reroll { version },
        None => Action::LoadAccount,
    }
}

pub(super) fn parked_version(observed: &Observed<'_>) -> Option<VersionId> {
    // A key algorithm without a stored key type matches no stored version.
    let wanted_key_type = parse_key_type(observed.certificate.key.as_str())?;
    reusable_version(
        observed.versions,
        observed.disk.current,
        observed.now,
        &observed.certificate.dns_names(),
        wanted_key_type,
    )
}

/// The CA's Retry-After or failed-authorization limit, when either forbids an attempt now.
pub(super) fn ca_refusal(observed: &Observed<'_>) -> Option<Action> {
    let gate = ca_gate(
        observed.now,
        &observed.plan.schedule,
        &observed.certificate.dns_names(),
    )?;
    Some(Action::Refuse {
        until: gate.until,
        reason: gate.reason,
    })
}

pub(super) fn decision(observed: &Observed<'_>) -> Decision {
    let plan = observed.plan;
    decide(
        observed.certificate,
        plan,
        observed.now,
        plan.stored_jitter(),
        observed.backoff_base,
    )
}

/// The planned renewal, or the next ARI poll about the current certificate when that comes
/// first.
pub(super) fn next_check(decision: &Decision, observed: &Observed<'_>) -> OffsetDateTime {
    let plan = observed.plan;
    let ari = plan
        .current
        .as_ref()
        .and_then(|meta| applicable_ari(&plan.schedule, meta));
    match ari {
        Some(ari) => decision.renew_at.min(ari.next_poll),
        None => decision.renew_at,
    }
}

/// The state the CA's renewal information `answer` about `cert_id` leaves, to persist.
pub(super) fn absorb_answer(
    observed: &Observed<'_>,
    cert_id: &str,
    answer: &Result<AriAnswer, AriFetchError>,
    explanation_url: &Option<String>,
) -> Action {
    let previous = observed.plan.schedule.ari.as_ref();
    let mut state = absorb(
        previous,
        cert_id,
        answer.clone(),
        observed.now,
        observed.draw,
    );
    if answer.is_ok() {
        state.explanation_url = explanation_url.clone();
    }
    Action::SaveRenewalInfo { state: Some(state) }
}
