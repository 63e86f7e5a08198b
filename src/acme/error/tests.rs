//! Unit tests of the ACME error vocabulary: stages, problems, what is transient.

use super::*;

#[test]
fn only_unreachable_slow_or_overloaded_servers_are_transient() {
    let server = |problem: &str| AcmeError::Server {
        stage: Stage::Download,
        problem: problem.to_owned(),
        detail: String::new(),
        retry_after: None,
        invalid_authorizations: Vec::new(),
    };
    assert!(server("serverInternal").is_transient());
    assert!(server("rateLimited").is_transient());
    assert!(!server("unauthorized").is_transient());
    assert!(!server("malformed").is_transient());
    let timeout = AcmeError::Timeout {
        stage: Stage::Finalize,
        waited: Duration::from_secs(60),
    };
    assert!(timeout.is_transient());
    let unusable = AcmeError::OrderUnusable {
        url: "https://ca.test/order/1".to_owned(),
        status: "invalid".to_owned(),
    };
    assert!(!unusable.is_transient());
}

#[test]
fn problem_keyword_strips_the_acme_urn_prefix() {
    assert_eq!(
        problem_keyword(Some("urn:ietf:params:acme:error:rateLimited")),
        "rateLimited"
    );
    assert_eq!(problem_keyword(Some("about:blank")), "about:blank");
    assert_eq!(problem_keyword(None), "unknown");
}

#[test]
fn only_order_problems_about_replaces_drop_it() {
    let server = |problem: &str, detail: &str| AcmeError::Server {
        stage: Stage::Order,
        problem: problem.into(),
        detail: detail.into(),
        retry_after: None,
        invalid_authorizations: Vec::new(),
    };
    assert!(is_replaces_rejection(&server("alreadyReplaced", "")));
    assert!(is_replaces_rejection(&server("conflict", "order exists")));
    assert!(is_replaces_rejection(&server(
        "malformed",
        "bad Replaces field"
    )));
    assert!(!is_replaces_rejection(&server(
        "malformed",
        "bad identifier"
    )));
    assert!(!is_replaces_rejection(&server("rateLimited", "replaces")));
    assert!(is_replaces_rejection(&AcmeError::Protocol {
        stage: Stage::Order,
        message: "replaces field mismatch: expected Some(..), found None".into(),
    }));
}

#[test]
fn stage_and_problem_label_every_variant() {
    let network = AcmeError::Network {
        stage: Stage::Account,
        source: TransportError::new("https://ca/dir", 3, "connection refused"),
    };
    assert_eq!(
        (network.stage(), network.problem()),
        (Stage::Account, "network")
    );
    let server = AcmeError::Server {
        stage: Stage::Challenge,
        problem: "connection".into(),
        detail: "refused".into(),
        retry_after: None,
        invalid_authorizations: Vec::new(),
    };
    assert_eq!(
        (server.stage().as_str(), server.problem()),
        ("challenge", "connection")
    );
    let key = AcmeError::Key {
        algorithm: "rsa-2048",
        message: "boom".into(),
    };
    assert_eq!((key.stage(), key.problem()), (Stage::Finalize, "key"));
}

#[test]
fn retry_after_is_attached_to_server_problems_only_and_never_overwritten() {
    let at = time::macros::datetime!(2026-01-01 12:00 UTC);
    let later = at + time::Duration::HOUR;
    let server = AcmeError::Server {
        stage: Stage::Order,
        problem: "rateLimited".into(),
        detail: String::new(),
        retry_after: None,
        invalid_authorizations: Vec::new(),
    };
    let server = server.with_retry_after(Some(at));
    assert_eq!(server.retry_after(), Some(at));
    assert_eq!(server.with_retry_after(Some(later)).retry_after(), Some(at));
    let timeout = AcmeError::Timeout {
        stage: Stage::Challenge,
        waited: Duration::ZERO,
    };
    assert_eq!(timeout.with_retry_after(Some(at)).retry_after(), None);
}

#[test]
fn only_an_account_does_not_exist_problem_means_the_account_is_gone() {
    let server = |problem: &str| AcmeError::Server {
        stage: Stage::Order,
        problem: problem.into(),
        detail: String::new(),
        retry_after: None,
        invalid_authorizations: Vec::new(),
    };
    assert!(server("accountDoesNotExist").is_account_gone());
    assert!(!server("unauthorized").is_account_gone());
    let network = AcmeError::Network {
        stage: Stage::Order,
        source: TransportError::new("https://ca/dir", 1, "refused"),
    };
    assert!(!network.is_account_gone());
}
