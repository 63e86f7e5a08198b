//! An order placed by [`place_order`](crate::acme::place_order), completed in steps that a
//! restart can pick up between: validate ([`prepare_order`]), make the key
//! ([`new_private_key`], which the caller stores before going on), finalize with that key
//! ([`finalize_order`]) and download ([`download_order`]).
//!
//! Each step fetches the order afresh and acts on the status the CA reports, so calling
//! the steps again after a crash repeats nothing the CA already did: an order that is
//! `processing` or `valid` is never finalized a second time, and never ordered again.

use instant_acme::{Order, OrderStatus};

use crate::acme::error::retry_bad_nonce;
use crate::acme::keys::{csr_for_saved_key, generate_key_pem};
use crate::acme::order::{send_csr, validate, wait_and_download, with_retry_after};
use crate::acme::solvers::Responder;
use crate::acme::{AcmeAccount, AcmeError, IssueRequest, Stage};
use crate::cert::KeyAlgorithm;

/// Where an order stands once its authorizations are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderProgress {
    /// Every authorization is valid: the order waits for its CSR.
    Ready,
    /// The CA has the CSR (`processing` or `valid`): only the key it was made with can
    /// use the certificate.
    Finalized,
}

/// Answers the pending authorizations of the order at `order_url` and reports whether it
/// still needs its CSR. An order that became invalid or expired fails with
/// [`AcmeError::OrderUnusable`]: place a new one.
pub async fn prepare_order(
    account: &AcmeAccount,
    order_url: &str,
    request: &IssueRequest,
) -> Result<OrderProgress, AcmeError> {
    with_retry_after(prepare(account, order_url, request)).await
}

async fn prepare(
    account: &AcmeAccount,
    order_url: &str,
    request: &IssueRequest,
) -> Result<OrderProgress, AcmeError> {
    let mut order = fetch(account, order_url).await?;
    match order.state().status {
        OrderStatus::Pending => {
            let mut responder = Responder::start(&request.challenge).await?;
            let validated = validate(account, &mut order, &mut responder).await;
            responder.shutdown().await;
            validated?;
            Ok(OrderProgress::Ready)
        }
        OrderStatus::Ready => Ok(OrderProgress::Ready),
        OrderStatus::Processing | OrderStatus::Valid => Ok(OrderProgress::Finalized),
        other => Err(unusable(order_url, other)),
    }
}

/// Generates a new private key of type `algorithm` (PKCS#8 PEM), off the async workers:
/// RSA-4096 takes seconds.
pub async fn new_private_key(algorithm: KeyAlgorithm) -> Result<String, AcmeError> {
    tokio::task::spawn_blocking(move || generate_key_pem(algorithm))
        .await
        .map_err(|join_error| AcmeError::Key {
            algorithm: algorithm.as_str(),
            message: join_error.to_string(),
        })?
}

/// Sends the CSR for `request.names`, signed with `key_pem`, unless the CA already has one
/// for this order. Call it only once `key_pem` is stored: from then on a crash resumes with
/// that key.
pub async fn finalize_order(
    account: &AcmeAccount,
    order_url: &str,
    request: &IssueRequest,
    key_pem: &str,
) -> Result<(), AcmeError> {
    with_retry_after(finalize(account, order_url, request, key_pem)).await
}

async fn finalize(
    account: &AcmeAccount,
    order_url: &str,
    request: &IssueRequest,
    key_pem: &str,
) -> Result<(), AcmeError> {
    let mut order = fetch(account, order_url).await?;
    match order.state().status {
        OrderStatus::Ready => {
            let csr_der = csr_for_saved_key(key_pem, &request.names)?;
            send_csr(&mut order, &csr_der).await
        }
        OrderStatus::Processing | OrderStatus::Valid => Ok(()),
        other => Err(unusable(order_url, other)),
    }
}

/// Waits until the finalized order at `order_url` is valid and downloads its chain.
pub async fn download_order(account: &AcmeAccount, order_url: &str) -> Result<String, AcmeError> {
    with_retry_after(download(account, order_url)).await
}

async fn download(account: &AcmeAccount, order_url: &str) -> Result<String, AcmeError> {
    let mut order = fetch(account, order_url).await?;
    match order.state().status {
        OrderStatus::Processing | OrderStatus::Valid => {
            wait_and_download(account, &mut order).await
        }
        other => Err(unusable(order_url, other)),
    }
}

async fn fetch(account: &AcmeAccount, order_url: &str) -> Result<Order, AcmeError> {
    retry_bad_nonce!(account.acme().order(order_url.to_owned()).await)
        .map_err(|error| AcmeError::from_acme(Stage::Order, error))
}

fn unusable(order_url: &str, status: OrderStatus) -> AcmeError {
    AcmeError::OrderUnusable {
        url: order_url.to_owned(),
        status: format!("{status:?}").to_ascii_lowercase(),
    }
}
