//! An HTTPS listener with HTTP/2, for the clients and frames that need one.

use crate::common::{free_port, Proxy};
use tempfile::TempDir;

/// edgeproxy with an HTTPS listener (HTTP/2 offered by ALPN) in front of `backend`, with a
/// self-signed certificate for `localhost`.
pub struct HttpsProxy {
    /// The HTTPS port on 127.0.0.1.
    pub port: u16,
    _proxy: Proxy,
    _certs: TempDir,
}

impl HttpsProxy {
    /// Starts it; `backend` is `HOST:PORT`.
    pub fn start(backend: &str) -> HttpsProxy {
        let certs = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        let port = free_port();
        let proxy = Proxy::start_with(
            &format!(
                "  tls:\n    listen: [\"127.0.0.1:{port}\"]\n    cert: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            &format!(
                "upstreams:\n  app:\n    servers:\n      - {{ addr: \"{backend}\" }}\nroutes:\n  - {{ path: /, upstream: app }}\n"
            ),
        );
        HttpsProxy {
            port,
            _proxy: proxy,
            _certs: certs,
        }
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}
