//! Which repositories of which registries hold which blobs, as far as this client has pushed
//! them: a push mounts a blob the registry holds in another repository instead of uploading
//! it again (`POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repository>`).
//!
//! The record is a hint, never trusted for content: a registry that does not hold the blob in
//! the named repository answers a mount with an upload session, and the blob is uploaded. It is
//! kept in memory for the client's pushes and, when given a file, loaded from and saved to
//! it (one JSON document, replaced by rename). A record that cannot be read or written only
//! costs uploads, so failures are logged and ignored.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Repositories remembered per blob (the most recent first).
const MAX_REPOSITORIES_PER_BLOB: usize = 4;
/// Blobs remembered per registry; the record starts over beyond it.
const MAX_BLOBS_PER_REGISTRY: usize = 50_000;
/// File name of the record in the cache directory.
pub const RECORD_FILE: &str = "registry-blobs.json";

/// registry → digest → repositories.
type Record = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// The record of pushed blobs; see the module docs.
#[derive(Debug, Default)]
pub struct BlobRecord {
    file: Option<PathBuf>,
    record: Mutex<Record>,
}

impl BlobRecord {
    /// A record kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A record loaded from `file` (empty when it is missing or unreadable) and saved there.
    pub fn load(file: &Path) -> Self {
        let record = std::fs::read(file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Self {
            file: Some(file.to_path_buf()),
            record: Mutex::new(record),
        }
    }

    /// Repositories of `registry` other than `except` known to hold `digest`, most recent
    /// first.
    pub fn sources(&self, registry: &str, digest: &str, except: &str) -> Vec<String> {
        let record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        record
            .get(registry)
            .and_then(|blobs| blobs.get(digest))
            .map(|repositories| {
                repositories
                    .iter()
                    .filter(|repository| *repository != except)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Notes that `repository` of `registry` holds `digest`.
    pub fn note(&self, registry: &str, repository: &str, digest: &str) {
        let mut record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        let blobs = record.entry(registry.to_string()).or_default();
        if blobs.len() >= MAX_BLOBS_PER_REGISTRY && !blobs.contains_key(digest) {
            blobs.clear();
        }
        let repositories = blobs.entry(digest.to_string()).or_default();
        repositories.retain(|known| known != repository);
        repositories.insert(0, repository.to_string());
        repositories.truncate(MAX_REPOSITORIES_PER_BLOB);
    }

    /// Saves the record to its file, if it has one.
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        let bytes = {
            let record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
            match serde_json::to_vec(&*record) {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(%error, "cannot encode the record of pushed blobs");
                    return;
                }
            }
        };
        let save = || -> std::io::Result<()> {
            let dir = file.parent().unwrap_or_else(|| Path::new("."));
            std::fs::create_dir_all(dir)?;
            let mut staged = tempfile::NamedTempFile::new_in(dir)?;
            staged.write_all(&bytes)?;
            staged.persist(file).map_err(|error| error.error)?;
            Ok(())
        };
        if let Err(error) = save() {
            tracing::warn!(%error, path = %file.display(), "cannot save the record of pushed blobs");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_other_repositories_most_recent_first_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache").join(RECORD_FILE);
        let record = BlobRecord::load(&file);
        assert!(record.sources("r", "sha256:a", "x").is_empty());
        record.note("r", "one", "sha256:a");
        record.note("r", "two", "sha256:a");
        record.note("other", "three", "sha256:a");
        assert_eq!(record.sources("r", "sha256:a", "x"), ["two", "one"]);
        assert_eq!(record.sources("r", "sha256:a", "two"), ["one"]);
        for n in 0..10 {
            record.note("r", &format!("repo{n}"), "sha256:b");
        }
        assert_eq!(
            record.sources("r", "sha256:b", "x").len(),
            MAX_REPOSITORIES_PER_BLOB
        );
        record.save();
        let again = BlobRecord::load(&file);
        assert_eq!(again.sources("r", "sha256:a", "x"), ["two", "one"]);
        assert_eq!(again.sources("other", "sha256:a", "x"), ["three"]);
        // An unreadable record is an empty one.
        std::fs::write(&file, b"{").unwrap();
        assert!(
            BlobRecord::load(&file)
                .sources("r", "sha256:a", "x")
                .is_empty()
        );
    }
}
