//! Post-build work off the reconcile workers: the [`PostBuild`] hook of each successful build
//! (signing, attestations) runs as a task of its own, at most `limit` at once, and says when it
//! is done, so that a reconcile never waits behind a signature push and the builds the freed
//! slots let start are started at once.
//!
//! The reconciler asks [`PostBuildTasks::progress`] about a finished build: nothing known yet
//! means it reads the build's result and calls [`PostBuildTasks::start`]; later asks find the
//! work running or its [`Finish`]. A finished outcome is kept until
//! [`PostBuildTasks::recorded`] says the status holds it, so a status write that failed (an API
//! server outage) records the same outcome again instead of signing again. When a task ends,
//! the key (`namespace/name`) of its ImageBuild is sent on [`PostBuildTasks::finished`], which
//! the controller turns into a reconcile.
//!
//! The tasks live in this process only: an operator restarted while signing finds the build
//! finished and not recorded, and signs it again (signatures and attestations are appended
//! idempotently).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use securebuild_builder::error::chain;
use securebuild_builder::result::ImageResult;
use securebuild_crds::ImageBuild;
use tokio::sync::{Semaphore, broadcast};

use crate::hooks::PostBuild;
use crate::status::Finish;

/// How many finished-work keys wait for the controller before the oldest are dropped (a
/// dropped one only delays that ImageBuild until its periodic requeue).
pub const FINISHED_CAPACITY: usize = 1024;

/// Where the post-build work of one ImageBuild's build stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// The hook is running (or waiting for its turn).
    Running,
    /// The hook ended: the build's outcome, ready to be recorded.
    Finished(Box<Finish>),
}

/// The post-build work of one ImageBuild: the build it is for and, once ended, its outcome.
struct Work {
    build: String,
    finish: Option<Finish>,
}

type WorkByImageBuild = Arc<Mutex<BTreeMap<String, Work>>>;

/// The post-build tasks of this process, one at most per ImageBuild.
pub struct PostBuildTasks {
    hook: Arc<dyn PostBuild>,
    limit: Arc<Semaphore>,
    work: WorkByImageBuild,
    finished: broadcast::Sender<String>,
}

impl PostBuildTasks {
    /// Runs `hook` after successful builds, at most `limit` (at least one) at once.
    pub fn new(hook: Arc<dyn PostBuild>, limit: usize) -> Self {
        let (finished, _) = broadcast::channel(FINISHED_CAPACITY);
        Self {
            hook,
            limit: Arc::new(Semaphore::new(limit.max(1))),
            work: Arc::new(Mutex::new(BTreeMap::new())),
            finished,
        }
    }

    /// The keys (`namespace/name`) of ImageBuilds whose post-build work ended.
    pub fn finished(&self) -> broadcast::Receiver<String> {
        self.finished.subscribe()
    }

    /// Where the post-build work of `build` of the ImageBuild `key` stands; `None` when it
    /// was never started in this process (or its outcome was recorded).
    pub fn progress(&self, key: &str, build: &str) -> Option<Progress> {
        let work = lock(&self.work);
        let work = work.get(key).filter(|w| w.build == build)?;
        Some(match &work.finish {
            Some(finish) => Progress::Finished(Box::new(finish.clone())),
            None => Progress::Running,
        })
    }

    /// Starts the post-build work of `build`, which produced `image`, for `ib` (the ImageBuild
    /// `key`, with its includes merged). Work for an earlier build of the same ImageBuild is
    /// forgotten: if still running, its outcome is dropped when it ends.
    pub fn start(&self, key: &str, build: &str, ib: &ImageBuild, image: &ImageResult) {
        lock(&self.work).insert(
            key.to_string(),
            Work {
                build: build.to_string(),
                finish: None,
            },
        );
        let hook = self.hook.clone();
        let ib = ib.clone();
        let image = image.clone();
        let image_if_aborted = image.clone();
        let work = async move {
            match hook.after_success(&ib, &image).await {
                Ok(signing) => Finish::Succeeded { image, signing },
                Err(error) => Finish::SigningFailed {
                    image,
                    message: chain(&error),
                },
            }
        };
        let limit = self.limit.clone();
        let store = self.work.clone();
        let finished = self.finished.clone();
        let key = key.to_string();
        let build = build.to_string();
        tokio::spawn(async move {
            let finish = {
                let Ok(_permit) = limit.acquire_owned().await else {
                    return;
                };
                // The hook runs in a task of its own, so that a panic in it ends as a failed
                // signing instead of work that never ends.
                match tokio::spawn(work).await {
                    Ok(finish) => finish,
                    Err(error) => {
                        tracing::error!(imagebuild = %key, build = %build, %error, "post-build work ended abnormally");
                        Finish::SigningFailed {
                            image: image_if_aborted,
                            message: format!("the post-build work ended abnormally: {error}"),
                        }
                    }
                }
            };
            {
                let mut work = lock(&store);
                match work.get_mut(&key) {
                    Some(current) if current.build == build => current.finish = Some(finish),
                    _ => return,
                }
            }
            // No subscriber only means no controller is running (tests, shutdown).
            let _ = finished.send(key);
        });
    }

    /// Forgets the outcome of `build` of the ImageBuild `key` once the status records it.
    pub fn recorded(&self, key: &str, build: &str) {
        let mut work = lock(&self.work);
        if work.get(key).is_some_and(|w| w.build == build) {
            work.remove(key);
        }
    }

    /// Forgets all post-build work of the ImageBuild `key` (it is being deleted).
    pub fn forget(&self, key: &str) {
        lock(&self.work).remove(key);
    }
}

fn lock(work: &WorkByImageBuild) -> MutexGuard<'_, BTreeMap<String, Work>> {
    work.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::future::BoxFuture;

    use super::*;
    use crate::fixtures::{TestImageBuild, image_result};
    use crate::hooks::{HookError, SigningOutcome};

    /// Counts its calls; panics when `panic` is set, else signs nothing.
    #[derive(Default)]
    struct Counting {
        calls: std::sync::atomic::AtomicUsize,
        panic: bool,
    }

    impl PostBuild for Counting {
        fn after_success<'a>(
            &'a self,
            _ib: &'a ImageBuild,
            _result: &'a ImageResult,
        ) -> BoxFuture<'a, Result<SigningOutcome, HookError>> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let panic = self.panic;
            Box::pin(async move {
                assert!(!panic, "the hook panicked");
                Ok(SigningOutcome::default())
            })
        }
    }

    async fn next_finished(finished: &mut broadcast::Receiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(1), finished.recv())
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn an_outcome_is_kept_until_recorded_and_the_hook_runs_once() {
        let hook = Arc::new(Counting::default());
        let tasks = PostBuildTasks::new(hook.clone(), 1);
        let mut finished = tasks.finished();
        let ib = TestImageBuild::new().build();
        let image = image_result("sha256:lock");
        assert_eq!(tasks.progress("team/app", "app-1"), None);
        tasks.start("team/app", "app-1", &ib, &image);
        assert_eq!(next_finished(&mut finished).await, "team/app");
        let expected = Finish::Succeeded {
            image: image.clone(),
            signing: SigningOutcome::default(),
        };
        // Asked again (a status write failed and is retried): the same outcome, no new run.
        for _ in 0..2 {
            assert_eq!(
                tasks.progress("team/app", "app-1"),
                Some(Progress::Finished(Box::new(expected.clone())))
            );
        }
        assert_eq!(tasks.progress("team/app", "app-2"), None, "another build");
        tasks.recorded("team/app", "app-2");
        assert!(
            tasks.progress("team/app", "app-1").is_some(),
            "not that build"
        );
        tasks.recorded("team/app", "app-1");
        assert_eq!(tasks.progress("team/app", "app-1"), None);
        assert_eq!(hook.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_newer_build_replaces_the_work_of_an_older_one() {
        let tasks = PostBuildTasks::new(Arc::new(Counting::default()), 1);
        // Hold the only permit, so that both builds' work waits for its turn.
        let permit = tasks.limit.clone().acquire_owned().await.unwrap();
        let mut finished = tasks.finished();
        let ib = TestImageBuild::new().build();
        let image = image_result("sha256:lock");
        tasks.start("team/app", "app-1", &ib, &image);
        tasks.start("team/app", "app-2", &ib, &image);
        assert_eq!(tasks.progress("team/app", "app-1"), None);
        assert_eq!(tasks.progress("team/app", "app-2"), Some(Progress::Running));
        drop(permit);
        assert_eq!(next_finished(&mut finished).await, "team/app");
        let Some(Progress::Finished(finish)) = tasks.progress("team/app", "app-2") else {
            panic!("app-2 not finished");
        };
        assert!(matches!(*finish, Finish::Succeeded { .. }));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), finished.recv())
                .await
                .is_err(),
            "the older build's outcome is dropped, not announced"
        );
        tasks.forget("team/app");
        assert_eq!(tasks.progress("team/app", "app-2"), None);
    }

    #[tokio::test]
    async fn a_hook_that_panics_ends_as_a_failed_signing() {
        let hook = Arc::new(Counting {
            panic: true,
            ..Counting::default()
        });
        let tasks = PostBuildTasks::new(hook, 2);
        let mut finished = tasks.finished();
        let ib = TestImageBuild::new().build();
        tasks.start("team/app", "app-1", &ib, &image_result("sha256:lock"));
        assert_eq!(next_finished(&mut finished).await, "team/app");
        let Some(Progress::Finished(finish)) = tasks.progress("team/app", "app-1") else {
            panic!("app-1 not finished");
        };
        let Finish::SigningFailed { message, .. } = *finish else {
            panic!("not a failed signing: {finish:?}");
        };
        assert!(
            message.starts_with("the post-build work ended abnormally"),
            "{message}"
        );
    }
}
