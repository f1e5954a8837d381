use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the request path allocates and frees many small
/// buffers across tasks, which glibc's arenas serve markedly slower (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    edgeproxy::cli::main(edgeproxy::cli::Cli::parse())
}
