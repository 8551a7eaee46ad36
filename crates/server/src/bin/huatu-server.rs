//! `huatu-server`: the same as `huatu serve`, as a binary of its own (the crate's
//! restart tests kill it to simulate a crash).

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "huatu-server",
    version,
    about = "huatu's HTTP API, job queue and web page"
)]
struct Cli {
    #[command(flatten)]
    serve: huatu_server::ServeArgs,
}

fn main() -> ExitCode {
    match huatu_server::run(Cli::parse().serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut cause = std::error::Error::source(&error);
            while let Some(next) = cause {
                eprintln!("  caused by: {next}");
                cause = next.source();
            }
            ExitCode::FAILURE
        }
    }
}
