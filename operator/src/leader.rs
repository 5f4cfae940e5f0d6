//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager), so that of several
//! operator replicas only one reconciles.
//!
//! It decides who runs the controller, nothing else. When this replica loses the lease while
//! running, the controller is stopped and [`Error::LeadershipLost`] is returned: the process
//! exits and its restart rejoins the election with fresh caches.

use std::future::Future;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The Lease's name, in the operator's namespace.
pub const LEASE_NAME: &str = "securebuild-operator";
/// How long a lease stays valid without renewal, in seconds.
pub const LEASE_DURATION_SECONDS: u64 = 15;
/// How long before expiry the holder renews, in seconds.
pub const LEASE_GRACE_SECONDS: u64 = 5;

/// The identity of this replica: `POD_NAME`, else `HOSTNAME`, else `None` (the lease manager
/// then picks a random one).
pub fn identity(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    ["POD_NAME", "HOSTNAME"]
        .into_iter()
        .find_map(|name| env(name).filter(|value| !value.is_empty()))
}

/// Waits for the lease, then runs `work` with a token that is cancelled on `shutdown` or when
/// the lease is lost. Returns when `shutdown` is cancelled before leadership was won, when
/// `work` ends, or with [`Error::LeadershipLost`] after losing the lease.
pub async fn run_as_leader<F, Fut>(
    client: Client,
    namespace: &str,
    identity: Option<String>,
    shutdown: CancellationToken,
    work: F,
) -> Result<(), Error>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let mut builder = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_duration(LEASE_DURATION_SECONDS)
        .with_grace(LEASE_GRACE_SECONDS);
    if let Some(identity) = identity {
        builder = builder.with_identity(identity);
    }
    let manager = builder
        .build()
        .await
        .map_err(|source| Error::LeaderElection { source })?;
    let (mut leader, task) = manager.watch().await;
    let lost = || Error::LeadershipLost {
        lease: format!("{namespace}/{LEASE_NAME}"),
    };

    tracing::info!(
        lease = LEASE_NAME,
        namespace,
        "waiting for the leader lease"
    );
    while !*leader.borrow_and_update() {
        tokio::select! {
            () = shutdown.cancelled() => {
                drop(leader);
                let _ = task.await;
                return Ok(());
            }
            changed = leader.changed() => {
                if changed.is_err() {
                    return Err(lost());
                }
            }
        }
    }
    tracing::info!(lease = LEASE_NAME, namespace, "acquired the leader lease");

    let stop = shutdown.child_token();
    let watcher_stop = stop.clone();
    let mut watcher_rx = leader.clone();
    let watcher = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = watcher_stop.cancelled() => return false,
                changed = watcher_rx.changed() => {
                    if changed.is_err() || !*watcher_rx.borrow_and_update() {
                        watcher_stop.cancel();
                        return true;
                    }
                }
            }
        }
    });
    let result = work(stop.clone()).await;
    stop.cancel();
    let lost_lease = watcher.await.unwrap_or(false);
    drop(leader);
    // Closing the channel makes the manager release the lease.
    let _ = task.await;
    result?;
    if lost_lease && !shutdown.is_cancelled() {
        return Err(lost());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_prefers_the_pod_name() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            identity(&env(&[("POD_NAME", "op-0"), ("HOSTNAME", "host")])).as_deref(),
            Some("op-0")
        );
        assert_eq!(
            identity(&env(&[("POD_NAME", ""), ("HOSTNAME", "host")])).as_deref(),
            Some("host")
        );
        assert_eq!(identity(&env(&[])), None);
    }
}
