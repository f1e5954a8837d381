//! Automatic HTTPS: a Pingora background service that obtains the certificate of
//! `server.tls.acme` from an ACME CA and renews it, as Caddy and Traefik do, with no certbot,
//! cron job or reload hook. The certificate is kept in `state_dir`, so a restart or a binary
//! upgrade serves the stored one at once instead of ordering again (CAs rate-limit orders).

mod order;
mod preflight;
mod state;
mod store;

pub(crate) use preflight::domain_warnings;
pub(crate) use state::{AcmeState, Renewal, CHALLENGE_PREFIX};

use crate::config::{AcmeSettings, Certificate};
use crate::metrics::Metrics;
use crate::runtime::snapshot::LiveSnapshot;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::IntCounter;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest wait between two looks at the certificate, so that a clock jump or a
/// suspended host is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// The longest wait after failed orders.
const MAX_RETRY: Duration = Duration::from_secs(24 * 3600);

/// Obtains and renews the certificate of the config in force.
pub(crate) struct AcmeService {
    live: Arc<LiveSnapshot>,
    state: Arc<AcmeState>,
    ok: IntCounter,
    error: IntCounter,
    failures: AtomicU32,
}

impl AcmeService {
    /// A service putting its certificates in `state`, counting orders in `metrics`.
    pub(crate) fn new(live: Arc<LiveSnapshot>, state: Arc<AcmeState>, metrics: &Metrics) -> Self {
        Self {
            live,
            state,
            ok: metrics.acme_orders.with_label_values(&["ok"]),
            error: metrics.acme_orders.with_label_values(&["error"]),
            failures: AtomicU32::new(0),
        }
    }

    /// Does what is due now for `settings`; returns how long to wait before looking again.
    async fn step(&self, settings: &AcmeSettings) -> Duration {
        let domains = settings.domains.join(", ");
        if let Err(e) = store::ensure_dir(&settings.state_dir) {
            return self.failed(
                settings,
                format!(
                    "cannot create {}: {e}; let the user edgeproxy runs as create it",
                    settings.state_dir.display()
                ),
            );
        }
        if !self.serves(settings) {
            self.serve_stored(settings);
        }
        let now = SystemTime::now();
        if let Some(due) = self.renewal_due(settings) {
            if due > now {
                // A failure stays on show until an order succeeds.
                let last_error = self.state.renewal().last_error.filter(|_| self.retrying());
                self.state.set_renewal(Renewal {
                    next: Some(due),
                    last_error,
                });
                return due.duration_since(now).unwrap_or_default().min(MAX_SLEEP);
            }
        }
        log::info!(
            "acme: ordering a certificate for {domains} from {}",
            settings.directory
        );
        let obtained = order::obtain(settings, &self.state).await;
        // Whatever happened, no token stays answerable once its order is over.
        self.state.close_challenges();
        match obtained {
            Ok(certificate) => {
                let info = certificate.info();
                log::info!(
                    "acme: serving a new certificate for {domains}, valid until {} (issuer {})",
                    crate::calendar::rfc3339(info.not_after),
                    info.issuer
                );
                self.state.install(certificate);
                self.ok.inc();
                self.failures.store(0, Ordering::Relaxed);
                Duration::ZERO
            }
            Err(e) => self.failed(settings, e.to_string()),
        }
    }

    /// Logs and counts a failed order; returns the wait before the next, doubled each time.
    fn failed(&self, settings: &AcmeSettings, why: String) -> Duration {
        self.error.inc();
        let failures = self.failures.fetch_add(1, Ordering::Relaxed);
        let wait = settings
            .retry_after
            .saturating_mul(1 << failures.min(16))
            .min(MAX_RETRY);
        let serving = match self.state.certificate() {
            Some(c) => format!(
                "the current certificate (valid until {}) stays",
                crate::calendar::rfc3339(c.info().not_after)
            ),
            None => "HTTPS handshakes fail until a certificate is in hand; plain HTTP works".into(),
        };
        log::error!(
            "acme: no certificate for {}: {why}; {serving}; next try in {wait:?}",
            settings.domains.join(", ")
        );
        self.state.set_renewal(Renewal {
            next: Some(SystemTime::now() + wait),
            last_error: Some(why),
        });
        wait
    }

    /// Whether the last order failed, so that the next waits its backoff.
    fn retrying(&self) -> bool {
        self.failures.load(Ordering::Relaxed) > 0
    }

    /// Whether the certificate in hand is for exactly `settings.domains`.
    fn serves(&self, settings: &AcmeSettings) -> bool {
        self.state
            .certificate()
            .is_some_and(|c| same_names(&c, settings))
    }

    /// Serves the certificate of `state_dir` if it is for these domains and still valid.
    fn serve_stored(&self, settings: &AcmeSettings) {
        let (cert_path, key_path) = settings.certificate_files();
        if !cert_path.exists() {
            return;
        }
        match Certificate::load(&cert_path, &key_path) {
            Ok(stored) if same_names(&stored, settings) && stored.info().not_after > unix_now() => {
                log::info!(
                    "acme: serving the stored certificate for {}, valid until {}",
                    settings.domains.join(", "),
                    crate::calendar::rfc3339(stored.info().not_after)
                );
                self.state.install(stored);
            }
            Ok(_) => log::info!(
                "acme: the stored certificate is for other names or has expired; ordering anew"
            ),
            Err(e) => log::warn!("acme: cannot use the stored certificate: {}", e.message),
        }
    }

    /// When the certificate in hand is to be renewed; `None` if there is none for these
    /// domains (an order is due now). A failed order waits its backoff first.
    fn renewal_due(&self, settings: &AcmeSettings) -> Option<SystemTime> {
        let retry = self.state.renewal().next.filter(|_| self.retrying());
        let certificate = self.state.certificate().filter(|c| same_names(c, settings));
        let renew =
            certificate.map(|c| renewal_time(c.info().not_before, c.info().not_after, settings));
        match (renew, retry) {
            (Some(renew), Some(retry)) => Some(renew.max(retry)),
            (renew, retry) => renew.or(retry),
        }
    }
}

#[async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut changes = self.live.watch();
        loop {
            let settings = self.live.load().config.server.acme().cloned();
            let wait = match &settings {
                Some(settings) => self.step(settings).await,
                None => MAX_SLEEP,
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                // A reload may change the domains or the renewal settings.
                _ = changes.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// When a certificate valid from `not_before` to `not_after` is renewed: `renew_before`
/// ahead of expiry, or once two thirds of its lifetime have passed.
pub(crate) fn renewal_time(not_before: i64, not_after: i64, settings: &AcmeSettings) -> SystemTime {
    let lifetime = (not_after - not_before).max(0) as u64;
    let ahead = match settings.renew_before {
        Some(ahead) if ahead.as_secs() < lifetime => ahead.as_secs(),
        _ => lifetime / 3,
    };
    UNIX_EPOCH + Duration::from_secs((not_after.max(0) as u64).saturating_sub(ahead))
}

fn same_names(certificate: &Certificate, settings: &AcmeSettings) -> bool {
    let mut have: Vec<&str> = certificate
        .info()
        .names
        .iter()
        .map(String::as_str)
        .collect();
    let mut want: Vec<&str> = settings.domains.iter().map(String::as_str).collect();
    have.sort_unstable();
    want.sort_unstable();
    have == want
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests;
