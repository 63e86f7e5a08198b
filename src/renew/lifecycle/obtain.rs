//! Getting the certificate of one renewal from the CA in steps the in-flight record
//! follows: place the order and record its URL, validate, save the new key, finalize,
//! download. A restart resumes a recorded order at whatever step the CA reports, with the
//! saved key, so a crash never places a second order for the same renewal.

use crate::acme::{
    AcmeAccount, AcmeError, IssueRequest, Issued, OrderProgress, Stage as AcmeStage,
    download_order, finalize_order, is_replaces_rejection, new_private_key, place_order,
    prepare_order,
};
use crate::store::{SecretPem, Step};

use super::Run;

impl Run<'_> {
    /// The certificate and key of this renewal: from the recorded `order_url` when that
    /// order can still deliver, else from a new order.
    pub(super) async fn obtain(
        &self,
        account: &AcmeAccount,
        request: &IssueRequest,
        order_url: Option<String>,
    ) -> Result<Issued, AcmeError> {
        let saved_key = self
            .store
            .inflight(self.name())
            .map_err(|e| state_error("read the in-flight record", e))?
            .and_then(|record| record.key_pem);
        let resumed = match order_url {
            Some(url) => {
                self.resume(account, request, url, saved_key.is_some())
                    .await?
            }
            None => None,
        };
        let (url, saved_key) = match resumed {
            Some(url) => (url, saved_key),
            None => {
                let url = self.place(account, request).await?;
                // A new order needs our CSR. One that comes back finalized (a CA handing out
                // an existing order) holds a certificate for a key we do not have.
                if prepare_order(account, &url, request).await? == OrderProgress::Finalized {
                    return Err(AcmeError::OrderUnusable {
                        url,
                        status: "already finalized when placed".to_owned(),
                    });
                }
                (url, None)
            }
        };
        let key_pem = match saved_key {
            Some(key_pem) => key_pem,
            None => {
                let key_pem = SecretPem::new(new_private_key(request.key).await?);
                // Durable before the CSR leaves: from here on a crash resumes with this key.
                self.store
                    .record_key(self.name(), &key_pem)
                    .map_err(|e| state_error("save the new key", e))?;
                key_pem
            }
        };
        finalize_order(account, &url, request, key_pem.expose()).await?;
        let cert_chain_pem = download_order(account, &url).await?;
        Ok(Issued {
            key_pem: key_pem.expose().to_owned(),
            cert_chain_pem,
            order_url: url,
        })
    }

    /// Validates the recorded order at `url`. `None` when it cannot deliver a certificate
    /// this renewal can use (invalid or expired, or finalized before its key was saved):
    /// a new order is placed instead.
    async fn resume(
        &self,
        account: &AcmeAccount,
        request: &IssueRequest,
        url: String,
        key_saved: bool,
    ) -> Result<Option<String>, AcmeError> {
        match prepare_order(account, &url, request).await {
            Err(AcmeError::OrderUnusable { url, status }) => {
                tracing::info!(order = %url, %status, "recorded order is unusable, ordering anew");
                Ok(None)
            }
            Ok(OrderProgress::Finalized) if !key_saved => {
                // Only a record written before keys were saved gets here.
                tracing::info!(order = %url, "recorded order was finalized with a key that was not saved, ordering anew");
                Ok(None)
            }
            Ok(progress) => {
                self.record_with_detail(Step::Order, None, None, None, Some(resumed(progress)));
                Ok(Some(url))
            }
            Err(error) => {
                self.record_text(Step::Order, None, None, Some(error.to_string()));
                Err(error)
            }
        }
    }

    /// Places a new order and records its URL before anything else happens to it.
    async fn place(
        &self,
        account: &AcmeAccount,
        request: &IssueRequest,
    ) -> Result<String, AcmeError> {
        let url = match place_order(account, request).await {
            Err(error) if request.replaces.is_some() && is_replaces_rejection(&error) => {
                // The CA will not let this order replace the current certificate (another
                // order already did, or it dislikes the field): order without it, once.
                tracing::info!(%error, "ordering again without replaces");
                let without = IssueRequest {
                    replaces: None,
                    ..request.clone()
                };
                place_order(account, &without).await?
            }
            other => other?,
        };
        self.store
            .record_order(self.name(), &url)
            .map_err(|e| state_error("record the order", e))?;
        self.record(Step::Order, None, None, None);
        Ok(url)
    }
}

fn resumed(progress: OrderProgress) -> String {
    match progress {
        OrderProgress::Ready => "resumed the recorded order".to_owned(),
        OrderProgress::Finalized => {
            "resumed the recorded order, already finalized with the saved key".to_owned()
        }
    }
}

fn state_error(action: &str, error: crate::store::StoreError) -> AcmeError {
    AcmeError::Invalid {
        stage: AcmeStage::Order,
        message: format!("cannot {action}: {error}"),
    }
}
