//! Writes a [`Tree`] as one layer, in the tree's order, streaming file contents from the package
//! spools through the deterministic tar writer and compressor, and keeps finished layers in a
//! [`LayerCache`] so that an unchanged rebuild does not install or compress anything again.
//!
//! Memory stays bounded whatever the image size: only headers, one read buffer and a bounded
//! number of open spool files are held at a time. The cache never decides what a layer
//! contains: its key is computed by the caller from every input of the layer, and an entry is
//! only trusted after the layout has re-hashed it against the digest it was stored with.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest as _, Sha256};

use super::entry::EntryKind;
use super::install::Spools;
use super::layer::{
    Compression, LayerDigests, LayerError, LayerSink, LayerWriter, MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD,
};
use super::tree::{Content, Node, Tree};

/// Spool files kept open at once while a layer is written.
const MAX_OPEN_SPOOLS: usize = 256;
/// Buffer between the tar writer and the layer file.
const LAYER_WRITE_BUFFER_SIZE: usize = 1024 * 1024;

/// Subdirectory of the cache root holding finished layers.
pub const CACHE_LAYERS_DIR: &str = "layers";
/// Finished layers kept in the cache; the least recently stored are removed beyond this.
pub const MAX_CACHED_LAYERS: usize = 8;
/// Suffix of a cached layer blob.
const LAYER_SUFFIX: &str = ".layer";
/// Suffix of a cached layer's description.
const ENTRY_SUFFIX: &str = ".json";
/// Prefix of a layer being written into the cache.
const INCOMING_PREFIX: &str = ".incoming-";
/// Changes whenever the bytes a given input produces may change: old entries stop matching.
const LAYER_CACHE_FORMAT: &str = "securebuild layer cache 1";

/// Errors from writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The layer file could not be created or written.
    #[error("cannot write layer {path}")]
    Io {
        /// The layer file.
        path: std::path::PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A spool could not be read back.
    #[error("cannot read the content of {path} from spool {spool}")]
    Spool {
        /// The image path whose content was being read.
        path: String,
        /// The spool index.
        spool: usize,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The tar writer or compressor failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// Writes `tree` as a layer file at `path`, returning its digests.
pub fn write_layer(
    tree: &Tree,
    spools: &Spools,
    path: &Path,
    compression: Compression,
) -> Result<LayerDigests, WriteError> {
    write_nodes(tree.iter(), spools, path, compression)
}

/// Writes `nodes`, in the order given, as a layer file at `path`, returning its digests.
pub fn write_nodes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    spools: &Spools,
    path: &Path,
    compression: Compression,
) -> Result<LayerDigests, WriteError> {
    let io_error = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io_error)?;
    let (digests, mut out) = write_nodes_to(
        nodes,
        spools,
        BufWriter::with_capacity(LAYER_WRITE_BUFFER_SIZE, file),
        compression,
    )?;
    out.flush().map_err(io_error)?;
    Ok(digests)
}

/// Writes `tree` as a layer into `out`; returns its digests and `out`.
pub fn write_layer_to<W: Write>(
    tree: &Tree,
    spools: &Spools,
    out: W,
    compression: Compression,
) -> Result<(LayerDigests, W), WriteError> {
    write_nodes_to(tree.iter(), spools, out, compression)
}

/// Writes `nodes`, in the order given, as a layer into `out`; returns its digests and `out`.
pub fn write_nodes_to<'a, W: Write>(
    nodes: impl IntoIterator<Item = &'a Node>,
    spools: &Spools,
    out: W,
    compression: Compression,
) -> Result<(LayerDigests, W), WriteError> {
    let sink = LayerSink::new(out, compression)?;
    let mut writer = LayerWriter::new(sink);
    let mut handles = SpoolHandles::new(spools);
    for node in nodes {
        match (&node.entry.kind, &node.content) {
            (EntryKind::File { .. }, Content::Empty) => {
                writer.append_file(&node.entry, io::empty())?;
            }
            (EntryKind::File { .. }, Content::Inline(bytes)) => {
                writer.append_file(&node.entry, &bytes[..])?;
            }
            (EntryKind::File { .. }, Content::Spool { spool, offset, len }) => {
                let file = handles.get(*spool).map_err(|source| WriteError::Spool {
                    path: node.entry.path.clone(),
                    spool: *spool,
                    source,
                })?;
                let range = RangeReader {
                    file,
                    offset: *offset,
                    remaining: *len,
                };
                writer.append_file(&node.entry, range)?;
            }
            _ => writer.append(&node.entry)?,
        }
    }
    let sink = writer.finish()?;
    Ok(sink.finish_into_inner()?)
}

/// Open spool files, at most [`MAX_OPEN_SPOOLS`] at a time (the oldest opened is closed first).
struct SpoolHandles<'a> {
    spools: &'a Spools,
    open: Vec<Option<File>>,
    order: VecDeque<usize>,
}

impl<'a> SpoolHandles<'a> {
    fn new(spools: &'a Spools) -> Self {
        Self {
            spools,
            open: Vec::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&mut self, spool: usize) -> io::Result<&File> {
        if self.open.len() <= spool {
            self.open.resize_with(spool + 1, || None);
        }
        if self.open[spool].is_none() {
            let path = self.spools.path(spool).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no spool {spool}"))
            })?;
            let file = File::open(path)?;
            if self.order.len() == MAX_OPEN_SPOOLS
                && let Some(oldest) = self.order.pop_front()
            {
                self.open[oldest] = None;
            }
            self.order.push_back(spool);
            self.open[spool] = Some(file);
        }
        self.open[spool]
            .as_ref()
            .ok_or_else(|| io::Error::other("spool handle vanished"))
    }
}

/// Reads `remaining` bytes of `file` from `offset` with positional reads (no seeking, so one
/// handle serves every range of its spool).
struct RangeReader<'a> {
    file: &'a File,
    offset: u64,
    remaining: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.remaining).map_or(buf.len(), |left| left.min(buf.len()));
        if want == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += read as u64;
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// Errors from the layer cache. A failing cache never fails a build: callers log these and
/// build without it.
#[derive(Debug, thiserror::Error)]
pub enum LayerCacheError {
    /// A cache file could not be created, written, renamed or removed.
    #[error("layer cache {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// An entry's description could not be encoded.
    #[error("layer cache entry {path} cannot be encoded")]
    Encode {
        /// The description file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// The identity of a layer: a SHA-256 over every input that determines its bytes, plus the
/// cache format and the running builder (its version and executable), so that another
/// builder never reuses this one's layers.
#[derive(Clone, Debug)]
pub struct LayerKeyBuilder {
    hasher: Sha256,
}

impl Default for LayerKeyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerKeyBuilder {
    /// A key over the cache format and the running builder.
    pub fn new() -> Self {
        let mut builder = Self {
            hasher: Sha256::new(),
        };
        builder.field("format", LAYER_CACHE_FORMAT.as_bytes());
        builder.field("version", env!("CARGO_PKG_VERSION").as_bytes());
        builder.field("executable", executable_identity().as_bytes());
        builder
    }

    /// Adds one named input. Names and values are length-prefixed, so no two different
    /// sequences of fields hash the same bytes.
    pub fn field(&mut self, name: &str, value: &[u8]) -> &mut Self {
        for part in [name.as_bytes(), value] {
            self.hasher.update((part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
        self
    }

    /// The key, as lowercase hex.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

/// The running executable's path, size and modification time: a rebuilt builder gets new
/// keys. Empty when the platform cannot tell.
fn executable_identity() -> String {
    let Ok(path) = std::env::current_exe() else {
        return String::new();
    };
    let Ok(metadata) = std::fs::metadata(&path) else {
        return path.display().to_string();
    };
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    format!("{}\n{}\n{modified}", path.display(), metadata.len())
}

/// A finished layer in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedLayer {
    /// The layer blob.
    pub path: PathBuf,
    /// Its digests, as they were when it was stored (re-check them when copying it).
    pub digests: LayerDigests,
    /// What the build derived from the filesystem alongside the layer (the OCI `User`,
    /// release information, …), by name: a cache hit must give the build every value that
    /// installing the packages would have given it.
    pub facts: BTreeMap<String, String>,
}

/// What a cache entry's description holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct EntryFile {
    diff_id: String,
    digest: String,
    size: u64,
    uncompressed_size: u64,
    media_type: String,
    facts: BTreeMap<String, String>,
}

/// Finished layers under `<cache>/layers/`: `<key>.layer` (the blob) and `<key>.json` (its
/// digests), the description written last so that a half-stored entry is never found.
#[derive(Clone, Debug)]
pub struct LayerCache {
    dir: PathBuf,
}

/// A layer being written into the cache; removed on drop unless [`LayerCache::commit`]ted.
#[derive(Debug)]
pub struct IncomingLayer {
    file: tempfile::TempPath,
}

impl IncomingLayer {
    /// Where to write the layer.
    pub fn path(&self) -> &Path {
        &self.file
    }
}

impl LayerCache {
    /// The layer cache under the cache root `cache_dir`.
    pub fn new(cache_dir: &Path) -> Self {
        Self {
            dir: cache_dir.join(CACHE_LAYERS_DIR),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry stored under `key`, if there is a complete one.
    pub fn lookup(&self, key: &str) -> Option<CachedLayer> {
        let text = std::fs::read(self.dir.join(format!("{key}{ENTRY_SUFFIX}"))).ok()?;
        let entry: EntryFile = serde_json::from_slice(&text).ok()?;
        let media_type = [
            MEDIA_TYPE_LAYER_TAR,
            MEDIA_TYPE_LAYER_GZIP,
            MEDIA_TYPE_LAYER_ZSTD,
        ]
        .into_iter()
        .find(|known| *known == entry.media_type)?;
        let path = self.dir.join(format!("{key}{LAYER_SUFFIX}"));
        let size = std::fs::metadata(&path).ok()?.len();
        (size == entry.size).then_some(CachedLayer {
            path,
            digests: LayerDigests {
                diff_id: entry.diff_id,
                digest: entry.digest,
                size: entry.size,
                uncompressed_size: entry.uncompressed_size,
                media_type,
            },
            facts: entry.facts,
        })
    }

    /// A new file in the cache directory to write a layer into.
    pub fn incoming(&self) -> Result<IncomingLayer, LayerCacheError> {
        let io_error = |source| LayerCacheError::Io {
            path: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io_error)?;
        let file = tempfile::Builder::new()
            .prefix(INCOMING_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(io_error)?;
        Ok(IncomingLayer {
            file: file.into_temp_path(),
        })
    }

    /// Moves a written layer into the cache under `key` and removes the oldest entries beyond
    /// [`MAX_CACHED_LAYERS`]; returns the stored entry.
    pub fn commit(
        &self,
        key: &str,
        incoming: IncomingLayer,
        digests: &LayerDigests,
        facts: &BTreeMap<String, String>,
    ) -> Result<CachedLayer, LayerCacheError> {
        let path = self.dir.join(format!("{key}{LAYER_SUFFIX}"));
        incoming
            .file
            .persist(&path)
            .map_err(|error| LayerCacheError::Io {
                path: path.clone(),
                source: error.error,
            })?;
        let entry_path = self.dir.join(format!("{key}{ENTRY_SUFFIX}"));
        let entry = EntryFile {
            diff_id: digests.diff_id.clone(),
            digest: digests.digest.clone(),
            size: digests.size,
            uncompressed_size: digests.uncompressed_size,
            media_type: digests.media_type.to_string(),
            facts: facts.clone(),
        };
        let text = serde_json::to_vec(&entry).map_err(|source| LayerCacheError::Encode {
            path: entry_path.clone(),
            source,
        })?;
        let mut staged = tempfile::Builder::new()
            .prefix(INCOMING_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(|source| LayerCacheError::Io {
                path: self.dir.clone(),
                source,
            })?;
        staged
            .write_all(&text)
            .map_err(|source| LayerCacheError::Io {
                path: staged.path().to_path_buf(),
                source,
            })?;
        staged
            .persist(&entry_path)
            .map_err(|error| LayerCacheError::Io {
                path: entry_path.clone(),
                source: error.error,
            })?;
        self.prune(MAX_CACHED_LAYERS)?;
        Ok(CachedLayer {
            path,
            digests: digests.clone(),
            facts: facts.clone(),
        })
    }

    /// Removes the entry stored under `key` (one that no longer matches its digest).
    pub fn remove(&self, key: &str) -> Result<(), LayerCacheError> {
        for suffix in [ENTRY_SUFFIX, LAYER_SUFFIX] {
            let path = self.dir.join(format!("{key}{suffix}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(LayerCacheError::Io { path, source }),
            }
        }
        Ok(())
    }

    /// Keeps the entries of the `keep` most recently stored platforms and removes the others.
    /// An entry `<key>.<n>` (a layer of a package-layered platform) belongs to the platform
    /// `<key>` and goes with it.
    fn prune(&self, keep: usize) -> Result<(), LayerCacheError> {
        let listing = std::fs::read_dir(&self.dir).map_err(|source| LayerCacheError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut entries: Vec<(std::time::SystemTime, String)> = listing
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = name.strip_suffix(ENTRY_SUFFIX)?.to_string();
                if key.starts_with('.') {
                    return None;
                }
                let modified = entry.metadata().ok()?.modified().ok()?;
                Some((modified, key))
            })
            .collect();
        // Newest first; equal times fall back to the key so the choice is stable.
        entries.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let platform = |key: &str| key.split('.').next().unwrap_or_default().to_string();
        let mut kept = std::collections::BTreeSet::new();
        for (_, key) in &entries {
            if kept.len() < keep {
                kept.insert(platform(key));
            }
        }
        for (_, key) in entries {
            if !kept.contains(&platform(&key)) {
                self.remove(&key)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::image::entry::LayerEntry;

    fn digests(size: u64) -> LayerDigests {
        LayerDigests {
            diff_id: format!("sha256:{}", "a".repeat(64)),
            digest: format!("sha256:{}", "b".repeat(64)),
            size,
            uncompressed_size: size * 2,
            media_type: MEDIA_TYPE_LAYER_GZIP,
        }
    }

    fn store(cache: &LayerCache, key: &str, bytes: &[u8], user: Option<&str>) -> CachedLayer {
        let incoming = cache.incoming().unwrap();
        std::fs::write(incoming.path(), bytes).unwrap();
        let facts: BTreeMap<String, String> = user
            .map(|user| ("user".to_string(), user.to_string()))
            .into_iter()
            .collect();
        cache
            .commit(key, incoming, &digests(bytes.len() as u64), &facts)
            .unwrap()
    }

    #[test]
    fn stored_layers_are_found_until_removed() {
        let root = tempfile::tempdir().unwrap();
        let cache = LayerCache::new(root.path());
        assert_eq!(cache.lookup("k1"), None);
        let stored = store(&cache, "k1", b"layer bytes", Some("65532"));
        let found = cache.lookup("k1").unwrap();
        assert_eq!(found, stored);
        assert_eq!(found.facts.get("user").map(String::as_str), Some("65532"));
        assert_eq!(std::fs::read(&found.path).unwrap(), b"layer bytes");
        // Nothing but the entry is left behind.
        let mut names: Vec<String> = std::fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["k1.json", "k1.layer"]);
        cache.remove("k1").unwrap();
        assert_eq!(cache.lookup("k1"), None);
    }

    #[test]
    fn incomplete_or_foreign_entries_are_not_found() {
        let root = tempfile::tempdir().unwrap();
        let cache = LayerCache::new(root.path());
        store(&cache, "short", b"12345", None);
        std::fs::write(cache.dir().join("short.layer"), b"123").unwrap();
        assert_eq!(cache.lookup("short"), None, "blob size differs");
        store(&cache, "blobless", b"12345", None);
        std::fs::remove_file(cache.dir().join("blobless.layer")).unwrap();
        assert_eq!(cache.lookup("blobless"), None, "blob missing");
        store(&cache, "odd", b"12345", None);
        let text = std::fs::read_to_string(cache.dir().join("odd.json")).unwrap();
        let odd = text.replace(MEDIA_TYPE_LAYER_GZIP, "application/x-unknown");
        std::fs::write(cache.dir().join("odd.json"), odd).unwrap();
        assert_eq!(cache.lookup("odd"), None, "unknown media type");
        std::fs::write(cache.dir().join("garbled.json"), b"{").unwrap();
        std::fs::write(cache.dir().join("garbled.layer"), b"x").unwrap();
        assert_eq!(cache.lookup("garbled"), None, "unreadable description");
    }

    #[test]
    fn an_uncommitted_layer_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let cache = LayerCache::new(root.path());
        let incoming = cache.incoming().unwrap();
        std::fs::write(incoming.path(), b"partial").unwrap();
        drop(incoming);
        assert_eq!(std::fs::read_dir(cache.dir()).unwrap().count(), 0);
    }

    #[test]
    fn only_the_newest_entries_are_kept() {
        let root = tempfile::tempdir().unwrap();
        let cache = LayerCache::new(root.path());
        for n in 0..MAX_CACHED_LAYERS + 3 {
            store(&cache, &format!("key{n:02}"), b"x", None);
            // Distinct modification times, oldest first.
            let time = std::time::SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(1_000_000 + n as u64);
            let file = File::options()
                .write(true)
                .open(cache.dir().join(format!("key{n:02}.json")))
                .unwrap();
            file.set_modified(time).unwrap();
        }
        cache.prune(MAX_CACHED_LAYERS).unwrap();
        let kept: Vec<bool> = (0..MAX_CACHED_LAYERS + 3)
            .map(|n| cache.lookup(&format!("key{n:02}")).is_some())
            .collect();
        let expected: Vec<bool> = (0..MAX_CACHED_LAYERS + 3).map(|n| n >= 3).collect();
        assert_eq!(kept, expected);
    }

    #[test]
    fn keys_depend_on_every_field_and_its_boundaries() {
        let key = |fields: &[(&str, &[u8])]| {
            let mut builder = LayerKeyBuilder::new();
            for (name, value) in fields {
                builder.field(name, value);
            }
            builder.finish()
        };
        let base = key(&[("arch", b"x86_64"), ("created", b"1")]);
        assert_eq!(base, key(&[("arch", b"x86_64"), ("created", b"1")]));
        assert_eq!(base.len(), 64);
        for other in [
            key(&[("arch", b"aarch64"), ("created", b"1")]),
            key(&[("arch", b"x86_64"), ("created", b"2")]),
            key(&[("arch", b"x86_64c"), ("reated", b"1")]),
            key(&[("arch", b"x86_64")]),
        ] {
            assert_ne!(base, other);
        }
    }

    /// A tree of `files` regular files spread over `spools` spools, and the spools themselves.
    fn spooled_tree(dir: &Path, spools: usize, files: usize) -> (Tree, Spools, Vec<Vec<u8>>) {
        let mut contents = vec![Vec::new(); spools];
        let mut tree = Tree::new();
        let mut expected = Vec::new();
        for file in 0..files {
            let spool = file % spools;
            let bytes: Vec<u8> = (0..(file * 37) % 3000)
                .map(|i| (i * 7 + file) as u8)
                .collect();
            let offset = contents[spool].len() as u64;
            contents[spool].extend_from_slice(&bytes);
            let path = format!("data/f{file:04}");
            tree.ensure_parents(&path, 0);
            tree.insert(Node {
                entry: LayerEntry::file(&path, bytes.len() as u64, 0o644, 0),
                content: if bytes.is_empty() {
                    Content::Empty
                } else {
                    Content::Spool {
                        spool,
                        offset,
                        len: bytes.len() as u64,
                    }
                },
                owner: Some(spool),
            });
            expected.push(bytes);
        }
        let mut paths = Vec::new();
        for (index, bytes) in contents.iter().enumerate() {
            let path = dir.join(format!("{index:05}.tar"));
            std::fs::write(&path, bytes).unwrap();
            paths.push(path);
        }
        (tree, Spools::from_paths(paths), expected)
    }

    #[test]
    fn more_spools_than_open_handles_stream_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let (tree, spools, expected) = spooled_tree(dir.path(), MAX_OPEN_SPOOLS + 40, 900);
        let layer = dir.path().join("layer.tar");
        let digests = write_layer(&tree, &spools, &layer, Compression::None).unwrap();
        assert_eq!(digests.media_type, MEDIA_TYPE_LAYER_TAR);
        let mut archive = tar::Archive::new(File::open(&layer).unwrap());
        let mut files = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type() == tar::EntryType::Regular {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                files.push(bytes);
            }
        }
        assert_eq!(files, expected);
    }
}
