//! Fetching `.apk` files into a content-addressed cache and verifying them against the index.
//!
//! A package is identified by its index `C:` checksum (the digest of its control member), so
//! the cache holds `<cache>/packages/<hex of the C: digest>.apk`. Downloads run in parallel
//! with retries, resume a partial file with `Range: bytes=N-`, and are verified BEFORE they are
//! renamed into the cache: the control member must hash to `C:`, the data member to
//! `.PKGINFO`'s `datahash`, and `.PKGINFO`'s name and version must be the record's. Package
//! signatures are not checked here: the signed index vouches for `C:`, which covers the control
//! member, which covers the data through `datahash`.
//!
//! [`PackageFetcher::fetch_all_spooled`] also leaves each package's decompressed data stream
//! (its data tar) in a spool directory, written while the package is verified so that a build
//! decompresses every package exactly once. Nothing here interprets or extracts the tar.
//!
//! [`InstallMetadata`] is what apk's installer takes from a package's own `.PKGINFO` instead of
//! the index: `replaces`, `replaces_priority` and `triggers`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, BufRead as _, BufReader, Read, Seek as _, SeekFrom, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, HeaderMap, RANGE};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use tracing::{debug, info, warn};

use super::archive::{
    ArchiveError, ControlMember, DataReader, Limits, Member, PKGINFO_PKGNAME, PKGINFO_PKGVER,
    PackageArchive, PkgInfo, read_package,
};
use super::constraint::{Dependency, parse_index_list};
use super::index::{Checksum, ChecksumAlgorithm, IndexError, PackageRecord, encode_checksum};
use super::repository::{
    Location, RepositoryError, RepositoryIndex, RepositoryLocation, RetryPolicy, TransferFailure,
    temp_path,
};

/// Packages downloaded at the same time unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Absolute cap on one `.apk` file.
pub const DEFAULT_MAX_PACKAGE_SIZE: u64 = 4 * 1024 * 1024 * 1024;
/// Bytes allowed beyond the index's `S:` size.
pub const DEFAULT_SIZE_SLACK: u64 = 1024 * 1024;
/// Decompressed data allowed beyond twice the index's `I:` installed size (tar headers and
/// padding of many small files).
pub const DEFAULT_INSTALLED_SIZE_SLACK: u64 = 256 * 1024 * 1024;
/// Subdirectory of the cache holding verified packages.
pub const CACHE_PACKAGES_DIR: &str = "packages";
/// Suffix of the resumable download of a package, beside its cache file.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Suffix of a package's decompressed data stream in a spool directory.
pub const SPOOL_SUFFIX: &str = ".tar";

const READ_BUFFER_SIZE: usize = 64 * 1024;
/// Buffer of the copy from the decompressor into a spool file.
const SPOOL_BUFFER_SIZE: usize = 256 * 1024;

/// Why a package could not be fetched or verified.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The record's `C:` does not decode.
    #[error("package {package} has an invalid index checksum")]
    InvalidChecksum {
        /// `name-version`.
        package: String,
        /// What the index module reported.
        #[source]
        source: IndexError,
    },
    /// A name or version that would make the file name escape its directory.
    #[error("package {package} has an unusable file name `{file_name}`")]
    InvalidFileName {
        /// `name-version`.
        package: String,
        /// The file name.
        file_name: String,
    },
    /// The package's location could not be formed (an invalid architecture).
    #[error("package {package} has no usable location")]
    Location {
        /// `name-version`.
        package: String,
        /// What the repository module reported.
        #[source]
        source: Box<RepositoryError>,
    },
    /// The server answered with an error status (after retries, where retrying applies).
    #[error("downloading package {package} from {url} failed: HTTP {status}")]
    HttpStatus {
        /// `name-version`.
        package: String,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The download failed without a status (connection, TLS, timeout, cut-off body).
    #[error("downloading package {package} from {url} failed")]
    Request {
        /// `name-version`.
        package: String,
        /// The URL.
        url: String,
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// The `.apk` is larger than its cap.
    #[error("package {package} at {location} is larger than {limit} bytes")]
    TooLarge {
        /// `name-version`.
        package: String,
        /// The URL or path.
        location: Location,
        /// The cap in bytes.
        limit: u64,
    },
    /// A file in the cache (or a local package) could not be read or written.
    #[error("package {package}: cannot access {path}")]
    Io {
        /// `name-version`.
        package: String,
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The cache directory could not be created.
    #[error("cannot create package cache directory {path}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A member does not hash to what the index (`C:`) or `.PKGINFO` (`datahash`) declares.
    #[error("package {package}: {what} checksum {actual} does not match the expected {expected}")]
    ChecksumMismatch {
        /// `name-version`.
        package: String,
        /// Expected digest (`Q1…` for the control member, hex for the data member).
        expected: String,
        /// Computed digest, same encoding.
        actual: String,
        /// Which member.
        what: Member,
    },
    /// `.PKGINFO` names another package or version than the index record.
    #[error("package {package}: .PKGINFO {field} is `{actual}`, the index says `{expected}`")]
    MetadataMismatch {
        /// `name-version`.
        package: String,
        /// The `.PKGINFO` key (`pkgname` or `pkgver`).
        field: &'static str,
        /// The index's value.
        expected: String,
        /// The `.PKGINFO` value.
        actual: String,
    },
    /// The `.apk` is malformed or exceeds a decompression cap.
    #[error("package {package} from {location} is not a valid apk")]
    Archive {
        /// `name-version`.
        package: String,
        /// The URL or path it came from.
        location: Location,
        /// What the archive reader reported.
        #[source]
        source: Box<ArchiveError>,
    },
    /// The decompressed data stream could not be written to its spool file.
    #[error("package {package}: cannot write its data to {path}")]
    Spool {
        /// `name-version`.
        package: String,
        /// The spool file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A blocking verification task did not complete.
    #[error("verifying package {package} did not complete")]
    Task {
        /// `name-version`.
        package: String,
        /// Why the task ended.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// One package to fetch: its index record and where its repository serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageRef {
    /// The index record (name, version, `C:`, `S:`, `I:`).
    pub record: PackageRecord,
    /// The repository the record came from.
    pub repository: RepositoryLocation,
    /// The architecture whose index listed it (the directory it is served from, which for
    /// `noarch` packages differs from the record's `A:`).
    pub arch: String,
}

impl PackageRef {
    /// A reference to `record` from `index`.
    pub fn new(index: &RepositoryIndex, record: &PackageRecord) -> Self {
        Self {
            record: record.clone(),
            repository: index.spec.location.clone(),
            arch: index.arch.clone(),
        }
    }

    /// `name-version`, as messages name the package.
    pub fn display_name(&self) -> String {
        self.record.display_name()
    }

    /// The URL or path of the `.apk`: `<repo>/<arch>/<name>-<version>.apk`.
    pub fn location(&self) -> Result<Location, PackageError> {
        let file_name = self.record.filename();
        if !valid_file_name(&self.record.name, &self.record.version) {
            return Err(PackageError::InvalidFileName {
                package: self.display_name(),
                file_name,
            });
        }
        self.repository
            .package_location(&self.arch, &file_name)
            .map_err(|source| PackageError::Location {
                package: self.display_name(),
                source: Box::new(source),
            })
    }
}

/// A package whose bytes are in the cache and verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPackage {
    /// The index record it was fetched for.
    pub record: PackageRecord,
    /// The cached `.apk`.
    pub path: PathBuf,
    /// SHA-256 of the whole `.apk` file.
    pub apk_sha256: [u8; 32],
    /// Size of the `.apk` file in bytes.
    pub size: u64,
    /// Byte range of the signature member in the file (empty for an unsigned package).
    pub signature_range: Range<u64>,
    /// Byte range of the control member.
    pub control_range: Range<u64>,
    /// Byte range of the data member (to the end of the file).
    pub data_range: Range<u64>,
    /// SHA-1 of the control member's compressed bytes (what `C:` encodes as `Q1…`).
    pub control_sha1: [u8; 20],
    /// SHA-256 of the data member's compressed bytes (the `datahash`).
    pub data_sha256: [u8; 32],
    /// SHA-256 of the decompressed data tar (its diff ID as a layer), when the data member was
    /// decompressed into a spool.
    pub data_diff_id: Option<[u8; 32]>,
    /// The parsed `.PKGINFO`.
    pub pkginfo: PkgInfo,
    /// Whether the package was already in the cache (nothing was downloaded or copied).
    pub from_cache: bool,
}

/// The metadata apk takes from a package's own `.PKGINFO` while installing it, rather than from
/// the index record the solver chose: apk-tools 3.0.6 reads `replaces`, `replaces_priority` and
/// `triggers` there (`read_info_line` in `database.c`, after `apk_db_install_v2meta` empties
/// `replaces`) and ignores the index's `r:` and `q:` (`apk_pkgtmpl_add_info` in `package.c`).
/// `datahash` is the only other key it reads, to check the data member. Everything else
/// (name, version, origin, dependencies, provides) comes from the index record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallMetadata {
    /// `replaces` atoms of every `replaces` line, in order, as `apk_blob_pull_deps` keeps them:
    /// a line stops at its first word that does not parse or carries a repository tag, and
    /// atoms with versions apk calls broken are kept.
    pub replaces: Vec<Dependency>,
    /// `replaces_priority`: the leading decimal digits of the last such line, kept to 16 bits
    /// as apk's `unsigned short` keeps them; 0 when absent.
    pub replaces_priority: u16,
    /// The space-separated paths of the last `triggers` line (each line replaces the earlier
    /// ones).
    pub triggers: Vec<String>,
}

impl InstallMetadata {
    /// Takes what apk's installer reads from the parsed `.PKGINFO`.
    pub fn from_pkginfo(info: &PkgInfo) -> Self {
        Self {
            replaces: parse_index_list(&info.replaces.join(" ")).atoms,
            replaces_priority: info
                .replaces_priority
                .map_or(0, |priority| u16::try_from(priority).unwrap_or(u16::MAX)),
            triggers: info.triggers.clone(),
        }
    }
}

/// Downloads and verifies packages into the content-addressed cache.
///
/// A new download (or local copy) is written to `<cache>/packages/<hex>.apk.partial` (locked
/// while written; a private temporary file when another fetch holds it), verified in full, then
/// renamed to `<hex>.apk`. A cache hit is re-verified without decompressing the data member:
/// the control member against `C:`, `.PKGINFO`'s name and version against the record, the data
/// member's compressed bytes against `datahash`, and the whole file's SHA-256 is recomputed; an
/// entry that fails is deleted and fetched again.
#[derive(Clone, Debug)]
pub struct PackageFetcher {
    /// The HTTP client (see `repository::http_client`).
    pub client: reqwest::Client,
    /// Cache root; packages live in `<cache>/packages/`.
    pub cache_dir: PathBuf,
    /// How many packages are fetched at the same time.
    pub concurrency: usize,
    /// Retry policy for each download.
    pub retries: RetryPolicy,
    /// Decompression caps; the data cap is tightened per package from its `I:` size.
    pub limits: Limits,
    /// Absolute cap on one `.apk` file.
    pub max_package_size: u64,
    /// Bytes allowed beyond the index's `S:` size.
    pub size_slack: u64,
    /// Decompressed data allowed beyond twice the index's `I:` size.
    pub installed_size_slack: u64,
}

/// What one fetch did, for the summary.
struct Fetched {
    package: VerifiedPackage,
    bytes_transferred: u64,
}

/// What a package must turn out to be.
#[derive(Clone)]
struct Expectation {
    package: String,
    name: String,
    version: String,
    checksum: Checksum,
    source: Location,
}

impl Expectation {
    /// Maps an IO error on `path` to [`PackageError::Io`] naming this package.
    fn io_error<'s>(&'s self, path: &'s Path) -> impl Fn(io::Error) -> PackageError + Copy + 's {
        move |source| PackageError::Io {
            package: self.package.clone(),
            path: path.to_path_buf(),
            source,
        }
    }
}

impl PackageFetcher {
    /// A fetcher with the defaults: 8 parallel downloads, the default retry policy and caps.
    pub fn new(client: reqwest::Client, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            client,
            cache_dir: cache_dir.into(),
            concurrency: DEFAULT_CONCURRENCY,
            retries: RetryPolicy::default(),
            limits: Limits::default(),
            max_package_size: DEFAULT_MAX_PACKAGE_SIZE,
            size_slack: DEFAULT_SIZE_SLACK,
            installed_size_slack: DEFAULT_INSTALLED_SIZE_SLACK,
        }
    }

    /// The cache file of a package with `C:` digest `checksum`.
    pub fn cache_path(&self, checksum: &Checksum) -> PathBuf {
        self.cache_dir
            .join(CACHE_PACKAGES_DIR)
            .join(cache_file_name(checksum))
    }

    /// Fetches and verifies every package, `concurrency` at a time, and returns them in the
    /// order given. Packages with the same `C:` are fetched once. All fetches run to the end;
    /// the error returned is the first failing package's in the order given.
    pub async fn fetch_all(
        &self,
        packages: &[PackageRef],
    ) -> Result<Vec<VerifiedPackage>, PackageError> {
        self.fetch_all_with(packages, None).await
    }

    /// [`Self::fetch_all`], also decompressing each package's data stream into
    /// [`spool_path`]`(spool_dir, C:)` while it is verified: a new download and a cache hit
    /// alike are read once, hashed and decompressed in the same pass (a cache hit is then
    /// verified in full, data member decompressed, instead of by its compressed bytes only).
    /// The spool of a package whose fetch failed is unspecified.
    pub async fn fetch_all_spooled(
        &self,
        packages: &[PackageRef],
        spool_dir: &Path,
    ) -> Result<Vec<VerifiedPackage>, PackageError> {
        tokio::fs::create_dir_all(spool_dir)
            .await
            .map_err(|source| PackageError::CacheDir {
                path: spool_dir.to_path_buf(),
                source,
            })?;
        self.fetch_all_with(packages, Some(spool_dir)).await
    }

    /// Creates `<cache>/packages/`.
    async fn create_packages_dir(&self) -> Result<(), PackageError> {
        let packages_dir = self.cache_dir.join(CACHE_PACKAGES_DIR);
        tokio::fs::create_dir_all(&packages_dir)
            .await
            .map_err(|source| PackageError::CacheDir {
                path: packages_dir,
                source,
            })
    }

    async fn fetch_all_with(
        &self,
        packages: &[PackageRef],
        spool_dir: Option<&Path>,
    ) -> Result<Vec<VerifiedPackage>, PackageError> {
        self.create_packages_dir().await?;

        let mut first_with_key: HashMap<String, usize> = HashMap::new();
        let mut unique = Vec::new();
        let mut duplicate_of = vec![None; packages.len()];
        for (position, package) in packages.iter().enumerate() {
            let key = package.record.checksum().map_or_else(
                |_| package.record.checksum.clone(),
                |checksum| cache_file_name(&checksum),
            );
            match first_with_key.get(&key) {
                Some(&first) => duplicate_of[position] = Some(first),
                None => {
                    first_with_key.insert(key, position);
                    unique.push(position);
                }
            }
        }

        let mut results: Vec<Option<Result<Fetched, PackageError>>> =
            (0..packages.len()).map(|_| None).collect();
        let mut stream = futures::stream::iter(unique.into_iter().map(|position| async move {
            (
                position,
                self.fetch_one(&packages[position], spool_dir).await,
            )
        }))
        .buffer_unordered(self.concurrency.max(1));
        while let Some((position, result)) = stream.next().await {
            results[position] = Some(result);
        }
        drop(stream);

        let mut verified = Vec::with_capacity(packages.len());
        let (mut transferred, mut cache_hits) = (0u64, 0usize);
        for (position, package) in packages.iter().enumerate() {
            let source = duplicate_of[position].unwrap_or(position);
            match &results[source] {
                Some(Ok(fetched)) => {
                    let mut copy = fetched.package.clone();
                    if source == position {
                        transferred += fetched.bytes_transferred;
                        cache_hits += usize::from(copy.from_cache);
                    } else {
                        copy.record = package.record.clone();
                    }
                    verified.push(copy);
                }
                Some(Err(_)) | None => {
                    return Err(take_error(&mut results, source, package));
                }
            }
        }
        info!(
            packages = verified.len(),
            bytes_downloaded = transferred,
            cache_hits,
            "packages fetched and verified"
        );
        Ok(verified)
    }

    /// Fetches and verifies one package (a cache hit is re-verified first).
    pub async fn fetch(&self, package: &PackageRef) -> Result<VerifiedPackage, PackageError> {
        self.create_packages_dir().await?;
        self.fetch_one(package, None)
            .await
            .map(|fetched| fetched.package)
    }

    async fn fetch_one(
        &self,
        package: &PackageRef,
        spool_dir: Option<&Path>,
    ) -> Result<Fetched, PackageError> {
        let name = package.display_name();
        let checksum =
            package
                .record
                .checksum()
                .map_err(|source| PackageError::InvalidChecksum {
                    package: name.clone(),
                    source,
                })?;
        let source = package.location()?;
        let expect = Expectation {
            package: name.clone(),
            name: package.record.name.clone(),
            version: package.record.version.clone(),
            checksum,
            source,
        };
        let cache_path = self.cache_path(&expect.checksum);
        let limits = self.package_limits(&package.record);
        let spool = spool_dir.map(|dir| spool_path(dir, &expect.checksum));
        let spool = spool.as_deref();

        if let Some(verified) = self.try_cache(&cache_path, &expect, &limits, spool).await? {
            return Ok(Fetched {
                package: self.finish(package, verified, &cache_path, true),
                bytes_transferred: 0,
            });
        }

        let claim = claim_partial(&cache_path).map_err(expect.io_error(&cache_path))?;
        let (partial, partial_path) = match claim {
            Claim::Cached => {
                if let Some(verified) = self.try_cache(&cache_path, &expect, &limits, spool).await?
                {
                    return Ok(Fetched {
                        package: self.finish(package, verified, &cache_path, true),
                        bytes_transferred: 0,
                    });
                }
                let path = temp_path(&cache_path);
                let file = create_private(&path).map_err(expect.io_error(&path))?;
                (file, path)
            }
            Claim::Partial { file, path } => (file, path),
        };
        let result = self
            .fill_and_verify(
                partial,
                &partial_path,
                &cache_path,
                &expect,
                &package.record,
                &limits,
                spool,
            )
            .await;
        if let Err(error) = &result
            && !keep_for_resume(error, &partial_path)
        {
            let _cleanup = std::fs::remove_file(&partial_path);
        }
        let (verified, transferred) = result?;
        Ok(Fetched {
            package: self.finish(package, verified, &cache_path, false),
            bytes_transferred: transferred,
        })
    }

    /// Downloads (or copies) into the partial file, verifies (spooling the data stream when
    /// `spool` is given), and renames it into the cache. A resumed download that fails
    /// verification is downloaded once more from scratch.
    #[allow(clippy::too_many_arguments)]
    async fn fill_and_verify(
        &self,
        partial: File,
        partial_path: &Path,
        cache_path: &Path,
        expect: &Expectation,
        record: &PackageRecord,
        limits: &Limits,
        spool: Option<&Path>,
    ) -> Result<(Verified, u64), PackageError> {
        let size_limit = self.size_limit(record);
        let mut partial = tokio::fs::File::from_std(partial);
        let mut transferred = 0u64;
        let mut fresh_retry_left = true;
        loop {
            let resumed = match &expect.source {
                Location::Url(url) => {
                    self.download(
                        url,
                        &mut partial,
                        partial_path,
                        expect,
                        size_limit,
                        &mut transferred,
                    )
                    .await?
                }
                Location::Path(path) => {
                    copy_local(path, &mut partial, partial_path, expect, size_limit).await?;
                    false
                }
            };
            partial
                .flush()
                .await
                .map_err(expect.io_error(partial_path))?;
            let outcome = verify_in_background(
                partial_path.to_path_buf(),
                expect,
                limits,
                Verification::Full,
                spool,
            )
            .await;
            match outcome {
                Ok(verified) => {
                    std::fs::rename(partial_path, cache_path)
                        .map_err(expect.io_error(cache_path))?;
                    debug!(package = %expect.package, source = %expect.source, bytes = verified.size, "package downloaded and verified");
                    return Ok((verified, transferred));
                }
                Err(error @ PackageError::Spool { .. }) => return Err(error),
                Err(error) if resumed && fresh_retry_left => {
                    warn!(package = %expect.package, error = %crate::error::Chain(&error), "resumed download does not verify; downloading it again from the start");
                    fresh_retry_left = false;
                    truncate(&mut partial, partial_path, expect).await?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The verified cache entry, if there is one; a cache file that no longer verifies is
    /// removed (and `None` returned) so that it is fetched again. With `spool`, the entry is
    /// verified in full and its data stream decompressed into `spool` in the same pass; a
    /// spool that cannot be written is an error, never a reason to drop the entry.
    async fn try_cache(
        &self,
        cache_path: &Path,
        expect: &Expectation,
        limits: &Limits,
        spool: Option<&Path>,
    ) -> Result<Option<Verified>, PackageError> {
        match tokio::fs::metadata(cache_path).await {
            Ok(metadata) if metadata.is_file() => {}
            Ok(_) => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(expect.io_error(cache_path)(source)),
        }
        let verification = if spool.is_some() {
            Verification::Full
        } else {
            Verification::Cached
        };
        match verify_in_background(
            cache_path.to_path_buf(),
            expect,
            limits,
            verification,
            spool,
        )
        .await
        {
            Ok(verified) => {
                debug!(package = %expect.package, path = %cache_path.display(), "package found in cache");
                Ok(Some(verified))
            }
            Err(error @ PackageError::Spool { .. }) => Err(error),
            Err(error) => {
                warn!(package = %expect.package, path = %cache_path.display(), error = %crate::error::Chain(&error), "cached package does not verify; fetching it again");
                let _cleanup = std::fs::remove_file(cache_path);
                Ok(None)
            }
        }
    }

    /// Downloads `url` into `partial`, resuming from its current length; retries per policy.
    /// Returns whether the final content was produced by resuming.
    async fn download(
        &self,
        url: &str,
        partial: &mut tokio::fs::File,
        partial_path: &Path,
        expect: &Expectation,
        limit: u64,
        transferred: &mut u64,
    ) -> Result<bool, PackageError> {
        let mut retrier = self.retries.start();
        let mut restarted = false;
        loop {
            let offset = partial
                .metadata()
                .await
                .map_err(expect.io_error(partial_path))?
                .len();
            let offset = if offset > limit {
                truncate(partial, partial_path, expect).await?;
                0
            } else {
                offset
            };
            let attempt = retrier.attempt();
            let failure = match self
                .download_once(
                    url,
                    partial,
                    partial_path,
                    expect,
                    offset,
                    limit,
                    transferred,
                )
                .await
            {
                Ok(resumed) => return Ok(resumed),
                Err(AttemptError::Final(error)) => return Err(error),
                Err(AttemptError::Restart) if !restarted => {
                    debug!(%url, "server ignored the resume offset; downloading from the start");
                    restarted = true;
                    truncate(partial, partial_path, expect).await?;
                    continue;
                }
                Err(AttemptError::Restart) => {
                    return Err(PackageError::HttpStatus {
                        package: expect.package.clone(),
                        url: url.to_owned(),
                        status: StatusCode::PARTIAL_CONTENT.as_u16(),
                    });
                }
                Err(AttemptError::Retryable(failure)) => failure,
            };
            let Some(delay) = retrier.next_delay(failure.decision()) else {
                return Err(transfer_error(failure, &expect.package, url));
            };
            debug!(package = %expect.package, %url, attempt, ?delay, failure = ?failure, "retrying package download");
            tokio::time::sleep(delay).await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn download_once(
        &self,
        url: &str,
        partial: &mut tokio::fs::File,
        partial_path: &Path,
        expect: &Expectation,
        offset: u64,
        limit: u64,
        transferred: &mut u64,
    ) -> Result<bool, AttemptError> {
        let io_error = |source| AttemptError::Final(expect.io_error(partial_path)(source));
        let too_large = || {
            AttemptError::Final(PackageError::TooLarge {
                package: expect.package.clone(),
                location: expect.source.clone(),
                limit,
            })
        };
        let mut request = self.client.get(url);
        if offset > 0 {
            request = request.header(RANGE, format!("bytes={offset}-"));
        }
        let mut response = request
            .send()
            .await
            .map_err(|error| AttemptError::Retryable(TransferFailure::Transport(error)))?;
        let status = response.status();
        let resumed = match status {
            StatusCode::OK => {
                partial.set_len(0).await.map_err(io_error)?;
                false
            }
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                if content_range_start(response.headers()) != Some(offset) {
                    return Err(AttemptError::Restart);
                }
                true
            }
            // The partial file may already hold the whole package; verification decides.
            StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => return Ok(true),
            _ => {
                return Err(AttemptError::Retryable(TransferFailure::from_response(
                    &response,
                )));
            }
        };
        let start = if resumed { offset } else { 0 };
        let remaining = response.content_length().unwrap_or(0);
        if start.saturating_add(remaining) > limit {
            return Err(too_large());
        }
        partial
            .seek(SeekFrom::Start(start))
            .await
            .map_err(io_error)?;
        let mut position = start;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(error) => {
                    partial.flush().await.map_err(io_error)?;
                    return Err(AttemptError::Retryable(TransferFailure::Transport(error)));
                }
            };
            let length = chunk.len() as u64;
            if position.saturating_add(length) > limit {
                return Err(too_large());
            }
            partial.write_all(&chunk).await.map_err(io_error)?;
            position += length;
            *transferred += length;
        }
        partial.flush().await.map_err(io_error)?;
        Ok(resumed)
    }

    /// Finishes the record: the cache path and whether it was a cache hit.
    fn finish(
        &self,
        package: &PackageRef,
        verified: Verified,
        cache_path: &Path,
        from_cache: bool,
    ) -> VerifiedPackage {
        VerifiedPackage {
            record: package.record.clone(),
            path: cache_path.to_path_buf(),
            apk_sha256: verified.apk_sha256,
            size: verified.size,
            signature_range: verified.signature_range,
            control_range: verified.control_range,
            data_range: verified.data_range,
            control_sha1: verified.control_sha1,
            data_sha256: verified.data_sha256,
            data_diff_id: verified.data_diff_id,
            pkginfo: verified.pkginfo,
            from_cache,
        }
    }

    /// Cap on the `.apk` size: `S:` plus slack, never above the absolute cap (the absolute cap
    /// alone when the index gives no size).
    fn size_limit(&self, record: &PackageRecord) -> u64 {
        size_limit(record.size, self.size_slack, self.max_package_size)
    }

    /// The caps for one package: the data cap tightened from its installed size.
    fn package_limits(&self, record: &PackageRecord) -> Limits {
        Limits {
            max_data_size: data_limit(
                record.installed_size,
                self.installed_size_slack,
                self.limits.max_data_size,
            ),
            ..self.limits
        }
    }
}

/// `S:` plus slack, capped by `absolute`; `absolute` when the size is unknown (0).
fn size_limit(declared: u64, slack: u64, absolute: u64) -> u64 {
    if declared == 0 {
        absolute
    } else {
        declared.saturating_add(slack).min(absolute)
    }
}

/// Twice `I:` plus slack, capped by `absolute`; `absolute` when the size is unknown (0).
fn data_limit(installed: u64, slack: u64, absolute: u64) -> u64 {
    if installed == 0 {
        absolute
    } else {
        installed
            .saturating_mul(2)
            .saturating_add(slack)
            .min(absolute)
    }
}

/// Whether a failed fetch's partial file is worth keeping for the next run to resume: only the
/// shared `.partial` file, only when it holds bytes, and only after a transfer failure (bytes
/// that failed verification or a size cap are never kept).
fn keep_for_resume(error: &PackageError, partial_path: &Path) -> bool {
    let shared = partial_path
        .file_name()
        .is_some_and(|name| name.to_string_lossy().ends_with(PARTIAL_SUFFIX));
    let transfer_failure = matches!(
        error,
        PackageError::Request { .. } | PackageError::HttpStatus { .. }
    );
    let has_bytes = std::fs::metadata(partial_path).is_ok_and(|metadata| metadata.len() > 0);
    shared && transfer_failure && has_bytes
}

/// Where [`PackageFetcher::fetch_all_spooled`] writes the decompressed data stream of the
/// package whose `C:` digest is `checksum`: `<spool_dir>/<hex of the digest>.tar`.
pub fn spool_path(spool_dir: &Path, checksum: &Checksum) -> PathBuf {
    spool_dir.join(format!("{}{SPOOL_SUFFIX}", hex::encode(&checksum.bytes)))
}

/// `<hex of the C: digest>.apk`.
fn cache_file_name(checksum: &Checksum) -> String {
    format!("{}.apk", hex::encode(&checksum.bytes))
}

/// A name and version that make a plain file name (no path separators, not hidden tricks).
fn valid_file_name(name: &str, version: &str) -> bool {
    let plain = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && !part.contains(['/', '\\', '\0'])
            && !part.chars().any(char::is_control)
    };
    plain(name) && plain(version)
}

/// The first byte position of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    parse_content_range_start(value)
}

fn parse_content_range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, _total) = range.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let start = start.trim().parse::<u64>().ok()?;
    let end = end.trim().parse::<u64>().ok()?;
    (start <= end).then_some(start)
}

/// Takes the error of the fetch at `source` out of the results (or builds one when the fetch
/// never ran, which cannot happen for a source position).
fn take_error(
    results: &mut [Option<Result<Fetched, PackageError>>],
    source: usize,
    package: &PackageRef,
) -> PackageError {
    match results.get_mut(source).and_then(Option::take) {
        Some(Err(error)) => error,
        _ => PackageError::Io {
            package: package.display_name(),
            path: PathBuf::new(),
            source: io::Error::other("the package was not fetched"),
        },
    }
}

/// A failed download attempt.
enum AttemptError {
    /// Maybe retryable, per the retry policy.
    Retryable(TransferFailure),
    /// The server answered a range request with another range: start over without one.
    Restart,
    /// Not retryable.
    Final(PackageError),
}

fn transfer_error(failure: TransferFailure, package: &str, url: &str) -> PackageError {
    match failure {
        TransferFailure::Status { status, .. } => PackageError::HttpStatus {
            package: package.to_owned(),
            url: url.to_owned(),
            status: status.as_u16(),
        },
        TransferFailure::Transport(source) => PackageError::Request {
            package: package.to_owned(),
            url: url.to_owned(),
            source: source.without_url(),
        },
    }
}

async fn truncate(
    partial: &mut tokio::fs::File,
    partial_path: &Path,
    expect: &Expectation,
) -> Result<(), PackageError> {
    partial
        .set_len(0)
        .await
        .map_err(expect.io_error(partial_path))
}

/// Copies a local package into the partial file, refusing files over `limit`.
async fn copy_local(
    source: &Path,
    partial: &mut tokio::fs::File,
    partial_path: &Path,
    expect: &Expectation,
    limit: u64,
) -> Result<(), PackageError> {
    let too_large = || PackageError::TooLarge {
        package: expect.package.clone(),
        location: expect.source.clone(),
        limit,
    };
    let mut input = tokio::fs::File::open(source)
        .await
        .map_err(expect.io_error(source))?;
    let length = input
        .metadata()
        .await
        .map_err(expect.io_error(source))?
        .len();
    if length > limit {
        return Err(too_large());
    }
    truncate(partial, partial_path, expect).await?;
    partial
        .seek(SeekFrom::Start(0))
        .await
        .map_err(expect.io_error(partial_path))?;
    let copied = {
        use tokio::io::AsyncReadExt as _;
        let mut capped = (&mut input).take(limit.saturating_add(1));
        tokio::io::copy(&mut capped, partial)
            .await
            .map_err(expect.io_error(source))?
    };
    if copied > limit {
        return Err(too_large());
    }
    Ok(())
}

/// Who may write a package's partial download.
enum Claim {
    /// The package arrived in the cache while the claim was being made.
    Cached,
    /// This fetch owns `file` at `path` (locked, or private to it).
    Partial { file: File, path: PathBuf },
}

/// Opens and locks `<cache file>.partial` (kept across runs so that a download resumes). When
/// another fetch holds the lock, or the file system cannot lock, a private temporary file is
/// used instead, so that two writers never share a file.
fn claim_partial(cache_path: &Path) -> io::Result<Claim> {
    let mut name = cache_path
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push(PARTIAL_SUFFIX);
    let partial_path = cache_path.with_file_name(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&partial_path)?;
    match file.try_lock() {
        Ok(()) => {
            // The path may have been renamed into the cache by another fetch between our
            // open and our lock: then the file we hold is the cache entry; never write to it.
            if cache_path.exists() {
                return Ok(Claim::Cached);
            }
            Ok(Claim::Partial {
                file,
                path: partial_path,
            })
        }
        Err(TryLockError::WouldBlock | TryLockError::Error(_)) => {
            let path = temp_path(cache_path);
            let file = create_private(&path)?;
            Ok(Claim::Partial { file, path })
        }
    }
}

fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
}

/// How thoroughly a file is verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verification {
    /// Everything, decompressing the data member: for new downloads.
    Full,
    /// For cache hits: the control member against `C:` and `.PKGINFO` against the record, and
    /// the data member's compressed bytes against `datahash` and the whole file's SHA-256,
    /// without decompressing the data (it was decompressed when it entered the cache).
    Cached,
}

/// What verifying a file yields.
struct Verified {
    apk_sha256: [u8; 32],
    size: u64,
    signature_range: Range<u64>,
    control_range: Range<u64>,
    data_range: Range<u64>,
    control_sha1: [u8; 20],
    data_sha256: [u8; 32],
    data_diff_id: Option<[u8; 32]>,
    pkginfo: PkgInfo,
}

async fn verify_in_background(
    path: PathBuf,
    expect: &Expectation,
    limits: &Limits,
    verification: Verification,
    spool: Option<&Path>,
) -> Result<Verified, PackageError> {
    let task_expect = expect.clone();
    let limits = *limits;
    let spool = spool.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || match verification {
        Verification::Full => verify_full(&path, &task_expect, &limits, spool.as_deref()),
        Verification::Cached => verify_cached(&path, &task_expect, &limits),
    })
    .await
    .map_err(|source| PackageError::Task {
        package: expect.package.clone(),
        source,
    })?
}

/// Streams the whole file through the archive reader: control member against `C:`, `.PKGINFO`
/// against the record, data member decompressed to its end under the caps (into `spool` when
/// given) and hashed against `datahash`, and the whole file hashed.
fn verify_full(
    path: &Path,
    expect: &Expectation,
    limits: &Limits,
    spool: Option<&Path>,
) -> Result<Verified, PackageError> {
    let file = File::open(path).map_err(expect.io_error(path))?;
    let mut reader = HashingReader::new(BufReader::with_capacity(READ_BUFFER_SIZE, file));
    let PackageArchive {
        signatures,
        control,
        data,
    } = read_package(&mut reader, limits).map_err(|source| archive_error(expect, source))?;
    check_control(&control, expect)?;
    let signed = !signatures.is_empty();
    let mut data = data;
    let data_diff_id = match spool {
        Some(spool) => Some(write_spool(&mut data, spool, expect)?),
        None => None,
    };
    let data = data
        .finish()
        .map_err(|source| archive_error(expect, source))?;
    let size = reader.count;
    let apk_sha256: [u8; 32] = reader.hasher.finalize().into();

    let control_size = control.digests.compressed_size;
    let signature_size = size
        .checked_sub(control_size)
        .and_then(|rest| rest.checked_sub(data.compressed_size))
        .filter(|&signature_size| signed || signature_size == 0)
        .ok_or_else(|| {
            archive_error(
                expect,
                ArchiveError::MissingMember {
                    member: Member::Signature,
                },
            )
        })?;
    let control_end = signature_size + control_size;
    Ok(Verified {
        apk_sha256,
        size,
        signature_range: 0..signature_size,
        control_range: signature_size..control_end,
        data_range: control_end..size,
        control_sha1: control.digests.sha1,
        data_sha256: data.sha256,
        data_diff_id,
        pkginfo: control.pkginfo,
    })
}

/// Decompresses the rest of the data member into the file `spool` and returns the SHA-256 of
/// what it wrote. A read error ends the copy quietly: the reader keeps it, and
/// [`DataReader::finish`] reports it.
fn write_spool<R: Read>(
    data: &mut DataReader<R>,
    spool: &Path,
    expect: &Expectation,
) -> Result<[u8; 32], PackageError> {
    let spool_error = |source| PackageError::Spool {
        package: expect.package.clone(),
        path: spool.to_path_buf(),
        source,
    };
    let mut out = File::create(spool).map_err(spool_error)?;
    let mut buffer = vec![0u8; SPOOL_BUFFER_SIZE];
    let mut hasher = Sha256::new();
    loop {
        let read = match data.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        hasher.update(&buffer[..read]);
        out.write_all(&buffer[..read]).map_err(spool_error)?;
    }
    Ok(hasher.finalize().into())
}

/// The cache-hit check (see [`Verification::Cached`]).
fn verify_cached(
    path: &Path,
    expect: &Expectation,
    limits: &Limits,
) -> Result<Verified, PackageError> {
    let io = expect.io_error(path);
    let mut file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let PackageArchive {
        signatures,
        control,
        data,
    } = read_package(BufReader::with_capacity(READ_BUFFER_SIZE, &file), limits)
        .map_err(|source| archive_error(expect, source))?;
    // The data member is checked below by hashing its compressed bytes, not decompressed.
    drop(data);
    check_control(&control, expect)?;
    let signed = !signatures.is_empty();
    let datahash = control.pkginfo.datahash.ok_or_else(|| {
        archive_error(
            expect,
            ArchiveError::MissingDatahash {
                package: control.pkginfo.pkgname.clone(),
            },
        )
    })?;

    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let signature_size = if signed {
        first_member_size(&mut file, limits.max_signature_size)
            .map_err(|source| archive_error(expect, source))?
    } else {
        0
    };
    let control_end = signature_size + control.digests.compressed_size;
    if control_end > size {
        return Err(archive_error(
            expect,
            ArchiveError::MissingMember {
                member: Member::Data,
            },
        ));
    }

    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut reader = BufReader::with_capacity(READ_BUFFER_SIZE, file);
    let mut whole = Sha256::new();
    let mut data = Sha256::new();
    let mut position = 0u64;
    loop {
        let buffer = reader.fill_buf().map_err(io)?;
        if buffer.is_empty() {
            break;
        }
        let length = buffer.len();
        whole.update(buffer);
        let data_from = control_end.saturating_sub(position).min(length as u64) as usize;
        data.update(&buffer[data_from..]);
        position += length as u64;
        reader.consume(length);
    }
    let data_sha256: [u8; 32] = data.finalize().into();
    if data_sha256 != datahash {
        return Err(PackageError::ChecksumMismatch {
            package: expect.package.clone(),
            expected: hex::encode(datahash),
            actual: hex::encode(data_sha256),
            what: Member::Data,
        });
    }
    Ok(Verified {
        apk_sha256: whole.finalize().into(),
        size: position,
        signature_range: 0..signature_size,
        control_range: signature_size..control_end,
        data_range: control_end..position,
        control_sha1: control.digests.sha1,
        data_sha256,
        data_diff_id: None,
        pkginfo: control.pkginfo,
    })
}

/// The compressed size of the gzip member at the reader's position (read through to its
/// trailer, at most `limit` decompressed bytes).
fn first_member_size(file: &mut File, limit: u64) -> Result<u64, ArchiveError> {
    let mut buffered = BufReader::with_capacity(READ_BUFFER_SIZE, file);
    let read_error = |source: io::Error| ArchiveError::Read {
        member: Member::Signature,
        source: std::sync::Arc::new(source),
    };
    let start = buffered.stream_position().map_err(read_error)?;
    {
        let decoder = flate2::bufread::GzDecoder::new(&mut buffered);
        let decompressed = io::copy(&mut decoder.take(limit.saturating_add(1)), &mut io::sink())
            .map_err(|source| ArchiveError::Corrupt {
                member: Member::Signature,
                source: std::sync::Arc::new(source),
            })?;
        if decompressed > limit {
            return Err(ArchiveError::TooLarge {
                member: Member::Signature,
                limit,
            });
        }
    }
    let end = buffered.stream_position().map_err(read_error)?;
    Ok(end - start)
}

/// The control member against `C:`, and `.PKGINFO`'s name and version against the record.
fn check_control(control: &ControlMember, expect: &Expectation) -> Result<(), PackageError> {
    let actual: &[u8] = match expect.checksum.algorithm {
        ChecksumAlgorithm::Sha1 => &control.digests.sha1,
        ChecksumAlgorithm::Sha256 => &control.digests.sha256,
    };
    if actual != expect.checksum.bytes.as_slice() {
        return Err(PackageError::ChecksumMismatch {
            package: expect.package.clone(),
            expected: encode_checksum(expect.checksum.algorithm, &expect.checksum.bytes),
            actual: encode_checksum(expect.checksum.algorithm, actual),
            what: Member::Control,
        });
    }
    let pkginfo = &control.pkginfo;
    for (field, expected, actual) in [
        (PKGINFO_PKGNAME, &expect.name, &pkginfo.pkgname),
        (PKGINFO_PKGVER, &expect.version, &pkginfo.pkgver),
    ] {
        if expected != actual {
            return Err(PackageError::MetadataMismatch {
                package: expect.package.clone(),
                field,
                expected: expected.clone(),
                actual: actual.clone(),
            });
        }
    }
    Ok(())
}

/// Maps archive errors; a `datahash` mismatch becomes [`PackageError::ChecksumMismatch`].
fn archive_error(expect: &Expectation, source: ArchiveError) -> PackageError {
    match source {
        ArchiveError::DatahashMismatch {
            expected, actual, ..
        } => PackageError::ChecksumMismatch {
            package: expect.package.clone(),
            expected,
            actual,
            what: Member::Data,
        },
        source => PackageError::Archive {
            package: expect.package.clone(),
            location: expect.source.clone(),
            source: Box::new(source),
        },
    }
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.count += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn install_metadata_is_read_as_apk_reads_it() {
        let check =
            |lines: &[(&str, &str)], replaces: &[&str], priority: u16, triggers: &[&str]| {
                let text: String = lines
                    .iter()
                    .map(|(key, value)| format!("{key} = {value}\n"))
                    .collect();
                let info = PkgInfo::parse(&text).unwrap();
                let metadata = InstallMetadata::from_pkginfo(&info);
                let atoms: Vec<String> =
                    metadata.replaces.iter().map(ToString::to_string).collect();
                assert_eq!(atoms, replaces, "{lines:?}");
                assert_eq!(metadata.replaces_priority, priority, "{lines:?}");
                assert_eq!(metadata.triggers, triggers, "{lines:?}");
            };
        check(&[], &[], 0, &[]);
        // Every `replaces` line adds its atoms; other keys are not install metadata.
        check(
            &[
                ("replaces", "a b>=2"),
                ("provides", "c"),
                ("replaces", "!d"),
                ("depend", "e"),
            ],
            &["a", "b>=2", "!d"],
            0,
            &[],
        );
        // A line stops at an atom apk cannot parse or that carries a tag; broken versions and
        // checksum pins are kept.
        check(
            &[
                ("replaces", "a b@edge c"),
                ("replaces", "d e<"),
                ("replaces", "f=1.x g><Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ],
            &["a", "d", "f=1.x", "g><Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA="],
            0,
            &[],
        );
        // `replaces_priority`: leading digits of the last line, in 16 bits.
        check(&[("replaces_priority", "12")], &[], 12, &[]);
        check(&[("replaces_priority", "7x")], &[], 7, &[]);
        check(&[("replaces_priority", "x7")], &[], 0, &[]);
        check(&[("replaces_priority", "70000")], &[], 4464, &[]);
        check(
            &[("replaces_priority", "3"), ("replaces_priority", "4")],
            &[],
            4,
            &[],
        );
        // `triggers`: the last line's space-separated paths.
        check(
            &[
                ("triggers", "/usr/lib/x /etc"),
                ("triggers", " /bin  /sbin "),
            ],
            &[],
            0,
            &["/bin", "/sbin"],
        );
    }

    #[test]
    fn content_ranges() {
        let check = |value: &str, expected: Option<u64>| {
            assert_eq!(parse_content_range_start(value), expected, "{value}");
        };
        check("bytes 100-199/200", Some(100));
        check("bytes 0-0/1", Some(0));
        check("bytes 5-9/*", Some(5));
        check(" bytes  7-8/9 ", Some(7));
        check("bytes */200", None);
        check("bytes 9-5/10", None);
        check("items 0-1/2", None);
        check("bytes 1-2", None);
        check("", None);
    }

    #[test]
    fn size_caps() {
        let check = |declared: u64, slack: u64, absolute: u64, expected: u64| {
            assert_eq!(size_limit(declared, slack, absolute), expected);
        };
        check(1000, 10, 1 << 30, 1010);
        check(0, 10, 1 << 30, 1 << 30);
        check(1 << 30, 1 << 20, 1 << 30, 1 << 30);
        check(u64::MAX, 1, u64::MAX, u64::MAX);

        let check = |installed: u64, slack: u64, absolute: u64, expected: u64| {
            assert_eq!(data_limit(installed, slack, absolute), expected);
        };
        check(1000, 100, 1 << 30, 2100);
        check(0, 100, 1 << 30, 1 << 30);
        check(1 << 30, 0, 1 << 30, 1 << 30);
        check(u64::MAX, 1, 1 << 40, 1 << 40);
    }

    #[test]
    fn file_names() {
        let check = |name: &str, version: &str, valid: bool| {
            assert_eq!(valid_file_name(name, version), valid, "{name} {version}");
        };
        check("busybox", "1.36.1-r0", true);
        check("libstdc++", "13.2.0-r0", true);
        check("py3-foo", "1.0_rc1-r2", true);
        check("../etc", "1", false);
        check("a/b", "1", false);
        check("a", "1/../../x", false);
        check("", "1", false);
        check("a", "", false);
        check("..", "1", false);
        check("a\nb", "1", false);
        check("a\0", "1", false);
    }

    #[test]
    fn cache_file_names_are_the_hex_digest() {
        let checksum = Checksum {
            algorithm: ChecksumAlgorithm::Sha1,
            bytes: vec![0xab; 20],
        };
        assert_eq!(
            cache_file_name(&checksum),
            format!("{}.apk", "ab".repeat(20))
        );
        let client = crate::apk::repository::http_client().unwrap();
        let fetcher = PackageFetcher::new(client, "/var/cache/securebuild");
        assert_eq!(
            fetcher.cache_path(&checksum),
            PathBuf::from(format!(
                "/var/cache/securebuild/packages/{}.apk",
                "ab".repeat(20)
            ))
        );
    }

    #[test]
    fn package_locations() {
        let record = PackageRecord {
            name: "busybox".to_owned(),
            version: "1.36.1-r0".to_owned(),
            ..PackageRecord::default()
        };
        let package = PackageRef {
            record: record.clone(),
            repository: RepositoryLocation::Url("https://example.com/os".to_owned()),
            arch: "x86_64".to_owned(),
        };
        assert_eq!(
            package.location().unwrap(),
            Location::Url("https://example.com/os/x86_64/busybox-1.36.1-r0.apk".to_owned())
        );
        let hostile = PackageRef {
            record: PackageRecord {
                name: "../../etc/passwd".to_owned(),
                ..record
            },
            ..package
        };
        assert!(matches!(
            hostile.location(),
            Err(PackageError::InvalidFileName { .. })
        ));
    }

    #[test]
    fn claims_lock_the_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join("ab.apk");
        let Claim::Partial { file: first, path } = claim_partial(&cache_path).unwrap() else {
            panic!("expected a partial claim");
        };
        assert_eq!(path, dir.path().join("ab.apk.partial"));
        let Claim::Partial { path: second, .. } = claim_partial(&cache_path).unwrap() else {
            panic!("expected a private claim");
        };
        assert_ne!(second, path, "a held lock gives a private file");
        drop(first);
        std::fs::write(&cache_path, b"cached").unwrap();
        assert!(matches!(claim_partial(&cache_path).unwrap(), Claim::Cached));
    }

    #[test]
    fn first_member_size_stops_at_the_member_end() {
        use std::io::Write as _;
        let mut member = Vec::new();
        {
            let mut encoder =
                flate2::write::GzEncoder::new(&mut member, flate2::Compression::default());
            encoder.write_all(b"first member").unwrap();
            encoder.finish().unwrap();
        }
        let mut bytes = member.clone();
        bytes.extend_from_slice(&member);
        bytes.extend_from_slice(b"trailing");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("members");
        std::fs::write(&path, &bytes).unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(
            first_member_size(&mut file, 1024).unwrap(),
            member.len() as u64
        );
        let mut file = File::open(&path).unwrap();
        assert!(matches!(
            first_member_size(&mut file, 4),
            Err(ArchiveError::TooLarge { limit: 4, .. })
        ));
    }

    /// A minimal unsigned package under `<repo>/x86_64/` and the reference to fetch it; returns
    /// the reference and the data member's uncompressed tar.
    fn local_package(repo: &Path, name: &str, files: &[(&str, &[u8])]) -> (PackageRef, Vec<u8>) {
        use flate2::write::GzEncoder;
        use std::io::Write as _;
        let gzip = |bytes: &[u8]| {
            let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        };
        let mut data = tar::Builder::new(Vec::new());
        for (path, contents) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(contents.len() as u64);
            header.set_mode(0o644);
            data.append_data(&mut header, path, *contents).unwrap();
        }
        let data_tar = data.into_inner().unwrap();
        let data_member = gzip(&data_tar);
        let pkginfo = format!(
            "pkgname = {name}\npkgver = 1.0-r0\ndatahash = {}\n",
            hex::encode(Sha256::digest(&data_member))
        );
        let mut control = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(pkginfo.len() as u64);
        header.set_mode(0o644);
        control
            .append_data(&mut header, ".PKGINFO", pkginfo.as_bytes())
            .unwrap();
        // abuild's control tar has no end-of-archive blocks.
        let control_member = gzip(control.get_ref());
        let apk = [control_member.as_slice(), &data_member].concat();
        let arch_dir = repo.join("x86_64");
        std::fs::create_dir_all(&arch_dir).unwrap();
        std::fs::write(arch_dir.join(format!("{name}-1.0-r0.apk")), &apk).unwrap();
        let record = PackageRecord {
            checksum: encode_checksum(
                ChecksumAlgorithm::Sha1,
                &sha1::Sha1::digest(&control_member),
            ),
            name: name.to_string(),
            version: "1.0-r0".to_string(),
            arch: "x86_64".to_string(),
            size: apk.len() as u64,
            installed_size: files.iter().map(|(_, c)| c.len() as u64).sum(),
            ..PackageRecord::default()
        };
        let reference = PackageRef {
            record,
            repository: RepositoryLocation::Directory(repo.to_path_buf()),
            arch: "x86_64".to_string(),
        };
        (reference, data_tar)
    }

    /// A fetcher with its cache in `<dir>/cache`.
    fn fetcher_in(dir: &Path) -> PackageFetcher {
        let client = super::super::repository::http_client().unwrap();
        PackageFetcher::new(client, dir.join("cache"))
    }

    fn spool_of(dir: &Path, reference: &PackageRef) -> PathBuf {
        spool_path(dir, &reference.record.checksum().unwrap())
    }

    #[tokio::test]
    async fn spooled_fetches_leave_the_data_tar_for_new_and_cached_packages() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let (app, app_tar) = local_package(&repo, "app", &[("usr/bin/app", b"binary")]);
        let (lib, lib_tar) = local_package(&repo, "lib", &[("usr/lib/libx.so", &[7u8; 5000])]);
        let fetcher = fetcher_in(tmp.path());
        let refs = [app.clone(), lib.clone()];

        let spools = tmp.path().join("spool-1");
        let fresh = fetcher.fetch_all_spooled(&refs, &spools).await.unwrap();
        assert!(fresh.iter().all(|p| !p.from_cache));
        assert_eq!(std::fs::read(spool_of(&spools, &app)).unwrap(), app_tar);
        // The diff ID is the SHA-256 of the decompressed tar, computed while it was written.
        let diff_id: [u8; 32] = Sha256::digest(&app_tar).into();
        let app_package = fresh
            .iter()
            .find(|p| p.record.name == app.record.name)
            .unwrap();
        assert_eq!(app_package.data_diff_id, Some(diff_id));
        assert_eq!(std::fs::read(spool_of(&spools, &lib)).unwrap(), lib_tar);

        // Cache hits are decompressed into the spool too, and verify the same way.
        let spools = tmp.path().join("spool-2");
        let cached = fetcher.fetch_all_spooled(&refs, &spools).await.unwrap();
        assert!(cached.iter().all(|p| p.from_cache));
        assert_eq!(std::fs::read(spool_of(&spools, &app)).unwrap(), app_tar);
        assert_eq!(std::fs::read(spool_of(&spools, &lib)).unwrap(), lib_tar);
        let strip = |p: &VerifiedPackage| VerifiedPackage {
            from_cache: false,
            ..p.clone()
        };
        assert_eq!(
            fresh.iter().map(strip).collect::<Vec<_>>(),
            cached.iter().map(strip).collect::<Vec<_>>()
        );
        // A plain fetch writes no spool anywhere (so measures no diff ID) and finds the same
        // packages.
        let plain = fetcher.fetch_all(&refs).await.unwrap();
        assert!(plain.iter().all(|p| p.data_diff_id.is_none()));
        let unmeasured = |p: &VerifiedPackage| VerifiedPackage {
            data_diff_id: None,
            ..strip(p)
        };
        assert_eq!(
            plain.iter().map(unmeasured).collect::<Vec<_>>(),
            cached.iter().map(unmeasured).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_tampered_cache_entry_is_fetched_again_before_it_is_spooled() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let (app, app_tar) = local_package(&repo, "app", &[("etc/app.conf", b"setting = 1\n")]);
        let fetcher = fetcher_in(tmp.path());
        let refs = [app.clone()];
        fetcher.fetch_all(&refs).await.unwrap();
        let cache_path = fetcher.cache_path(&app.record.checksum().unwrap());
        let mut bytes = std::fs::read(&cache_path).unwrap();
        let last = bytes.len() - 12;
        bytes[last] ^= 0xff;
        std::fs::write(&cache_path, &bytes).unwrap();

        let spools = tmp.path().join("spool");
        let fetched = fetcher.fetch_all_spooled(&refs, &spools).await.unwrap();
        assert!(!fetched[0].from_cache, "the tampered entry was replaced");
        assert_eq!(std::fs::read(spool_of(&spools, &app)).unwrap(), app_tar);
    }

    #[tokio::test]
    async fn an_unwritable_spool_fails_without_dropping_the_cache_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let (app, _) = local_package(&repo, "app", &[("etc/app.conf", b"x")]);
        let fetcher = fetcher_in(tmp.path());
        let refs = [app.clone()];
        fetcher.fetch_all(&refs).await.unwrap();
        let spools = tmp.path().join("spool");
        // A directory where the spool file should go cannot be written as a file.
        std::fs::create_dir_all(spool_of(&spools, &app)).unwrap();
        let error = fetcher.fetch_all_spooled(&refs, &spools).await.unwrap_err();
        assert!(
            matches!(&error, PackageError::Spool { package, path, .. }
                if package == "app-1.0-r0" && *path == spool_of(&spools, &app)),
            "{error:?}"
        );
        assert!(
            fetcher
                .cache_path(&app.record.checksum().unwrap())
                .is_file()
        );
    }
}
