//! The `securebuild-proxy` binary: flags (or `--config`), JSON logs, the registry client with
//! the proxy's own credentials, and the server until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use securebuild_proxy::config::ProxyConfig;
use securebuild_proxy::routes::RouteSpec;
use securebuild_proxy::serve::{Proxy, ProxySettings};
use securebuild_proxy::server::Server;
use securebuild_proxy::{Error, error_chain};
use securebuild_registry::auth::DockerConfig;
use securebuild_registry::{Registry, RegistryOptions};

/// A read-only OCI registry serving upstream repositories under vanity names.
#[derive(Debug, Parser)]
#[command(name = "securebuild-proxy", version)]
struct Flags {
    /// The address to listen on [default: 0.0.0.0:5000].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// `[host/]name-prefix=registry-host[:port]/repository-prefix`, for example
    /// `hello=127.0.0.1:5000/team/hello` or
    /// `images.example.com/=registry.internal:5000/team/`; repeat for more routes.
    #[arg(long = "route", value_name = "VANITY=UPSTREAM")]
    routes: Vec<RouteSpec>,
    /// A docker `config.json` with the proxy's upstream credentials [default: $DOCKER_CONFIG
    /// or ~/.docker/config.json].
    #[arg(long, value_name = "FILE")]
    registry_config: Option<PathBuf>,
    /// An upstream spoken to over plain HTTP (loopback upstreams always are); repeatable.
    #[arg(long = "insecure-upstream", value_name = "HOST:PORT")]
    insecure_upstreams: Vec<String>,
    /// A YAML file with the full configuration (docs/proxy.md); flags add to it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl Flags {
    fn into_config(self) -> Result<ProxyConfig, Error> {
        let mut config = match &self.config {
            Some(path) => ProxyConfig::load(path)?,
            None => ProxyConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        config.routes.extend(self.routes);
        if self.registry_config.is_some() {
            config.registry_config = self.registry_config;
        }
        config.insecure_upstreams.extend(self.insecure_upstreams);
        Ok(config)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .init();
    let flags = Flags::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("securebuild-proxy: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "securebuild-proxy failed");
            eprintln!("securebuild-proxy: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags) -> Result<(), Error> {
    let config = flags.into_config()?;
    let routes = config.route_table()?;
    let docker_config =
        DockerConfig::load(config.registry_config.as_deref()).map_err(Error::Credentials)?;
    let registry = Registry::new(RegistryOptions {
        insecure_registries: config.insecure_upstreams.clone(),
        docker_config,
        retries: 0,
        ..RegistryOptions::default()
    })?;
    let settings = ProxySettings {
        manifest_cache_bytes: config.cache.manifest_bytes,
        tag_ttl: std::time::Duration::from_secs(config.cache.tag_ttl_seconds),
        upstream_concurrency: config.upstream_concurrency,
        redirect_blobs: config.redirect_blobs,
        request_timeout: config.timeouts.request(),
        https: config.tls.is_some(),
    };
    let proxy = Proxy::new(routes, registry, &settings);
    let server = Server::bind(
        config.listen,
        config.tls.as_ref(),
        proxy,
        config.timeouts.idle(),
        config.timeouts.shutdown(),
    )
    .await?;
    tracing::info!(
        listen = %server.local_addr()?,
        tls = config.tls.is_some(),
        routes = config.routes.len(),
        "serving"
    );
    server.run(shutdown_signal()).await
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
