//! The certificate and key of `server.tls`, read from PEM files whenever the config is, so
//! that they are part of the config in force: a reload (say, after a certbot renewal) picks
//! up new files without a restart. Errors name the file and say what to do.

use pingora::tls::sign::CertifiedKey;
use pingora::tls::{CryptoProvider, RusTlsError};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate chain with its private key, loaded and checked to belong together.
#[derive(Clone)]
pub struct Certificate {
    /// The PEM file of the chain, leaf first.
    pub cert_path: PathBuf,
    /// The PEM file of the private key.
    pub key_path: PathBuf,
    key: Arc<CertifiedKey>,
    info: CertificateInfo,
}

/// What the leaf certificate says of itself, for renewal, metrics and `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The DNS names it is for (its subject alternative names, else its common name).
    pub names: Vec<String>,
    /// Its issuer, as a distinguished name.
    pub issuer: String,
    /// Valid from, in seconds since the Unix epoch.
    pub not_before: i64,
    /// Valid until, in seconds since the Unix epoch.
    pub not_after: i64,
}

impl CertificateInfo {
    /// Reads a DER certificate; `None` if it cannot be parsed.
    pub fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut names: Vec<String> = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok().map(str::to_string)),
            );
        }
        Some(Self {
            names,
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

/// Which of the two files a [`CertificateError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertFile {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
}

/// Why a certificate could not be loaded.
#[derive(Debug)]
pub struct CertificateError {
    /// The file at fault.
    pub file: CertFile,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl CertificateError {
    fn new(file: CertFile, message: String) -> Self {
        Self { file, message }
    }
}

impl Certificate {
    /// Reads the chain from `cert_path` and the key from `key_path`, and checks that the key
    /// is the one the leaf certificate was issued for.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CertificateError> {
        let chain = read_chain(cert_path)?;
        let key = read_key(key_path)?;
        pingora::tls::install_default_crypto_provider();
        let provider = CryptoProvider::get_default().ok_or_else(|| {
            CertificateError::new(CertFile::Key, "no TLS crypto provider is installed".into())
        })?;
        let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
            RusTlsError::InconsistentKeys(_) => CertificateError::new(
                CertFile::Key,
                format!(
                    "{} is not the private key of the certificate in {}; give the key the \
                     certificate was issued for (certbot: privkey.pem beside fullchain.pem)",
                    key_path.display(),
                    cert_path.display()
                ),
            ),
            RusTlsError::InvalidCertificate(_) | RusTlsError::NoCertificatesPresented => {
                CertificateError::new(
                    CertFile::Cert,
                    format!(
                        "{} holds a certificate that cannot be parsed: {e}",
                        cert_path.display()
                    ),
                )
            }
            other => CertificateError::new(
                CertFile::Key,
                format!(
                    "{} holds a key that cannot be used ({other}); use an RSA, ECDSA or \
                     Ed25519 key in PEM",
                    key_path.display()
                ),
            ),
        })?;
        let info = CertificateInfo::parse(&key.cert[0]).ok_or_else(|| {
            CertificateError::new(
                CertFile::Cert,
                format!(
                    "{} holds a certificate whose names and dates cannot be read",
                    cert_path.display()
                ),
            )
        })?;
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            key: Arc::new(key),
            info,
        })
    }

    /// Its names and validity.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// The chain as sent to clients, leaf first (DER).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

    /// The chain and key, ready for a TLS handshake.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.key
    }
}

/// Two certificates are the same if they come from the same files and hold the same chain:
/// a reload that re-reads renewed files then counts as a change.
impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.cert_path == other.cert_path
            && self.key_path == other.key_path
            && self.chain() == other.chain()
    }
}

/// Names the files only; the key never reaches a log.
impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn read_file(path: &Path, file: CertFile) -> Result<Vec<u8>, CertificateError> {
    std::fs::read(path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => "; let the user edgeproxy runs as read it",
            _ => "",
        };
        CertificateError::new(file, format!("cannot read {}: {e}{hint}", path.display()))
    })
}

fn pem_error(path: &Path, file: CertFile, e: pem::Error) -> CertificateError {
    CertificateError::new(
        file,
        format!("{} is not a valid PEM file: {e}", path.display()),
    )
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let bytes = read_file(path, CertFile::Cert)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, CertFile::Cert, e))?;
    if chain.is_empty() {
        return Err(CertificateError::new(
            CertFile::Cert,
            format!(
                "{} holds no certificate (no `-----BEGIN CERTIFICATE-----` block); give the \
                 certificate chain, leaf first (certbot: fullchain.pem)",
                path.display()
            ),
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertificateError> {
    let bytes = read_file(path, CertFile::Key)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => CertificateError::new(
            CertFile::Key,
            format!(
                "{} holds no private key (no `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` \
                 or `EC PRIVATE KEY` block); give the key file (certbot: privkey.pem)",
                path.display()
            ),
        ),
        e => pem_error(path, CertFile::Key, e),
    })
}

/// Certificates for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};

    /// Writes a new self-signed certificate for `name` and its key into `dir`; returns their
    /// paths.
    pub(crate) fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::self_signed;
    use super::*;

    fn error(cert: &Path, key: &Path) -> CertificateError {
        Certificate::load(cert, key).expect_err("the pair is refused")
    }

    #[test]
    fn a_matching_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "localhost");
        let loaded = Certificate::load(&cert, &key).unwrap();
        assert_eq!(loaded.chain().len(), 1);
        assert_eq!(loaded, Certificate::load(&cert, &key).unwrap());
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }

    #[test]
    fn renewed_files_count_as_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "localhost");
        let before = Certificate::load(&cert, &key).unwrap();
        let (new_cert, new_key) = self_signed(dir.path(), "example.com");
        std::fs::rename(new_cert, &cert).unwrap();
        std::fs::rename(new_key, &key).unwrap();
        assert_ne!(before, Certificate::load(&cert, &key).unwrap());
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed(dir.path(), "localhost");
        let e = error(&cert, &dir.path().join("nope.key"));
        assert_eq!(e.file, CertFile::Key);
        assert!(e.message.contains("cannot read") && e.message.contains("nope.key"));
    }

    #[test]
    fn swapped_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "localhost");
        let e = error(&key, &cert);
        assert_eq!(e.file, CertFile::Cert);
        assert!(e.message.contains("holds no certificate"), "{}", e.message);
        let e = error(&cert, &cert);
        assert_eq!(e.file, CertFile::Key);
        assert!(e.message.contains("holds no private key"), "{}", e.message);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed(dir.path(), "localhost");
        let (_, other_key) = self_signed(dir.path(), "example.com");
        let e = error(&cert, &other_key);
        assert_eq!(e.file, CertFile::Key);
        assert!(
            e.message.contains("is not the private key"),
            "{}",
            e.message
        );
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = self_signed(dir.path(), "localhost");
        let cert = dir.path().join("bad.crt");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = error(&cert, &key);
        assert_eq!(e.file, CertFile::Cert);
    }
}
