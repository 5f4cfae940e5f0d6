//! The ImageBuild status for each step of a build: started, queued, running, finished (from the
//! Job, its Pod and the builder's [`BuildResult`]), or rejected as an invalid spec.
//!
//! Pure: every function takes the ImageBuild as last seen and returns the whole new status
//! (server-side apply replaces what the operator owns). Conditions follow
//! [`securebuild_crds::conditions`]: `Ready` always present, `Reconciling` while a build is
//! pending or running, `Stalled` after any failed build (nothing retries it until the spec or
//! the rebuild annotation changes). Nothing here reads
//! the clock or the API server.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use securebuild_builder::error::shorten_middle;
use securebuild_builder::result::{BuildResult, FailureResult, ImageResult};
use securebuild_crds::ImageBuild;
use securebuild_crds::REBUILD_ANNOTATION;
use securebuild_crds::conditions::{
    ConditionType, Reason, find_condition, remove_condition, set_condition,
};
use securebuild_crds::imagebuild::{
    BuildFailure, BuildOutcome, BuildReason, BuildRecord, HistoryEntry, ImageBuildStatus,
    PackageSummary, PlatformDigest,
};

use crate::hooks::SigningOutcome;
use crate::job::{
    CONDITION_TRUE, CONTAINER_NAME, JOB_COMPLETE, JOB_FAILED, JobState, TERMINATION_LOG,
    job_generation, job_lock_digest, job_reason, job_state, true_condition,
};
use crate::packages::package_changes;
use crate::triggers::Trigger;

/// How many log lines a failure keeps.
pub const LOG_SNIPPET_LINES: usize = 20;
/// How many bytes of log a failure keeps.
pub const LOG_SNIPPET_BYTES: usize = 2048;
/// The longest failure message kept in the status.
pub const MESSAGE_LIMIT: usize = 4096;

/// The most package changes a history entry records (the status must stay well below the
/// API server's object size limit with 50 entries of a large image).
pub const MAX_RECORDED_CHANGES: usize = 100;
/// The longest failure message a history entry keeps.
pub const HISTORY_MESSAGE_LIMIT: usize = 512;

/// The Job condition reason of a Job that ran past `activeDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
/// The Pod status reason of an evicted Pod.
pub const EVICTED: &str = "Evicted";
/// The terminated reason of a container killed for memory.
pub const OOM_KILLED: &str = "OOMKilled";

const IMAGE_PULL_REASONS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// Why a build failed, in the status' vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The condition reason.
    pub reason: Reason,
    /// What happened.
    pub message: String,
    /// The end of the builder's log, when the builder left no result.
    pub log_snippet: Option<String>,
}

/// How a finished Job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// The builder reported an image.
    Succeeded(ImageResult),
    /// The build failed.
    Failed(Failure),
}

/// How a build ended, after the post-build hook ran for a successful one.
#[derive(Clone, Debug, PartialEq)]
pub enum Finish {
    /// Built, pushed and (as configured) signed.
    Succeeded {
        /// The builder's result.
        image: ImageResult,
        /// What the post-build hook attached.
        signing: SigningOutcome,
    },
    /// Built and pushed, but signing or attesting failed.
    SigningFailed {
        /// The builder's result.
        image: ImageResult,
        /// The hook's error.
        message: String,
    },
    /// The build failed.
    Failed(Failure),
}

/// Formats a time as Kubernetes writes it: RFC 3339 in UTC with whole seconds.
pub fn format_time(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The builder container's termination message: the current state's, else the previous one's.
pub fn termination_message(pod: &Pod) -> Option<&str> {
    builder_termination(pod)?
        .message
        .as_deref()
        .filter(|m| !m.trim().is_empty())
}

/// The status of the builder container of `pod`.
fn builder_container(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_deref()?
        .iter()
        .find(|c| c.name == CONTAINER_NAME)
}

/// How the builder container terminated: its current state, else its previous one.
fn builder_termination(pod: &Pod) -> Option<&ContainerStateTerminated> {
    let status = builder_container(pod)?;
    fn terminated(state: Option<&ContainerState>) -> Option<&ContainerStateTerminated> {
        state.and_then(|s| s.terminated.as_ref())
    }
    terminated(status.state.as_ref()).or_else(|| terminated(status.last_state.as_ref()))
}

/// Reads how a finished Job ended. The builder's result decides when there is one; otherwise,
/// in order: an image pull error, `DeadlineExceeded` (→ `BuildTimeout`), an evicted Pod
/// (→ `PodEvicted`), an `OOMKilled` container (→ `OutOfMemory`), else `BuildFailed`.
pub fn job_outcome(job: &Job, pod: Option<&Pod>) -> JobOutcome {
    let message = pod.and_then(termination_message);
    let result = message.and_then(|m| BuildResult::parse(m).ok());
    let log_snippet = if result.is_none() {
        message.map(log_snippet)
    } else {
        None
    };

    if let Some(result) = &result {
        if let Some(error) = &result.error {
            return JobOutcome::Failed(failure_from_result(error));
        }
        if let Some(image) = &result.image
            && job_state(job) == JobState::Succeeded
        {
            return JobOutcome::Succeeded(image.clone());
        }
    }
    let failure = |reason, message: String| {
        JobOutcome::Failed(Failure {
            reason,
            message: shorten_middle(&message, MESSAGE_LIMIT),
            log_snippet: log_snippet.clone(),
        })
    };
    if job_state(job) == JobState::Succeeded {
        return failure(
            Reason::BuildFailed,
            format!("the builder finished without writing a result to {TERMINATION_LOG}"),
        );
    }
    if let Some((reason, detail)) = pod.and_then(image_pull_error) {
        return failure(
            Reason::BuildFailed,
            format!("the builder image cannot be pulled: {reason}: {detail}"),
        );
    }
    let failed_condition = true_condition(job, JOB_FAILED);
    if failed_condition.and_then(|c| c.reason.as_deref()) == Some(DEADLINE_EXCEEDED) {
        let deadline = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        let message = match deadline {
            Some(seconds) => format!("the build did not finish within its timeout of {seconds}s"),
            None => "the build did not finish within its timeout".to_string(),
        };
        return failure(Reason::BuildTimeout, message);
    }
    let pod_status = pod.and_then(|p| p.status.as_ref());
    if pod_status.and_then(|s| s.reason.as_deref()) == Some(EVICTED) {
        let detail = pod_status
            .and_then(|s| s.message.clone())
            .unwrap_or_default();
        return failure(
            Reason::PodEvicted,
            format!("the builder Pod was evicted: {detail}")
                .trim_end_matches([' ', ':'])
                .to_string(),
        );
    }
    let terminated = pod.and_then(builder_terminated);
    if terminated
        .as_ref()
        .is_some_and(|(reason, _)| reason == OOM_KILLED)
    {
        return failure(
            Reason::OutOfMemory,
            "the builder ran out of memory (OOMKilled); raise spec.builder.resources.limits.memory"
                .to_string(),
        );
    }
    let message = match (terminated, failed_condition) {
        (Some((reason, code)), _) => format!("the builder exited with code {code} ({reason})"),
        (None, Some(condition)) => format!(
            "the builder Job failed: {}: {}",
            condition.reason.as_deref().unwrap_or(JOB_FAILED),
            condition.message.as_deref().unwrap_or("no message")
        ),
        (None, None) => "the builder Job failed without a result".to_string(),
    };
    failure(Reason::BuildFailed, message)
}

/// Maps the builder's failure to a condition reason; unknown or non-failure reasons become
/// `BuildFailed` with the builder's reason kept in the message.
fn failure_from_result(error: &FailureResult) -> Failure {
    let known = Reason::parse(&error.reason).filter(|r| {
        !matches!(
            r,
            Reason::Succeeded | Reason::BuildPending | Reason::Building
        )
    });
    let (reason, message) = match known {
        Some(reason) => (reason, error.message.clone()),
        None => (
            Reason::BuildFailed,
            format!("{}: {}", error.reason, error.message),
        ),
    };
    Failure {
        reason,
        message: shorten_middle(&message, MESSAGE_LIMIT),
        log_snippet: None,
    }
}

/// The reason and message of a builder container stuck pulling its image.
fn image_pull_error(pod: &Pod) -> Option<(String, String)> {
    let waiting = builder_container(pod)?.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    IMAGE_PULL_REASONS.contains(&reason).then(|| {
        (
            reason.to_string(),
            waiting.message.clone().unwrap_or_default(),
        )
    })
}

/// The terminated reason and exit code of the builder container.
fn builder_terminated(pod: &Pod) -> Option<(String, i32)> {
    let terminated = builder_termination(pod)?;
    Some((
        terminated
            .reason
            .clone()
            .unwrap_or_else(|| "Error".to_string()),
        terminated.exit_code,
    ))
}

/// The last [`LOG_SNIPPET_LINES`] lines of a log, at most [`LOG_SNIPPET_BYTES`] bytes.
pub fn log_snippet(log: &str) -> String {
    let lines: Vec<&str> = log.trim_end().lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_SNIPPET_LINES)..].join("\n");
    if tail.len() <= LOG_SNIPPET_BYTES {
        return tail;
    }
    let mut start = tail.len() - LOG_SNIPPET_BYTES;
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    tail[start..].to_string()
}

/// How long a finished Job ran, from its start to its completion (or failure).
pub fn build_duration(job: &Job) -> Option<Duration> {
    let status = job.status.as_ref()?;
    let start = status.start_time.as_ref()?.0;
    let end = finish_time(job)?;
    let seconds = end.as_millisecond().checked_sub(start.as_millisecond())?;
    u64::try_from(seconds).ok().map(Duration::from_millis)
}

fn finish_time(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    status.completion_time.as_ref().map(|t| t.0).or_else(|| {
        status
            .conditions
            .as_deref()?
            .iter()
            .find(|c| {
                (c.type_ == JOB_FAILED || c.type_ == JOB_COMPLETE) && c.status == CONDITION_TRUE
            })?
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
    })
}

/// The status kept from before, with `observedGeneration` set to the current generation.
fn base(ib: &ImageBuild) -> ImageBuildStatus {
    let mut status = ib.status.clone().unwrap_or_default();
    status.observed_generation = ib.metadata.generation;
    status
}

fn set_progress(
    status: &mut ImageBuildStatus,
    reason: Reason,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    set_condition(
        &mut status.conditions,
        ConditionType::Ready,
        false,
        reason,
        message.clone(),
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        ConditionType::Reconciling,
        true,
        reason,
        message,
        generation,
        now,
    );
    remove_condition(&mut status.conditions, ConditionType::Stalled);
}

/// The status right after the Job for `trigger` was created (or found already created).
/// Records the current rebuild request as handled and the packages as just resolved, since
/// every build resolves them afresh.
pub fn build_started(
    ib: &ImageBuild,
    trigger: &Trigger,
    job_name: &str,
    now: Timestamp,
) -> ImageBuildStatus {
    let mut status = base(ib);
    status.last_build = Some(BuildRecord {
        job: job_name.to_string(),
        reason: trigger.reason(),
        generation: trigger.generation,
        outcome: BuildOutcome::Running,
        start_time: Some(format_time(now)),
        completion_time: None,
        failure: None,
    });
    if let Some(request) = ib
        .annotations()
        .get(REBUILD_ANNOTATION)
        .filter(|r| !r.is_empty())
    {
        status.handled_rebuild_request = Some(request.clone());
    }
    status.last_resolved = Some(format_time(now));
    let message = format!("{}: started Job {job_name}", trigger.describe());
    set_progress(
        &mut status,
        Reason::BuildPending,
        message,
        ib.metadata.generation,
        now,
    );
    status
}

/// The status while the build for `trigger` waits for one of the `limit` build slots.
pub fn build_queued(
    ib: &ImageBuild,
    trigger: &Trigger,
    running: usize,
    limit: usize,
    now: Timestamp,
) -> ImageBuildStatus {
    let mut status = base(ib);
    let message = format!(
        "{}: waiting for a build slot ({running} of {limit} builds running)",
        trigger.describe()
    );
    set_progress(
        &mut status,
        Reason::BuildPending,
        message,
        ib.metadata.generation,
        now,
    );
    status
}

/// Since when `ib` waits for a build slot: the time its `Reconciling` condition turned true
/// with reason `BuildPending` (kept across reconciles and restarts), when it waits.
pub fn pending_since(ib: &ImageBuild) -> Option<Timestamp> {
    let status = ib.status.as_ref()?;
    if status
        .last_build
        .as_ref()
        .is_some_and(|b| b.outcome == BuildOutcome::Running)
    {
        return None;
    }
    find_condition(&status.conditions, ConditionType::Reconciling)
        .filter(|c| c.status == CONDITION_TRUE && c.reason == Reason::BuildPending.as_str())
        .map(|c| c.last_transition_time.0)
}

/// The record of the build run by `job`: the recorded one when it names the Job, otherwise one
/// read from the Job's labels (for a Job whose creation was never recorded).
fn record_for(ib: &ImageBuild, job_name: &str, job: Option<&Job>) -> BuildRecord {
    let recorded = ib
        .status
        .as_ref()
        .and_then(|s| s.last_build.clone())
        .filter(|b| b.job == job_name);
    let mut record = recorded.unwrap_or_else(|| BuildRecord {
        job: job_name.to_string(),
        reason: job.and_then(job_reason).unwrap_or(BuildReason::SpecChanged),
        generation: job
            .and_then(job_generation)
            .or(ib.metadata.generation)
            .unwrap_or(0),
        outcome: BuildOutcome::Running,
        start_time: None,
        completion_time: None,
        failure: None,
    });
    if let Some(start) = job.and_then(|j| j.status.as_ref()?.start_time.as_ref()) {
        record.start_time = Some(format_time(start.0));
    } else if record.start_time.is_none() {
        record.start_time = job
            .and_then(|j| j.metadata.creation_timestamp.as_ref())
            .map(|t| format_time(t.0));
    }
    record
}

/// The status while `job` is active: `BuildPending` until its Pod is ready, then `Building`.
pub fn build_progress(ib: &ImageBuild, job: &Job, now: Timestamp) -> ImageBuildStatus {
    let mut status = base(ib);
    let name = job.name_any();
    let record = record_for(ib, &name, Some(job));
    let ready = job.status.as_ref().and_then(|s| s.ready).unwrap_or(0) > 0;
    let (reason, message) = if ready {
        (
            Reason::Building,
            format!("building generation {} in Job {name}", record.generation),
        )
    } else {
        (
            Reason::BuildPending,
            format!("Job {name} waits for a build slot or its builder Pod"),
        )
    };
    status.last_build = Some(record);
    set_progress(&mut status, reason, message, ib.metadata.generation, now);
    status
}

/// The status after the build run by `job_name` ended. `job` is `None` when the Job vanished
/// before anyone saw it finish.
pub fn build_finished(
    ib: &ImageBuild,
    job_name: &str,
    job: Option<&Job>,
    finish: &Finish,
    now: Timestamp,
) -> ImageBuildStatus {
    let mut status = base(ib);
    let generation = ib.metadata.generation;
    let mut record = record_for(ib, job_name, job);
    let finished_at = format_time(job.and_then(finish_time).unwrap_or(now));
    record.completion_time = Some(finished_at.clone());

    let history_entry = |digest: Option<String>, outcome, lock: Option<String>| HistoryEntry {
        digest,
        reason: record.reason,
        outcome,
        time: finished_at.clone(),
        lock_digest: lock,
        job: Some(record.job.clone()),
        start_time: record.start_time.clone(),
        failure: None,
        package_changes: None,
        package_changes_omitted: None,
    };
    let entry;
    match finish {
        Finish::Succeeded { image, signing } => {
            let before = status
                .packages
                .as_ref()
                .map(|p| p.installed.clone())
                .filter(|installed| !installed.is_empty());
            record_image(&mut status, image);
            let installed = signing.packages.clone().unwrap_or_default();
            if let Some(packages) = status.packages.as_mut() {
                packages.installed = installed.clone();
            }
            status.signature = signing.signature.clone();
            status.sbom = signing.sbom.clone();
            status.attestations = signing.attestations.clone();
            record.outcome = BuildOutcome::Succeeded;
            record.failure = None;
            let mut changes = before
                .filter(|_| !installed.is_empty())
                .map(|before| package_changes(&before, &installed));
            let omitted = changes
                .as_mut()
                .and_then(|changes| {
                    let extra = changes.len().saturating_sub(MAX_RECORDED_CHANGES);
                    changes.truncate(MAX_RECORDED_CHANGES);
                    u32::try_from(extra).ok()
                })
                .filter(|extra| *extra > 0);
            entry = HistoryEntry {
                package_changes: changes,
                package_changes_omitted: omitted,
                ..history_entry(
                    Some(image.digest.clone()),
                    BuildOutcome::Succeeded,
                    Some(image.lock.clone()),
                )
            };
            let built = status
                .latest_image
                .clone()
                .unwrap_or_else(|| image.digest.clone());
            set_condition(
                &mut status.conditions,
                ConditionType::Ready,
                true,
                Reason::Succeeded,
                format!("built {built}"),
                generation,
                now,
            );
            remove_condition(&mut status.conditions, ConditionType::Reconciling);
            remove_condition(&mut status.conditions, ConditionType::Stalled);
        }
        Finish::SigningFailed { image, message } => {
            record_image(&mut status, image);
            status.signature = None;
            status.sbom = None;
            status.attestations.clear();
            let failure = Failure {
                reason: Reason::SigningFailed,
                message: shorten_middle(message, MESSAGE_LIMIT),
                log_snippet: None,
            };
            entry = HistoryEntry {
                failure: Some(history_failure(&failure)),
                ..history_entry(
                    Some(image.digest.clone()),
                    BuildOutcome::Failed,
                    Some(image.lock.clone()),
                )
            };
            record_failure(&mut status, &mut record, &failure, generation, now);
        }
        Finish::Failed(failure) => {
            let lock = job.and_then(job_lock_digest).map(str::to_string);
            entry = HistoryEntry {
                failure: Some(history_failure(failure)),
                ..history_entry(None, BuildOutcome::Failed, lock)
            };
            record_failure(&mut status, &mut record, failure, generation, now);
        }
    }
    status.history.insert(0, entry);
    let limit = usize::try_from(ib.spec.rebuild.status_history_limit.max(1)).unwrap_or(usize::MAX);
    status.history.truncate(limit);
    status.last_build = Some(record);
    status
}

/// The status after a build whose Job disappeared before it finished.
pub fn build_lost(ib: &ImageBuild, job_name: &str, now: Timestamp) -> ImageBuildStatus {
    let failure = Failure {
        reason: Reason::BuildFailed,
        message: format!("the builder Job {job_name} was deleted before it finished"),
        log_snippet: None,
    };
    build_finished(ib, job_name, None, &Finish::Failed(failure), now)
}

fn record_image(status: &mut ImageBuildStatus, image: &ImageResult) {
    status.digest = Some(image.digest.clone());
    status.latest_image = image.reference.clone();
    status.platforms = image
        .platforms
        .iter()
        .map(|p| PlatformDigest {
            architecture: p.arch.clone(),
            variant: p.variant.clone(),
            digest: p.digest.clone(),
        })
        .collect();
    status.tags = image.tags.clone();
    // The list of a build is recorded after its signing; until then none is claimed.
    status.packages = Some(PackageSummary {
        count: image.packages,
        lock_digest: image.lock.clone(),
        installed: Vec::new(),
    });
}

/// A failure as one history line: `Reason: message`, shortened.
fn history_failure(failure: &Failure) -> String {
    shorten_middle(
        &format!("{}: {}", failure.reason.as_str(), failure.message),
        HISTORY_MESSAGE_LIMIT,
    )
}

fn record_failure(
    status: &mut ImageBuildStatus,
    record: &mut BuildRecord,
    failure: &Failure,
    generation: Option<i64>,
    now: Timestamp,
) {
    record.outcome = BuildOutcome::Failed;
    record.failure = Some(BuildFailure {
        reason: failure.reason.as_str().to_string(),
        message: failure.message.clone(),
        log_snippet: failure.log_snippet.clone(),
    });
    // The operator never repeats a finished build on its own (a Job already retried a transient
    // failure once), so every failed build waits for a spec change or a rebuild request: it is
    // Stalled, which is what kstatus and Flux need to report it as Failed rather than Current.
    set_stalled(status, failure.reason, &failure.message, generation, now);
}

/// `Ready=False` and `Stalled=True` with `reason`, and no `Reconciling`: nothing happens until
/// the spec or the rebuild request changes.
fn set_stalled(
    status: &mut ImageBuildStatus,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let conditions = &mut status.conditions;
    set_condition(
        conditions,
        ConditionType::Ready,
        false,
        reason,
        message,
        generation,
        now,
    );
    remove_condition(conditions, ConditionType::Reconciling);
    set_condition(
        conditions,
        ConditionType::Stalled,
        true,
        reason,
        message,
        generation,
        now,
    );
}

/// The status of an ImageBuild whose spec cannot be built: `Ready=False` and `Stalled=True`
/// with reason `InvalidSpec`.
pub fn invalid_spec(ib: &ImageBuild, message: &str, now: Timestamp) -> ImageBuildStatus {
    let mut status = base(ib);
    let message = shorten_middle(message, MESSAGE_LIMIT);
    set_stalled(
        &mut status,
        Reason::InvalidSpec,
        &message,
        ib.metadata.generation,
        now,
    );
    status
}

/// The status after the packages were re-resolved without starting a build.
pub fn resolved(ib: &ImageBuild, now: Timestamp) -> ImageBuildStatus {
    let mut status = base(ib);
    status.last_resolved = Some(format_time(now));
    if status.conditions.is_empty() {
        set_condition(
            &mut status.conditions,
            ConditionType::Ready,
            false,
            Reason::BuildPending,
            "not built yet",
            ib.metadata.generation,
            now,
        );
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TestImageBuild, TestJob, TestPod, at, image_result};
    use crate::triggers::TriggerKind;
    use securebuild_crds::conditions::{find_condition, is_true};
    use securebuild_crds::imagebuild::{ArtifactReference, ImageBuildStatus};

    fn condition(status: &ImageBuildStatus, kind: ConditionType) -> Option<(String, String)> {
        find_condition(&status.conditions, kind).map(|c| (c.status.clone(), c.reason.clone()))
    }

    fn pair(status: &str, reason: &str) -> Option<(String, String)> {
        Some((status.to_string(), reason.to_string()))
    }

    #[test]
    fn failure_mapping() {
        let ib = TestImageBuild::new().build();
        let failed_job = |reason: &str| TestJob::for_build(&ib, "j").failed(reason).build();
        let succeeded_job = TestJob::for_build(&ib, "j").succeeded().build();
        let result_failure = |reason: &str, message: &str| {
            TestPod::new("j")
                .terminated("Error", 2, &BuildResult::failure(reason, message).to_json())
                .build()
        };
        let cases: Vec<(&str, Job, Option<Pod>, Reason, &str)> = vec![
            (
                "result reason",
                failed_job("BackoffLimitExceeded"),
                Some(result_failure("ResolutionFailed", "no go-1.99")),
                Reason::ResolutionFailed,
                "no go-1.99",
            ),
            (
                "unknown result reason",
                failed_job("BackoffLimitExceeded"),
                Some(result_failure("Weird", "boom")),
                Reason::BuildFailed,
                "Weird: boom",
            ),
            (
                "non-failure result reason",
                failed_job("BackoffLimitExceeded"),
                Some(result_failure("Succeeded", "odd")),
                Reason::BuildFailed,
                "Succeeded: odd",
            ),
            (
                "deadline",
                failed_job("DeadlineExceeded"),
                Some(TestPod::new("j").terminated("Error", 137, "").build()),
                Reason::BuildTimeout,
                "timeout of 1800s",
            ),
            (
                "deadline without pod",
                failed_job("DeadlineExceeded"),
                None,
                Reason::BuildTimeout,
                "did not finish",
            ),
            (
                "image pull",
                failed_job("DeadlineExceeded"),
                Some(
                    TestPod::new("j")
                        .waiting("ImagePullBackOff", "not found")
                        .build(),
                ),
                Reason::BuildFailed,
                "cannot be pulled: ImagePullBackOff: not found",
            ),
            (
                "evicted",
                failed_job("BackoffLimitExceeded"),
                Some(
                    TestPod::new("j")
                        .evicted("low on ephemeral-storage")
                        .build(),
                ),
                Reason::PodEvicted,
                "evicted: low on ephemeral-storage",
            ),
            (
                "oom",
                failed_job("BackoffLimitExceeded"),
                Some(TestPod::new("j").terminated("OOMKilled", 137, "").build()),
                Reason::OutOfMemory,
                "out of memory",
            ),
            (
                "exit code",
                failed_job("BackoffLimitExceeded"),
                Some(
                    TestPod::new("j")
                        .terminated("Error", 1, "panic: at the disco\n")
                        .build(),
                ),
                Reason::BuildFailed,
                "exited with code 1 (Error)",
            ),
            (
                "job condition only",
                failed_job("BackoffLimitExceeded"),
                None,
                Reason::BuildFailed,
                "BackoffLimitExceeded",
            ),
            (
                "complete without result",
                succeeded_job.clone(),
                Some(
                    TestPod::new("j")
                        .terminated("Completed", 0, "done\n")
                        .build(),
                ),
                Reason::BuildFailed,
                "without writing a result",
            ),
        ];
        for (name, job, pod, reason, message) in cases {
            let JobOutcome::Failed(failure) = job_outcome(&job, pod.as_ref()) else {
                panic!("{name}: expected a failure");
            };
            assert_eq!(failure.reason, reason, "{name}");
            assert!(
                failure.message.contains(message),
                "{name}: {}",
                failure.message
            );
        }

        let log_pod = TestPod::new("j")
            .terminated("Error", 1, "line 1\nline 2\n")
            .build();
        let JobOutcome::Failed(failure) =
            job_outcome(&failed_job("BackoffLimitExceeded"), Some(&log_pod))
        else {
            panic!("expected a failure");
        };
        assert_eq!(failure.log_snippet.as_deref(), Some("line 1\nline 2"));

        let image = image_result("sha256:lock");
        let ok_pod = TestPod::new("j")
            .terminated(
                "Completed",
                0,
                &BuildResult::success(image.clone()).to_termination_message(),
            )
            .build();
        assert_eq!(
            job_outcome(&succeeded_job, Some(&ok_pod)),
            JobOutcome::Succeeded(image)
        );
        let previous = TestPod::new("j")
            .previous_terminated("OOMKilled", 137)
            .build();
        assert!(matches!(
            job_outcome(&failed_job("BackoffLimitExceeded"), Some(&previous)),
            JobOutcome::Failed(Failure {
                reason: Reason::OutOfMemory,
                ..
            })
        ));
    }

    #[test]
    fn snippets_and_truncation() {
        let log: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let snippet = log_snippet(&log);
        assert!(
            snippet.starts_with("line 11\n") && snippet.ends_with("line 30"),
            "{snippet}"
        );
        let wide = "é".repeat(3000);
        let snippet = log_snippet(&wide);
        assert!(snippet.len() <= LOG_SNIPPET_BYTES);
        assert!(snippet.chars().all(|c| c == 'é'));
        let long = shorten_middle(&"ü".repeat(3000), 100);
        assert!(long.len() <= 100 && long.contains(" … "));
        assert_eq!(shorten_middle("short", 100), "short");
    }

    #[test]
    fn started_and_queued() {
        let ib = TestImageBuild::new()
            .generation(4)
            .annotation(REBUILD_ANNOTATION, "r1")
            .build();
        let trigger = Trigger {
            generation: 4,
            kind: TriggerKind::SpecChanged,
        };
        let status = build_started(&ib, &trigger, "app-1", at(100));
        assert_eq!(status.observed_generation, Some(4));
        let last = status.last_build.as_ref().unwrap();
        assert_eq!(
            (last.job.as_str(), last.generation, last.outcome),
            ("app-1", 4, BuildOutcome::Running)
        );
        assert_eq!(status.handled_rebuild_request.as_deref(), Some("r1"));
        assert_eq!(
            status.last_resolved.as_deref(),
            Some("1970-01-01T00:01:40Z")
        );
        assert_eq!(
            condition(&status, ConditionType::Ready),
            pair("False", "BuildPending")
        );
        assert_eq!(
            condition(&status, ConditionType::Reconciling),
            pair("True", "BuildPending")
        );

        let stalled = TestImageBuild::new()
            .failed(1, "old", Reason::ResolutionFailed)
            .build();
        let status = build_started(&stalled, &trigger, "app-2", at(100));
        assert_eq!(condition(&status, ConditionType::Stalled), None);

        let status = build_queued(&ib, &trigger, 4, 4, at(100));
        let ready = find_condition(&status.conditions, ConditionType::Ready).unwrap();
        assert!(
            ready.message.contains("4 of 4 builds running"),
            "{}",
            ready.message
        );
        assert!(status.last_build.is_none());
    }

    #[test]
    fn progress_of_an_active_job() {
        let ib = TestImageBuild::new().running(1, "app-1").build();
        let pending = TestJob::for_build(&ib, "app-1").build();
        let status = build_progress(&ib, &pending, at(10));
        assert_eq!(
            condition(&status, ConditionType::Reconciling),
            pair("True", "BuildPending")
        );
        let running = TestJob::for_build(&ib, "app-1").started(5).ready().build();
        let status = build_progress(&ib, &running, at(10));
        assert_eq!(
            condition(&status, ConditionType::Ready),
            pair("False", "Building")
        );
        assert_eq!(
            status.last_build.unwrap().start_time.as_deref(),
            Some("1970-01-01T00:00:05Z")
        );

        // a Job nobody recorded: its labels tell the reason and generation
        let fresh = TestImageBuild::new().generation(7).build();
        let adopted = TestJob::for_build(&fresh, "app-x")
            .generation(6)
            .trigger("Manual")
            .created(3)
            .build();
        let record = build_progress(&fresh, &adopted, at(10)).last_build.unwrap();
        assert_eq!((record.generation, record.reason), (6, BuildReason::Manual));
        assert_eq!(record.start_time.as_deref(), Some("1970-01-01T00:00:03Z"));
    }

    #[test]
    fn success_records_the_image() {
        let ib = TestImageBuild::new()
            .history_limit(2)
            .running(1, "app-3")
            .build();
        let mut ib = ib;
        if let Some(status) = ib.status.as_mut() {
            for time in ["b", "a"] {
                status.history.push(HistoryEntry {
                    digest: None,
                    reason: BuildReason::SpecChanged,
                    outcome: BuildOutcome::Failed,
                    time: time.into(),
                    lock_digest: None,
                    job: None,
                    start_time: None,
                    failure: None,
                    package_changes: None,
                    package_changes_omitted: None,
                });
            }
            status.signature = Some(ArtifactReference {
                reference: "old".into(),
                digest: "old".into(),
            });
        }
        let job = TestJob::for_build(&ib, "app-3")
            .started(10)
            .completed_at(70)
            .succeeded()
            .build();
        let image = image_result("sha256:lock");
        let finish = Finish::Succeeded {
            image: image.clone(),
            signing: SigningOutcome::default(),
        };
        let status = build_finished(&ib, "app-3", Some(&job), &finish, at(100));
        assert_eq!(status.digest.as_deref(), Some(image.digest.as_str()));
        assert_eq!(status.latest_image, image.reference);
        assert_eq!(status.platforms.len(), 2);
        assert_eq!(status.platforms[1].variant.as_deref(), Some("v7"));
        assert_eq!(status.tags, ["latest"]);
        assert_eq!(status.packages.as_ref().unwrap().lock_digest, "sha256:lock");
        assert_eq!(
            status.signature, None,
            "a signature of an older digest is dropped"
        );
        assert_eq!(status.history.len(), 2);
        assert_eq!(status.history[0].outcome, BuildOutcome::Succeeded);
        assert_eq!(status.history[0].time, "1970-01-01T00:01:10Z");
        assert_eq!(status.history[1].time, "b");
        let last = status.last_build.as_ref().unwrap();
        assert_eq!(last.outcome, BuildOutcome::Succeeded);
        assert_eq!(last.start_time.as_deref(), Some("1970-01-01T00:00:10Z"));
        assert!(is_true(&status.conditions, ConditionType::Ready));
        assert_eq!(condition(&status, ConditionType::Reconciling), None);
        assert_eq!(build_duration(&job), Some(Duration::from_secs(60)));
    }

    #[test]
    fn package_lists_and_their_changes_are_recorded() {
        use securebuild_crds::imagebuild::{InstalledPackage, PackageChange};
        let package = |name: &str, version: &str| InstalledPackage {
            name: name.into(),
            version: version.into(),
            architectures: vec!["aarch64".into(), "x86_64".into()],
        };
        let succeed = |ib: &ImageBuild, job: &str, packages: Option<Vec<InstalledPackage>>| {
            let finish = Finish::Succeeded {
                image: image_result("sha256:lock"),
                signing: SigningOutcome {
                    packages,
                    ..SigningOutcome::default()
                },
            };
            let mut next = ib.clone();
            next.status = Some(build_finished(ib, job, None, &finish, at(100)));
            next
        };
        let ib = TestImageBuild::new().running(1, "app-1").build();
        let first = succeed(&ib, "app-1", Some(vec![package("go", "1.25.7-r0")]));
        let status = first.status.as_ref().unwrap();
        assert_eq!(
            status.packages.as_ref().unwrap().installed,
            [package("go", "1.25.7-r0")]
        );
        assert_eq!(
            status.history[0].package_changes, None,
            "nothing to compare the first list with"
        );
        assert_eq!(status.history[0].job.as_deref(), Some("app-1"));

        let second = succeed(
            &first,
            "app-2",
            Some(vec![
                package("go", "1.25.8-r0"),
                package("tzdata", "2026a-r0"),
            ]),
        );
        let changes = second.status.as_ref().unwrap().history[0]
            .package_changes
            .clone()
            .unwrap();
        let both = vec!["aarch64".to_string(), "x86_64".to_string()];
        assert_eq!(
            changes,
            [
                PackageChange {
                    name: "go".into(),
                    from: Some("1.25.7-r0".into()),
                    to: Some("1.25.8-r0".into()),
                    architectures: both.clone(),
                },
                PackageChange {
                    name: "tzdata".into(),
                    from: None,
                    to: Some("2026a-r0".into()),
                    architectures: both,
                },
            ]
        );

        // A build whose list is unknown claims no list and no changes, and the next build has
        // nothing to compare with.
        let third = succeed(&second, "app-3", None);
        let status = third.status.as_ref().unwrap();
        assert!(status.packages.as_ref().unwrap().installed.is_empty());
        assert_eq!(status.history[0].package_changes, None);
        let fourth = succeed(&third, "app-4", Some(vec![package("go", "1.25.8-r0")]));
        assert_eq!(
            fourth.status.as_ref().unwrap().history[0].package_changes,
            None
        );

        // A build that moves more packages than a history entry records keeps the first ones
        // and counts the rest.
        let many: Vec<InstalledPackage> = (0..MAX_RECORDED_CHANGES + 7)
            .map(|i| package(&format!("p{i:03}"), "1.0-r0"))
            .collect();
        let big = succeed(&fourth, "app-6", Some(many));
        let entry = &big.status.as_ref().unwrap().history[0];
        assert_eq!(
            entry.package_changes.as_ref().unwrap().len(),
            MAX_RECORDED_CHANGES
        );
        assert_eq!(
            entry.package_changes_omitted,
            Some(8),
            "7 more added, go removed"
        );

        // A failed build says why in its history entry.
        let failed = Finish::Failed(Failure {
            reason: Reason::ResolutionFailed,
            message: "no package `nope`".into(),
            log_snippet: None,
        });
        let status = build_finished(&second, "app-5", None, &failed, at(200));
        assert_eq!(
            status.history[0].failure.as_deref(),
            Some("ResolutionFailed: no package `nope`")
        );
        assert_eq!(
            status.packages.unwrap().installed.len(),
            2,
            "a failed build keeps the last image's list"
        );
    }

    #[test]
    fn failures_keep_the_last_good_image() {
        let ib = TestImageBuild::new()
            .succeeded(1, "app-1", "sha256:good")
            .generation(2)
            .running(2, "app-2")
            .build();
        let job = TestJob::for_build(&ib, "app-2")
            .failed("BackoffLimitExceeded")
            .build();
        // Every failed build is Stalled: nothing retries it until the spec or the rebuild
        // annotation changes.
        let cases = [
            (Reason::ResolutionFailed, true),
            (Reason::PushFailed, true),
            (Reason::OutOfMemory, true),
            (Reason::PodEvicted, true),
        ];
        for (reason, stalled) in cases {
            let failure = Failure {
                reason,
                message: "it broke".into(),
                log_snippet: Some("log".into()),
            };
            let status =
                build_finished(&ib, "app-2", Some(&job), &Finish::Failed(failure), at(100));
            assert_eq!(
                status.packages.as_ref().unwrap().lock_digest,
                "sha256:good",
                "{reason:?}"
            );
            assert_eq!(
                condition(&status, ConditionType::Ready),
                pair("False", reason.as_str())
            );
            assert_eq!(
                is_true(&status.conditions, ConditionType::Stalled),
                stalled,
                "{reason:?}"
            );
            assert_eq!(condition(&status, ConditionType::Reconciling), None);
            let failure = status.last_build.as_ref().unwrap().failure.clone().unwrap();
            assert_eq!(
                (failure.reason.as_str(), failure.log_snippet.as_deref()),
                (reason.as_str(), Some("log"))
            );
            assert_eq!(status.history[0].outcome, BuildOutcome::Failed);
            assert_eq!(
                status.history[0].time, "1970-01-01T00:01:30Z",
                "the Job's failure time"
            );
        }

        let update = TestJob::for_build(&ib, "app-2")
            .trigger("PackageUpdate")
            .lock("sha256:new")
            .failed("BackoffLimitExceeded")
            .build();
        let failure = Failure {
            reason: Reason::PushFailed,
            message: "denied".into(),
            log_snippet: None,
        };
        let status = build_finished(
            &ib,
            "app-2",
            Some(&update),
            &Finish::Failed(failure),
            at(100),
        );
        assert_eq!(status.history[0].lock_digest.as_deref(), Some("sha256:new"));
    }

    #[test]
    fn signing_failure_and_lost_jobs() {
        let ib = TestImageBuild::new().running(1, "app-1").build();
        let job = TestJob::for_build(&ib, "app-1").succeeded().build();
        let image = image_result("sha256:lock");
        let finish = Finish::SigningFailed {
            image: image.clone(),
            message: "no key".into(),
        };
        let status = build_finished(&ib, "app-1", Some(&job), &finish, at(100));
        assert_eq!(status.digest.as_deref(), Some(image.digest.as_str()));
        assert_eq!(
            condition(&status, ConditionType::Ready),
            pair("False", "SigningFailed")
        );
        assert_eq!(
            condition(&status, ConditionType::Stalled),
            pair("True", "SigningFailed")
        );
        assert_eq!(
            status.history[0].digest.as_deref(),
            Some(image.digest.as_str())
        );

        let status = build_lost(&ib, "app-1", at(100));
        let last = status.last_build.unwrap();
        assert_eq!(last.outcome, BuildOutcome::Failed);
        assert!(
            last.failure
                .unwrap()
                .message
                .contains("deleted before it finished")
        );
    }

    #[test]
    fn invalid_spec_and_resolved() {
        let ib = TestImageBuild::new().generation(3).build();
        let status = invalid_spec(&ib, "bad timeout", at(1));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(
            condition(&status, ConditionType::Ready),
            pair("False", "InvalidSpec")
        );
        assert_eq!(
            condition(&status, ConditionType::Stalled),
            pair("True", "InvalidSpec")
        );

        let status = resolved(&ib, at(60));
        assert_eq!(
            status.last_resolved.as_deref(),
            Some("1970-01-01T00:01:00Z")
        );
        assert_eq!(
            condition(&status, ConditionType::Ready),
            pair("False", "BuildPending")
        );
        let built = TestImageBuild::new().succeeded(1, "a", "sha256:l").build();
        let status = resolved(&built, at(60));
        assert!(is_true(&status.conditions, ConditionType::Ready));
    }

    #[test]
    fn termination_messages() {
        assert_eq!(
            termination_message(&TestPod::new("j").terminated("Error", 1, "  \n").build()),
            None
        );
        assert_eq!(
            termination_message(&TestPod::new("j").waiting("ContainerCreating", "").build()),
            None
        );
        assert_eq!(termination_message(&Pod::default()), None);
    }
}
