//! Repositories as apk sees them: parsing repository entries, loading the keyring, and fetching
//! and verifying one architecture's `APKINDEX.tar.gz` (over HTTP with retries and an
//! ETag-revalidated disk cache, or from a local directory or file).
//!
//! It also holds the HTTP plumbing shared with `package`: the client with its TLS crypto
//! provider, the retry policy (exponential backoff with jitter, `Retry-After` honoured up to a
//! cap) and the atomic cache writes. It does not solve, download packages or parse index text
//! itself (`index` does); signature arithmetic is `signature`'s.

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use reqwest::StatusCode;
use reqwest::header::{ETAG, HeaderMap, IF_NONE_MATCH, RETRY_AFTER};
use sha2::{Digest as _, Sha256};
use tracing::{debug, info, warn};
use url::Url;

use super::archive::{ArchiveError, Limits, read_index_archive};
use super::index::{IndexError, PackageRecord, parse_index};
use super::signature::{Keyring, SignatureError};
use super::solver::SolverRepository;
use securebuild_registry::digest::sha256_hex_of;

/// File name of a signed repository index.
pub const INDEX_ARCHIVE_FILE_NAME: &str = "APKINDEX.tar.gz";
/// File name of a plain (unsigned, uncompressed) index text.
pub const INDEX_TEXT_FILE_NAME: &str = "APKINDEX";
/// Suffix that marks a local path as an index archive rather than a repository directory.
pub const INDEX_ARCHIVE_SUFFIX: &str = ".tar.gz";
/// Prefix of a repository tag in a repository entry (`@edge https://…`).
pub const TAG_PREFIX: char = '@';
/// The command-line flag that accepts unsigned or untrusted indexes, named in errors.
pub const ALLOW_UNTRUSTED_FLAG: &str = "--allow-untrusted";

/// Default cap on a downloaded `APKINDEX.tar.gz`.
pub const DEFAULT_MAX_INDEX_DOWNLOAD: u64 = 256 * 1024 * 1024;
/// Cap on a key file, local or downloaded (RSA public keys are well under 2 KiB).
pub const MAX_KEY_FILE_SIZE: u64 = 64 * 1024;

const SCHEME_HTTP: &str = "http";
const SCHEME_HTTPS: &str = "https";
const SCHEME_FILE: &str = "file";
const SCHEME_SEPARATOR: &str = "://";
const LOCALHOST: &str = "localhost";

/// Subdirectory of the cache holding downloaded indexes, one directory per URL.
const CACHE_INDEXES_DIR: &str = "indexes";
/// Subdirectory of the cache holding downloaded keys, one directory per URL.
const CACHE_KEYS_DIR: &str = "keys";
/// Cache file holding the `ETag` and the SHA-256 of the cached body it belongs to.
const CACHE_ETAG_FILE: &str = "etag";
/// Cache file name of a downloaded key body.
const CACHE_KEY_FILE: &str = "key";

const USER_AGENT: &str = concat!("securebuild/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a repository entry, key or index could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// A repository entry with nothing in it.
    #[error("empty repository entry")]
    EmptyEntry,
    /// `@tag` without a location after it.
    #[error("repository entry `{text}` has a tag but no location")]
    MissingLocation {
        /// The entry as written.
        text: String,
    },
    /// `@` followed directly by whitespace.
    #[error("repository entry `{text}` has an empty tag")]
    EmptyTag {
        /// The entry as written.
        text: String,
    },
    /// A URL that does not parse.
    #[error("invalid URL `{text}`")]
    InvalidUrl {
        /// The URL as written.
        text: String,
        /// What the URL parser reported.
        #[source]
        source: url::ParseError,
    },
    /// A scheme other than `http`, `https` or `file`.
    #[error(
        "unsupported URL scheme `{scheme}` in `{text}` (use https://, http:// or a local path)"
    )]
    UnsupportedScheme {
        /// The entry as written.
        text: String,
        /// The scheme.
        scheme: String,
    },
    /// An `http(s)` URL that cannot have paths appended (no host, a query or a fragment).
    #[error(
        "URL `{text}` cannot be a repository or key location (it needs a host and no query or fragment)"
    )]
    UnusableUrl {
        /// The URL as written.
        text: String,
    },
    /// A `file://` URL that is not an absolute local path.
    #[error("file URL `{text}` is not a local absolute path")]
    InvalidFileUrl {
        /// The URL as written.
        text: String,
    },
    /// The current directory, needed to resolve a relative path, is unavailable.
    #[error("cannot resolve relative path `{path}`: the current directory is unavailable")]
    CurrentDir {
        /// The relative path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// An architecture name that cannot be a path segment.
    #[error("invalid architecture `{arch}`")]
    InvalidArch {
        /// The architecture.
        arch: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient {
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status (after retries, where retrying applies).
    #[error("GET {url} failed: HTTP {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The request failed without a status (connection, TLS, timeout, truncated body).
    #[error("GET {url} failed")]
    Request {
        /// The URL.
        url: String,
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// A response or file larger than its cap.
    #[error("{location} is larger than {limit} bytes")]
    TooLarge {
        /// The URL or path.
        location: Location,
        /// The cap in bytes.
        limit: u64,
    },
    /// A local file that could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A cache file that could not be written.
    #[error("cannot write cache file {path}")]
    CacheWrite {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The index archive is malformed or over a size cap.
    #[error("invalid index archive {location}")]
    Archive {
        /// The URL or path.
        location: Location,
        /// What the archive reader reported.
        #[source]
        source: ArchiveError,
    },
    /// The index text does not parse.
    #[error("invalid index {location}")]
    Index {
        /// The URL or path.
        location: Location,
        /// What the index parser reported.
        #[source]
        source: IndexError,
    },
    /// A plain `APKINDEX` file that is not UTF-8.
    #[error("index {path} is not UTF-8 text")]
    IndexNotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// The index has no signature and untrusted indexes are not allowed.
    #[error(
        "index {location} of repository `{repository}` is not signed: use a signed index or pass {ALLOW_UNTRUSTED_FLAG}"
    )]
    UnsignedIndex {
        /// The repository entry as written.
        repository: String,
        /// The index URL or path.
        location: Location,
    },
    /// No signature of the index names a key in the keyring.
    #[error(
        "index {location} of repository `{repository}` is signed by untrusted key {}: add the key to the keyring or pass {ALLOW_UNTRUSTED_FLAG}",
        keys.join(", ")
    )]
    UntrustedIndex {
        /// The repository entry as written.
        repository: String,
        /// The index URL or path.
        location: Location,
        /// The key names the signatures name.
        keys: Vec<String>,
    },
    /// A signature by a trusted key does not verify: the index was altered.
    #[error(
        "index {location} of repository `{repository}` has a BAD signature by trusted key `{key}`: the index was altered or corrupted"
    )]
    BadSignature {
        /// The repository entry as written.
        repository: String,
        /// The index URL or path.
        location: Location,
        /// The trusted key the signature names.
        key: String,
    },
    /// The signature could not be checked for another reason (unsupported scheme).
    #[error("cannot verify the signature of index {location} of repository `{repository}`")]
    Signature {
        /// The repository entry as written.
        repository: String,
        /// The index URL or path.
        location: Location,
        /// What the verifier reported.
        #[source]
        source: Box<SignatureError>,
    },
    /// A plain `APKINDEX` cannot carry a signature.
    #[error(
        "index {path} of repository `{repository}` is a plain APKINDEX, which cannot be signed: pass {ALLOW_UNTRUSTED_FLAG} to use it"
    )]
    PlainIndexUntrusted {
        /// The repository entry as written.
        repository: String,
        /// The file.
        path: PathBuf,
    },
    /// A blocking verification task did not complete.
    #[error("verifying index {location} did not complete")]
    Task {
        /// The index URL or path.
        location: Location,
        /// Why the task ended.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A keyring entry with nothing in it.
    #[error("empty keyring entry")]
    EmptyKeyEntry,
    /// A key URL over plain HTTP to a host other than loopback.
    #[error(
        "key URL {url} uses http:// to a non-loopback host: keys must be fetched over https://"
    )]
    InsecureKeyUrl {
        /// The URL (after redirects).
        url: String,
    },
    /// A key location without a usable file name to trust the key under.
    #[error("keyring entry `{entry}` has no usable key file name")]
    KeyName {
        /// The keyring entry as written.
        entry: String,
    },
    /// Two keyring entries with the same file name.
    #[error("keyring entries `{first}` and `{second}` both provide key `{name}`")]
    DuplicateKey {
        /// The key name.
        name: String,
        /// The first entry.
        first: String,
        /// The second entry.
        second: String,
    },
    /// A key file that is not a usable PEM RSA public key.
    #[error("keyring entry `{entry}` is not a usable RSA public key")]
    Key {
        /// The keyring entry as written.
        entry: String,
        /// What the keyring reported.
        #[source]
        source: Box<SignatureError>,
    },
}

/// A URL or a local path, as used in messages and to name where bytes come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// An `http://` or `https://` URL.
    Url(String),
    /// A local file or directory.
    Path(PathBuf),
}

impl Location {
    /// This location with one path segment appended: `/segment` for a URL (characters that are
    /// not allowed in a path segment, such as `#`, `?` and `%`, percent-encoded), a path join
    /// otherwise.
    pub fn join(&self, segment: &str) -> Self {
        match self {
            Self::Url(url) => Self::Url(format!(
                "{}/{}",
                url.trim_end_matches('/'),
                encode_path_segment(segment)
            )),
            Self::Path(path) => Self::Path(path.join(segment)),
        }
    }
}

/// Percent-encodes every byte that is not an RFC 3986 `pchar` (unreserved, sub-delims, `:`,
/// `@`), so that `+` in `libstdc++-13.2.0-r0.apk` stays as apk sends it.
fn encode_path_segment(segment: &str) -> String {
    const KEEP: &[u8] = b"-._~!$&'()*+,;=:@";
    let mut out = String::with_capacity(segment.len());
    for &byte in segment.as_bytes() {
        if byte.is_ascii_alphanumeric() || KEEP.contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(url) => f.write_str(url),
            Self::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Where a repository lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RepositoryLocation {
    /// An `http(s)` repository base: indexes at `<url>/<arch>/APKINDEX.tar.gz`. Stored without
    /// a trailing slash.
    Url(String),
    /// A local directory with the `<arch>/APKINDEX.tar.gz` layout.
    Directory(PathBuf),
    /// One local `APKINDEX.tar.gz` (any name ending in `.tar.gz`); its packages lie beside it.
    IndexArchive(PathBuf),
    /// One local plain `APKINDEX` text file (unsigned); its packages lie beside it.
    IndexText(PathBuf),
}

impl RepositoryLocation {
    /// The URL or path of the index for `arch`.
    pub fn index_location(&self, arch: &str) -> Result<Location, RepositoryError> {
        Ok(match self {
            Self::Url(_) | Self::Directory(_) => {
                self.arch_location(arch)?.join(INDEX_ARCHIVE_FILE_NAME)
            }
            Self::IndexArchive(path) | Self::IndexText(path) => Location::Path(path.clone()),
        })
    }

    /// The URL or directory holding the index and packages for `arch`: `<repo>/<arch>`, or
    /// the directory of a single index file (whatever `arch` is).
    pub fn arch_location(&self, arch: &str) -> Result<Location, RepositoryError> {
        check_arch(arch)?;
        Ok(match self {
            Self::Url(url) => Location::Url(format!("{url}/{arch}")),
            Self::Directory(dir) => Location::Path(dir.join(arch)),
            Self::IndexArchive(path) | Self::IndexText(path) => Location::Path(
                path.parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            ),
        })
    }

    /// The URL or path of a package file for `arch`.
    pub fn package_location(
        &self,
        arch: &str,
        file_name: &str,
    ) -> Result<Location, RepositoryError> {
        Ok(self.arch_location(arch)?.join(file_name))
    }
}

/// One repository entry, as in `/etc/apk/repositories` or an image configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepositorySpec {
    /// The entry as written (trimmed), for `/etc/apk/repositories` and messages.
    pub original: String,
    /// The pinning tag without its `@`, for a tagged repository.
    pub tag: Option<String>,
    /// Where the repository lives (relative paths already resolved).
    pub location: RepositoryLocation,
}

impl RepositorySpec {
    /// Parses `[@tag ]location` where location is `https://host/path`, `http://host/path`,
    /// `file:///path`, a local directory with the `<arch>/APKINDEX.tar.gz` layout, a path to one
    /// `*.tar.gz` index archive, or a path to one plain file named `APKINDEX`.
    ///
    /// Local paths are classified by name only (nothing is read here). Relative paths are
    /// resolved against `base_dir` (the directory of the configuration file that names them)
    /// when given, else against the current directory.
    pub fn parse(text: &str, base_dir: Option<&Path>) -> Result<Self, RepositoryError> {
        let original = text.trim();
        if original.is_empty() {
            return Err(RepositoryError::EmptyEntry);
        }
        let (tag, location_text) = match original.strip_prefix(TAG_PREFIX) {
            Some(rest) => {
                let (tag, location) = rest.split_once(char::is_whitespace).ok_or_else(|| {
                    RepositoryError::MissingLocation {
                        text: original.to_owned(),
                    }
                })?;
                if tag.is_empty() {
                    return Err(RepositoryError::EmptyTag {
                        text: original.to_owned(),
                    });
                }
                let location = location.trim_start();
                if location.is_empty() {
                    return Err(RepositoryError::MissingLocation {
                        text: original.to_owned(),
                    });
                }
                (Some(tag.to_owned()), location)
            }
            None => (None, original),
        };
        let location = match parse_location(location_text, base_dir)? {
            ParsedLocation::Url(url) => RepositoryLocation::Url(url),
            ParsedLocation::Path(path) => classify_local(path),
        };
        Ok(Self {
            original: original.to_owned(),
            tag,
            location,
        })
    }

    /// The entry as a solver repository over `packages`.
    pub fn solver_repository<'a>(&self, packages: &'a [PackageRecord]) -> SolverRepository<'a> {
        SolverRepository {
            name: self.original.clone(),
            tag: self.tag.clone(),
            packages,
        }
    }
}

impl fmt::Display for RepositorySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// What a location string turned out to be, before local classification.
enum ParsedLocation {
    Url(String),
    Path(PathBuf),
}

/// Parses a URL (`http`, `https`, `file`) or a local path, resolving relative paths.
fn parse_location(text: &str, base_dir: Option<&Path>) -> Result<ParsedLocation, RepositoryError> {
    let Some((scheme, _)) = text.split_once(SCHEME_SEPARATOR) else {
        return resolve_path(Path::new(text), base_dir).map(ParsedLocation::Path);
    };
    let scheme = scheme.to_ascii_lowercase();
    let url = Url::parse(text).map_err(|source| RepositoryError::InvalidUrl {
        text: text.to_owned(),
        source,
    })?;
    match scheme.as_str() {
        SCHEME_HTTP | SCHEME_HTTPS => {
            let has_host = url.host_str().is_some_and(|host| !host.is_empty());
            if !has_host || url.query().is_some() || url.fragment().is_some() {
                return Err(RepositoryError::UnusableUrl {
                    text: text.to_owned(),
                });
            }
            Ok(ParsedLocation::Url(
                url.as_str().trim_end_matches('/').to_owned(),
            ))
        }
        SCHEME_FILE => url.to_file_path().map(ParsedLocation::Path).map_err(|()| {
            RepositoryError::InvalidFileUrl {
                text: text.to_owned(),
            }
        }),
        _ => Err(RepositoryError::UnsupportedScheme {
            text: text.to_owned(),
            scheme,
        }),
    }
}

/// Makes `path` absolute against `base_dir` (or the current directory) and drops `.`
/// components; `..` is kept (it is resolved by the file system, which may hold symlinks).
fn resolve_path(path: &Path, base_dir: Option<&Path>) -> Result<PathBuf, RepositoryError> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        let base = match base_dir {
            Some(base) if base.is_absolute() => base.to_path_buf(),
            Some(base) => current_dir(path)?.join(base),
            None => current_dir(path)?,
        };
        base.join(path)
    };
    Ok(joined
        .components()
        .filter(|component| !matches!(component, Component::CurDir))
        .collect())
}

fn current_dir(for_path: &Path) -> Result<PathBuf, RepositoryError> {
    std::env::current_dir().map_err(|source| RepositoryError::CurrentDir {
        path: for_path.to_path_buf(),
        source,
    })
}

/// Classifies a local path by its name: `APKINDEX` is a plain index, `*.tar.gz` an index
/// archive, anything else a repository directory.
fn classify_local(path: PathBuf) -> RepositoryLocation {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    if name == INDEX_TEXT_FILE_NAME {
        RepositoryLocation::IndexText(path)
    } else if name.ends_with(INDEX_ARCHIVE_SUFFIX) {
        RepositoryLocation::IndexArchive(path)
    } else {
        RepositoryLocation::Directory(path)
    }
}

/// Refuses architecture names that are not a single plain path segment.
fn check_arch(arch: &str) -> Result<(), RepositoryError> {
    let valid = !arch.is_empty()
        && arch != "."
        && arch != ".."
        && !arch.contains(['/', '\\', '\0'])
        && !arch.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(RepositoryError::InvalidArch {
            arch: arch.to_owned(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing shared with `package`.
// ---------------------------------------------------------------------------------------------

/// Builds the HTTP client used for indexes, keys and packages: rustls with the platform's
/// roots, no transparent decompression (archives must arrive byte for byte), connect and read
/// timeouts. Installs the process-wide rustls crypto provider first
/// ([`securebuild_registry::init_tls`]).
pub fn http_client() -> Result<reqwest::Client, RepositoryError> {
    securebuild_registry::init_tls();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
        .map_err(|source| RepositoryError::HttpClient { source })
}

/// How failed requests are retried: exponential backoff with jitter, a bounded number of
/// retries, on 5xx, 429 and connection failures, timeouts and cut-off bodies; never on other
/// 4xx statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// Largest `Retry-After` honoured; longer requests are shortened to this.
    pub max_retry_after: Duration,
    /// Whether backoff delays are randomised (recommended; tests may turn it off).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(15),
            max_retry_after: Duration::from_secs(60),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// Starts the retry bookkeeping for one request.
    pub(crate) fn start(&self) -> Retrier {
        let mut builder = ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay.max(self.min_delay))
            .with_max_times(self.max_retries);
        if self.jitter {
            builder = builder.with_jitter();
        }
        Retrier {
            backoff: builder.build(),
            max_retry_after: self.max_retry_after,
            attempt: 1,
        }
    }
}

/// Whether and how soon a failed attempt may be repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetryDecision {
    /// Not retryable.
    Stop,
    /// Retryable after the backoff delay.
    Retry,
    /// Retryable, and the server asked to wait this long.
    RetryAfter(Duration),
}

/// Per-request retry state over backon's exponential backoff.
pub(crate) struct Retrier {
    backoff: ExponentialBackoff,
    max_retry_after: Duration,
    attempt: usize,
}

impl Retrier {
    /// The delay before the next attempt, or `None` when the failure is final.
    pub(crate) fn next_delay(&mut self, decision: RetryDecision) -> Option<Duration> {
        let server_delay = match decision {
            RetryDecision::Stop => return None,
            RetryDecision::Retry => None,
            RetryDecision::RetryAfter(delay) => Some(delay.min(self.max_retry_after)),
        };
        let backoff = self.backoff.next()?;
        self.attempt += 1;
        Some(server_delay.map_or(backoff, |server| server.max(backoff)))
    }

    /// The number of the attempt about to be made (1 for the first).
    pub(crate) fn attempt(&self) -> usize {
        self.attempt
    }
}

/// A failed attempt at an HTTP transfer, before retries are exhausted.
#[derive(Debug)]
pub(crate) enum TransferFailure {
    /// The server answered with an unexpected status.
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// No usable response: connection, TLS, timeout, or the body was cut off.
    Transport(reqwest::Error),
}

impl TransferFailure {
    /// The failure for a response with an unexpected status.
    pub(crate) fn from_response(response: &reqwest::Response) -> Self {
        Self::Status {
            status: response.status(),
            retry_after: parse_retry_after(response.headers(), jiff::Timestamp::now()),
        }
    }

    pub(crate) fn decision(&self) -> RetryDecision {
        match self {
            Self::Status {
                status,
                retry_after,
            } => match (status_is_retryable(*status), retry_after) {
                (false, _) => RetryDecision::Stop,
                (true, Some(delay)) => RetryDecision::RetryAfter(*delay),
                (true, None) => RetryDecision::Retry,
            },
            Self::Transport(error) => {
                if transport_is_retryable(error) {
                    RetryDecision::Retry
                } else {
                    RetryDecision::Stop
                }
            }
        }
    }

    /// The final error for `url`.
    fn into_error(self, url: &str) -> RepositoryError {
        match self {
            Self::Status { status, .. } => RepositoryError::HttpStatus {
                url: url.to_owned(),
                status: status.as_u16(),
            },
            // The message names the URL already; reqwest's own text would repeat it.
            Self::Transport(source) => RepositoryError::Request {
                url: url.to_owned(),
                source: source.without_url(),
            },
        }
    }
}

/// 5xx and 429 are worth retrying; other statuses are answers.
pub(crate) fn status_is_retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// Connection failures, timeouts and failures while sending or receiving are worth retrying;
/// errors building the request or following redirects are not. A body cut off mid-stream is
/// reported by reqwest as a decode error wrapping the body error (this client decodes nothing
/// else: no decompression, no JSON), so decode errors count as transfer failures.
///
/// A TLS failure (an untrusted or mismatched certificate, a refused handshake) is an answer, not
/// a passing fault: asking again gets the same certificate.
pub(crate) fn transport_is_retryable(error: &reqwest::Error) -> bool {
    !error.is_builder()
        && !error.is_redirect()
        && !error.is_status()
        && !is_tls_failure(error)
        && (error.is_connect()
            || error.is_timeout()
            || error.is_request()
            || error.is_body()
            || error.is_decode())
}

/// Whether a rustls error is among the causes of `error`.
fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        // An I/O error shows its inner error's text but skips it in `source()`.
        let inner = current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        if current.downcast_ref::<rustls::Error>().is_some()
            || inner.is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        cause = current.source();
    }
    false
}

/// Parses `Retry-After` as delay seconds or an HTTP date (relative to `now`).
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let seconds = when.as_second().saturating_sub(now.as_second());
    Some(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

/// The body of a conditional GET.
enum Fetched {
    /// `304 Not Modified`: the cached copy is current.
    NotModified,
    /// A full body.
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        final_url: Url,
    },
}

/// GETs `url` (conditionally when `etag` is given) with retries, refusing bodies over `limit`.
async fn http_get(
    client: &reqwest::Client,
    url: &str,
    etag: Option<&str>,
    limit: u64,
    policy: &RetryPolicy,
) -> Result<Fetched, RepositoryError> {
    let mut retrier = policy.start();
    loop {
        let attempt = retrier.attempt();
        let failure = match http_get_once(client, url, etag, limit).await {
            Ok(fetched) => return Ok(fetched),
            Err(GetError::Final(error)) => return Err(error),
            Err(GetError::Retryable(failure)) => failure,
        };
        let Some(delay) = retrier.next_delay(failure.decision()) else {
            return Err(failure.into_error(url));
        };
        debug!(%url, attempt, ?delay, failure = ?failure, "retrying request");
        tokio::time::sleep(delay).await;
    }
}

enum GetError {
    Retryable(TransferFailure),
    Final(RepositoryError),
}

async fn http_get_once(
    client: &reqwest::Client,
    url: &str,
    etag: Option<&str>,
    limit: u64,
) -> Result<Fetched, GetError> {
    let too_large = || {
        GetError::Final(RepositoryError::TooLarge {
            location: Location::Url(url.to_owned()),
            limit,
        })
    };
    let mut request = client.get(url);
    if let Some(etag) = etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    let mut response = request
        .send()
        .await
        .map_err(|error| GetError::Retryable(TransferFailure::Transport(error)))?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && etag.is_some() {
        return Ok(Fetched::NotModified);
    }
    if status != StatusCode::OK {
        return Err(GetError::Retryable(TransferFailure::from_response(
            &response,
        )));
    }
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(too_large());
    }
    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let final_url = response.url().clone();
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| GetError::Retryable(TransferFailure::Transport(error)))?
    {
        if bytes.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched::Body {
        bytes,
        etag,
        final_url,
    })
}

/// Reads a local file of at most `limit` bytes.
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, RepositoryError> {
    let read_error = |source| RepositoryError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(RepositoryError::TooLarge {
            location: Location::Path(path.to_path_buf()),
            limit,
        });
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// The disk cache of downloaded indexes and keys.
// ---------------------------------------------------------------------------------------------

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over `path`. The directory is created when missing.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no directory"))?;
    std::fs::create_dir_all(dir)?;
    let temp = temp_path(path);
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _cleanup = std::fs::remove_file(&temp);
    }
    written
}

/// A unique temporary file name beside `path`: `.<name>.tmp-<pid>-<n>`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// One cached HTTP body with the `ETag` it was served with.
struct CacheEntry {
    body: PathBuf,
    etag: PathBuf,
}

/// A cached body and the `ETag` that goes with it.
struct Cached {
    bytes: Vec<u8>,
    etag: Option<String>,
}

impl CacheEntry {
    /// `<cache>/<kind>/<sha256(url)>/{<body name>,etag}`.
    fn new(cache_dir: &Path, kind: &str, url: &str, body_name: &str) -> Self {
        let dir = cache_dir.join(kind).join(sha256_hex_of(url.as_bytes()));
        Self {
            body: dir.join(body_name),
            etag: dir.join(CACHE_ETAG_FILE),
        }
    }

    /// The cached body of at most `limit` bytes, with its `ETag` when the etag file belongs to
    /// this body (it records the body's SHA-256). Unreadable entries count as absent.
    fn load(&self, limit: u64) -> Option<Cached> {
        let bytes = read_capped(&self.body, limit).ok()?;
        let etag = std::fs::read_to_string(&self.etag)
            .ok()
            .and_then(|record| decode_etag_record(&record, &sha256_hex_of(&bytes)));
        Some(Cached { bytes, etag })
    }

    /// Stores a body and its `ETag`. The old etag file is removed first, so that an
    /// interrupted store never pairs an `ETag` with the wrong body.
    fn store(&self, bytes: &[u8], etag: Option<&str>) -> Result<(), RepositoryError> {
        let cache_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RepositoryError::CacheWrite { path, source }
        };
        match std::fs::remove_file(&self.etag) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(cache_error(&self.etag)(error)),
        }
        write_atomic(&self.body, bytes).map_err(cache_error(&self.body))?;
        if let Some(etag) = etag {
            let record = encode_etag_record(etag, &sha256_hex_of(bytes));
            write_atomic(&self.etag, record.as_bytes()).map_err(cache_error(&self.etag))?;
        }
        Ok(())
    }

    /// Forgets the entry (best effort).
    fn remove(&self) {
        let _etag = std::fs::remove_file(&self.etag);
        let _body = std::fs::remove_file(&self.body);
    }
}

/// The etag file's contents: the `ETag`, then the hex SHA-256 of the body it was served with.
fn encode_etag_record(etag: &str, body_sha256: &str) -> String {
    format!("{etag}\n{body_sha256}\n")
}

/// The `ETag` from an etag file, when it belongs to a body with `body_sha256`.
fn decode_etag_record(record: &str, body_sha256: &str) -> Option<String> {
    let mut lines = record.lines();
    let etag = lines.next()?.trim();
    let digest = lines.next()?.trim();
    (!etag.is_empty() && digest == body_sha256).then(|| etag.to_owned())
}

/// GETs `url` through the cache entry: revalidates a cached copy with `If-None-Match`, returns
/// the body and whether it came from the cache. Does not store (the caller stores only what it
/// verified).
async fn cached_get(
    client: &reqwest::Client,
    url: &str,
    entry: Option<&CacheEntry>,
    limit: u64,
    policy: &RetryPolicy,
) -> Result<(Vec<u8>, Option<String>, bool, Url), RepositoryError> {
    let cached = entry.and_then(|entry| entry.load(limit));
    let etag = cached.as_ref().and_then(|cached| cached.etag.as_deref());
    match http_get(client, url, etag, limit, policy).await? {
        Fetched::NotModified => {
            let Some(Cached { bytes, etag }) = cached else {
                return Err(RepositoryError::HttpStatus {
                    url: url.to_owned(),
                    status: StatusCode::NOT_MODIFIED.as_u16(),
                });
            };
            let final_url = Url::parse(url).map_err(|source| RepositoryError::InvalidUrl {
                text: url.to_owned(),
                source,
            })?;
            Ok((bytes, etag, true, final_url))
        }
        Fetched::Body {
            bytes,
            etag,
            final_url,
        } => Ok((bytes, etag, false, final_url)),
    }
}

// ---------------------------------------------------------------------------------------------
// Keyring.
// ---------------------------------------------------------------------------------------------

/// One trusted key file as loaded: written into the image as `/etc/apk/keys/<name>` and
/// recorded in provenance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFile {
    /// The key's file name, which signatures refer to it by.
    pub name: String,
    /// The file's bytes (PEM text).
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`.
    pub sha256: [u8; 32],
    /// The keyring entry as written (path or URL).
    pub source: String,
}

/// Loads the keyring entries (local paths, `file://` URLs, `https://` URLs, or `http://` to a
/// loopback host only) into a keyring, each key named by its file name as apk names
/// `/etc/apk/keys/<name>`. Downloaded keys are cached under `<cache>/keys/` and revalidated
/// with `If-None-Match`. Returns the key files in entry order.
pub async fn load_keyring(
    entries: &[String],
    base_dir: Option<&Path>,
    client: &reqwest::Client,
    cache_dir: Option<&Path>,
) -> Result<(Keyring, Vec<KeyFile>), RepositoryError> {
    let policy = RetryPolicy::default();
    let mut keyring = Keyring::new();
    let mut files: Vec<KeyFile> = Vec::with_capacity(entries.len());
    for entry in entries {
        let text = entry.trim();
        if text.is_empty() {
            return Err(RepositoryError::EmptyKeyEntry);
        }
        let (name, bytes) = match parse_location(text, base_dir)? {
            ParsedLocation::Url(url) => {
                let parsed = Url::parse(&url).map_err(|source| RepositoryError::InvalidUrl {
                    text: url.clone(),
                    source,
                })?;
                check_key_url(&parsed)?;
                let name = key_name_from_url(&parsed).ok_or_else(|| RepositoryError::KeyName {
                    entry: text.to_owned(),
                })?;
                let cache_entry =
                    cache_dir.map(|dir| CacheEntry::new(dir, CACHE_KEYS_DIR, &url, CACHE_KEY_FILE));
                let (bytes, etag, from_cache, final_url) = cached_get(
                    client,
                    &url,
                    cache_entry.as_ref(),
                    MAX_KEY_FILE_SIZE,
                    &policy,
                )
                .await?;
                check_key_url(&final_url)?;
                if let (Some(cache_entry), false) = (&cache_entry, from_cache) {
                    cache_entry.store(&bytes, etag.as_deref())?;
                }
                (name, bytes)
            }
            ParsedLocation::Path(path) => {
                let name = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .filter(|name| valid_key_name(name))
                    .ok_or_else(|| RepositoryError::KeyName {
                        entry: text.to_owned(),
                    })?
                    .to_owned();
                (name, read_capped(&path, MAX_KEY_FILE_SIZE)?)
            }
        };
        if let Some(first) = files.iter().find(|file| file.name == name) {
            return Err(RepositoryError::DuplicateKey {
                name,
                first: first.source.clone(),
                second: text.to_owned(),
            });
        }
        let key_error = |source| RepositoryError::Key {
            entry: text.to_owned(),
            source: Box::new(source),
        };
        let pem = std::str::from_utf8(&bytes).map_err(|_| {
            key_error(SignatureError::KeyNotText {
                path: PathBuf::from(text),
            })
        })?;
        keyring.add_pem(&name, pem).map_err(key_error)?;
        debug!(key = %name, source = %text, "trusted key loaded");
        files.push(KeyFile {
            sha256: Sha256::digest(&bytes).into(),
            name,
            bytes,
            source: text.to_owned(),
        });
    }
    Ok((keyring, files))
}

/// Keys must come over https, or plain http only from the local machine.
fn check_key_url(url: &Url) -> Result<(), RepositoryError> {
    match url.scheme() {
        SCHEME_HTTPS => Ok(()),
        SCHEME_HTTP if is_loopback(url) => Ok(()),
        _ => Err(RepositoryError::InsecureKeyUrl {
            url: url.to_string(),
        }),
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case(LOCALHOST),
        None => false,
    }
}

/// The key name a URL provides: its last path segment, percent-decoded.
fn key_name_from_url(url: &Url) -> Option<String> {
    let segment = url.path_segments()?.next_back()?;
    let name = percent_decode(segment)?;
    valid_key_name(&name).then_some(name)
}

/// A key name must be usable as a file name in `/etc/apk/keys` and in `.SIGN.*.<name>`.
fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Decodes `%XX` escapes; `None` for invalid escapes or non-UTF-8 results.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------------
// Index fetching and verification.
// ---------------------------------------------------------------------------------------------

/// How [`fetch_index`] fetches and what it accepts.
#[derive(Clone, Debug)]
pub struct IndexFetchOptions {
    /// Accept unsigned indexes, indexes signed only by keys not in the keyring, and plain
    /// `APKINDEX` files. A signature by a trusted key that does not verify is refused even so.
    pub allow_untrusted: bool,
    /// Cache root; downloaded indexes live in `<cache>/indexes/<sha256(url)>/`. `None`
    /// disables caching.
    pub cache_dir: Option<PathBuf>,
    /// Decompressed size caps for the index archive.
    pub limits: Limits,
    /// Cap on the index archive's size as downloaded or read.
    pub max_download_size: u64,
    /// Retry policy for downloads.
    pub retry: RetryPolicy,
}

impl Default for IndexFetchOptions {
    fn default() -> Self {
        Self {
            allow_untrusted: false,
            cache_dir: None,
            limits: Limits::default(),
            max_download_size: DEFAULT_MAX_INDEX_DOWNLOAD,
            retry: RetryPolicy::default(),
        }
    }
}

/// One architecture's verified and parsed index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryIndex {
    /// The repository entry.
    pub spec: RepositorySpec,
    /// The architecture.
    pub arch: String,
    /// Where the index and its packages are: `<repo>/<arch>`, or the directory of a single
    /// index file.
    pub base_url_or_path: Location,
    /// The index's packages, in index order.
    pub packages: Vec<PackageRecord>,
    /// SHA-256 of the index file's bytes (the `APKINDEX.tar.gz`, or the plain `APKINDEX`).
    pub sha256: [u8; 32],
    /// The key that verified the index; `None` when it was accepted as untrusted.
    pub signed_by: Option<String>,
    /// The index `DESCRIPTION`, when present.
    pub description: Option<String>,
}

impl RepositoryIndex {
    /// This index as a solver repository.
    pub fn solver_repository(&self) -> SolverRepository<'_> {
        self.spec.solver_repository(&self.packages)
    }
}

/// Fetches, verifies and parses the index of `spec` for `arch`.
///
/// URLs: GET `<repo>/<arch>/APKINDEX.tar.gz`, revalidating a cached copy with `If-None-Match`
/// (a 304 reuses it); the cache is written (atomically) only after the index verified, and a
/// cached copy that no longer verifies is dropped and downloaded afresh. Local directories and
/// files are read directly. The archive's signature entries are checked against `keyring` the
/// way apk does (the first entry naming a trusted key decides); unsigned indexes and indexes
/// signed by unknown keys are refused unless [`IndexFetchOptions::allow_untrusted`].
pub async fn fetch_index(
    client: &reqwest::Client,
    spec: &RepositorySpec,
    arch: &str,
    keyring: &Keyring,
    options: &IndexFetchOptions,
) -> Result<RepositoryIndex, RepositoryError> {
    let index_location = spec.location.index_location(arch)?;
    let base_url_or_path = spec.location.arch_location(arch)?;
    let verified = match (&spec.location, &index_location) {
        (RepositoryLocation::IndexText(path), _) => {
            if !options.allow_untrusted {
                return Err(RepositoryError::PlainIndexUntrusted {
                    repository: spec.original.clone(),
                    path: path.clone(),
                });
            }
            let bytes = read_capped(path, options.max_download_size)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| RepositoryError::IndexNotUtf8 { path: path.clone() })?;
            let packages = parse_index(&text).map_err(|source| RepositoryError::Index {
                location: index_location.clone(),
                source,
            })?;
            warn!(repository = %spec, index = %index_location, "using an unsigned plain APKINDEX");
            VerifiedIndex {
                packages,
                sha256: Sha256::digest(text.as_bytes()).into(),
                signed_by: None,
                description: None,
            }
        }
        (_, Location::Path(path)) => {
            let bytes = read_capped(path, options.max_download_size)?;
            verify_in_background(bytes, spec, &index_location, keyring, options)
                .await?
                .0
        }
        (_, Location::Url(url)) => {
            fetch_remote_index(client, spec, url, &index_location, keyring, options).await?
        }
    };
    info!(
        repository = %spec,
        arch,
        packages = verified.packages.len(),
        signed_by = verified.signed_by.as_deref().unwrap_or("(untrusted)"),
        "repository index loaded"
    );
    Ok(RepositoryIndex {
        spec: spec.clone(),
        arch: arch.to_owned(),
        base_url_or_path,
        packages: verified.packages,
        sha256: verified.sha256,
        signed_by: verified.signed_by,
        description: verified.description,
    })
}

async fn fetch_remote_index(
    client: &reqwest::Client,
    spec: &RepositorySpec,
    url: &str,
    location: &Location,
    keyring: &Keyring,
    options: &IndexFetchOptions,
) -> Result<VerifiedIndex, RepositoryError> {
    let entry = options
        .cache_dir
        .as_deref()
        .map(|dir| CacheEntry::new(dir, CACHE_INDEXES_DIR, url, INDEX_ARCHIVE_FILE_NAME));
    let (bytes, etag, from_cache, _) = cached_get(
        client,
        url,
        entry.as_ref(),
        options.max_download_size,
        &options.retry,
    )
    .await?;
    debug!(%url, from_cache, size = bytes.len(), "index archive received");
    let (verified, bytes, etag, from_cache) =
        match verify_in_background(bytes, spec, location, keyring, options).await {
            Ok((verified, bytes)) => (verified, bytes, etag, from_cache),
            Err(error) => match &entry {
                Some(entry) if from_cache => {
                    warn!(
                        %url,
                        error = %crate::error::Chain(&error),
                        "cached index no longer verifies; downloading it again"
                    );
                    entry.remove();
                    let (bytes, etag, _, _) =
                        cached_get(client, url, None, options.max_download_size, &options.retry)
                            .await?;
                    let (verified, bytes) =
                        verify_in_background(bytes, spec, location, keyring, options).await?;
                    (verified, bytes, etag, false)
                }
                _ => return Err(error),
            },
        };
    if let (Some(entry), false) = (&entry, from_cache) {
        entry.store(&bytes, etag.as_deref())?;
    }
    Ok(verified)
}

/// What verifying an index archive yields.
struct VerifiedIndex {
    packages: Vec<PackageRecord>,
    sha256: [u8; 32],
    signed_by: Option<String>,
    description: Option<String>,
}

/// Runs [`verify_index_archive`] on the blocking pool (decompression and RSA are CPU-bound);
/// hands `bytes` back with the result so that the caller can cache them without a copy.
async fn verify_in_background(
    bytes: Vec<u8>,
    spec: &RepositorySpec,
    location: &Location,
    keyring: &Keyring,
    options: &IndexFetchOptions,
) -> Result<(VerifiedIndex, Vec<u8>), RepositoryError> {
    let repository = spec.original.clone();
    let task_location = location.clone();
    let keyring = keyring.clone();
    let limits = options.limits;
    let allow_untrusted = options.allow_untrusted;
    tokio::task::spawn_blocking(move || {
        verify_index_archive(
            &bytes,
            &repository,
            &task_location,
            &keyring,
            &limits,
            allow_untrusted,
        )
        .map(|verified| (verified, bytes))
    })
    .await
    .map_err(|source| RepositoryError::Task {
        location: location.clone(),
        source,
    })?
}

/// Splits, verifies and parses an `APKINDEX.tar.gz`.
fn verify_index_archive(
    bytes: &[u8],
    repository: &str,
    location: &Location,
    keyring: &Keyring,
    limits: &Limits,
    allow_untrusted: bool,
) -> Result<VerifiedIndex, RepositoryError> {
    let archive = read_index_archive(bytes, limits).map_err(|source| RepositoryError::Archive {
        location: location.clone(),
        source,
    })?;
    let signed_by = match keyring.verify_entries(&archive.signatures, &archive.digests) {
        Ok(key) => Some(key.to_owned()),
        Err(SignatureError::Unsigned) if allow_untrusted => {
            warn!(%repository, index = %location, "accepting an unsigned index");
            None
        }
        Err(SignatureError::NoTrustedSignature { keys }) if allow_untrusted => {
            warn!(%repository, index = %location, keys = %keys.join(", "), "accepting an index signed by untrusted keys");
            None
        }
        Err(SignatureError::Unsigned) => {
            return Err(RepositoryError::UnsignedIndex {
                repository: repository.to_owned(),
                location: location.clone(),
            });
        }
        Err(SignatureError::NoTrustedSignature { keys }) => {
            return Err(RepositoryError::UntrustedIndex {
                repository: repository.to_owned(),
                location: location.clone(),
                keys,
            });
        }
        Err(SignatureError::BadSignature { key, .. }) => {
            return Err(RepositoryError::BadSignature {
                repository: repository.to_owned(),
                location: location.clone(),
                key,
            });
        }
        Err(source) => {
            return Err(RepositoryError::Signature {
                repository: repository.to_owned(),
                location: location.clone(),
                source: Box::new(source),
            });
        }
    };
    let packages = parse_index(&archive.index).map_err(|source| RepositoryError::Index {
        location: location.clone(),
        source,
    })?;
    Ok(VerifiedIndex {
        packages,
        sha256: Sha256::digest(bytes).into(),
        signed_by,
        description: archive.description,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Describes a parse result as `kind value`: `url …`, `dir …`, `archive …`, `text …` or
    /// `error …` (the message).
    fn describe(parsed: &Result<RepositorySpec, RepositoryError>) -> String {
        match parsed {
            Ok(spec) => match &spec.location {
                RepositoryLocation::Url(url) => format!("url {url}"),
                RepositoryLocation::Directory(path) => format!("dir {}", path.display()),
                RepositoryLocation::IndexArchive(path) => format!("archive {}", path.display()),
                RepositoryLocation::IndexText(path) => format!("text {}", path.display()),
            },
            Err(error) => format!("error {error}"),
        }
    }

    fn check(text: &str, tag: Option<&str>, expected: &str) {
        let parsed = RepositorySpec::parse(text, Some(Path::new("/etc/securebuild")));
        assert_eq!(describe(&parsed), expected, "parsing `{text}`");
        if let Ok(spec) = parsed {
            assert_eq!(spec.tag.as_deref(), tag, "tag of `{text}`");
            assert_eq!(spec.original, text.trim(), "original of `{text}`");
        }
    }

    #[test]
    fn repository_entries() {
        check(
            "https://dl-cdn.alpinelinux.org/alpine/v3.20/main",
            None,
            "url https://dl-cdn.alpinelinux.org/alpine/v3.20/main",
        );
        check(
            "https://packages.wolfi.dev/os/",
            None,
            "url https://packages.wolfi.dev/os",
        );
        check(
            "http://127.0.0.1:8080/repo",
            None,
            "url http://127.0.0.1:8080/repo",
        );
        check(
            "@edge https://dl-cdn.alpinelinux.org/alpine/edge/testing",
            Some("edge"),
            "url https://dl-cdn.alpinelinux.org/alpine/edge/testing",
        );
        check(
            "  @local \t ./packages  ",
            Some("local"),
            "dir /etc/securebuild/packages",
        );
        check("/srv/repo", None, "dir /srv/repo");
        check("packages", None, "dir /etc/securebuild/packages");
        check("../repo", None, "dir /etc/securebuild/../repo");
        check(
            "./out/x86_64/APKINDEX.tar.gz",
            None,
            "archive /etc/securebuild/out/x86_64/APKINDEX.tar.gz",
        );
        check(
            "/srv/custom-index.tar.gz",
            None,
            "archive /srv/custom-index.tar.gz",
        );
        check("/srv/x86_64/APKINDEX", None, "text /srv/x86_64/APKINDEX");
        check("@dev file:///srv/repo", Some("dev"), "dir /srv/repo");
        check("", None, "error empty repository entry");
        check("   ", None, "error empty repository entry");
        check(
            "@edge",
            None,
            "error repository entry `@edge` has a tag but no location",
        );
        check(
            "@ https://example.com/repo",
            None,
            "error repository entry `@ https://example.com/repo` has an empty tag",
        );
        check(
            "ftp://example.com/repo",
            None,
            "error unsupported URL scheme `ftp` in `ftp://example.com/repo` (use https://, http:// or a local path)",
        );
        check(
            "https://example.com/repo?x=1",
            None,
            "error URL `https://example.com/repo?x=1` cannot be a repository or key location (it needs a host and no query or fragment)",
        );
        check("https://", None, "error invalid URL `https://`");
        check(
            "file://host/repo",
            None,
            "error file URL `file://host/repo` is not a local absolute path",
        );
    }

    #[test]
    fn relative_paths_without_a_base_use_the_current_directory() {
        let spec = RepositorySpec::parse("./repo", None).unwrap();
        let expected = std::env::current_dir().unwrap().join("repo");
        assert_eq!(spec.location, RepositoryLocation::Directory(expected));
    }

    #[test]
    fn index_and_package_locations() {
        let url = RepositoryLocation::Url("https://example.com/os".to_owned());
        assert_eq!(
            url.index_location("x86_64").unwrap(),
            Location::Url("https://example.com/os/x86_64/APKINDEX.tar.gz".to_owned())
        );
        assert_eq!(
            url.package_location("aarch64", "busybox-1.36.1-r0.apk")
                .unwrap(),
            Location::Url("https://example.com/os/aarch64/busybox-1.36.1-r0.apk".to_owned())
        );
        let dir = RepositoryLocation::Directory(PathBuf::from("/srv/repo"));
        assert_eq!(
            dir.index_location("x86_64").unwrap(),
            Location::Path(PathBuf::from("/srv/repo/x86_64/APKINDEX.tar.gz"))
        );
        let archive = RepositoryLocation::IndexArchive(PathBuf::from("/srv/one/index.tar.gz"));
        assert_eq!(
            archive.index_location("x86_64").unwrap(),
            Location::Path(PathBuf::from("/srv/one/index.tar.gz"))
        );
        assert_eq!(
            archive.package_location("x86_64", "a-1-r0.apk").unwrap(),
            Location::Path(PathBuf::from("/srv/one/a-1-r0.apk"))
        );
        for arch in ["", ".", "..", "x86/64", "x 86"] {
            assert!(
                matches!(
                    url.index_location(arch),
                    Err(RepositoryError::InvalidArch { .. })
                ),
                "arch `{arch}`"
            );
        }
    }

    #[test]
    fn solver_repository_keeps_name_and_tag() {
        let spec = RepositorySpec::parse("@edge https://example.com/edge", None).unwrap();
        let packages = Vec::new();
        let repository = spec.solver_repository(&packages);
        assert_eq!(repository.name, "@edge https://example.com/edge");
        assert_eq!(repository.tag.as_deref(), Some("edge"));
    }

    #[test]
    fn key_urls() {
        let check = |url: &str, allowed: bool, name: Option<&str>| {
            let parsed = Url::parse(url).unwrap();
            assert_eq!(check_key_url(&parsed).is_ok(), allowed, "{url}");
            assert_eq!(key_name_from_url(&parsed).as_deref(), name, "{url}");
        };
        check(
            "https://packages.wolfi.dev/os/wolfi-signing.rsa.pub",
            true,
            Some("wolfi-signing.rsa.pub"),
        );
        check(
            "https://example.com/keys/alpine-devel%40lists.alpinelinux.org-6165ee59.rsa.pub",
            true,
            Some("alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub"),
        );
        check("http://127.0.0.1:9000/k.rsa.pub", true, Some("k.rsa.pub"));
        check("http://127.8.9.10/k.rsa.pub", true, Some("k.rsa.pub"));
        check("http://[::1]:9000/k.rsa.pub", true, Some("k.rsa.pub"));
        check("http://localhost/k.rsa.pub", true, Some("k.rsa.pub"));
        check("http://example.com/k.rsa.pub", false, Some("k.rsa.pub"));
        check("http://10.0.0.1/k.rsa.pub", false, Some("k.rsa.pub"));
        check("https://example.com/keys/", true, None);
        check("https://example.com/keys/%2F", true, None);
        check("https://example.com/keys/%zz", true, None);
    }

    #[test]
    fn retry_classification() {
        let check = |status: u16, retryable: bool| {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(status_is_retryable(status), retryable, "{status}");
        };
        check(500, true);
        check(502, true);
        check(503, true);
        check(504, true);
        check(429, true);
        check(400, false);
        check(401, false);
        check(403, false);
        check(404, false);
        check(408, false);
        check(416, false);
    }

    #[test]
    fn retry_after_values() {
        let now: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let check = |value: &str, expected: Option<u64>| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            assert_eq!(
                parse_retry_after(&headers, now),
                expected.map(Duration::from_secs),
                "{value}"
            );
        };
        check("0", Some(0));
        check("7", Some(7));
        check(" 120 ", Some(120));
        check("Mon, 01 Jan 2024 00:00:30 GMT", Some(30));
        check("Sun, 31 Dec 2023 23:59:00 GMT", Some(0));
        check("soon", None);
        check("-5", None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn retrier_bounds_attempts_and_caps_retry_after() {
        let policy = RetryPolicy {
            max_retries: 2,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(3),
            jitter: false,
        };
        let mut retrier = policy.start();
        assert_eq!(retrier.next_delay(RetryDecision::Stop), None);
        assert_eq!(
            retrier.next_delay(RetryDecision::RetryAfter(Duration::from_secs(600))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retrier.next_delay(RetryDecision::Retry),
            Some(Duration::from_millis(20))
        );
        assert_eq!(retrier.attempt(), 3);
        assert_eq!(retrier.next_delay(RetryDecision::Retry), None);
    }

    #[test]
    fn etag_records_belong_to_their_body() {
        let record = encode_etag_record("\"abc\"", "00ff");
        assert_eq!(
            decode_etag_record(&record, "00ff").as_deref(),
            Some("\"abc\"")
        );
        assert_eq!(decode_etag_record(&record, "1234"), None);
        assert_eq!(decode_etag_record("\"abc\"", "00ff"), None);
        assert_eq!(decode_etag_record("\n00ff\n", "00ff"), None);
    }

    #[test]
    fn cache_entries_are_written_atomically_and_keyed_by_url() {
        let dir = tempfile::tempdir().unwrap();
        let url = "http://127.0.0.1:1/repo/x86_64/APKINDEX.tar.gz";
        let entry = CacheEntry::new(dir.path(), CACHE_INDEXES_DIR, url, INDEX_ARCHIVE_FILE_NAME);
        assert_eq!(
            entry.body,
            dir.path()
                .join("indexes")
                .join(sha256_hex_of(url.as_bytes()))
                .join("APKINDEX.tar.gz")
        );
        assert!(entry.load(1024).is_none());
        entry.store(b"index bytes", Some("\"v1\"")).unwrap();
        let cached = entry.load(1024).unwrap();
        assert_eq!(cached.bytes, b"index bytes");
        assert_eq!(cached.etag.as_deref(), Some("\"v1\""));
        assert!(entry.load(4).is_none(), "over the cap counts as absent");
        entry.store(b"other bytes", None).unwrap();
        let cached = entry.load(1024).unwrap();
        assert_eq!(cached.bytes, b"other bytes");
        assert_eq!(cached.etag, None);
        let leftovers: Vec<_> = std::fs::read_dir(entry.body.parent().unwrap())
            .unwrap()
            .map(|item| item.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn url_segments_are_encoded() {
        let base = Location::Url("https://example.com/os/".to_owned());
        let check = |segment: &str, expected: &str| {
            assert_eq!(
                base.join(segment),
                Location::Url(format!("https://example.com/os/{expected}")),
                "{segment}"
            );
        };
        check("libstdc++-13.2.0-r0.apk", "libstdc++-13.2.0-r0.apk");
        check("py3-a_b-1.0_rc1-r0.apk", "py3-a_b-1.0_rc1-r0.apk");
        check("a#b?c%2F d.apk", "a%23b%3Fc%252F%20d.apk");
        check("é.apk", "%C3%A9.apk");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b").as_deref(), Some("a@b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%4"), None);
        assert_eq!(percent_decode("bad%ff"), None);
    }
}
