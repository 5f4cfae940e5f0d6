//! The crate's one public error type and the one way errors are shown to people. Module errors
//! keep their precise vocabulary and fold in through `#[from]`; every variant names the thing
//! involved and leaves its cause to `source()` (never both in its message and as its source), so
//! [`chain`] renders the whole story once: `GET https://…/APKINDEX.tar.gz failed: error sending
//! request: client error (Connect): dns error: …`.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// Separator between an error and its cause in [`chain`].
pub const CHAIN_SEPARATOR: &str = ": ";

/// `error` and its `source()` chain on one line, each joined by `": "`; a cause whose text the
/// line already contains is skipped (its own causes are not). This is what the CLI prints and
/// what the operator puts in status conditions and events.
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(CHAIN_SEPARATOR);
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// What stands for the part [`shorten_middle`] cuts out.
const ELISION: &str = " … ";

/// `text` in at most `limit` bytes: when longer, its start and its end with [`ELISION`] between
/// them. A chain reads from the context to the root cause, so both ends are worth keeping.
pub fn shorten_middle(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let room = limit.saturating_sub(ELISION.len());
    let mut head = room / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - (room - room / 2);
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}{ELISION}{}", &text[..head], &text[tail..])
}

/// Displays an error as [`chain`] does, for format strings and log fields
/// (`tracing::warn!(error = %Chain(&error), …)`).
#[derive(Clone, Copy, Debug)]
pub struct Chain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&chain(self.0))
    }
}

/// Everything that can go wrong in the engine and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing to standard output failed.
    #[error("cannot write output")]
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

    /// An image configuration file or one it includes could not be read.
    #[error(transparent)]
    Include(#[from] securebuild_crds::include::IncludeError),

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

    /// `certificates` could not be installed.
    #[error(transparent)]
    Certificates(#[from] crate::image::certificates::CertificatesError),

    /// `contents.runtime_keyring` could not be installed.
    #[error(transparent)]
    RuntimeKeyring(#[from] crate::image::runtime_keyring::RuntimeKeyringError),

    /// The s6 supervision tree could not be written.
    #[error(transparent)]
    Services(#[from] crate::image::services::ServicesError),

    /// `ld.so.cache` could not be generated.
    #[error(transparent)]
    Ldso(#[from] crate::image::ldso::LdsoError),

    /// A `paths` mutation could not be applied.
    #[error(transparent)]
    Paths(#[from] crate::image::paths::PathError),

    /// The layer could not be written.
    #[error(transparent)]
    Layer(#[from] crate::image::write::WriteError),

    /// The package layers could not be written.
    #[error(transparent)]
    Layers(#[from] crate::image::layers::LayersError),

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
    Registry(#[from] securebuild_registry::RegistryError),

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
    #[error("{path}")]
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
            Self::Config(_)
            | Self::Include(_)
            | Self::Constraint(_)
            | Self::InvalidVersions { .. } => "InvalidSpec",
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
            Self::Accounts(_)
            | Self::Paths(_)
            | Self::ImageConfig(_)
            | Self::Certificates(_)
            | Self::RuntimeKeyring(_)
            | Self::Services(_) => "InvalidSpec",
            Self::Layer(_)
            | Self::Layers(_)
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

#[cfg(test)]
mod tests {
    #[test]
    fn shortening_keeps_both_ends() {
        let text = format!("context: {}: root cause", "x".repeat(200));
        let short = super::shorten_middle(&text, 60);
        assert!(short.len() <= 60, "{short}");
        assert!(short.starts_with("context: "), "{short}");
        assert!(short.ends_with(": root cause"), "{short}");
        assert_eq!(super::shorten_middle("short", 60), "short");
        let wide = "é".repeat(100);
        assert!(super::shorten_middle(&wide, 41).len() <= 41);
    }
}
