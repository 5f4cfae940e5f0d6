//! The `securebuild` binary: parse the arguments, run the subcommand, map errors to exit codes
//! (0 success, 1 failure, 2 usage; a closed stdout counts as success).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use securebuild_builder::cli::{self, ApkCommand, Cli, Command};
use securebuild_builder::error::Error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = match &cli.command {
        Command::Apk(apk) => match &apk.command {
            ApkCommand::Version(args) => cli::apk_version::run(args, &mut out),
        },
    };
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("securebuild: {err}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}
