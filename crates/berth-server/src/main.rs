//! `berth`: the Berth command line (`berth serve`, `berth account`, `berth policy`).
//! Everything lives in the `berth_server` library; this is the entry point.

/// mimalloc: the policy tools and the server allocate many small strings per request,
/// where it is markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = berth_server::cli::Cli::parse();
    match berth_server::cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::from(2)
        }
    }
}
