//! Assembling and running the Pingora server from a validated config.

use crate::access_log::AccessLog;
use crate::acme::{AcmeService, AcmeState};
use crate::admin::{self, Sampler, StatusSources};
use crate::config::{Config, ProcessSettings, WhenFull};
use crate::connections::listeners::ListenerCounts;
use crate::connections::slots::{Slots, DESCRIPTORS_PER_CONNECTION, FD_RESERVE};
use crate::connections::{Connections, LimitCounters};
use crate::health::HealthChecker;
use crate::metrics::Metrics;
use crate::process::error::StartError;
use crate::process::listeners;
use crate::process::reload::Reloader;
use crate::process::shutdown::Signals;
use crate::process::tls_listener;
use crate::proxy::EdgeProxy;
use crate::resolver::Resolver;
use crate::runtime::reloads::ReloadLog;
use crate::runtime::snapshot::{LiveSnapshot, Snapshot};
use crate::sync::inflight::Inflight;
use pingora::apps::HttpServerOptions;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::http_proxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The read buffer of a plain-HTTP client connection: none. Pingora's HTTP/1 session reads
/// request headers into a buffer of its own and bodies into the body buffer, so an L4 buffer
/// under them only adds a copy, and it is held by every open connection, idle ones included
/// (16 KiB cost 4 KiB of resident memory per idle keep-alive connection). TLS connections keep
/// Pingora's default, which holds whole TLS records.
const DOWNSTREAM_READ_BUFFER: usize = 0;

/// Tasks accepting on each listening socket. One task accepts a bounded batch per turn and
/// then waits behind every connection ready to run: a burst of thousands of new clients
/// overflows the kernel's accept queue, and the clients it drops wait for their SYN
/// retransmission. With one task, the first retransmission (after 1 s) often found the
/// queue still full and the second (after 3 s) set the p99; with four, no run did
/// (bench/README.md).
const ACCEPT_TASKS_PER_LISTENER: usize = 4;

/// Runs the proxy with `config`, read from `path`, until a signal stops it; SIGHUP reloads
/// `path`. With `upgrade`, the listening sockets are taken over from the running edgeproxy
/// instead of bound. Returns an error, before anything starts, when a listening address
/// cannot be bound.
pub(crate) fn run(config: Config, path: &Path, upgrade: bool) -> Result<(), StartError> {
    let fd_limit = prepare_host(&config, upgrade)?;
    let process = config.process.clone();
    let limits = config.server.limits;
    let slots = Arc::new(Slots::new(
        fd_limit,
        limits.max_connections,
        process.when_full,
    ));
    log_connection_limit(&slots, limits.max_connections, fd_limit, process.when_full);
    let mut server = pingora_server(&process, slots.limit(limits.max_connections), upgrade);

    let inflight = Inflight::default();
    let metrics = Arc::new(Metrics::new()?);
    if let Some(warning) = config.metrics_exposure_warning() {
        log::warn!("{warning}");
    }
    let live = Arc::new(LiveSnapshot::new(Snapshot::new(config, &metrics, None)));
    let acme = Arc::new(AcmeState::default());
    let proxy_listeners = process
        .listeners()
        .filter(|(key, _)| *key != "metrics.listen");
    let shared = Shared {
        live: Arc::clone(&live),
        metrics: Arc::clone(&metrics),
        acme: Arc::clone(&acme),
        reloads: Arc::default(),
        listener_counts: Arc::new(ListenerCounts::new(proxy_listeners.map(|(_, a)| *a))),
    };
    let connection_limit = slots.limit(limits.max_connections);
    add_admin(&mut server, &process, path, &shared, connection_limit)?;
    add_background_services(&mut server, path, &shared);
    let access_log = AccessLog::open(&process.access_log, process.access_log_format)
        .map_err(StartError::AccessLog)?;
    let mut app = http_proxy(
        &server.configuration,
        EdgeProxy::new(
            Arc::clone(&live),
            inflight.clone(),
            access_log,
            Arc::clone(&slots),
            Arc::clone(&acme),
        ),
    );
    app.server_options = Some(http_options(&process, limits.keepalive_timeout));
    let connections = Connections::new(
        metrics.downstream_connections.clone(),
        inflight.clone(),
        Arc::clone(&live),
        LimitCounters::new(&metrics.limited),
        Arc::clone(&slots),
        Arc::clone(&shared.listener_counts),
    );
    let mut proxy = Service::new("edgeproxy".to_string(), connections.app(app));
    if let Some(queue) = slots.queue() {
        proxy.set_connection_limit(queue);
    }
    let listening = add_listeners(&mut proxy, &process, &live, &acme)?;
    server.add_service(proxy);
    log_start(&listening, process.metrics_listen);

    let phases = server.watch_execution_phase();
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals::new(
            path.to_path_buf(),
            process.upgrade_sock.clone(),
            inflight,
            connections,
            process.grace_period,
            phases,
        )),
    });
    Ok(())
}

/// What start-up needs of the host before Pingora starts: the listening addresses free
/// (unless they are taken over), the pid file written, descriptors for every connection.
/// Returns the open-file limit.
fn prepare_host(config: &Config, upgrade: bool) -> Result<u64, StartError> {
    if !upgrade {
        let problems = listeners::probe(config.process.listeners());
        if let Some(problem) = problems.into_iter().next() {
            return Err(StartError::Listen(problem));
        }
    }
    if let Some(pid_file) = &config.process.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id())).map_err(|source| {
            StartError::PidFile {
                path: pid_file.clone(),
                source,
            }
        })?;
    }
    let fd_limit = raise_fd_limit();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        log::warn!(
            "running as root: a flaw anywhere in the proxy would hand over the host; run it \
             as its own user, with CAP_NET_BIND_SERVICE for ports below 1024 (the shipped \
             systemd unit and Dockerfile run it as user edgeproxy)"
        );
    }
    Ok(fd_limit)
}

/// The Pingora server, bootstrapped: threads, shutdown timers, upstream pool, upgrade socket.
fn pingora_server(process: &ProcessSettings, max_connections: usize, upgrade: bool) -> Server {
    let conf = ServerConf {
        threads: process.threads,
        // A backstop only: `Signals` exits as soon as requests drain, or at the exact
        // grace period; Pingora's own timer counts whole seconds.
        grace_period_seconds: Some(process.grace_period.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        work_stealing: false,
        listener_tasks_per_fd: ACCEPT_TASKS_PER_LISTENER,
        upstream_keepalive_pool_size: upstream_keepalive_per_thread(
            max_connections,
            process.threads,
        ),
        upgrade_sock: process.upgrade_sock.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    server
}

/// What the background services share with the request path and the admin listener.
struct Shared {
    live: Arc<LiveSnapshot>,
    metrics: Arc<Metrics>,
    acme: Arc<AcmeState>,
    reloads: Arc<ReloadLog>,
    listener_counts: Arc<ListenerCounts>,
}

/// The scrape-time gauges, and the metrics listener with its status page if one is set.
fn add_admin(
    server: &mut Server,
    process: &ProcessSettings,
    path: &Path,
    shared: &Shared,
    connection_limit: usize,
) -> Result<(), StartError> {
    let Shared {
        live,
        metrics,
        acme,
        ..
    } = shared;
    admin::watch(metrics, Arc::clone(live), Arc::clone(acme))?;
    if let Some(listen) = process.metrics_listen {
        let sources = StatusSources {
            acme: Arc::clone(acme),
            reloads: Arc::clone(&shared.reloads),
            config_path: path.to_path_buf(),
            started: SystemTime::now(),
            open_connections: metrics.downstream_connections.clone(),
            connection_limit,
            listener_counts: Arc::clone(&shared.listener_counts),
        };
        server.add_service(admin::service(
            metrics,
            listen,
            Arc::clone(live),
            Arc::new(sources),
        ));
    }
    Ok(())
}

/// Health checks, name lookups, certificates, the status page's sampling and reloads, always
/// running: a reload may add health checks or host names to an upstream, or ACME domains.
fn add_background_services(server: &mut Server, path: &Path, shared: &Shared) {
    let Shared {
        live,
        metrics,
        acme,
        reloads,
        ..
    } = shared;
    server.add_service(background_service(
        "certificates",
        AcmeService::new(Arc::clone(live), Arc::clone(acme), metrics),
    ));
    server.add_service(background_service(
        "status sampling",
        Sampler::new(Arc::clone(live)),
    ));
    server.add_service(background_service(
        "health checks",
        HealthChecker::new(Arc::clone(live)),
    ));
    server.add_service(background_service(
        "name resolution",
        Resolver::new(Arc::clone(live), Arc::clone(metrics)),
    ));
    server.add_service(background_service(
        "config reload",
        Reloader::new(
            path.to_path_buf(),
            Arc::clone(live),
            Arc::clone(metrics),
            Arc::clone(reloads),
        ),
    ));
}

/// The options of the client side of every connection.
fn http_options(process: &ProcessSettings, keepalive_timeout: Duration) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    // An HTTP/2 connection with no stream open is idle; without this it could stay forever.
    options.h2_idle_timeout = Some(keepalive_timeout);
    // CONNECT is refused by edgeproxy's own request filter rather than by Pingora before any
    // phase runs, so that the refusal is logged and counted like every other answer.
    options.allow_connect_method_proxying = true;
    // Without the case, each header is one map instead of two: a tenth of the instructions
    // of a proxied request (patches/pingora/0018).
    options.drop_header_case = !process.preserve_header_case;
    options
}

/// Adds the plain-HTTP and HTTPS listeners; returns their URLs.
fn add_listeners<A>(
    proxy: &mut Service<A>,
    process: &ProcessSettings,
    live: &Arc<LiveSnapshot>,
    acme: &Arc<AcmeState>,
) -> Result<Vec<String>, StartError> {
    for addr in &process.listen {
        proxy.add_listener(
            ListenerConfig::tcp(addr.to_string())
                .l4_buffer(L4BufferSettings::default().read(DOWNSTREAM_READ_BUFFER)),
        );
    }
    let mut listening: Vec<String> = process
        .listen
        .iter()
        .map(|a| format!("http://{a}"))
        .collect();
    if let Some(https) = &process.https {
        for addr in &https.listen {
            let tls =
                tls_listener::listener_settings(Arc::clone(live), Arc::clone(acme), https.http2)
                    .map_err(StartError::Tls)?;
            proxy.add_tls_with_settings(&addr.to_string(), None, tls);
            listening.push(format!("https://{addr}"));
        }
    }
    Ok(listening)
}

fn log_start(listening: &[String], metrics_listen: Option<SocketAddr>) {
    log::info!(
        "edgeproxy {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        listening.join(", ")
    );
    match metrics_listen {
        Some(addr) => {
            log::info!("metrics on http://{addr}/metrics, status on http://{addr}/status")
        }
        None => {
            log::info!("no metrics listener (set metrics.listen to serve /metrics and /status)")
        }
    }
}

/// Idle upstream connections kept for reuse, per worker thread (Pingora multiplies it by the
/// threads): in all, as many as there may be client connections. A smaller pool makes a
/// burst of concurrent requests open and close a new upstream connection for most of them,
/// as HAProxy, whose idle pool is unbounded by default, does not: at 10,000 client
/// connections, 1,024 in the pool made 84% of requests connect anew and 16,384 gave 1.5
/// times the requests/s at two thirds of the CPU per request (bench/README.md). Idle
/// connections stay only until the backend closes them.
fn upstream_keepalive_per_thread(max_connections: usize, threads: usize) -> usize {
    max_connections.div_ceil(threads.max(1))
}

/// Raises the open-file limit to the hard limit, as HAProxy does: the default soft limit
/// (often 1024) would refuse clients long before `server.max_connections`. Returns the
/// limit in force; unlimited if it cannot be read.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return u64::MAX;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        limit.rlim_cur
    }
}

/// Says how many connections are served at once, and warns when the open-file limit
/// lowered `server.max_connections`.
fn log_connection_limit(slots: &Slots, max_connections: usize, fd_limit: u64, when_full: WhenFull) {
    let limit = slots.limit(max_connections);
    let beyond = match when_full {
        WhenFull::Queue => "wait in the listen backlog",
        WhenFull::Reject => "get 503",
    };
    if limit < max_connections {
        let needed = DESCRIPTORS_PER_CONNECTION * max_connections as u64 + FD_RESERVE;
        log::warn!(
            "the open-file limit is {fd_limit}, below the {needed} that server.max_connections \
             ({max_connections}) needs, a client, a backend and a pooled connection each: serving at most \
             {limit} connections at once; raise it (LimitNOFILE= in systemd, ulimit -n) or \
             lower max_connections"
        );
    }
    log::info!("at most {limit} client connections at once; more {beyond} (server.when_full)");
}
