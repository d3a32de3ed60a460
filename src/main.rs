//! The `unipay` binary: arguments in, a `Command` out, `cli::run`, an exit code.

use std::process::ExitCode;

use unipay::cli;
use unipay::config::{Command, UsageError};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        // The HTTP client logs whole URLs at debug level, and a URL may carry a signature or
        // a merchant's token: never below info, whatever RUST_LOG says.
        .filter_module("ureq", log::LevelFilter::Info)
        .target(env_logger::Target::Stderr)
        .init();
    let command = match Command::parse(std::env::args().skip(1).collect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\nRun `unipay --help` for usage.");
            return ExitCode::from(2);
        }
    };
    match cli::run(command) {
        Ok(()) => ExitCode::SUCCESS,
        // What was asked cannot be done as given (a key that does not load, …).
        Err(e) if e.is::<UsageError>() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
