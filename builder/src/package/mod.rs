//! Making signed APK packages and repositories from files already built: the step that turns a
//! staged directory (for SecureBuild's own images, the `securebuild` and `securebuild-operator`
//! binaries) into what `securebuild build` installs.
//!
//! The output is what melange and abuild produce and what apk-tools and apko read: a v2 `.apk`
//! (signature, control and data gzip members; `.SIGN.RSA256.<key>.pub` over the control member,
//! `datahash` over the data member, `APK-TOOLS.checksum.SHA1` on every regular file) and a
//! signed `APKINDEX.tar.gz`. Given the same staged files, configuration, key and
//! `SOURCE_DATE_EPOCH`, the bytes are the same on any machine.
//!
//! - `config`: the package description (melange's `package:` block).
//! - `stage`: walking the staged directory into tar entries.
//! - `depends`: `so:` and `cmd:` dependencies and provides found in the staged ELF files.
//! - `sign`: the RSA signing key and `.SIGN.RSA256.*` members.
//! - `write`: one `.apk`.
//! - `index`: `APKINDEX.tar.gz` from `.apk` files.

use std::io;
use std::path::PathBuf;

pub mod config;
pub mod depends;
pub mod index;
pub mod sign;
pub mod stage;
pub mod write;

pub use config::PackageConfig;
pub use index::{IndexOptions, write_repository_index};
pub use sign::SigningKey;
pub use write::{PackageOptions, WrittenPackage, write_package};

/// Why a package or index could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PackagingError {
    /// A file could not be read or written.
    #[error("{}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// The package configuration is not valid.
    #[error("package configuration {}: {message}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong and how to fix it (serde's or the validation's words).
        message: String,
    },

    /// `--arch` is not an apk architecture name.
    #[error("--arch {arch:?} is not an apk architecture (e.g. x86_64, aarch64)")]
    InvalidArch {
        /// The architecture asked for.
        arch: String,
    },

    /// The configuration's `target-architecture` leaves out the architecture asked for.
    #[error(
        "package {package} is for {} only (package.target-architecture), not --arch {arch}",
        targets.join(", ")
    )]
    ArchNotTargeted {
        /// The package name.
        package: String,
        /// The architecture asked for.
        arch: String,
        /// The configured architectures.
        targets: Vec<String>,
    },

    /// `--destdir` is not a directory.
    #[error("{} is not a directory: pass the directory the files were installed into", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },

    /// A staged name or link target is not UTF-8, which apk cannot record.
    #[error("{}: {what} is not UTF-8, which apk cannot record: rename it", path.display())]
    NotUtf8 {
        /// The staged entry.
        path: PathBuf,
        /// `the name` or `the link target`.
        what: &'static str,
    },

    /// The staged directory holds a device, FIFO or socket.
    #[error(
        "{}: devices, FIFOs and sockets cannot be packaged: remove it from the staged directory (images get device nodes from the runtime)",
        path.display()
    )]
    UnsupportedFileType {
        /// The staged entry.
        path: PathBuf,
    },

    /// The staged directory holds more entries than one package may.
    #[error("{}: more than {limit} entries in one package", path.display())]
    TooManyEntries {
        /// The entry past the limit.
        path: PathBuf,
        /// The limit.
        limit: usize,
    },

    /// A staged file changed between hashing and writing.
    #[error(
        "{}: changed while it was being packaged: package again once nothing writes to the staged directory",
        path.display()
    )]
    ChangedWhilePackaging {
        /// The staged file.
        path: PathBuf,
    },

    /// A staged program or library is built for another architecture than the package.
    #[error(
        "{} is built for {found}, but the package is for {arch}: build it for {arch} (or package it with --arch {found})",
        path.display()
    )]
    ForeignBinary {
        /// The staged file.
        path: PathBuf,
        /// Its architecture.
        found: String,
        /// The package's architecture.
        arch: String,
    },

    /// The signing key cannot be used.
    #[error("signing key {}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: sign::KeyError,
    },

    /// Signing failed.
    #[error("signing with {key} failed")]
    Sign {
        /// The key name.
        key: String,
        /// The signature library's error.
        #[source]
        source: rsa::signature::Error,
    },

    /// The public key could not be encoded.
    #[error("encoding the public key of {key} failed")]
    PublicKey {
        /// The key name.
        key: String,
        /// The encoder's error.
        #[source]
        source: rsa::pkcs8::spki::Error,
    },

    /// A tar member could not be written.
    #[error(transparent)]
    Tar(#[from] crate::image::layer::LayerError),

    /// Compression failed.
    #[error("compressing {what} failed")]
    Compress {
        /// Which member.
        what: &'static str,
        /// The compressor's error.
        #[source]
        source: io::Error,
    },

    /// A package to index could not be read.
    #[error("{}: not a valid APK package", path.display())]
    Read {
        /// The package file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::apk::archive::ArchiveError,
    },

    /// A package to index has a `.PKGINFO` value the index cannot hold.
    #[error("{}: .PKGINFO {field} {value:?}: {problem}", path.display())]
    InvalidPkgInfo {
        /// The package file.
        path: PathBuf,
        /// The field, e.g. `pkgver` or `depend`.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Mode of written packages and indexes: readable by everyone, as a repository served over
/// HTTP needs.
pub const OUTPUT_MODE: u32 = 0o644;

/// Writes a package or index to `path` all at once or not at all: `write` fills a temporary
/// file beside it (mode [`OUTPUT_MODE`]), which is flushed to disk and renamed to `path`.
/// Returns the file's size. The directory must exist.
pub(crate) fn write_file_atomically(
    path: &std::path::Path,
    write: impl FnOnce(&mut dyn io::Write) -> io::Result<()>,
) -> Result<u64, PackagingError> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".securebuild-")
        .permissions(std::fs::Permissions::from_mode(OUTPUT_MODE))
        .tempfile_in(dir)
        .map_err(PackagingError::file(dir))?;
    {
        let mut writer = io::BufWriter::new(file.as_file_mut());
        write(&mut writer)
            .and_then(|()| io::Write::flush(&mut writer))
            .map_err(PackagingError::file(path))?;
    }
    file.as_file()
        .sync_all()
        .map_err(PackagingError::file(path))?;
    let size = file
        .as_file()
        .metadata()
        .map_err(PackagingError::file(path))?
        .len();
    file.persist(path)
        .map_err(|error| PackagingError::file(path)(error.error))?;
    Ok(size)
}

impl PackagingError {
    pub(crate) fn file(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::File { path, source }
    }
}
