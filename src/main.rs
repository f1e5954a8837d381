use clap::Parser;
use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: the request path allocates and frees many small
/// buffers, which glibc serves markedly slower (see bench/README.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    edgeproxy::logging::init();
    edgeproxy::cli::main(edgeproxy::cli::Cli::parse())
}
