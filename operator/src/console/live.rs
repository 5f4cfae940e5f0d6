//! Live updates: a server-sent event stream that says when the watched ImageBuilds changed.
//!
//! Each event (`update`) carries the version of the caches ([`super::pages::version_of`]); a
//! page whose live region shows another version fetches itself again. The stream wakes when the
//! controller reconciles (every watch event of an ImageBuild or its builds) and, for what a
//! reconcile does not see (a deletion), checks the caches every [`FALLBACK_CHECK`]. Bursts are
//! coalesced: at most one event per [`MIN_INTERVAL`]. Reading the caches costs no API request.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::Event;
use futures::Stream;
use tokio_util::sync::CancellationToken;

use super::pages::version_of;
use crate::watched::WatchedImageBuilds;

/// The shortest time between two events of one stream.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// How often the caches are checked when nothing woke the stream.
pub const FALLBACK_CHECK: Duration = Duration::from_secs(2);

/// The events of one client, until `shutdown`.
pub fn updates(
    watched: WatchedImageBuilds,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let changes = watched.subscribe();
    futures::stream::unfold(
        (watched, changes, None::<String>, shutdown),
        |(watched, mut changes, last, shutdown)| async move {
            loop {
                let version = version_of(&watched.snapshot());
                if last.as_ref() != Some(&version) {
                    let event = Event::default().event("update").data(version.clone());
                    return Some((Ok(event), (watched, changes, Some(version), shutdown)));
                }
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                    () = tokio::time::sleep(FALLBACK_CHECK) => {}
                }
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(MIN_INTERVAL) => {}
                }
            }
        },
    )
}
