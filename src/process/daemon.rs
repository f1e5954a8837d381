//! Starting edgeproxy again: in the background (`-d`), and as the successor of a binary
//! upgrade (SIGUSR2). Both spawn the binary and wait until the new process has taken its
//! place, so that a service manager following `server.pid_file` (systemd's `Type=forking`
//! with `PIDFile=`) always finds the process that serves; a successor spawned by the running
//! process also stays in the service's control group, which systemd requires to follow it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a new process may take to reach the point waited for.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// Why a new process did not take its place.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    /// This process cannot tell which file it was started from.
    #[error("cannot find this binary: {0}")]
    NoBinary(std::io::Error),
    /// The binary could not be started.
    #[error("cannot start {}: {source}", exe.display())]
    Start {
        /// The binary.
        exe: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The new process exited first; it printed its own error.
    #[error("the new process exited ({status}) before it {waited_for}; its error is above")]
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// What it was waited for to do.
        waited_for: &'static str,
    },
    /// The new process took longer than [`START_TIMEOUT`], and was stopped.
    #[error("the new process did not {waited_for} within {START_TIMEOUT:?}; stopped it")]
    TimedOut {
        /// What it was waited for to do.
        waited_for: &'static str,
    },
    /// A socket left by an earlier upgrade cannot be removed.
    #[error("cannot remove {}: {source}", path.display())]
    StaleSocket {
        /// The socket.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
}

/// The binary at the path this process was started from: after a package upgrade replaced
/// the file, that is the new binary (Linux names the running, replaced one `… (deleted)`).
fn installed_binary() -> Result<PathBuf, SpawnError> {
    let exe = std::env::current_exe().map_err(SpawnError::NoBinary)?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// Starts `edgeproxy [-u] -c config` in its own session, with no standard input and this
/// process's standard output and error (the journal, under systemd).
fn spawn(exe: &Path, config: &Path, upgrade: bool) -> Result<Child, SpawnError> {
    let mut command = Command::new(exe);
    if upgrade {
        command.arg("-u");
    }
    command.arg("-c").arg(config).stdin(Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of ours; it detaches the
    // child from this terminal so that closing it does not hang the child up.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    command.spawn().map_err(|source| SpawnError::Start {
        exe: exe.to_path_buf(),
        source,
    })
}

/// Polls `ready` until it holds, failing if `child` exits first or [`START_TIMEOUT`] passes.
fn wait_for(
    child: &mut Child,
    waited_for: &'static str,
    mut ready: impl FnMut() -> bool,
) -> Result<(), SpawnError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(SpawnError::Exited { status, waited_for });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Err(SpawnError::TimedOut { waited_for });
        }
        std::thread::sleep(POLL);
    }
}

/// `-d`: starts edgeproxy in the foreground in a new session and returns its pid once it has
/// written it to `pid_file`, that is, once its config and listening addresses have passed.
pub(crate) fn start_in_background(
    config: &Path,
    upgrade: bool,
    pid_file: &Path,
) -> Result<u32, SpawnError> {
    let exe = installed_binary()?;
    let mut child = spawn(&exe, config, upgrade)?;
    let pid = child.id();
    wait_for(&mut child, "wrote its pid", || {
        read_pid(pid_file) == Some(pid)
    })?;
    Ok(pid)
}

/// SIGUSR2: starts the installed binary with `-u` and returns its pid once it waits for the
/// listening sockets on `upgrade_sock`; the caller then hands them over.
pub(crate) fn start_successor(config: &Path, upgrade_sock: &Path) -> Result<u32, SpawnError> {
    let exe = installed_binary()?;
    // A socket left by an earlier upgrade would look like the new process waiting.
    match std::fs::remove_file(upgrade_sock) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(SpawnError::StaleSocket {
                path: upgrade_sock.to_path_buf(),
                source,
            })
        }
    }
    let mut child = spawn(&exe, config, true)?;
    wait_for(&mut child, "waited for the sockets", || {
        upgrade_sock.exists()
    })?;
    Ok(child.id())
}

fn read_pid(pid_file: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}
