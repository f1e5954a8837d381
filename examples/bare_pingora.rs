//! The floor that bench/run.sh measures edgeproxy against: a Pingora proxy that does nothing
//! but pick a backend round robin, with edgeproxy's runtime settings (one thread, no work
//! stealing, four accept tasks, 16,384 idle upstream connections, 16 KiB client read
//! buffers, jemalloc with the same options) and none of its features. The gap between the two is what edgeproxy's own
//! work costs; the gap between this and nginx is Pingora's.
//!
//!     cargo run --release --example bare_pingora -- 127.0.0.1:8080 127.0.0.1:9001 127.0.0.1:9002

use pingora::lb::{selection::RoundRobin, LoadBalancer};
use pingora::listeners::ListenerConfig;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::{configuration::ServerConf, Server};
use pingora::Result;
use std::sync::Arc;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The thread-cache limit edgeproxy sets (see src/main.rs), so that the two differ only in
/// what edgeproxy does per request.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 18] = b"tcache_max:131072\0";

struct Bare(Arc<LoadBalancer<RoundRobin>>);

impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        let backend = self
            .0
            .select(b"", 1)
            .expect("the backend list is not empty");
        Ok(Box::new(HttpPeer::new(backend.addr, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: bare_pingora LISTEN_ADDR BACKEND_ADDR...");
        std::process::exit(2);
    }
    let (listen, backends) = (&args[0], &args[1..]);
    let balancer = match LoadBalancer::try_from_iter(backends) {
        Ok(balancer) => balancer,
        Err(e) => {
            eprintln!("bare_pingora: bad backend address: {e}");
            std::process::exit(2);
        }
    };
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        listener_tasks_per_fd: 4,
        // What edgeproxy keeps with its default `max_connections` on one thread.
        upstream_keepalive_pool_size: 16384,
        // bench/run.sh stops it with SIGTERM between scenarios: no draining wanted.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy =
        pingora::proxy::http_proxy_service(&server.configuration, Bare(Arc::new(balancer)));
    proxy.add_listener(
        ListenerConfig::tcp(listen.clone()).l4_buffer(L4BufferSettings::default().read(0)),
    );
    server.add_service(proxy);
    server.run_forever();
}
