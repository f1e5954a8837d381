//! `server.tls.acme`: certificates obtained and renewed from an ACME CA (Let's Encrypt)
//! instead of files somebody else keeps fresh.

use std::path::PathBuf;
use std::time::Duration;

/// Let's Encrypt's production directory, the default.
pub(crate) const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Where certificates come from, and how they are renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names of the one certificate, the first as its subject.
    pub domains: Vec<String>,
    /// The account's contact address, if any.
    pub email: Option<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// A root to trust for the directory's HTTPS instead of the system's (a private CA,
    /// tests).
    pub directory_ca: Option<PathBuf>,
    /// The account key and the certificates, kept across restarts.
    pub state_dir: PathBuf,
    /// Renew this long before expiry; `None`: once two thirds of the lifetime have passed.
    pub renew_before: Option<Duration>,
    /// The wait after a failed order, doubled after each further failure (up to a day).
    pub retry_after: Duration,
}

impl AcmeSettings {
    /// The certificate chain and its key in `state_dir`.
    pub fn certificate_files(&self) -> (PathBuf, PathBuf) {
        (
            self.state_dir.join("certificate.pem"),
            self.state_dir.join("certificate.key"),
        )
    }

    /// The account's credentials file, one per directory: staging and production have
    /// accounts of their own.
    pub fn account_file(&self) -> PathBuf {
        let host: String = self
            .directory
            .trim_start_matches("https://")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.state_dir.join(format!("account-{host}.json"))
    }
}
