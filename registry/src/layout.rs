//! Reading an OCI image layout for a push (`oci-layout`, `index.json`, `blobs/sha256/<hex>`):
//! its one root, every manifest below it children first, and the config and layer blobs they
//! name, with every digest and size checked. The file names are defined here once; the builder
//! writes layouts with them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use crate::digest::{SHA256_PREFIX, finish_sha256, sha256_digest, sha256_hex};
use crate::manifests::{
    DOCKER_MANIFEST_LIST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES,
    OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE,
};

/// The layout marker file.
pub const OCI_LAYOUT_FILE: &str = "oci-layout";
/// The layout's top-level index.
pub const INDEX_FILE: &str = "index.json";
/// Directory of blobs, by algorithm.
pub const BLOBS_DIR: &str = "blobs";
/// The only digest algorithm written.
pub const DIGEST_ALGORITHM: &str = "sha256";
/// `imageLayoutVersion` of the `oci-layout` file.
pub const IMAGE_LAYOUT_VERSION: &str = "1.0.0";
/// Indexes nest at most this deep.
pub const MAX_INDEX_DEPTH: usize = 4;
/// Read buffer for hashing and streaming blob files.
pub(crate) const READ_BUFFER_BYTES: usize = 1 << 20;

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
    #[error("{path} declares layout version {version:?}, expected {IMAGE_LAYOUT_VERSION:?}")]
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

/// A manifest of the layout, ready to push.
#[derive(Debug, Clone)]
pub struct LayoutManifest {
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its exact bytes.
    pub bytes: Bytes,
}

/// Everything a push needs from a layout.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    /// The manifest `index.json` names.
    pub root: LayoutManifest,
    /// Manifests below the root, children before their parents.
    pub manifests: Vec<LayoutManifest>,
    /// Config and layer blobs with their sizes.
    pub blobs: BTreeMap<String, u64>,
}

impl Layout {
    /// The file of blob `digest`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
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

/// Reads the layout at `dir`: `oci-layout`, `index.json` (one root) and every manifest below
/// the root, each checked against its descriptor's digest and size.
pub fn read_layout(dir: &Path) -> Result<Layout, LayoutError> {
    let marker_path = dir.join(OCI_LAYOUT_FILE);
    let marker: LayoutMarker = parse_json(&marker_path, &read_small(&marker_path)?)?;
    if marker.image_layout_version != IMAGE_LAYOUT_VERSION {
        return Err(LayoutError::Version {
            path: marker_path,
            version: marker.image_layout_version,
        });
    }
    let index_path = dir.join(INDEX_FILE);
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

/// The file of blob `digest` in the layout at `dir`.
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix(SHA256_PREFIX).unwrap_or(digest);
    dir.join(BLOBS_DIR).join(DIGEST_ALGORITHM).join(hex)
}

fn check_layout_digest(path: &Path, digest: &str) -> Result<(), LayoutError> {
    if sha256_hex(digest).is_some() {
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
pub async fn verify_file(path: &Path, digest: &str, size: u64) -> Result<(), LayoutError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        std::fs::write(dir.join(INDEX_FILE), json_bytes(&top)).unwrap();
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
        let text = std::fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap();
        let mut top: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut entries = Vec::new();
        for tag in ["v1", "latest"] {
            let mut entry = top["manifests"][0].clone();
            entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
            entries.push(entry);
        }
        top["manifests"] = entries.into();
        std::fs::write(dir.path().join(INDEX_FILE), json_bytes(&top)).unwrap();
        assert_eq!(read_layout(dir.path()).unwrap().root.digest, root);

        top["manifests"] = serde_json::json!([]);
        std::fs::write(dir.path().join(INDEX_FILE), json_bytes(&top)).unwrap();
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
        std::fs::write(dir.path().join(INDEX_FILE), json_bytes(&top)).unwrap();

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
                    let text = std::fs::read_to_string(dir.join(INDEX_FILE)).unwrap();
                    let mut top: serde_json::Value = serde_json::from_str(&text).unwrap();
                    let mut other = top["manifests"][0].clone();
                    other["digest"] = sha256_digest(b"other").into();
                    top["manifests"].as_array_mut().unwrap().push(other);
                    std::fs::write(dir.join(INDEX_FILE), json_bytes(&top)).unwrap();
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
                    std::fs::write(dir.join(INDEX_FILE), json_bytes(&top)).unwrap();
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
                    std::fs::write(dir.join(INDEX_FILE), json_bytes(&top)).unwrap();
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
}
