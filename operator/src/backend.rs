//! Where builds run: [`BuildBackend`] is how the controller starts and observes builds.
//! [`PodBackend`] runs each build as a Job (the builder image in a Pod, the `pod` backend);
//! [`LocalBackend`] runs it inside the operator process (the `local` backend).
//!
//! Both speak the Job vocabulary, so that [`crate::triggers`], [`crate::status`] and
//! [`crate::retention`] read them the same way: for each build the local backend keeps the Job
//! object [`crate::job::desired_job`] made (same deterministic name, labels, annotations and
//! owner), updates its status as the build goes — active, ready once it holds a build slot,
//! then `Complete` or `Failed` (`DeadlineExceeded` past its timeout) — and, once the build
//! ended, answers for its Pod with a builder container that terminated with the builder's
//! result as its message.
//!
//! The local backend builds what a builder Pod would: the input ConfigMap's image
//! configuration and push target, with the credentials of the ImageBuild's push Secret. Its
//! builds live in memory only: a restarted operator has forgotten them, and a build that was
//! running is then reported lost, as a deleted Job is. It keeps finished builds until the
//! history limits delete them, or `jobTtlSecondsAfterFinished` after they ended.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use securebuild_builder::build::build;
use securebuild_builder::registry::parse_reference;
use securebuild_builder::result::BuildResult;
use securebuild_crds::conditions::Reason;
use securebuild_crds::{ImageBuild, ImageConfiguration};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::controller::FIELD_MANAGER;
use crate::job::{
    CONDITION_TRUE, CONTAINER_NAME, IMAGE_CONFIG_KEY, JOB_COMPLETE, JOB_FAILED, JOB_NAME_LABEL,
    TARGET_KEY, TERMINAL_EXIT_CODE,
};
use crate::status::DEADLINE_EXCEEDED;
use crate::{Error, Result};

/// How many finished-build notices wait for a slow subscriber before the oldest are dropped
/// (a dropped notice only delays the reconcile until its periodic requeue).
pub const NOTICE_CAPACITY: usize = 1024;
/// The prefix of the directory a local build writes its layout into (removed after the push).
pub const STAGING_PREFIX: &str = ".securebuild-local-";
/// The layout's name inside the staging directory.
pub const LAYOUT_DIR_NAME: &str = "image.oci";
/// The Job condition reason of a local build that failed before its deadline.
pub const LOCAL_FAILURE_REASON: &str = "BuildFailed";
/// The Job condition marking that a Job met its success criteria (set before `Complete`).
pub const JOB_SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
/// The terminated reason of a builder container that exited 0.
pub const TERMINATED_COMPLETED: &str = "Completed";
/// The terminated reason of a builder container that failed.
pub const TERMINATED_ERROR: &str = "Error";

/// A build that ended, for the controller to reconcile its ImageBuild at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedBuild {
    /// The ImageBuild's namespace.
    pub namespace: String,
    /// The ImageBuild's name.
    pub image_build: String,
    /// The build's (Job's) name.
    pub build: String,
}

/// Starts and observes builds; every name is the deterministic build (Job) name.
pub trait BuildBackend: Send + Sync {
    /// The builds of the ImageBuild `image_build`, as Jobs (the controller keeps those the
    /// ImageBuild owns).
    fn list_builds<'a>(
        &'a self,
        namespace: &'a str,
        image_build: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Job>>>;

    /// Starts the build that `job` describes, with `config_map` as its input. Returns `false`
    /// when a build of that name already exists (nothing is started twice).
    fn start_build<'a>(
        &'a self,
        ib: &'a ImageBuild,
        config_map: &'a ConfigMap,
        job: &'a Job,
    ) -> BoxFuture<'a, Result<bool>>;

    /// The builder Pods of the build `build` (its result is in a Pod's termination message).
    fn build_pods<'a>(
        &'a self,
        namespace: &'a str,
        build: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Pod>>>;

    /// Releases the input of a finished build.
    fn release_inputs<'a>(
        &'a self,
        namespace: &'a str,
        build: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// Deletes a finished build (beyond the history limits).
    fn delete_build<'a>(&'a self, namespace: &'a str, build: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Stops and forgets every build of an ImageBuild that is being deleted. Nothing to do
    /// for Jobs, which the garbage collector removes through their owner reference.
    fn abandon<'a>(&'a self, _namespace: &'a str, _image_build: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Notices of finished builds, for backends whose builds no watch sees; `None` when the
    /// Job watch already tells.
    fn finished_builds(&self) -> Option<broadcast::Receiver<FinishedBuild>> {
        None
    }
}

/// The `pod` backend: one ConfigMap and one Job per build, in the ImageBuild's namespace.
#[derive(Clone)]
pub struct PodBackend {
    client: Client,
}

/// A namespaced built-in Kubernetes object the Pod backend lists, creates or deletes; its
/// kind names it in errors.
trait ApiObject:
    k8s_openapi::Resource
    + Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
{
}

impl<K> ApiObject for K where
    K: k8s_openapi::Resource
        + Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
{
}

impl PodBackend {
    /// A backend that creates Jobs with `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The objects of kind `K` in `namespace` that match the label `selector`.
    async fn list<K>(&self, namespace: &str, selector: String) -> Result<Vec<K>>
    where
        K: ApiObject,
    {
        let kind = <K as k8s_openapi::Resource>::KIND;
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let listed = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(Error::kube("list", kind, namespace))?;
        Ok(listed.items)
    }

    /// Creates `object`; returns `false` when it already exists.
    async fn create<K>(&self, namespace: &str, object: &K) -> Result<bool>
    where
        K: ApiObject + Serialize,
    {
        let kind = <K as k8s_openapi::Resource>::KIND;
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match api.create(&params, object).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(false),
            Err(error) => Err(Error::kube("create", kind, &object.name_any())(error)),
        }
    }

    /// Deletes the object `name` of kind `K`; one that is already gone is success.
    async fn delete<K>(&self, namespace: &str, name: &str, params: DeleteParams) -> Result<()>
    where
        K: ApiObject,
    {
        let kind = <K as k8s_openapi::Resource>::KIND;
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(error) => Err(Error::kube("delete", kind, name)(error)),
        }
    }
}

impl BuildBackend for PodBackend {
    fn list_builds<'a>(
        &'a self,
        namespace: &'a str,
        image_build: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Job>>> {
        Box::pin(self.list(namespace, crate::job::selector(image_build)))
    }

    /// Creates the ConfigMap and the Job; `AlreadyExists` for either is success (a restarted
    /// operator computed the same names).
    fn start_build<'a>(
        &'a self,
        ib: &'a ImageBuild,
        config_map: &'a ConfigMap,
        job: &'a Job,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let namespace = ib.namespace().unwrap_or_default();
            self.create(&namespace, config_map).await?;
            self.create(&namespace, job).await
        })
    }

    fn build_pods<'a>(
        &'a self,
        namespace: &'a str,
        build: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Pod>>> {
        Box::pin(self.list(namespace, format!("{JOB_NAME_LABEL}={build}")))
    }

    /// Deletes the input ConfigMap: the build's Pods are done with it.
    fn release_inputs<'a>(
        &'a self,
        namespace: &'a str,
        build: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.delete::<ConfigMap>(namespace, build, DeleteParams::default()))
    }

    /// Deletes the Job with its Pods (background propagation).
    fn delete_build<'a>(&'a self, namespace: &'a str, build: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.delete::<Job>(namespace, build, DeleteParams::background()))
    }
}

/// The push target in the input ConfigMap ([`TARGET_KEY`]).
#[derive(Debug, Deserialize)]
struct TargetInput {
    repository: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// One build of the local backend.
struct LocalBuild {
    image_build: String,
    job: Job,
    result: Option<BuildResult>,
    cancel: CancellationToken,
    finished_at: Option<Timestamp>,
}

type BuildKey = (String, String);
type Builds = Arc<Mutex<BTreeMap<BuildKey, LocalBuild>>>;

/// The `local` backend: builds with the builder library in the operator process, at most
/// `maxConcurrentBuilds` at once, each on a blocking thread of its own.
#[derive(Clone)]
pub struct LocalBackend {
    client: Client,
    config: Arc<Config>,
    builds: Builds,
    permits: Arc<Semaphore>,
    finished: broadcast::Sender<FinishedBuild>,
}

impl LocalBackend {
    /// A backend that reads push Secrets with `client` and builds with `config`'s cache and
    /// work directories.
    pub fn new(client: Client, config: Arc<Config>) -> Self {
        let permits = Arc::new(Semaphore::new(usize::from(config.max_concurrent_builds)));
        let (finished, _) = broadcast::channel(NOTICE_CAPACITY);
        Self {
            client,
            config,
            builds: Arc::new(Mutex::new(BTreeMap::new())),
            permits,
            finished,
        }
    }

    /// How many builds the backend holds (running or finished).
    pub fn len(&self) -> usize {
        lock(&self.builds).len()
    }

    /// Whether the backend holds no build.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets finished builds that ended more than `jobTtlSecondsAfterFinished` ago.
    fn expire(&self, now: Timestamp) {
        let Some(ttl) = self.config.job_ttl_seconds else {
            return;
        };
        let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
        lock(&self.builds).retain(|_, build| {
            build.finished_at.is_none_or(|finished| {
                now.as_millisecond() - finished.as_millisecond()
                    <= i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
            })
        });
    }
}

fn lock(builds: &Builds) -> std::sync::MutexGuard<'_, BTreeMap<BuildKey, LocalBuild>> {
    builds.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BuildBackend for LocalBackend {
    fn list_builds<'a>(
        &'a self,
        namespace: &'a str,
        image_build: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Job>>> {
        Box::pin(async move {
            self.expire(Timestamp::now());
            let builds = lock(&self.builds);
            Ok(builds
                .iter()
                .filter(|((ns, _), build)| ns == namespace && build.image_build == image_build)
                .map(|(_, build)| build.job.clone())
                .collect())
        })
    }

    fn start_build<'a>(
        &'a self,
        ib: &'a ImageBuild,
        config_map: &'a ConfigMap,
        job: &'a Job,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let namespace = ib.namespace().unwrap_or_default();
            let key = (namespace.clone(), job.name_any());
            let cancel = CancellationToken::new();
            {
                let mut builds = lock(&self.builds);
                if builds.contains_key(&key) {
                    return Ok(false);
                }
                let mut job = job.clone();
                job.metadata.creation_timestamp = Some(Time(Timestamp::now()));
                job.status = Some(JobStatus {
                    active: Some(1),
                    ready: Some(0),
                    ..JobStatus::default()
                });
                builds.insert(
                    key.clone(),
                    LocalBuild {
                        image_build: ib.name_any(),
                        job,
                        result: None,
                        cancel: cancel.clone(),
                        finished_at: None,
                    },
                );
            }
            let deadline = job
                .spec
                .as_ref()
                .and_then(|s| s.active_deadline_seconds)
                .and_then(|seconds| u64::try_from(seconds).ok())
                .map_or(self.config.default_timeout, Duration::from_secs);
            let run = LocalRun {
                backend: self.clone(),
                key,
                image_build: ib.clone(),
                input: config_map.data.clone().unwrap_or_default(),
                deadline,
                cancel,
            };
            tokio::spawn(run.run());
            Ok(true)
        })
    }

    fn build_pods<'a>(
        &'a self,
        namespace: &'a str,
        build: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Pod>>> {
        Box::pin(async move {
            let builds = lock(&self.builds);
            let Some(local) = builds.get(&(namespace.to_string(), build.to_string())) else {
                return Ok(Vec::new());
            };
            Ok(local
                .result
                .as_ref()
                .map(|result| result_pod(namespace, build, result, local.finished_at))
                .into_iter()
                .collect())
        })
    }

    /// Nothing to release: the input was read when the build started.
    fn release_inputs<'a>(
        &'a self,
        _namespace: &'a str,
        _build: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn delete_build<'a>(&'a self, namespace: &'a str, build: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if let Some(removed) =
                lock(&self.builds).remove(&(namespace.to_string(), build.to_string()))
            {
                removed.cancel.cancel();
            }
            Ok(())
        })
    }

    fn abandon<'a>(&'a self, namespace: &'a str, image_build: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            lock(&self.builds).retain(|(ns, _), build| {
                let doomed = ns == namespace && build.image_build == image_build;
                if doomed {
                    build.cancel.cancel();
                }
                !doomed
            });
        })
    }

    fn finished_builds(&self) -> Option<broadcast::Receiver<FinishedBuild>> {
        Some(self.finished.subscribe())
    }
}

/// How a local build ended.
enum Ending {
    /// The builder's result (success or failure).
    Result(BuildResult),
    /// The build ran past its deadline.
    DeadlineExceeded,
    /// The build was cancelled (its record is gone).
    Cancelled,
}

/// One local build, from waiting for a slot to recording its end.
struct LocalRun {
    backend: LocalBackend,
    key: BuildKey,
    image_build: ImageBuild,
    input: BTreeMap<String, String>,
    deadline: Duration,
    cancel: CancellationToken,
}

impl LocalRun {
    async fn run(self) {
        let permit = tokio::select! {
            permit = self.backend.permits.clone().acquire_owned() => permit.ok(),
            () = self.cancel.cancelled() => None,
        };
        let Some(permit) = permit else {
            return;
        };
        self.update(|job| {
            let status = job.status.get_or_insert_with(JobStatus::default);
            status.start_time = Some(Time(Timestamp::now()));
            status.ready = Some(1);
        });
        tracing::info!(namespace = %self.key.0, build = %self.key.1, "local build started");

        let handle = tokio::runtime::Handle::current();
        let client = self.backend.client.clone();
        let config = self.backend.config.clone();
        let ib = self.image_build.clone();
        let input = self.input.clone();
        let deadline = self.deadline;
        let cancel = self.cancel.clone();
        let joined = tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                tokio::select! {
                    outcome = tokio::time::timeout(deadline, build_and_push(&client, &config, &ib, &input)) => {
                        match outcome {
                            Ok(result) => Ending::Result(result),
                            Err(_) => Ending::DeadlineExceeded,
                        }
                    }
                    () = cancel.cancelled() => Ending::Cancelled,
                }
            })
        })
        .await;
        drop(permit);
        let ending = joined.unwrap_or_else(|error| {
            Ending::Result(BuildResult::failure(
                Reason::BuildFailed.as_str(),
                format!("the build task ended abnormally: {error}"),
            ))
        });
        self.finish(ending);
    }

    /// Changes the build's Job, if the build is still known.
    fn update(&self, change: impl FnOnce(&mut Job)) {
        if let Some(build) = lock(&self.backend.builds).get_mut(&self.key) {
            change(&mut build.job);
        }
    }

    fn finish(self, ending: Ending) {
        let now = Timestamp::now();
        let (result, condition) = match ending {
            Ending::Cancelled => return,
            Ending::DeadlineExceeded => (
                None,
                failed_condition(
                    DEADLINE_EXCEEDED,
                    format!(
                        "the build ran past its deadline of {}s",
                        self.deadline.as_secs()
                    ),
                    now,
                ),
            ),
            Ending::Result(result) if result.image.is_some() => (Some(result), None),
            Ending::Result(result) => {
                let message = result
                    .error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.reason, e.message))
                    .unwrap_or_default();
                (
                    Some(result),
                    failed_condition(LOCAL_FAILURE_REASON, message, now),
                )
            }
        };
        let succeeded = condition.is_none();
        {
            let mut builds = lock(&self.backend.builds);
            let Some(build) = builds.get_mut(&self.key) else {
                return;
            };
            let status = build.job.status.get_or_insert_with(JobStatus::default);
            status.active = None;
            status.ready = Some(0);
            if succeeded {
                status.succeeded = Some(1);
                status.completion_time = Some(Time(now));
                status.conditions = Some(vec![
                    true_condition(JOB_SUCCESS_CRITERIA_MET, now),
                    true_condition(JOB_COMPLETE, now),
                ]);
            } else {
                status.failed = Some(1);
                status.conditions = condition.map(|c| vec![c]);
            }
            build.result = result;
            build.finished_at = Some(now);
        }
        tracing::info!(namespace = %self.key.0, build = %self.key.1, succeeded, "local build finished");
        // No subscriber only means no controller is running (tests, shutdown).
        let _ = self.backend.finished.send(FinishedBuild {
            namespace: self.key.0.clone(),
            image_build: self.image_build.name_any(),
            build: self.key.1.clone(),
        });
    }
}

fn true_condition(kind: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: kind.to_string(),
        status: CONDITION_TRUE.to_string(),
        last_transition_time: Some(Time(now)),
        ..JobCondition::default()
    }
}

fn failed_condition(reason: &str, message: String, now: Timestamp) -> Option<JobCondition> {
    Some(JobCondition {
        reason: Some(reason.to_string()),
        message: Some(message),
        ..true_condition(JOB_FAILED, now)
    })
}

/// The Pod a builder that left `result` would have: its container terminated with the result
/// as the message, exit 0 on success and [`TERMINAL_EXIT_CODE`] on failure.
fn result_pod(
    namespace: &str,
    build: &str,
    result: &BuildResult,
    finished_at: Option<Timestamp>,
) -> Pod {
    let succeeded = result.image.is_some();
    let mut pod = Pod::default();
    pod.metadata.name = Some(build.to_string());
    pod.metadata.namespace = Some(namespace.to_string());
    pod.metadata.creation_timestamp = finished_at.map(Time);
    pod.labels_mut()
        .insert(JOB_NAME_LABEL.to_string(), build.to_string());
    pod.status = Some(PodStatus {
        container_statuses: Some(vec![ContainerStatus {
            name: CONTAINER_NAME.to_string(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: if succeeded { 0 } else { TERMINAL_EXIT_CODE },
                    reason: Some(
                        if succeeded {
                            TERMINATED_COMPLETED
                        } else {
                            TERMINATED_ERROR
                        }
                        .to_string(),
                    ),
                    message: Some(result.to_json()),
                    finished_at: finished_at.map(Time),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]),
        ..PodStatus::default()
    });
    pod
}

/// Builds the input's image and pushes it, as `securebuild build --push` does in a builder
/// Pod; every failure becomes a failed [`BuildResult`] with the builder's reason.
async fn build_and_push(
    client: &Client,
    config: &Config,
    ib: &ImageBuild,
    input: &BTreeMap<String, String>,
) -> BuildResult {
    let invalid = |message: String| BuildResult::failure(Reason::InvalidSpec.as_str(), message);
    let Some(image_yaml) = input.get(IMAGE_CONFIG_KEY) else {
        return invalid(format!("the build input has no {IMAGE_CONFIG_KEY}"));
    };
    let image = match ImageConfiguration::from_yaml(image_yaml) {
        Ok(image) => image,
        Err(error) => return invalid(error.to_string()),
    };
    let target: TargetInput = match input.get(TARGET_KEY).map(|text| serde_json::from_str(text)) {
        Some(Ok(target)) => target,
        Some(Err(error)) => return invalid(format!("invalid {TARGET_KEY}: {error}")),
        None => return invalid(format!("the build input has no {TARGET_KEY}")),
    };
    let reference = match parse_reference(&target.repository) {
        Ok(reference) => reference,
        Err(error) => return invalid(error.to_string()),
    };
    let registry = match crate::credentials::registry_for(client, ib, config).await {
        Ok(registry) => registry,
        Err(error) => {
            return BuildResult::failure(Reason::CredentialsInvalid.as_str(), error.to_string());
        }
    };
    let mut options = crate::resolver::build_options(config, Vec::new());
    options.tags = target.tags;
    // The layout only lives until it is pushed.
    let staging_parent = config.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let staging = match std::fs::create_dir_all(&staging_parent).and_then(|()| {
        tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(&staging_parent)
    }) {
        Ok(staging) => staging,
        Err(error) => {
            return BuildResult::failure(
                Reason::BuildFailed.as_str(),
                format!(
                    "cannot create a staging directory in {}: {error}",
                    staging_parent.display()
                ),
            );
        }
    };
    let output = staging.path().join(LAYOUT_DIR_NAME);
    let built = match build(&image, &options, &output).await {
        Ok(built) => built,
        Err(error) => return BuildResult::failure(error.reason(), error.to_string()),
    };
    match registry
        .push_layout(built.layout_dir(), &reference, &built.tags)
        .await
    {
        Ok(report) => built.result(Some(report.reference)),
        Err(error) => {
            let error = securebuild_builder::error::Error::from(error);
            BuildResult::failure(error.reason(), error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TestImageBuild, test_context};
    use crate::job::desired_job;
    use crate::status::{JobOutcome, job_outcome};
    use crate::triggers::{Trigger, TriggerKind};

    fn backend(config: Config) -> LocalBackend {
        let (ctx, _server) = test_context();
        LocalBackend::new(ctx.client.clone(), Arc::new(config))
    }

    fn objects(ib: &ImageBuild, config: &Config) -> (ConfigMap, Job) {
        let trigger = Trigger {
            generation: 1,
            kind: TriggerKind::SpecChanged,
        };
        desired_job(ib, &trigger, config).unwrap()
    }

    async fn next_notice(receiver: &mut broadcast::Receiver<FinishedBuild>) -> FinishedBuild {
        tokio::time::timeout(Duration::from_secs(30), receiver.recv())
            .await
            .expect("the build finishes")
            .unwrap()
    }

    /// A keyring that cannot be read fails the build at once, before any network use.
    fn unreadable_keyring() -> ImageBuild {
        TestImageBuild::new()
            .repositories(&["/nonexistent/securebuild/os"])
            .keyring(&["/nonexistent/securebuild/key.rsa.pub"])
            .build()
    }

    #[tokio::test]
    async fn failed_build_reads_like_a_failed_job() {
        let config = Config::default();
        let local = backend(config.clone());
        let mut notices = local.finished_builds().unwrap();
        let ib = unreadable_keyring();
        let (config_map, job) = objects(&ib, &config);
        assert!(local.start_build(&ib, &config_map, &job).await.unwrap());
        assert!(!local.start_build(&ib, &config_map, &job).await.unwrap());

        let notice = next_notice(&mut notices).await;
        assert_eq!(
            notice,
            FinishedBuild {
                namespace: "team".into(),
                image_build: "app".into(),
                build: job.name_any(),
            }
        );
        let listed = local.list_builds("team", "app").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(crate::job::is_owned_by(&listed[0], &ib));
        assert_eq!(
            crate::job::job_state(&listed[0]),
            crate::job::JobState::Failed
        );
        assert!(local.list_builds("team", "other").await.unwrap().is_empty());
        assert!(local.list_builds("other", "app").await.unwrap().is_empty());

        let pods = local.build_pods("team", &job.name_any()).await.unwrap();
        assert_eq!(pods.len(), 1);
        match job_outcome(&listed[0], pods.first()) {
            JobOutcome::Failed(failure) => {
                assert!(failure.message.contains("key.rsa.pub"), "{failure:?}");
                assert_ne!(failure.reason, Reason::Succeeded);
            }
            JobOutcome::Succeeded(image) => panic!("unexpected success: {image:?}"),
        }

        local.release_inputs("team", &job.name_any()).await.unwrap();
        assert_eq!(local.len(), 1);
        local.delete_build("team", &job.name_any()).await.unwrap();
        assert!(local.is_empty());
        assert!(
            local
                .build_pods("team", &job.name_any())
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn deadline_fails_the_build_as_a_timeout() {
        // A key server that accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let config = Config::default();
        let local = backend(config.clone());
        let mut notices = local.finished_builds().unwrap();
        let ib = TestImageBuild::new()
            .repositories(&[&format!("http://127.0.0.1:{port}/os")])
            .keyring(&[&format!("http://127.0.0.1:{port}/key.rsa.pub")])
            .timeout("1s")
            .build();
        let (config_map, job) = objects(&ib, &config);
        local.start_build(&ib, &config_map, &job).await.unwrap();
        next_notice(&mut notices).await;
        silent.abort();

        let listed = local.list_builds("team", "app").await.unwrap();
        let pods = local.build_pods("team", &job.name_any()).await.unwrap();
        assert!(pods.is_empty());
        match job_outcome(&listed[0], None) {
            JobOutcome::Failed(failure) => {
                assert_eq!(failure.reason, Reason::BuildTimeout);
                assert!(failure.message.contains("timeout of 1s"), "{failure:?}");
            }
            JobOutcome::Succeeded(image) => panic!("unexpected success: {image:?}"),
        }
    }

    #[tokio::test]
    async fn waiting_builds_hold_no_slot_and_can_be_abandoned() {
        let config = Config {
            max_concurrent_builds: 1,
            ..Config::default()
        };
        let local = backend(config.clone());
        // Take the only slot so that the build waits.
        let held = local.permits.clone().acquire_owned().await.unwrap();
        let ib = unreadable_keyring();
        let (config_map, job) = objects(&ib, &config);
        local.start_build(&ib, &config_map, &job).await.unwrap();
        tokio::task::yield_now().await;
        let listed = local.list_builds("team", "app").await.unwrap();
        let status = listed[0].status.clone().unwrap();
        assert_eq!((status.active, status.ready), (Some(1), Some(0)));
        assert!(status.start_time.is_none());

        local.abandon("team", "app").await;
        assert!(local.is_empty());
        drop(held);
        tokio::task::yield_now().await;
        assert!(local.is_empty());
    }

    #[tokio::test]
    async fn finished_builds_expire_after_the_ttl() {
        let config = Config {
            job_ttl_seconds: Some(0),
            ..Config::default()
        };
        let local = backend(config.clone());
        let mut notices = local.finished_builds().unwrap();
        let ib = unreadable_keyring();
        let (config_map, job) = objects(&ib, &config);
        local.start_build(&ib, &config_map, &job).await.unwrap();
        next_notice(&mut notices).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(local.list_builds("team", "app").await.unwrap().is_empty());
    }

    #[test]
    fn result_pods_carry_the_result() {
        let result = BuildResult::failure("ResolutionFailed", "nothing provides go");
        let pod = result_pod("team", "app-1", &result, None);
        assert_eq!(pod.labels()[JOB_NAME_LABEL], "app-1");
        assert_eq!(
            crate::status::termination_message(&pod),
            Some(result.to_json().as_str())
        );
    }
}
