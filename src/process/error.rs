//! Why the server did not start. Each error names the config key at fault where there is
//! one, as config errors do.

use crate::process::daemon::SpawnError;
use crate::process::listeners::BindProblem;
use std::io;
use std::path::PathBuf;

/// Why [`crate::process::server::run`] stopped before serving.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// A listening address cannot be bound.
    #[error("{}", .0.describe())]
    Listen(BindProblem),
    /// `server.pid_file` cannot be written.
    #[error("server.pid_file: cannot write {}: {source}", path.display())]
    PidFile {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: io::Error,
    },
    /// The metric families could not be registered.
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// `server.access_log` cannot be opened; the error says which file and how to fix it.
    #[error("server.access_log: cannot open {0}")]
    AccessLog(io::Error),
    /// Pingora refused the TLS settings of an HTTPS listener.
    #[error("cannot set up TLS: {0}")]
    Tls(Box<pingora::Error>),
    /// `-d`: the background process did not start.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// `-d` without `server.pid_file`.
    #[error("-d needs server.pid_file, which is how the background process is found; set it")]
    NoPidFile,
}
