//! `berth`: the Berth command line. For now the policy tools (`berth policy check`,
//! `simulate`, `decide`); the registry server (`berth serve`) joins it next. Holds no
//! policy logic of its own: everything is decided by `berth-iam`.

mod cli;

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
