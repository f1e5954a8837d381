//! The access log: one line per request, to stdout, a file, or nowhere.
//!
//! A request formats its line straight into a buffer of the worker thread that served it. A
//! full buffer ([`BATCH`]) is handed to the writer thread whole, and the writer collects the
//! partly filled ones every [`FLUSH_EVERY`]. So a request never waits on the disk, allocates
//! nothing for its line, and neither wakes another thread nor contends for a lock (the writer
//! takes each thread's lock only for a swap, five times a second). If the disk falls
//! [`QUEUE`] batches behind, batches are dropped and their lines counted, rather than slowing
//! requests down.

mod record;

pub(crate) use record::AccessRecord;

use crate::config::{AccessLogFormat, AccessLogTarget};
use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The size at which a thread's buffer is handed to the writer.
const BATCH: usize = 32 * 1024;
/// Full batches waiting for the writer at most (2 MiB).
const QUEUE: usize = 64;
/// How long a line may wait in a partly filled buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// One thread's lines not yet handed to the writer.
type Buffer = Arc<Mutex<Vec<u8>>>;

/// Tells access logs apart in the worker threads' [`LOCAL`] slot.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's buffer, and the id of the access log it belongs to.
    static LOCAL: RefCell<Option<(usize, Buffer)>> = const { RefCell::new(None) };
}

/// Where access-log lines go.
#[derive(Clone)]
pub(crate) struct AccessLog {
    shared: Option<Arc<Shared>>,
    format: AccessLogFormat,
}

/// Every thread's buffer, for the writer to collect.
type Buffers = Arc<Mutex<Vec<Buffer>>>;

/// What the worker threads of one access log share. When the last handle is gone, the
/// writer sees the channel close, collects the buffers one last time and stops.
struct Shared {
    id: usize,
    full: SyncSender<Vec<u8>>,
    buffers: Buffers,
    dropped: AtomicU64,
}

impl AccessLog {
    /// Opens the target and starts its writer thread; `off` starts nothing.
    pub(crate) fn open(target: &AccessLogTarget, format: AccessLogFormat) -> io::Result<Self> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => {
                return Ok(Self {
                    shared: None,
                    format,
                })
            }
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::File(path) => Box::new(open_file(path)?),
        };
        let (full, batches) = mpsc::sync_channel(QUEUE);
        let buffers = Buffers::default();
        let collect = Arc::clone(&buffers);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_batches(&batches, &collect, out))?;
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            full,
            buffers,
            dropped: AtomicU64::new(0),
        });
        Ok(Self {
            shared: Some(shared),
            format,
        })
    }

    /// Whether lines are written at all.
    pub(crate) fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Adds the line for a request to this thread's buffer.
    pub(crate) fn write(&self, record: &AccessRecord) {
        let Some(shared) = &self.shared else {
            return;
        };
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if !matches!(&*local, Some((id, _)) if *id == shared.id) {
                *local = Some((shared.id, shared.register()));
            }
            let Some((_, buffer)) = &*local else {
                return;
            };
            let mut lines = buffer.lock().unwrap_or_else(PoisonError::into_inner);
            match self.format {
                AccessLogFormat::Combined => record.write_combined(&mut lines),
                AccessLogFormat::Json => record.write_json(&mut lines),
            }
            lines.push(b'\n');
            if lines.len() >= BATCH {
                let batch = std::mem::replace(&mut *lines, Vec::with_capacity(BATCH));
                drop(lines);
                shared.hand_over(batch);
            }
        });
    }
}

impl Shared {
    /// A new buffer for the calling thread, known to the writer.
    fn register(&self) -> Buffer {
        let buffer = Buffer::new(Mutex::new(Vec::with_capacity(BATCH)));
        self.buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&buffer));
        buffer
    }

    /// Queues a full batch for the writer, or drops and counts it if the writer is
    /// [`QUEUE`] batches behind.
    fn hand_over(&self, batch: Vec<u8>) {
        if let Err(TrySendError::Full(batch)) = self.full.try_send(batch) {
            let lines = batch.iter().filter(|&&b| b == b'\n').count() as u64;
            let before = self.dropped.fetch_add(lines, Ordering::Relaxed);
            // Warn at 1, 2, 4, 8, … lines dropped, so that a long outage logs a few lines.
            if before == 0 || (before + lines).ilog2() > before.ilog2() {
                log::warn!(
                    "access log cannot keep up; {} line(s) dropped so far",
                    before + lines
                );
            }
        }
    }
}

/// Opens a log file for appending; the error names the file.
pub(crate) fn open_file(path: &std::path::Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            let fix = match e.kind() {
                io::ErrorKind::NotFound => "; create its directory, or choose another path",
                io::ErrorKind::PermissionDenied => {
                    "; let the proxy's user write there, or choose another path"
                }
                _ => "",
            };
            io::Error::new(e.kind(), format!("{}: {e}{fix}", path.display()))
        })
}

/// Takes every thread's partly filled buffer.
fn take_partial(buffers: &Buffers) -> Vec<Vec<u8>> {
    let buffers = buffers.lock().unwrap_or_else(PoisonError::into_inner);
    buffers
        .iter()
        .filter_map(|buffer| {
            let mut lines = buffer.lock().unwrap_or_else(PoisonError::into_inner);
            // The fresh buffer is allocated here, on the writer thread, not by a request.
            (!lines.is_empty()).then(|| std::mem::replace(&mut *lines, Vec::with_capacity(BATCH)))
        })
        .collect()
}

/// The writer thread: writes full batches as they come and collects the partly filled
/// buffers every [`FLUSH_EVERY`], until the access log is gone.
fn write_batches(batches: &Receiver<Vec<u8>>, buffers: &Buffers, mut out: Box<dyn Write + Send>) {
    let mut write = |batch: &[u8]| {
        if let Err(e) = out.write_all(batch).and_then(|()| out.flush()) {
            log::error!("cannot write the access log: {e}");
        }
    };
    let mut collected = Instant::now();
    loop {
        let wait = FLUSH_EVERY.saturating_sub(collected.elapsed());
        match batches.recv_timeout(wait) {
            Ok(batch) => write(&batch),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                take_partial(buffers).iter().for_each(|batch| write(batch));
                return;
            }
        }
        if collected.elapsed() >= FLUSH_EVERY {
            take_partial(buffers).iter().for_each(|batch| write(batch));
            collected = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Instant, UNIX_EPOCH};

    fn record(target: &str) -> AccessRecord<'_> {
        AccessRecord {
            time: UNIX_EPOCH,
            client: None,
            method: "GET",
            target,
            version: "HTTP/1.1",
            status: 200,
            bytes_sent: 0,
            referer: "",
            user_agent: "",
            upstream: "",
            backend: "",
            instance: "",
            upstream_time: None,
            request_time: Duration::ZERO,
            retries: 0,
        }
    }

    fn lines_of(path: &std::path::Path, want: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(path).expect("the access log file");
            let lines: Vec<String> = text.lines().map(String::from).collect();
            if lines.len() >= want || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_once_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log =
            AccessLog::open(&AccessLogTarget::File(path.clone()), AccessLogFormat::Json).unwrap();
        // Enough lines for several full batches per thread, and a partial one left over.
        const PER_THREAD: usize = 3_000;
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        log.write(&record(&format!("/{t}/{i}")));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        drop(log);
        let lines = lines_of(&path, 4 * PER_THREAD);
        assert_eq!(lines.len(), 4 * PER_THREAD);
        let mut targets: Vec<String> = lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a whole JSON line");
                v["target"].as_str().unwrap().to_string()
            })
            .collect();
        targets.sort();
        targets.dedup();
        assert_eq!(targets.len(), 4 * PER_THREAD, "a line was written twice");
    }

    #[test]
    fn a_partly_filled_buffer_is_written_within_the_flush_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(
            &AccessLogTarget::File(path.clone()),
            AccessLogFormat::Combined,
        )
        .unwrap();
        let start = Instant::now();
        log.write(&record("/one"));
        let lines = lines_of(&path, 1);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("\"GET /one HTTP/1.1\" 200"), "{lines:?}");
        // The writer collects every FLUSH_EVERY; allow for a loaded machine.
        assert!(start.elapsed() < FLUSH_EVERY * 10, "{:?}", start.elapsed());
        drop(log);
    }
}
