//! Runs a real OCI registry for tests: Debian's `docker-registry` (CNCF distribution v2) on a
//! free 127.0.0.1 port with filesystem storage in a temporary directory, optionally behind
//! htpasswd basic auth or distribution's token auth (with a [`TokenServer`]).
//!
//! It starts the binary, waits until `GET /v2/` answers, and kills it on drop. It does not
//! speak the registry protocol itself beyond that readiness probe, and never serves TLS.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::token_server::{self, TokenServer};

/// Where Debian installs the registry binary.
pub const DEFAULT_REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
/// Environment variable that overrides [`DEFAULT_REGISTRY_BINARY`].
pub const REGISTRY_BINARY_ENV: &str = "SECUREBUILD_DOCKER_REGISTRY";
/// The htpasswd realm the registry announces.
pub const AUTH_REALM: &str = "securebuild-test";
/// How long [`TestRegistry::start`] waits for the registry to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

const BCRYPT_COST: u32 = 4;
const START_ATTEMPTS: usize = 3;
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const CONFIG_FILE: &str = "config.yml";
const HTPASSWD_FILE: &str = "htpasswd";
const LOG_FILE: &str = "registry.log";
const STORAGE_DIR: &str = "storage";
const DOCKER_CONFIG_FILE: &str = "config.json";
const ENV_PREFIX: &str = "REGISTRY_";

/// Failures starting or describing the test registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry binary does not exist.
    #[error(
        "registry binary {path} not found (install docker-registry or set {REGISTRY_BINARY_ENV})"
    )]
    MissingBinary {
        /// Path that was looked up.
        path: PathBuf,
    },
    /// Creating the temporary directory or its files failed.
    #[error("preparing registry file {path}")]
    Prepare {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// Finding a free loopback port failed.
    #[error("finding a free port on 127.0.0.1")]
    FreePort {
        /// Underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// Hashing the password for htpasswd failed.
    #[error("hashing the password of user {user}")]
    Hash {
        /// The user.
        user: String,
        /// Underlying failure.
        #[source]
        source: bcrypt::BcryptError,
    },
    /// The process could not be spawned.
    #[error("spawning {binary}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The registry exited before answering.
    #[error("registry on port {port} exited with {status} before answering; log:\n{log}")]
    Exited {
        /// The port it was given.
        port: u16,
        /// Its exit status.
        status: ExitStatus,
        /// Its log output.
        log: String,
    },
    /// The registry did not answer `GET /v2/` in time.
    #[error("registry on port {port} did not answer within {timeout:?}; log:\n{log}")]
    Timeout {
        /// The port it was given.
        port: u16,
        /// How long it was given.
        timeout: Duration,
        /// Its log output.
        log: String,
    },
    /// Encoding the docker config failed.
    #[error("encoding docker config for {host}")]
    Encode {
        /// Registry host.
        host: String,
        /// Underlying failure.
        #[source]
        source: serde_json::Error,
    },
}

/// How the registry authenticates clients.
enum Auth {
    /// htpasswd basic auth with this file.
    Htpasswd(PathBuf),
    /// Bearer tokens from this realm, signed by the key of this certificate.
    Token { realm: String, cert: PathBuf },
}

/// A running `docker-registry` process; killed on drop.
#[derive(Debug)]
pub struct TestRegistry {
    child: Child,
    port: u16,
    credentials: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a registry without authentication.
    pub fn start() -> Result<Self, RegistryError> {
        Self::launch(None, None)
    }

    /// Starts a registry that requires basic auth as `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> Result<Self, RegistryError> {
        Self::launch(Some((user.to_owned(), password.to_owned())), None)
    }

    /// Starts a registry that requires bearer tokens from `tokens` (distribution's `token`
    /// auth: realm, service, issuer and the server's certificate as `rootcertbundle`). The
    /// credentials it reports ([`Self::credentials`], [`Self::docker_config_json`]) are those
    /// of the token server's first user.
    pub fn start_with_token(tokens: &TokenServer) -> Result<Self, RegistryError> {
        let credentials = tokens
            .users()
            .first()
            .map(|user| (user.name.clone(), user.password.clone()));
        let auth = Auth::Token {
            realm: tokens.realm(),
            cert: tokens.cert_path(),
        };
        Self::launch(credentials, Some(auth))
    }

    /// `127.0.0.1:<port>`, the registry host as it appears in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The registry process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port the registry listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user and password when auth is on.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()))
    }

    /// The directory holding the registry's blobs and manifests.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join(STORAGE_DIR)
    }

    /// The registry's log output so far.
    pub fn log(&self) -> String {
        read_log(&self.dir.path().join(LOG_FILE))
    }

    /// Writes `dir/config.json` in docker's format, with an `auths` entry carrying
    /// base64(`user:password`) for this registry when auth is on, and returns its path.
    pub fn docker_config_json(&self, dir: &Path) -> Result<PathBuf, RegistryError> {
        let mut auths = serde_json::Map::new();
        if let Some((user, password)) = &self.credentials {
            let auth = BASE64.encode(format!("{user}:{password}"));
            auths.insert(self.host(), serde_json::json!({ "auth": auth }));
        }
        let config = serde_json::json!({ "auths": auths });
        let text =
            serde_json::to_string_pretty(&config).map_err(|source| RegistryError::Encode {
                host: self.host(),
                source,
            })?;
        let path = dir.join(DOCKER_CONFIG_FILE);
        std::fs::write(&path, text).map_err(|source| RegistryError::Prepare {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    fn launch(
        credentials: Option<(String, String)>,
        token: Option<Auth>,
    ) -> Result<Self, RegistryError> {
        let binary = std::env::var_os(REGISTRY_BINARY_ENV)
            .map_or_else(|| PathBuf::from(DEFAULT_REGISTRY_BINARY), PathBuf::from);
        if !binary.is_file() {
            return Err(RegistryError::MissingBinary { path: binary });
        }
        let dir = tempfile::Builder::new()
            .prefix("securebuild-registry-")
            .tempdir()
            .map_err(|source| RegistryError::Prepare {
                path: std::env::temp_dir(),
                source,
            })?;
        let storage = dir.path().join(STORAGE_DIR);
        std::fs::create_dir_all(&storage).map_err(|source| RegistryError::Prepare {
            path: storage.clone(),
            source,
        })?;
        let auth = match (token, &credentials) {
            (Some(token), _) => Some(token),
            (None, Some((user, password))) => {
                Some(Auth::Htpasswd(write_htpasswd(dir.path(), user, password)?))
            }
            (None, None) => None,
        };

        let log = dir.path().join(LOG_FILE);
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let config = dir.path().join(CONFIG_FILE);
            let text = config_yaml(port, &storage, auth.as_ref());
            std::fs::write(&config, text).map_err(|source| RegistryError::Prepare {
                path: config.clone(),
                source,
            })?;
            let mut child = spawn(&binary, &config, &log)?;
            match wait_until_up(&mut child, port, auth.is_some(), &log) {
                Ok(()) => {
                    return Ok(Self {
                        child,
                        port,
                        credentials,
                        dir,
                    });
                }
                // Another process may have taken the port between probing and binding.
                Err(RegistryError::Exited { .. }) if attempt < START_ATTEMPTS => attempt += 1,
                Err(error) => {
                    stop(&mut child);
                    return Err(error);
                }
            }
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Polls `GET /v2/` until it answers 200 (or 401 when auth is on), the child exits, or
/// [`START_TIMEOUT`] passes.
fn wait_until_up(
    child: &mut Child,
    port: u16,
    auth: bool,
    log: &Path,
) -> Result<(), RegistryError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let ready = |status: u16| status == 200 || (auth && status == 401);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(RegistryError::Exited {
                port,
                status,
                log: read_log(log),
            });
        }
        if probe(port).is_some_and(ready) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(RegistryError::Timeout {
                port,
                timeout: START_TIMEOUT,
                log: read_log(log),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn write_htpasswd(dir: &Path, user: &str, password: &str) -> Result<PathBuf, RegistryError> {
    let hash = bcrypt::hash_with_result(password, BCRYPT_COST)
        .map_err(|source| RegistryError::Hash {
            user: user.to_owned(),
            source,
        })?
        .format_for_version(bcrypt::Version::TwoY);
    let path = dir.join(HTPASSWD_FILE);
    std::fs::write(&path, format!("{user}:{hash}\n")).map_err(|source| RegistryError::Prepare {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn free_port() -> Result<u16, RegistryError> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .map_err(|source| RegistryError::FreePort { source })?;
    let port = listener
        .local_addr()
        .map_err(|source| RegistryError::FreePort { source })?
        .port();
    Ok(port)
}

/// A YAML string literal (JSON strings are valid YAML flow scalars).
fn yaml_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

fn config_yaml(port: u16, storage: &Path, auth: Option<&Auth>) -> String {
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: securebuild-test-secret\n",
        storage = yaml_string(&storage.to_string_lossy()),
    );
    match auth {
        Some(Auth::Htpasswd(htpasswd)) => config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: {realm}\n    path: {path}\n",
            realm = yaml_string(AUTH_REALM),
            path = yaml_string(&htpasswd.to_string_lossy()),
        )),
        Some(Auth::Token { realm, cert }) => config.push_str(&format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    \
             issuer: {issuer}\n    rootcertbundle: {cert}\n",
            realm = yaml_string(realm),
            service = yaml_string(token_server::SERVICE),
            issuer = yaml_string(token_server::ISSUER),
            cert = yaml_string(&cert.to_string_lossy()),
        )),
        None => {}
    }
    config
}

fn spawn(binary: &Path, config: &Path, log: &Path) -> Result<Child, RegistryError> {
    let prepare = |source| RegistryError::Prepare {
        path: log.to_owned(),
        source,
    };
    let stdout = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(prepare)?;
    let stderr = stdout.try_clone().map_err(prepare)?;
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with(ENV_PREFIX) {
            command.env_remove(name);
        }
    }
    command.spawn().map_err(|source| RegistryError::Spawn {
        binary: binary.to_owned(),
        source,
    })
}

/// Sends `GET /v2/` and returns the status code, or `None` when nothing valid answered.
fn probe(port: u16) -> Option<u16> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut stream = TcpStream::connect_timeout(&addr.into(), PROBE_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    let request =
        format!("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let read = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..read]).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Pushes `blob` to `repository` with `client` and a manifest naming it as its config (no
/// layers), stored by digest: the smallest image whose manifest and blob a pull can check.
/// Returns the manifest's digest and the blob's.
pub async fn push_blob_image(
    client: &securebuild_registry::Registry,
    repository: &securebuild_registry::Reference,
    blob: Vec<u8>,
) -> Result<(String, String), securebuild_registry::RegistryError> {
    let size = blob.len();
    let (blob_digest, _) = client.push_blob_bytes(repository, blob).await?;
    let media_type = securebuild_registry::OCI_MANIFEST_MEDIA_TYPE;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{blob_digest}","size":{size}}},"layers":[]}}"#
    );
    let manifest_digest = securebuild_registry::sha256_digest(manifest.as_bytes());
    client
        .push_manifest_bytes(
            repository,
            &manifest_digest,
            manifest.into_bytes(),
            media_type,
        )
        .await?;
    Ok((manifest_digest, blob_digest))
}
