//! HTTPS termination. Pingora's own file-based TLS settings are read once at start, so the
//! listener gets a certificate resolver instead: each handshake takes the certificate of the
//! snapshot in force (a reload serves renewed files without a restart), or the one the ACME
//! service has in hand.

use crate::acme::AcmeState;
use crate::config::CertificateSource;
use crate::runtime::snapshot::LiveSnapshot;
use pingora::listeners::tls::TlsSettings;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};
use std::fmt;
use std::sync::Arc;

/// Hands each TLS handshake the certificate of the snapshot in force.
struct SnapshotCertificate {
    live: Arc<LiveSnapshot>,
    acme: Arc<AcmeState>,
}

impl fmt::Debug for SnapshotCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotCertificate")
    }
}

impl ResolvesServerCert for SnapshotCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.live.load();
        match &snapshot.config.server.tls.as_ref()?.source {
            CertificateSource::Files(certificate) => Some(Arc::clone(certificate.certified_key())),
            // None until the first certificate arrives: the handshake fails with an alert,
            // and the ACME service logs why.
            CertificateSource::Acme(_) => {
                Some(Arc::clone(self.acme.certificate()?.certified_key()))
            }
        }
    }
}

/// Pingora TLS settings for one HTTPS listener: certificates from `live`, and HTTP/2 offered
/// by ALPN when `http2`.
pub(crate) fn listener_settings(
    live: Arc<LiveSnapshot>,
    acme: Arc<AcmeState>,
    http2: bool,
) -> pingora::Result<TlsSettings> {
    let mut settings = TlsSettings::intermediate("", "")?;
    settings.set_cert_resolver(Arc::new(SnapshotCertificate { live, acme }));
    if http2 {
        settings.enable_h2();
    }
    Ok(settings)
}
