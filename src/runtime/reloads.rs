//! The outcome of the last reload, for the status page.

use std::sync::Mutex;
use std::time::SystemTime;

/// One reload: when, and why it failed if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reload {
    /// When it was tried.
    pub at: SystemTime,
    /// Why the file was refused; `None` when it was put in force.
    pub error: Option<String>,
}

/// The last reload of this process, shared by the reloader and the status page.
#[derive(Debug, Default)]
pub(crate) struct ReloadLog(Mutex<Option<Reload>>);

impl ReloadLog {
    /// Records a reload that ended now.
    pub(crate) fn record(&self, error: Option<String>) {
        let reload = Reload {
            at: SystemTime::now(),
            error,
        };
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(reload);
    }

    /// The last reload, if any.
    pub(crate) fn last(&self) -> Option<Reload> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
