//! The ImageBuilds the controller watches, as its reflector caches hold them, for readers
//! outside the reconcile loop (the console): the cache of every watched namespace and a
//! counter that moves whenever the controller sees a change.
//!
//! Reading costs no API request: the caches are the controller's own watch. Only ImageBuilds
//! in the namespaces the operator watches are ever here.

use std::sync::{Arc, PoisonError, RwLock};

use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use securebuild_crds::ImageBuild;
use tokio::sync::watch;

/// The controller's ImageBuild caches, shared with readers.
#[derive(Clone, Debug)]
pub struct WatchedImageBuilds {
    stores: Arc<RwLock<Vec<Store<ImageBuild>>>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Default for WatchedImageBuilds {
    fn default() -> Self {
        let (changes, _) = watch::channel(0);
        Self {
            stores: Arc::default(),
            changes: Arc::new(changes),
        }
    }
}

impl WatchedImageBuilds {
    /// Caches holding exactly `objects`, as a controller that listed them would (tests and
    /// benchmarks).
    pub fn from_objects(objects: impl IntoIterator<Item = ImageBuild>) -> Self {
        let mut writer: Writer<ImageBuild> = Writer::default();
        writer.apply_watcher_event(&watcher::Event::Init);
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(object));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let watched = Self::default();
        watched.replace(vec![writer.as_reader()]);
        // The writer goes; its reader keeps the objects.
        watched
    }

    /// Replaces the caches (a controller that starts, or starts again after regaining the
    /// leader lease, brings its own).
    pub fn replace(&self, stores: Vec<Store<ImageBuild>>) {
        *self.stores.write().unwrap_or_else(PoisonError::into_inner) = stores;
        self.changed();
    }

    /// Adds the cache of one watch.
    pub fn add(&self, store: Store<ImageBuild>) {
        self.stores
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(store);
        self.changed();
    }

    /// The caches themselves, to move into another [`WatchedImageBuilds`].
    #[cfg(test)]
    pub fn stores_for_tests(&self) -> Vec<Store<ImageBuild>> {
        self.stores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a controller is running and feeds the caches.
    pub fn is_active(&self) -> bool {
        !self
            .stores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Every cached ImageBuild, sorted by namespace and name.
    pub fn snapshot(&self) -> Vec<Arc<ImageBuild>> {
        let stores = self.stores.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Arc<ImageBuild>> = stores.iter().flat_map(Store::state).collect();
        all.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        all
    }

    /// Records that the controller saw a change.
    pub fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that wakes on every [`changed`](Self::changed).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::TestImageBuild;

    #[tokio::test]
    async fn snapshot_is_sorted_and_changes_wake_readers() {
        let mut b = TestImageBuild::new().build();
        b.metadata.name = Some("b".into());
        let mut a = TestImageBuild::new().build();
        a.metadata.name = Some("a".into());
        let watched = WatchedImageBuilds::from_objects([b, a]);
        assert!(watched.is_active());
        let names: Vec<_> = watched
            .snapshot()
            .iter()
            .map(|ib| ib.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        let mut changes = watched.subscribe();
        watched.changed();
        tokio::time::timeout(std::time::Duration::from_secs(1), changes.changed())
            .await
            .unwrap()
            .unwrap();
        watched.replace(Vec::new());
        assert!(!watched.is_active());
        assert!(watched.snapshot().is_empty());
    }
}
