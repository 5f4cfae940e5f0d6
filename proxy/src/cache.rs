//! In-memory caches: manifests by digest, least recently used evicted first once their bytes
//! exceed a budget (content addressed, so an entry never goes stale), and tag lookups, which
//! expire after a short time because tags move.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// A manifest as served: its bytes and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedManifest {
    /// The exact bytes.
    pub bytes: Bytes,
    /// The `Content-Type` to send.
    pub media_type: String,
}

/// Manifests by digest, bounded by their total bytes.
#[derive(Debug)]
pub struct ManifestCache {
    budget: u64,
    state: Mutex<LruState>,
}

#[derive(Debug, Default)]
struct LruState {
    entries: HashMap<String, (CachedManifest, u64)>,
    /// Use tick → digest, oldest first.
    order: BTreeMap<u64, String>,
    tick: u64,
    bytes: u64,
}

impl ManifestCache {
    /// A cache holding at most `budget` bytes of manifests (`0` disables it).
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            state: Mutex::new(LruState::default()),
        }
    }

    /// The manifest with `digest`, marking it used.
    pub fn get(&self, digest: &str) -> Option<CachedManifest> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.tick += 1;
        let tick = state.tick;
        let (manifest, used) = state.entries.get_mut(digest)?;
        let manifest = manifest.clone();
        let previous = std::mem::replace(used, tick);
        state.order.remove(&previous);
        state.order.insert(tick, digest.to_owned());
        Some(manifest)
    }

    /// Keeps `manifest` under `digest` (which the caller has checked), evicting the least
    /// recently used entries until the budget holds. A manifest larger than the budget is not
    /// kept.
    pub fn insert(&self, digest: &str, manifest: CachedManifest) {
        let size = manifest.bytes.len() as u64;
        if size > self.budget {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.tick += 1;
        let tick = state.tick;
        if let Some((old, used)) = state.entries.insert(digest.to_owned(), (manifest, tick)) {
            state.order.remove(&used);
            state.bytes -= old.bytes.len() as u64;
        }
        state.order.insert(tick, digest.to_owned());
        state.bytes += size;
        while state.bytes > self.budget {
            let Some((_, oldest)) = state.order.pop_first() else {
                break;
            };
            if let Some((evicted, _)) = state.entries.remove(&oldest) {
                state.bytes -= evicted.bytes.len() as u64;
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

/// What a tag pointed at when it was looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTarget {
    /// The manifest's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
}

/// Tag lookups, each kept for a fixed time.
#[derive(Debug)]
pub struct TagCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (TagTarget, Instant)>>,
}

/// Entries kept before expired ones are swept.
const TAG_SWEEP_THRESHOLD: usize = 4096;

impl TagCache {
    /// A cache keeping lookups for `ttl` (zero disables it).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The target of `key` if looked up less than the TTL ago.
    pub fn get(&self, key: &str) -> Option<TagTarget> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (target, at) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| target.clone())
    }

    /// Records that `key` points at `target` now.
    pub fn insert(&self, key: String, target: TagTarget) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= TAG_SWEEP_THRESHOLD {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        entries.insert(key, (target, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(size: usize) -> CachedManifest {
        CachedManifest {
            bytes: Bytes::from(vec![b'x'; size]),
            media_type: "m".to_owned(),
        }
    }

    #[test]
    fn manifests_are_evicted_least_recently_used_first_by_bytes() {
        let cache = ManifestCache::new(100);
        cache.insert("a", manifest(40));
        cache.insert("b", manifest(40));
        assert!(cache.get("a").is_some());
        cache.insert("c", manifest(40));
        assert!(cache.get("b").is_none(), "b was the least recently used");
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        assert_eq!(cache.bytes(), 80);
        cache.insert("big", manifest(101));
        assert!(cache.get("big").is_none());
        cache.insert("a", manifest(10));
        assert_eq!(cache.bytes(), 50);
        assert!(ManifestCache::new(0).get("a").is_none());
    }

    #[test]
    fn tag_lookups_expire() {
        let target = TagTarget {
            digest: "sha256:x".to_owned(),
            media_type: "m".to_owned(),
        };
        let cache = TagCache::new(Duration::from_millis(50));
        cache.insert("r:v1".to_owned(), target.clone());
        assert_eq!(cache.get("r:v1"), Some(target.clone()));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("r:v1"), None);
        let disabled = TagCache::new(Duration::ZERO);
        disabled.insert("r:v1".to_owned(), target);
        assert_eq!(disabled.get("r:v1"), None);
    }
}
