//! The apko image configuration: the one definition shared by the `securebuild` CLI (which
//! reads apko YAML files) and the `ImageBuild` resource (`spec.image`).
//!
//! Field names are apko's own, so an apko YAML file pastes into `spec.image` unchanged. Parsing a
//! file rejects unknown keys, as apko does; the API server does the same for the resource.
//! Nothing here does IO: [`ImageConfiguration::from_yaml`] takes text.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An apko image configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.include) || (has(self.contents) && has(self.contents.packages) && size(self.contents.packages) > 0)",
        "message": "contents.packages must name at least one package"
    }
]))]
pub struct ImageConfiguration {
    /// Required: the APK repositories, keys and packages that make up the image (may come from
    /// an included configuration).
    #[serde(default)]
    pub contents: ImageContents,

    /// Optional: another configuration file this one is merged onto with apko's merge rules
    /// (this file's values win; lists are the included file's first). A relative path is
    /// resolved against the including file's directory, then against the working directory as
    /// apko does. Resolved when a file is read; see `crate::include`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<String>,

    /// Optional: the entrypoint of the image; usually the full path of the executable, since
    /// most images carry no shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<ImageEntrypoint>,

    /// Optional: arguments passed to the entrypoint (the OCI `Cmd`), split like a shell would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,

    /// Optional: the signal that stops the container, e.g. `SIGTERM`.
    #[serde(
        rename = "stop-signal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(regex(pattern = r"^(SIG[A-Z0-9+-]+|[0-9]+)$"))]
    pub stop_signal: Option<String>,

    /// Optional: the working directory of the container; an absolute path.
    #[serde(rename = "work-dir", default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/"))]
    pub work_dir: Option<String>,

    /// Optional: users and groups to create, and the user to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<ImageAccounts>,

    /// Optional: CPU architectures to build for, OCI style (`amd64`, `arm64`, `arm/v7`, …) or
    /// apk style (`x86_64`, `aarch64`, …); `all` builds every supported architecture. Empty
    /// means the build host's architecture.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archs: Vec<Architecture>,

    /// Optional: environment variables of the image; apko's defaults (`PATH`,
    /// `SSL_CERT_FILE`) are added when missing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,

    /// Optional: changes to the filesystem after packages are installed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512))]
    pub paths: Vec<PathMutation>,

    /// Optional: the image's source repository; recorded as the
    /// `org.opencontainers.image.source` annotation.
    #[serde(rename = "vcs-url", default, skip_serializing_if = "Option::is_none")]
    pub vcs_url: Option<String>,

    /// Optional: annotations on the image manifests and index (also the config's labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Optional: the OCI config's `Volumes`, created by some runtimes (docker) at run time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,

    /// Optional: fields of `/etc/os-release`; when absent the file is left as the packages
    /// install it.
    #[serde(
        rename = "os-release",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_release: Option<OsRelease>,

    /// Optional: CA certificates added to the image's certificate bundles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<ImageCertificates>,

    /// Optional: how to split the image into layers. Absent (or `{}`): one layer per package,
    /// at most 32, plus the builder's own layer; `{strategy: origin, budget: N}`: at most `N`
    /// package layers; `{strategy: none}`: a single layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layering: Option<Layering>,

    /// Optional: the layer payload format; only `tar` (the default) is supported. apko's
    /// experimental `erofs` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<LayerFormat>,
}

/// Certificates to install in the image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageCertificates {
    /// Optional: inline certificates; each is appended to the CA bundles and written as
    /// `/usr/local/share/ca-certificates/<name>-<sha256 of the DER>.crt`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional: Vec<AdditionalCertificate>,

    /// Optional: virtual package names (`provides`); the `.crt` and `.pem` files under
    /// `/usr/local/share/ca-certificates` of installed packages providing one of them are
    /// appended to the CA bundles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
}

/// One inline certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AdditionalCertificate {
    /// Required: the certificate's name, used in its file name.
    #[serde(default)]
    pub name: String,

    /// Required: exactly one PEM-encoded X.509 certificate.
    #[serde(default)]
    pub content: String,
}

/// One inline APK signing key for the image's runtime trust.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RuntimeKeyringEntry {
    /// Required: the file name under `/etc/apk/keys`; it must match the name the runtime
    /// repository's index signature references.
    #[serde(default)]
    pub name: String,

    /// Required: one PEM-encoded RSA public key (`-----BEGIN PUBLIC KEY-----`).
    #[serde(default)]
    pub content: String,
}

/// Layering of the image.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Layering {
    /// Optional: the strategy; `origin` gives packages layers of their own and groups those
    /// beyond the budget by origin package, `none` builds a single layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,

    /// Optional: the maximum number of package layers (`origin` only; 32 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u32>,
}

/// The `origin` strategy: packages in layers of their own, grouped by origin beyond the budget.
pub const LAYERING_ORIGIN: &str = "origin";
/// The `none` strategy: a single layer.
pub const LAYERING_NONE: &str = "none";
/// Package layers when the configuration does not set a budget.
pub const DEFAULT_LAYER_BUDGET: u32 = 32;

impl Layering {
    /// Whether the layering asks for nothing (`layering: {}`), which apko treats as absent.
    pub fn is_empty(&self) -> bool {
        self.strategy.as_deref().unwrap_or_default().is_empty() && self.budget.unwrap_or(0) == 0
    }
}

/// How an image is split into layers, as the builder applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerPlan {
    /// One layer holding everything.
    Single,
    /// At most `budget` package layers, then the builder's own layer.
    Packages {
        /// The most package layers (0 is taken as 1, as apko does).
        budget: u32,
    },
}

impl ImageConfiguration {
    /// The layering this configuration asks for: absent or `{}` is SecureBuild's default of
    /// package layers with a budget of [`DEFAULT_LAYER_BUDGET`]. Call after [`Self::validate`].
    pub fn layer_plan(&self) -> LayerPlan {
        match &self.layering {
            Some(layering) if layering.strategy.as_deref() == Some(LAYERING_NONE) => {
                LayerPlan::Single
            }
            Some(layering) if !layering.is_empty() => LayerPlan::Packages {
                budget: layering.budget.unwrap_or(DEFAULT_LAYER_BUDGET),
            },
            _ => LayerPlan::Packages {
                budget: DEFAULT_LAYER_BUDGET,
            },
        }
    }
}

/// A layer payload format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LayerFormat {
    /// Compressed tar layers, the default.
    Tar,
    /// apko's experimental EROFS layers; not supported.
    Erofs,
}

/// The APK side of the image: where packages come from, which keys sign them, which to install.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageContents {
    /// Repositories used to build the image and written to `/etc/apk/repositories`. Each is an
    /// https URL, a local directory, or either prefixed with `@tag ` to make a tagged repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,

    /// Public keys (PEM files: local paths or https URLs) that sign the repositories' indexes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyring: Vec<String>,

    /// Packages to install, with apk constraints: `busybox`, `go~1.25.8`, `openssl>=3`, `!foo`,
    /// `name@tag`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,

    /// Repositories used only while building, not written into the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_repositories: Vec<String>,

    /// Repositories written into the image's `/etc/apk/repositories` but not used to build it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_repositories: Vec<String>,

    /// Public keys written to the image's `/etc/apk/keys` for `runtime_repositories`; never
    /// trusted while building.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_keyring: Vec<RuntimeKeyringEntry>,
}

/// The image's entrypoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageEntrypoint {
    /// Optional: the entrypoint type; `service-bundle` runs `services` under s6
    /// (`/bin/s6-svscan /sv`, with the `s6` package added).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,

    /// The command, split like a shell would split it (quotes group words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,

    /// Optional: a shell fragment; the entrypoint becomes `/bin/sh -c <fragment>`.
    #[serde(
        rename = "shell-fragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub shell_fragment: Option<String>,

    /// Optional: services of a `service-bundle` entrypoint: name → command, each written to
    /// `/sv/<name>/run` as an execline script.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, String>,
}

/// Users, groups and the user the container runs as.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageAccounts {
    /// The user to run as: a user name from `users`, or a numeric UID (optionally `uid:gid`).
    #[serde(rename = "run-as", default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,

    /// Users to add to `/etc/passwd`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,

    /// Groups to add to `/etc/group`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
}

/// A user account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    /// Required: the user name.
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_.-]*\$?$"), length(min = 1, max = 32))]
    pub username: String,

    /// Required: the user ID.
    pub uid: u32,

    /// Optional: the primary group ID; defaults to the UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,

    /// Optional: the login shell; defaults to `/bin/sh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,

    /// Optional: the home directory; defaults to `/home/<username>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homedir: Option<String>,
}

/// A group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Group {
    /// Required: the group name.
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_.-]*\$?$"), length(min = 1, max = 32))]
    pub groupname: String,

    /// Required: the group ID.
    pub gid: u32,

    /// Optional: user names that are members of the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// One change to the filesystem after packages are installed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(self.type in ['symlink', 'hardlink']) || has(self.source)",
        "message": "symlink and hardlink paths need a source"
    }
]))]
pub struct PathMutation {
    /// Required: the absolute path to create or change.
    #[schemars(regex(pattern = r"^/"), length(max = 4096))]
    pub path: String,

    /// Required: what to do at `path`.
    #[serde(rename = "type")]
    pub kind: PathType,

    /// Optional: the owner's user ID (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,

    /// Optional: the owner's group ID (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,

    /// Optional: permission bits, as a number (`493`, or `0o755` in YAML) or an octal string
    /// (`"0755"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<FileMode>,

    /// Symlink target or hardlink source; required for `symlink` and `hardlink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub source: Option<String>,

    /// Optional: for `permissions`, apply to everything below `path` too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub recursive: bool,
}

/// The kind of a [`PathMutation`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PathType {
    /// Create a directory.
    #[default]
    Directory,
    /// Create an empty regular file.
    EmptyFile,
    /// Create a hard link to `source`.
    Hardlink,
    /// Create a symbolic link pointing at `source`.
    Symlink,
    /// Change the owner and permissions of an existing path.
    Permissions,
}

/// Fields written to `/etc/os-release`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OsRelease {
    /// `ID`, also the distro in package URLs (`pkg:apk/<id>/…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `VERSION_ID`.
    #[serde(
        rename = "version-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub version_id: Option<String>,
    /// `PRETTY_NAME`.
    #[serde(
        rename = "pretty-name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pretty_name: Option<String>,
    /// `HOME_URL`.
    #[serde(rename = "home-url", default, skip_serializing_if = "Option::is_none")]
    pub home_url: Option<String>,
    /// `BUG_REPORT_URL`.
    #[serde(
        rename = "bug-report-url",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bug_report_url: Option<String>,
}

/// The entrypoint type that runs `services` under s6.
pub const SERVICE_BUNDLE: &str = "service-bundle";

fn check_entry_name(field: &'static str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::MissingName { field });
    }
    if !is_valid_entry_name(name) {
        return Err(ConfigError::InvalidName {
            field,
            name: name.to_string(),
        });
    }
    Ok(())
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// File permission bits. YAML and JSON numbers are taken as they are (`0o755` in YAML is 493);
/// strings are read as octal (`"0755"`, `"755"`, `"0o755"`). Always serialized as a number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileMode(pub u32);

impl FileMode {
    /// The largest value: every permission bit plus setuid, setgid and sticky.
    pub const MAX: u32 = 0o7777;

    /// Parses an octal string such as `0755`, `755` or `0o755`.
    pub fn parse_octal(text: &str) -> Result<Self, ConfigError> {
        let digits = text
            .strip_prefix("0o")
            .or_else(|| text.strip_prefix("0O"))
            .unwrap_or(text);
        let value = u32::from_str_radix(digits, 8).map_err(|_| ConfigError::Permissions {
            value: text.to_string(),
        })?;
        Self::checked(value).ok_or_else(|| ConfigError::Permissions {
            value: text.to_string(),
        })
    }

    fn checked(value: u32) -> Option<Self> {
        (value <= Self::MAX).then_some(Self(value))
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => u32::try_from(n)
                .ok()
                .and_then(FileMode::checked)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "permissions {n} is out of range (at most 0o7777 = 4095)"
                    ))
                }),
            Raw::Text(text) => FileMode::parse_octal(&text).map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for FileMode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FileMode".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // As Kubernetes' own IntOrString: no `type`; `minimum`/`maximum` apply to numbers and
        // `pattern` to strings.
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "minimum": 0,
            "maximum": 4095,
            "pattern": "^(0o|0O)?[0-7]{1,4}$"
        })
    }
}

/// A CPU architecture as apko names them. apk names (`x86_64`, `aarch64`, `armhf`, `armv7`,
/// `x86`, `loongarch64`) are accepted and normalized to the OCI names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Architecture(String);

/// An OCI platform: `architecture` and, for arm, `variant`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform {
    /// OCI architecture, e.g. `amd64`, `arm`.
    pub architecture: &'static str,
    /// OCI variant, e.g. `v7` for `arm/v7`.
    pub variant: Option<&'static str>,
}

/// (OCI name, apk name, OCI architecture, OCI variant) for every supported architecture.
const ARCHITECTURES: &[(&str, &str, &str, Option<&str>)] = &[
    ("386", "x86", "386", None),
    ("amd64", "x86_64", "amd64", None),
    ("arm64", "aarch64", "arm64", None),
    ("arm/v6", "armhf", "arm", Some("v6")),
    ("arm/v7", "armv7", "arm", Some("v7")),
    ("loong64", "loongarch64", "loong64", None),
    ("ppc64le", "ppc64le", "ppc64le", None),
    ("riscv64", "riscv64", "riscv64", None),
    ("s390x", "s390x", "s390x", None),
];

impl Architecture {
    /// Parses an OCI or apk architecture name.
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        ARCHITECTURES
            .iter()
            .find(|(oci, apk, _, _)| *oci == name || *apk == name)
            .map(|(oci, _, _, _)| Self((*oci).to_string()))
            .ok_or_else(|| ConfigError::Architecture {
                name: name.to_string(),
            })
    }

    /// Every supported architecture, in apko's order (what `all` means).
    pub fn all() -> Vec<Self> {
        ARCHITECTURES
            .iter()
            .map(|(oci, _, _, _)| Self((*oci).to_string()))
            .collect()
    }

    /// The OCI-style name, e.g. `arm/v7`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The apk-style name used in repository paths and `A:` fields, e.g. `armv7`.
    pub fn apk(&self) -> &'static str {
        self.entry().1
    }

    /// The OCI platform fields.
    pub fn platform(&self) -> Platform {
        let (_, _, architecture, variant) = self.entry();
        Platform {
            architecture,
            variant,
        }
    }

    fn entry(
        &self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
    ) {
        ARCHITECTURES
            .iter()
            .copied()
            .find(|(oci, _, _, _)| *oci == self.0)
            .unwrap_or(ARCHITECTURES[1])
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Architecture {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Architecture {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name == "all" {
            // `all` is expanded by `ImageConfiguration::architectures`; keep the word.
            return Ok(Self(name));
        }
        Self::parse(&name).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Architecture {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Architecture".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut names: Vec<&str> = vec!["all"];
        for (oci, apk, _, _) in ARCHITECTURES {
            names.push(oci);
            if apk != oci {
                names.push(apk);
            }
        }
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

/// Errors from reading an image configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid YAML or does not match the configuration's shape.
    #[error("invalid image configuration")]
    Yaml {
        /// What the YAML parser reported, with its location.
        #[source]
        source: serde_norway::Error,
    },
    /// Keys that apko does not know; apko rejects them and so do we.
    #[error(
        "unknown key{} in image configuration: {}; check the spelling against apko's field names",
        if keys.len() == 1 { "" } else { "s" },
        keys.join(", ")
    )]
    UnknownKeys {
        /// Dotted paths of the unknown keys, e.g. `contents.pakages`.
        keys: Vec<String>,
    },
    /// An architecture name that neither apko nor apk knows.
    #[error(
        "unknown architecture `{name}`; use one of 386, amd64, arm64, arm/v6, arm/v7, loong64, ppc64le, riscv64, s390x (or apk names such as x86_64, aarch64)"
    )]
    Architecture {
        /// The name as written.
        name: String,
    },
    /// A permission value that is not an octal mode.
    #[error("invalid permissions `{value}`; write an octal mode such as 0o755 or \"0755\"")]
    Permissions {
        /// The value as written.
        value: String,
    },
    /// A field of apko's configuration that SecureBuild does not support yet.
    #[error("`{field}` is not supported: {reason}")]
    Unsupported {
        /// The dotted field, e.g. `contents.baseimage`.
        field: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// An entry of a named list without a name.
    #[error("an entry of `{field}` has no name; give every entry a `name`")]
    MissingName {
        /// The list, e.g. `certificates.additional`.
        field: &'static str,
    },
    /// An entry without content.
    #[error("`{field}` entry `{name}` has no content; paste the PEM text into `content`")]
    MissingContent {
        /// The list, e.g. `contents.runtime_keyring`.
        field: &'static str,
        /// The entry's name.
        name: String,
    },
    /// A name that would not be a safe file name.
    #[error(
        "`{field}` entry `{name}` has an invalid name; use letters, digits, `_`, `-` and `.`, not starting with `.` (^[a-zA-Z0-9_-]+[a-zA-Z0-9_.-]*$)"
    )]
    InvalidName {
        /// The list.
        field: &'static str,
        /// The name as written.
        name: String,
    },
    /// Two entries of a list with the same name.
    #[error("`{field}` entry `{name}` is a duplicate; each name can appear once")]
    DuplicateName {
        /// The list.
        field: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A layering strategy neither apko nor SecureBuild knows.
    #[error("unrecognized layering strategy `{strategy}`; the strategies are `origin` and `none`")]
    LayeringStrategy {
        /// The strategy as written (empty when only `budget` is given).
        strategy: String,
    },
    /// A budget given with the `none` strategy, which builds a single layer.
    #[error(
        "layering `budget` applies to the `origin` strategy only; `none` builds a single layer"
    )]
    LayeringBudget,
    /// An entrypoint type other than `service-bundle`.
    #[error(
        "entrypoint type `{kind}` is not supported; the only type is `service-bundle` (or leave `type` out)"
    )]
    EntrypointType {
        /// The type as written.
        kind: String,
    },
}

/// Fields of apko's configuration that parse in apko but that SecureBuild refuses, with why.
const UNSUPPORTED_FIELDS: &[(&str, &str)] = &[(
    "contents.baseimage",
    "apko's experimental base images are not supported yet; install the base image's packages instead",
)];

/// The file-name rule apko applies to certificate and runtime key names
/// (`^[a-zA-Z0-9_-]+[a-zA-Z0-9_.-]*$`): no path separators, not starting with `.`.
pub fn is_valid_entry_name(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if allowed(first) => chars.all(|c| allowed(c) || c == '.'),
        _ => false,
    }
}

impl ImageConfiguration {
    /// Parses an apko YAML file. Unknown keys are an error naming each of them.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let mut unknown = Vec::new();
        let deserializer = serde_norway::Deserializer::from_str(text);
        let config: Self = serde_ignored::deserialize(deserializer, |path| {
            unknown.push(dotted_path(&path));
        })
        .map_err(|source| ConfigError::Yaml { source })?;
        if let Some((field, reason)) = UNSUPPORTED_FIELDS
            .iter()
            .find(|(field, _)| unknown.iter().any(|key| key == field))
        {
            return Err(ConfigError::Unsupported {
                field: (*field).to_string(),
                reason,
            });
        }
        if unknown.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::UnknownKeys { keys: unknown })
        }
    }

    /// Checks what apko's `Validate` checks on a merged configuration, and refuses what
    /// SecureBuild does not support yet. Certificate and key contents are checked when building.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(kind) = self.entrypoint.as_ref().and_then(|e| e.kind.as_deref())
            && kind != SERVICE_BUNDLE
        {
            return Err(ConfigError::EntrypointType {
                kind: kind.to_string(),
            });
        }
        if let Some(certificates) = &self.certificates {
            for entry in &certificates.additional {
                check_entry_name("certificates.additional", &entry.name)?;
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for key in &self.contents.runtime_keyring {
            const FIELD: &str = "contents.runtime_keyring";
            if key.content.is_empty() && !key.name.is_empty() {
                return Err(ConfigError::MissingContent {
                    field: FIELD,
                    name: key.name.clone(),
                });
            }
            check_entry_name(FIELD, &key.name)?;
            if !seen.insert(key.name.as_str()) {
                return Err(ConfigError::DuplicateName {
                    field: FIELD,
                    name: key.name.clone(),
                });
            }
        }
        if let Some(layering) = &self.layering
            && !layering.is_empty()
        {
            let strategy = layering.strategy.clone().unwrap_or_default();
            if strategy == LAYERING_NONE {
                if layering.budget.is_some() {
                    return Err(ConfigError::LayeringBudget);
                }
            } else if strategy != LAYERING_ORIGIN {
                return Err(ConfigError::LayeringStrategy { strategy });
            }
        }
        if self.format == Some(LayerFormat::Erofs) {
            return Err(ConfigError::Unsupported {
                field: "format".to_string(),
                reason: "apko's experimental `erofs` layers are not supported; use `tar` or leave `format` out",
            });
        }
        Ok(())
    }

    /// Whether the entrypoint is an s6 service bundle.
    pub fn is_service_bundle(&self) -> bool {
        self.entrypoint.as_ref().and_then(|e| e.kind.as_deref()) == Some(SERVICE_BUNDLE)
    }

    /// Serializes the configuration as YAML with apko's field names.
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_norway::to_string(self).map_err(|source| ConfigError::Yaml { source })
    }

    /// The architectures to build, deduplicated and sorted; `all` expands to every supported
    /// architecture, and an empty list means `host`.
    pub fn architectures(&self, host: &Architecture) -> Vec<Architecture> {
        let mut archs: Vec<Architecture> = if self.archs.iter().any(|a| a.0 == "all") {
            Architecture::all()
        } else if self.archs.is_empty() {
            vec![host.clone()]
        } else {
            self.archs.clone()
        };
        archs.sort();
        archs.dedup();
        archs
    }
}

/// Writes an ignored key's location as `contents.pakages` or `paths[2].sorce`.
fn dotted_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", dotted_path(parent)),
        Path::Map { parent, key } => {
            let parent = dotted_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WOLFI_BASE: &str = r#"
contents:
  keyring:
    - https://packages.wolfi.dev/os/wolfi-signing.rsa.pub
  repositories:
    - https://packages.wolfi.dev/os
  packages:
    - wolfi-base
    - go~1.25.8

entrypoint:
  command: /bin/sh -l

cmd: --help
stop-signal: SIGTERM
work-dir: /home/build

accounts:
  groups:
    - groupname: nonroot
      gid: 65532
  users:
    - username: nonroot
      uid: 65532
      gid: 65532
  run-as: 65532

archs:
  - x86_64
  - aarch64

environment:
  PATH: /usr/sbin:/sbin:/usr/bin:/bin

paths:
  - path: /home/build
    type: directory
    uid: 65532
    gid: 65532
    permissions: 0o755
  - path: /usr/bin/sh-link
    type: symlink
    source: /bin/sh
  - path: /etc/app.conf
    type: empty-file
    permissions: "0640"

annotations:
  org.opencontainers.image.authors: "Platform Team"
vcs-url: https://github.com/example/images
volumes:
  - /data
os-release:
  id: wolfi
  name: Wolfi
  pretty-name: Wolfi
"#;

    #[test]
    fn parses_an_apko_file_with_every_section() {
        let config = ImageConfiguration::from_yaml(WOLFI_BASE).unwrap();
        assert_eq!(config.contents.packages, ["wolfi-base", "go~1.25.8"]);
        assert_eq!(
            config.entrypoint.as_ref().unwrap().command.as_deref(),
            Some("/bin/sh -l")
        );
        assert_eq!(config.stop_signal.as_deref(), Some("SIGTERM"));
        assert_eq!(config.work_dir.as_deref(), Some("/home/build"));
        let accounts = config.accounts.as_ref().unwrap();
        assert_eq!(accounts.run_as.as_deref(), Some("65532"));
        assert_eq!(accounts.users[0].gid, Some(65532));
        assert_eq!(
            config.archs,
            [
                Architecture::parse("amd64").unwrap(),
                Architecture::parse("arm64").unwrap()
            ]
        );
        assert_eq!(config.paths[0].permissions, Some(FileMode(0o755)));
        assert_eq!(config.paths[1].kind, PathType::Symlink);
        assert_eq!(config.paths[2].permissions, Some(FileMode(0o640)));
        assert_eq!(
            config.os_release.as_ref().unwrap().id.as_deref(),
            Some("wolfi")
        );
    }

    #[test]
    fn round_trips_through_yaml_and_json() {
        let config = ImageConfiguration::from_yaml(WOLFI_BASE).unwrap();
        let yaml = config.to_yaml().unwrap();
        assert_eq!(ImageConfiguration::from_yaml(&yaml).unwrap(), config);
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<ImageConfiguration>(&json).unwrap(),
            config
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = ImageConfiguration::from_yaml(
            "contents:\n  pakages: [busybox]\nentrypoint:\n  comand: /bin/sh\nlayring: {}\npaths:\n  - path: /a\n    type: directory\n    sorce: /b\n",
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("contents.pakages"), "{message}");
        assert!(message.contains("entrypoint.comand"), "{message}");
        assert!(message.contains("layring"), "{message}");
        assert!(message.contains("paths[0].sorce"), "{message}");
    }

    #[test]
    fn permissions_forms() {
        let check = |yaml: &str, expected: Option<u32>| {
            let text = format!(
                "contents: {{packages: [a]}}\npaths:\n  - path: /x\n    type: permissions\n    permissions: {yaml}\n"
            );
            let parsed = ImageConfiguration::from_yaml(&text);
            match expected {
                Some(mode) => assert_eq!(
                    parsed.unwrap().paths[0].permissions,
                    Some(FileMode(mode)),
                    "{yaml}"
                ),
                None => assert!(parsed.is_err(), "{yaml} should be rejected"),
            }
        };
        check("0o755", Some(0o755));
        check("493", Some(0o755));
        check("\"0755\"", Some(0o755));
        check("\"755\"", Some(0o755));
        check("\"0o4755\"", Some(0o4755));
        check("\"0999\"", None);
        check("70000", None);
        check("\"rwx\"", None);
    }

    #[test]
    fn architectures_normalize_and_expand() {
        let host = Architecture::parse("amd64").unwrap();
        let config = ImageConfiguration::from_yaml(
            "contents: {packages: [a]}\narchs: [aarch64, arm64, x86_64]\n",
        )
        .unwrap();
        let names: Vec<_> = config
            .architectures(&host)
            .iter()
            .map(|a| a.as_str().to_string())
            .collect();
        assert_eq!(names, ["amd64", "arm64"]);
        let all =
            ImageConfiguration::from_yaml("contents: {packages: [a]}\narchs: [all]\n").unwrap();
        assert_eq!(all.architectures(&host).len(), 9);
        let none = ImageConfiguration::from_yaml("contents: {packages: [a]}\n").unwrap();
        assert_eq!(none.architectures(&host), [host]);
        let arm = Architecture::parse("armv7").unwrap();
        assert_eq!(arm.as_str(), "arm/v7");
        assert_eq!(arm.apk(), "armv7");
        assert_eq!(
            arm.platform(),
            Platform {
                architecture: "arm",
                variant: Some("v7")
            }
        );
        assert!(Architecture::parse("sparc").is_err());
    }

    #[test]
    fn validation_follows_apko() {
        let check = |yaml: &str, expected: Option<&str>| {
            let text = if yaml.starts_with("contents:") {
                yaml.to_string()
            } else {
                format!("contents: {{packages: [a]}}\n{yaml}")
            };
            let result = ImageConfiguration::from_yaml(&text).and_then(|c| c.validate());
            match (result, expected) {
                (Ok(()), None) => {}
                (Err(error), Some(fragment)) => {
                    let message = error.to_string();
                    assert!(message.contains(fragment), "{yaml}: {message}");
                }
                (result, expected) => panic!("{yaml}: got {result:?}, expected {expected:?}"),
            }
        };
        // The cases of apko's `TestValidate`.
        check(
            "certificates: {additional: [{name: '', content: x}]}",
            Some("has no name"),
        );
        check(
            "certificates: {additional: [{name: 'trying/../../../to/break', content: x}]}",
            Some("`trying/../../../to/break` has an invalid name"),
        );
        check(
            "certificates: {additional: [{name: 'my-cert@123!', content: x}]}",
            Some("invalid name"),
        );
        check(
            "certificates: {additional: [{name: .hidden-cert, content: x}]}",
            Some("invalid name"),
        );
        check(
            "certificates: {additional: [{name: my-cert.pem, content: x}]}",
            None,
        );
        check(
            "contents: {packages: [a], runtime_keyring: [{name: mirror.rsa.pub, content: x}]}",
            None,
        );
        check(
            "contents: {packages: [a], runtime_keyring: [{name: .mirror.rsa.pub, content: x}]}",
            Some("invalid name"),
        );
        check(
            "contents: {packages: [a], runtime_keyring: [{name: sub/mirror.rsa.pub, content: x}]}",
            Some("invalid name"),
        );
        check(
            "contents: {packages: [a], runtime_keyring: [{name: m, content: x}, {name: m, content: y}]}",
            Some("`contents.runtime_keyring` entry `m` is a duplicate"),
        );
        check(
            "contents: {packages: [a], runtime_keyring: [{content: x}]}",
            Some("has no name"),
        );
        check(
            "contents: {packages: [a], runtime_keyring: [{name: m}]}",
            Some("`contents.runtime_keyring` entry `m` has no content"),
        );
        // Layering: empty is the default; otherwise `origin` or `none` (without a budget).
        check("layering: {}", None);
        check("layering: {strategy: origin, budget: 2}", None);
        check("layering: {strategy: none}", None);
        check(
            "layering: {strategy: none, budget: 2}",
            Some("applies to the `origin` strategy only"),
        );
        check(
            "layering: {budget: 2}",
            Some("unrecognized layering strategy ``"),
        );
        check(
            "layering: {strategy: size}",
            Some("unrecognized layering strategy `size`"),
        );
        check(
            "layering: {strategy: origin, budget: -1}",
            Some("invalid image configuration"),
        );
        check("format: tar", None);
        check("format: erofs", Some("`format` is not supported"));
        check("format: squashfs", Some("invalid image configuration"));
        check(
            "entrypoint: {type: service-bundle, services: {a: /bin/a}}",
            None,
        );
        check(
            "entrypoint: {type: oneshot}",
            Some("entrypoint type `oneshot` is not supported"),
        );
        check(
            "contents: {packages: [a], baseimage: {image: ./base, apkindex: ./idx}}",
            Some("`contents.baseimage` is not supported"),
        );
    }

    #[test]
    fn layer_plans_default_to_package_layers() {
        let plan = |yaml: &str| ImageConfiguration::from_yaml(yaml).unwrap().layer_plan();
        let default = LayerPlan::Packages {
            budget: DEFAULT_LAYER_BUDGET,
        };
        assert_eq!(plan("contents: {packages: [a]}"), default);
        assert_eq!(plan("layering: {}"), default);
        assert_eq!(plan("layering: {strategy: origin}"), default);
        assert_eq!(
            plan("layering: {strategy: origin, budget: 3}"),
            LayerPlan::Packages { budget: 3 }
        );
        assert_eq!(
            plan("layering: {strategy: origin, budget: 0}"),
            LayerPlan::Packages { budget: 0 }
        );
        assert_eq!(plan("layering: {strategy: none}"), LayerPlan::Single);
    }
}
