//! The operator's configuration: a YAML file (`--config`) overlaid by `SECUREBUILD_*`
//! environment variables, validated once at startup into a [`Config`].
//!
//! Pure: the caller reads the file and hands over a lookup for the environment, so every rule
//! here is testable without touching the process. Per-ImageBuild settings live in the
//! ImageBuild; this module only holds the operator-wide defaults and limits.
//!
//! The file uses camelCase keys and rejects unknown ones:
//!
//! ```yaml
//! registryPrefix: registry.example.com      # for relative spec.target.repository values
//! pullPrefix: images.example.com            # the read-only proxy's name for registryPrefix
//! defaultRepositories: [https://packages.wolfi.dev/os]
//! defaultKeyring: [https://packages.wolfi.dev/os/wolfi-signing.rsa.pub]
//! builderImage: ghcr.io/securebuild/securebuild:0.1.0
//! builderServiceAccount: securebuild-builder # unset: the namespace's default account
//! namespace: securebuild-system              # the operator's own namespace
//! signingKeySecret: securebuild-signing-key  # in signingKeyNamespace (default: namespace)
//! backend: pod                               # pod | local
//! maxConcurrentBuilds: 4
//! reconcileConcurrency: 8
//! watchNamespaces: []                        # empty: every namespace
//! jobTtlSecondsAfterFinished: 86400          # unset: Jobs stay until history limits remove them
//! workSizeLimit: 10Gi
//! defaultTimeout: 30m
//! insecureRegistries: []                     # plain-HTTP registries besides loopback ones
//! cacheDir: /tmp/securebuild-cache           # indexes, keys, packages (operator process)
//! workDir: /tmp                              # staging of `local` builds
//! deploymentName: securebuild-operator       # part of the provenance builder id
//! defaultResources:
//!   requests: {cpu: 500m, memory: 1Gi}
//!   limits: {memory: 4Gi}
//! ```
//!
//! Each scalar setting (and each list, written comma-separated) can be overridden by an
//! environment variable: `SECUREBUILD_REGISTRY_PREFIX`, `SECUREBUILD_PULL_PREFIX`,
//! `SECUREBUILD_DEFAULT_REPOSITORIES`,
//! `SECUREBUILD_DEFAULT_KEYRING`, `SECUREBUILD_BUILDER_IMAGE`,
//! `SECUREBUILD_BUILDER_SERVICE_ACCOUNT`, `SECUREBUILD_NAMESPACE`,
//! `SECUREBUILD_SIGNING_KEY_SECRET`, `SECUREBUILD_SIGNING_KEY_NAMESPACE`, `SECUREBUILD_BACKEND`,
//! `SECUREBUILD_MAX_CONCURRENT_BUILDS`, `SECUREBUILD_RECONCILE_CONCURRENCY`,
//! `SECUREBUILD_WATCH_NAMESPACES`, `SECUREBUILD_JOB_TTL_SECONDS`, `SECUREBUILD_WORK_SIZE_LIMIT`,
//! `SECUREBUILD_DEFAULT_TIMEOUT`, `SECUREBUILD_INSECURE_REGISTRIES`, `SECUREBUILD_CACHE_DIR`,
//! `SECUREBUILD_WORK_DIR` and `SECUREBUILD_DEPLOYMENT_NAME`. An empty value clears an optional
//! setting or a list.
//! `defaultResources` is file-only.
//!
//! Default repositories and keyring apply only to an ImageBuild whose
//! `spec.image.contents.repositories` is empty; an ImageBuild that names its own repositories
//! gets neither, so that it always builds from exactly what it lists.

use std::collections::BTreeMap;
use std::fmt;
use std::num::ParseIntError;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use securebuild_crds::duration::{DurationError, parse_duration};
use serde::{Deserialize, Serialize};

/// The builder image used when none is configured: the `securebuild` CLI of this release.
pub const DEFAULT_BUILDER_IMAGE: &str = concat!(
    "ghcr.io/securebuild/securebuild:",
    env!("CARGO_PKG_VERSION")
);

/// The operator's namespace when neither the file nor `SECUREBUILD_NAMESPACE` names one.
pub const DEFAULT_NAMESPACE: &str = "securebuild-system";

/// How long a build may run when the ImageBuild does not say.
pub const DEFAULT_TIMEOUT: &str = "30m";

/// The `sizeLimit` of the builder's `/work` emptyDir when none is configured.
pub const DEFAULT_WORK_SIZE_LIMIT: &str = "10Gi";

/// How many builds run at once when not configured.
pub const DEFAULT_MAX_CONCURRENT_BUILDS: u16 = 4;

/// How many ImageBuilds are reconciled at once when not configured.
pub const DEFAULT_RECONCILE_CONCURRENCY: u16 = 8;

/// The operator Deployment's name when not configured (part of the provenance builder id).
pub const DEFAULT_DEPLOYMENT_NAME: &str = "securebuild-operator";

/// The directory under the system temp dir that caches indexes, keys and packages when no
/// `cacheDir` is configured.
pub const DEFAULT_CACHE_DIR_NAME: &str = "securebuild-cache";

/// The prefix of every environment variable the configuration reads.
pub const ENV_PREFIX: &str = "SECUREBUILD_";

/// Where builds run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One Kubernetes Job per build, running the builder image.
    #[default]
    Pod,
    /// In the operator's own process.
    Local,
}

impl Backend {
    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "pod",
            Self::Local => "local",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "pod" => Some(Self::Pod),
            "local" => Some(Self::Local),
            _ => None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Secret in a given namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
    /// The Secret's namespace.
    pub namespace: String,
}

/// The validated operator configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Registry (and optional path) prepended to a relative `spec.target.repository`, e.g.
    /// `registry.example.com/images`.
    pub registry_prefix: Option<String>,
    /// The host and path that front `registry_prefix` for pulls (the read-only proxy), e.g.
    /// `images.example.com`: images under `registry_prefix` are also reported by this name.
    pub pull_prefix: Option<String>,
    /// Repositories for ImageBuilds that list none.
    pub default_repositories: Vec<String>,
    /// Keys added to the keyring of ImageBuilds that list no repositories.
    pub default_keyring: Vec<String>,
    /// The image the builder Pods run.
    pub builder_image: String,
    /// The service account of builder Pods; `None` leaves the namespace's default account.
    pub builder_service_account: Option<String>,
    /// The operator's own namespace (leader lease, signing key).
    pub namespace: String,
    /// The Secret holding the signing key; `None` disables signing.
    pub signing_key: Option<SecretRef>,
    /// Where builds run.
    pub backend: Backend,
    /// How many builds may run at once across all ImageBuilds.
    pub max_concurrent_builds: u16,
    /// How many ImageBuilds are reconciled at once.
    pub reconcile_concurrency: u16,
    /// The namespaces whose ImageBuilds are reconciled; empty means every namespace.
    pub watch_namespaces: Vec<String>,
    /// `ttlSecondsAfterFinished` of builder Jobs; `None` keeps them until the history limits
    /// remove them.
    pub job_ttl_seconds: Option<i32>,
    /// The `sizeLimit` of the builder's `/work` emptyDir.
    pub work_size_limit: Quantity,
    /// Resources of the builder container when the ImageBuild sets none.
    pub default_resources: ResourceRequirements,
    /// How long a build may run when the ImageBuild does not say.
    pub default_timeout: Duration,
    /// Registries spoken to over plain HTTP besides loopback ones (`host:port` or a CIDR
    /// range), by builder Jobs, `local` builds and signing alike.
    pub insecure_registries: Vec<String>,
    /// Where the operator process caches indexes, keys and packages (re-resolution, signing,
    /// `local` builds); `None` means `<temp dir>/securebuild-cache`.
    pub cache_dir: Option<PathBuf>,
    /// Where `local` builds stage their layouts; `None` means the system temp dir.
    pub work_dir: Option<PathBuf>,
    /// The operator Deployment's name, part of the provenance builder id
    /// (`https://securebuild.dev/operator@<namespace>/<deploymentName>`).
    pub deployment_name: String,
}

impl Config {
    /// The cache directory of the operator process: `cacheDir`, else
    /// `<temp dir>/securebuild-cache`.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(DEFAULT_CACHE_DIR_NAME))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            registry_prefix: None,
            pull_prefix: None,
            default_repositories: Vec::new(),
            default_keyring: Vec::new(),
            builder_image: DEFAULT_BUILDER_IMAGE.to_string(),
            builder_service_account: None,
            namespace: DEFAULT_NAMESPACE.to_string(),
            signing_key: None,
            backend: Backend::Pod,
            max_concurrent_builds: DEFAULT_MAX_CONCURRENT_BUILDS,
            reconcile_concurrency: DEFAULT_RECONCILE_CONCURRENCY,
            watch_namespaces: Vec::new(),
            job_ttl_seconds: None,
            work_size_limit: Quantity(DEFAULT_WORK_SIZE_LIMIT.to_string()),
            default_resources: default_resources(),
            default_timeout: Duration::from_secs(30 * 60),
            insecure_registries: Vec::new(),
            cache_dir: None,
            work_dir: None,
            deployment_name: DEFAULT_DEPLOYMENT_NAME.to_string(),
        }
    }
}

/// Requests 500m CPU and 1Gi memory, limits memory to 4Gi: enough to build a typical image.
fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("500m".to_string())),
            ("memory".to_string(), Quantity("1Gi".to_string())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("4Gi".to_string()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// Errors in the operator configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid YAML, has an unknown key or a value of the wrong type.
    #[error("invalid configuration file")]
    Yaml {
        /// The parser's error, with its location.
        #[source]
        source: serde_norway::Error,
    },
    /// An environment variable that should hold a number does not.
    #[error("environment variable {variable}=`{value}` is not a valid number")]
    EnvNumber {
        /// The variable.
        variable: String,
        /// Its value.
        value: String,
        /// Why it does not parse.
        #[source]
        source: ParseIntError,
    },
    /// An unknown backend.
    #[error("unknown backend `{value}`; use `pod` or `local`")]
    Backend {
        /// The value as written.
        value: String,
    },
    /// The default timeout is not a Go duration.
    #[error("invalid defaultTimeout")]
    Timeout {
        /// Why it does not parse.
        #[source]
        source: DurationError,
    },
    /// The default timeout is shorter than one second.
    #[error("defaultTimeout `{value}` is shorter than one second")]
    TimeoutTooShort {
        /// The value as written.
        value: String,
    },
    /// A required setting is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The setting.
        field: &'static str,
    },
    /// A value that is not a valid Kubernetes name.
    #[error(
        "{field} `{value}` is not a valid Kubernetes name (lower-case letters, digits and `-`)"
    )]
    Name {
        /// The setting.
        field: &'static str,
        /// The value as written.
        value: String,
    },
    /// A registry or pull prefix with a scheme, tag, digest or stray slash.
    #[error(
        "{field} `{value}` must be a registry host with an optional path, such as `registry.example.com/team`, without scheme, tag or trailing slash"
    )]
    RegistryPrefix {
        /// The setting: `registryPrefix` or `pullPrefix`.
        field: &'static str,
        /// The value as written.
        value: String,
    },
    /// A pull prefix with nothing to front.
    #[error(
        "pullPrefix `{value}` names what fronts registryPrefix, which is not set; set registryPrefix too, or remove pullPrefix"
    )]
    PullPrefixAlone {
        /// The value as written.
        value: String,
    },
    /// An image reference with whitespace or without a name.
    #[error("builderImage `{value}` is not an image reference")]
    Image {
        /// The value as written.
        value: String,
    },
    /// Keys configured without repositories to verify.
    #[error("defaultKeyring is set but defaultRepositories is empty")]
    KeyringWithoutRepositories,
    /// A limit of zero, which would stop all work.
    #[error("{field} must be at least 1")]
    ZeroLimit {
        /// The setting.
        field: &'static str,
    },
    /// A negative Job TTL.
    #[error("jobTtlSecondsAfterFinished must not be negative, got {value}")]
    NegativeTtl {
        /// The value.
        value: i64,
    },
    /// An `insecureRegistries` entry with a scheme, path or whitespace.
    #[error(
        "insecureRegistries entry `{value}` must be a registry host (`host[:port]`) or a CIDR range, without scheme or path"
    )]
    InsecureRegistry {
        /// The value as written.
        value: String,
    },
    /// A directory setting that is not an absolute path.
    #[error("{field} `{value}` must be an absolute path")]
    RelativePath {
        /// The setting.
        field: &'static str,
        /// The value as written.
        value: String,
    },
    /// A size that is not a Kubernetes quantity.
    #[error("{field} `{value}` is not a Kubernetes quantity such as `10Gi` or `500M`")]
    Quantity {
        /// The setting.
        field: &'static str,
        /// The value as written.
        value: String,
    },
}

/// The file's shape: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    registry_prefix: Option<String>,
    pull_prefix: Option<String>,
    default_repositories: Option<Vec<String>>,
    default_keyring: Option<Vec<String>>,
    builder_image: Option<String>,
    builder_service_account: Option<String>,
    namespace: Option<String>,
    signing_key_secret: Option<String>,
    signing_key_namespace: Option<String>,
    backend: Option<Backend>,
    max_concurrent_builds: Option<u16>,
    reconcile_concurrency: Option<u16>,
    watch_namespaces: Option<Vec<String>>,
    job_ttl_seconds_after_finished: Option<i64>,
    work_size_limit: Option<String>,
    default_timeout: Option<String>,
    default_resources: Option<ResourceRequirements>,
    insecure_registries: Option<Vec<String>>,
    cache_dir: Option<String>,
    work_dir: Option<String>,
    deployment_name: Option<String>,
}

impl Config {
    /// Builds the configuration from the file's text (if any) and the environment, then
    /// validates it. `env` returns the value of a variable, or `None` when it is unset.
    pub fn from_sources(
        file: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut raw = match file {
            Some(text) if !text.trim().is_empty() => serde_norway::from_str::<FileConfig>(text)
                .map_err(|source| ConfigError::Yaml { source })?,
            _ => FileConfig::default(),
        };
        overlay_env(&mut raw, env)?;
        Self::validate(raw)
    }

    fn validate(raw: FileConfig) -> Result<Self, ConfigError> {
        let defaults = Self::default();

        let registry_prefix = raw.registry_prefix.filter(|p| !p.is_empty());
        if let Some(prefix) = &registry_prefix {
            check_registry_prefix("registryPrefix", prefix)?;
        }
        let pull_prefix = raw.pull_prefix.filter(|p| !p.is_empty());
        if let Some(prefix) = &pull_prefix {
            check_registry_prefix("pullPrefix", prefix)?;
            if registry_prefix.is_none() {
                return Err(ConfigError::PullPrefixAlone {
                    value: prefix.clone(),
                });
            }
        }

        let default_repositories = raw.default_repositories.unwrap_or_default();
        let default_keyring = raw.default_keyring.unwrap_or_default();
        if default_repositories.iter().any(|r| r.trim().is_empty()) {
            return Err(ConfigError::Empty {
                field: "defaultRepositories entry",
            });
        }
        if default_keyring.iter().any(|k| k.trim().is_empty()) {
            return Err(ConfigError::Empty {
                field: "defaultKeyring entry",
            });
        }
        if !default_keyring.is_empty() && default_repositories.is_empty() {
            return Err(ConfigError::KeyringWithoutRepositories);
        }

        let builder_image = raw.builder_image.unwrap_or(defaults.builder_image);
        if builder_image.is_empty() {
            return Err(ConfigError::Empty {
                field: "builderImage",
            });
        }
        if builder_image.chars().any(char::is_whitespace)
            || builder_image.starts_with([':', '@', '/'])
        {
            return Err(ConfigError::Image {
                value: builder_image,
            });
        }

        let builder_service_account = raw.builder_service_account.filter(|s| !s.is_empty());
        if let Some(account) = &builder_service_account {
            check_subdomain("builderServiceAccount", account)?;
        }

        let namespace = raw
            .namespace
            .filter(|n| !n.is_empty())
            .unwrap_or(defaults.namespace);
        check_label("namespace", &namespace)?;

        let signing_key = match raw.signing_key_secret.filter(|s| !s.is_empty()) {
            Some(name) => {
                check_subdomain("signingKeySecret", &name)?;
                let secret_namespace = raw
                    .signing_key_namespace
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| namespace.clone());
                check_label("signingKeyNamespace", &secret_namespace)?;
                Some(SecretRef {
                    name,
                    namespace: secret_namespace,
                })
            }
            None => None,
        };

        let max_concurrent_builds = raw
            .max_concurrent_builds
            .unwrap_or(defaults.max_concurrent_builds);
        if max_concurrent_builds == 0 {
            return Err(ConfigError::ZeroLimit {
                field: "maxConcurrentBuilds",
            });
        }
        let reconcile_concurrency = raw
            .reconcile_concurrency
            .unwrap_or(defaults.reconcile_concurrency);
        if reconcile_concurrency == 0 {
            return Err(ConfigError::ZeroLimit {
                field: "reconcileConcurrency",
            });
        }

        let mut watch_namespaces = raw.watch_namespaces.unwrap_or_default();
        for watched in &watch_namespaces {
            check_label("watchNamespaces entry", watched)?;
        }
        watch_namespaces.sort();
        watch_namespaces.dedup();

        let job_ttl_seconds = match raw.job_ttl_seconds_after_finished {
            Some(value) if value < 0 => return Err(ConfigError::NegativeTtl { value }),
            Some(value) => Some(i32::try_from(value).unwrap_or(i32::MAX)),
            None => None,
        };

        let work_size_limit = raw
            .work_size_limit
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_WORK_SIZE_LIMIT.to_string());
        if !is_quantity(&work_size_limit) {
            return Err(ConfigError::Quantity {
                field: "workSizeLimit",
                value: work_size_limit,
            });
        }

        let timeout_text = raw
            .default_timeout
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_TIMEOUT.to_string());
        let default_timeout =
            parse_duration(&timeout_text).map_err(|source| ConfigError::Timeout { source })?;
        if default_timeout < Duration::from_secs(1) {
            return Err(ConfigError::TimeoutTooShort {
                value: timeout_text,
            });
        }

        let default_resources = raw.default_resources.unwrap_or(defaults.default_resources);
        for (field, quantities) in [
            ("defaultResources.requests", &default_resources.requests),
            ("defaultResources.limits", &default_resources.limits),
        ] {
            for quantity in quantities.iter().flat_map(|q| q.values()) {
                if !is_quantity(&quantity.0) {
                    return Err(ConfigError::Quantity {
                        field,
                        value: quantity.0.clone(),
                    });
                }
            }
        }

        let insecure_registries = raw.insecure_registries.unwrap_or_default();
        for entry in &insecure_registries {
            check_insecure_registry(entry)?;
        }
        let cache_dir = absolute_dir("cacheDir", raw.cache_dir)?;
        let work_dir = absolute_dir("workDir", raw.work_dir)?;
        let deployment_name = raw
            .deployment_name
            .filter(|n| !n.is_empty())
            .unwrap_or(defaults.deployment_name);
        check_subdomain("deploymentName", &deployment_name)?;

        Ok(Self {
            registry_prefix,
            pull_prefix,
            default_repositories,
            default_keyring,
            builder_image,
            builder_service_account,
            namespace,
            signing_key,
            backend: raw.backend.unwrap_or_default(),
            max_concurrent_builds,
            reconcile_concurrency,
            watch_namespaces,
            job_ttl_seconds,
            work_size_limit: Quantity(work_size_limit),
            default_resources,
            default_timeout,
            insecure_registries,
            cache_dir,
            work_dir,
            deployment_name,
        })
    }
}

/// An optional directory setting: empty means unset, anything else must be absolute.
fn absolute_dir(
    field: &'static str,
    value: Option<String>,
) -> Result<Option<PathBuf>, ConfigError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) if PathBuf::from(&text).is_absolute() => Ok(Some(PathBuf::from(text))),
        Some(text) => Err(ConfigError::RelativePath { field, value: text }),
    }
}

/// An `insecureRegistries` entry: `host[:port]` or a CIDR range, nothing else.
fn check_insecure_registry(entry: &str) -> Result<(), ConfigError> {
    let valid = !entry.is_empty()
        && entry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '/' | '[' | ']'))
        && !entry.contains("://")
        && match entry.split_once('/') {
            // Only a CIDR range may have a `/`: an address and a prefix length.
            Some((address, prefix)) => {
                address.parse::<std::net::IpAddr>().is_ok()
                    && prefix.parse::<u8>().is_ok_and(|p| p <= 128)
            }
            None => true,
        };
    if valid {
        Ok(())
    } else {
        Err(ConfigError::InsecureRegistry {
            value: entry.to_string(),
        })
    }
}

/// Applies the `SECUREBUILD_*` variables over the file's values.
fn overlay_env(
    raw: &mut FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let var = |name: &str| env(&format!("{ENV_PREFIX}{name}"));
    let list = |value: String| -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()
    };

    if let Some(value) = var("REGISTRY_PREFIX") {
        raw.registry_prefix = Some(value);
    }
    if let Some(value) = var("PULL_PREFIX") {
        raw.pull_prefix = Some(value);
    }
    if let Some(value) = var("DEFAULT_REPOSITORIES") {
        raw.default_repositories = Some(list(value));
    }
    if let Some(value) = var("DEFAULT_KEYRING") {
        raw.default_keyring = Some(list(value));
    }
    if let Some(value) = var("BUILDER_IMAGE") {
        raw.builder_image = Some(value);
    }
    if let Some(value) = var("BUILDER_SERVICE_ACCOUNT") {
        raw.builder_service_account = Some(value);
    }
    if let Some(value) = var("NAMESPACE") {
        raw.namespace = Some(value);
    }
    if let Some(value) = var("SIGNING_KEY_SECRET") {
        raw.signing_key_secret = Some(value);
    }
    if let Some(value) = var("SIGNING_KEY_NAMESPACE") {
        raw.signing_key_namespace = Some(value);
    }
    if let Some(value) = var("BACKEND") {
        let backend = Backend::parse(value.trim()).ok_or(ConfigError::Backend { value })?;
        raw.backend = Some(backend);
    }
    if let Some(value) = var("MAX_CONCURRENT_BUILDS") {
        raw.max_concurrent_builds = Some(env_number("MAX_CONCURRENT_BUILDS", value)?);
    }
    if let Some(value) = var("RECONCILE_CONCURRENCY") {
        raw.reconcile_concurrency = Some(env_number("RECONCILE_CONCURRENCY", value)?);
    }
    if let Some(value) = var("WATCH_NAMESPACES") {
        raw.watch_namespaces = Some(list(value));
    }
    if let Some(value) = var("JOB_TTL_SECONDS") {
        raw.job_ttl_seconds_after_finished = if value.trim().is_empty() {
            None
        } else {
            Some(env_number("JOB_TTL_SECONDS", value)?)
        };
    }
    if let Some(value) = var("WORK_SIZE_LIMIT") {
        raw.work_size_limit = Some(value);
    }
    if let Some(value) = var("DEFAULT_TIMEOUT") {
        raw.default_timeout = Some(value);
    }
    if let Some(value) = var("INSECURE_REGISTRIES") {
        raw.insecure_registries = Some(list(value));
    }
    if let Some(value) = var("CACHE_DIR") {
        raw.cache_dir = Some(value);
    }
    if let Some(value) = var("WORK_DIR") {
        raw.work_dir = Some(value);
    }
    if let Some(value) = var("DEPLOYMENT_NAME") {
        raw.deployment_name = Some(value);
    }
    Ok(())
}

/// The number in the value of the variable `SECUREBUILD_<name>`.
fn env_number<T: std::str::FromStr<Err = ParseIntError>>(
    name: &str,
    value: String,
) -> Result<T, ConfigError> {
    value
        .trim()
        .parse::<T>()
        .map_err(|source| ConfigError::EnvNumber {
            variable: format!("{ENV_PREFIX}{name}"),
            value,
            source,
        })
}

/// A DNS-1123 label: at most 63 lower-case alphanumerics or `-`, starting and ending with an
/// alphanumeric.
pub(crate) fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

fn check_label(field: &'static str, value: &str) -> Result<(), ConfigError> {
    if is_dns_label(value) {
        Ok(())
    } else {
        Err(ConfigError::Name {
            field,
            value: value.to_string(),
        })
    }
}

fn check_subdomain(field: &'static str, value: &str) -> Result<(), ConfigError> {
    if is_dns_subdomain(value) {
        Ok(())
    } else {
        Err(ConfigError::Name {
            field,
            value: value.to_string(),
        })
    }
}

fn check_registry_prefix(field: &'static str, prefix: &str) -> Result<(), ConfigError> {
    let error = || ConfigError::RegistryPrefix {
        field,
        value: prefix.to_string(),
    };
    if prefix.contains("://")
        || prefix.contains('@')
        || prefix.ends_with('/')
        || prefix.starts_with('/')
    {
        return Err(error());
    }
    let mut parts = prefix.split('/');
    let host = parts.next().unwrap_or_default();
    let host_name = host.split_once(':').map_or(host, |(name, _)| name);
    if let Some((_, port)) = host.split_once(':')
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(error());
    }
    let host_ok = !host_name.is_empty()
        && host_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let path_ok = parts.all(|part| {
        !part.is_empty()
            && part.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            })
    });
    if host_ok && path_ok {
        Ok(())
    } else {
        Err(error())
    }
}

/// Whether `text` is a Kubernetes quantity: a decimal number with an optional binary
/// (`Ki`…`Ei`), decimal (`m`, `k`, `M`…`E`) or exponent (`e3`) suffix.
pub(crate) fn is_quantity(text: &str) -> bool {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    let digits_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(digits_end);
    let valid_number = !number.is_empty()
        && number.chars().filter(|c| *c == '.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    let valid_suffix = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix.strip_prefix(['e', 'E']).is_some_and(|exp| {
        let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
    });
    valid_number && valid_suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(file, &env_of(env))
    }

    #[test]
    fn defaults_without_file_or_environment() {
        let config = load(None, &[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.default_timeout, Duration::from_secs(1800));
        assert_eq!(config.namespace, "securebuild-system");
        assert_eq!(config.backend, Backend::Pod);
        assert!(config.signing_key.is_none());
        assert!(
            config
                .builder_image
                .starts_with("ghcr.io/securebuild/securebuild:")
        );
    }

    #[test]
    fn file_values_and_environment_overrides() {
        let file = r#"
registryPrefix: registry.example.com/images
pullPrefix: images.example.com
defaultRepositories: [https://packages.wolfi.dev/os]
defaultKeyring: [https://packages.wolfi.dev/os/wolfi-signing.rsa.pub]
builderImage: registry.example.com/securebuild:1.2.3
builderServiceAccount: builder
namespace: sb
signingKeySecret: signing-key
backend: pod
maxConcurrentBuilds: 2
watchNamespaces: [team-b, team-a, team-a]
jobTtlSecondsAfterFinished: 3600
workSizeLimit: 20Gi
defaultTimeout: 1h
defaultResources:
  requests: {cpu: "2"}
"#;
        let config = load(
            Some(file),
            &[
                ("SECUREBUILD_MAX_CONCURRENT_BUILDS", "7"),
                ("SECUREBUILD_DEFAULT_TIMEOUT", "45m"),
                ("SECUREBUILD_BUILDER_SERVICE_ACCOUNT", ""),
                ("OTHER_VARIABLE", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.registry_prefix.as_deref(),
            Some("registry.example.com/images")
        );
        assert_eq!(config.pull_prefix.as_deref(), Some("images.example.com"));
        assert_eq!(
            config.default_repositories,
            ["https://packages.wolfi.dev/os"]
        );
        assert_eq!(
            config.builder_image,
            "registry.example.com/securebuild:1.2.3"
        );
        assert_eq!(config.builder_service_account, None);
        assert_eq!(
            config.signing_key,
            Some(SecretRef {
                name: "signing-key".into(),
                namespace: "sb".into()
            })
        );
        assert_eq!(config.max_concurrent_builds, 7);
        assert_eq!(config.watch_namespaces, ["team-a", "team-b"]);
        assert_eq!(config.job_ttl_seconds, Some(3600));
        assert_eq!(config.work_size_limit, Quantity("20Gi".into()));
        assert_eq!(config.default_timeout, Duration::from_secs(45 * 60));
        let requests = config.default_resources.requests.unwrap();
        assert_eq!(requests.get("cpu"), Some(&Quantity("2".into())));
    }

    #[test]
    fn environment_lists_and_backend() {
        let config = load(
            None,
            &[
                (
                    "SECUREBUILD_DEFAULT_REPOSITORIES",
                    "https://a.example/os, https://b.example/os,",
                ),
                ("SECUREBUILD_WATCH_NAMESPACES", "ns1,ns2"),
                ("SECUREBUILD_BACKEND", "local"),
                ("SECUREBUILD_SIGNING_KEY_SECRET", "key"),
                ("SECUREBUILD_SIGNING_KEY_NAMESPACE", "keys"),
                ("SECUREBUILD_JOB_TTL_SECONDS", "60"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.default_repositories,
            ["https://a.example/os", "https://b.example/os"]
        );
        assert_eq!(config.watch_namespaces, ["ns1", "ns2"]);
        assert_eq!(config.backend, Backend::Local);
        assert_eq!(config.signing_key.unwrap().namespace, "keys");
        assert_eq!(config.job_ttl_seconds, Some(60));
    }

    #[test]
    fn invalid_configurations_are_named() {
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (Some("unknownKey: 1"), &[], "unknown field `unknownKey`"),
            (
                Some("maxConcurrentBuilds: many"),
                &[],
                "invalid configuration file",
            ),
            (
                None,
                &[("SECUREBUILD_MAX_CONCURRENT_BUILDS", "lots")],
                "SECUREBUILD_MAX_CONCURRENT_BUILDS=`lots`",
            ),
            (
                None,
                &[("SECUREBUILD_JOB_TTL_SECONDS", "soon")],
                "SECUREBUILD_JOB_TTL_SECONDS",
            ),
            (
                None,
                &[("SECUREBUILD_BACKEND", "vm")],
                "unknown backend `vm`",
            ),
            (
                None,
                &[("SECUREBUILD_DEFAULT_TIMEOUT", "1d")],
                "invalid defaultTimeout",
            ),
            (
                None,
                &[("SECUREBUILD_DEFAULT_TIMEOUT", "10ms")],
                "shorter than one second",
            ),
            (
                None,
                &[(
                    "SECUREBUILD_REGISTRY_PREFIX",
                    "https://registry.example.com",
                )],
                "registryPrefix",
            ),
            (
                None,
                &[("SECUREBUILD_REGISTRY_PREFIX", "registry.example.com/")],
                "registryPrefix",
            ),
            (
                None,
                &[("SECUREBUILD_REGISTRY_PREFIX", "registry.example.com:port")],
                "registryPrefix",
            ),
            (
                None,
                &[("SECUREBUILD_REGISTRY_PREFIX", "registry.example.com/Team")],
                "registryPrefix",
            ),
            (
                None,
                &[
                    ("SECUREBUILD_REGISTRY_PREFIX", "registry.example.com"),
                    ("SECUREBUILD_PULL_PREFIX", "https://images.example.com"),
                ],
                "pullPrefix `https://images.example.com` must be a registry host",
            ),
            (
                None,
                &[("SECUREBUILD_PULL_PREFIX", "images.example.com")],
                "set registryPrefix too",
            ),
            (
                None,
                &[("SECUREBUILD_DEFAULT_KEYRING", "https://k.example/key.pub")],
                "defaultKeyring is set",
            ),
            (
                None,
                &[("SECUREBUILD_BUILDER_IMAGE", "")],
                "builderImage must not be empty",
            ),
            (
                None,
                &[("SECUREBUILD_BUILDER_IMAGE", "bad image")],
                "builderImage `bad image`",
            ),
            (
                None,
                &[("SECUREBUILD_MAX_CONCURRENT_BUILDS", "0")],
                "maxConcurrentBuilds must be at least 1",
            ),
            (
                None,
                &[("SECUREBUILD_RECONCILE_CONCURRENCY", "0")],
                "reconcileConcurrency must be at least 1",
            ),
            (
                None,
                &[("SECUREBUILD_WATCH_NAMESPACES", "Team_A")],
                "watchNamespaces entry `Team_A`",
            ),
            (
                None,
                &[("SECUREBUILD_NAMESPACE", "-bad")],
                "namespace `-bad`",
            ),
            (
                None,
                &[("SECUREBUILD_SIGNING_KEY_SECRET", "Key!")],
                "signingKeySecret `Key!`",
            ),
            (
                None,
                &[("SECUREBUILD_BUILDER_SERVICE_ACCOUNT", "a b")],
                "builderServiceAccount",
            ),
            (
                None,
                &[("SECUREBUILD_JOB_TTL_SECONDS", "-5")],
                "must not be negative, got -5",
            ),
            (
                None,
                &[("SECUREBUILD_WORK_SIZE_LIMIT", "ten gigs")],
                "workSizeLimit `ten gigs`",
            ),
            (
                Some("defaultResources: {limits: {memory: lots}}"),
                &[],
                "defaultResources.limits `lots`",
            ),
            (
                Some("defaultRepositories: ['']"),
                &[],
                "defaultRepositories entry must not be empty",
            ),
            (
                None,
                &[("SECUREBUILD_INSECURE_REGISTRIES", "http://registry:5000")],
                "insecureRegistries entry `http://registry:5000`",
            ),
            (
                None,
                &[("SECUREBUILD_INSECURE_REGISTRIES", "registry:5000/team")],
                "insecureRegistries entry `registry:5000/team`",
            ),
            (
                None,
                &[("SECUREBUILD_CACHE_DIR", "cache")],
                "cacheDir `cache` must be an absolute path",
            ),
            (
                Some("workDir: work"),
                &[],
                "workDir `work` must be an absolute path",
            ),
            (
                None,
                &[("SECUREBUILD_DEPLOYMENT_NAME", "Operator")],
                "deploymentName `Operator`",
            ),
        ];
        for (file, env, expected) in cases {
            let error = securebuild_builder::error::chain(&load(*file, env).expect_err(expected));
            assert!(
                error.contains(expected),
                "expected `{expected}` in `{error}`"
            );
        }
    }

    #[test]
    fn process_settings() {
        let file = r#"
insecureRegistries: [kind-registry:5000, 10.0.0.0/8]
cacheDir: /var/cache/securebuild
deploymentName: sb
"#;
        let config = load(
            Some(file),
            &[
                ("SECUREBUILD_WORK_DIR", "/scratch"),
                ("SECUREBUILD_DEPLOYMENT_NAME", ""),
            ],
        )
        .unwrap();
        assert_eq!(
            config.insecure_registries,
            ["kind-registry:5000", "10.0.0.0/8"]
        );
        assert_eq!(config.cache_dir(), PathBuf::from("/var/cache/securebuild"));
        assert_eq!(config.work_dir, Some(PathBuf::from("/scratch")));
        assert_eq!(config.deployment_name, DEFAULT_DEPLOYMENT_NAME);

        let defaults = load(None, &[("SECUREBUILD_CACHE_DIR", "")]).unwrap();
        assert_eq!(
            defaults.cache_dir(),
            std::env::temp_dir().join("securebuild-cache")
        );
        assert_eq!(defaults.work_dir, None);
    }

    #[test]
    fn quantities() {
        for good in [
            "10Gi", "500M", "1", "0.5", "1.5Gi", "100m", "1e3", "2E+2", "+1Ki",
        ] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "Gi", "ten", "1.2.3", "1GB", "1e", "-", "1 Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(is_dns_label("a-1"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(!is_dns_label("a-"));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("a..b"));
    }
}
