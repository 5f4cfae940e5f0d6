//! The registry edge: pushes an OCI image layout to a registry (blobs the registry lacks, then
//! manifests, the index and tags, each digest checked) and reads manifests and blobs back for
//! signing and verification.
//!
//! Blob existence checks, uploads (streamed from disk) and the token handshake go through
//! `oci-client`; manifests and blob downloads are plain HTTP requests with the same
//! authorization, because they need what `oci-client` does not expose: the `Content-Type` and
//! `Docker-Content-Digest` headers, the HTTP status of failures and a size cap on what a
//! registry sends back. Credentials come from [`crate::registry_auth`]; loopback registries
//! and the `insecure` list are spoken to over plain HTTP, as docker does.
//!
//! Blob digests are checked twice: on the local file before upload, and by the registry when
//! the upload is committed with `?digest=` (`oci-client` does not hand back that response's
//! `Docker-Content-Digest`). Manifest digests are checked against the header of every `PUT`,
//! `GET` and `HEAD`.
//!
//! A blob the registry holds in another repository (as [`crate::blob_record`] remembers from
//! earlier pushes) is mounted from there instead of uploaded; a registry that answers the mount
//! with an upload session gets the blob uploaded as usual.
//!
//! It does not build images, sign anything, delete from a registry or copy between registries.

use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt as _, TryStreamExt as _};
use oci_client::RegistryOperation;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use crate::blob_record::BlobRecord;
use crate::digest::{SHA256_PREFIX, finish_sha256};
use crate::image::layout;
use crate::registry_auth::{AuthError, CredentialSource, Credentials, DockerConfig, shorten};

pub use oci_client::Reference;

/// OCI image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = layout::MEDIA_TYPE_IMAGE_MANIFEST;
/// OCI image index.
pub const OCI_INDEX_MEDIA_TYPE: &str = layout::MEDIA_TYPE_IMAGE_INDEX;
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest media type this module reads and pushes.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST_MEDIA_TYPE,
    OCI_INDEX_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    DOCKER_MANIFEST_LIST_MEDIA_TYPE,
];
/// The header in which registries report a manifest's or blob's digest.
pub const DOCKER_CONTENT_DIGEST_HEADER: &str = "docker-content-digest";
/// The layout marker file.
pub const OCI_LAYOUT_FILE: &str = layout::OCI_LAYOUT_FILE;
/// The layout's entry point.
pub const LAYOUT_INDEX_FILE: &str = layout::INDEX_FILE;
/// The layout's blob directory.
pub const LAYOUT_BLOBS_DIR: &str = layout::BLOBS_DIR;
/// The only layout version there is.
pub const LAYOUT_VERSION: &str = layout::IMAGE_LAYOUT_VERSION;
/// Largest manifest read or pushed (the limit `distribution` enforces).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest blob [`Registry::fetch_blob`] reads into memory.
pub const MAX_FETCHED_BLOB_BYTES: u64 = 64 << 20;
/// How many manifest levels a layout may nest (index → index → manifest is two).
pub const MAX_INDEX_DEPTH: usize = 4;
/// Default number of blobs uploaded at once.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;
/// Default number of retries after a transient failure.
pub const DEFAULT_RETRIES: usize = 4;
/// The tag a reference with neither tag nor digest stands for.
pub const PLACEHOLDER_TAG: &str = "latest";

const MAX_TAG_LEN: usize = 128;
const MAX_ERROR_BODY_BYTES: u64 = 64 << 10;
const MAX_TOKEN_BYTES: u64 = 1 << 20;
const READ_BUFFER_BYTES: usize = 1 << 20;
const USER_AGENT: &str = concat!("securebuild/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(300);
const RETRY_MIN_DELAY: Duration = Duration::from_millis(250);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(8);
/// The `client_id` docker's OAuth2 token request sends; ours names this tool.
const TOKEN_CLIENT_ID: &str = "securebuild";
const OAUTH_GRANT_TYPE: &str = "grant_type";
const OAUTH_REFRESH_TOKEN: &str = "refresh_token";
const OAUTH_CLIENT_ID: &str = "client_id";
const OAUTH_SCOPE: &str = "scope";
const OAUTH_SERVICE: &str = "service";
const PUSH_PULL_ACTIONS: &str = "pull,push";
const BEARER_PREFIX: &str = "Bearer";
const BASIC_PREFIX: &str = "Basic";
const API_ROOT: &str = "/v2/";
const TOKEN_TARGET: &str = "token";
const LOCALHOST: &str = "localhost";

/// Installs `ring` as the process-wide rustls provider; later calls (and a provider installed
/// elsewhere first) are fine.
pub fn init_tls() {
    // An error only means a provider is already installed, which is all this needs.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Parses `REPO[:TAG]`, `REPO@sha256:…` or `REPO:TAG@sha256:…` the way docker does: the
/// registry defaults to `docker.io`, single-component Docker Hub names get `library/`, and a
/// reference with neither tag nor digest gets the tag `latest`.
pub fn parse_reference(text: &str) -> Result<Reference, RegistryError> {
    let invalid = |source| RegistryError::InvalidReference {
        reference: text.to_owned(),
        source,
    };
    let reference = text.parse::<Reference>().map_err(invalid)?;
    // A first component without `.`, `:` or `localhost` is part of a Docker Hub repository
    // name, where docker refuses upper case.
    if reference
        .repository()
        .bytes()
        .any(|byte| byte.is_ascii_uppercase())
    {
        return Err(invalid(oci_client::ParseError::NameContainsUppercase));
    }
    Ok(reference)
}

/// Whether `registry` (`host[:port]` as in a reference) is spoken to over plain HTTP: loopback
/// registries (`localhost`, `127.0.0.0/8`, `::1`, any port) always, and any registry named in
/// `insecure`, either exactly (`host:port`, case-insensitive) or through a CIDR entry
/// (`10.0.0.0/8`) that contains its IP address. Host names are not resolved.
pub fn uses_plain_http(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    let ip = host.parse::<IpAddr>().ok();
    if host.eq_ignore_ascii_case(LOCALHOST) || ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    insecure.iter().any(|entry| {
        let entry = entry.trim();
        entry.eq_ignore_ascii_case(registry) || ip.is_some_and(|ip| cidr_contains(entry, ip))
    })
}

/// Failures talking to a registry or reading the layout to push.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An image reference does not parse.
    #[error("invalid image reference {reference:?}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// Why it does not parse.
        #[source]
        source: oci_client::ParseError,
    },
    /// A tag does not match `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid tag {tag:?}")]
    InvalidTag {
        /// The tag.
        tag: String,
    },
    /// A digest is not `sha256:` followed by 64 lower-case hex digits.
    #[error("unsupported or malformed digest {digest:?} (only sha256 is supported)")]
    InvalidDigest {
        /// The digest.
        digest: String,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    HttpClient {
        /// Underlying failure.
        #[source]
        source: reqwest::Error,
    },
    /// The `oci-client` client for a registry could not be built.
    #[error("building the registry client for {registry}")]
    ClientBuild {
        /// The registry.
        registry: String,
        /// Underlying failure.
        #[source]
        source: OciDistributionError,
    },
    /// The credential lookup task did not finish.
    #[error("looking up credentials for registry {registry} was aborted")]
    CredentialLookupAborted {
        /// The registry.
        registry: String,
        /// Underlying failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The registry's credentials could not be determined.
    #[error("looking up credentials for registry {registry}")]
    Credentials {
        /// The registry.
        registry: String,
        /// Underlying failure.
        #[source]
        source: Box<AuthError>,
    },
    /// The connection failed or timed out.
    #[error("{context}: connection failed")]
    Connection {
        /// The request.
        context: Box<RequestContext>,
        /// Underlying failure.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{context}: status {status}: {detail}")]
    Status {
        /// The request.
        context: Box<RequestContext>,
        /// The HTTP status.
        status: u16,
        /// The error envelope or body the registry sent.
        detail: ResponseDetail,
    },
    /// The registry refused the credentials (or their absence).
    #[error(
        "{context}: status {status}: access denied using {credentials}: {detail}; \
         log in with `docker login {registry}` or pass --registry-config with credentials for {registry}",
        registry = context.registry
    )]
    Unauthorized {
        /// The request.
        context: Box<RequestContext>,
        /// 401 or 403.
        status: u16,
        /// Where the credentials came from.
        credentials: Box<CredentialSource>,
        /// The error envelope or body the registry sent.
        detail: ResponseDetail,
    },
    /// The registry's token server rejected the credentials.
    #[error(
        "registry {registry} rejected the credentials from {credentials} for {repository}: {message}; \
         log in again with `docker login {registry}` or fix --registry-config"
    )]
    AuthenticationFailed {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Where the credentials came from.
        credentials: Box<CredentialSource>,
        /// What the token server said, shortened.
        message: String,
    },
    /// An identity token needs a bearer-token registry, and this one does not offer it.
    #[error(
        "registry {registry} does not offer bearer tokens, so the identity token from {credentials} cannot be used"
    )]
    IdentityTokenUnsupported {
        /// The registry.
        registry: String,
        /// Where the identity token came from.
        credentials: Box<CredentialSource>,
    },
    /// The token server's answer has no token.
    #[error("the token server of registry {registry} answered without a token")]
    InvalidToken {
        /// The registry.
        registry: String,
        /// Underlying failure.
        #[source]
        source: serde_json::Error,
    },
    /// A response body was larger than allowed.
    #[error("{context}: response is larger than {limit} bytes")]
    TooLarge {
        /// The request.
        context: Box<RequestContext>,
        /// The limit.
        limit: u64,
    },
    /// The manifest or tag does not exist.
    #[error("{context}: not found")]
    NotFound {
        /// The request.
        context: Box<RequestContext>,
    },
    /// Content or a reported digest does not match the digest it should have.
    #[error("{context}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The request.
        context: Box<RequestContext>,
        /// The digest that was expected.
        expected: String,
        /// The digest found (computed or reported).
        actual: String,
    },
    /// A fetched manifest says neither in its body nor in `Content-Type` what it is.
    #[error("{context}: the manifest has no media type")]
    MissingMediaType {
        /// The request.
        context: Box<RequestContext>,
    },
    /// A manifest to push is larger than [`MAX_MANIFEST_BYTES`].
    #[error(
        "manifest {digest} for {registry}/{repository} is {size} bytes, over the limit of {limit}"
    )]
    ManifestTooLarge {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Its digest.
        digest: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The push target names a digest that is not the layout's.
    #[error("target {reference} names digest {expected}, but the layout's root is {actual}")]
    TargetDigestMismatch {
        /// The target reference.
        reference: String,
        /// The digest in the reference.
        expected: String,
        /// The layout root's digest.
        actual: String,
    },
    /// Another `oci-client` failure.
    #[error("{context}")]
    Client {
        /// The request.
        context: Box<RequestContext>,
        /// Underlying failure.
        #[source]
        source: OciDistributionError,
    },
    /// The layout could not be read.
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

impl RegistryError {
    /// Whether retrying may help: connection failures, 408, 429 and 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connection { .. } => true,
            Self::Status { status, .. } => is_transient_status(*status),
            _ => false,
        }
    }
}

/// Failures reading an OCI image layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file does not parse.
    #[error("parsing {path}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Underlying failure.
        #[source]
        source: serde_json::Error,
    },
    /// `oci-layout` names another version.
    #[error("{path} declares layout version {version:?}, expected {LAYOUT_VERSION:?}")]
    Version {
        /// The `oci-layout` file.
        path: PathBuf,
        /// The version found.
        version: String,
    },
    /// `index.json` does not name exactly one root (entries repeating it under other
    /// `ref.name` annotations are fine).
    #[error(
        "{path} names {count} different manifests; exactly one (an image index or a manifest) is needed"
    )]
    RootCount {
        /// The `index.json` file.
        path: PathBuf,
        /// How many different digests it names.
        count: usize,
    },
    /// A descriptor's digest is malformed or not sha256.
    #[error("{path} references unsupported or malformed digest {digest:?}")]
    Digest {
        /// The file holding the descriptor.
        path: PathBuf,
        /// The digest.
        digest: String,
    },
    /// A blob's size differs from its descriptor.
    #[error("blob {path} is {actual} bytes, but its descriptor says {expected}")]
    Size {
        /// The blob file.
        path: PathBuf,
        /// The descriptor's size.
        expected: u64,
        /// The file's size.
        actual: u64,
    },
    /// A blob's content does not hash to its name.
    #[error("blob {path} hashes to {actual}, not to its digest {expected}")]
    Content {
        /// The blob file.
        path: PathBuf,
        /// The digest it should have.
        expected: String,
        /// The digest of its content.
        actual: String,
    },
    /// A manifest blob is larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest {path} is {size} bytes, over the limit of {MAX_MANIFEST_BYTES}")]
    ManifestTooLarge {
        /// The blob file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A descriptor points at something that is not a known manifest type.
    #[error(
        "{path} references {digest} with media type {media_type:?}, which is not a manifest or index"
    )]
    MediaType {
        /// The file holding the descriptor.
        path: PathBuf,
        /// The digest.
        digest: String,
        /// The media type.
        media_type: String,
    },
    /// A manifest's own `mediaType` contradicts its descriptor.
    #[error("manifest {path} says it is {found:?}, but it is referenced as {expected:?}")]
    MediaTypeMismatch {
        /// The blob file.
        path: PathBuf,
        /// The descriptor's media type.
        expected: String,
        /// The manifest's own media type.
        found: String,
    },
    /// An image manifest has no config descriptor.
    #[error("image manifest {path} has no config")]
    MissingConfig {
        /// The blob file.
        path: PathBuf,
    },
    /// Indexes nest deeper than [`MAX_INDEX_DEPTH`].
    #[error("manifest {path} is nested deeper than {MAX_INDEX_DEPTH} index levels")]
    TooDeep {
        /// The blob file.
        path: PathBuf,
    },
}

/// What a request was doing when it failed, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Obtaining a token.
    Authenticating,
    /// `HEAD` on a blob.
    CheckingBlob,
    /// Uploading a blob.
    UploadingBlob,
    /// Downloading a blob.
    FetchingBlob,
    /// `HEAD` on a manifest or tag.
    CheckingManifest,
    /// `GET` on a manifest or tag.
    FetchingManifest,
    /// `PUT` of a manifest or tag.
    PushingManifest,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Authenticating => "authenticating for",
            Self::CheckingBlob => "checking blob",
            Self::UploadingBlob => "uploading blob",
            Self::FetchingBlob => "fetching blob",
            Self::CheckingManifest => "checking manifest",
            Self::FetchingManifest => "fetching manifest",
            Self::PushingManifest => "pushing manifest",
        })
    }
}

/// The request an error is about: what was being done, to which digest or tag, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// What was being done.
    pub action: Action,
    /// The registry as in references (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The repository.
    pub repository: String,
    /// The digest or tag involved.
    pub target: String,
}

impl fmt::Display for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} in {}/{}",
            self.action, self.target, self.registry, self.repository
        )
    }
}

/// What a registry said about a failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseDetail {
    /// The distribution error envelope (`{"errors": [{"code", "message"}]}`).
    Envelope(Vec<ErrorEntry>),
    /// A body that is not an envelope, shortened.
    Text(String),
    /// No body.
    Empty,
}

/// One entry of the distribution error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorEntry {
    /// The error code, such as `MANIFEST_UNKNOWN` or `DENIED`.
    pub code: String,
    /// The human-readable message.
    #[serde(default)]
    pub message: String,
}

impl ResponseDetail {
    /// Interprets a response body.
    pub fn from_body(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            errors: Vec<ErrorEntry>,
        }
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(body)
            && !envelope.errors.is_empty()
        {
            return Self::Envelope(envelope.errors);
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            Self::Empty
        } else {
            Self::Text(shorten(text))
        }
    }

    /// Whether the envelope carries `code`.
    pub fn has_code(&self, code: &str) -> bool {
        matches!(self, Self::Envelope(errors) if errors.iter().any(|error| error.code == code))
    }
}

impl fmt::Display for ResponseDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Envelope(errors) => {
                for (index, error) in errors.iter().enumerate() {
                    if index > 0 {
                        f.write_str("; ")?;
                    }
                    if error.message.is_empty() {
                        write!(f, "{}", error.code)?;
                    } else {
                        write!(f, "{}: {}", error.code, error.message)?;
                    }
                }
                Ok(())
            }
            Self::Text(text) => f.write_str(text),
            Self::Empty => f.write_str("no details"),
        }
    }
}

/// How a [`Registry`] behaves.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries spoken to over plain HTTP besides loopback ones (see [`uses_plain_http`]).
    pub insecure_registries: Vec<String>,
    /// Where credentials come from.
    pub docker_config: DockerConfig,
    /// Retries after a transient failure (connection errors, 408, 429, 5xx).
    pub retries: usize,
    /// Blobs uploaded at once.
    pub upload_concurrency: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            docker_config: DockerConfig::empty(),
            retries: DEFAULT_RETRIES,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
        }
    }
}

/// What [`Registry::push_layout`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// `registry/repository@digest` of the pushed root.
    pub reference: String,
    /// The root's digest (the index, or the single manifest).
    pub digest: String,
    /// The root's media type.
    pub media_type: String,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Blobs mounted from another repository of the registry.
    pub blobs_mounted: usize,
    /// Bytes in mounted blobs.
    pub bytes_mounted: u64,
    /// Bytes uploaded in blobs.
    pub bytes_uploaded: u64,
    /// Blobs the registry already had.
    pub blobs_skipped: usize,
    /// Bytes in blobs the registry already had.
    pub bytes_skipped: u64,
    /// Manifests (including the root) pushed by digest.
    pub manifests_pushed: usize,
    /// Manifests (including the root) the registry already had.
    pub manifests_skipped: usize,
    /// Every tag that now points at the root, in the order given.
    pub tags: Vec<String>,
    /// Tags that had to be set or moved.
    pub tags_updated: usize,
}

/// A manifest read from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// Its exact bytes.
    pub bytes: Bytes,
    /// `sha256:` of the bytes (checked against the reference and the registry's header).
    pub digest: String,
    /// Its media type: the body's `mediaType`, else the `Content-Type` header.
    pub media_type: String,
}

/// A client for one or more registries, with credentials and tokens cached per repository.
pub struct Registry {
    options: RegistryOptions,
    http: reqwest::Client,
    sessions: tokio::sync::Mutex<HashMap<(String, String), Arc<Session>>>,
    blobs: BlobRecord,
}

/// How a layout blob reached the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlobPush {
    /// The repository already had it.
    Present,
    /// Mounted from another repository.
    Mounted,
    /// Uploaded.
    Uploaded,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Creates a client (installing the TLS provider if needed).
    pub fn new(options: RegistryOptions) -> Result<Self, RegistryError> {
        init_tls();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|source| RegistryError::HttpClient { source })?;
        Ok(Self {
            options,
            http,
            sessions: tokio::sync::Mutex::new(HashMap::new()),
            blobs: BlobRecord::in_memory(),
        })
    }

    /// Keeps the record of which repositories hold which blobs in `file` (loaded now, saved
    /// after each push), so that later pushes mount them.
    pub fn with_blob_record(mut self, file: &Path) -> Self {
        self.blobs = BlobRecord::load(file);
        self
    }

    /// Pushes the OCI image layout at `layout_dir` to `target`'s repository.
    ///
    /// 1. Reads `oci-layout` and `index.json`, whose entries must all name one root (an image
    ///    index or one image manifest; repeats under other `ref.name` annotations are fine),
    ///    and every manifest below it, checking each digest and size.
    /// 2. Uploads every config and layer blob the registry does not have (`HEAD` first),
    ///    checking the local file's digest before streaming it from disk.
    /// 3. Pushes each manifest by digest (children before their index), skipping those
    ///    present, then the root.
    /// 4. Points each tag at the root: `target`'s tag first (`latest` when the reference had
    ///    neither tag nor digest), then `tags`; tags already pointing there are left alone.
    ///
    /// Every digest the registry reports must match what was pushed. Any failure, including
    /// one after some blobs were uploaded, is an error. When `target` carries a digest, the
    /// layout's root must have it.
    pub async fn push_layout(
        &self,
        layout_dir: &Path,
        target: &Reference,
        tags: &[String],
    ) -> Result<PushReport, RegistryError> {
        let layout = read_layout(layout_dir)?;
        if let Some(expected) = target.digest()
            && expected != layout.root.digest
        {
            return Err(RegistryError::TargetDigestMismatch {
                reference: target.whole(),
                expected: expected.to_owned(),
                actual: layout.root.digest.clone(),
            });
        }
        let tags = tags_to_push(target, tags)?;
        let session = self.session(target).await?;
        session.authorization(self, RegistryOperation::Push).await?;
        session.authorization(self, RegistryOperation::Pull).await?;

        let mut report = PushReport {
            reference: format!(
                "{}/{}@{}",
                session.registry, session.repository, layout.root.digest
            ),
            digest: layout.root.digest.clone(),
            media_type: layout.root.media_type.clone(),
            blobs_uploaded: 0,
            blobs_mounted: 0,
            bytes_mounted: 0,
            bytes_uploaded: 0,
            blobs_skipped: 0,
            bytes_skipped: 0,
            manifests_pushed: 0,
            manifests_skipped: 0,
            tags: tags.clone(),
            tags_updated: 0,
        };

        let concurrency = self.options.upload_concurrency.max(1);
        let outcomes: Vec<(BlobPush, u64)> = futures::stream::iter(layout.blobs.iter())
            .map(|(digest, size)| {
                let path = layout.blob_path(digest);
                let session = &session;
                async move {
                    let uploaded = self.push_layout_blob(session, &path, digest, *size).await?;
                    Ok::<_, RegistryError>((uploaded, *size))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        for (outcome, size) in outcomes {
            match outcome {
                BlobPush::Uploaded => {
                    report.blobs_uploaded += 1;
                    report.bytes_uploaded += size;
                }
                BlobPush::Mounted => {
                    report.blobs_mounted += 1;
                    report.bytes_mounted += size;
                }
                BlobPush::Present => {
                    report.blobs_skipped += 1;
                    report.bytes_skipped += size;
                }
            }
        }
        self.blobs.save();

        for manifest in layout.manifests.iter().chain(std::iter::once(&layout.root)) {
            let present = self
                .manifest_digest(&session, &manifest.digest, Action::CheckingManifest)
                .await?;
            if present.as_deref() == Some(manifest.digest.as_str()) {
                report.manifests_skipped += 1;
                continue;
            }
            self.put_manifest(
                &session,
                &manifest.digest,
                &manifest.bytes,
                &manifest.media_type,
            )
            .await?;
            report.manifests_pushed += 1;
        }

        for tag in &tags {
            let current = self
                .manifest_digest(&session, tag, Action::CheckingManifest)
                .await?;
            if current.as_deref() == Some(layout.root.digest.as_str()) {
                continue;
            }
            let digest = self
                .put_manifest(&session, tag, &layout.root.bytes, &layout.root.media_type)
                .await?;
            if digest != layout.root.digest {
                return Err(session.digest_mismatch(
                    Action::PushingManifest,
                    tag,
                    &layout.root.digest,
                    &digest,
                ));
            }
            report.tags_updated += 1;
        }
        tracing::info!(
            reference = %report.reference,
            blobs_uploaded = report.blobs_uploaded,
            blobs_skipped = report.blobs_skipped,
            tags = ?report.tags,
            "pushed image"
        );
        Ok(report)
    }

    /// Reads a manifest by tag or digest, with its exact bytes, verified digest and media type.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        let session = self.session(reference).await?;
        let target = tag_or_digest(reference);
        self.retrying(|| self.get_manifest(&session, target)).await
    }

    /// Reads a blob (at most [`MAX_FETCHED_BLOB_BYTES`]) and checks its digest. Only the
    /// registry and repository of `repository` are used.
    pub async fn fetch_blob(
        &self,
        repository: &Reference,
        digest: &str,
    ) -> Result<Bytes, RegistryError> {
        check_digest(digest)?;
        let session = self.session(repository).await?;
        self.retrying(|| self.get_blob(&session, digest)).await
    }

    /// Whether the repository has the blob.
    pub async fn blob_exists(
        &self,
        repository: &Reference,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        check_digest(digest)?;
        let session = self.session(repository).await?;
        self.retrying(|| self.head_blob(&session, digest)).await
    }

    /// Uploads a blob held in memory unless the registry has it; returns its digest and whether
    /// it was uploaded.
    pub async fn push_blob_bytes(
        &self,
        repository: &Reference,
        bytes: impl Into<Bytes>,
    ) -> Result<(String, bool), RegistryError> {
        let bytes = bytes.into();
        let digest = sha256_digest(&bytes);
        let session = self.session(repository).await?;
        if self.retrying(|| self.head_blob(&session, &digest)).await? {
            return Ok((digest, false));
        }
        let size = bytes.len() as u64;
        self.retrying(|| {
            let chunk = bytes.clone();
            let stream = futures::stream::once(async move { Ok(chunk) });
            self.upload_blob(&session, &digest, stream, size)
        })
        .await?;
        Ok((digest, true))
    }

    /// Pushes manifest bytes under a tag or a digest (which must be the bytes' digest) and
    /// returns the digest, checked against the one the registry reports.
    pub async fn push_manifest_bytes(
        &self,
        repository: &Reference,
        tag_or_digest: &str,
        bytes: impl Into<Bytes>,
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let bytes = bytes.into();
        let digest = sha256_digest(&bytes);
        if tag_or_digest.contains(':') {
            check_digest(tag_or_digest)?;
        } else {
            check_tag(tag_or_digest)?;
        }
        let session = self.session(repository).await?;
        if tag_or_digest.contains(':') && tag_or_digest != digest {
            return Err(session.digest_mismatch(
                Action::PushingManifest,
                tag_or_digest,
                tag_or_digest,
                &digest,
            ));
        }
        let pushed = self
            .put_manifest(&session, tag_or_digest, &bytes, media_type)
            .await?;
        if pushed != digest {
            return Err(session.digest_mismatch(
                Action::PushingManifest,
                tag_or_digest,
                &digest,
                &pushed,
            ));
        }
        Ok(digest)
    }

    /// Whether the manifest `reference` names (by digest, else by tag) exists.
    pub async fn manifest_exists(&self, reference: &Reference) -> Result<bool, RegistryError> {
        let session = self.session(reference).await?;
        let target = tag_or_digest(reference);
        let found = self
            .manifest_digest(&session, target, Action::CheckingManifest)
            .await?;
        Ok(found.is_some())
    }

    /// The digest `tag` points at in the repository, or `None` when the tag (or the
    /// repository) does not exist.
    pub async fn tag_digest(
        &self,
        repository: &Reference,
        tag: &str,
    ) -> Result<Option<String>, RegistryError> {
        check_tag(tag)?;
        let session = self.session(repository).await?;
        self.manifest_digest(&session, tag, Action::CheckingManifest)
            .await
    }

    /// Runs `operation`, retrying transient failures with exponential backoff.
    async fn retrying<T, F, Fut>(&self, operation: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(RETRY_MIN_DELAY)
            .with_max_delay(RETRY_MAX_DELAY)
            .with_max_times(self.options.retries)
            .with_jitter();
        operation
            .retry(backoff)
            .when(RegistryError::is_transient)
            .notify(|error, delay| {
                tracing::warn!(error = %crate::error::Chain(error), ?delay, "transient registry failure, retrying");
            })
            .await
    }

    /// The session for `reference`'s registry and repository, created on first use.
    async fn session(&self, reference: &Reference) -> Result<Arc<Session>, RegistryError> {
        let key = (
            reference.registry().to_owned(),
            reference.repository().to_owned(),
        );
        let mut sessions = self.sessions.lock().await;
        if let Some(session) = sessions.get(&key) {
            return Ok(Arc::clone(session));
        }
        let session = Arc::new(self.open_session(reference).await?);
        sessions.insert(key, Arc::clone(&session));
        Ok(session)
    }

    async fn open_session(&self, reference: &Reference) -> Result<Session, RegistryError> {
        let registry = reference.registry().to_owned();
        let repository = reference.repository().to_owned();
        let api_host = reference.resolve_registry().to_owned();
        let plain_http = uses_plain_http(&registry, &self.options.insecure_registries);
        let scheme = if plain_http { "http" } else { "https" };

        let config = self.options.docker_config.clone();
        let lookup = registry.clone();
        let resolved = tokio::task::spawn_blocking(move || config.resolve(&lookup))
            .await
            .map_err(|source| RegistryError::CredentialLookupAborted {
                registry: registry.clone(),
                source,
            })?
            .map_err(|source| RegistryError::Credentials {
                registry: registry.clone(),
                source: Box::new(source),
            })?;

        let mut session = Session {
            base: Reference::with_tag(
                registry.clone(),
                repository.clone(),
                PLACEHOLDER_TAG.to_owned(),
            ),
            oci: oci_client::Client::try_from(ClientConfig {
                protocol: if plain_http {
                    ClientProtocol::Http
                } else {
                    ClientProtocol::Https
                },
                use_monolithic_push: true,
                connect_timeout: Some(CONNECT_TIMEOUT),
                read_timeout: Some(READ_TIMEOUT),
                user_agent: USER_AGENT,
                ..ClientConfig::default()
            })
            .map_err(|source| RegistryError::ClientBuild {
                registry: registry.clone(),
                source,
            })?,
            auth: RegistryAuth::Anonymous,
            credentials: resolved.source,
            registry,
            repository,
            base_url: format!("{scheme}://{api_host}"),
            headers: tokio::sync::Mutex::new([None, None]),
        };
        session.auth = match resolved.credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => RegistryAuth::Basic(username, password),
            Credentials::IdentityToken { token, .. } => {
                RegistryAuth::Bearer(self.exchange_identity_token(&session, &token).await?)
            }
        };
        Ok(session)
    }

    /// Trades an OAuth2 refresh token (docker's `identitytoken`) for an access token at the
    /// registry's token server, as `docker` does.
    async fn exchange_identity_token(
        &self,
        session: &Session,
        refresh_token: &str,
    ) -> Result<String, RegistryError> {
        #[derive(Deserialize)]
        struct TokenAnswer {
            #[serde(alias = "token")]
            access_token: String,
        }
        let ping = format!("{}{API_ROOT}", session.base_url);
        let response = self
            .http
            .get(&ping)
            .send()
            .await
            .map_err(|source| session.connection(Action::Authenticating, API_ROOT, source))?;
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_bearer_challenge);
        let Some(challenge) = challenge else {
            return Err(RegistryError::IdentityTokenUnsupported {
                registry: session.registry.clone(),
                credentials: Box::new(session.credentials.clone()),
            });
        };
        let scope = format!("repository:{}:{PUSH_PULL_ACTIONS}", session.repository);
        let mut form = vec![
            (OAUTH_GRANT_TYPE, OAUTH_REFRESH_TOKEN),
            (OAUTH_REFRESH_TOKEN, refresh_token),
            (OAUTH_CLIENT_ID, TOKEN_CLIENT_ID),
            (OAUTH_SCOPE, scope.as_str()),
        ];
        if let Some(service) = challenge.service.as_deref() {
            form.push((OAUTH_SERVICE, service));
        }
        let response = self
            .http
            .post(&challenge.realm)
            .form(&form)
            .send()
            .await
            .map_err(|source| session.connection(Action::Authenticating, TOKEN_TARGET, source))?;
        let status = response.status();
        let body = session
            .read_body(
                response,
                MAX_TOKEN_BYTES,
                Action::Authenticating,
                TOKEN_TARGET,
            )
            .await?;
        if !status.is_success() {
            return Err(RegistryError::AuthenticationFailed {
                registry: session.registry.clone(),
                repository: session.repository.clone(),
                credentials: Box::new(session.credentials.clone()),
                message: format!(
                    "status {}: {}",
                    status.as_u16(),
                    ResponseDetail::from_body(&body)
                ),
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|source| RegistryError::InvalidToken {
                registry: session.registry.clone(),
                source,
            })?;
        Ok(answer.access_token)
    }

    /// Pushes one layout blob unless present: mounted from another repository of the registry
    /// that holds it, else uploaded.
    async fn push_layout_blob(
        &self,
        session: &Session,
        path: &Path,
        digest: &str,
        size: u64,
    ) -> Result<BlobPush, RegistryError> {
        if self.retrying(|| self.head_blob(session, digest)).await? {
            tracing::debug!(%digest, "blob already present");
            self.blobs
                .note(&session.registry, &session.repository, digest);
            return Ok(BlobPush::Present);
        }
        for from in self
            .blobs
            .sources(&session.registry, digest, &session.repository)
        {
            match self.mount_blob(session, digest, &from).await {
                Ok(true) => {
                    tracing::debug!(%digest, %from, "blob mounted");
                    self.blobs
                        .note(&session.registry, &session.repository, digest);
                    return Ok(BlobPush::Mounted);
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(%digest, %from, error = %crate::error::Chain(&error), "mount failed; uploading instead");
                }
            }
        }
        verify_file(path, digest, size).await?;
        self.retrying(|| async {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|source| LayoutError::Read {
                    path: path.to_owned(),
                    source,
                })?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_BUFFER_BYTES)
                .map_err(OciDistributionError::IoError);
            self.upload_blob(session, digest, stream, size).await
        })
        .await?;
        tracing::debug!(%digest, size, "blob uploaded");
        self.blobs
            .note(&session.registry, &session.repository, digest);
        Ok(BlobPush::Uploaded)
    }

    /// Asks the registry to mount `digest` from repository `from`: `true` when it did (`201`);
    /// `false` when it opened an upload session instead (`202`, which is closed again) or
    /// refused.
    async fn mount_blob(
        &self,
        session: &Session,
        digest: &str,
        from: &str,
    ) -> Result<bool, RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/?mount={digest}&from={from}",
            session.base_url, session.repository
        );
        let response = self
            .send(
                session,
                RegistryOperation::Push,
                Action::UploadingBlob,
                digest,
                |http| http.post(&url).header(header::CONTENT_LENGTH, 0),
            )
            .await?;
        let status = response.status().as_u16();
        if status == 202
            && let Some(location) = response
                .headers()
                .get(header::LOCATION)
                .and_then(|value| value.to_str().ok())
        {
            // Close the upload session the registry opened; the blob is uploaded afresh.
            let location = if location.starts_with('/') {
                format!("{}{location}", session.base_url)
            } else {
                location.to_string()
            };
            let closed = self
                .send(
                    session,
                    RegistryOperation::Push,
                    Action::UploadingBlob,
                    digest,
                    |http| http.delete(&location),
                )
                .await;
            if let Err(error) = closed {
                tracing::debug!(%digest, error = %crate::error::Chain(&error), "cannot close an unused upload session");
            }
        }
        Ok(status == 201)
    }

    async fn head_blob(&self, session: &Session, digest: &str) -> Result<bool, RegistryError> {
        session.authorization(self, RegistryOperation::Pull).await?;
        session
            .oci
            .blob_exists(&session.base, digest)
            .await
            .map_err(|error| session.oci_error(Action::CheckingBlob, digest, error))
    }

    async fn upload_blob<S>(
        &self,
        session: &Session,
        digest: &str,
        stream: S,
        size: u64,
    ) -> Result<(), RegistryError>
    where
        S: futures::Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static,
    {
        session.authorization(self, RegistryOperation::Push).await?;
        session
            .oci
            .push_blob_stream(&session.base, stream, digest, Some(size))
            .await
            .map_err(|error| session.oci_error(Action::UploadingBlob, digest, error))?;
        Ok(())
    }

    async fn get_blob(&self, session: &Session, digest: &str) -> Result<Bytes, RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            session.base_url, session.repository
        );
        let action = Action::FetchingBlob;
        let response = self
            .send(session, RegistryOperation::Pull, action, digest, |http| {
                http.get(&url)
            })
            .await?;
        let bytes = session
            .read_success(response, MAX_FETCHED_BLOB_BYTES, action, digest)
            .await?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(session.digest_mismatch(action, digest, digest, &actual));
        }
        Ok(bytes)
    }

    async fn get_manifest(
        &self,
        session: &Session,
        target: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = session.manifest_url(target);
        let action = Action::FetchingManifest;
        let response = self
            .send(session, RegistryOperation::Pull, action, target, |http| {
                http.get(&url).header(header::ACCEPT, accept_manifests())
            })
            .await?;
        if response.status().as_u16() == 404 {
            return Err(RegistryError::NotFound {
                context: session.context(action, target),
            });
        }
        let reported = reported_digest(response.headers());
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .filter(|value| !value.is_empty());
        let bytes = session
            .read_success(response, MAX_MANIFEST_BYTES, action, target)
            .await?;
        let digest = sha256_digest(&bytes);
        if target.contains(':') && target != digest {
            return Err(session.digest_mismatch(action, target, target, &digest));
        }
        if let Some(reported) = reported.filter(|reported| reported.starts_with(SHA256_PREFIX))
            && reported != digest
        {
            return Err(session.digest_mismatch(action, target, &reported, &digest));
        }
        #[derive(Deserialize)]
        struct MediaTypeOnly {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let declared = serde_json::from_slice::<MediaTypeOnly>(&bytes)
            .ok()
            .and_then(|body| body.media_type)
            .filter(|media_type| !media_type.is_empty());
        let media_type =
            declared
                .or(content_type)
                .ok_or_else(|| RegistryError::MissingMediaType {
                    context: session.context(action, target),
                })?;
        Ok(FetchedManifest {
            bytes,
            digest,
            media_type,
        })
    }

    /// The digest a tag or digest resolves to, `None` on 404.
    async fn manifest_digest(
        &self,
        session: &Session,
        target: &str,
        action: Action,
    ) -> Result<Option<String>, RegistryError> {
        let url = session.manifest_url(target);
        let response = self
            .retrying(|| {
                self.send(session, RegistryOperation::Pull, action, target, |http| {
                    http.head(&url).header(header::ACCEPT, accept_manifests())
                })
            })
            .await?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if !response.status().is_success() {
            let error = session.status_error(action, target, status, &[]);
            return Err(error);
        }
        match reported_digest(response.headers()) {
            Some(digest) => {
                if target.contains(':') && digest.starts_with(SHA256_PREFIX) && digest != target {
                    return Err(session.digest_mismatch(action, target, target, &digest));
                }
                Ok(Some(digest))
            }
            None => match self.retrying(|| self.get_manifest(session, target)).await {
                Ok(manifest) => Ok(Some(manifest.digest)),
                Err(RegistryError::NotFound { .. }) => Ok(None),
                Err(error) => Err(error),
            },
        }
    }

    /// `PUT`s a manifest and returns the digest the registry reports (or the bytes' digest when
    /// it reports none).
    async fn put_manifest(
        &self,
        session: &Session,
        target: &str,
        bytes: &Bytes,
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(bytes);
        let size = bytes.len() as u64;
        if size > MAX_MANIFEST_BYTES {
            return Err(RegistryError::ManifestTooLarge {
                registry: session.registry.clone(),
                repository: session.repository.clone(),
                digest,
                size,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let url = session.manifest_url(target);
        let action = Action::PushingManifest;
        let response = self
            .retrying(|| {
                self.send(session, RegistryOperation::Push, action, target, |http| {
                    http.put(&url)
                        .header(header::CONTENT_TYPE, media_type)
                        .body(bytes.clone())
                })
            })
            .await?;
        let status = response.status().as_u16();
        let reported = reported_digest(response.headers());
        let body = session
            .read_body(response, MAX_ERROR_BODY_BYTES, action, target)
            .await?;
        if !(200..300).contains(&status) {
            return Err(session.status_error(action, target, status, &body));
        }
        match reported {
            Some(reported) if reported.starts_with(SHA256_PREFIX) && reported != digest => {
                Err(session.digest_mismatch(action, target, &digest, &reported))
            }
            _ => Ok(digest),
        }
    }

    /// Sends a request with the session's authorization, renewing it once after a 401.
    /// Retryable statuses come back as errors; everything else is left to the caller.
    async fn send(
        &self,
        session: &Session,
        operation: RegistryOperation,
        action: Action,
        target: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut renewed = false;
        loop {
            let authorization = if renewed {
                session.renew(self, operation).await?
            } else {
                session.authorization(self, operation).await?
            };
            let mut request = build(&self.http);
            if let Some(value) = authorization.clone() {
                request = request.header(header::AUTHORIZATION, value);
            }
            let response = request
                .send()
                .await
                .map_err(|source| session.connection(action, target, source))?;
            let status = response.status().as_u16();
            if status == 401 && !renewed && authorization.is_some() {
                renewed = true;
                continue;
            }
            if status == 401 || status == 403 || is_transient_status(status) {
                let body = session
                    .read_body(response, MAX_ERROR_BODY_BYTES, action, target)
                    .await?;
                return Err(session.status_error(action, target, status, &body));
            }
            return Ok(response);
        }
    }
}

/// Credentials, clients and authorization for one repository of one registry.
struct Session {
    /// The registry as in references (`docker.io`).
    registry: String,
    repository: String,
    /// `scheme://host` of the API (`https://index.docker.io` for Docker Hub).
    base_url: String,
    /// A reference to the repository, for `oci-client` calls.
    base: Reference,
    oci: oci_client::Client,
    auth: RegistryAuth,
    credentials: CredentialSource,
    /// The `Authorization` value per operation (pull, push) once known; `Some(None)` means
    /// anonymous.
    headers: tokio::sync::Mutex<[Option<Option<HeaderValue>>; 2]>,
}

impl Session {
    fn slot(operation: RegistryOperation) -> usize {
        match operation {
            RegistryOperation::Pull => 0,
            RegistryOperation::Push => 1,
        }
    }

    /// The `Authorization` header for `operation`, authenticating on first use.
    async fn authorization(
        &self,
        registry: &Registry,
        operation: RegistryOperation,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let mut headers = self.headers.lock().await;
        if let Some(value) = &headers[Self::slot(operation)] {
            return Ok(value.clone());
        }
        let value = registry.retrying(|| self.authenticate(operation)).await?;
        headers[Self::slot(operation)] = Some(value.clone());
        Ok(value)
    }

    /// Authenticates again (an expired token) and returns the new header.
    async fn renew(
        &self,
        registry: &Registry,
        operation: RegistryOperation,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let mut headers = self.headers.lock().await;
        let value = registry.retrying(|| self.authenticate(operation)).await?;
        headers[Self::slot(operation)] = Some(value.clone());
        Ok(value)
    }

    /// Runs the token handshake through `oci-client` (which also primes its own token cache)
    /// and turns the outcome into an `Authorization` value.
    async fn authenticate(
        &self,
        operation: RegistryOperation,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let token = self
            .oci
            .auth(&self.base, &self.auth, operation)
            .await
            .map_err(|error| match error {
                OciDistributionError::AuthenticationFailure(message) => {
                    RegistryError::AuthenticationFailed {
                        registry: self.registry.clone(),
                        repository: self.repository.clone(),
                        credentials: Box::new(self.credentials.clone()),
                        message: shorten(message.trim()),
                    }
                }
                other => self.oci_error(Action::Authenticating, API_ROOT, other),
            })?;
        let value = match (token, &self.auth) {
            (Some(token), _) => Some(format!("{BEARER_PREFIX} {token}")),
            (None, RegistryAuth::Basic(username, password)) => Some(format!(
                "{BASIC_PREFIX} {}",
                BASE64.encode(format!("{username}:{password}"))
            )),
            (None, RegistryAuth::Bearer(token)) => Some(format!("{BEARER_PREFIX} {token}")),
            (None, RegistryAuth::Anonymous) => None,
        };
        Ok(value.and_then(|value| {
            let mut header = HeaderValue::from_str(&value).ok()?;
            header.set_sensitive(true);
            Some(header)
        }))
    }

    fn manifest_url(&self, target: &str) -> String {
        format!(
            "{}/v2/{}/manifests/{target}",
            self.base_url, self.repository
        )
    }

    async fn read_body(
        &self,
        mut response: reqwest::Response,
        limit: u64,
        action: Action,
        target: &str,
    ) -> Result<Bytes, RegistryError> {
        if response
            .content_length()
            .is_some_and(|length| length > limit)
        {
            return Err(self.too_large(action, target, limit));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| self.connection(action, target, source))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(self.too_large(action, target, limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Reads a 200 body; any other status becomes an error.
    async fn read_success(
        &self,
        response: reqwest::Response,
        limit: u64,
        action: Action,
        target: &str,
    ) -> Result<Bytes, RegistryError> {
        let status = response.status().as_u16();
        if status != 200 {
            let body = self
                .read_body(response, MAX_ERROR_BODY_BYTES, action, target)
                .await?;
            return Err(self.status_error(action, target, status, &body));
        }
        self.read_body(response, limit, action, target).await
    }

    fn context(&self, action: Action, target: &str) -> Box<RequestContext> {
        Box::new(RequestContext {
            action,
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            target: target.to_owned(),
        })
    }

    fn status_error(
        &self,
        action: Action,
        target: &str,
        status: u16,
        body: &[u8],
    ) -> RegistryError {
        let context = self.context(action, target);
        let detail = ResponseDetail::from_body(body);
        if status == 401 || status == 403 {
            return RegistryError::Unauthorized {
                context,
                status,
                credentials: Box::new(self.credentials.clone()),
                detail,
            };
        }
        RegistryError::Status {
            context,
            status,
            detail,
        }
    }

    fn oci_error(
        &self,
        action: Action,
        target: &str,
        error: OciDistributionError,
    ) -> RegistryError {
        match error {
            OciDistributionError::ServerError { code, message, .. } => {
                self.status_error(action, target, code, message.as_bytes())
            }
            OciDistributionError::UnauthorizedError { .. } => {
                self.status_error(action, target, 401, &[])
            }
            OciDistributionError::RequestError(source) => match source.status() {
                Some(status) => self.status_error(action, target, status.as_u16(), &[]),
                None => self.connection(action, target, source),
            },
            source => RegistryError::Client {
                context: self.context(action, target),
                source,
            },
        }
    }

    fn connection(&self, action: Action, target: &str, source: reqwest::Error) -> RegistryError {
        RegistryError::Connection {
            context: self.context(action, target),
            source,
        }
    }

    fn too_large(&self, action: Action, target: &str, limit: u64) -> RegistryError {
        RegistryError::TooLarge {
            context: self.context(action, target),
            limit,
        }
    }

    fn digest_mismatch(
        &self,
        action: Action,
        target: &str,
        expected: &str,
        actual: &str,
    ) -> RegistryError {
        RegistryError::DigestMismatch {
            context: self.context(action, target),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        }
    }
}

/// A manifest of the layout, ready to push.
#[derive(Debug, Clone)]
struct LayoutManifest {
    digest: String,
    media_type: String,
    bytes: Bytes,
}

/// Everything a push needs from a layout.
#[derive(Debug)]
struct Layout {
    dir: PathBuf,
    root: LayoutManifest,
    /// Manifests below the root, children before their parents.
    manifests: Vec<LayoutManifest>,
    /// Config and layer blobs with their sizes.
    blobs: BTreeMap<String, u64>,
}

impl Layout {
    fn blob_path(&self, digest: &str) -> PathBuf {
        blob_path(&self.dir, digest)
    }
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Debug, Deserialize)]
struct ManifestDocument {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct LayoutMarker {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

#[derive(Debug, Deserialize)]
struct LayoutIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

fn read_layout(dir: &Path) -> Result<Layout, LayoutError> {
    let marker_path = dir.join(OCI_LAYOUT_FILE);
    let marker: LayoutMarker = parse_json(&marker_path, &read_small(&marker_path)?)?;
    if marker.image_layout_version != LAYOUT_VERSION {
        return Err(LayoutError::Version {
            path: marker_path,
            version: marker.image_layout_version,
        });
    }
    let index_path = dir.join(LAYOUT_INDEX_FILE);
    let index: LayoutIndex = parse_json(&index_path, &read_small(&index_path)?)?;
    // Several entries may name the same root (one per `org.opencontainers.image.ref.name`).
    let roots: BTreeSet<(&str, &str)> = index
        .manifests
        .iter()
        .map(|entry| (entry.digest.as_str(), entry.media_type.as_str()))
        .collect();
    let (Some(root), 1) = (index.manifests.first(), roots.len()) else {
        return Err(LayoutError::RootCount {
            path: index_path,
            count: roots.len(),
        });
    };
    let mut walk = Walk {
        dir,
        manifests: Vec::new(),
        seen: BTreeSet::new(),
        blobs: BTreeMap::new(),
    };
    let root = walk.visit(&index_path, root, 0)?;
    Ok(Layout {
        dir: dir.to_owned(),
        root,
        manifests: walk.manifests,
        blobs: walk.blobs,
    })
}

struct Walk<'a> {
    dir: &'a Path,
    manifests: Vec<LayoutManifest>,
    seen: BTreeSet<String>,
    blobs: BTreeMap<String, u64>,
}

impl Walk<'_> {
    /// Loads the manifest `descriptor` points at, records what it references (children first)
    /// and returns it.
    fn visit(
        &mut self,
        parent: &Path,
        descriptor: &Descriptor,
        depth: usize,
    ) -> Result<LayoutManifest, LayoutError> {
        check_layout_digest(parent, &descriptor.digest)?;
        let path = blob_path(self.dir, &descriptor.digest);
        let is_index = match descriptor.media_type.as_str() {
            OCI_INDEX_MEDIA_TYPE | DOCKER_MANIFEST_LIST_MEDIA_TYPE => true,
            OCI_MANIFEST_MEDIA_TYPE | DOCKER_MANIFEST_MEDIA_TYPE => false,
            other => {
                return Err(LayoutError::MediaType {
                    path: parent.to_owned(),
                    digest: descriptor.digest.clone(),
                    media_type: other.to_owned(),
                });
            }
        };
        if depth > MAX_INDEX_DEPTH {
            return Err(LayoutError::TooDeep { path });
        }
        if descriptor.size > MAX_MANIFEST_BYTES {
            return Err(LayoutError::ManifestTooLarge {
                path,
                size: descriptor.size,
            });
        }
        let bytes = read_small(&path)?;
        check_blob_bytes(&path, &bytes, &descriptor.digest, descriptor.size)?;
        let document: ManifestDocument = parse_json(&path, &bytes)?;
        if let Some(found) = &document.media_type
            && *found != descriptor.media_type
        {
            return Err(LayoutError::MediaTypeMismatch {
                path,
                expected: descriptor.media_type.clone(),
                found: found.clone(),
            });
        }
        if is_index {
            for child in &document.manifests {
                let manifest = self.visit(&path, child, depth + 1)?;
                if self.seen.insert(manifest.digest.clone()) {
                    self.manifests.push(manifest);
                }
            }
        } else {
            let config = document
                .config
                .as_ref()
                .ok_or_else(|| LayoutError::MissingConfig { path: path.clone() })?;
            for blob in std::iter::once(config).chain(&document.layers) {
                check_layout_digest(&path, &blob.digest)?;
                self.blobs.insert(blob.digest.clone(), blob.size);
            }
        }
        Ok(LayoutManifest {
            digest: descriptor.digest.clone(),
            media_type: descriptor.media_type.clone(),
            bytes: Bytes::from(bytes),
        })
    }
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix(SHA256_PREFIX).unwrap_or(digest);
    dir.join(LAYOUT_BLOBS_DIR)
        .join(layout::DIGEST_ALGORITHM)
        .join(hex)
}

fn check_layout_digest(path: &Path, digest: &str) -> Result<(), LayoutError> {
    if is_sha256_digest(digest) {
        Ok(())
    } else {
        Err(LayoutError::Digest {
            path: path.to_owned(),
            digest: digest.to_owned(),
        })
    }
}

/// Reads a file of at most [`MAX_MANIFEST_BYTES`].
fn read_small(path: &Path) -> Result<Vec<u8>, LayoutError> {
    use std::io::Read as _;
    let read_error = |source| LayoutError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(LayoutError::ManifestTooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, LayoutError> {
    serde_json::from_slice(bytes).map_err(|source| LayoutError::Json {
        path: path.to_owned(),
        source,
    })
}

fn check_blob_bytes(path: &Path, bytes: &[u8], digest: &str, size: u64) -> Result<(), LayoutError> {
    if bytes.len() as u64 != size {
        return Err(LayoutError::Size {
            path: path.to_owned(),
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    let actual = sha256_digest(bytes);
    if actual != digest {
        return Err(LayoutError::Content {
            path: path.to_owned(),
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// Hashes a blob file without holding it in memory and checks its size and digest.
async fn verify_file(path: &Path, digest: &str, size: u64) -> Result<(), LayoutError> {
    let read_error = |source| LayoutError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    let mut total = 0u64;
    loop {
        let read = file.read(&mut buffer).await.map_err(read_error)?;
        if read == 0 {
            break;
        }
        total += read as u64;
        hasher.update(&buffer[..read]);
    }
    if total != size {
        return Err(LayoutError::Size {
            path: path.to_owned(),
            expected: size,
            actual: total,
        });
    }
    let actual = finish_sha256(hasher);
    if actual != digest {
        return Err(LayoutError::Content {
            path: path.to_owned(),
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// The tags a push sets: the target's own tag, then `extra`, without repeats.
fn tags_to_push(target: &Reference, extra: &[String]) -> Result<Vec<String>, RegistryError> {
    let mut tags: Vec<String> = Vec::new();
    for tag in target
        .tag()
        .into_iter()
        .chain(extra.iter().map(String::as_str))
    {
        check_tag(tag)?;
        if !tags.iter().any(|known| known == tag) {
            tags.push(tag.to_owned());
        }
    }
    Ok(tags)
}

/// Checks a tag against docker's grammar, `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), RegistryError> {
    let mut bytes = tag.bytes();
    let valid = tag.len() <= MAX_TAG_LEN
        && bytes
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(RegistryError::InvalidTag {
            tag: tag.to_owned(),
        })
    }
}

fn check_digest(digest: &str) -> Result<(), RegistryError> {
    if is_sha256_digest(digest) {
        Ok(())
    } else {
        Err(RegistryError::InvalidDigest {
            digest: digest.to_owned(),
        })
    }
}

fn is_sha256_digest(digest: &str) -> bool {
    crate::digest::sha256_hex(digest).is_some()
}

pub use crate::digest::sha256_digest;

/// The tag or digest `reference` names: its digest when it has one, else its tag
/// ([`PLACEHOLDER_TAG`] when it has neither).
pub fn tag_or_digest(reference: &Reference) -> &str {
    reference
        .digest()
        .or(reference.tag())
        .unwrap_or(PLACEHOLDER_TAG)
}

fn accept_manifests() -> String {
    MANIFEST_MEDIA_TYPES.join(", ")
}

fn reported_digest(headers: &HeaderMap) -> Option<String> {
    headers
        .get(DOCKER_CONTENT_DIGEST_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// The host part of `host[:port]`, `[v6]:port`, or a bare IPv6 address.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => registry,
    }
}

/// Whether the CIDR `entry` (`addr/bits`) contains `ip`; anything else is no match.
fn cidr_contains(entry: &str, ip: IpAddr) -> bool {
    let Some((network, bits)) = entry.split_once('/') else {
        return false;
    };
    let (Ok(network), Ok(bits)) = (network.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (network, ip) {
        (IpAddr::V4(network), IpAddr::V4(ip)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(network) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(network), IpAddr::V6(ip)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(network) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// The parts of a `WWW-Authenticate: Bearer …` challenge a token request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

/// Parses the first `Bearer` challenge of a `WWW-Authenticate` value.
fn parse_bearer_challenge(value: &str) -> Option<BearerChallenge> {
    let rest = value.trim_start();
    let (scheme, mut rest) = rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len()));
    if !scheme.eq_ignore_ascii_case(BEARER_PREFIX) {
        return None;
    }
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let equals = rest.find('=')?;
        let key = rest[..equals].trim().to_ascii_lowercase();
        if key.contains(char::is_whitespace) {
            // The start of another challenge: this one is complete.
            break;
        }
        rest = rest[equals + 1..].trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((index, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next()?.1),
                    '"' => {
                        end = Some(index + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end?..];
            value
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let value = rest[..end].trim().to_owned();
            rest = &rest[end..];
            value
        };
        params.entry(key).or_insert(value);
    }
    Some(BearerChallenge {
        realm: params.remove("realm").filter(|realm| !realm.is_empty())?,
        service: params.remove("service"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry_auth::MAX_MESSAGE_CHARS as MAX_DETAIL_CHARS;

    #[test]
    fn plain_http_is_for_loopback_and_listed_registries() {
        let insecure = vec![
            "registry.internal:5000".to_owned(),
            "10.1.0.0/16".to_owned(),
            "fd00::/8".to_owned(),
            "not-a-cidr/x".to_owned(),
        ];
        let cases = [
            ("localhost", true),
            ("localhost:5000", true),
            ("LOCALHOST:1", true),
            ("127.0.0.1", true),
            ("127.0.0.1:5000", true),
            ("127.255.3.4:443", true),
            ("[::1]:5000", true),
            ("::1", true),
            ("[::1]", true),
            ("registry.internal:5000", true),
            ("Registry.Internal:5000", true),
            ("registry.internal", false),
            ("registry.internal:5001", false),
            ("10.1.200.3:5000", true),
            ("10.2.0.1:5000", false),
            ("[fd12::1]:5000", true),
            ("128.0.0.1", false),
            ("docker.io", false),
            ("ghcr.io", false),
            ("localhost.example.com", false),
            ("0.0.0.0:5000", false),
        ];
        for (registry, expected) in cases {
            assert_eq!(uses_plain_http(registry, &insecure), expected, "{registry}");
        }
        assert!(!uses_plain_http("registry.internal:5000", &[]));
    }

    #[test]
    fn references_parse_like_docker() {
        let digest = format!("sha256:{}", "a".repeat(64));
        type Parts<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);
        let cases: Vec<(String, Option<Parts>)> = vec![
            (
                "alpine".into(),
                Some(("docker.io", "library/alpine", Some("latest"), None)),
            ),
            (
                "alpine:3.20".into(),
                Some(("docker.io", "library/alpine", Some("3.20"), None)),
            ),
            (
                "user/app".into(),
                Some(("docker.io", "user/app", Some("latest"), None)),
            ),
            (
                "docker.io/alpine".into(),
                Some(("docker.io", "library/alpine", Some("latest"), None)),
            ),
            (
                "index.docker.io/user/app:v1".into(),
                Some(("docker.io", "user/app", Some("v1"), None)),
            ),
            (
                "ghcr.io/org/app:v1".into(),
                Some(("ghcr.io", "org/app", Some("v1"), None)),
            ),
            (
                "ghcr.io/app".into(),
                Some(("ghcr.io", "app", Some("latest"), None)),
            ),
            (
                "localhost/app".into(),
                Some(("localhost", "app", Some("latest"), None)),
            ),
            (
                "localhost:5000/a/b/c:t".into(),
                Some(("localhost:5000", "a/b/c", Some("t"), None)),
            ),
            (
                "127.0.0.1:5000/app".into(),
                Some(("127.0.0.1:5000", "app", Some("latest"), None)),
            ),
            (
                format!("ghcr.io/app@{digest}"),
                Some(("ghcr.io", "app", None, Some(digest.as_str()))),
            ),
            (
                format!("ghcr.io/app:v2@{digest}"),
                Some(("ghcr.io", "app", Some("v2"), Some(digest.as_str()))),
            ),
            ("Upper/app".into(), None),
            ("ghcr.io/App".into(), None),
            ("".into(), None),
            ("app:bad tag".into(), None),
            ("ghcr.io/app@sha256:abc".into(), None),
            ("ghcr.io/app@md5:0123".into(), None),
        ];
        for (text, expected) in cases {
            match (parse_reference(&text), expected) {
                (Ok(reference), Some((registry, repository, tag, digest))) => {
                    assert_eq!(reference.registry(), registry, "{text}");
                    assert_eq!(reference.repository(), repository, "{text}");
                    assert_eq!(reference.tag(), tag, "{text}");
                    assert_eq!(reference.digest(), digest, "{text}");
                }
                (Err(error), None) => assert!(error.to_string().contains(&format!("{text:?}"))),
                (result, expected) => panic!("{text}: got {result:?}, expected {expected:?}"),
            }
        }
        assert_eq!(
            parse_reference("alpine").unwrap().resolve_registry(),
            "index.docker.io"
        );
    }

    #[test]
    fn tags_follow_docker_grammar_and_collect_in_order() {
        for tag in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(check_tag(tag).is_ok(), "{tag}");
        }
        for tag in ["", ".x", "-x", "a/b", "a:b", "a b", &"t".repeat(129), "ü"] {
            assert!(
                matches!(check_tag(tag), Err(RegistryError::InvalidTag { .. })),
                "{tag}"
            );
        }
        let target = parse_reference("ghcr.io/app:v1").unwrap();
        let extra = ["v1".to_owned(), "stable".to_owned(), "stable".to_owned()];
        assert_eq!(tags_to_push(&target, &extra).unwrap(), ["v1", "stable"]);
        let by_digest = parse_reference(&format!("ghcr.io/app@sha256:{}", "b".repeat(64))).unwrap();
        assert_eq!(tags_to_push(&by_digest, &[]).unwrap(), Vec::<String>::new());
        assert!(tags_to_push(&target, &["bad/tag".to_owned()]).is_err());
    }

    #[test]
    fn digests_are_sha256_only() {
        let good = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert!(is_sha256_digest(&good));
        for bad in [
            "sha256:".to_owned(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha512:{}", "a".repeat(128)),
            format!("sha256:../../{}", "a".repeat(58)),
            "a".repeat(64),
        ] {
            assert!(!is_sha256_digest(&bad), "{bad}");
        }
    }

    #[test]
    fn bearer_challenges_parse() {
        let check = |header: &str, expected: Option<(&str, Option<&str>)>| {
            let parsed = parse_bearer_challenge(header);
            let expected = expected.map(|(realm, service)| BearerChallenge {
                realm: realm.to_owned(),
                service: service.map(str::to_owned),
            });
            assert_eq!(parsed, expected, "{header}");
        };
        check(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#,
            Some(("https://auth.docker.io/token", Some("registry.docker.io"))),
        );
        check(
            r#"bearer  service="a b", realm="https://x/token?x=1,2", scope="repository:r:pull""#,
            Some(("https://x/token?x=1,2", Some("a b"))),
        );
        check(
            r#"Bearer realm=https://x/token"#,
            Some(("https://x/token", None)),
        );
        check(r#"Bearer realm="quo\"ted""#, Some(("quo\"ted", None)));
        check(r#"Basic realm="registry""#, None);
        check(r#"Bearer service="only""#, None);
        check(r#"Bearer realm="unterminated"#, None);
        check("", None);
    }

    #[test]
    fn error_details_keep_the_envelope() {
        let envelope = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}},{"code":"DENIED"}]}"#;
        let detail = ResponseDetail::from_body(envelope);
        assert!(detail.has_code("MANIFEST_UNKNOWN") && detail.has_code("DENIED"));
        assert_eq!(
            detail.to_string(),
            "MANIFEST_UNKNOWN: manifest unknown; DENIED"
        );
        assert_eq!(ResponseDetail::from_body(b"  "), ResponseDetail::Empty);
        assert_eq!(
            ResponseDetail::from_body(b"<html>bad gateway</html>"),
            ResponseDetail::Text("<html>bad gateway</html>".to_owned())
        );
        let long = "x".repeat(5000);
        let ResponseDetail::Text(text) = ResponseDetail::from_body(long.as_bytes()) else {
            panic!("expected text");
        };
        assert!(text.chars().count() <= MAX_DETAIL_CHARS + 1);

        let error = RegistryError::Status {
            context: Box::new(RequestContext {
                action: Action::PushingManifest,
                registry: "127.0.0.1:5000".to_owned(),
                repository: "app".to_owned(),
                target: "v1".to_owned(),
            }),
            status: 400,
            detail,
        };
        assert_eq!(
            error.to_string(),
            "pushing manifest v1 in 127.0.0.1:5000/app: status 400: MANIFEST_UNKNOWN: manifest unknown; DENIED"
        );
        assert!(!error.is_transient());
        for (status, transient) in [
            (500, true),
            (503, true),
            (429, true),
            (408, true),
            (404, false),
            (401, false),
        ] {
            let error = RegistryError::Status {
                context: Box::new(RequestContext {
                    action: Action::CheckingBlob,
                    registry: "r".to_owned(),
                    repository: "p".to_owned(),
                    target: "t".to_owned(),
                }),
                status,
                detail: ResponseDetail::Empty,
            };
            assert_eq!(error.is_transient(), transient, "{status}");
        }
    }

    /// Writes `bytes` as a blob of the layout and returns its descriptor JSON.
    fn add_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        let digest = sha256_digest(bytes);
        let path = blob_path(dir, &digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        serde_json::json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
    }

    fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    /// A two-platform layout: index → two manifests sharing one layer.
    fn write_layout(dir: &Path) -> (String, Vec<String>) {
        std::fs::write(
            dir.join(OCI_LAYOUT_FILE),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let layer = add_blob(
            dir,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            b"layer bytes",
        );
        let mut manifests = Vec::new();
        let mut manifest_digests = Vec::new();
        for arch in ["amd64", "arm64"] {
            let config = add_blob(
                dir,
                "application/vnd.oci.image.config.v1+json",
                format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).as_bytes(),
            );
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST_MEDIA_TYPE,
                "config": config,
                "layers": [layer],
            });
            let descriptor = add_blob(dir, OCI_MANIFEST_MEDIA_TYPE, &json_bytes(&manifest));
            manifest_digests.push(descriptor["digest"].as_str().unwrap().to_owned());
            manifests.push(descriptor);
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX_MEDIA_TYPE,
            "manifests": manifests,
        });
        let root = add_blob(dir, OCI_INDEX_MEDIA_TYPE, &json_bytes(&index));
        let top = serde_json::json!({ "schemaVersion": 2, "manifests": [root] });
        std::fs::write(dir.join(LAYOUT_INDEX_FILE), json_bytes(&top)).unwrap();
        (
            root["digest"].as_str().unwrap().to_owned(),
            manifest_digests,
        )
    }

    #[test]
    fn layouts_are_read_children_first() {
        let dir = tempfile::tempdir().unwrap();
        let (root, manifests) = write_layout(dir.path());
        let layout = read_layout(dir.path()).unwrap();
        assert_eq!(layout.root.digest, root);
        assert_eq!(layout.root.media_type, OCI_INDEX_MEDIA_TYPE);
        let order: Vec<_> = layout.manifests.iter().map(|m| m.digest.clone()).collect();
        assert_eq!(order, manifests);
        assert_eq!(layout.blobs.len(), 3, "two configs and one shared layer");
        assert_eq!(layout.blobs.values().sum::<u64>(), 11 + 2 * 37);

        // One entry per tag, as layouts with `org.opencontainers.image.ref.name` have them.
        let text = std::fs::read_to_string(dir.path().join(LAYOUT_INDEX_FILE)).unwrap();
        let mut top: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut entries = Vec::new();
        for tag in ["v1", "latest"] {
            let mut entry = top["manifests"][0].clone();
            entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
            entries.push(entry);
        }
        top["manifests"] = entries.into();
        std::fs::write(dir.path().join(LAYOUT_INDEX_FILE), json_bytes(&top)).unwrap();
        assert_eq!(read_layout(dir.path()).unwrap().root.digest, root);

        top["manifests"] = serde_json::json!([]);
        std::fs::write(dir.path().join(LAYOUT_INDEX_FILE), json_bytes(&top)).unwrap();
        let error = read_layout(dir.path()).unwrap_err();
        assert!(
            matches!(error, LayoutError::RootCount { count: 0, .. }),
            "{error}"
        );
    }

    #[test]
    fn a_single_manifest_can_be_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(OCI_LAYOUT_FILE),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let config = add_blob(
            dir.path(),
            "application/vnd.docker.container.image.v1+json",
            b"{}",
        );
        let layer = add_blob(
            dir.path(),
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            b"l",
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_MEDIA_TYPE,
            "config": config,
            "layers": [layer, layer],
        });
        let root = add_blob(
            dir.path(),
            DOCKER_MANIFEST_MEDIA_TYPE,
            &json_bytes(&manifest),
        );
        let top = serde_json::json!({ "schemaVersion": 2, "manifests": [root] });
        std::fs::write(dir.path().join(LAYOUT_INDEX_FILE), json_bytes(&top)).unwrap();

        let layout = read_layout(dir.path()).unwrap();
        assert_eq!(layout.root.digest, root["digest"].as_str().unwrap());
        assert_eq!(layout.root.media_type, DOCKER_MANIFEST_MEDIA_TYPE);
        assert!(layout.manifests.is_empty());
        assert_eq!(layout.blobs.len(), 2);
    }

    #[test]
    fn broken_layouts_are_refused() {
        type Breakage = fn(&Path, &str);
        let cases: [(&str, Breakage, &str); 8] = [
            (
                "missing marker",
                |dir, _| std::fs::remove_file(dir.join(OCI_LAYOUT_FILE)).unwrap(),
                "oci-layout",
            ),
            (
                "wrong version",
                |dir, _| {
                    std::fs::write(
                        dir.join(OCI_LAYOUT_FILE),
                        br#"{"imageLayoutVersion":"2.0.0"}"#,
                    )
                    .unwrap()
                },
                "2.0.0",
            ),
            (
                "two roots",
                |dir, _| {
                    let text = std::fs::read_to_string(dir.join(LAYOUT_INDEX_FILE)).unwrap();
                    let mut top: serde_json::Value = serde_json::from_str(&text).unwrap();
                    let mut other = top["manifests"][0].clone();
                    other["digest"] = sha256_digest(b"other").into();
                    top["manifests"].as_array_mut().unwrap().push(other);
                    std::fs::write(dir.join(LAYOUT_INDEX_FILE), json_bytes(&top)).unwrap();
                },
                "names 2 different manifests",
            ),
            (
                "tampered index",
                |dir, root| std::fs::write(blob_path(dir, root), b"{\"manifests\":[]}").unwrap(),
                "bytes, but its descriptor says",
            ),
            (
                "same size, other content",
                |dir, root| {
                    let path = blob_path(dir, root);
                    let mut bytes = std::fs::read(&path).unwrap();
                    let last = bytes.len() - 2;
                    bytes[last] = b' ';
                    std::fs::write(&path, bytes).unwrap();
                },
                "hashes to",
            ),
            (
                "missing manifest blob",
                |dir, root| std::fs::remove_file(blob_path(dir, root)).unwrap(),
                "reading",
            ),
            (
                "path traversal digest",
                |dir, _| {
                    let top = serde_json::json!({ "manifests": [{
                        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
                        "digest": "sha256:../../../../etc/passwd",
                        "size": 10,
                    }]});
                    std::fs::write(dir.join(LAYOUT_INDEX_FILE), json_bytes(&top)).unwrap();
                },
                "malformed digest",
            ),
            (
                "not a manifest",
                |dir, root| {
                    let top = serde_json::json!({ "manifests": [{
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": root,
                        "size": 10,
                    }]});
                    std::fs::write(dir.join(LAYOUT_INDEX_FILE), json_bytes(&top)).unwrap();
                },
                "not a manifest or index",
            ),
        ];
        for (name, breakage, needle) in cases {
            let dir = tempfile::tempdir().unwrap();
            let (root, _) = write_layout(dir.path());
            breakage(dir.path(), &root);
            let error = read_layout(dir.path()).unwrap_err().to_string();
            assert!(error.contains(needle), "{name}: {error}");
        }
    }

    #[tokio::test]
    async fn blob_files_are_verified_before_upload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"content").unwrap();
        let digest = sha256_digest(b"content");
        verify_file(&path, &digest, 7).await.unwrap();
        let error = verify_file(&path, &digest, 8).await.unwrap_err();
        assert!(matches!(
            error,
            LayoutError::Size {
                expected: 8,
                actual: 7,
                ..
            }
        ));
        let other = sha256_digest(b"other");
        let error = verify_file(&path, &other, 7).await.unwrap_err();
        assert!(matches!(error, LayoutError::Content { .. }));
    }

    /// What the fake registry answers: status, extra headers, body.
    type Reply = (u16, Vec<(&'static str, String)>, Vec<u8>);
    type Handler = Arc<dyn Fn(&FakeRequest) -> Reply + Send + Sync>;

    /// What the fake registry was asked.
    struct FakeRequest {
        method: String,
        path: String,
        authorization: Option<String>,
        body: String,
    }

    /// A loopback HTTP server that answers each request (one per connection) with `handler`
    /// and counts requests per `METHOD path`.
    struct FakeRegistry {
        host: String,
        hits: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl FakeRegistry {
        /// Starts the server; `make_handler` gets its `127.0.0.1:port`.
        async fn start(make_handler: impl FnOnce(String) -> Handler) -> Self {
            use tokio::io::AsyncWriteExt as _;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let host = listener.local_addr().unwrap().to_string();
            let handler = make_handler(host.clone());
            let hits = Arc::new(std::sync::Mutex::new(Vec::new()));
            let log = Arc::clone(&hits);
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        return;
                    };
                    let handler = Arc::clone(&handler);
                    let log = Arc::clone(&log);
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(byte[0]);
                        }
                        let head = String::from_utf8_lossy(&head).to_string();
                        let mut words = head.split_whitespace();
                        let method = words.next().unwrap_or_default().to_owned();
                        let path = words.next().unwrap_or_default().to_owned();
                        let length: usize = head
                            .lines()
                            .find_map(|line| {
                                let (name, value) = line.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        let mut body = vec![0u8; length];
                        if stream.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let authorization = head.lines().find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("authorization")
                                .then(|| value.trim().to_owned())
                        });
                        log.lock().unwrap().push(format!("{method} {path}"));
                        let request = FakeRequest {
                            method,
                            path,
                            authorization,
                            body: String::from_utf8_lossy(&body).into_owned(),
                        };
                        let (status, headers, body) = handler(&request);
                        let method = request.method;
                        let mut reply = format!(
                            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                            body.len()
                        );
                        for (name, value) in headers {
                            reply.push_str(&format!("{name}: {value}\r\n"));
                        }
                        reply.push_str("\r\n");
                        let mut bytes = reply.into_bytes();
                        if method != "HEAD" {
                            bytes.extend_from_slice(&body);
                        }
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                    });
                }
            });
            Self { host, hits }
        }

        fn count(&self, request: &str) -> usize {
            let hits = self.hits.lock().unwrap();
            hits.iter().filter(|hit| hit.as_str() == request).count()
        }

        fn reference(&self, suffix: &str) -> Reference {
            parse_reference(&format!("{}/repo{suffix}", self.host)).unwrap()
        }
    }

    fn client(retries: usize) -> Registry {
        Registry::new(RegistryOptions {
            retries,
            ..RegistryOptions::default()
        })
        .unwrap()
    }

    const MANIFEST: &[u8] =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;

    #[tokio::test]
    async fn hostile_registries_cannot_substitute_content() {
        let good = sha256_digest(MANIFEST);
        let lie = sha256_digest(b"a different manifest");
        let lie_for_handler = lie.clone();
        let server = FakeRegistry::start(|_| {
            Arc::new(move |request: &FakeRequest| -> Reply {
                let (method, path) = (request.method.as_str(), request.path.as_str());
                let manifest_headers = vec![("Content-Type", OCI_MANIFEST_MEDIA_TYPE.to_owned())];
                match (method, path) {
                    ("GET", "/v2/") => (200, vec![], b"{}".to_vec()),
                    // Asked for one digest, serves other bytes.
                    ("GET", path) if path.ends_with(&lie_for_handler) => {
                        (200, manifest_headers, MANIFEST.to_vec())
                    }
                    // Right bytes, wrong header.
                    ("GET", "/v2/repo/manifests/header-lies") => {
                        let mut headers = manifest_headers;
                        headers.push(("Docker-Content-Digest", lie_for_handler.clone()));
                        (200, headers, MANIFEST.to_vec())
                    }
                    ("GET", "/v2/repo/manifests/huge") => (
                        200,
                        manifest_headers,
                        vec![b' '; (MAX_MANIFEST_BYTES + 1) as usize],
                    ),
                    ("GET", "/v2/repo/manifests/untyped") => (200, vec![], b"{}".to_vec()),
                    ("PUT", "/v2/repo/manifests/v1") => (
                        201,
                        vec![("Docker-Content-Digest", lie_for_handler.clone())],
                        vec![],
                    ),
                    ("GET", path) if path.starts_with("/v2/repo/blobs/") => {
                        (200, vec![], b"not the blob".to_vec())
                    }
                    _ => (
                        404,
                        vec![],
                        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"nope"}]}"#.to_vec(),
                    ),
                }
            })
        })
        .await;
        let registry = client(0);
        let by_digest = Reference::with_digest(server.host.clone(), "repo".to_owned(), lie.clone());

        let check_mismatch = |result: Result<_, RegistryError>, what: &str| match result {
            Err(RegistryError::DigestMismatch { .. }) => {}
            Err(other) => panic!("{what}: expected a digest mismatch, got {other}"),
            Ok(_) => panic!("{what}: accepted"),
        };
        check_mismatch(
            registry.fetch_manifest(&by_digest).await.map(|_| ()),
            "body for another digest",
        );
        check_mismatch(
            registry
                .fetch_manifest(&server.reference(":header-lies"))
                .await
                .map(|_| ()),
            "lying header",
        );
        check_mismatch(
            registry
                .push_manifest_bytes(
                    &server.reference(""),
                    "v1",
                    MANIFEST,
                    OCI_MANIFEST_MEDIA_TYPE,
                )
                .await
                .map(|_| ()),
            "push reported another digest",
        );
        check_mismatch(
            registry
                .fetch_blob(&server.reference(""), &good)
                .await
                .map(|_| ()),
            "blob content",
        );

        let huge = registry
            .fetch_manifest(&server.reference(":huge"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                huge,
                RegistryError::TooLarge {
                    limit: MAX_MANIFEST_BYTES,
                    ..
                }
            ),
            "{huge}"
        );
        let untyped = registry
            .fetch_manifest(&server.reference(":untyped"))
            .await
            .unwrap_err();
        assert!(
            matches!(untyped, RegistryError::MissingMediaType { .. }),
            "{untyped}"
        );
        let missing = registry
            .fetch_manifest(&server.reference(":absent"))
            .await
            .unwrap_err();
        assert!(
            matches!(missing, RegistryError::NotFound { .. }),
            "{missing}"
        );
        assert_eq!(
            registry
                .tag_digest(&server.reference(""), "absent")
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_then_reported() {
        let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&attempts);
        let server = FakeRegistry::start(|_| {
            Arc::new(move |request: &FakeRequest| -> Reply {
                match (request.method.as_str(), request.path.as_str()) {
                    ("GET", "/v2/") => (200, vec![], b"{}".to_vec()),
                    ("GET", "/v2/repo/manifests/flaky") => {
                        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                            (503, vec![], b"try later".to_vec())
                        } else {
                            (
                                200,
                                vec![("Content-Type", OCI_MANIFEST_MEDIA_TYPE.to_owned())],
                                MANIFEST.to_vec(),
                            )
                        }
                    }
                    ("GET", "/v2/repo/manifests/throttled") => (
                        429,
                        vec![],
                        br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#
                            .to_vec(),
                    ),
                    _ => (400, vec![], b"".to_vec()),
                }
            })
        })
        .await;

        let fetched = client(3)
            .fetch_manifest(&server.reference(":flaky"))
            .await
            .unwrap();
        assert_eq!(fetched.digest, sha256_digest(MANIFEST));
        assert_eq!(fetched.media_type, OCI_MANIFEST_MEDIA_TYPE);
        assert_eq!(server.count("GET /v2/repo/manifests/flaky"), 3);

        let error = client(2)
            .fetch_manifest(&server.reference(":throttled"))
            .await
            .unwrap_err();
        assert_eq!(server.count("GET /v2/repo/manifests/throttled"), 3);
        match &error {
            RegistryError::Status {
                status: 429,
                detail,
                context,
            } => {
                assert!(detail.has_code("TOOMANYREQUESTS"));
                assert_eq!(context.target, "throttled");
            }
            other => panic!("expected status 429, got {other}"),
        }
        let message = error.to_string();
        assert!(
            message.contains(&server.host) && message.contains("repo"),
            "{message}"
        );
    }

    fn docker_config(host: &str, entry: serde_json::Value) -> DockerConfig {
        let config = serde_json::json!({ "auths": { host: entry } });
        DockerConfig::parse(Path::new("/cfg/config.json"), &json_bytes(&config)).unwrap()
    }

    fn client_with(config: DockerConfig) -> Registry {
        Registry::new(RegistryOptions {
            docker_config: config,
            retries: 0,
            ..RegistryOptions::default()
        })
        .unwrap()
    }

    /// `/v2/` challenges for a bearer token from `/token`.
    fn challenge(host: &str) -> Reply {
        let value = format!(r#"Bearer realm="http://{host}/token",service="fake""#);
        (
            401,
            vec![("WWW-Authenticate", value)],
            br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_vec(),
        )
    }

    #[tokio::test]
    async fn basic_credentials_buy_bearer_tokens_that_are_renewed_once() {
        let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&issued);
        let server = FakeRegistry::start(move |host| {
            Arc::new(move |request: &FakeRequest| -> Reply {
                let basic = format!("Basic {}", BASE64.encode("alice:pw"));
                let path = request.path.as_str();
                if path == "/v2/" {
                    return challenge(&host);
                }
                if path.starts_with("/token?") {
                    if request.authorization.as_deref() != Some(basic.as_str()) {
                        return (401, vec![], b"bad credentials".to_vec());
                    }
                    assert!(path.contains("scope=repository%3Arepo%3Apull"), "{path}");
                    assert!(path.contains("service=fake"), "{path}");
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    return (200, vec![], format!(r#"{{"token":"t{n}"}}"#).into_bytes());
                }
                // Only the second token is still valid: the first one "expired".
                if request.authorization.as_deref() == Some("Bearer t2") {
                    let headers = vec![("Content-Type", OCI_MANIFEST_MEDIA_TYPE.to_owned())];
                    return (200, headers, MANIFEST.to_vec());
                }
                (
                    401,
                    vec![],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}"#.to_vec(),
                )
            })
        })
        .await;

        let good = client_with(docker_config(
            &server.host,
            serde_json::json!({ "username": "alice", "password": "pw" }),
        ));
        let fetched = good.fetch_manifest(&server.reference(":v1")).await.unwrap();
        assert_eq!(fetched.digest, sha256_digest(MANIFEST));
        assert_eq!(server.count("GET /v2/repo/manifests/v1"), 2);
        assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 2);

        // A third token is not accepted: one renewal, then the refusal is reported.
        let cached = good.fetch_manifest(&server.reference(":v2")).await;
        assert!(cached.is_ok(), "t2 is still cached and valid");
        issued.store(5, std::sync::atomic::Ordering::SeqCst);
        let stale = client_with(docker_config(
            &server.host,
            serde_json::json!({ "username": "alice", "password": "pw" }),
        ));
        let error = stale
            .fetch_manifest(&server.reference(":v3"))
            .await
            .unwrap_err();
        match &error {
            RegistryError::Unauthorized {
                status: 401,
                credentials,
                detail,
                ..
            } => {
                assert!(
                    matches!(**credentials, CredentialSource::ConfigFile { ref key, .. } if *key == server.host)
                );
                assert!(detail.has_code("UNAUTHORIZED"));
            }
            other => panic!("expected unauthorized, got {other}"),
        }
        assert_eq!(server.count("GET /v2/repo/manifests/v3"), 2);

        let wrong = client_with(docker_config(
            &server.host,
            serde_json::json!({ "username": "alice", "password": "nope" }),
        ));
        let error = wrong
            .fetch_manifest(&server.reference(":v1"))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, RegistryError::AuthenticationFailed { .. }),
            "{message}"
        );
        assert!(
            message.contains("/cfg/config.json") && message.contains(&server.host),
            "{message}"
        );
        assert!(message.contains("bad credentials"), "{message}");
    }

    #[tokio::test]
    async fn identity_tokens_are_exchanged_for_access_tokens() {
        let server = FakeRegistry::start(move |host| {
            Arc::new(move |request: &FakeRequest| -> Reply {
                match (request.method.as_str(), request.path.as_str()) {
                    (_, "/v2/") => challenge(&host),
                    ("POST", "/token") => {
                        let body = &request.body;
                        let expected = [
                            "grant_type=refresh_token",
                            "refresh_token=the-refresh-token",
                            "scope=repository%3Arepo%3Apull%2Cpush",
                            "service=fake",
                            "client_id=securebuild",
                        ];
                        if expected
                            .iter()
                            .all(|part| body.split('&').any(|field| field == *part))
                        {
                            (200, vec![], br#"{"access_token":"granted"}"#.to_vec())
                        } else {
                            (400, vec![], body.clone().into_bytes())
                        }
                    }
                    ("GET", "/v2/repo/manifests/v1")
                        if request.authorization.as_deref() == Some("Bearer granted") =>
                    {
                        (
                            200,
                            vec![("Content-Type", OCI_MANIFEST_MEDIA_TYPE.to_owned())],
                            MANIFEST.to_vec(),
                        )
                    }
                    _ => (401, vec![], Vec::new()),
                }
            })
        })
        .await;
        let registry = client_with(docker_config(
            &server.host,
            serde_json::json!({ "identitytoken": "the-refresh-token" }),
        ));
        let fetched = registry
            .fetch_manifest(&server.reference(":v1"))
            .await
            .unwrap();
        assert_eq!(fetched.bytes, MANIFEST);
        assert_eq!(server.count("POST /token"), 1);

        let rejected = client_with(docker_config(
            &server.host,
            serde_json::json!({ "identitytoken": "revoked" }),
        ));
        let error = rejected
            .fetch_manifest(&server.reference(":v1"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, RegistryError::AuthenticationFailed { .. }),
            "{error}"
        );
    }
}
