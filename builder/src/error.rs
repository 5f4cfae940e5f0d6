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

    /// A repository, key or index could not be fetched, verified or parsed.
    #[error(transparent)]
    Repository(#[from] crate::apk::repository::RepositoryError),

    /// A package could not be fetched or failed verification.
    #[error(transparent)]
    Package(#[from] crate::apk::package::PackageError),

    /// A package could not be installed into the image.
    #[error(transparent)]
    Install(#[from] crate::image::install::InstallError),

    /// A lockfile could not be read.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),

    /// An image could not be signed or attested.
    #[error(transparent)]
    Publish(#[from] crate::attest::publish::PublishError),

    /// An image's signatures or attestations did not verify.
    #[error(transparent)]
    Verify(#[from] crate::attest::verify::VerifyError),

    /// A key, password or registry setting of `sign` or `verify` is unusable.
    #[error(transparent)]
    SignCommand(#[from] crate::cli::sign::CommandError),

    /// A generated file (accounts) could not be written.
    #[error(transparent)]
    Accounts(#[from] crate::image::accounts::AccountsError),

    /// The apk database could not be written.
    #[error(transparent)]
    ApkDb(#[from] crate::image::apkdb::ApkDbError),

    /// `/etc/os-release` could not be read or written.
    #[error(transparent)]
    OsRelease(#[from] crate::image::os_release::OsReleaseError),

    /// Busybox applet links could not be made.
    #[error(transparent)]
    Busybox(#[from] crate::image::busybox::BusyboxError),

    /// `ld.so.cache` could not be generated.
    #[error(transparent)]
    Ldso(#[from] crate::image::ldso::LdsoError),

    /// A `paths` mutation could not be applied.
    #[error(transparent)]
    Paths(#[from] crate::image::paths::PathError),

    /// The layer could not be written.
    #[error(transparent)]
    Layer(#[from] crate::image::write::WriteError),

    /// The OCI config could not be computed.
    #[error(transparent)]
    ImageConfig(#[from] crate::image::config::ImageConfigError),

    /// The OCI layout could not be written.
    #[error(transparent)]
    Layout(#[from] crate::image::layout::LayoutError),

    /// A tag template could not be expanded.
    #[error(transparent)]
    Tag(#[from] crate::tags::TagError),

    /// The image could not be pushed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),

    /// A package or package index could not be made.
    #[error(transparent)]
    MakePackage(#[from] crate::package::PackagingError),

    /// A feature of the configuration this builder does not support.
    #[error("{what} is not supported")]
    Unsupported {
        /// What is not supported.
        what: String,
    },

    /// `--arch` names an architecture the configuration does not build.
    #[error("architecture {arch} is not in the configuration's archs ({})", configured.join(", "))]
    ArchNotConfigured {
        /// The requested architecture.
        arch: String,
        /// The configured ones.
        configured: Vec<String>,
    },

    /// The repositories no longer give what the lockfile locks.
    #[error("cannot build the lockfile: {detail}")]
    LockMismatch {
        /// What differs.
        detail: String,
    },

    /// No repository to resolve against.
    #[error("no repositories: name at least one with --repository or in contents.repositories")]
    NoRepositories,

    /// A file given on the command line could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The CamelCase failure reason the operator shows in status (see `crds::conditions`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Config(_) | Self::Constraint(_) | Self::InvalidVersions { .. } => "InvalidSpec",
            Self::Solve(_) | Self::NoRepositories => "ResolutionFailed",
            Self::Index(_) | Self::Package(_) => "PackageVerificationFailed",
            Self::Repository(err) => repository_reason(err),
            Self::Install(crate::image::install::InstallError::FileConflict { .. }) => {
                "InvalidSpec"
            }
            Self::Install(_) => "PackageVerificationFailed",
            Self::Lock(_)
            | Self::LockMismatch { .. }
            | Self::Tag(_)
            | Self::Unsupported { .. }
            | Self::ArchNotConfigured { .. } => "InvalidSpec",
            Self::Accounts(_) | Self::Paths(_) | Self::ImageConfig(_) => "InvalidSpec",
            Self::Layer(_)
            | Self::Layout(_)
            | Self::ApkDb(_)
            | Self::OsRelease(_)
            | Self::Busybox(_)
            | Self::Ldso(_) => "BuildFailed",
            Self::Registry(_) => "PushFailed",
            Self::Output(_) | Self::File { .. } | Self::MakePackage(_) => "BuildFailed",
            Self::Publish(_) | Self::Verify(_) | Self::SignCommand(_) => "SigningFailed",
        }
    }
}

/// Signature and checksum failures are verification failures; the rest are fetch failures.
fn repository_reason(error: &crate::apk::repository::RepositoryError) -> &'static str {
    use crate::apk::repository::RepositoryError as E;
    match error {
        E::Archive { .. }
        | E::Index { .. }
        | E::UnsignedIndex { .. }
        | E::UntrustedIndex { .. }
        | E::BadSignature { .. }
        | E::Signature { .. }
        | E::PlainIndexUntrusted { .. } => "PackageVerificationFailed",
        _ => "FetchFailed",
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
