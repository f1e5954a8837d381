//! The command line: `edgeproxy -c FILE` runs, `edgeproxy check -c FILE` validates,
//! `edgeproxy reload -c FILE` validates and makes the running process reload.

use crate::access_log;
use crate::acme;
use crate::config::{self, AccessLogTarget, Config, NameLookup};
use crate::process::error::StartError;
use crate::process::listeners;
use clap::{Parser, Subcommand};
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the config is read from when `-c` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/edgeproxy/edgeproxy.yaml";

/// An edge proxy and HTTP load balancer.
#[derive(Debug, Parser)]
#[command(name = "edgeproxy", version, about)]
pub struct Cli {
    /// The YAML config file.
    #[arg(short = 'c', long = "config", global = true, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Take the listening sockets over from the running edgeproxy (start this one, then send
    /// the old one SIGQUIT): a binary upgrade that refuses no connection.
    #[arg(short = 'u', long = "upgrade")]
    pub upgrade: bool,

    /// Run in the background: return once the server has started and written
    /// `server.pid_file` (for systemd's `Type=forking`).
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    /// What to do; without one, run the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config file and exit, like `nginx -t`: 0 if valid, 1 if not.
    Check {
        /// Check a file meant for another host (a container, an EC2 instance): server host
        /// names are not looked up, listening addresses not bound, the access log not opened.
        #[arg(long)]
        offline: bool,
    },
    /// Validate the config file, then tell the running edgeproxy (found through
    /// `server.pid_file`) to reload it, like `nginx -s reload`.
    Reload,
}

/// Runs what the command line asks for.
pub fn main(cli: Cli) -> ExitCode {
    let offline = matches!(cli.command, Some(Command::Check { offline: true }));
    let names = if offline {
        NameLookup::Skip
    } else {
        NameLookup::Resolve
    };
    let config = match config::load_with(&cli.config, names) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("edgeproxy: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Check { offline: true }) => valid(&cli.config, &config),
        Some(Command::Check { offline: false }) => check(&cli.config, &config),
        Some(Command::Reload) => match signal_reload(&config, &cli.config) {
            Ok(pid) => {
                println!(
                    "edgeproxy: {} is valid; asked process {pid} to reload",
                    cli.config.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edgeproxy: error: {}: {e}", cli.config.display());
                ExitCode::FAILURE
            }
        },
        None if cli.daemon => match background(&cli, &config) {
            Ok(pid) => {
                println!("edgeproxy: started in the background as process {pid}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edgeproxy: error: {}: {e}", cli.config.display());
                ExitCode::FAILURE
            }
        },
        None => match crate::process::server::run(config, &cli.config, cli.upgrade) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("edgeproxy: error: {}: {e}", cli.config.display());
                ExitCode::FAILURE
            }
        },
    }
}

fn background(cli: &Cli, config: &Config) -> Result<u32, StartError> {
    let pid_file = config
        .process
        .pid_file
        .as_ref()
        .ok_or(StartError::NoPidFile)?;
    // The child reads the file from its own working directory, which is this one.
    Ok(crate::process::daemon::start_in_background(
        &cli.config,
        cli.upgrade,
        pid_file,
    )?)
}

/// Reports on a parsed config: listeners that cannot be bound are errors, except those in use,
/// which is what a running edgeproxy does to its own ports.
fn check(path: &std::path::Path, config: &Config) -> ExitCode {
    let mut failed = false;
    for problem in listeners::probe(config.process.listeners()) {
        if problem.in_use() {
            eprintln!(
                "edgeproxy: warning: {}: {}",
                path.display(),
                problem.describe()
            );
        } else {
            eprintln!(
                "edgeproxy: error: {}: {}",
                path.display(),
                problem.describe()
            );
            failed = true;
        }
    }
    if let AccessLogTarget::File(file) = &config.process.access_log {
        if let Err(e) = access_log::open_file(file) {
            eprintln!(
                "edgeproxy: error: {}: server.access_log: cannot open {e}",
                path.display()
            );
            failed = true;
        }
    }
    if let Some(dir) = config.process.pid_file.as_deref().and_then(Path::parent) {
        if !dir.is_dir() {
            eprintln!(
                "edgeproxy: error: {}: server.pid_file: directory {} does not exist, so the pid \
                 cannot be written there; create it or choose another path",
                path.display(),
                dir.display()
            );
            failed = true;
        }
    }
    for warning in config
        .server
        .acme()
        .map(acme::domain_warnings)
        .unwrap_or_default()
    {
        eprintln!("edgeproxy: warning: {}: {warning}", path.display());
    }
    if failed {
        return ExitCode::FAILURE;
    }
    valid(path, config)
}

fn valid(path: &std::path::Path, config: &Config) -> ExitCode {
    if let Some(warning) = config.metrics_exposure_warning() {
        eprintln!("edgeproxy: warning: {}: {warning}", path.display());
    }
    println!(
        "edgeproxy: {} is valid: {}",
        path.display(),
        summary(config)
    );
    ExitCode::SUCCESS
}

/// Why `edgeproxy reload` did not signal the running process.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error(
        "server.pid_file is not set, so the running process cannot be found; set it, or send \
         SIGHUP to the process yourself"
    )]
    NoPidFile,
    #[error("server.pid_file: cannot read {}: {source}; is edgeproxy running?", path.display())]
    UnreadablePidFile { path: PathBuf, source: io::Error },
    #[error("{} does not hold a process id", path.display())]
    NoPid { path: PathBuf },
    #[error("process {pid} from {} is not a running edgeproxy; the pid file is stale", path.display())]
    Stale { pid: i32, path: PathBuf },
    #[error(
        "cannot tell which program process {pid} runs (/proc/{pid}/exe: {source}); run this as \
         the proxy's user or as root"
    )]
    UnknownProgram { pid: i32, source: io::Error },
    #[error("cannot read process {pid}'s {what}: {source}")]
    UnreadableProcess {
        pid: i32,
        what: &'static str,
        source: io::Error,
    },
    #[error("cannot read process {pid}'s command line as edgeproxy's")]
    ForeignCommandLine { pid: i32 },
    #[error(
        "process {pid} runs with {}, and a reload makes it read that file again, not this one; \
         write the change to {} (this file was only checked)",
        theirs.display(),
        theirs.display()
    )]
    OtherFile { pid: i32, theirs: PathBuf },
    #[error("cannot signal process {pid}: {source}")]
    Signal { pid: i32, source: io::Error },
}

/// Sends SIGHUP to the process named by `server.pid_file`, once sure it is an edgeproxy
/// running on this same file: a stale pid file may name some other process by now, and a
/// process started with another file would re-read that one, not the file just checked.
fn signal_reload(config: &Config, path: &Path) -> Result<i32, ReloadError> {
    let pid_file = config
        .process
        .pid_file
        .as_ref()
        .ok_or(ReloadError::NoPidFile)?;
    let text =
        std::fs::read_to_string(pid_file).map_err(|source| ReloadError::UnreadablePidFile {
            path: pid_file.clone(),
            source,
        })?;
    let pid: i32 = text
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| ReloadError::NoPid {
            path: pid_file.clone(),
        })?;
    if !runs_edgeproxy(pid)? {
        return Err(ReloadError::Stale {
            pid,
            path: pid_file.clone(),
        });
    }
    let theirs = config_of(pid)?;
    if !same_file(&theirs, path) {
        return Err(ReloadError::OtherFile { pid, theirs });
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(ReloadError::Signal {
            pid,
            source: io::Error::last_os_error(),
        });
    }
    Ok(pid)
}

/// Whether process `pid` runs a program of this one's file name. Its command line is no proof:
/// `tail -f edgeproxy.log` or `vim edgeproxy.yaml` mention edgeproxy too.
fn runs_edgeproxy(pid: i32) -> Result<bool, ReloadError> {
    let exe = match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => exe,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(ReloadError::UnknownProgram { pid, source }),
    };
    // An upgraded binary leaves the running one's link as "<path> (deleted)".
    let name = |path: &Path| {
        path.file_name().map(|n| {
            n.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_owned()
        })
    };
    let ours = std::env::current_exe()
        .ok()
        .and_then(|p| name(&p))
        .unwrap_or_else(|| "edgeproxy".to_owned());
    Ok(name(&exe).is_some_and(|theirs| theirs == ours))
}

/// The config file process `pid` (an edgeproxy) was started with, read from its command line
/// as this command line is read, relative paths taken from its working directory.
fn config_of(pid: i32) -> Result<PathBuf, ReloadError> {
    let unreadable = |what: &'static str| {
        move |source: io::Error| ReloadError::UnreadableProcess { pid, what, source }
    };
    let cmdline =
        std::fs::read(format!("/proc/{pid}/cmdline")).map_err(unreadable("command line"))?;
    let args = cmdline
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| std::ffi::OsString::from(String::from_utf8_lossy(arg).into_owned()));
    let cli = Cli::try_parse_from(args).map_err(|_| ReloadError::ForeignCommandLine { pid })?;
    if cli.config.is_absolute() {
        return Ok(cli.config);
    }
    let cwd =
        std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(unreadable("working directory"))?;
    Ok(cwd.join(cli.config))
}

/// Whether two paths name one file (through links and relative parts).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn summary(config: &Config) -> String {
    let servers: usize = config.upstreams.iter().map(|u| u.servers.len()).sum();
    format!(
        "{} listener(s), {} upstream(s) with {} server(s), {} route(s)",
        config.process.listen.len() + config.process.https.as_ref().map_or(0, |t| t.listen.len()),
        config.upstreams.len(),
        servers,
        config.routes.len()
    )
}
