//! Reloading the config on SIGHUP without dropping traffic: the file is validated exactly as
//! `edgeproxy check` does, then a new snapshot is published for new requests while requests in
//! flight finish on theirs. A file that fails validation changes nothing. Certificate files
//! are read again with the config, which is how a renewed certificate is put in force.

use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::runtime::reloads::ReloadLog;
use crate::runtime::snapshot::{LiveSnapshot, Snapshot};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::signal::unix::{signal, SignalKind};

/// Waits for SIGHUP and reloads.
pub(crate) struct Reloader {
    path: PathBuf,
    live: Arc<LiveSnapshot>,
    metrics: Arc<Metrics>,
    log: Arc<ReloadLog>,
}

impl Reloader {
    /// Reloads `path` into `live`, counting in `metrics` and recording the outcome in `log`.
    pub(crate) fn new(
        path: PathBuf,
        live: Arc<LiveSnapshot>,
        metrics: Arc<Metrics>,
        log: Arc<ReloadLog>,
    ) -> Self {
        Self {
            path,
            live,
            metrics,
            log,
        }
    }

    /// Reads the file again and, if it is valid, puts it in force.
    pub(crate) fn reload(&self) {
        let mut config = match config::load(&self.path) {
            Ok(config) => config,
            Err(e) => {
                log::error!("reload failed, the running config stays in force: {e}");
                self.log.record(Some(e.to_string()));
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                return;
            }
        };
        let old = self.live.load();
        for key in keep_restart_only(&old.config, &mut config) {
            log::warn!("reload: {key} changed, which takes a restart; the running value stays");
        }
        let upstreams = config.upstreams.len();
        let routes = config.routes.len();
        self.live
            .store(Snapshot::new(config, &self.metrics, Some(&old)));
        self.metrics.config_reloads.with_label_values(&["ok"]).inc();
        self.log.record(None);
        log::info!(
            "reloaded {}: {upstreams} upstream(s), {routes} route(s)",
            self.path.display()
        );
    }

    /// The stamps of the files `watch: true` follows: the config file and the certificate
    /// files the running config names.
    fn watched_stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        let snapshot = self.live.load();
        let certificate = snapshot.config.server.file_certificate();
        let certificate_files = certificate
            .into_iter()
            .flat_map(|c| [c.cert_path.as_path(), c.key_path.as_path()]);
        std::iter::once(self.path.as_path())
            .chain(certificate_files)
            .map(file_stamp)
            .collect()
    }
}

/// Puts back the running values of the settings a reload cannot change (sockets, threads,
/// the cache and log writers made at start), and names those that differed.
fn keep_restart_only(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let changed = running.process.changed_keys(&new.process);
    new.keep_process(running);
    changed
}

/// How often `watch: true` looks at the file.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What a file looks like from outside: a change to either means it was written. Symbolic
/// links are followed, so certbot's re-pointed `live/` links count as a change.
fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                log::error!("cannot listen for SIGHUP, reloads are off: {e}");
                return;
            }
        };
        let watch = self.live.load().config.process.watch;
        let mut ticker = tokio::time::interval(WATCH_EVERY);
        let mut seen = self.watched_stamps();
        let mut pending = false;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hangups.recv() => self.reload(),
                _ = ticker.tick(), if watch => {
                    // Debounced: reload once the file has stopped changing for one look, so
                    // an editor's several writes make one reload.
                    let now = self.watched_stamps();
                    if now != seen {
                        seen = now;
                        pending = true;
                    } else if pending {
                        pending = false;
                        self.reload();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_with, NameLookup};

    fn config(server: &str, metrics: &str) -> Config {
        let text = format!(
            "server:\n  listen: [\"127.0.0.1:8080\"]\n{server}{metrics}upstreams:\n  app: {{ servers: [ {{ addr: \"127.0.0.1:9000\" }} ] }}\nroutes:\n  - {{ path: /, upstream: app }}\n"
        );
        parse_with(Path::new("test.yaml"), &text, NameLookup::Skip).expect("valid test config")
    }

    #[test]
    fn an_unchanged_file_keeps_nothing() {
        let running = config("", "metrics: { listen: \"127.0.0.1:9091\" }\n");
        let mut new = running.clone();
        assert!(keep_restart_only(&running, &mut new).is_empty());
    }

    #[test]
    fn metrics_allow_reloads_while_its_listener_stays() {
        let running = config("", "metrics: { listen: \"127.0.0.1:9091\" }\n");
        let mut new = config(
            "",
            "metrics: { listen: \"127.0.0.1:9092\", allow: [10.0.0.0/8] }\n",
        );
        assert_eq!(keep_restart_only(&running, &mut new), ["metrics.listen"]);
        assert_eq!(new.process.metrics_listen, running.process.metrics_listen);
        let metrics = new.metrics.expect("metrics kept");
        assert_eq!(metrics.allow.len(), 1, "the new allow-list is taken");
    }

    #[test]
    fn adding_or_removing_metrics_takes_a_restart() {
        let with = config("", "metrics: { listen: \"127.0.0.1:9091\" }\n");
        let without = config("", "");
        let mut new = without.clone();
        assert_eq!(keep_restart_only(&with, &mut new).len(), 1);
        assert_eq!(new.metrics, with.metrics);
        let mut new = with.clone();
        assert_eq!(keep_restart_only(&without, &mut new).len(), 1);
        assert_eq!(new.metrics, None);
    }

    #[test]
    fn every_restart_only_server_key_is_kept_and_named() {
        let running = config("", "");
        let mut new = config(
            "  threads: 3\n  grace_period: 7s\n  access_log: off\n  watch: true\n  preserve_header_case: true\n",
            "",
        );
        let changed = keep_restart_only(&running, &mut new);
        for key in [
            "server.threads",
            "server.grace_period",
            "server.access_log",
            "server.watch",
            "server.preserve_header_case",
        ] {
            assert!(changed.contains(&key), "{key} not named in {changed:?}");
        }
        assert_eq!(new.server, running.server);
        assert_eq!(new.process, running.process);
    }

    #[test]
    fn listeners_files_tls_and_the_cache_size_are_kept_and_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = crate::config::certificate::testing::self_signed(dir.path(), "localhost");
        let tls = |listen: &str, http2: bool| {
            format!(
                "  tls: {{ listen: [\"{listen}\"], cert: {}, key: {}, http2: {http2} }}\n",
                cert.display(),
                key.display()
            )
        };
        let running = config(&tls("127.0.0.1:8443", true), "");
        let mut new = config(
            &format!(
                "  access_log_format: json\n  pid_file: /run/other.pid\n  upgrade_sock: /tmp/other.sock\n  when_full: reject\n{}",
                tls("127.0.0.1:9443", false)
            ),
            "cache: { max_size: 1MiB }\n",
        );
        new.process.listen = vec!["127.0.0.1:9090".parse().expect("an address")];
        let changed = keep_restart_only(&running, &mut new);
        for key in [
            "server.listen",
            "server.access_log_format",
            "server.pid_file",
            "server.upgrade_sock",
            "server.tls.listen",
            "server.tls.http2",
            "cache.max_size",
            "server.when_full",
        ] {
            assert!(changed.contains(&key), "{key} not named in {changed:?}");
        }
        assert_eq!(new.server, running.server);
        assert_eq!(new.process, running.process);

        // Adding or removing HTTPS is one change, and the running side stays.
        for (was, now) in [
            (&running, config("", "")),
            (&config("", ""), running.clone()),
        ] {
            let mut now = now;
            let changed = keep_restart_only(was, &mut now);
            assert_eq!(changed, ["server.tls (adding or removing HTTPS)"]);
            assert_eq!(now.server.tls, was.server.tls);
            assert_eq!(now.process.https, was.process.https);
        }
    }
}
