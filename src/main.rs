//! The certinel binary: parse the command line, run, print the error chain, exit.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = certinel::cli::Cli::parse();
    match certinel::cli::dispatch(cli) {
        Ok(code) => std::process::ExitCode::from(code.0),
        Err(error) => {
            eprintln!("certinel: error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
