#![warn(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: the request path allocates and frees many small
/// buffers, which glibc serves markedly slower (see bench/README.md). The `system-allocator`
/// feature leaves glibc's in place, for heap profilers that hook it (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start-up. Pingora reads large bodies into 64 KiB buffers
/// (and, before patches/pingora/0003, gave one to every response), above jemalloc's default
/// thread-cache limit of 32 KiB: each one was carved from and returned to the arena (extent
/// search, split, merge) instead of taken from the cache.
#[cfg(not(feature = "system-allocator"))]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 18] = b"tcache_max:131072\0";

fn main() -> ExitCode {
    edgeproxy::init_logging();
    edgeproxy::cli::main(edgeproxy::cli::Cli::parse())
}
