//! The proxy's configuration: the YAML file `--config` names, and the flags for the common
//! case, which fill the same fields. Unknown keys are refused, so a misspelt setting is an
//! error instead of a silent default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::routes::{Route, RouteSpec, RouteTable};

/// Where the proxy listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:5000";
/// Manifest cache budget by default (64 MiB).
pub const DEFAULT_MANIFEST_CACHE_BYTES: u64 = 64 << 20;
/// How long a tag lookup is reused by default.
pub const DEFAULT_TAG_TTL_SECONDS: u64 = 5;
/// Upstream requests in flight at once by default.
pub const DEFAULT_UPSTREAM_CONCURRENCY: usize = 256;
/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Everything the proxy is told.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// The address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Vanity names and the upstream repositories they stand for.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// A docker `config.json` with the proxy's own upstream credentials.
    #[serde(default)]
    pub registry_config: Option<PathBuf>,
    /// Upstreams spoken to over plain HTTP besides loopback ones (`host:port` or a CIDR).
    #[serde(default)]
    pub insecure_upstreams: Vec<String>,
    /// Serve HTTPS with these files; plain HTTP (behind an ingress) when absent.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Cache sizes and lifetimes.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Upstream requests in flight at once; more wait.
    #[serde(default = "default_upstream_concurrency")]
    pub upstream_concurrency: usize,
    /// Answer blob `GET`s of routes whose upstream needs no credentials with a `307` to the
    /// upstream instead of streaming the blob through the proxy.
    #[serde(default)]
    pub redirect_blobs: bool,
}

/// Certificate and key files (PEM).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub certificate: PathBuf,
    /// The private key (PKCS #8, PKCS #1 or SEC1).
    pub key: PathBuf,
}

/// Cache settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    /// Bytes of manifests kept by digest (0 disables the cache).
    #[serde(default = "default_manifest_cache_bytes")]
    pub manifest_bytes: u64,
    /// Seconds a tag lookup is reused (0 disables the cache).
    #[serde(default = "default_tag_ttl_seconds")]
    pub tag_ttl_seconds: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            manifest_bytes: DEFAULT_MANIFEST_CACHE_BYTES,
            tag_ttl_seconds: DEFAULT_TAG_TTL_SECONDS,
        }
    }
}

/// Timeouts, in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// How long a request may take until its response starts (the body of a blob streams
    /// for as long as it needs).
    #[serde(default = "default_request_seconds")]
    pub request_seconds: u64,
    /// How long a connection may wait for a request's headers, and stay open idle.
    #[serde(default = "default_idle_seconds")]
    pub idle_seconds: u64,
    /// How long open requests may finish after a shutdown signal.
    #[serde(default = "default_shutdown_seconds")]
    pub shutdown_seconds: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request_seconds: default_request_seconds(),
            idle_seconds: default_idle_seconds(),
            shutdown_seconds: default_shutdown_seconds(),
        }
    }
}

impl Timeouts {
    /// [`Timeouts::request_seconds`] as a duration.
    pub fn request(&self) -> Duration {
        Duration::from_secs(self.request_seconds)
    }

    /// [`Timeouts::idle_seconds`] as a duration.
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_seconds)
    }

    /// [`Timeouts::shutdown_seconds`] as a duration.
    pub fn shutdown(&self) -> Duration {
        Duration::from_secs(self.shutdown_seconds)
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 5000))
}
fn default_upstream_concurrency() -> usize {
    DEFAULT_UPSTREAM_CONCURRENCY
}
fn default_manifest_cache_bytes() -> u64 {
    DEFAULT_MANIFEST_CACHE_BYTES
}
fn default_tag_ttl_seconds() -> u64 {
    DEFAULT_TAG_TTL_SECONDS
}
fn default_request_seconds() -> u64 {
    60
}
fn default_idle_seconds() -> u64 {
    90
}
fn default_shutdown_seconds() -> u64 {
    30
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading proxy configuration {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than allowed.
    #[error("proxy configuration {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid YAML for the configuration.
    #[error("parsing proxy configuration {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_norway::Error,
    },
    /// A route does not parse.
    #[error(transparent)]
    Route(#[from] crate::routes::RouteError),
    /// There is nothing to serve.
    #[error(
        "no routes: pass --route VANITY=UPSTREAM (for example hello=registry.internal:5000/team/hello) or list routes in --config"
    )]
    NoRoutes,
    /// The upstream concurrency is zero.
    #[error("upstreamConcurrency must be at least 1")]
    ZeroConcurrency,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            routes: Vec::new(),
            registry_config: None,
            insecure_upstreams: Vec::new(),
            tls: None,
            cache: CacheConfig::default(),
            timeouts: Timeouts::default(),
            upstream_concurrency: DEFAULT_UPSTREAM_CONCURRENCY,
            redirect_blobs: false,
        }
    }
}

impl ProxyConfig {
    /// Reads the YAML file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        use std::io::Read as _;
        let read = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        serde_norway::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// The routes, parsed and ordered, once the whole configuration has been checked.
    pub fn route_table(&self) -> Result<RouteTable, ConfigError> {
        if self.routes.is_empty() {
            return Err(ConfigError::NoRoutes);
        }
        if self.upstream_concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        let routes = self
            .routes
            .iter()
            .map(Route::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RouteTable::new(routes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Access;

    #[test]
    fn the_yaml_form_has_the_same_fields_and_refuses_unknown_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.yaml");
        std::fs::write(
            &path,
            "listen: 127.0.0.1:8080\n\
             routes:\n\
             - vanity: hello\n  upstream: registry.internal:5000/team/hello\n\
             - vanity: images.example.com/\n  upstream: registry.internal:5000/team/\n  access: passthrough\n\
             insecureUpstreams: [registry.internal:5000]\n\
             cache: {manifestBytes: 1024, tagTtlSeconds: 2}\n\
             timeouts: {requestSeconds: 5}\n\
             upstreamConcurrency: 8\n",
        )
        .unwrap();
        let config = ProxyConfig::load(&path).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.routes[1].access, Access::Passthrough);
        assert_eq!(config.cache.manifest_bytes, 1024);
        assert_eq!(config.timeouts.request_seconds, 5);
        assert_eq!(config.timeouts.idle_seconds, 90);
        assert_eq!(config.route_table().unwrap().routes().len(), 2);

        std::fs::write(&path, "routes: []\nlisten: 127.0.0.1:1\ncahce: {}\n").unwrap();
        let error = ProxyConfig::load(&path).unwrap_err();
        assert!(
            crate::error_chain(&error).contains("cahce"),
            "{}",
            crate::error_chain(&error)
        );
        assert!(matches!(
            ProxyConfig::default().route_table(),
            Err(ConfigError::NoRoutes)
        ));
    }
}
