//! [`Registry`], the client: options, the HTTP client, one session per repository created
//! on first use, and retries of transient failures. What it does is spread over the modules
//! named for it: [`crate::manifests`], [`crate::blobs`], [`crate::push`] and [`crate::pull`].

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;

use crate::auth::{Credentials, DockerConfig};
use crate::blob_record::BlobRecord;
use crate::error::{Chain, RegistryError};
use crate::reference::{PLACEHOLDER_TAG, uses_plain_http};
use crate::session::Session;
use crate::transport::StreamingClient;

/// Blobs uploaded at once by default.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;
/// Retries after a transient failure by default.
pub const DEFAULT_RETRIES: usize = 4;
/// The root of the distribution API.
pub(crate) const API_ROOT: &str = "/v2/";
/// The most of an error body that is read.
pub(crate) const MAX_ERROR_BODY_BYTES: u64 = 64 << 10;
const USER_AGENT: &str = concat!("securebuild/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(300);
const RETRY_MIN_DELAY: Duration = Duration::from_millis(250);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(8);
/// Sessions kept at most; all are dropped when one more is needed.
const MAX_SESSIONS: usize = 1024;

/// Installs `ring` as the process-wide rustls provider; later calls (and a provider installed
/// elsewhere first) are fine.
pub fn init_tls() {
    // An error only means a provider is already installed, which is all this needs.
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// A client for one or more registries, with credentials and tokens cached per repository.
pub struct Registry {
    pub(crate) options: RegistryOptions,
    pub(crate) http: reqwest::Client,
    /// The transport for [`Registry::pull`], whose responses callers stream on; made on the
    /// first pull, since only the proxy pulls this way.
    streaming: std::sync::OnceLock<StreamingClient>,
    sessions: tokio::sync::Mutex<HashMap<(String, String), Arc<Session>>>,
    pub(crate) blobs: BlobRecord,
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
            streaming: std::sync::OnceLock::new(),
            sessions: tokio::sync::Mutex::new(HashMap::new()),
            blobs: BlobRecord::in_memory(),
        })
    }

    /// The transport for [`Registry::pull`], made on first use.
    pub(crate) fn streaming(&self) -> Result<&StreamingClient, RegistryError> {
        if let Some(client) = self.streaming.get() {
            return Ok(client);
        }
        let client = StreamingClient::new(USER_AGENT, CONNECT_TIMEOUT, READ_TIMEOUT)
            .map_err(|source| RegistryError::StreamingClient { source })?;
        // Two first pulls at once may both make one; either serves.
        Ok(self.streaming.get_or_init(|| client))
    }

    /// Keeps the record of which repositories hold which blobs in `file` (loaded now, saved
    /// after each push), so that later pushes mount them.
    pub fn with_blob_record(mut self, file: &Path) -> Self {
        self.blobs = BlobRecord::load(file);
        self
    }

    /// Runs `operation`, retrying transient failures with exponential backoff.
    pub(crate) async fn retrying<T, F, Fut>(&self, operation: F) -> Result<T, RegistryError>
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
                tracing::warn!(error = %Chain(error), ?delay, "transient registry failure, retrying");
            })
            .await
    }

    /// The session for `reference`'s registry and repository, created on first use.
    pub(crate) async fn session(
        &self,
        reference: &Reference,
    ) -> Result<Arc<Session>, RegistryError> {
        let key = (
            reference.registry().to_owned(),
            reference.repository().to_owned(),
        );
        let mut sessions = self.sessions.lock().await;
        if let Some(session) = sessions.get(&key) {
            return Ok(Arc::clone(session));
        }
        let session = Arc::new(self.open_session(reference).await?);
        if sessions.len() >= MAX_SESSIONS {
            // Sessions are cheap to open again; a client asked for many repositories (a proxy
            // serving arbitrary names) must not grow without bound.
            sessions.clear();
        }
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::auth::CredentialSource;
    use crate::digest::sha256_digest;
    use crate::manifests::MAX_MANIFEST_BYTES;
    use crate::manifests::OCI_MANIFEST_MEDIA_TYPE;
    use crate::reference::parse_reference;

    fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
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
