//! The certificates served, from files or from the ACME CA: their expiry as a gauge read at
//! scrape time, and their names, issuer and renewal for `/status`.

use crate::acme::AcmeState;
use crate::config::certificate::CertificateInfo;
use crate::runtime::snapshot::LiveSnapshot;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// One certificate served by the HTTPS listeners.
pub(super) struct Served {
    /// `file` or `acme`.
    pub source: &'static str,
    /// Its names, issuer and validity.
    pub info: CertificateInfo,
    /// When it is renewed next (ACME only), in seconds since the epoch.
    pub next_renewal: Option<i64>,
    /// Why the last order failed, until one succeeds (ACME only).
    pub last_error: Option<String>,
}

/// The certificate in force: the snapshot's files, or what the ACME service has in hand.
pub(super) fn served(live: &LiveSnapshot, acme: &AcmeState) -> Option<Served> {
    let snapshot = live.load();
    let server = &snapshot.config.server;
    if let Some(file) = server.file_certificate() {
        return Some(Served {
            source: "file",
            info: file.info().clone(),
            next_renewal: None,
            last_error: None,
        });
    }
    server.acme()?;
    let renewal = acme.renewal();
    let seconds = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    Some(Served {
        source: "acme",
        info: acme.certificate()?.info().clone(),
        next_renewal: renewal.next.map(seconds),
        last_error: renewal.last_error,
    })
}

/// Exports `edgeproxy_certificate_expiry_timestamp_seconds{domain}`.
pub(super) struct CertificateCollector {
    live: Arc<LiveSnapshot>,
    acme: Arc<AcmeState>,
    described: IntGaugeVec,
}

impl CertificateCollector {
    pub(super) fn new(live: Arc<LiveSnapshot>, acme: Arc<AcmeState>) -> prometheus::Result<Self> {
        Ok(Self {
            live,
            acme,
            described: family()?,
        })
    }
}

fn family() -> prometheus::Result<IntGaugeVec> {
    IntGaugeVec::new(
        Opts::new(
            "edgeproxy_certificate_expiry_timestamp_seconds",
            "When the certificate served for each domain expires (not_after), in Unix time",
        ),
        &["domain"],
    )
}

impl Collector for CertificateCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.described.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(expiry) = family() else {
            return Vec::new();
        };
        if let Some(served) = served(&self.live, &self.acme) {
            for name in &served.info.names {
                expiry
                    .with_label_values(&[name.as_str()])
                    .set(served.info.not_after);
            }
        }
        expiry.collect()
    }
}
