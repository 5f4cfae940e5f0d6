//! SecureBuild's Kubernetes operator: each `ImageBuild` becomes a builder Job per trigger (a
//! new generation, a rebuild request, newer packages), and the builder's result becomes the
//! ImageBuild's status.
//!
//! Decisions are pure functions — [`triggers`] (when to build), [`job`] (what to run),
//! [`status`] (what to report), [`retention`] (which Jobs to delete), [`slots`] (how many
//! build at once) — and [`controller`] is the only module that reads or writes ImageBuilds and
//! events ([`leader`] only touches its Lease). Builds start and are read through a [`backend`]:
//! Jobs, ConfigMaps and Pods (`pod`) or in-process builds (`local`). [`hooks`] is where signing
//! ([`signer`]) and package re-resolution ([`resolver`]) plug in; both, and `local` builds,
//! push with the ImageBuild's push Secret ([`credentials`]).
//!
//! Modules: [`config`] (operator settings), [`includes`] (`spec.image.include` from
//! ConfigMaps), [`job`], [`triggers`], [`status`], [`retention`],
//! [`slots`], [`hooks`], [`post_build`] (signing off the reconcile workers), [`backend`],
//! [`credentials`], [`resolver`], [`signer`],
//! [`podsecurity`] (the Pod Security `restricted` checker), [`controller`], [`metrics`],
//! [`http`] (`/metrics`, `/healthz`, `/readyz`), [`telemetry`] (logging) and [`leader`]
//! (leader election).

pub mod backend;
pub mod config;
pub mod console;
pub mod controller;
pub mod credentials;
pub mod hooks;
pub mod http;
pub mod includes;
pub mod job;
pub mod leader;
pub mod metrics;
pub mod packages;
pub mod podsecurity;
pub mod post_build;
pub mod resolver;
pub mod retention;
pub mod signer;
pub mod slots;
pub mod status;
pub mod telemetry;
pub mod triggers;
pub mod watched;

#[cfg(test)]
mod fixtures;

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An ImageBuild without a namespace (the resource is namespaced, so the API never sends
    /// one).
    #[error("ImageBuild `{name}` has no namespace")]
    MissingNamespace {
        /// The ImageBuild's name.
        name: String,
    },
    /// A Kubernetes API call failed.
    #[error("cannot {verb} {kind} `{name}`")]
    Kube {
        /// What the call did: `list`, `create`, `patch`, `delete`.
        verb: &'static str,
        /// The kind of object.
        kind: &'static str,
        /// The object's name (or the namespace for a list).
        name: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The operator configuration is invalid.
    #[error("invalid operator configuration")]
    Config {
        /// What is wrong.
        #[from]
        source: config::ConfigError,
    },
    /// The configuration file cannot be read.
    #[error("cannot read the configuration file `{path}`")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// No Kubernetes client could be configured (no kubeconfig, no in-cluster service account).
    #[error("cannot configure the Kubernetes client")]
    Client {
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The HTTP endpoint cannot listen or serve.
    #[error("cannot serve HTTP on {addr}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers cannot be installed.
    #[error("cannot listen for termination signals")]
    Signal {
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime cannot start.
    #[error("cannot start the async runtime")]
    Runtime {
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The lease manager failed.
    #[error("leader election failed")]
    LeaderElection {
        /// The lease manager's error.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    /// The ConfigMaps an ImageBuild includes cannot be read right now.
    #[error("cannot merge the included configurations")]
    Include {
        /// Why.
        #[from]
        source: includes::IncludeError,
    },
    /// This replica lost the leader lease.
    #[error("lost the leader lease `{lease}`; exiting to rejoin the election")]
    LeadershipLost {
        /// `namespace/name` of the Lease.
        lease: String,
    },
    /// `RUST_LOG` is not a valid filter.
    #[error("invalid log filter in RUST_LOG")]
    LogFilter {
        /// The parser's error.
        #[source]
        source: tracing_subscriber::filter::FromEnvError,
    },
    /// A logging subscriber is already installed.
    #[error("cannot install the log subscriber")]
    Telemetry {
        /// The subscriber's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The CRD cannot be generated.
    #[error("cannot generate the CRD")]
    Crd {
        /// The generator's error.
        #[source]
        source: securebuild_crds::CrdError,
    },
}

impl Error {
    /// A short, stable label for the `reconcile_errors` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::MissingNamespace { .. } => "missing_namespace",
            Self::Kube { .. } => "kube_api",
            Self::Include { .. } => "include",
            Self::Config { .. } | Self::ConfigFile { .. } => "config",
            Self::Client { .. } => "client",
            Self::Http { .. } => "http",
            Self::Signal { .. } => "signal",
            Self::Runtime { .. } => "runtime",
            Self::LeaderElection { .. } => "leader_election",
            Self::LeadershipLost { .. } => "leadership_lost",
            Self::LogFilter { .. } | Self::Telemetry { .. } => "telemetry",
            Self::Crd { .. } => "crd",
        }
    }

    /// The process exit code for this error: 78 (`EX_CONFIG`) for configuration problems, 1
    /// otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config { .. } | Self::ConfigFile { .. } | Self::LogFilter { .. } => 78,
            _ => 1,
        }
    }

    /// A builder for [`Error::Kube`] to use with `map_err`.
    pub fn kube(
        verb: &'static str,
        kind: &'static str,
        name: &str,
    ) -> impl FnOnce(kube::Error) -> Self {
        let name = name.to_string();
        move |source| Self::Kube {
            verb,
            kind,
            name,
            source,
        }
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_exit_codes() {
        let missing = Error::MissingNamespace { name: "x".into() };
        assert_eq!(missing.metric_label(), "missing_namespace");
        assert_eq!(missing.exit_code(), 1);
        assert_eq!(missing.to_string(), "ImageBuild `x` has no namespace");
        let config = Error::Config {
            source: config::ConfigError::Backend { value: "vm".into() },
        };
        assert_eq!(config.exit_code(), 78);
        assert_eq!(config.metric_label(), "config");
        let api =
            Error::kube("create", "Job", "app-1")(kube::Error::LinesCodecMaxLineLengthExceeded);
        assert_eq!(api.metric_label(), "kube_api");
        assert!(
            api.to_string().starts_with("cannot create Job `app-1`"),
            "{api}"
        );
        assert!(std::error::Error::source(&api).is_some());
    }
}
