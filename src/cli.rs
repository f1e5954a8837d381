//! The command line: `edgeproxy -c FILE` runs, `edgeproxy check -c FILE` validates,
//! `edgeproxy reload -c FILE` validates and makes the running process reload.

use crate::access_log;
use crate::config::{self, AccessLogTarget, Config, NameLookup};
use crate::listeners;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
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
        Some(Command::Reload) => match signal_reload(&config) {
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
        None => match crate::server::run(config, &cli.config, cli.upgrade) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("edgeproxy: error: {}: {e}", cli.config.display());
                ExitCode::FAILURE
            }
        },
    }
}

fn background(cli: &Cli, config: &Config) -> Result<u32, String> {
    let pid_file =
        config.server.pid_file.as_ref().ok_or(
            "-d needs server.pid_file, which is how the background process is found; set it",
        )?;
    // The child reads the file from its own working directory, which is this one.
    crate::daemon::start_in_background(&cli.config, cli.upgrade, pid_file)
}

/// Reports on a parsed config: listeners that cannot be bound are errors, except those in use,
/// which is what a running edgeproxy does to its own ports.
fn check(path: &std::path::Path, config: &Config) -> ExitCode {
    let mut failed = false;
    for problem in listeners::probe(config.listeners()) {
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
    if let AccessLogTarget::File(file) = &config.server.access_log {
        if let Err(e) = access_log::open_file(file) {
            eprintln!(
                "edgeproxy: error: {}: server.access_log: cannot open {e}",
                path.display()
            );
            failed = true;
        }
    }
    if failed {
        return ExitCode::FAILURE;
    }
    valid(path, config)
}

fn valid(path: &std::path::Path, config: &Config) -> ExitCode {
    if let Some(warning) = config.metrics.as_ref().and_then(|m| m.exposure_warning()) {
        eprintln!("edgeproxy: warning: {}: {warning}", path.display());
    }
    println!(
        "edgeproxy: {} is valid: {}",
        path.display(),
        summary(config)
    );
    ExitCode::SUCCESS
}

/// Sends SIGHUP to the process named by `server.pid_file`, once sure it is an edgeproxy: a
/// stale pid file may name some other process by now.
fn signal_reload(config: &Config) -> Result<i32, String> {
    let pid_file = config.server.pid_file.as_ref().ok_or(
        "server.pid_file is not set, so the running process cannot be found; set it, or send SIGHUP to the process yourself",
    )?;
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        format!(
            "server.pid_file: cannot read {}: {e}; is edgeproxy running?",
            pid_file.display()
        )
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| format!("{} does not hold a process id", pid_file.display()))?;
    let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&command).contains("edgeproxy") {
        return Err(format!(
            "process {pid} from {} is not a running edgeproxy; the pid file is stale",
            pid_file.display()
        ));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(format!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(pid)
}

fn summary(config: &Config) -> String {
    let servers: usize = config.upstreams.iter().map(|u| u.servers.len()).sum();
    format!(
        "{} listener(s), {} upstream(s) with {} server(s), {} route(s)",
        config.server.listen.len() + config.server.tls.as_ref().map_or(0, |t| t.listen.len()),
        config.upstreams.len(),
        servers,
        config.routes.len()
    )
}
