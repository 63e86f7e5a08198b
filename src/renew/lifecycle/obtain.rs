//! Getting the certificate of one renewal from the CA, one step per state-machine action,
//! each recorded in the in-flight record before the next: place the order and record its
//! URL (then validate it), save the new key, finalize and download. A restart resumes a
//! recorded order at whatever step the CA reports, with the saved key, so a crash never
//! places a second order for the same renewal.

use crate::acme::{
    AcmeAccount, AcmeError, IssueRequest, OrderPermit, OrderProgress, SlotRequest,
    Stage as AcmeStage, caa_preflight, download_order, finalize_order, is_replaces_rejection,
    new_private_key, place_allowed_order, prepare_order,
};
use crate::store::{SecretPem, Step};

use super::Run;

impl Run<'_> {
    /// Takes one of the order slots of `account`'s CA directory into `permit` unless it
    /// holds one, waiting (logged, without a deadline) while all are taken. The renewal
    /// holds it from the order until the chain is downloaded.
    pub(super) async fn hold_order_permit(
        &self,
        account: &AcmeAccount,
        permit: &mut Option<OrderPermit>,
    ) {
        if permit.is_some() {
            return;
        }
        let cap = self.renewer.acme.as_ref().map_or(
            crate::config::model::DEFAULT_MAX_CONCURRENT_ORDERS,
            |acme| acme.max_concurrent_orders,
        );
        let slots = self.renewer.orders.slots(account.directory(), cap);
        let request = SlotRequest {
            certificate: self.name(),
            ca: &self.renewer.ca_name,
            observer: self.renewer.observer.clone(),
        };
        *permit = Some(slots.acquire(request).await);
    }

    /// The request this renewal orders with.
    pub(super) fn issue_request(&self, account: &AcmeAccount) -> IssueRequest {
        IssueRequest {
            names: self.certificate.identifiers.clone(),
            key: self.certificate.key,
            challenge: self.certificate.challenge.clone(),
            profile: self.certificate.profile.clone(),
            replaces: self.replaces(account),
        }
    }

    /// Validates the recorded order at `url`. `Ok(None)` when it cannot deliver a
    /// certificate (invalid or expired): a new order is placed instead. A failure is audited.
    pub(super) async fn check_recorded_order(
        &self,
        account: &AcmeAccount,
        request: &IssueRequest,
        url: &str,
    ) -> Result<Option<OrderProgress>, AcmeError> {
        match prepare_order(account, url, request).await {
            Err(AcmeError::OrderUnusable { url, status }) => {
                tracing::info!(order = %url, %status, "recorded order is unusable, ordering anew");
                Ok(None)
            }
            Ok(progress) => Ok(Some(progress)),
            Err(error) => {
                self.record_text(Step::Order, None, None, Some(error.to_string()));
                Err(error)
            }
        }
    }

    /// Audits that the recorded order is resumed.
    pub(super) fn record_resumed(&self, finalized: bool) {
        let detail = if finalized {
            "resumed the recorded order, already finalized with the saved key"
        } else {
            "resumed the recorded order"
        };
        self.record_with_detail(Step::Order, None, None, None, Some(detail.to_owned()));
    }

    /// Runs the CAA preflight, takes an order slot into `permit`, places a new order,
    /// records its URL before anything else happens to it, and validates it.
    pub(super) async fn place_and_validate(
        &self,
        account: &AcmeAccount,
        request: &IssueRequest,
        permit: &mut Option<OrderPermit>,
    ) -> Result<(), AcmeError> {
        // Before the slot: a DNS lookup that may refuse needs no order slot.
        let allowed = caa_preflight(account, request).await?;
        self.hold_order_permit(account, permit).await;
        let url = match place_allowed_order(account, request, &allowed).await {
            Err(error) if request.replaces.is_some() && is_replaces_rejection(&error) => {
                // The CA will not let this order replace the current certificate (another
                // order already did, or it dislikes the field): order without it, once.
                tracing::info!(%error, "ordering again without replaces");
                let without = IssueRequest {
                    replaces: None,
                    ..request.clone()
                };
                place_allowed_order(account, &without, &allowed).await?
            }
            other => other?,
        };
        self.store
            .record_order(self.name(), &url)
            .map_err(|e| state_error("record the order", e))?;
        self.record(Step::Order, None, None, None);
        // A new order needs our CSR. One that comes back finalized (a CA handing out an
        // existing order) holds a certificate for a key we do not have.
        if prepare_order(account, &url, request).await? == OrderProgress::Finalized {
            return Err(AcmeError::OrderUnusable {
                url,
                status: "already finalized when placed".to_owned(),
            });
        }
        Ok(())
    }

    /// Generates the new key and saves it in the in-flight record: durable before the CSR
    /// leaves, so from here on a crash resumes with this key.
    pub(super) async fn save_new_key(&self, request: &IssueRequest) -> Result<(), AcmeError> {
        let key_pem = SecretPem::new(new_private_key(request.key).await?);
        self.store
            .record_key(self.name(), &key_pem)
            .map_err(|e| state_error("save the new key", e))?;
        Ok(())
    }

    /// Finalizes the order at `url` with the saved key (unless the CA already did) and
    /// downloads the chain. Returns the key and the chain, as PEM.
    pub(super) async fn finalize_and_download(
        &self,
        account: &AcmeAccount,
        request: &IssueRequest,
        url: &str,
    ) -> Result<(SecretPem, String), AcmeError> {
        let key_pem = self
            .store
            .inflight(self.name())
            .map_err(|e| state_error("read the in-flight record", e))?
            .and_then(|record| record.key_pem)
            .ok_or_else(|| AcmeError::Invalid {
                stage: AcmeStage::Finalize,
                message: "the in-flight record holds no saved key".to_owned(),
            })?;
        finalize_order(account, url, request, key_pem.expose()).await?;
        let cert_chain_pem = download_order(account, url).await?;
        Ok((key_pem, cert_chain_pem))
    }
}

fn state_error(action: &str, error: crate::store::StoreError) -> AcmeError {
    AcmeError::Invalid {
        stage: AcmeStage::Order,
        message: format!("cannot {action}: {error}"),
    }
}
