//! `berth`: the Berth command line. For now the policy tools (`berth policy check`,
//! `simulate`, `decide`); the registry server (`berth serve`) joins it next. Holds no
//! policy logic of its own: everything is decided by `berth-iam`.

mod cli;

/// mimalloc: the policy tools and the server allocate many small strings per request,
/// where it is markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::from(2)
        }
    }
}
