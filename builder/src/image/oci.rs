//! OCI image formats: the image config, manifests, the multi-arch index, and the OCI image
//! layout on disk. Serialization is deterministic (fixed field order, sorted maps) so the same
//! inputs give the same digests.
//!
//! Pure apart from [`LayoutWriter`], which writes blobs into a layout directory that is built
//! next to its destination and renamed into place only when complete.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use securebuild_crds::image_config::{Architecture, ImageConfiguration};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// OCI image manifest media type.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The annotation naming a tag in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation carrying the source repository (`vcs-url`).
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
/// `PATH` when the configuration sets none (apko's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `SSL_CERT_FILE` when the configuration sets none (apko's default).
pub const DEFAULT_SSL_CERT_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// What the config's history and author name.
pub const CREATED_BY: &str = "securebuild";

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform, in an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor of `bytes`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_string(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// An OCI platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// `amd64`, `arm64`, `arm`, …
    pub architecture: String,
    /// Always `linux`.
    pub os: String,
    /// `v6`, `v7` for arm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of an architecture.
    pub fn of(arch: &Architecture) -> Self {
        let platform = arch.platform();
        Self {
            architecture: platform.architecture.to_string(),
            os: "linux".to_string(),
            variant: platform.variant.map(str::to_string),
        }
    }
}

/// Errors from computing the config or writing a layout.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A command line could not be split like a shell would.
    #[error("cannot split `{text}` into words: {reason}")]
    Split {
        /// The text.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Writing the layout failed.
    #[error("cannot write the OCI layout at {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RuntimeConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    volumes: BTreeMap<String, Empty>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct History {
    created: String,
    created_by: String,
    comment: String,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct ImageConfig {
    architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    os: String,
    created: String,
    author: String,
    config: RuntimeConfig,
    rootfs: RootFs,
    history: Vec<History>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: &'a [Descriptor],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// `sha256:<hex>` of bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// RFC 3339 (UTC, whole seconds) of seconds since the epoch.
pub fn rfc3339(epoch: i64) -> String {
    jiff::Timestamp::from_second(epoch)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The manifest and index annotations: the configuration's `annotations`, plus the source
/// repository from `vcs-url`.
pub fn annotations(config: &ImageConfiguration) -> BTreeMap<String, String> {
    let mut annotations = config.annotations.clone();
    if let Some(url) = &config.vcs_url {
        annotations
            .entry(ANNOTATION_SOURCE.to_string())
            .or_insert_with(|| url.clone());
    }
    annotations
}

/// The image config JSON for one architecture.
pub fn image_config(
    config: &ImageConfiguration,
    arch: &Architecture,
    diff_ids: &[String],
    created: i64,
) -> Result<Vec<u8>, OciError> {
    let mut env = config.environment.clone();
    env.entry("PATH".to_string())
        .or_insert_with(|| DEFAULT_PATH.to_string());
    env.entry("SSL_CERT_FILE".to_string())
        .or_insert_with(|| DEFAULT_SSL_CERT_FILE.to_string());
    let entrypoint = match &config.entrypoint {
        Some(e) if e.shell_fragment.as_deref().is_some_and(|f| !f.is_empty()) => Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            e.shell_fragment.clone().unwrap_or_default(),
        ]),
        Some(e) => match e.command.as_deref().filter(|c| !c.trim().is_empty()) {
            Some(command) => Some(split_words(command)?),
            None => None,
        },
        None => None,
    };
    let cmd = match config.cmd.as_deref().filter(|c| !c.trim().is_empty()) {
        Some(cmd) => Some(split_words(cmd)?),
        None => None,
    };
    let platform = Platform::of(arch);
    let created = rfc3339(created);
    let image = ImageConfig {
        architecture: platform.architecture,
        variant: platform.variant,
        os: platform.os,
        created: created.clone(),
        author: CREATED_BY.to_string(),
        config: RuntimeConfig {
            user: config
                .accounts
                .as_ref()
                .and_then(|a| a.run_as.clone())
                .filter(|u| !u.is_empty()),
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            entrypoint,
            cmd,
            working_dir: config.work_dir.clone(),
            labels: annotations(config),
            stop_signal: config.stop_signal.clone(),
            volumes: config
                .volumes
                .iter()
                .map(|v| (v.clone(), Empty {}))
                .collect(),
        },
        rootfs: RootFs {
            kind: "layers".to_string(),
            diff_ids: diff_ids.to_vec(),
        },
        history: vec![History {
            created,
            created_by: CREATED_BY.to_string(),
            comment: "a single-layer image of APK packages".to_string(),
        }],
    };
    Ok(serde_json::to_vec(&image).unwrap_or_default())
}

/// An image manifest.
pub fn manifest(
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST,
        config,
        layers,
        annotations,
    })
    .unwrap_or_default()
}

/// An image index over per-platform manifests.
pub fn index(manifests: &[Descriptor], annotations: &BTreeMap<String, String>) -> Vec<u8> {
    serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: MEDIA_TYPE_INDEX,
        manifests,
        annotations,
    })
    .unwrap_or_default()
}

/// Splits a command line into words like a POSIX shell (quotes and backslashes; no
/// expansion).
pub fn split_words(text: &str) -> Result<Vec<String>, OciError> {
    let error = |reason| OciError::Split {
        text: text.to_string(),
        reason,
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(error("unterminated single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(error("unterminated double quote")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(error("unterminated double quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err(error("trailing backslash")),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Writes an OCI image layout into a staging directory and moves it into place when done, so
/// a failed build never leaves a half-written layout at the destination.
#[derive(Debug)]
pub struct LayoutWriter {
    staging: tempfile::TempDir,
}

impl LayoutWriter {
    /// Starts a layout in a staging directory inside `parent`.
    pub fn new(parent: &Path) -> Result<Self, OciError> {
        fs::create_dir_all(parent).map_err(|source| OciError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
        let staging = tempfile::Builder::new()
            .prefix(".oci-layout-")
            .tempdir_in(parent)
            .map_err(|source| OciError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        let blobs = staging.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|source| OciError::Io {
            path: blobs,
            source,
        })?;
        Ok(Self { staging })
    }

    /// The staging directory (a complete layout once [`LayoutWriter::finish_index`] ran).
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Where a blob with `digest` lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.staging.path().join("blobs/sha256").join(hex)
    }

    /// Adds a blob from bytes and returns its descriptor.
    pub fn add_bytes(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, OciError> {
        let descriptor = Descriptor::of(media_type, bytes);
        let path = self.blob_path(&descriptor.digest);
        fs::write(&path, bytes).map_err(|source| OciError::Io { path, source })?;
        Ok(descriptor)
    }

    /// Moves a finished file (a layer) into the blobs.
    pub fn add_file(&self, file: &Path, descriptor: &Descriptor) -> Result<(), OciError> {
        let path = self.blob_path(&descriptor.digest);
        fs::rename(file, &path)
            .or_else(|_| fs::copy(file, &path).map(|_| ()))
            .map_err(|source| OciError::Io { path, source })
    }

    /// Writes `oci-layout` and `index.json` pointing at `root`, one entry per tag (or one
    /// untagged entry).
    pub fn finish_index(&self, root: &Descriptor, tags: &[String]) -> Result<(), OciError> {
        let layout = self.staging.path().join("oci-layout");
        fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|source| {
            OciError::Io {
                path: layout,
                source,
            }
        })?;
        let entries: Vec<Descriptor> = if tags.is_empty() {
            vec![root.clone()]
        } else {
            tags.iter()
                .map(|tag| {
                    let mut entry = root.clone();
                    entry
                        .annotations
                        .insert(ANNOTATION_REF_NAME.to_string(), tag.clone());
                    entry
                })
                .collect()
        };
        let bytes = index(&entries, &BTreeMap::new());
        let path = self.staging.path().join("index.json");
        fs::write(&path, bytes).map_err(|source| OciError::Io { path, source })
    }

    /// Moves the finished layout to `destination`, replacing an existing layout there.
    pub fn persist(self, destination: &Path) -> Result<PathBuf, OciError> {
        let staging = self.staging.keep();
        if destination.exists() {
            let old = destination.with_extension("old-layout");
            let _ = fs::remove_dir_all(&old);
            fs::rename(destination, &old).map_err(|source| OciError::Io {
                path: destination.to_path_buf(),
                source,
            })?;
            let _ = fs::remove_dir_all(&old);
        }
        fs::rename(&staging, destination).map_err(|source| OciError::Io {
            path: destination.to_path_buf(),
            source,
        })?;
        Ok(destination.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        let check = |text: &str, expected: &[&str]| {
            assert_eq!(split_words(text).unwrap(), expected, "{text}");
        };
        check("/bin/sh -l", &["/bin/sh", "-l"]);
        check("  a   b  ", &["a", "b"]);
        check("echo 'hello world'", &["echo", "hello world"]);
        check("echo \"a \\\"b\\\" c\"", &["echo", "a \"b\" c"]);
        check("a\\ b c", &["a b", "c"]);
        check("''", &[""]);
        check("", &[]);
        assert!(split_words("echo 'open").is_err());
        assert!(split_words("echo \"open").is_err());
        assert!(split_words("trailing\\").is_err());
    }

    #[test]
    fn config_has_apkos_defaults_and_is_deterministic() {
        let config = ImageConfiguration::from_yaml(
            "contents: {packages: [a]}\nentrypoint: {command: /usr/bin/hello --x}\ncmd: \"--greeting 'big world'\"\naccounts: {run-as: '65532'}\nenvironment: {FOO: bar}\nvolumes: [/data]\nannotations: {a: b}\nvcs-url: https://example.com/repo\nwork-dir: /app\nstop-signal: SIGINT\n",
        )
        .unwrap();
        let arch = Architecture::parse("armv7").unwrap();
        let bytes = image_config(&config, &arch, &["sha256:abc".into()], 1_700_000_000).unwrap();
        assert_eq!(
            bytes,
            image_config(&config, &arch, &["sha256:abc".into()], 1_700_000_000).unwrap()
        );
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["architecture"], "arm");
        assert_eq!(value["variant"], "v7");
        assert_eq!(value["created"], "2023-11-14T22:13:20Z");
        assert_eq!(
            value["config"]["Env"],
            serde_json::json!([
                "FOO=bar",
                format!("PATH={DEFAULT_PATH}"),
                format!("SSL_CERT_FILE={DEFAULT_SSL_CERT_FILE}")
            ])
        );
        assert_eq!(
            value["config"]["Entrypoint"],
            serde_json::json!(["/usr/bin/hello", "--x"])
        );
        assert_eq!(
            value["config"]["Cmd"],
            serde_json::json!(["--greeting", "big world"])
        );
        assert_eq!(value["config"]["User"], "65532");
        assert_eq!(value["config"]["WorkingDir"], "/app");
        assert_eq!(value["config"]["StopSignal"], "SIGINT");
        assert_eq!(value["config"]["Volumes"], serde_json::json!({"/data": {}}));
        assert_eq!(
            value["config"]["Labels"][ANNOTATION_SOURCE],
            "https://example.com/repo"
        );
        assert_eq!(
            value["rootfs"]["diff_ids"],
            serde_json::json!(["sha256:abc"])
        );
    }

    #[test]
    fn shell_fragment_entrypoint() {
        let config = ImageConfiguration::from_yaml(
            "contents: {packages: [a]}\nentrypoint: {shell-fragment: 'echo hi && sleep 1'}\n",
        )
        .unwrap();
        let arch = Architecture::parse("amd64").unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&image_config(&config, &arch, &[], 0).unwrap()).unwrap();
        assert_eq!(
            value["config"]["Entrypoint"],
            serde_json::json!(["/bin/sh", "-c", "echo hi && sleep 1"])
        );
        assert!(value.get("variant").is_none());
    }
}
