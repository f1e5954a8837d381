//! What the ACME service shares with the request path (HTTP-01 answers) and the HTTPS
//! listeners (the certificate): one per process, so reloads and snapshots do not reset it.

use crate::config::Certificate;
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Where the CA looks for an HTTP-01 answer.
pub(crate) const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The certificate obtained so far and the challenges being answered.
#[derive(Default)]
pub(crate) struct AcmeState {
    /// Token → key authorization, while an order waits for the CA's check.
    challenges: Mutex<HashMap<String, String>>,
    current: ArcSwapOption<Certificate>,
    renewal: Mutex<Renewal>,
}

/// When the next order is due, and how the last one went: for `/status` and the logs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Renewal {
    /// When the certificate is renewed (or an order retried) next.
    pub next: Option<SystemTime>,
    /// Why the last order failed, until one succeeds.
    pub last_error: Option<String>,
}

impl AcmeState {
    /// The key authorization to answer for `token`, while its order is open.
    pub(crate) fn answer(&self, token: &str) -> Option<String> {
        lock(&self.challenges).get(token).cloned()
    }

    pub(super) fn open_challenge(&self, token: String, key_authorization: String) {
        lock(&self.challenges).insert(token, key_authorization);
    }

    pub(super) fn close_challenges(&self) {
        lock(&self.challenges).clear();
    }

    /// The certificate to serve; `None` until the first one is in hand.
    pub(crate) fn certificate(&self) -> Option<Arc<Certificate>> {
        self.current.load_full()
    }

    /// Serves `certificate` from the next handshake on.
    pub(super) fn install(&self, certificate: Certificate) {
        self.current.store(Some(Arc::new(certificate)));
    }

    /// The renewal schedule and the last failure.
    pub(crate) fn renewal(&self) -> Renewal {
        lock(&self.renewal).clone()
    }

    pub(super) fn set_renewal(&self, renewal: Renewal) {
        *lock(&self.renewal) = renewal;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
