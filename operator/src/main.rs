//! `securebuild-operator`: runs the ImageBuild controller (`run`, the default) or prints the
//! CRD (`crd`). Builds run as Jobs (`backend: pod`) or in this process (`backend: local`);
//! packages are re-resolved in this process, and images are signed when a signing key Secret
//! is configured.
//!
//! Exit codes: 0 on success or after a graceful shutdown (SIGTERM, Ctrl-C), 78 for an invalid
//! configuration, 1 for any other failure (including a lost leader lease), 2 for bad usage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use securebuild_builder::error::Chain;
use securebuild_operator::backend::{BuildBackend, LocalBackend, PodBackend};
use securebuild_operator::config::{Backend, Config};
use securebuild_operator::console::{self, ConsoleState, SbomSource};
use securebuild_operator::controller::{self, Hooks, State};
use securebuild_operator::hooks::PostBuild;
use securebuild_operator::packages::ListPackages;
use securebuild_operator::resolver::PackageResolver;
use securebuild_operator::signer::Signer;
use securebuild_operator::{Error, http, leader, telemetry};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "securebuild-operator",
    version,
    about = "The SecureBuild Kubernetes operator"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run(RunArgs),
    /// Print the ImageBuild CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The configuration file (YAML); `SECUREBUILD_*` variables override it.
    #[arg(long, env = "SECUREBUILD_CONFIG")]
    config: Option<PathBuf>,
    /// Reconcile only while holding the leader lease (for several replicas).
    #[arg(long, env = "SECUREBUILD_LEADER_ELECTION")]
    leader_election: bool,
    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    #[arg(long, env = "SECUREBUILD_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Where the read-only web console listens; no console when unset.
    #[arg(long, env = "SECUREBUILD_CONSOLE_ADDR")]
    console_addr: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Crd) => print_crd(),
        Some(Command::Run(args)) => run_blocking(args),
        None => run_blocking(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("securebuild-operator: {}", Chain(&error));
            ExitCode::from(error.exit_code())
        }
    }
}

fn print_crd() -> Result<(), Error> {
    let yaml = securebuild_crds::crd_yaml().map_err(|source| Error::Crd { source })?;
    print!("{yaml}");
    Ok(())
}

/// The signer, when a signing key Secret is configured.
fn signer(client: &kube::Client, config: &Arc<Config>) -> Option<Arc<Signer>> {
    match &config.signing_key {
        Some(secret) => {
            tracing::info!(secret = %format!("{}/{}", secret.namespace, secret.name), "signing with the key in Secret");
            Some(Arc::new(Signer::new(
                client.clone(),
                config.clone(),
                secret.clone(),
            )))
        }
        None => {
            tracing::info!("no signingKeySecret configured; images are not signed");
            None
        }
    }
}

/// Re-resolution always; signing with `signer` when there is one, otherwise only the package
/// lists.
fn hooks(config: &Arc<Config>, signer: Option<Arc<Signer>>) -> Hooks {
    let post_build: Arc<dyn PostBuild> = match signer {
        Some(signer) => signer,
        None => Arc::new(ListPackages::new(config.clone())),
    };
    Hooks {
        post_build,
        resolver: Arc::new(PackageResolver::new(config.clone())),
    }
}

/// The configured backend.
fn backend(client: &kube::Client, config: &Arc<Config>) -> Arc<dyn BuildBackend> {
    match config.backend {
        Backend::Pod => Arc::new(PodBackend::new(client.clone())),
        Backend::Local => Arc::new(LocalBackend::new(client.clone(), config.clone())),
    }
}

fn run_blocking(args: RunArgs) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { source })?;
    runtime.block_on(run(args))
}

async fn run(args: RunArgs) -> Result<(), Error> {
    telemetry::init()?;
    let file = match &args.config {
        Some(path) => {
            Some(
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| Error::ConfigFile {
                        path: path.clone(),
                        source,
                    })?,
            )
        }
        None => None,
    };
    let env = |name: &str| std::env::var(name).ok();
    let config = Arc::new(Config::from_sources(file.as_deref(), &env)?);
    let client = kube::Client::try_default()
        .await
        .map_err(|source| Error::Client { source })?;

    let shutdown = CancellationToken::new();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| Error::Signal { source })?;
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received; shutting down"),
        }
        on_signal.cancel();
    });

    let state = State::default();
    let listener = http::bind(args.http_addr).await?;
    let server = tokio::spawn(http::serve(listener, state.http(), shutdown.clone()));
    let namespace = config.namespace.clone();
    let signer = signer(&client, &config);
    let ctx = state.to_context_with(
        client.clone(),
        config.clone(),
        hooks(&config, signer.clone()),
        backend(&client, &config),
    );
    let console = match args.console_addr {
        Some(addr) => {
            let listener = http::bind(addr).await?;
            let console_state = ConsoleState {
                watched: ctx.watched.clone(),
                sbom: Some(SbomSource {
                    client: client.clone(),
                    config: config.clone(),
                    signer,
                }),
                shutdown: shutdown.clone(),
            };
            if args.leader_election {
                // Until this replica leads, its console reads a watch of its own.
                let watched = ctx.watched.clone();
                let client = client.clone();
                let namespaces = config.watch_namespaces.clone();
                let stop = shutdown.clone();
                tokio::spawn(async move { watched.standby(client, &namespaces, stop).await });
            }
            Some(tokio::spawn(console::serve(listener, console_state)))
        }
        None => None,
    };
    state.set_ready(true);

    let result = if args.leader_election {
        let identity = leader::identity(&env);
        leader::run_as_leader(client, &namespace, identity, shutdown.clone(), |stop| {
            controller::run(ctx, stop)
        })
        .await
    } else {
        controller::run(ctx, shutdown.clone()).await
    };
    state.set_ready(false);
    shutdown.cancel();
    let served = server.await.unwrap_or(Ok(()));
    let console_served = match console {
        Some(console) => console.await.unwrap_or(Ok(())),
        None => Ok(()),
    };
    result.and(served).and(console_served)
}
