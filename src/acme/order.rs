//! One certificate order with instant-acme: the account (created once, then reused), the
//! order, HTTP-01 answered through [`AcmeState`], finalisation with a fresh key.

use super::state::AcmeState;
use super::store;
use crate::config::{AcmeSettings, Certificate};
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use std::fmt;

/// Why an order failed: what was being done, and what the CA or the network said.
#[derive(Debug)]
pub(super) struct OrderError(String);

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn failed(what: &str) -> impl Fn(instant_acme::Error) -> OrderError + '_ {
    move |e| OrderError(format!("{what}: {e}"))
}

/// Orders a certificate for `settings.domains`, opening its challenges in `state` (the caller
/// closes them), and stores it in `state_dir`; returns it loaded.
pub(super) async fn obtain(
    settings: &AcmeSettings,
    state: &AcmeState,
) -> Result<Certificate, OrderError> {
    let account = account(settings).await?;
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(failed("cannot open an order"))?;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(failed("cannot read an authorization"))?;
        if authorization.status != AuthorizationStatus::Pending {
            continue;
        }
        let domain = authorization.identifier().to_string();
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| OrderError(format!("{domain}: the CA offers no HTTP-01 challenge")))?;
        let answer = challenge.key_authorization().as_str().to_string();
        state.open_challenge(challenge.token.clone(), answer);
        challenge
            .set_ready()
            .await
            .map_err(|e| OrderError(format!("{domain}: cannot start the check: {e}")))?;
    }
    let status = order.poll_ready(&RetryPolicy::default()).await;
    let status = status.map_err(failed("the CA did not check the domains in time"));
    if !matches!(status, Ok(OrderStatus::Ready)) {
        let why = match status {
            Ok(other) => format!("the order is {other:?}"),
            Err(e) => e.to_string(),
        };
        return Err(OrderError(
            challenge_problems(&mut order).await.unwrap_or(why),
        ));
    }
    let key_pem = order.finalize().await.map_err(failed("cannot finalize"))?;
    let chain_pem = order
        .poll_certificate(&RetryPolicy::default())
        .await
        .map_err(failed("the CA did not issue the certificate"))?;
    let (cert_path, key_path) = settings.certificate_files();
    let write = |path: &std::path::Path, bytes: &str| {
        store::write_private(path, bytes.as_bytes())
            .map_err(|e| OrderError(format!("cannot write {}: {e}", path.display())))
    };
    write(&key_path, &key_pem)?;
    write(&cert_path, &chain_pem)?;
    Certificate::load(&cert_path, &key_path).map_err(|e| OrderError(e.message))
}

/// Each failed domain with the CA's problem document (`DNS problem`, `connection refused`).
async fn challenge_problems(order: &mut instant_acme::Order) -> Option<String> {
    let mut problems = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        let domain = state.identifier().to_string();
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                problems.push(format!("{domain}: {problem}"));
            }
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The account of `settings.directory`: restored from `state_dir`, or created and stored.
async fn account(settings: &AcmeSettings) -> Result<Account, OrderError> {
    let builder = || -> Result<AccountBuilder, OrderError> {
        match &settings.directory_ca {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        }
        .map_err(failed("cannot set up the HTTPS client for the CA"))
    };
    let path = settings.account_file();
    let stored = store::read_if_present(&path)
        .map_err(|e| OrderError(format!("cannot read {}: {e}", path.display())))?;
    if let Some(bytes) = stored {
        let credentials: AccountCredentials = serde_json::from_slice(&bytes).map_err(|e| {
            OrderError(format!(
                "{} is not an account's credentials ({e}); remove it to create a new account",
                path.display()
            ))
        })?;
        return builder()?
            .from_credentials(credentials)
            .await
            .map_err(failed("cannot restore the account"));
    }
    let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .map_err(failed(&format!(
            "cannot create an account at {}",
            settings.directory
        )))?;
    let json = serde_json::to_vec(&credentials)
        .map_err(|e| OrderError(format!("cannot store the account: {e}")))?;
    store::write_private(&path, &json)
        .map_err(|e| OrderError(format!("cannot write {}: {e}", path.display())))?;
    log::info!("acme: created an account at {}", settings.directory);
    Ok(account)
}
