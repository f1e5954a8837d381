//! Diagnostic logging to stderr: env_logger, less what any client can make Pingora say.
//!
//! Pingora logs at ERROR every client that sends half a request header and goes quiet or
//! away (slowloris clients cut by `server.header_timeout` among them), and every client that
//! fails or abandons a TLS handshake. Those are the client's doing and would let one client
//! flood the log, so they are logged at DEBUG instead.

use log::{Level, Log, Metadata, Record};

/// Installs the logger; `RUST_LOG` filters it (default `info`).
pub fn init() {
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max_level = inner.filter();
    if log::set_boxed_logger(Box::new(Quiet { inner })).is_ok() {
        log::set_max_level(max_level);
    }
}

struct Quiet {
    inner: env_logger::Logger,
}

/// Whether a record is Pingora's report of a client that did not finish its request header
/// or its TLS handshake.
fn client_noise(record: &Record) -> bool {
    let marker = match record.target() {
        "pingora_proxy" => "while reading request headers",
        "pingora_core::services::listening" => "Downstream handshake",
        _ => return false,
    };
    record.level() == Level::Error && record.args().to_string().contains(marker)
}

impl Log for Quiet {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !client_noise(record) {
            return self.inner.log(record);
        }
        let demoted = Record::builder()
            .args(*record.args())
            .level(Level::Debug)
            .target(record.target())
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build();
        if self.inner.enabled(demoted.metadata()) {
            self.inner.log(&demoted);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}
