//! When to build: [`decide`] reads an ImageBuild, the Jobs it owns and the clock, and says
//! whether to observe a build, start one, re-resolve the packages, or wait.
//!
//! Pure: no API calls and no clock of its own. It does not create anything or compute status;
//! the controller acts on the [`Decision`].
//!
//! # Decision table
//!
//! Rows are tried in order; the first that matches decides.
//!
//! | # | When | Decision |
//! |---|------|----------|
//! | 1 | `metadata.deletionTimestamp` is set | [`Decision::Idle`] forever: owner references let the garbage collector remove the Jobs |
//! | 2 | `status.lastBuild.outcome` is `Running` | [`Decision::Observe`] that Job (also when it is gone: the status records it as lost) |
//! | 3 | an owned Job is still active (the status write after its creation was lost) | [`Decision::Observe`] the newest active Job |
//! | 4 | there is no `status.lastBuild` but an owned Job finished | [`Decision::Observe`] the newest finished Job |
//! | 5 | `metadata.generation` is newer than `status.lastBuild.generation` (or nothing was built) | [`Decision::Build`] with reason `SpecChanged` |
//! | 6 | the `securebuild.dev/rebuild` annotation differs from `status.handledRebuildRequest` | [`Decision::Build`] with reason `Manual` |
//! | 6a | the spec includes ConfigMap keys and their merged digest differs from `status.configuration.digest` | [`Decision::Build`] with reason `IncludeChanged` |
//! | 7 | `Stalled=True` | [`Decision::Idle`] forever: only a spec change (row 5) or a rebuild request (row 6) helps |
//! | 8 | `spec.rebuild.interval` is not a duration | [`Decision::InvalidSpec`] |
//! | 9 | the interval elapsed since `status.lastResolved` and no lock was resolved yet | [`Decision::ResolveNow`]; the controller resolves and calls [`decide`] again with the lock digest |
//! | 10 | a resolved lock digest differs from `status.packages.lockDigest` and from the lock the last build attempted | [`Decision::Build`] with reason `PackageUpdate` |
//! | 11 | an interval is set | [`Decision::Idle`] until `status.lastResolved` + interval |
//! | 12 | otherwise | [`Decision::Idle`] forever |
//!
//! A running build is never interrupted: a spec change during a build waits for it to finish
//! (row 2), then builds the new generation (row 5). A finished build is never repeated for the
//! same generation and trigger, so a failure cannot loop: every failed build is `Stalled`
//! (row 7), and only the next spec change or rebuild request builds again.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use securebuild_crds::ImageBuild;
use securebuild_crds::REBUILD_ANNOTATION;
use securebuild_crds::conditions::{ConditionType, is_true};
use securebuild_crds::duration::parse_duration;
use securebuild_crds::imagebuild::{BuildOutcome, BuildReason};

use crate::job::{JobState, is_owned_by, job_state, newest_first};

/// Why a build starts, with what makes this trigger distinct from others of its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TriggerKind {
    /// A new generation.
    SpecChanged,
    /// A new value of the `securebuild.dev/rebuild` annotation.
    Manual {
        /// The annotation's value.
        request: String,
    },
    /// Re-resolving found a new lock.
    PackageUpdate {
        /// The new lock digest.
        lock_digest: String,
    },
    /// An included configuration changed.
    IncludeChanged {
        /// The new digest of the merged configuration.
        digest: String,
    },
}

/// One reason to build one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    /// The generation to build.
    pub generation: i64,
    /// Why.
    pub kind: TriggerKind,
}

impl Trigger {
    /// The status vocabulary for this trigger.
    pub fn reason(&self) -> BuildReason {
        match self.kind {
            TriggerKind::SpecChanged => BuildReason::SpecChanged,
            TriggerKind::Manual { .. } => BuildReason::Manual,
            TriggerKind::PackageUpdate { .. } => BuildReason::PackageUpdate,
            TriggerKind::IncludeChanged { .. } => BuildReason::IncludeChanged,
        }
    }

    /// What distinguishes this trigger from earlier ones of the same reason and generation: the
    /// rebuild request, the lock digest, or nothing for a spec change.
    pub fn token(&self) -> &str {
        match &self.kind {
            TriggerKind::SpecChanged => "",
            TriggerKind::Manual { request } => request,
            TriggerKind::PackageUpdate { lock_digest } => lock_digest,
            TriggerKind::IncludeChanged { digest } => digest,
        }
    }

    /// One sentence for the Job's annotation, events and logs.
    pub fn describe(&self) -> String {
        match &self.kind {
            TriggerKind::SpecChanged => format!("spec changed (generation {})", self.generation),
            TriggerKind::Manual { request } => {
                format!("rebuild requested ({REBUILD_ANNOTATION}={request})")
            }
            TriggerKind::PackageUpdate { lock_digest } => {
                format!("packages changed (lock {lock_digest})")
            }
            TriggerKind::IncludeChanged { digest } => {
                format!("included configuration changed (configuration {digest})")
            }
        }
    }
}

/// What the controller should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do; look again after the duration, or only on the next change when `None`.
    Idle {
        /// When to look again.
        requeue_after: Option<Duration>,
    },
    /// Read this Job (running or finished) and record it in the status.
    Observe {
        /// The Job's name.
        job: String,
    },
    /// Start a build.
    Build(Trigger),
    /// Re-resolve the packages, then call [`decide`] again with the lock digest.
    ResolveNow,
    /// The spec cannot be acted on.
    InvalidSpec {
        /// What is wrong, for the `Ready` condition.
        message: String,
    },
}

/// Decides what to do for `ib` given the Jobs listed for it, the time, the digest of its
/// merged configuration when its spec includes others, and — after a
/// [`Decision::ResolveNow`] — the freshly resolved lock digest. See the module's decision
/// table.
pub fn decide(
    ib: &ImageBuild,
    observed_jobs: &[Job],
    now: Timestamp,
    configuration: Option<&str>,
    resolved_lock: Option<&str>,
) -> Decision {
    let forever = Decision::Idle {
        requeue_after: None,
    };
    if ib.metadata.deletion_timestamp.is_some() {
        return forever;
    }
    let status = ib.status.clone().unwrap_or_default();
    let generation = ib.metadata.generation.unwrap_or(0);

    let last_build = status.last_build.as_ref();
    if let Some(last) = last_build.filter(|b| b.outcome == BuildOutcome::Running) {
        return Decision::Observe {
            job: last.job.clone(),
        };
    }

    let mut owned: Vec<&Job> = observed_jobs
        .iter()
        .filter(|j| is_owned_by(j, ib))
        .collect();
    owned.sort_by(|a, b| newest_first(*a, *b));
    if let Some(active) = owned.iter().find(|j| job_state(j) == JobState::Active) {
        return Decision::Observe {
            job: active.name_any(),
        };
    }
    if last_build.is_none()
        && let Some(finished) = owned.first()
    {
        return Decision::Observe {
            job: finished.name_any(),
        };
    }

    if last_build.is_none_or(|b| b.generation < generation) {
        return Decision::Build(Trigger {
            generation,
            kind: TriggerKind::SpecChanged,
        });
    }

    let rebuild_request = ib
        .annotations()
        .get(REBUILD_ANNOTATION)
        .filter(|v| !v.is_empty());
    if let Some(request) = rebuild_request
        && status.handled_rebuild_request.as_ref() != Some(request)
    {
        return Decision::Build(Trigger {
            generation,
            kind: TriggerKind::Manual {
                request: request.clone(),
            },
        });
    }

    if let Some(digest) = configuration
        && status.configuration.as_ref().map(|c| c.digest.as_str()) != Some(digest)
    {
        return Decision::Build(Trigger {
            generation,
            kind: TriggerKind::IncludeChanged {
                digest: digest.to_string(),
            },
        });
    }

    if is_true(&status.conditions, ConditionType::Stalled) {
        return forever;
    }

    let Some(interval_text) = ib.spec.rebuild.interval.as_deref() else {
        return forever;
    };
    let interval = match parse_duration(interval_text) {
        Ok(interval) if !interval.is_zero() => interval,
        Ok(_) => {
            return Decision::InvalidSpec {
                message: format!(
                    "spec.rebuild.interval `{interval_text}` must be longer than zero"
                ),
            };
        }
        Err(error) => {
            return Decision::InvalidSpec {
                message: format!("spec.rebuild.interval: {error}"),
            };
        }
    };

    let next_resolve = next_resolution(status.last_resolved.as_deref(), interval);
    let Some(lock) = resolved_lock else {
        return match next_resolve {
            Some(next) if next > now => Decision::Idle {
                requeue_after: Some(until(now, next)),
            },
            _ => Decision::ResolveNow,
        };
    };

    let current_lock = status.packages.as_ref().map(|p| p.lock_digest.as_str());
    let attempted_lock = status
        .history
        .first()
        .and_then(|h| h.lock_digest.as_deref());
    if current_lock != Some(lock) && attempted_lock != Some(lock) {
        return Decision::Build(Trigger {
            generation,
            kind: TriggerKind::PackageUpdate {
                lock_digest: lock.to_string(),
            },
        });
    }
    Decision::Idle {
        requeue_after: Some(interval),
    }
}

/// When the packages are next re-resolved for `interval` after the last re-resolution
/// (`status.lastResolved`, RFC 3339); `None` when they never were.
pub fn next_resolution(last_resolved: Option<&str>, interval: Duration) -> Option<Timestamp> {
    last_resolved?
        .parse::<Timestamp>()
        .ok()?
        .checked_add(interval)
        .ok()
}

/// `spec.rebuild.interval` as a duration, when set and valid.
pub fn rebuild_interval(ib: &ImageBuild) -> Option<Duration> {
    let text = ib.spec.rebuild.interval.as_deref()?;
    parse_duration(text).ok().filter(|d| !d.is_zero())
}

/// The time from `now` to `then`, at least one second.
fn until(now: Timestamp, then: Timestamp) -> Duration {
    let seconds = then.as_second().saturating_sub(now.as_second()).max(1);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TestImageBuild, TestJob, at};
    use securebuild_crds::conditions::Reason;
    use securebuild_crds::imagebuild::{HistoryEntry, PackageSummary};

    const NOW: i64 = 1_000_000;

    fn check(name: &str, ib: &ImageBuild, jobs: &[Job], lock: Option<&str>, expected: Decision) {
        assert_eq!(decide(ib, jobs, at(NOW), None, lock), expected, "{name}");
    }

    fn build(generation: i64, kind: TriggerKind) -> Decision {
        Decision::Build(Trigger { generation, kind })
    }

    fn idle(seconds: Option<u64>) -> Decision {
        Decision::Idle {
            requeue_after: seconds.map(Duration::from_secs),
        }
    }

    fn observe(job: &str) -> Decision {
        Decision::Observe { job: job.into() }
    }

    fn package_update(lock: &str) -> TriggerKind {
        TriggerKind::PackageUpdate {
            lock_digest: lock.into(),
        }
    }

    fn manual(request: &str) -> TriggerKind {
        TriggerKind::Manual {
            request: request.into(),
        }
    }

    #[test]
    fn decision_table() {
        let fresh = TestImageBuild::new().build();
        let built = || {
            TestImageBuild::new()
                .generation(2)
                .succeeded(2, "job-b", "sha256:lock1")
        };
        let active = TestJob::for_build(&fresh, "job-active")
            .created(NOW - 10)
            .build();
        let finished = TestJob::for_build(&fresh, "job-done")
            .created(NOW - 100)
            .succeeded()
            .build();
        let older = TestJob::for_build(&fresh, "job-old")
            .created(NOW - 200)
            .failed("BackoffLimitExceeded")
            .build();
        let foreign =
            TestJob::for_build(&TestImageBuild::new().uid("other").build(), "job-foreign")
                .created(NOW)
                .build();

        // 1: deletion
        check(
            "deleting",
            &TestImageBuild::new().deleting().build(),
            std::slice::from_ref(&active),
            None,
            idle(None),
        );
        // 2: a running build is observed, even when its Job is gone
        let running = TestImageBuild::new()
            .generation(3)
            .running(2, "job-b")
            .build();
        check("running", &running, &[], None, observe("job-b"));
        // 3: an active Job nobody recorded is adopted
        check(
            "adopt active",
            &built().build(),
            &[finished.clone(), active.clone()],
            None,
            observe("job-active"),
        );
        // foreign Jobs (another uid) are ignored
        check(
            "foreign",
            &fresh,
            std::slice::from_ref(&foreign),
            None,
            build(1, TriggerKind::SpecChanged),
        );
        // 4: nothing recorded but a finished Job exists: observe the newest
        check(
            "adopt finished",
            &fresh,
            &[older.clone(), finished.clone()],
            None,
            observe("job-done"),
        );
        // 5: spec changes
        check(
            "first build",
            &fresh,
            &[],
            None,
            build(1, TriggerKind::SpecChanged),
        );
        let newer = TestImageBuild::new()
            .generation(3)
            .succeeded(2, "job-b", "sha256:lock1")
            .build();
        check(
            "new generation",
            &newer,
            std::slice::from_ref(&finished),
            None,
            build(3, TriggerKind::SpecChanged),
        );
        let stalled_newer = TestImageBuild::new()
            .generation(3)
            .failed(2, "job-b", Reason::ResolutionFailed)
            .build();
        check(
            "spec change clears stall",
            &stalled_newer,
            &[],
            None,
            build(3, TriggerKind::SpecChanged),
        );
        // 6: manual requests
        let requested = built().annotation(REBUILD_ANNOTATION, "now").build();
        check("manual", &requested, &[], None, build(2, manual("now")));
        let handled = built()
            .annotation(REBUILD_ANNOTATION, "now")
            .handled("now")
            .build();
        check("manual handled", &handled, &[], None, idle(None));
        let empty_request = built().annotation(REBUILD_ANNOTATION, "").build();
        check("empty request", &empty_request, &[], None, idle(None));
        let stalled_request = TestImageBuild::new()
            .generation(2)
            .failed(2, "job-b", Reason::ResolutionFailed)
            .annotation(REBUILD_ANNOTATION, "again")
            .build();
        check(
            "manual clears stall",
            &stalled_request,
            &[],
            None,
            build(2, manual("again")),
        );
        // 6a: an included configuration changed, also after a failure
        let mut included = built().build();
        included
            .status
            .get_or_insert_with(Default::default)
            .configuration = Some(securebuild_crds::imagebuild::ConfigurationSources {
            digest: "sha256:old".into(),
            includes: Vec::new(),
        });
        assert_eq!(
            decide(&included, &[], at(NOW), Some("sha256:old"), None),
            idle(None),
            "unchanged includes"
        );
        let include_changed = Decision::Build(Trigger {
            generation: 2,
            kind: TriggerKind::IncludeChanged {
                digest: "sha256:new".into(),
            },
        });
        assert_eq!(
            decide(&included, &[], at(NOW), Some("sha256:new"), None),
            include_changed
        );
        let mut stalled_included = TestImageBuild::new()
            .generation(2)
            .failed(2, "job-b", Reason::ResolutionFailed)
            .build();
        stalled_included
            .status
            .get_or_insert_with(Default::default)
            .configuration = Some(securebuild_crds::imagebuild::ConfigurationSources {
            digest: "sha256:old".into(),
            includes: Vec::new(),
        });
        assert!(matches!(
            decide(&stalled_included, &[], at(NOW), Some("sha256:new"), None),
            Decision::Build(Trigger {
                kind: TriggerKind::IncludeChanged { .. },
                ..
            })
        ));
        // 7: stalled waits
        let stalled = TestImageBuild::new()
            .generation(2)
            .interval("1h")
            .failed(2, "job-b", Reason::ResolutionFailed)
            .build();
        check("stalled", &stalled, &[], None, idle(None));
        // a finished, non-terminal failure is not repeated
        let pushed_failed = TestImageBuild::new()
            .generation(2)
            .failed(2, "job-b", Reason::PushFailed)
            .build();
        check("no retry loop", &pushed_failed, &[], None, idle(None));
        // 8: broken interval
        let broken = built().interval("soon").build();
        assert!(matches!(
            decide(&broken, &[], at(NOW), None, None),
            Decision::InvalidSpec { .. }
        ));
        let zero = built().interval("0s").build();
        assert!(matches!(
            decide(&zero, &[], at(NOW), None, None),
            Decision::InvalidSpec { .. }
        ));
        // 9: interval due
        let never_resolved = built().interval("1h").build();
        check(
            "never resolved",
            &never_resolved,
            &[],
            None,
            Decision::ResolveNow,
        );
        let due = built().interval("1h").resolved_at(NOW - 3600).build();
        check("due", &due, &[], None, Decision::ResolveNow);
        let garbled = built().interval("1h").resolved_text("yesterday").build();
        check(
            "unreadable lastResolved",
            &garbled,
            &[],
            None,
            Decision::ResolveNow,
        );
        // 10: lock changes
        check(
            "lock changed",
            &due,
            &[],
            Some("sha256:lock2"),
            build(2, package_update("sha256:lock2")),
        );
        check(
            "lock same",
            &due,
            &[],
            Some("sha256:lock1"),
            idle(Some(3600)),
        );
        let failed_update = TestImageBuild::new()
            .generation(2)
            .interval("1h")
            .resolved_at(NOW - 3600)
            .succeeded(2, "job-b", "sha256:lock1")
            .history(HistoryEntry {
                digest: None,
                reason: BuildReason::PackageUpdate,
                outcome: BuildOutcome::Failed,
                time: "2025-01-01T00:00:00Z".into(),
                lock_digest: Some("sha256:lock2".into()),
                job: None,
                start_time: None,
                failure: None,
                package_changes: None,
                package_changes_omitted: None,
            })
            .build();
        check(
            "failed lock not retried",
            &failed_update,
            &[],
            Some("sha256:lock2"),
            idle(Some(3600)),
        );
        check(
            "newer lock after failure",
            &failed_update,
            &[],
            Some("sha256:lock3"),
            build(2, package_update("sha256:lock3")),
        );
        let mut no_packages = built().interval("1h").resolved_at(NOW - 7200).build();
        if let Some(status) = no_packages.status.as_mut() {
            status.packages = None::<PackageSummary>;
            status.history.clear();
        }
        check(
            "no packages yet",
            &no_packages,
            &[],
            Some("sha256:lock1"),
            build(2, package_update("sha256:lock1")),
        );
        // 11: waiting for the interval
        let recent = built().interval("1h").resolved_at(NOW - 600).build();
        check("not due", &recent, &[], None, idle(Some(3000)));
        // 12: nothing to do
        check(
            "up to date",
            &built().build(),
            &[finished],
            None,
            idle(None),
        );
    }

    #[test]
    fn triggers_describe_themselves() {
        let cases = [
            (
                TriggerKind::SpecChanged,
                BuildReason::SpecChanged,
                "",
                "spec changed (generation 4)",
            ),
            (
                manual("x"),
                BuildReason::Manual,
                "x",
                "rebuild requested (securebuild.dev/rebuild=x)",
            ),
            (
                package_update("sha256:1"),
                BuildReason::PackageUpdate,
                "sha256:1",
                "packages changed (lock sha256:1)",
            ),
        ];
        for (kind, reason, token, text) in cases {
            let trigger = Trigger {
                generation: 4,
                kind,
            };
            assert_eq!(trigger.reason(), reason);
            assert_eq!(trigger.token(), token);
            assert_eq!(trigger.describe(), text);
        }
    }

    #[test]
    fn until_is_at_least_a_second() {
        assert_eq!(until(at(10), at(5)), Duration::from_secs(1));
        assert_eq!(until(at(10), at(70)), Duration::from_secs(60));
    }
}
