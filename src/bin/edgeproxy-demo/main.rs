//! A demo backend that behaves like the FastAPI/Flask apps edgeproxy is put in front of:
//! `GET /`, `GET /health`, `POST /models`, `GET /events` (SSE), `GET /echo`, `GET /slow?ms=N`,
//! `GET /status/CODE`. The quickstart, the tests and the Docker demo run it.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod models;

use app::DemoApp;
use clap::Parser;
use edgeproxy::DurationValue;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use std::net::SocketAddr;
use std::time::Duration;

/// A demo backend for edgeproxy.
#[derive(Debug, Parser)]
#[command(name = "edgeproxy-demo", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "DEMO_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,

    /// This instance's id, returned as `instance` and `X-Instance-ID`.
    #[arg(long, env = "INSTANCE_ID", default_value = "1")]
    id: String,

    /// Time between two events on /events (e.g. 500ms, 1s); `?interval_ms=` overrides it.
    #[arg(long, env = "EVENT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    event_interval: Duration,

    /// Extra time before every answer, to play a slow instance (e.g. 600ms).
    #[arg(long, env = "RESPONSE_DELAY", default_value = "0ms", value_parser = parse_duration)]
    delay: Duration,

    /// Also accept HTTP/2 over plain TCP (h2c), as gRPC servers do.
    #[arg(long)]
    h2c: bool,

    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    DurationValue::parse(text).map(|d| d.0)
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    if let Err(e) = std::net::TcpListener::bind(args.listen) {
        eprintln!("edgeproxy-demo: cannot listen on {}: {e}", args.listen);
        std::process::exit(1);
    }
    let conf = ServerConf {
        threads: args.threads.max(1),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut service = Service::new(
        "edgeproxy-demo".to_string(),
        DemoApp::new(args.id.clone(), args.event_interval, args.delay, args.h2c),
    );
    service.add_tcp(&args.listen.to_string());
    server.add_service(service);
    eprintln!(
        "edgeproxy-demo: instance {} listening on {}",
        args.id, args.listen
    );
    server.run_forever();
}
