//! `securebuild-proxy`: a read-only registry that serves the pull side of the OCI Distribution
//! Specification v1.1 under vanity names, from upstream registries it reaches with the
//! registry client of `securebuild-registry`.
//!
//! A request goes through [`endpoint`] (what it asks for, checked against the spec's
//! grammar; writes refused), [`routes`] (which upstream repository the vanity name stands
//! for), then [`serve`] (caches, the upstream, digest checks) and back out through [`server`]
//! (connections, TLS, timeouts, shutdown). Manifests are checked against their digest before
//! they are served; blobs are hashed as they stream and the connection is aborted when they do
//! not match ([`verified_body`]). Nothing is ever written upstream.

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod cache;
pub mod config;
pub mod endpoint;
pub mod metrics;
pub mod names;
pub mod passthrough;
pub mod routes;
pub mod serve;
pub mod server;
pub mod spec_error;
pub mod verified_body;

/// Everything that stops the proxy from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The docker config with the upstream credentials cannot be read.
    #[error("reading upstream credentials")]
    Credentials(#[source] securebuild_registry::auth::AuthError),
    /// The registry client cannot be built.
    #[error(transparent)]
    Registry(#[from] securebuild_registry::RegistryError),
    /// The listen address cannot be bound.
    #[error("listening on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listener's address cannot be read.
    #[error("reading the listener's address")]
    Listener {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file cannot be read or is not PEM.
    #[error("reading TLS file {path}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("TLS certificate file {path} holds no certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The certificate and key do not make a TLS configuration.
    #[error("the TLS certificate {certificate} and its key cannot be used together")]
    TlsConfig {
        /// The certificate file.
        certificate: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

/// `error` and its causes on one line, joined by `": "`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    securebuild_registry::error::Chain(error).to_string()
}
