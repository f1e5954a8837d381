//! The configuration: read from YAML once, validated once, then immutable.
//!
//! [`load`] is the only entry point. The file format lives in [`file`], scalar value parsing in
//! [`values`], and the checks that turn a file into a [`Config`] in [`validate`].

mod acme;
pub(crate) mod certificate;
mod defaults;
mod error;
mod file;
mod route;
mod settings;
mod upstream;
mod validate;
pub(crate) mod values;

pub(crate) use acme::AcmeSettings;
pub(crate) use certificate::{CertFile, Certificate};
pub(crate) use error::ConfigError;
pub(crate) use route::{RateLimit, Route};
pub(crate) use settings::{
    AccessLogFormat, AccessLogTarget, CacheSettings, CertificateSource, ClientLimits,
    HttpsListeners, MetricsSettings, ProcessSettings, ServerSettings, Tls, WhenFull,
};
pub(crate) use upstream::{
    Balance, CheckKind, HashKey, HealthCheck, Probe, Resolve, Timeouts, Upstream, UpstreamServer,
    WhenAllDown,
};

use std::net::SocketAddr;
use std::path::Path;

/// A validated configuration: what is fixed when the process starts, and what a reload puts
/// in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Restart-only settings: sockets, threads, and what is made once at start.
    pub process: ProcessSettings,
    /// The `server:` settings a reload changes.
    pub server: ServerSettings,
    /// Who may read the metrics listener, if there is one.
    pub metrics: Option<MetricsSettings>,
    /// Upstreams, ordered by name.
    pub upstreams: Vec<Upstream>,
    /// Routes in file order; [`crate::runtime::router::Router`] decides precedence.
    pub routes: Vec<Route>,
}

impl Config {
    /// Puts back the process settings of the `running` config, which a reload cannot change.
    /// The live settings that only mean something with one of them (the certificate with the
    /// HTTPS listeners, `metrics.allow` with the metrics listener) are kept too when the file
    /// adds or removes it.
    pub fn keep_process(&mut self, running: &Config) {
        self.process.clone_from(&running.process);
        if self.server.tls.is_some() != self.process.https.is_some() {
            self.server.tls.clone_from(&running.server.tls);
        }
        if self.metrics.is_some() != self.process.metrics_listen.is_some() {
            self.metrics.clone_from(&running.metrics);
        }
    }

    /// The port plain-HTTP requests are redirected to: the first HTTPS listener's.
    pub fn https_redirect_port(&self) -> u16 {
        let first = self.process.https.as_ref().and_then(|h| h.listen.first());
        first.map_or(443, SocketAddr::port)
    }

    /// A warning when `metrics.listen` takes connections from other hosts while
    /// `metrics.allow` lets anyone in: the status page and metrics name every backend, which
    /// the internet need not know.
    pub fn metrics_exposure_warning(&self) -> Option<String> {
        let listen = self.process.metrics_listen?;
        let open = self.metrics.as_ref().is_none_or(|m| m.allow.is_empty());
        (!listen.ip().is_loopback() && open).then(|| {
            format!(
                "metrics.listen {listen} takes connections from other hosts and metrics.allow \
                 is empty: anyone who reaches it can read /metrics and /status; list the \
                 scrapers' networks in metrics.allow"
            )
        })
    }

    /// The upstream a route sends to.
    pub fn route_upstream(&self, route: &Route) -> &Upstream {
        &self.upstreams[route.upstream]
    }
}

/// The servers a name's addresses make under `resolve`: `all` takes each once, sorted (IPv4
/// first), so that a DNS server rotating its answers changes nothing; `first` takes the first
/// IPv4 one, as most container and EC2 networks are IPv4, else the first.
pub(crate) fn chosen_addresses(
    resolve: Resolve,
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Vec<SocketAddr> {
    let mut all: Vec<SocketAddr> = Vec::new();
    for addr in addrs {
        if !all.contains(&addr) {
            all.push(addr);
        }
    }
    match resolve {
        Resolve::All => {
            all.sort();
            all
        }
        Resolve::First => all
            .iter()
            .find(|a| a.is_ipv4())
            .or(all.first())
            .copied()
            .into_iter()
            .collect(),
    }
}

/// Whether loading a config looks server host names up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameLookup {
    /// Resolve every name now; a name that does not resolve is an error.
    Resolve,
    /// Leave names alone, for checking a file meant for another host (a container network,
    /// an EC2 VPC): such servers get the unspecified address until re-resolution.
    Skip,
}

/// Reads, parses and validates a config file; resolves server host names.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, NameLookup::Resolve)
}

/// [`load`], choosing whether host names are looked up.
pub(crate) fn load_with(path: &Path, names: NameLookup) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            path,
            format!("cannot read the file: {e}; check the path given with -c"),
        )
    })?;
    parse_with(path, &text, names)
}

/// Parses and validates config text; `path` is only used in error messages.
#[cfg(test)]
pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(path, text, NameLookup::Resolve)
}

/// Parses and validates config text, choosing whether host names are looked up; `path` is
/// only used in error messages.
pub fn parse_with(path: &Path, text: &str, names: NameLookup) -> Result<Config, ConfigError> {
    let file: file::FileConfig = serde_yaml::from_str(text)
        .map_err(|e| ConfigError::from_yaml(path, &e).with_syntax_hint(text))?;
    validate::validate(file, names).map_err(|e| e.in_file(path))
}

#[cfg(test)]
mod tests;
