//! Registry credentials from a docker `config.json`, found and interpreted the way the docker CLI
//! does: `auths` entries (`auth`, `username`/`password`, `identitytoken`), per-registry
//! `credHelpers` and the default `credsStore`, run as `docker-credential-<name> get`.
//!
//! It only answers "which credentials does this registry get, and where did they come from"; it
//! never talks to a registry, never writes the config file (no `login`/`logout`) and never
//! stores secrets anywhere.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;

/// The key docker uses for Docker Hub in `auths`, `credHelpers` and helper requests.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";
/// The registry name of Docker Hub in image references.
pub const DOCKER_HUB_REGISTRY: &str = "docker.io";
/// The file name of the docker client configuration.
pub const CONFIG_FILE_NAME: &str = "config.json";
/// The directory under `$HOME` that holds [`CONFIG_FILE_NAME`].
pub const DEFAULT_CONFIG_DIR: &str = ".docker";
/// Environment variable naming the docker configuration directory.
pub const DOCKER_CONFIG_ENV: &str = "DOCKER_CONFIG";
/// Prefix of credential helper executables.
pub const HELPER_PREFIX: &str = "docker-credential-";
/// The helper user name that marks the secret as an identity token.
pub const IDENTITY_TOKEN_USERNAME: &str = "<token>";
/// What a credential helper prints when it has nothing for the server.
pub const HELPER_NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";
/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Host names that all mean Docker Hub.
const DOCKER_HUB_ALIASES: [&str; 4] = [
    DOCKER_HUB_REGISTRY,
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];
const HELPER_GET: &str = "get";
const HOME_ENV: &str = "HOME";
const PATH_ENV: &str = "PATH";
/// `ETXTBSY`: the helper is still open for writing somewhere (a freshly written script).
const TEXT_FILE_BUSY: i32 = 26;
const SPAWN_ATTEMPTS: u32 = 5;
const SPAWN_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(20);
/// Longest registry or helper message kept in an error, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 512;

/// Base64 as docker writes it, accepting input with or without padding.
const AUTH_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Failures reading the docker config or running a credential helper.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The config file could not be read.
    #[error("reading docker config {path}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The config file is larger than [`MAX_CONFIG_BYTES`].
    #[error("docker config {path} is larger than {limit} bytes")]
    TooLarge {
        /// The config file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The config file is not valid JSON of the expected shape.
    #[error("parsing docker config {path}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// Underlying failure.
        #[source]
        source: serde_json::Error,
    },
    /// An `auths` entry's `auth` field is not base64 of `user:password`.
    #[error("auths entry {key:?} in {path} (for registry {registry}) is invalid: {reason}")]
    InvalidAuth {
        /// The config file.
        path: PathBuf,
        /// The `auths` key.
        key: String,
        /// The registry being looked up.
        registry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `credHelpers`/`credsStore` name could form a path instead of a helper name.
    #[error("credential helper name {helper:?} in {path} (for registry {registry}) is invalid")]
    InvalidHelperName {
        /// The config file.
        path: PathBuf,
        /// The configured name.
        helper: String,
        /// The registry being looked up.
        registry: String,
    },
    /// The helper executable is not on the search path.
    #[error(
        "credential helper {program} (configured in {path} for registry {registry}) was not found on PATH"
    )]
    HelperNotFound {
        /// The config file.
        path: PathBuf,
        /// The executable name, `docker-credential-<name>`.
        program: String,
        /// The registry being looked up.
        registry: String,
    },
    /// The helper could not be run.
    #[error("running credential helper {program} (configured in {path}) for registry {registry}")]
    HelperSpawn {
        /// The config file that named the helper.
        path: PathBuf,
        /// The executable.
        program: PathBuf,
        /// The registry being looked up.
        registry: String,
        /// Underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The helper exited unsuccessfully for another reason than "not found".
    #[error(
        "credential helper {program} (configured in {path}) failed for registry {registry} ({status}): {message}"
    )]
    HelperFailed {
        /// The config file that named the helper.
        path: PathBuf,
        /// The executable.
        program: PathBuf,
        /// The registry being looked up.
        registry: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed, shortened.
        message: String,
    },
    /// The helper printed something that is not its JSON answer.
    #[error(
        "credential helper {program} (configured in {path}) returned invalid output for registry {registry}"
    )]
    HelperOutput {
        /// The config file that named the helper.
        path: PathBuf,
        /// The executable.
        program: PathBuf,
        /// The registry being looked up.
        registry: String,
        /// Underlying failure.
        #[source]
        source: serde_json::Error,
    },
}

/// The secret material a registry gets.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials: requests go out anonymously.
    Anonymous,
    /// A user name and password (or personal access token).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token, exchanged at the registry's token server.
    IdentityToken {
        /// The user name stored next to the token, if any.
        username: Option<String>,
        /// The refresh token.
        token: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::IdentityToken { username, .. } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// Where the credentials came from, for error messages that tell the user what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// No docker config file exists at the default location.
    NoConfig {
        /// The path that was looked at, when a home directory is known.
        looked_at: Option<PathBuf>,
    },
    /// The config exists but has no entry for the registry.
    NoEntry {
        /// The config file.
        path: PathBuf,
    },
    /// An `auths` entry of the config file.
    ConfigFile {
        /// The config file.
        path: PathBuf,
        /// The `auths` key that matched.
        key: String,
    },
    /// A credential helper.
    Helper {
        /// The config file that named the helper.
        path: PathBuf,
        /// The executable name, `docker-credential-<name>`.
        program: String,
        /// The server URL the helper was asked about.
        server: String,
        /// Whether the helper had credentials (`false`: it answered "not found").
        found: bool,
    },
}

impl CredentialSource {
    /// Whether no credentials were found, so requests went out anonymously.
    pub fn is_anonymous(&self) -> bool {
        matches!(
            self,
            Self::NoConfig { .. } | Self::NoEntry { .. } | Self::Helper { found: false, .. }
        )
    }
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoConfig {
                looked_at: Some(path),
            } => write!(f, "anonymous (no docker config at {})", path.display()),
            Self::NoConfig { looked_at: None } => {
                write!(f, "anonymous (no docker config)")
            }
            Self::NoEntry { path } => {
                write!(
                    f,
                    "anonymous (no entry for this registry in {})",
                    path.display()
                )
            }
            Self::ConfigFile { path, key } => {
                write!(f, "auths entry {key:?} in {}", path.display())
            }
            Self::Helper {
                program,
                server,
                found: true,
                ..
            } => write!(f, "credential helper {program} for {server}"),
            Self::Helper {
                program,
                server,
                found: false,
                ..
            } => write!(
                f,
                "anonymous (credential helper {program} has nothing for {server})"
            ),
        }
    }
}

/// The credentials for one registry and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCredentials {
    /// The secret material.
    pub credentials: Credentials,
    /// Where it came from.
    pub source: CredentialSource,
}

/// Where the docker config is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLocation {
    /// Given explicitly (`--registry-config`): it must exist.
    Explicit(PathBuf),
    /// The default location (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`): it may be
    /// missing, which means anonymous access everywhere.
    Default(PathBuf),
    /// Neither `$DOCKER_CONFIG` nor `$HOME` is set.
    Unknown,
}

impl ConfigLocation {
    /// Picks the config file: the explicit path, else `<docker_config_dir>/config.json`, else
    /// `<home>/.docker/config.json`. Empty values count as unset.
    pub fn resolve(
        explicit: Option<&Path>,
        docker_config_dir: Option<&OsStr>,
        home: Option<&OsStr>,
    ) -> Self {
        if let Some(path) = explicit {
            return Self::Explicit(path.to_owned());
        }
        if let Some(dir) = docker_config_dir.filter(|dir| !dir.is_empty()) {
            return Self::Default(Path::new(dir).join(CONFIG_FILE_NAME));
        }
        if let Some(home) = home.filter(|home| !home.is_empty()) {
            return Self::Default(
                Path::new(home)
                    .join(DEFAULT_CONFIG_DIR)
                    .join(CONFIG_FILE_NAME),
            );
        }
        Self::Unknown
    }

    /// Like [`ConfigLocation::resolve`] with `$DOCKER_CONFIG` and `$HOME` from the environment.
    pub fn from_env(explicit: Option<&Path>) -> Self {
        Self::resolve(
            explicit,
            std::env::var_os(DOCKER_CONFIG_ENV).as_deref(),
            std::env::var_os(HOME_ENV).as_deref(),
        )
    }
}

/// A parsed docker client configuration, ready to answer credential lookups.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    path: Option<PathBuf>,
    looked_at: Option<PathBuf>,
    file: ConfigFile,
    helper_search_path: Option<OsString>,
}

impl DockerConfig {
    /// Loads the config from the explicit path, `$DOCKER_CONFIG` or `$HOME` (see
    /// [`ConfigLocation`]).
    pub fn load(explicit: Option<&Path>) -> Result<Self, AuthError> {
        Self::load_from(&ConfigLocation::from_env(explicit))
    }

    /// Loads the config from a resolved location; a missing default file is an empty config.
    pub fn load_from(location: &ConfigLocation) -> Result<Self, AuthError> {
        match location {
            ConfigLocation::Explicit(path) => Self::from_file(path),
            ConfigLocation::Default(path) => match std::fs::metadata(path) {
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                    looked_at: Some(path.clone()),
                    ..Self::default()
                }),
                _ => Self::from_file(path),
            },
            ConfigLocation::Unknown => Ok(Self::default()),
        }
    }

    /// Reads and parses one config file.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let read_error = |source| AuthError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(AuthError::TooLarge {
                path: path.to_owned(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        Self::parse(path, &bytes)
    }

    /// Parses config bytes; `path` is what errors and credential sources name.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, AuthError> {
        let file = serde_json::from_slice(bytes).map_err(|source| AuthError::Parse {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: Some(path.to_owned()),
            looked_at: None,
            file,
            helper_search_path: None,
        })
    }

    /// An empty config: anonymous everywhere.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Looks for credential helpers in these directories (a `PATH`-style list) instead of
    /// `$PATH`.
    pub fn with_helper_search_path(mut self, search_path: impl Into<OsString>) -> Self {
        self.helper_search_path = Some(search_path.into());
        self
    }

    /// The config file this was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The credentials for `registry` as it appears in image references (`docker.io`,
    /// `ghcr.io`, `127.0.0.1:5000`): a `credHelpers` entry, else `credsStore`, else an `auths`
    /// entry, else anonymous.
    pub fn resolve(&self, registry: &str) -> Result<ResolvedCredentials, AuthError> {
        let Some(path) = self.path.as_deref() else {
            return Ok(ResolvedCredentials {
                credentials: Credentials::Anonymous,
                source: CredentialSource::NoConfig {
                    looked_at: self.looked_at.clone(),
                },
            });
        };
        let server = server_address(registry);
        if let Some(helper) = self.helper_for(registry, &server) {
            return self.run_helper(path, helper, registry, &server);
        }
        match find_entry(&self.file.auths, &server) {
            Some((key, entry)) => Ok(ResolvedCredentials {
                credentials: entry.credentials(path, key, registry)?,
                source: CredentialSource::ConfigFile {
                    path: path.to_owned(),
                    key: key.to_owned(),
                },
            }),
            None => Ok(ResolvedCredentials {
                credentials: Credentials::Anonymous,
                source: CredentialSource::NoEntry {
                    path: path.to_owned(),
                },
            }),
        }
    }

    fn helper_for(&self, registry: &str, server: &str) -> Option<&str> {
        let specific = self.file.cred_helpers.get(server).or_else(|| {
            let host = hostname_of(registry);
            self.file
                .cred_helpers
                .iter()
                .find(|(key, _)| hostname_of(key) == host)
                .map(|(_, helper)| helper)
        });
        specific
            .or(self.file.creds_store.as_ref())
            .map(String::as_str)
            .filter(|helper| !helper.is_empty())
    }

    fn run_helper(
        &self,
        path: &Path,
        helper: &str,
        registry: &str,
        server: &str,
    ) -> Result<ResolvedCredentials, AuthError> {
        if !is_valid_helper_name(helper) {
            return Err(AuthError::InvalidHelperName {
                path: path.to_owned(),
                helper: helper.to_owned(),
                registry: registry.to_owned(),
            });
        }
        let program = format!("{HELPER_PREFIX}{helper}");
        let search_path = self
            .helper_search_path
            .clone()
            .or_else(|| std::env::var_os(PATH_ENV))
            .unwrap_or_default();
        let executable =
            find_executable(&program, &search_path).ok_or_else(|| AuthError::HelperNotFound {
                path: path.to_owned(),
                program: program.clone(),
                registry: registry.to_owned(),
            })?;
        let answer = query_helper(path, &executable, registry, server)?;
        let source = |found| CredentialSource::Helper {
            path: path.to_owned(),
            program: program.clone(),
            server: server.to_owned(),
            found,
        };
        let credentials = match answer {
            None => {
                return Ok(ResolvedCredentials {
                    credentials: Credentials::Anonymous,
                    source: source(false),
                });
            }
            Some(answer) if answer.secret.is_empty() => Credentials::Anonymous,
            Some(answer) if answer.username == IDENTITY_TOKEN_USERNAME => {
                Credentials::IdentityToken {
                    username: None,
                    token: answer.secret,
                }
            }
            Some(answer) => Credentials::Basic {
                username: answer.username,
                password: answer.secret,
            },
        };
        let found = credentials != Credentials::Anonymous;
        Ok(ResolvedCredentials {
            credentials,
            source: source(found),
        })
    }
}

/// The key docker looks a registry up by: [`DOCKER_HUB_AUTH_KEY`] for Docker Hub, else the
/// registry host (with its port) as written.
pub fn server_address(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_AUTH_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

/// The host (with port) an `auths`/`credHelpers` key or registry name stands for: the scheme
/// and any path are dropped, case is folded, and every Docker Hub alias becomes `docker.io`.
pub fn hostname_of(key: &str) -> String {
    let trimmed = key.trim();
    let without_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if is_docker_hub(&host) {
        DOCKER_HUB_REGISTRY.to_owned()
    } else {
        host
    }
}

fn is_docker_hub(registry: &str) -> bool {
    registry == DOCKER_HUB_AUTH_KEY
        || DOCKER_HUB_ALIASES
            .iter()
            .any(|alias| registry.eq_ignore_ascii_case(alias))
}

/// The `auths` entry for `server`: an exact key first, then the first key (in sorted order)
/// naming the same host.
fn find_entry<'a>(
    auths: &'a BTreeMap<String, AuthEntry>,
    server: &str,
) -> Option<(&'a str, &'a AuthEntry)> {
    if let Some((key, entry)) = auths.get_key_value(server) {
        return Some((key.as_str(), entry));
    }
    let host = hostname_of(server);
    auths
        .iter()
        .find(|(key, _)| hostname_of(key) == host)
        .map(|(key, entry)| (key.as_str(), entry))
}

fn is_valid_helper_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

fn find_executable(program: &str, search_path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// What a helper's `get` prints.
#[derive(Debug, Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `<helper> get` with the server URL on stdin; `None` when it has no credentials.
fn query_helper(
    config: &Path,
    executable: &Path,
    registry: &str,
    server: &str,
) -> Result<Option<HelperAnswer>, AuthError> {
    let spawn_error = |source| AuthError::HelperSpawn {
        path: config.to_owned(),
        program: executable.to_owned(),
        registry: registry.to_owned(),
        source,
    };
    let mut child = spawn_helper(executable).map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is judged by its output below.
        let _ = stdin.write_all(server.as_bytes());
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stdout = stdout.trim();
        if stdout == HELPER_NOT_FOUND_MESSAGE {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = if stdout.is_empty() {
            stderr.trim()
        } else {
            stdout
        };
        return Err(AuthError::HelperFailed {
            path: config.to_owned(),
            program: executable.to_owned(),
            registry: registry.to_owned(),
            status: output.status,
            message: shorten(message),
        });
    }
    serde_json::from_slice(&output.stdout)
        .map(Some)
        .map_err(|source| AuthError::HelperOutput {
            path: config.to_owned(),
            program: executable.to_owned(),
            registry: registry.to_owned(),
            source,
        })
}

fn spawn_helper(executable: &Path) -> std::io::Result<std::process::Child> {
    let mut attempt = 1;
    loop {
        let result = Command::new(executable)
            .arg(HELPER_GET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match result {
            Err(error)
                if error.raw_os_error() == Some(TEXT_FILE_BUSY) && attempt < SPAWN_ATTEMPTS =>
            {
                attempt += 1;
                std::thread::sleep(SPAWN_RETRY_DELAY);
            }
            other => return other,
        }
    }
}

/// `message` cut to [`MAX_MESSAGE_CHARS`] characters, with `…` marking a cut.
pub(crate) fn shorten(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        message.to_owned()
    } else {
        let mut short: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
        short.push('…');
        short
    }
}

/// The parts of `config.json` that concern registry credentials; everything else is ignored.
#[derive(Debug, Clone, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
}

/// One `auths` entry.
#[derive(Clone, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(rename = "identitytoken", default)]
    identity_token: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthEntry")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl AuthEntry {
    /// The entry's credentials: an identity token wins, then `auth`, then
    /// `username`/`password`; an empty entry is anonymous.
    fn credentials(
        &self,
        path: &Path,
        key: &str,
        registry: &str,
    ) -> Result<Credentials, AuthError> {
        let invalid = |reason| AuthError::InvalidAuth {
            path: path.to_owned(),
            key: key.to_owned(),
            registry: registry.to_owned(),
            reason,
        };
        let non_empty = |value: &Option<String>| value.clone().filter(|value| !value.is_empty());
        let (mut username, mut password) = (non_empty(&self.username), non_empty(&self.password));
        if let Some(auth) = non_empty(&self.auth) {
            let decoded = AUTH_BASE64
                .decode(auth.trim())
                .map_err(|_| invalid("auth is not base64"))?;
            let text =
                String::from_utf8(decoded).map_err(|_| invalid("auth is not valid UTF-8"))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| invalid("auth does not have the form user:password"))?;
            username = Some(user.to_owned());
            password = Some(pass.trim_end_matches('\0').to_owned());
        }
        if let Some(token) = non_empty(&self.identity_token) {
            return Ok(Credentials::IdentityToken { username, token });
        }
        match (username, password) {
            (Some(username), Some(password)) => Ok(Credentials::Basic { username, password }),
            (None, None) => Ok(Credentials::Anonymous),
            (Some(_), None) => Err(invalid("username is set without a password")),
            (None, Some(_)) => Err(invalid("password is set without a username")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn basic(username: &str, password: &str) -> Credentials {
        Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    fn encode(user_pass: &str) -> String {
        STANDARD.encode(user_pass)
    }

    /// What a lookup should produce: credentials and the matched key, or an error substring.
    enum Expect {
        Found(Credentials, &'static str),
        Anonymous,
        Error(&'static str),
    }

    fn check(config: &serde_json::Value, registry: &str, expect: Expect) {
        let path = Path::new("/etc/securebuild/config.json");
        let bytes = serde_json::to_vec(config).unwrap();
        let docker = DockerConfig::parse(path, &bytes).unwrap();
        let result = docker.resolve(registry);
        match expect {
            Expect::Found(credentials, key) => {
                let resolved = result.unwrap();
                assert_eq!(resolved.credentials, credentials, "registry {registry}");
                assert_eq!(
                    resolved.source,
                    CredentialSource::ConfigFile {
                        path: path.to_owned(),
                        key: key.to_owned()
                    },
                    "registry {registry}"
                );
            }
            Expect::Anonymous => {
                let resolved = result.unwrap();
                assert_eq!(resolved.credentials, Credentials::Anonymous);
                assert_eq!(
                    resolved.source,
                    CredentialSource::NoEntry {
                        path: path.to_owned()
                    }
                );
            }
            Expect::Error(needle) => {
                let message = result.unwrap_err().to_string();
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
                assert!(message.contains(registry), "{message:?} lacks {registry}");
                assert!(
                    message.contains("/etc/securebuild/config.json"),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn auths_entries_resolve_like_docker() {
        let hub = serde_json::json!({
            "auths": { DOCKER_HUB_AUTH_KEY: { "auth": encode("hubuser:hubpass") } }
        });
        check(
            &hub,
            "docker.io",
            Expect::Found(basic("hubuser", "hubpass"), DOCKER_HUB_AUTH_KEY),
        );
        check(
            &hub,
            "index.docker.io",
            Expect::Found(basic("hubuser", "hubpass"), DOCKER_HUB_AUTH_KEY),
        );
        check(&hub, "ghcr.io", Expect::Anonymous);

        let hub_without_scheme = serde_json::json!({
            "auths": { "index.docker.io": { "auth": encode("u:p") } }
        });
        check(
            &hub_without_scheme,
            "docker.io",
            Expect::Found(basic("u", "p"), "index.docker.io"),
        );
        let hub_bare = serde_json::json!({ "auths": { "docker.io": { "auth": encode("u:p") } } });
        check(
            &hub_bare,
            "docker.io",
            Expect::Found(basic("u", "p"), "docker.io"),
        );

        let ports = serde_json::json!({
            "auths": {
                "127.0.0.1:5000": { "auth": encode("five:thousand") },
                "https://127.0.0.1:6000/v2/": { "username": "six", "password": "k" },
                "http://Registry.Example.com": { "auth": encode("ex:pw:with:colons") },
            }
        });
        check(
            &ports,
            "127.0.0.1:5000",
            Expect::Found(basic("five", "thousand"), "127.0.0.1:5000"),
        );
        check(
            &ports,
            "127.0.0.1:6000",
            Expect::Found(basic("six", "k"), "https://127.0.0.1:6000/v2/"),
        );
        check(&ports, "127.0.0.1:7000", Expect::Anonymous);
        check(&ports, "127.0.0.1", Expect::Anonymous);
        check(
            &ports,
            "registry.example.com",
            Expect::Found(basic("ex", "pw:with:colons"), "http://Registry.Example.com"),
        );

        let tokens = serde_json::json!({
            "auths": {
                "acr.example.io": { "auth": encode("00000000-0000-0000-0000-000000000000:"), "identitytoken": "refresh" },
                "bare.example.io": { "identitytoken": "t2" },
                "empty.example.io": {},
                "unpadded.example.io": { "auth": "dTpw" },
            }
        });
        check(
            &tokens,
            "acr.example.io",
            Expect::Found(
                Credentials::IdentityToken {
                    username: Some("00000000-0000-0000-0000-000000000000".to_owned()),
                    token: "refresh".to_owned(),
                },
                "acr.example.io",
            ),
        );
        check(
            &tokens,
            "bare.example.io",
            Expect::Found(
                Credentials::IdentityToken {
                    username: None,
                    token: "t2".to_owned(),
                },
                "bare.example.io",
            ),
        );
        check(
            &tokens,
            "empty.example.io",
            Expect::Found(Credentials::Anonymous, "empty.example.io"),
        );
        check(
            &tokens,
            "unpadded.example.io",
            Expect::Found(basic("u", "p"), "unpadded.example.io"),
        );

        let broken = serde_json::json!({
            "auths": {
                "nobase64.example.io": { "auth": "%%%" },
                "nocolon.example.io": { "auth": encode("justuser") },
                "halfuser.example.io": { "username": "only" },
            }
        });
        check(
            &broken,
            "nobase64.example.io",
            Expect::Error("auth is not base64"),
        );
        check(
            &broken,
            "nocolon.example.io",
            Expect::Error("user:password"),
        );
        check(
            &broken,
            "halfuser.example.io",
            Expect::Error("without a password"),
        );
    }

    #[test]
    fn config_location_follows_docker_precedence() {
        let explicit = Path::new("/explicit/config.json");
        type Case<'a> = (
            Option<&'a Path>,
            Option<&'a str>,
            Option<&'a str>,
            ConfigLocation,
        );
        let cases: [Case; 5] = [
            (
                Some(explicit),
                Some("/dc"),
                Some("/home/u"),
                ConfigLocation::Explicit(explicit.to_owned()),
            ),
            (
                None,
                Some("/dc"),
                Some("/home/u"),
                ConfigLocation::Default(PathBuf::from("/dc/config.json")),
            ),
            (
                None,
                Some(""),
                Some("/home/u"),
                ConfigLocation::Default(PathBuf::from("/home/u/.docker/config.json")),
            ),
            (
                None,
                None,
                Some("/home/u"),
                ConfigLocation::Default(PathBuf::from("/home/u/.docker/config.json")),
            ),
            (None, None, None, ConfigLocation::Unknown),
        ];
        for (explicit, docker_config, home, expected) in cases {
            let found = ConfigLocation::resolve(
                explicit,
                docker_config.map(OsStr::new),
                home.map(OsStr::new),
            );
            assert_eq!(found, expected);
        }
    }

    #[test]
    fn missing_files_default_to_anonymous_but_explicit_ones_fail() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent").join(CONFIG_FILE_NAME);

        let config = DockerConfig::load_from(&ConfigLocation::Default(missing.clone())).unwrap();
        let resolved = config.resolve("ghcr.io").unwrap();
        assert_eq!(resolved.credentials, Credentials::Anonymous);
        assert_eq!(
            resolved.source,
            CredentialSource::NoConfig {
                looked_at: Some(missing.clone())
            }
        );
        assert!(resolved.source.to_string().contains("absent/config.json"));

        let error =
            DockerConfig::load_from(&ConfigLocation::Explicit(missing.clone())).unwrap_err();
        assert!(matches!(error, AuthError::Read { ref path, .. } if *path == missing));

        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, b"{\"auths\": [").unwrap();
        let error = DockerConfig::from_file(&garbage).unwrap_err();
        assert!(error.to_string().contains("garbage.json"), "{error}");

        let present = dir.path().join(CONFIG_FILE_NAME);
        let body = serde_json::json!({ "auths": { "ghcr.io": { "auth": encode("a:b") } }, "psFormat": "x" });
        std::fs::write(&present, serde_json::to_vec(&body).unwrap()).unwrap();
        let config = DockerConfig::load_from(&ConfigLocation::Default(present.clone())).unwrap();
        assert_eq!(config.path(), Some(present.as_path()));
        assert_eq!(
            config.resolve("ghcr.io").unwrap().credentials,
            basic("a", "b")
        );
    }

    /// A fake `docker-credential-<name>` that knows one server, logs what it was asked, and
    /// answers like the real helpers.
    fn write_helper(dir: &Path, name: &str, script_body: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(format!("{HELPER_PREFIX}{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{script_body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    const FAKE_HELPER: &str = r#"
[ "$1" = get ] || { echo "unexpected action $1" >&2; exit 2; }
server=$(cat)
echo "$server" >> "$(dirname "$0")/asked.log"
case "$server" in
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hub","Secret":"hubsecret"}' ;;
  127.0.0.1:5000) echo '{"ServerURL":"127.0.0.1:5000","Username":"<token>","Secret":"refresh-token"}' ;;
  broken.example.io) echo 'not json' ;;
  failing.example.io) echo 'keychain is locked' >&2; exit 1 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#;

    #[test]
    fn credential_helpers_are_run_with_the_server_on_stdin() {
        let bin = tempfile::tempdir().unwrap();
        write_helper(bin.path(), "fake", FAKE_HELPER);
        let config = serde_json::json!({
            "auths": { "ghcr.io": { "auth": encode("file:user") } },
            "credHelpers": { "127.0.0.1:5000": "fake", "https://quay.io": "fake", "gone.example.io": "missing", "evil.example.io": "../../bin/sh" },
            "credsStore": "fake",
        });
        let path = Path::new("/cfg/config.json");
        let docker = DockerConfig::parse(path, &serde_json::to_vec(&config).unwrap())
            .unwrap()
            .with_helper_search_path(bin.path().as_os_str());

        let hub = docker.resolve("docker.io").unwrap();
        assert_eq!(hub.credentials, basic("hub", "hubsecret"));
        assert_eq!(
            hub.source,
            CredentialSource::Helper {
                path: path.to_owned(),
                program: "docker-credential-fake".to_owned(),
                server: DOCKER_HUB_AUTH_KEY.to_owned(),
                found: true,
            }
        );

        let local = docker.resolve("127.0.0.1:5000").unwrap();
        assert_eq!(
            local.credentials,
            Credentials::IdentityToken {
                username: None,
                token: "refresh-token".to_owned()
            }
        );

        // credsStore takes precedence over auths, as in docker; "not found" means anonymous.
        let ghcr = docker.resolve("ghcr.io").unwrap();
        assert_eq!(ghcr.credentials, Credentials::Anonymous);
        assert!(matches!(
            ghcr.source,
            CredentialSource::Helper { found: false, .. }
        ));
        assert!(ghcr.source.to_string().contains("has nothing for ghcr.io"));

        let quay = docker.resolve("quay.io").unwrap();
        assert!(
            matches!(quay.source, CredentialSource::Helper { found: false, ref server, .. } if server == "quay.io")
        );

        let asked = std::fs::read_to_string(bin.path().join("asked.log")).unwrap();
        assert_eq!(
            asked,
            "https://index.docker.io/v1/\n127.0.0.1:5000\nghcr.io\nquay.io\n"
        );

        let failing = docker.resolve("failing.example.io").unwrap_err();
        assert!(matches!(failing, AuthError::HelperFailed { .. }));
        let message = failing.to_string();
        assert!(
            message.contains("failing.example.io")
                && message.contains("keychain is locked")
                && message.contains("/cfg/config.json"),
            "{message}"
        );

        let broken = docker.resolve("broken.example.io").unwrap_err();
        assert!(
            matches!(broken, AuthError::HelperOutput { ref registry, .. } if registry == "broken.example.io")
        );

        let gone = docker.resolve("gone.example.io").unwrap_err();
        let message = gone.to_string();
        assert!(
            message.contains("docker-credential-missing")
                && message.contains("gone.example.io")
                && message.contains("/cfg/config.json"),
            "{message}"
        );

        let evil = docker.resolve("evil.example.io").unwrap_err();
        assert!(
            matches!(evil, AuthError::InvalidHelperName { .. }),
            "{evil}"
        );
    }

    #[test]
    fn no_config_is_anonymous_everywhere() {
        let resolved = DockerConfig::empty().resolve("docker.io").unwrap();
        assert_eq!(resolved.credentials, Credentials::Anonymous);
        assert_eq!(
            resolved.source,
            CredentialSource::NoConfig { looked_at: None }
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let text = format!(
            "{:?} {:?}",
            basic("visible-user", "hidden-password"),
            Credentials::IdentityToken {
                username: None,
                token: "hidden-token".to_owned()
            }
        );
        assert!(text.contains("visible-user"));
        assert!(
            !text.contains("hidden-password") && !text.contains("hidden-token"),
            "{text}"
        );
    }

    #[test]
    fn hostnames_normalize_keys() {
        let cases = [
            ("https://index.docker.io/v1/", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("http://LocalHost:5000/path", "localhost:5000"),
            ("  ghcr.io  ", "ghcr.io"),
            ("[::1]:5000", "[::1]:5000"),
        ];
        for (key, host) in cases {
            assert_eq!(hostname_of(key), host, "{key}");
        }
        assert_eq!(server_address("docker.io"), DOCKER_HUB_AUTH_KEY);
        assert_eq!(server_address("ghcr.io"), "ghcr.io");
    }
}
