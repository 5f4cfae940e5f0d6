//! The crate's one public error type. Module errors keep their precise vocabulary and fold in
//! through `#[from]`; every variant names the thing involved.

use std::io;

/// Everything that can go wrong in the engine and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing to standard output failed.
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),

    /// `apk version --check` found invalid versions.
    #[error("invalid version{}: {}", if versions.len() == 1 { "" } else { "s" }, versions.join(", "))]
    InvalidVersions {
        /// The invalid versions as given.
        versions: Vec<String>,
    },

    /// An image configuration could not be read.
    #[error(transparent)]
    Config(#[from] securebuild_crds::ConfigError),

    /// A dependency atom is malformed.
    #[error(transparent)]
    Constraint(#[from] crate::apk::constraint::ConstraintError),

    /// An APKINDEX could not be parsed.
    #[error(transparent)]
    Index(#[from] crate::apk::index::IndexError),

    /// The packages cannot be resolved.
    #[error(transparent)]
    Solve(#[from] crate::apk::solver::SolveError),
}

impl Error {
    /// The CamelCase failure reason the operator shows in status (see `crds::conditions`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Config(_) | Self::Constraint(_) | Self::InvalidVersions { .. } => "InvalidSpec",
            Self::Solve(_) => "ResolutionFailed",
            Self::Index(_) => "PackageVerificationFailed",
            Self::Output(_) => "BuildFailed",
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
