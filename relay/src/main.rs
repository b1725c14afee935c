//! `psgate`: the relay and its command line. Thin: parse arguments, set up logging, call the library.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = psgate_relay::cli::Cli::parse();
    psgate_relay::cli::run(cli)
}
