//! One certificate, start to finish: key and CSR, order, challenges, finalization and
//! download. Each step maps its failures to the [`Stage`] it belongs to.

use std::borrow::Cow;
use std::collections::HashSet;

use instant_acme::{
    AuthorizationStatus, CertificateIdentifier, ChallengeStatus, NewOrder, Order, OrderStatus,
};
use tokio::time::Instant;

use crate::acme::error::{BAD_NONCE_ROUNDS, is_bad_nonce, retry_bad_nonce};
use crate::acme::http::exchange::recorded;
use crate::acme::keys::{KeyAndCsr, generate_key_and_csr};
use crate::acme::retry::poll_interval;
use crate::acme::solvers::Responder;
use crate::acme::{AcmeAccount, AcmeError, IssueRequest, Issued, Stage};
use crate::cert::Identifier;

/// Obtains a certificate for `request.names` with a new key of type `request.key`.
///
/// Authorizations the CA already considers valid are skipped. The challenge responder
/// runs only while this call validates and is gone when it returns, success or not.
pub async fn issue(account: &AcmeAccount, request: &IssueRequest) -> Result<Issued, AcmeError> {
    with_retry_after(issue_order(account, request)).await
}

async fn issue_order(account: &AcmeAccount, request: &IssueRequest) -> Result<Issued, AcmeError> {
    needs_a_name(request)?;
    // RSA-4096 takes seconds to generate: keep it off the async workers. Generating before
    // the order also means a key failure never leaves a pending order behind.
    let algorithm = request.key;
    let names = request.names.clone();
    let generated = tokio::task::spawn_blocking(move || generate_key_and_csr(algorithm, &names))
        .await
        .map_err(|join_error| AcmeError::Key {
            algorithm: algorithm.as_str(),
            message: join_error.to_string(),
        })??;

    crate::acme::preflight::check_caa(account, request).await?;
    let mut order = new_order(account, request).await?;
    let order_url = order.url().to_owned();
    tracing::debug!(order = %order_url, names = ?request.names, "created ACME order");

    let mut responder = Responder::start(&request.challenge).await?;
    let validated = validate(account, &mut order, &mut responder).await;
    responder.shutdown().await;
    validated?;

    let cert_chain_pem = finalize(account, &mut order, &generated).await?;
    Ok(Issued {
        key_pem: generated.key_pem,
        cert_chain_pem,
        order_url,
    })
}

/// Places the order for `request.names` without answering it and returns its URL, which
/// the caller records so that a restart resumes this order instead of placing another.
pub async fn place_order(
    account: &AcmeAccount,
    request: &IssueRequest,
) -> Result<String, AcmeError> {
    let allowed = caa_preflight(account, request).await?;
    place_allowed_order(account, request, &allowed).await
}

/// The CAA preflight of `request` passed (or was skipped): proof for
/// [`place_allowed_order`].
#[derive(Debug)]
pub struct CaaAllowed(());

/// Runs the CAA preflight of `request` on its own, so a caller can do it before it waits
/// for an order slot and then place the order with [`place_allowed_order`].
pub async fn caa_preflight(
    account: &AcmeAccount,
    request: &IssueRequest,
) -> Result<CaaAllowed, AcmeError> {
    needs_a_name(request)?;
    crate::acme::preflight::check_caa(account, request).await?;
    Ok(CaaAllowed(()))
}

/// [`place_order`] for a request whose names passed [`caa_preflight`] already.
pub async fn place_allowed_order(
    account: &AcmeAccount,
    request: &IssueRequest,
    _allowed: &CaaAllowed,
) -> Result<String, AcmeError> {
    with_retry_after(async {
        let order = new_order(account, request).await?;
        tracing::debug!(order = %order.url(), names = ?request.names, "created ACME order");
        Ok(order.url().to_owned())
    })
    .await
}

/// Refuses a request without names before anything is sent to the CA.
fn needs_a_name(request: &IssueRequest) -> Result<(), AcmeError> {
    if request.names.is_empty() {
        return Err(AcmeError::Invalid {
            stage: Stage::Order,
            message: "a certificate needs at least one name".into(),
        });
    }
    Ok(())
}

/// Runs one ACME operation and gives its failure the `Retry-After` the CA sent with an
/// answer to this operation's own requests.
pub(super) async fn with_retry_after<T>(
    operation: impl Future<Output = Result<T, AcmeError>>,
) -> Result<T, AcmeError> {
    let (result, facts) = recorded(operation).await;
    result.map_err(|error| error.with_retry_after(facts.retry_after))
}

/// Creates the order (with profile and ARI `replaces` when asked for); the caller ran the
/// CAA preflight.
async fn new_order(account: &AcmeAccount, request: &IssueRequest) -> Result<Order, AcmeError> {
    let identifiers: Vec<instant_acme::Identifier> = request
        .names
        .iter()
        .map(|name| match name {
            Identifier::Dns(dns) => instant_acme::Identifier::Dns(dns.clone()),
            Identifier::Ip(ip) => instant_acme::Identifier::Ip(*ip),
        })
        .collect();
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(profile) = &request.profile {
        new_order = new_order.profile(profile);
    }
    if let Some(replaces) = &request.replaces {
        new_order = new_order.replaces(parse_ari_id(replaces)?);
    }
    let (created, facts) =
        recorded(async { retry_bad_nonce!(account.acme().new_order(&new_order).await) }).await;
    match created {
        Ok(order) => Ok(order),
        Err(error) if request.replaces.is_some() && is_replaces_mismatch(&error) => {
            adopt_order_without_replaces(account, error, facts.new_order_location).await
        }
        Err(error) => Err(AcmeError::from_acme(Stage::Order, error)),
    }
}

/// Whether instant-acme refused a created order because the CA did not echo `replaces`.
fn is_replaces_mismatch(error: &instant_acme::Error) -> bool {
    matches!(error, instant_acme::Error::Other(_))
        && error.to_string().contains("replaces field mismatch")
}

/// The CA created the order but did not echo `replaces` (RFC 9773 section 5 says it
/// must): ordering again would leave that order orphaned and count twice against rate
/// limits. The created order is used as it is, and this CA gets no more `replaces` while
/// the process runs.
async fn adopt_order_without_replaces(
    account: &AcmeAccount,
    error: instant_acme::Error,
    created: Option<String>,
) -> Result<Order, AcmeError> {
    account.stop_sending_replaces();
    let Some(url) = created else {
        return Err(AcmeError::from_acme(Stage::Order, error));
    };
    tracing::warn!(
        order = %url,
        %error,
        "the CA created the order without echoing replaces: using that order, and sending no replaces to this CA until restart"
    );
    retry_bad_nonce!(account.acme().order(url.clone()).await)
        .map_err(|error| AcmeError::from_acme(Stage::Order, error))
}

/// The two walks over the order's authorizations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    /// Publish the answer to every pending authorization.
    Publish,
    /// Tell the CA, once the responder says every answer can be seen.
    Announce,
}

/// Answers every pending authorization and waits until the order is ready.
///
/// All answers are published before the first is announced, so dns-01 records propagate
/// together instead of one after the other.
pub(super) async fn validate(
    account: &AcmeAccount,
    order: &mut Order,
    responder: &mut Responder,
) -> Result<(), AcmeError> {
    let challenge_type = responder.challenge_type();
    let mut published: HashSet<String> = HashSet::new();
    let mut announced: HashSet<String> = HashSet::new();
    let mut restarts = 0;
    for walk in [Walk::Publish, Walk::Announce] {
        if walk == Walk::Announce {
            responder.ready().await?;
        }
        // A failed authorization fetch is consumed by instant-acme's stream and stays
        // unfetched in the order, so after a rejected nonce the walk starts over, skipping
        // what is done.
        'walk: loop {
            let mut authorizations = order.authorizations();
            while let Some(authorization) = authorizations.next().await {
                let mut authorization = match authorization {
                    Ok(authorization) => authorization,
                    Err(instant_acme::Error::Api(problem))
                        if is_bad_nonce(&problem) && restarts < BAD_NONCE_ROUNDS =>
                    {
                        restarts += 1;
                        continue 'walk;
                    }
                    Err(error) => return Err(AcmeError::from_acme(Stage::Order, error)),
                };
                let url = authorization.url().to_owned();
                let identifier = own_identifier(authorization.identifier().identifier);
                match (walk, authorization.status) {
                    (Walk::Publish, _) if published.contains(&url) => continue,
                    (Walk::Announce, _)
                        if !published.contains(&url) || announced.contains(&url) =>
                    {
                        continue;
                    }
                    (_, AuthorizationStatus::Valid) => continue,
                    (_, AuthorizationStatus::Pending) => {}
                    (_, other) => {
                        return Err(AcmeError::Protocol {
                            stage: Stage::Order,
                            message: format!("authorization for {identifier} is {other:?}"),
                        });
                    }
                }
                let Some(mut challenge) = authorization.challenge(challenge_type.clone()) else {
                    return Err(AcmeError::ChallengeNotOffered {
                        wanted: responder.kind(),
                        identifier: identifier.to_string(),
                    });
                };
                match walk {
                    Walk::Publish => {
                        let key_authorization = challenge.key_authorization();
                        responder
                            .add(&identifier, &challenge.token, &key_authorization)
                            .await?;
                        published.insert(url);
                    }
                    Walk::Announce => {
                        retry_bad_nonce!(challenge.set_ready().await)
                            .map_err(|error| AcmeError::from_acme(Stage::Challenge, error))?;
                        announced.insert(url);
                    }
                }
            }
            break;
        }
    }

    let status = poll_order(account, order, Stage::Challenge, |status| {
        matches!(status, OrderStatus::Ready | OrderStatus::Invalid)
    })
    .await?;
    if status == OrderStatus::Invalid {
        return Err(challenge_failure(order).await);
    }
    Ok(())
}

/// Finds out why validation failed: the first invalid challenge's problem, and every
/// identifier whose authorization became invalid (what the CA's failed-validation limit
/// counts).
async fn challenge_failure(order: &mut Order) -> AcmeError {
    let mut invalid = Vec::new();
    let mut first_problem: Option<(String, instant_acme::Problem)> = None;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let Ok(mut authorization) = authorization else {
            continue;
        };
        if authorization.refresh().await.is_err() {
            continue;
        }
        let identifier = authorization.identifier().to_string();
        if authorization.status == AuthorizationStatus::Invalid {
            invalid.push(identifier.to_ascii_lowercase());
        }
        if first_problem.is_none() {
            first_problem = authorization
                .challenges
                .iter()
                .filter(|challenge| challenge.status == ChallengeStatus::Invalid)
                .find_map(|challenge| challenge.error.clone())
                .map(|problem| (identifier, problem));
        }
    }
    authorization_failure(first_problem, invalid)
}

/// The error for a failed validation: the first challenge problem (its identifier put in
/// front of the detail), naming the identifiers whose authorization is invalid.
fn authorization_failure(
    first_problem: Option<(String, instant_acme::Problem)>,
    invalid: Vec<String>,
) -> AcmeError {
    let mut error = match first_problem {
        Some((identifier, problem)) => {
            let mut error = AcmeError::from_problem(Stage::Challenge, &problem);
            if let AcmeError::Server { detail, .. } = &mut error {
                *detail = format!("{identifier}: {detail}");
            }
            error
        }
        None => AcmeError::Server {
            stage: Stage::Challenge,
            problem: "unknown".into(),
            detail: "the order became invalid without a challenge error".into(),
            retry_after: None,
            invalid_authorizations: Vec::new(),
        },
    };
    if let AcmeError::Server {
        invalid_authorizations,
        ..
    } = &mut error
    {
        *invalid_authorizations = invalid;
    }
    error
}

/// Sends our CSR, waits for issuance and downloads the chain.
async fn finalize(
    account: &AcmeAccount,
    order: &mut Order,
    generated: &KeyAndCsr,
) -> Result<String, AcmeError> {
    send_csr(order, &generated.csr_der).await?;
    wait_and_download(account, order).await
}

/// Finalizes `order` with the CSR.
pub(super) async fn send_csr(order: &mut Order, csr_der: &[u8]) -> Result<(), AcmeError> {
    retry_bad_nonce!(order.finalize_csr(csr_der).await)
        .map_err(|error| AcmeError::from_acme(Stage::Finalize, error))?;
    Ok(())
}

/// Waits until a finalized `order` is valid and downloads its chain.
pub(super) async fn wait_and_download(
    account: &AcmeAccount,
    order: &mut Order,
) -> Result<String, AcmeError> {
    let status = poll_order(account, order, Stage::Finalize, |status| {
        matches!(status, OrderStatus::Valid | OrderStatus::Invalid)
    })
    .await?;
    if status == OrderStatus::Invalid {
        return Err(AcmeError::Protocol {
            stage: Stage::Finalize,
            message: "the order became invalid after finalization".into(),
        });
    }
    match retry_bad_nonce!(order.certificate().await) {
        Ok(Some(chain)) => Ok(chain),
        Ok(None) => Err(AcmeError::Protocol {
            stage: Stage::Download,
            message: "the order is valid but has no certificate".into(),
        }),
        Err(error) => Err(AcmeError::from_acme(Stage::Download, error)),
    }
}

/// Refreshes the order until `done(status)` or the poll timeout; an order error is
/// reported as the CA's problem.
async fn poll_order(
    account: &AcmeAccount,
    order: &mut Order,
    stage: Stage,
    done: impl Fn(OrderStatus) -> bool,
) -> Result<OrderStatus, AcmeError> {
    let policy = account.poll_policy();
    let started = Instant::now();
    let deadline = started + policy.timeout;
    let mut polls = 0;
    let mut state = order.state();
    loop {
        if let Some(problem) = &state.error {
            return Err(AcmeError::from_problem(stage, problem));
        }
        if done(state.status) {
            return Ok(state.status);
        }
        let wait = poll_interval(policy, polls);
        if Instant::now() + wait > deadline {
            return Err(AcmeError::Timeout {
                stage,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(wait).await;
        polls += 1;
        state = match retry_bad_nonce!(order.refresh().await) {
            Ok(state) => state,
            Err(error) => return Err(AcmeError::from_acme(stage, error)),
        };
    }
}

fn own_identifier(identifier: &instant_acme::Identifier) -> Identifier {
    match identifier {
        instant_acme::Identifier::Ip(ip) => Identifier::Ip(*ip),
        other => Identifier::Dns(other.authorized(false).to_string()),
    }
}

/// Splits an ARI certificate identifier `base64url(AKI).base64url(serial)`.
fn parse_ari_id(text: &str) -> Result<CertificateIdentifier<'_>, AcmeError> {
    let invalid = || AcmeError::Invalid {
        stage: Stage::Order,
        message: format!("{text:?} is not an ARI certificate identifier (AKI.serial)"),
    };
    let (aki, serial) = text.split_once('.').ok_or_else(invalid)?;
    if aki.is_empty() || serial.is_empty() || serial.contains('.') {
        return Err(invalid());
    }
    Ok(CertificateIdentifier {
        authority_key_identifier: Cow::Borrowed(aki),
        serial: Cow::Borrowed(serial),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ari_id_needs_exactly_two_non_empty_parts() {
        let id = parse_ari_id("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").unwrap();
        assert_eq!(id.authority_key_identifier, "aYhba4dGQEHhs3uEe6CuLN4ByNQ");
        assert_eq!(id.serial, "AIdlQyE");
        for bad in ["", "abc", ".abc", "abc.", "a.b.c"] {
            assert!(parse_ari_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_failed_validation_names_only_the_invalid_authorizations() {
        let problem: instant_acme::Problem = serde_json::from_str(
            r#"{"type": "urn:ietf:params:acme:error:connection", "detail": "refused"}"#,
        )
        .unwrap();
        let error = authorization_failure(
            Some(("b.example".into(), problem)),
            vec!["b.example".into()],
        );
        assert_eq!(
            (error.stage(), error.problem()),
            (Stage::Challenge, "connection")
        );
        assert_eq!(error.invalid_authorizations(), ["b.example"]);
        assert!(error.to_string().contains("b.example: refused"), "{error}");
        let unexplained = authorization_failure(None, Vec::new());
        assert!(unexplained.invalid_authorizations().is_empty());
    }
}
