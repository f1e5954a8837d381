use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    edgeproxy::cli::main(edgeproxy::cli::Cli::parse())
}
