//! The ImageBuilds the controller watches, as its reflector caches hold them, for readers
//! outside the reconcile loop (the console): the cache of every watched namespace and a
//! counter that moves whenever the controller sees a change.
//!
//! Reading costs no API request: the caches are the controller's own watch. Only ImageBuilds
//! in the namespaces the operator watches are ever here.
//!
//! A replica waiting for the leader lease runs no controller; [`WatchedImageBuilds::standby`]
//! then keeps a watch of its own (the same namespaces) until a controller starts here, so that
//! the console of every replica behind a Service shows the same.

use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt as _;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use securebuild_crds::ImageBuild;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The controller's ImageBuild caches, shared with readers.
#[derive(Clone, Debug)]
pub struct WatchedImageBuilds {
    stores: Arc<RwLock<Vec<Store<ImageBuild>>>>,
    standby: Arc<RwLock<Vec<Store<ImageBuild>>>>,
    changes: Arc<watch::Sender<u64>>,
}

impl Default for WatchedImageBuilds {
    fn default() -> Self {
        let (changes, _) = watch::channel(0);
        Self {
            stores: Arc::default(),
            standby: Arc::default(),
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

    /// Whether a controller runs here and feeds the caches.
    pub fn has_controller(&self) -> bool {
        !self
            .stores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Whether anything feeds the caches: a controller, or the standby watch.
    pub fn is_active(&self) -> bool {
        self.has_controller()
            || !self
                .standby
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
    }

    /// Every cached ImageBuild, sorted by namespace and name: the controller's, or the standby
    /// watch's while no controller runs.
    pub fn snapshot(&self) -> Vec<Arc<ImageBuild>> {
        let mut all: Vec<Arc<ImageBuild>> = {
            let stores = self.stores.read().unwrap_or_else(PoisonError::into_inner);
            if stores.is_empty() {
                drop(stores);
                let standby = self.standby.read().unwrap_or_else(PoisonError::into_inner);
                standby.iter().flat_map(Store::state).collect()
            } else {
                stores.iter().flat_map(Store::state).collect()
            }
        };
        all.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        all
    }

    /// Watches the ImageBuilds of `namespaces` (all when empty) while no controller runs here,
    /// until one starts or `shutdown`: the caches of a replica that waits for the leader lease.
    pub async fn standby(
        &self,
        client: Client,
        namespaces: &[String],
        shutdown: CancellationToken,
    ) {
        let apis: Vec<Api<ImageBuild>> = if namespaces.is_empty() {
            vec![Api::all(client)]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        };
        let mut readers = Vec::new();
        let mut watches = Vec::new();
        for api in apis {
            let (reader, writer) = reflector::store();
            readers.push(reader);
            let watched = self.clone();
            watches.push(
                reflector::reflector(writer, watcher(api, watcher::Config::default()))
                    .default_backoff()
                    .for_each(move |event| {
                        if let Err(error) = event {
                            tracing::debug!(%error, "standby ImageBuild watch failed; retrying");
                        }
                        watched.changed();
                        futures::future::ready(())
                    }),
            );
        }
        *self.standby.write().unwrap_or_else(PoisonError::into_inner) = readers;
        let mut changes = self.subscribe();
        let controller_started = async {
            while !self.has_controller() {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            _ = futures::future::join_all(watches) => {}
            () = controller_started => {}
            () = shutdown.cancelled() => {}
        }
        self.standby
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.changed();
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
