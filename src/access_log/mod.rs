//! The access log: one line per request, to stdout, a file, or nowhere.
//!
//! Requests hand their line to a writer thread through a bounded channel and never wait on
//! the disk; the thread batches writes. If the disk falls that far behind, lines are dropped
//! and counted rather than slowing requests down.

mod record;

pub use record::AccessRecord;

use crate::config::{AccessLogFormat, AccessLogTarget};
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// Lines waiting for the writer at most.
const QUEUE: usize = 64 * 1024;
/// How long a partly filled buffer may wait before it is written out.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Where access-log lines go.
#[derive(Clone)]
pub struct AccessLog {
    sink: Option<SyncSender<String>>,
    format: AccessLogFormat,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Opens the target and starts its writer thread; `off` starts nothing.
    pub fn open(target: &AccessLogTarget, format: AccessLogFormat) -> io::Result<Self> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => {
                return Ok(Self {
                    sink: None,
                    format,
                    dropped: Arc::default(),
                })
            }
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::File(path) => Box::new(open_file(path)?),
        };
        let (sink, lines) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(lines, BufWriter::with_capacity(64 * 1024, out)))?;
        Ok(Self {
            sink: Some(sink),
            format,
            dropped: Arc::default(),
        })
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Queues the line for a request.
    pub fn write(&self, record: &AccessRecord) {
        let Some(sink) = &self.sink else {
            return;
        };
        let line = match self.format {
            AccessLogFormat::Combined => record.combined(),
            AccessLogFormat::Json => record.json(),
        };
        if let Err(TrySendError::Full(_)) = sink.try_send(line) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_power_of_two() {
                log::warn!(
                    "access log cannot keep up; {} line(s) dropped so far",
                    dropped + 1
                );
            }
        }
    }
}

/// Opens a log file for appending; the error names the file.
pub fn open_file(path: &std::path::Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn write_lines(lines: Receiver<String>, mut out: BufWriter<Box<dyn Write + Send>>) {
    loop {
        match lines.recv_timeout(FLUSH_EVERY) {
            Ok(line) => {
                let written = out
                    .write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"));
                if let Err(e) = written {
                    log::error!("cannot write the access log: {e}");
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = out.flush() {
                    log::error!("cannot write the access log: {e}");
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
    }
}
