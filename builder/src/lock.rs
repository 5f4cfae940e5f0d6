//! Lockfiles in apko's format (`version: v1`; keyring, repositories and, per architecture in
//! install order, every package with its URL, version, `C:` checksum and the byte ranges and
//! digests of its signature, control and data streams), plus the resolution digest that
//! identifies a resolved package set.
//!
//! Pure: the types, their JSON, and digests. Resolving and fetching happen in `build`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use securebuild_registry::digest::finish_sha256;

/// The lockfile format version apko writes.
pub const LOCK_VERSION: &str = "v1";

/// A lockfile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Always [`LOCK_VERSION`].
    pub version: String,
    /// The configuration the lock was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<LockConfig>,
    /// What was resolved.
    pub contents: LockContents,
}

/// The configuration a lock was made from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockConfig {
    /// The configuration file's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `sha256-<base64>` of the configuration file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checksum: String,
}

/// Keys, repositories and packages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockContents {
    /// Keys that sign the repositories.
    #[serde(default)]
    pub keyring: Vec<LockKeyring>,
    /// Repositories used only to build.
    #[serde(default)]
    pub build_repositories: Vec<LockRepository>,
    /// Repositories used to build and written into the image.
    #[serde(default)]
    pub repositories: Vec<LockRepository>,
    /// Packages, per architecture in install order.
    #[serde(default)]
    pub packages: Vec<LockPackage>,
}

/// A key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockKeyring {
    /// The key's file name.
    pub name: String,
    /// Where it came from.
    pub url: String,
}

/// A repository for one architecture.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRepository {
    /// The repository as configured (with its `@tag` prefix when tagged).
    pub name: String,
    /// The index URL or path.
    pub url: String,
    /// apk architecture.
    pub architecture: String,
}

/// A package for one architecture.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockPackage {
    /// Package name.
    pub name: String,
    /// Where the `.apk` is.
    pub url: String,
    /// Version.
    pub version: String,
    /// apk architecture.
    pub architecture: String,
    /// The signature stream.
    pub signature: LockRange,
    /// The control stream.
    pub control: LockRange,
    /// The data stream.
    pub data: LockRange,
    /// The index's `C:` checksum (`Q1` + base64 SHA-1 of the control stream).
    pub checksum: String,
}

/// A byte range of a `.apk` and its digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRange {
    /// `bytes=START-END` (inclusive, as an HTTP Range header).
    pub range: String,
    /// `sha1-<base64>` or `sha256-<base64>`.
    pub checksum: String,
}

/// Errors from reading a lockfile.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Not valid lockfile JSON.
    #[error("invalid lockfile")]
    Json {
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A version this build does not read.
    #[error("lockfile version `{version}` is not supported; expected `{LOCK_VERSION}`")]
    Version {
        /// The version found.
        version: String,
    },
}

impl LockRange {
    /// A range from offsets (`end` exclusive) and a digest with its algorithm name.
    pub fn new(start: u64, end: u64, algorithm: &str, digest: &[u8]) -> Self {
        Self {
            range: format!("bytes={start}-{}", end.saturating_sub(1)),
            checksum: checksum(algorithm, digest),
        }
    }
}

/// A lockfile checksum: `<algorithm>-<base64 digest>`, e.g. `sha256-…`.
pub fn checksum(algorithm: &str, digest: &[u8]) -> String {
    use base64::Engine;
    format!(
        "{algorithm}-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

impl Lock {
    /// Parses a lockfile.
    pub fn parse(text: &str) -> Result<Self, LockError> {
        let lock: Self = serde_json::from_str(text).map_err(|source| LockError::Json { source })?;
        if lock.version != LOCK_VERSION {
            return Err(LockError::Version {
                version: lock.version,
            });
        }
        Ok(lock)
    }

    /// The lockfile as apko writes it: two-space indented JSON and a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The apk architectures the lock covers, in first-seen order.
    pub fn architectures(&self) -> Vec<String> {
        let mut archs: Vec<String> = Vec::new();
        for package in &self.contents.packages {
            if !archs.contains(&package.architecture) {
                archs.push(package.architecture.clone());
            }
        }
        archs
    }

    /// The resolution digest of the locked packages (see [`resolution_digest`]).
    pub fn resolution_digest(&self) -> String {
        resolution_digest(self.contents.packages.iter().map(|p| {
            (
                p.architecture.as_str(),
                p.name.as_str(),
                p.version.as_str(),
                p.checksum.as_str(),
            )
        }))
    }
}

/// `sha256:<hex>` over `arch name version checksum` lines of a resolved package set, in the
/// order given (install order per architecture). Two resolutions have the same digest exactly
/// when they install the same packages in the same order; the operator compares it to decide
/// whether newer packages warrant a rebuild.
pub fn resolution_digest<'a>(
    packages: impl IntoIterator<Item = (&'a str, &'a str, &'a str, &'a str)>,
) -> String {
    let mut hasher = Sha256::new();
    for (arch, name, version, checksum) in packages {
        hasher.update(format!("{arch} {name} {version} {checksum}\n").as_bytes());
    }
    finish_sha256(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        Lock {
            version: LOCK_VERSION.into(),
            config: Some(LockConfig {
                name: "hello.apko.yaml".into(),
                checksum: "sha256-abc".into(),
            }),
            contents: LockContents {
                keyring: vec![LockKeyring {
                    name: "key.rsa.pub".into(),
                    url: "./keys/key.rsa.pub".into(),
                }],
                build_repositories: vec![],
                repositories: vec![LockRepository {
                    name: "./repo".into(),
                    url: "./repo/x86_64/APKINDEX.tar.gz".into(),
                    architecture: "x86_64".into(),
                }],
                packages: vec![LockPackage {
                    name: "hello".into(),
                    url: "./repo/x86_64/hello-1.0-r0.apk".into(),
                    version: "1.0-r0".into(),
                    architecture: "x86_64".into(),
                    signature: LockRange::new(0, 700, "sha1", &[1; 20]),
                    control: LockRange::new(700, 1200, "sha1", &[2; 20]),
                    data: LockRange::new(1200, 5000, "sha256", &[3; 32]),
                    checksum: "Q1AgICAgICAgICAgICAgICAgICA=".into(),
                }],
            },
        }
    }

    #[test]
    fn round_trips_in_apkos_shape() {
        let lock = sample();
        let json = lock.to_json();
        assert!(json.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value["contents"]["packages"][0]["control"]["range"],
            "bytes=700-1199"
        );
        assert!(
            value["contents"]["packages"][0]["data"]["checksum"]
                .as_str()
                .unwrap()
                .starts_with("sha256-")
        );
        assert_eq!(Lock::parse(&json).unwrap(), lock);
        assert_eq!(lock.architectures(), ["x86_64"]);
    }

    #[test]
    fn rejects_other_versions_and_bad_json() {
        let mut lock = sample();
        lock.version = "v2".into();
        assert!(
            Lock::parse(&lock.to_json())
                .unwrap_err()
                .to_string()
                .contains("`v2`")
        );
        assert!(Lock::parse("{").is_err());
    }

    #[test]
    fn resolution_digest_tracks_every_field_and_order() {
        let base = [
            ("x86_64", "a", "1.0-r0", "Q1a"),
            ("x86_64", "b", "2.0-r0", "Q1b"),
        ];
        let digest = resolution_digest(base);
        assert_eq!(digest, resolution_digest(base));
        assert!(digest.starts_with("sha256:"));
        let mut changed = base;
        changed[1].3 = "Q1c";
        assert_ne!(digest, resolution_digest(changed));
        let swapped = [base[1], base[0]];
        assert_ne!(digest, resolution_digest(swapped));
        assert_eq!(
            sample().resolution_digest(),
            resolution_digest([("x86_64", "hello", "1.0-r0", "Q1AgICAgICAgICAgICAgICAgICA=")])
        );
    }
}
