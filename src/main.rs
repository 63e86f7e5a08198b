//! The certinel binary: parse the command line, run, print the error chain, exit.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = certinel::cli::Cli::parse();
    match certinel::cli::dispatch(cli) {
        Ok(code) => std::process::ExitCode::from(code.0),
        Err(error) => {
            // The chain can quote a server's or a certificate's words: escape them.
            let chain = certinel::escape::Escaped(format!("{error:#}"));
            eprintln!("certinel: error: {chain}");
            std::process::ExitCode::from(2)
        }
    }
}
