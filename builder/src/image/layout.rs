//! OCI image manifests, image indexes and descriptors, and writing them with their blobs as an
//! OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/<hex>`).
//!
//! JSON is written deterministically: fields in go-containerregistry's order, maps sorted, no
//! whitespace. A layout is built in a hidden directory next to its destination and renamed into
//! place only when complete, so a failed build never leaves a half-written layout where the
//! finished one belongs. Blobs are streamed from files or readers and content-addressed; nothing
//! here pushes to a registry.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use securebuild_crds::image_config::{Architecture, ImageConfiguration};
use serde::Serialize;
use sha2::{Digest, Sha256};

use securebuild_registry::layout::{
    BLOBS_DIR, DIGEST_ALGORITHM, IMAGE_LAYOUT_VERSION, INDEX_FILE, OCI_LAYOUT_FILE,
};
use securebuild_registry::manifests::{
    OCI_INDEX_MEDIA_TYPE as MEDIA_TYPE_IMAGE_INDEX,
    OCI_MANIFEST_MEDIA_TYPE as MEDIA_TYPE_IMAGE_MANIFEST,
};

use super::config::{self, ImageConfigError, OS_LINUX};

/// Annotation naming a tag in a layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// `schemaVersion` of manifests and indexes.
pub const SCHEMA_VERSION: u32 = 2;

/// Longest tag accepted in `index.json`.
const MAX_TAG_LEN: usize = 512;
/// Copy buffer for streamed blobs.
const COPY_BUFFER_SIZE: usize = 256 * 1024;

/// Where an image runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Platform {
    /// OCI architecture, e.g. `arm64`.
    pub architecture: String,
    /// Operating system: `linux`.
    pub os: String,
    /// Architecture variant, e.g. `v7`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The Linux platform of an architecture.
    pub fn linux(arch: &Architecture) -> Self {
        let platform = arch.platform();
        Self {
            architecture: platform.architecture.to_string(),
            os: OS_LINUX.to_string(),
            variant: platform.variant.map(str::to_string),
        }
    }
}

/// A reference to content by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    /// Media type of the content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Annotations (sorted).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform, for manifests listed in an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// The descriptor of `bytes`.
    pub fn of_bytes(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_string(),
            size: bytes.len() as u64,
            digest: sha256_digest(bytes),
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

pub use securebuild_registry::digest::sha256_digest;

/// An OCI image manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageManifest {
    /// The config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

impl ImageManifest {
    /// The manifest JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, LayoutError> {
        serde_json::to_vec(&ManifestJson {
            schema_version: SCHEMA_VERSION,
            media_type: MEDIA_TYPE_IMAGE_MANIFEST,
            config: &self.config,
            layers: &self.layers,
            annotations: &self.annotations,
        })
        .map_err(LayoutError::Json)
    }
}

/// An OCI image index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageIndex {
    /// The listed manifests (or indexes).
    pub manifests: Vec<Descriptor>,
    /// Index annotations.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexJson<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: &'a [Descriptor],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

impl ImageIndex {
    /// The index JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, LayoutError> {
        serde_json::to_vec(&IndexJson {
            schema_version: SCHEMA_VERSION,
            media_type: MEDIA_TYPE_IMAGE_INDEX,
            manifests: &self.manifests,
            annotations: &self.annotations,
        })
        .map_err(LayoutError::Json)
    }
}

/// Annotations of a multi-architecture index, as apko sets them: the image annotations and
/// `org.opencontainers.image.created` (the build's fixed creation time, so still deterministic).
pub fn index_annotations(
    image: &ImageConfiguration,
    created: i64,
) -> Result<BTreeMap<String, String>, ImageConfigError> {
    let mut annotations = config::annotations(image);
    annotations.insert(
        config::ANNOTATION_CREATED.to_string(),
        config::rfc3339(created)?,
    );
    Ok(annotations)
}

/// Why a layout could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The destination has no file name or parent (e.g. `/`).
    #[error("{path} cannot be an OCI layout destination")]
    InvalidTarget {
        /// The destination.
        path: PathBuf,
    },
    /// The destination exists and is not a directory.
    #[error("{path} exists and is not a directory; refusing to replace it with an OCI layout")]
    TargetNotDirectory {
        /// The destination.
        path: PathBuf,
    },
    /// A file or directory of the layout could not be written, read or moved.
    #[error("cannot write the OCI layout: {path}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A streamed blob's digest is not the one expected.
    #[error("{path} has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// The file streamed.
        path: PathBuf,
        /// The expected digest.
        expected: String,
        /// Its actual digest.
        actual: String,
    },
    /// A tag that cannot be an `org.opencontainers.image.ref.name`.
    #[error("invalid tag `{tag}` for an OCI layout")]
    InvalidTag {
        /// The tag.
        tag: String,
    },
    /// The descriptor `index.json` would point at is not a blob of the layout.
    #[error("the layout has no blob {digest} for its index.json to point at")]
    MissingBlob {
        /// The digest.
        digest: String,
    },
    /// Encoding JSON failed.
    #[error("cannot encode OCI JSON")]
    Json(#[source] serde_json::Error),
}

/// A blob added to a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl Blob {
    /// A descriptor of the blob.
    pub fn descriptor(&self, media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            size: self.size,
            digest: self.digest.clone(),
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

/// Builds an OCI image layout next to its destination and moves it into place on
/// [`LayoutWriter::finish`]. Dropping the writer without finishing removes the partial layout.
#[derive(Debug)]
pub struct LayoutWriter {
    target: PathBuf,
    parent: PathBuf,
    name: String,
    staging: tempfile::TempDir,
    next_temporary: u64,
}

impl LayoutWriter {
    /// Starts a layout that [`LayoutWriter::finish`] will put at `target`; an existing layout
    /// there is replaced only then.
    pub fn create(target: &Path) -> Result<Self, LayoutError> {
        let invalid = || LayoutError::InvalidTarget {
            path: target.to_path_buf(),
        };
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(invalid)?
            .to_string();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            Some(_) => PathBuf::from("."),
            None => return Err(invalid()),
        };
        if target.exists() && !target.is_dir() {
            return Err(LayoutError::TargetNotDirectory {
                path: target.to_path_buf(),
            });
        }
        fs::create_dir_all(&parent).map_err(io_error(&parent))?;
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempdir_in(&parent)
            .map_err(io_error(&parent))?;
        let blobs = staging.path().join(BLOBS_DIR).join(DIGEST_ALGORITHM);
        fs::create_dir_all(&blobs).map_err(io_error(&blobs))?;
        Ok(Self {
            target: target.to_path_buf(),
            parent,
            name,
            staging,
            next_temporary: 0,
        })
    }

    fn blobs_dir(&self) -> PathBuf {
        self.staging.path().join(BLOBS_DIR).join(DIGEST_ALGORITHM)
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix(DIGEST_ALGORITHM)?.strip_prefix(':')?;
        let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.blobs_dir().join(hex))
    }

    /// Adds a blob from bytes.
    pub fn add_bytes(&mut self, bytes: &[u8]) -> Result<Blob, LayoutError> {
        self.add_reader(bytes)
    }

    /// Adds a blob by streaming a file, checking its digest when `expected` is given.
    pub fn add_file(&mut self, path: &Path, expected: Option<&str>) -> Result<Blob, LayoutError> {
        let file = File::open(path).map_err(io_error(path))?;
        let blob = self.add_stream(file, path)?;
        if let Some(expected) = expected
            && expected != blob.digest
        {
            return Err(LayoutError::DigestMismatch {
                path: path.to_path_buf(),
                expected: expected.to_string(),
                actual: blob.digest,
            });
        }
        Ok(blob)
    }

    /// Adds a byte range of a file as a blob (a package's data section), checking its digest.
    pub fn add_range(
        &mut self,
        path: &Path,
        range: std::ops::Range<u64>,
        expected: &str,
    ) -> Result<Blob, LayoutError> {
        use std::io::{Seek as _, SeekFrom};
        let mut file = File::open(path).map_err(io_error(path))?;
        file.seek(SeekFrom::Start(range.start))
            .map_err(io_error(path))?;
        let blob = self.add_stream(file.take(range.end.saturating_sub(range.start)), path)?;
        if expected != blob.digest {
            return Err(LayoutError::DigestMismatch {
                path: path.to_path_buf(),
                expected: expected.to_string(),
                actual: blob.digest,
            });
        }
        Ok(blob)
    }

    /// Adds a blob by streaming a reader.
    pub fn add_reader(&mut self, reader: impl Read) -> Result<Blob, LayoutError> {
        let source = self.staging.path().to_path_buf();
        self.add_stream(reader, &source)
    }

    fn add_stream(&mut self, mut reader: impl Read, source: &Path) -> Result<Blob, LayoutError> {
        self.next_temporary += 1;
        let temporary = self
            .blobs_dir()
            .join(format!(".incoming-{}", self.next_temporary));
        let result = (|| {
            let mut out = File::create(&temporary).map_err(io_error(&temporary))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut buffer = vec![0u8; COPY_BUFFER_SIZE];
            loop {
                let read = match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_error(source)(e)),
                };
                hasher.update(&buffer[..read]);
                out.write_all(&buffer[..read])
                    .map_err(io_error(&temporary))?;
                size += read as u64;
            }
            out.sync_all().map_err(io_error(&temporary))?;
            let hex = hex::encode(hasher.finalize());
            let destination = self.blobs_dir().join(&hex);
            fs::rename(&temporary, &destination).map_err(io_error(&destination))?;
            Ok(Blob {
                digest: format!("{DIGEST_ALGORITHM}:{hex}"),
                size,
            })
        })();
        if result.is_err() {
            // Best effort: the staging directory goes away with the writer anyway.
            let _ = fs::remove_file(&temporary);
        }
        result
    }

    /// Writes `oci-layout` and `index.json` (one entry for `root` per tag, each annotated with
    /// its `org.opencontainers.image.ref.name`, or one untagged entry), then moves the layout to
    /// its destination, replacing any previous one. Returns the destination.
    pub fn finish(self, root: &Descriptor, tags: &[String]) -> Result<PathBuf, LayoutError> {
        let mut tags: Vec<&String> = tags.iter().collect();
        tags.sort();
        tags.dedup();
        for tag in &tags {
            if !valid_ref_name(tag) {
                return Err(LayoutError::InvalidTag {
                    tag: tag.to_string(),
                });
            }
        }
        match self.blob_path(&root.digest) {
            Some(path) if path.is_file() => {}
            _ => {
                return Err(LayoutError::MissingBlob {
                    digest: root.digest.clone(),
                });
            }
        }
        let manifests: Vec<Descriptor> = if tags.is_empty() {
            vec![root.clone()]
        } else {
            tags.iter()
                .map(|tag| {
                    let mut entry = root.clone();
                    entry
                        .annotations
                        .insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
                    entry
                })
                .collect()
        };
        let index = ImageIndex {
            manifests,
            annotations: BTreeMap::new(),
        }
        .to_json()?;
        let marker = serde_json::to_vec(&LayoutMarker {
            image_layout_version: IMAGE_LAYOUT_VERSION,
        })
        .map_err(LayoutError::Json)?;
        let staging = self.staging.path().to_path_buf();
        write_synced(&staging.join(OCI_LAYOUT_FILE), &marker)?;
        write_synced(&staging.join(INDEX_FILE), &index)?;
        for dir in [
            staging.join(BLOBS_DIR).join(DIGEST_ALGORITHM),
            staging.join(BLOBS_DIR),
            staging.clone(),
        ] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(io_error(&dir))?;
            sync_dir(&dir)?;
        }
        self.move_into_place()
    }

    /// Renames the staging directory to the destination, moving a previous layout aside
    /// first and removing it afterwards.
    fn move_into_place(self) -> Result<PathBuf, LayoutError> {
        let Self {
            target,
            parent,
            name,
            staging,
            ..
        } = self;
        let previous = if target.exists() {
            let aside = tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(".previous")
                .tempdir_in(&parent)
                .map_err(io_error(&parent))?;
            fs::rename(&target, aside.path()).map_err(io_error(&target))?;
            Some(aside)
        } else {
            None
        };
        if let Err(source) = fs::rename(staging.path(), &target) {
            if let Some(aside) = &previous {
                // Put the previous layout back; the new one is dropped with `staging`.
                let _ = fs::rename(aside.path(), &target);
            }
            return Err(LayoutError::Io {
                path: target,
                source,
            });
        }
        // The staging directory now is the destination: it must not be cleaned up.
        let _ = staging.keep();
        sync_dir(&parent)?;
        // `previous` (the old layout, moved aside) is removed when it drops here.
        drop(previous);
        Ok(target)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LayoutMarker<'a> {
    image_layout_version: &'a str,
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let mut file = File::create(path).map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

fn sync_dir(path: &Path) -> Result<(), LayoutError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(path))
}

/// Whether a tag fits the OCI layout's `ref.name` grammar: components of alphanumerics joined
/// by `-`, `.`, `_`, `:`, `@`, `+` or `--`, separated by `/`.
fn valid_ref_name(tag: &str) -> bool {
    if tag.is_empty() || tag.len() > MAX_TAG_LEN {
        return false;
    }
    tag.split('/').all(|component| {
        let bytes = component.as_bytes();
        let is_separator = |b: u8| matches!(b, b'-' | b'.' | b'_' | b':' | b'@' | b'+');
        if bytes.is_empty()
            || !bytes[0].is_ascii_alphanumeric()
            || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
        {
            return false;
        }
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_alphanumeric() {
                i += 1;
                continue;
            }
            if !is_separator(bytes[i]) {
                return false;
            }
            // One separator, or exactly `--`.
            let double_dash = bytes[i] == b'-' && bytes.get(i + 1) == Some(&b'-');
            let next = if double_dash { i + 2 } else { i + 1 };
            if !bytes.get(next).is_some_and(|b| b.is_ascii_alphanumeric()) {
                return false;
            }
            i = next;
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::config::{ConfigInput, MEDIA_TYPE_IMAGE_CONFIG, image_config_json};
    use crate::image::entry::LayerEntry;
    use crate::image::layer::{Compression, LayerSink, LayerWriter};
    use std::process::Command;

    #[test]
    fn manifest_and_index_json() {
        let config = Descriptor::of_bytes(MEDIA_TYPE_IMAGE_CONFIG, b"{}");
        let layer = Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: 3,
            digest: sha256_digest(b"abc"),
            annotations: BTreeMap::new(),
            platform: None,
        };
        let manifest = ImageManifest {
            config: config.clone(),
            layers: vec![layer.clone()],
            annotations: BTreeMap::from([("b".to_string(), "2".to_string())]),
        };
        let json = String::from_utf8(manifest.to_json().unwrap()).unwrap();
        assert_eq!(
            json,
            format!(
                concat!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                    r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{}"}},"#,
                    r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":3,"digest":"{}"}}],"#,
                    r#""annotations":{{"b":"2"}}}}"#
                ),
                config.digest, layer.digest
            )
        );
        let mut entry = Descriptor::of_bytes(MEDIA_TYPE_IMAGE_MANIFEST, json.as_bytes());
        entry.platform = Some(Platform::linux(&Architecture::parse("arm/v6").unwrap()));
        let index = ImageIndex {
            manifests: vec![entry.clone()],
            annotations: BTreeMap::new(),
        };
        assert_eq!(
            String::from_utf8(index.to_json().unwrap()).unwrap(),
            format!(
                concat!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","#,
                    r#""manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":{},"digest":"{}","#,
                    r#""platform":{{"architecture":"arm","os":"linux","variant":"v6"}}}}]}}"#
                ),
                entry.size, entry.digest
            )
        );
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn index_annotations_include_the_creation_time() {
        let image = ImageConfiguration {
            annotations: BTreeMap::from([("a".to_string(), "1".to_string())]),
            ..ImageConfiguration::default()
        };
        let annotations = index_annotations(&image, 86400).unwrap();
        assert_eq!(annotations["a"], "1");
        assert_eq!(
            annotations["org.opencontainers.image.created"],
            "1970-01-02T00:00:00Z"
        );
    }

    #[test]
    fn tag_grammar() {
        let check = |tag: &str, valid: bool| assert_eq!(valid_ref_name(tag), valid, "{tag}");
        check("latest", true);
        check("v1.2.3", true);
        check("1.25-r0", true);
        check("registry.example.com/team/app:v1", true);
        check("a--b", true);
        check("a---b", false);
        check("", false);
        check("-leading", false);
        check("trailing.", false);
        check("two..dots", false);
        check("sp ace", false);
        check("a//b", false);
        check(&"x".repeat(513), false);
    }

    /// A tiny gzip layer with `etc/hello` and `bin -> usr/bin`, written to `dir/layer`.
    fn tiny_layer(dir: &Path) -> (PathBuf, crate::image::layer::LayerDigests) {
        let path = dir.join("layer.tar.gz");
        let file = File::create(&path).unwrap();
        let sink = LayerSink::new(file, Compression::default()).unwrap();
        let mut writer = LayerWriter::new(sink);
        writer
            .append(&LayerEntry::directory("etc", 0o755, 0))
            .unwrap();
        let content = b"hello from securebuild\n";
        writer
            .append_file(
                &LayerEntry::file("etc/hello", content.len() as u64, 0o644, 0),
                &content[..],
            )
            .unwrap();
        writer
            .append(&LayerEntry::directory("usr", 0o755, 0))
            .unwrap();
        writer
            .append(&LayerEntry::directory("usr/bin", 0o755, 0))
            .unwrap();
        writer
            .append(&LayerEntry::symlink("bin", "usr/bin", 0))
            .unwrap();
        let digests = writer.finish().unwrap().finish().unwrap();
        (path, digests)
    }

    /// Builds a single-architecture (amd64) image behind an index, tagged `latest` and `v1`.
    fn build_layout(work: &Path, target: &Path) -> (Descriptor, Descriptor, String) {
        let (layer_path, digests) = tiny_layer(work);
        let image = ImageConfiguration::from_yaml(
            "contents: {packages: [x]}\nentrypoint: {command: /bin/sh -c 'cat /etc/hello'}\n",
        )
        .unwrap();
        let arch = Architecture::parse("amd64").unwrap();
        let diff_ids = [digests.diff_id.clone()];
        let config_bytes = image_config_json(&ConfigInput {
            image: &image,
            arch: &arch,
            diff_ids: &diff_ids,
            created: 1_700_000_000,
            user: None,
        })
        .unwrap();

        let mut writer = LayoutWriter::create(target).unwrap();
        let layer = writer
            .add_file(&layer_path, Some(&digests.digest))
            .unwrap()
            .descriptor(digests.media_type);
        let config = writer
            .add_bytes(&config_bytes)
            .unwrap()
            .descriptor(MEDIA_TYPE_IMAGE_CONFIG);
        let manifest = ImageManifest {
            config,
            layers: vec![layer.clone()],
            annotations: config::annotations(&image),
        }
        .to_json()
        .unwrap();
        let mut manifest_descriptor = writer
            .add_reader(manifest.as_slice())
            .unwrap()
            .descriptor(MEDIA_TYPE_IMAGE_MANIFEST);
        manifest_descriptor.platform = Some(Platform::linux(&arch));
        let index = ImageIndex {
            manifests: vec![manifest_descriptor.clone()],
            annotations: index_annotations(&image, 1_700_000_000).unwrap(),
        }
        .to_json()
        .unwrap();
        let index_descriptor = writer
            .add_bytes(&index)
            .unwrap()
            .descriptor(MEDIA_TYPE_IMAGE_INDEX);
        let written = writer
            .finish(
                &index_descriptor,
                &["v1".to_string(), "latest".to_string(), "v1".to_string()],
            )
            .unwrap();
        assert_eq!(written, target);
        (index_descriptor, layer, manifest_descriptor.digest)
    }

    fn leftovers(parent: &Path) -> Vec<String> {
        fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    #[test]
    fn layout_on_disk() {
        let work = tempfile::tempdir().unwrap();
        let target = work.path().join("out").join("image");
        let (index, layer, _) = build_layout(work.path(), &target);
        let marker = fs::read_to_string(target.join(OCI_LAYOUT_FILE)).unwrap();
        assert_eq!(marker, r#"{"imageLayoutVersion":"1.0.0"}"#);
        let top: serde_json::Value =
            serde_json::from_slice(&fs::read(target.join(INDEX_FILE)).unwrap()).unwrap();
        let entries = top["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["annotations"][ANNOTATION_REF_NAME], "latest");
        assert_eq!(entries[1]["annotations"][ANNOTATION_REF_NAME], "v1");
        assert_eq!(entries[0]["digest"], index.digest.as_str());
        assert_eq!(entries[0]["mediaType"], MEDIA_TYPE_IMAGE_INDEX);
        // Every blob is named by its digest.
        let blobs = target.join(BLOBS_DIR).join(DIGEST_ALGORITHM);
        let mut names = Vec::new();
        for entry in fs::read_dir(&blobs).unwrap() {
            let entry = entry.unwrap();
            let bytes = fs::read(entry.path()).unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert_eq!(sha256_digest(&bytes), format!("sha256:{name}"));
            names.push(name);
        }
        assert_eq!(names.len(), 4);
        assert!(names.contains(&layer.digest["sha256:".len()..].to_string()));
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        assert!(leftovers(target.parent().unwrap()).is_empty());

        // Building again replaces the layout and gives the same bytes.
        let before = fs::read(target.join(INDEX_FILE)).unwrap();
        build_layout(work.path(), &target);
        assert_eq!(fs::read(target.join(INDEX_FILE)).unwrap(), before);
        assert!(leftovers(target.parent().unwrap()).is_empty());
    }

    #[test]
    fn failures_leave_nothing_behind() {
        let work = tempfile::tempdir().unwrap();
        let target = work.path().join("image");

        let mut writer = LayoutWriter::create(&target).unwrap();
        let blob = writer.add_bytes(b"{}").unwrap();
        let err = writer
            .finish(
                &blob.descriptor(MEDIA_TYPE_IMAGE_INDEX),
                &["bad tag".into()],
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid tag `bad tag` for an OCI layout");
        assert!(!target.exists());
        assert!(leftovers(work.path()).is_empty());

        let writer = LayoutWriter::create(&target).unwrap();
        let missing = Descriptor::of_bytes(MEDIA_TYPE_IMAGE_INDEX, b"not added");
        let err = writer.finish(&missing, &[]).unwrap_err();
        assert!(matches!(err, LayoutError::MissingBlob { .. }), "{err}");
        assert!(!target.exists());

        let mut writer = LayoutWriter::create(&target).unwrap();
        let file = work.path().join("blob");
        fs::write(&file, b"content").unwrap();
        let err = writer
            .add_file(&file, Some(&sha256_digest(b"other")))
            .unwrap_err();
        assert!(matches!(err, LayoutError::DigestMismatch { .. }), "{err}");
        drop(writer);
        assert!(leftovers(work.path()).is_empty());

        fs::write(&target, b"a file").unwrap();
        let err = LayoutWriter::create(&target).unwrap_err();
        assert!(
            matches!(err, LayoutError::TargetNotDirectory { .. }),
            "{err}"
        );
        assert!(matches!(
            LayoutWriter::create(Path::new("/")).unwrap_err(),
            LayoutError::InvalidTarget { .. }
        ));
    }

    fn run(command: &mut Command) -> String {
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn skopeo_and_umoci_accept_the_layout() {
        let skopeo = Path::new("/usr/bin/skopeo");
        let umoci = Path::new("/usr/bin/umoci");
        assert!(
            skopeo.exists() && umoci.exists(),
            "skopeo and umoci are required"
        );
        let work = tempfile::tempdir().unwrap();
        let target = work.path().join("image");
        let (index, layer, manifest_digest) = build_layout(work.path(), &target);
        let reference = format!("oci:{}:latest", target.display());

        let inspected: serde_json::Value = serde_json::from_str(&run(Command::new(skopeo)
            .args([
                "--override-os",
                "linux",
                "--override-arch",
                "amd64",
                "inspect",
            ])
            .arg(&reference)))
        .unwrap();
        assert_eq!(inspected["Architecture"], "amd64");
        assert_eq!(inspected["Os"], "linux");
        // skopeo reports the digest of what the tag names: the index.
        assert_eq!(inspected["Digest"], index.digest.as_str());
        assert_eq!(inspected["Layers"], serde_json::json!([layer.digest]));
        assert_eq!(inspected["Created"], "2023-11-14T22:13:20Z");
        let raw: serde_json::Value = serde_json::from_str(&run(Command::new(skopeo)
            .args(["inspect", "--raw"])
            .arg(&reference)))
        .unwrap();
        assert_eq!(raw["manifests"][0]["digest"], manifest_digest.as_str());
        assert_eq!(raw["manifests"][0]["platform"]["architecture"], "amd64");
        let config: serde_json::Value = serde_json::from_str(&run(Command::new(skopeo)
            .args([
                "--override-os",
                "linux",
                "--override-arch",
                "amd64",
                "inspect",
                "--config",
            ])
            .arg(&reference)))
        .unwrap();
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/bin/sh", "-c", "cat /etc/hello"])
        );

        let image_ref = format!("{}:v1", target.display());
        let stat = run(Command::new(umoci).args(["stat", "--image", &image_ref]));
        assert!(stat.contains("LAYER"), "{stat}");
        let bundle = work.path().join("bundle");
        run(Command::new(umoci)
            .args(["unpack", "--rootless", "--image", &image_ref])
            .arg(&bundle));
        let rootfs = bundle.join("rootfs");
        assert_eq!(
            fs::read_to_string(rootfs.join("etc/hello")).unwrap(),
            "hello from securebuild\n"
        );
        assert_eq!(
            fs::read_link(rootfs.join("bin")).unwrap(),
            PathBuf::from("usr/bin")
        );
        let runtime: serde_json::Value =
            serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
        assert_eq!(
            runtime["process"]["args"],
            serde_json::json!(["/bin/sh", "-c", "cat /etc/hello"])
        );
    }
}
