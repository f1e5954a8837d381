//! Signal handling. SIGINT stops at once. SIGTERM stops accepting and exits as soon as the
//! requests in flight are done, or when `server.grace_period` runs out, whichever comes first.
//! SIGQUIT first hands the listening sockets to a new process started with `-u`, then does
//! the same. SIGUSR2 starts that new process itself, from the binary now installed, then
//! goes on as SIGQUIT does.
//!
//! Pingora alone would always sleep the whole grace period, in whole seconds, even with
//! nothing in flight; a deploy that waits 10 s per instance for nothing is what this avoids.

use crate::connections::{Connections, SETTLE};
use crate::process::daemon;
use crate::sync::inflight::Inflight;
use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use std::path::PathBuf;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast::{self, error::RecvError};

/// How often a draining process looks at the in-flight count.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Watches the process signals for Pingora's server loop.
pub(crate) struct Signals {
    /// The config file, for a successor started on SIGUSR2.
    config: PathBuf,
    upgrade_sock: PathBuf,
    inflight: Inflight,
    connections: Connections,
    grace_period: Duration,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl Signals {
    /// Signals for a server whose requests are counted by `inflight` and client connections
    /// by `connections`; `phases` is the server's execution phase feed, which says when its
    /// listeners have closed.
    /// `config` and `upgrade_sock` are what a successor started on SIGUSR2 is given.
    pub(crate) fn new(
        config: PathBuf,
        upgrade_sock: PathBuf,
        inflight: Inflight,
        connections: Connections,
        grace_period: Duration,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Self {
        Self {
            config,
            upgrade_sock,
            inflight,
            connections,
            grace_period,
            phases: Mutex::new(Some(phases)),
        }
    }

    /// Once Pingora has closed the listeners (at once on SIGTERM, after the socket hand-over
    /// on SIGQUIT) and then the connections left waiting for a request, exits the process
    /// when nothing is in flight and no client connection is open (or, [`SETTLE`] past that
    /// close, only ones with nothing in flight are), or at the end of the grace period.
    /// Runs on its own thread because Pingora's main thread sleeps meanwhile.
    fn spawn_drain(&self) {
        let Some(mut phases) = self.phases.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let inflight = self.inflight.clone();
        let connections = self.connections.clone();
        let grace_period = self.grace_period;
        thread::spawn(move || {
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
            let deadline = Instant::now() + grace_period;
            let mut idle_closed_at = None;
            let mut idle_polls = 0;
            while idle_polls < 2 {
                let now = Instant::now();
                if now >= deadline {
                    log::warn!(
                        "grace period over with {} request(s) still in flight; exiting",
                        inflight.count()
                    );
                    exit();
                }
                if idle_closed_at.is_none() && connections.idle_closed() {
                    idle_closed_at = Some(now);
                }
                // What stays open after the idle close with nothing in flight is a response
                // being finished, or an HTTP/2 client slow to act on its GOAWAY.
                let settled =
                    idle_closed_at.is_some_and(|at| connections.open() == 0 || now >= at + SETTLE);
                idle_polls = if inflight.count() == 0 && settled {
                    idle_polls + 1
                } else {
                    0
                };
                thread::sleep(DRAIN_POLL);
            }
            log::info!("all in-flight requests finished; exiting");
            exit();
        });
    }
}

impl Signals {
    /// Starts the installed binary with `-u`; true once it waits for the sockets. A failure
    /// is logged and this process serves on.
    async fn start_successor(&self) -> bool {
        log::info!("SIGUSR2: starting the installed binary to take the listening sockets over");
        let (config, sock) = (self.config.clone(), self.upgrade_sock.clone());
        let started =
            tokio::task::spawn_blocking(move || daemon::start_successor(&config, &sock)).await;
        let failure: Box<dyn std::fmt::Display> = match started {
            Ok(Ok(pid)) => {
                log::info!("process {pid} waits for the sockets; handing them over");
                return true;
            }
            Ok(Err(e)) => Box::new(e),
            Err(e) => Box::new(e),
        };
        log::error!("upgrade abandoned, this process serves on: {failure}");
        false
    }
}

fn exit() -> ! {
    log::logger().flush();
    std::process::exit(0)
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit), Ok(mut usr2)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
            signal(SignalKind::user_defined2()),
        ) else {
            log::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = term.recv() => {
                    log::info!(
                        "SIGTERM: no longer accepting; waiting up to {:?} for {} request(s) in flight",
                        self.grace_period,
                        self.inflight.count()
                    );
                    self.spawn_drain();
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = quit.recv() => {
                    log::info!("SIGQUIT: handing the listening sockets to the new process");
                    self.spawn_drain();
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ = usr2.recv() => {
                    if self.start_successor().await {
                        self.spawn_drain();
                        return ShutdownSignal::GracefulUpgrade;
                    }
                }
                _ = int.recv() => {
                    // Not Pingora's fast shutdown: with a request in flight, its no-steal
                    // runtime can stop under a listener whose accept loop then fails and
                    // logs without end, and the process never exits (seen 1 run in 20).
                    log::info!("SIGINT: exiting at once");
                    exit();
                }
            }
        }
    }
}
