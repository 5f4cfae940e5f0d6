//! The `securebuild` binary: parse the arguments, run the subcommand, map errors to exit codes:
//! 0 success; 1 failure; 2 usage errors and, for `build`, failures that retrying cannot fix
//! (invalid configuration, unresolvable or unverifiable packages) — the operator's Job fails at
//! once on 2 instead of retrying. A closed stdout counts as success. An error is printed with its
//! causes on one line (`securebuild: GET …: error sending request: …: dns error: …`, see
//! [`securebuild_builder::error::chain`]).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use securebuild_builder::cli::{self, ApkCommand, Cli, Command};
use securebuild_builder::error::{Chain, Error};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!(
                "securebuild: cannot start the async runtime: {}",
                Chain(&err)
            );
            return ExitCode::from(1);
        }
    };
    let is_build = matches!(cli.command, Command::Build(_));
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Apk(apk) => match &apk.command {
                ApkCommand::Version(args) => cli::apk_version::run(args, &mut out),
            },
            Command::Resolve(args) => cli::resolve::run(args, &mut out).await,
            Command::Build(args) => cli::build::run(args, &mut out).await,
            Command::Lock(args) => cli::lock::run(args, &mut out).await,
            Command::Package(args) => cli::package::run(args, &mut out),
            Command::Index(args) => cli::index::run(args, &mut out),
            Command::Sign(args) => cli::sign::run(args, &mut out).await,
            Command::Verify(args) => cli::verify::run(args, &mut out).await,
        }
    });
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("securebuild: {}", Chain(&err));
            if is_build && is_terminal(err.reason()) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Failure reasons that another attempt with the same inputs cannot fix.
fn is_terminal(reason: &str) -> bool {
    matches!(
        reason,
        "InvalidSpec" | "ResolutionFailed" | "PackageVerificationFailed"
    )
}

/// Log targets that report, at `error`, a failure the final error message already carries
/// with its cause (the TLS verifier logs every refused certificate, once per attempt); they
/// stay silent unless the log filter names them.
const QUIET_LOG_TARGETS: &[&str] = &["rustls_platform_verifier"];

fn init_logging(filter: &str) {
    let from_env = std::env::var(tracing_subscriber::EnvFilter::DEFAULT_ENV).ok();
    let named = from_env.as_deref().unwrap_or(filter);
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    for target in QUIET_LOG_TARGETS {
        if !named.contains(target)
            && let Ok(directive) = format!("{target}=off").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}
