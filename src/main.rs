//! The `driftwatch` binary: parses the command line and dispatches; everything else is in the
//! library (`driftwatch::commands`).

use std::process::ExitCode;

use clap::Parser;

use driftwatch::cli::Cli;

fn main() -> ExitCode {
    match driftwatch::commands::execute(Cli::parse().command) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(e) => {
            // The message and the causes it does not already say; never a backtrace: these are
            // users' errors to act on.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !message.contains(&cause_text) {
                    message = format!("{message}: {cause_text}");
                }
                source = cause.source();
            }
            eprintln!("error: {message}");
            ExitCode::from(e.exit_code())
        }
    }
}
