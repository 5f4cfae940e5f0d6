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
//! configuration and push target, with the credentials of the ImageBuild's push Secret. That
//! ConfigMap, owned by the ImageBuild, is also the build's record in the API server, as a Job
//! is for the `pod` backend: the build's start, end and result go into its annotations, so a
//! restarted operator (or a new leader) reports a finished build as it ended and runs an
//! interrupted one again under the same name. Records stay until the history limits delete
//! them, or `jobTtlSecondsAfterFinished` after they ended.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use securebuild_builder::build::build;
use securebuild_builder::error::{Chain, chain};
use securebuild_builder::result::BuildResult;
use securebuild_crds::conditions::Reason;
use securebuild_crds::{ImageBuild, ImageConfiguration};
use securebuild_registry::parse_reference;
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
/// How many builds per build slot the `local` backend queues ahead of the running ones.
pub const RUN_AHEAD_PER_SLOT: usize = 4;
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

/// What happened to a build that no watch sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildEvent {
    /// It got a slot and began to run.
    Started,
    /// It ended (succeeded, failed or ran past its deadline) and its end is recorded.
    Finished,
}

/// A build that started or ended, for the controller to reconcile its ImageBuild at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildNotice {
    /// The ImageBuild's namespace.
    pub namespace: String,
    /// The ImageBuild's name.
    pub image_build: String,
    /// The build's (Job's) name.
    pub build: String,
    /// Whether it started or ended.
    pub event: BuildEvent,
}

/// Starts and observes builds; every name is the deterministic build (Job) name.
pub trait BuildBackend: Send + Sync {
    /// The builds of `ib`, as Jobs (the controller keeps those the ImageBuild owns).
    fn list_builds<'a>(&'a self, ib: &'a ImageBuild) -> BoxFuture<'a, Result<Vec<Job>>>;

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

    /// Notices of builds that started or finished, for backends whose builds no watch sees;
    /// `None` when the Job watch already tells.
    fn build_notices(&self) -> Option<broadcast::Receiver<BuildNotice>> {
        None
    }

    /// How many builds the controller may start beyond `maxConcurrentBuilds`. A backend that
    /// itself runs at most that many builds at once and queues the others in the order they
    /// were started (the `local` backend) keeps the next builds waiting inside it, so that a
    /// slot freed by a finished build starts the next one at once instead of after the
    /// controller's reconciles. Zero for Jobs: a Job's Pod takes cluster resources as soon as
    /// it exists.
    fn run_ahead(&self) -> usize {
        0
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
    fn list_builds<'a>(&'a self, ib: &'a ImageBuild) -> BoxFuture<'a, Result<Vec<Job>>> {
        Box::pin(async move {
            let namespace = ib.namespace().unwrap_or_default();
            self.list(&namespace, crate::job::selector(&ib.name_any()))
                .await
        })
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

/// The build record's annotation holding the build's deadline in seconds.
pub const RECORD_DEADLINE_ANNOTATION: &str = "securebuild.dev/local-deadline-seconds";
/// The build record's annotation holding when the build started (RFC 3339).
pub const RECORD_STARTED_ANNOTATION: &str = "securebuild.dev/local-started-at";
/// The build record's annotation holding when the build ended (RFC 3339); its presence marks
/// a finished build.
pub const RECORD_FINISHED_ANNOTATION: &str = "securebuild.dev/local-finished-at";
/// The build record's annotation holding the builder's [`BuildResult`] as JSON.
pub const RECORD_RESULT_ANNOTATION: &str = "securebuild.dev/local-result";
/// The build record's annotation holding why a build failed without a result (`reason` and
/// `message` as JSON, the Job's `Failed` condition).
pub const RECORD_FAILURE_ANNOTATION: &str = "securebuild.dev/local-failure";
/// The longest wait between attempts to record a finished build while the API server is away.
pub const RECORD_RETRY_MAX_DELAY: Duration = Duration::from_secs(15);
/// How many times recording a finished build is attempted (about an hour with the delays).
pub const RECORD_ATTEMPTS: usize = 250;

/// Why a build without a result failed, as recorded.
#[derive(Debug, Serialize, Deserialize)]
struct RecordedFailure {
    reason: String,
    message: String,
}

/// One build of the local backend, as this process knows it.
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
///
/// Each build is recorded in the API server, as the `pod` backend's builds are recorded by
/// their Jobs: its input ConfigMap (the same object the `pod` backend creates, owned by the
/// ImageBuild) is the record, and the build's start, end and result are written into its
/// annotations. A restarted operator (or a new leader) reads the records back: a finished
/// build is reported as it ended, and a build that never recorded its end is run again, once
/// per process, under the same name.
#[derive(Clone)]
pub struct LocalBackend {
    client: Client,
    config: Arc<Config>,
    builds: Builds,
    permits: Arc<Semaphore>,
    notices: broadcast::Sender<BuildNotice>,
}

impl LocalBackend {
    /// A backend that keeps its records and reads push Secrets with `client` and builds with
    /// `config`'s cache and work directories.
    pub fn new(client: Client, config: Arc<Config>) -> Self {
        let permits = Arc::new(Semaphore::new(usize::from(config.max_concurrent_builds)));
        let (notices, _) = broadcast::channel(NOTICE_CAPACITY);
        Self {
            client,
            config,
            builds: Arc::new(Mutex::new(BTreeMap::new())),
            permits,
            notices,
        }
    }

    /// How many builds this process knows (running, or finished and recorded).
    pub fn len(&self) -> usize {
        lock(&self.builds).len()
    }

    /// Whether this process knows no build.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn records(&self, namespace: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Whether a finished record is older than `jobTtlSecondsAfterFinished`.
    fn expired(&self, record: &ConfigMap, now: Timestamp) -> bool {
        let Some(ttl) = self.config.job_ttl_seconds else {
            return false;
        };
        record_time(record, RECORD_FINISHED_ANNOTATION).is_some_and(|finished| {
            now.as_millisecond() - finished.as_millisecond() > i64::from(ttl.max(0)) * 1000
        })
    }

    /// Starts the run of the build `key` from its record's input.
    fn launch(
        &self,
        key: BuildKey,
        ib: &ImageBuild,
        record: &ConfigMap,
        cancel: CancellationToken,
    ) {
        let deadline = record
            .annotations()
            .get(RECORD_DEADLINE_ANNOTATION)
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(self.config.default_timeout, Duration::from_secs);
        let run = LocalRun {
            backend: self.clone(),
            key,
            image_build: ib.clone(),
            input: record.data.clone().unwrap_or_default(),
            deadline,
            cancel,
        };
        tokio::spawn(run.run());
    }
}

fn lock(builds: &Builds) -> std::sync::MutexGuard<'_, BTreeMap<BuildKey, LocalBuild>> {
    builds.lock().unwrap_or_else(PoisonError::into_inner)
}

fn record_time(record: &ConfigMap, annotation: &str) -> Option<Timestamp> {
    record.annotations().get(annotation)?.parse().ok()
}

/// The Job a build record stands for: the record's name, labels, annotations and owner, with
/// the status its annotations say (active until it ended).
fn record_job(record: &ConfigMap) -> Job {
    let deadline = record
        .annotations()
        .get(RECORD_DEADLINE_ANNOTATION)
        .and_then(|s| s.parse::<i64>().ok());
    let started = record_time(record, RECORD_STARTED_ANNOTATION);
    let finished = record_time(record, RECORD_FINISHED_ANNOTATION);
    let mut status = JobStatus {
        start_time: started.map(Time),
        ..JobStatus::default()
    };
    match finished {
        None => {
            status.active = Some(1);
            status.ready = Some(0);
        }
        Some(at) => {
            status.ready = Some(0);
            let failure = record
                .annotations()
                .get(RECORD_FAILURE_ANNOTATION)
                .and_then(|text| serde_json::from_str::<RecordedFailure>(text).ok());
            match failure {
                None => {
                    status.succeeded = Some(1);
                    status.completion_time = Some(Time(at));
                    status.conditions = Some(vec![
                        true_condition(JOB_SUCCESS_CRITERIA_MET, at),
                        true_condition(JOB_COMPLETE, at),
                    ]);
                }
                Some(failure) => {
                    status.failed = Some(1);
                    status.conditions =
                        failed_condition(&failure.reason, failure.message, at).map(|c| vec![c]);
                }
            }
        }
    }
    Job {
        metadata: ObjectMeta {
            name: record.metadata.name.clone(),
            namespace: record.metadata.namespace.clone(),
            labels: record.metadata.labels.clone(),
            annotations: record.metadata.annotations.clone(),
            owner_references: record.metadata.owner_references.clone(),
            creation_timestamp: record.metadata.creation_timestamp.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            active_deadline_seconds: deadline,
            ..JobSpec::default()
        }),
        status: Some(status),
    }
}

/// The result recorded in a build record.
fn record_result(record: &ConfigMap) -> Option<BuildResult> {
    BuildResult::parse(record.annotations().get(RECORD_RESULT_ANNOTATION)?).ok()
}

impl BuildBackend for LocalBackend {
    /// Lists the ImageBuild's build records. A record this process does not know is taken
    /// over: as it ended, or — when it never recorded its end (the operator that ran it was
    /// restarted or lost its lease) — by running the build again. A finished record older
    /// than `jobTtlSecondsAfterFinished` is deleted instead.
    fn list_builds<'a>(&'a self, ib: &'a ImageBuild) -> BoxFuture<'a, Result<Vec<Job>>> {
        Box::pin(async move {
            let namespace = ib.namespace().unwrap_or_default();
            let name = ib.name_any();
            let listed = self
                .records(&namespace)
                .list(&ListParams::default().labels(&crate::job::selector(&name)))
                .await
                .map_err(Error::kube("list", "ConfigMap", &namespace))?
                .items;
            let now = Timestamp::now();
            let mut live = Vec::new();
            for record in listed {
                if self.expired(&record, now) {
                    self.delete_build(&namespace, &record.name_any()).await?;
                } else {
                    live.push(record);
                }
            }
            let mut jobs = Vec::new();
            let mut builds = lock(&self.builds);
            // A record that is gone was deleted: so is its build.
            builds.retain(|(ns, build), local| {
                let gone = *ns == namespace
                    && local.image_build == name
                    && !live.iter().any(|r| r.name_any() == *build);
                if gone {
                    local.cancel.cancel();
                }
                !gone
            });
            for record in &live {
                let key = (namespace.clone(), record.name_any());
                if let Some(known) = builds.get(&key) {
                    jobs.push(known.job.clone());
                    continue;
                }
                let job = record_job(record);
                let finished_at = record_time(record, RECORD_FINISHED_ANNOTATION);
                let cancel = CancellationToken::new();
                if finished_at.is_none() && crate::job::is_owned_by(&job, ib) {
                    tracing::info!(namespace = %key.0, build = %key.1, "resuming a local build that never recorded its end");
                    self.launch(key.clone(), ib, record, cancel.clone());
                }
                jobs.push(job.clone());
                builds.insert(
                    key,
                    LocalBuild {
                        image_build: name.clone(),
                        job,
                        result: record_result(record),
                        cancel,
                        finished_at,
                    },
                );
            }
            Ok(jobs)
        })
    }

    /// Creates the build record (the input ConfigMap with the deadline) and starts the build;
    /// `AlreadyExists` means another process (or an earlier life of this one) started it, and
    /// the next [`list_builds`](BuildBackend::list_builds) takes it over.
    fn start_build<'a>(
        &'a self,
        ib: &'a ImageBuild,
        config_map: &'a ConfigMap,
        job: &'a Job,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let namespace = ib.namespace().unwrap_or_default();
            let key = (namespace.clone(), job.name_any());
            if lock(&self.builds).contains_key(&key) {
                return Ok(false);
            }
            let deadline = job
                .spec
                .as_ref()
                .and_then(|s| s.active_deadline_seconds)
                .and_then(|seconds| u64::try_from(seconds).ok())
                .unwrap_or(self.config.default_timeout.as_secs());
            let mut record = config_map.clone();
            record
                .annotations_mut()
                .insert(RECORD_DEADLINE_ANNOTATION.to_string(), deadline.to_string());
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PostParams::default()
            };
            let created = match self.records(&namespace).create(&params, &record).await {
                Ok(created) => created,
                Err(kube::Error::Api(status)) if status.is_already_exists() => return Ok(false),
                Err(error) => return Err(Error::kube("create", "ConfigMap", &key.1)(error)),
            };
            let cancel = CancellationToken::new();
            {
                let mut builds = lock(&self.builds);
                if builds.contains_key(&key) {
                    return Ok(false);
                }
                builds.insert(
                    key.clone(),
                    LocalBuild {
                        image_build: ib.name_any(),
                        job: record_job(&created),
                        result: None,
                        cancel: cancel.clone(),
                        finished_at: None,
                    },
                );
            }
            self.launch(key, ib, &created, cancel);
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

    /// Nothing to release: the input is the build's record, kept until the build is deleted.
    fn release_inputs<'a>(
        &'a self,
        _namespace: &'a str,
        _build: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Stops the build and deletes its record.
    fn delete_build<'a>(&'a self, namespace: &'a str, build: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if let Some(removed) =
                lock(&self.builds).remove(&(namespace.to_string(), build.to_string()))
            {
                removed.cancel.cancel();
            }
            match self
                .records(namespace)
                .delete(build, &DeleteParams::background())
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
                Err(error) => Err(Error::kube("delete", "ConfigMap", build)(error)),
            }
        })
    }

    /// Stops the builds; the garbage collector deletes their records with the ImageBuild.
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

    fn build_notices(&self) -> Option<broadcast::Receiver<BuildNotice>> {
        Some(self.notices.subscribe())
    }

    /// Up to [`RUN_AHEAD_PER_SLOT`] builds per slot wait behind the running ones, in the
    /// order they were started (the permits are a fair semaphore): enough that the slots stay
    /// busy while the controller is held up by signing and status writes of finished builds.
    fn run_ahead(&self) -> usize {
        usize::from(self.config.max_concurrent_builds) * RUN_AHEAD_PER_SLOT
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
        let started = Timestamp::now();
        self.update(|job| {
            let status = job.status.get_or_insert_with(JobStatus::default);
            status.start_time = Some(Time(started));
            status.ready = Some(1);
        });
        tracing::info!(namespace = %self.key.0, build = %self.key.1, "local build started");
        self.notify(BuildEvent::Started);

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
                format!("the build task ended abnormally: {}", Chain(&error)),
            ))
        });
        self.finish(ending, started).await;
    }

    /// Changes the build's Job, if the build is still known.
    fn update(&self, change: impl FnOnce(&mut Job)) {
        if let Some(build) = lock(&self.backend.builds).get_mut(&self.key) {
            change(&mut build.job);
        }
    }

    /// Keeps the ending in memory, records it in the build record (retrying while the API
    /// server is away), then tells the controller.
    async fn finish(self, ending: Ending, started: Timestamp) {
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
        let mut annotations = BTreeMap::from([
            (RECORD_STARTED_ANNOTATION.to_string(), started.to_string()),
            (RECORD_FINISHED_ANNOTATION.to_string(), now.to_string()),
        ]);
        if let Some(result) = &result {
            annotations.insert(RECORD_RESULT_ANNOTATION.to_string(), result.to_json());
        }
        if let Some(condition) = &condition
            && result.is_none()
        {
            let failure = RecordedFailure {
                reason: condition.reason.clone().unwrap_or_default(),
                message: condition.message.clone().unwrap_or_default(),
            };
            annotations.insert(
                RECORD_FAILURE_ANNOTATION.to_string(),
                serde_json::to_string(&failure).unwrap_or_default(),
            );
        }
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
            build.job.annotations_mut().extend(annotations.clone());
            build.result = result;
            build.finished_at = Some(now);
        }
        tracing::info!(namespace = %self.key.0, build = %self.key.1, succeeded, "local build finished");
        self.record(annotations).await;
        self.notify(BuildEvent::Finished);
    }

    /// Tells the controller (if one runs) that this build started or finished.
    fn notify(&self, event: BuildEvent) {
        // No subscriber only means no controller is running (tests, shutdown).
        let _ = self.backend.notices.send(BuildNotice {
            namespace: self.key.0.clone(),
            image_build: self.image_build.name_any(),
            build: self.key.1.clone(),
            event,
        });
    }

    /// Writes the ending into the build record, retrying with backoff until it is written,
    /// the record is gone, or the build is cancelled.
    async fn record(&self, annotations: BTreeMap<String, String>) {
        let api = self.backend.records(&self.key.0);
        let patch = Patch::Merge(serde_json::json!({"metadata": {"annotations": annotations}}));
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let write = || async { api.patch(&self.key.1, &params, &patch).await };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(RECORD_RETRY_MAX_DELAY)
            .with_max_times(RECORD_ATTEMPTS)
            .with_jitter();
        let written = write
            .retry(backoff)
            .when(|error| !matches!(error, kube::Error::Api(status) if status.is_not_found()))
            .notify(|error, delay| {
                tracing::warn!(namespace = %self.key.0, build = %self.key.1, error = %Chain(error), ?delay, "cannot record the end of a local build yet");
            });
        tokio::select! {
            outcome = written => {
                if let Err(error) = outcome {
                    tracing::warn!(namespace = %self.key.0, build = %self.key.1, error = %Chain(&error), "the end of a local build is not recorded");
                }
            }
            () = self.cancel.cancelled() => {}
        }
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
        Err(error) => return invalid(chain(&error)),
    };
    let target: TargetInput = match input.get(TARGET_KEY).map(|text| serde_json::from_str(text)) {
        Some(Ok(target)) => target,
        Some(Err(error)) => return invalid(format!("invalid {TARGET_KEY}: {}", Chain(&error))),
        None => return invalid(format!("the build input has no {TARGET_KEY}")),
    };
    let reference = match parse_reference(&target.repository) {
        Ok(reference) => reference,
        Err(error) => return invalid(chain(&error)),
    };
    let registry = match crate::credentials::registry_for(client, ib, config).await {
        Ok(registry) => registry,
        Err(error) => {
            return BuildResult::failure(Reason::CredentialsInvalid.as_str(), chain(&error));
        }
    };
    // Layers pushed by builds of the same namespace are mounted instead of uploaded again. The
    // record is kept per namespace: a mount that succeeds tells that the other repository
    // holds the blob, which is not for other tenants to learn.
    let namespace = ib.namespace().unwrap_or_default();
    let registry = registry.with_blob_record(
        &config
            .cache_dir()
            .join("registry-blobs")
            .join(format!("{namespace}.json")),
    );
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
                    "cannot create a staging directory in {}: {}",
                    staging_parent.display(),
                    Chain(&error)
                ),
            );
        }
    };
    let output = staging.path().join(LAYOUT_DIR_NAME);
    let built = match build(&image, &options, &output).await {
        Ok(built) => built,
        Err(error) => return BuildResult::failure(error.reason(), chain(&error)),
    };
    match registry
        .push_layout(built.layout_dir(), &reference, &built.tags)
        .await
    {
        Ok(report) => built.result(Some(report.reference)),
        Err(error) => {
            let error = securebuild_builder::error::Error::from(error);
            BuildResult::failure(error.reason(), chain(&error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{FakeRecords, TestImageBuild};
    use crate::job::desired_job;
    use crate::status::{JobOutcome, job_outcome};
    use crate::triggers::{Trigger, TriggerKind};

    fn backend(records: &FakeRecords, config: Config) -> LocalBackend {
        LocalBackend::new(records.client(), Arc::new(config))
    }

    fn objects(ib: &ImageBuild, config: &Config) -> (ConfigMap, Job) {
        let trigger = Trigger {
            generation: 1,
            kind: TriggerKind::SpecChanged,
        };
        desired_job(ib, &trigger, config).unwrap()
    }

    /// The next notice of a finished build; a started notice must come before it.
    async fn next_notice(receiver: &mut broadcast::Receiver<BuildNotice>) -> BuildNotice {
        let mut started = None;
        loop {
            let notice = tokio::time::timeout(Duration::from_secs(30), receiver.recv())
                .await
                .expect("the build finishes")
                .unwrap();
            match notice.event {
                BuildEvent::Started => started = Some(notice.build.clone()),
                BuildEvent::Finished => {
                    assert_eq!(
                        started.as_deref(),
                        Some(notice.build.as_str()),
                        "a build is announced as started before it finishes"
                    );
                    return notice;
                }
            }
        }
    }

    /// A keyring that cannot be read fails the build at once, before any network use.
    fn unreadable_keyring() -> ImageBuild {
        TestImageBuild::new()
            .repositories(&["/nonexistent/securebuild/os"])
            .keyring(&["/nonexistent/securebuild/key.rsa.pub"])
            .build()
    }

    fn assert_fetch_failed(job: &Job, pod: Option<&Pod>) {
        match job_outcome(job, pod) {
            JobOutcome::Failed(failure) => {
                // The builder's error with its cause, as the CLI prints it.
                let key = "/nonexistent/securebuild/key.rsa.pub";
                let cause = std::fs::read(key).unwrap_err();
                assert_eq!(failure.message, format!("cannot read {key}: {cause}"));
                assert_eq!(failure.reason, Reason::FetchFailed);
            }
            JobOutcome::Succeeded(image) => panic!("unexpected success: {image:?}"),
        }
    }

    #[tokio::test]
    async fn failed_build_reads_like_a_failed_job() {
        let records = FakeRecords::default();
        let config = Config::default();
        let local = backend(&records, config.clone());
        let mut notices = local.build_notices().unwrap();
        let ib = unreadable_keyring();
        let (config_map, job) = objects(&ib, &config);
        assert!(local.start_build(&ib, &config_map, &job).await.unwrap());
        assert!(!local.start_build(&ib, &config_map, &job).await.unwrap());

        let notice = next_notice(&mut notices).await;
        assert_eq!(
            notice,
            BuildNotice {
                namespace: "team".into(),
                image_build: "app".into(),
                build: job.name_any(),
                event: BuildEvent::Finished,
            }
        );
        let listed = local.list_builds(&ib).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(crate::job::is_owned_by(&listed[0], &ib));
        assert_eq!(
            crate::job::job_state(&listed[0]),
            crate::job::JobState::Failed
        );
        let mut other = ib.clone();
        other.metadata.namespace = Some("other".into());
        assert!(local.list_builds(&other).await.unwrap().is_empty());

        let pods = local.build_pods("team", &job.name_any()).await.unwrap();
        assert_eq!(pods.len(), 1);
        assert_fetch_failed(&listed[0], pods.first());

        // The record in the API server holds the input, the end and the result.
        let record = records.get("team", &job.name_any()).unwrap();
        assert!(record["data"][IMAGE_CONFIG_KEY].is_string(), "{record}");
        let annotations = &record["metadata"]["annotations"];
        for key in [
            RECORD_DEADLINE_ANNOTATION,
            RECORD_STARTED_ANNOTATION,
            RECORD_FINISHED_ANNOTATION,
            RECORD_RESULT_ANNOTATION,
        ] {
            assert!(annotations[key].is_string(), "{key}: {record}");
        }

        local.release_inputs("team", &job.name_any()).await.unwrap();
        assert_eq!((local.len(), records.len()), (1, 1));
        local.delete_build("team", &job.name_any()).await.unwrap();
        assert!(local.is_empty());
        assert_eq!(records.len(), 0, "the record is deleted with the build");
        assert!(
            local
                .build_pods("team", &job.name_any())
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// Issue 17: an operator killed during a `local` build found no trace of it after the
    /// restart and failed the build for good. The record now outlives the process: a new
    /// backend (the restarted operator) runs the unfinished build again, once, and a finished
    /// one is reported as it ended.
    #[tokio::test]
    async fn a_restarted_operator_takes_over_its_builds() {
        let records = FakeRecords::default();
        let config = Config {
            max_concurrent_builds: 1,
            ..Config::default()
        };
        let killed = backend(&records, config.clone());
        // The build never gets to run before the operator dies.
        let _held = killed.permits.clone().acquire_owned().await.unwrap();
        let ib = unreadable_keyring();
        let (config_map, job) = objects(&ib, &config);
        assert!(killed.start_build(&ib, &config_map, &job).await.unwrap());

        let restarted = backend(&records, config.clone());
        let mut notices = restarted.build_notices().unwrap();
        let listed = restarted.list_builds(&ib).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name_any(), job.name_any());
        assert_eq!(
            crate::job::job_state(&listed[0]),
            crate::job::JobState::Active,
            "the interrupted build runs again"
        );
        assert!(
            !restarted.start_build(&ib, &config_map, &job).await.unwrap(),
            "and is not started twice"
        );
        next_notice(&mut notices).await;
        let listed = restarted.list_builds(&ib).await.unwrap();
        assert_eq!(
            crate::job::job_state(&listed[0]),
            crate::job::JobState::Failed
        );

        // Restarted once more: the finished build is read back from its record.
        let again = backend(&records, config);
        let listed = again.list_builds(&ib).await.unwrap();
        assert_eq!(listed.len(), 1);
        let pods = again.build_pods("team", &job.name_any()).await.unwrap();
        assert_fetch_failed(&listed[0], pods.first());
        assert_eq!(
            listed[0].status.as_ref().unwrap().active,
            None,
            "nothing runs"
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
        let records = FakeRecords::default();
        let config = Config::default();
        let local = backend(&records, config.clone());
        let mut notices = local.build_notices().unwrap();
        let ib = TestImageBuild::new()
            .repositories(&[&format!("http://127.0.0.1:{port}/os")])
            .keyring(&[&format!("http://127.0.0.1:{port}/key.rsa.pub")])
            .timeout("1s")
            .build();
        let (config_map, job) = objects(&ib, &config);
        local.start_build(&ib, &config_map, &job).await.unwrap();
        next_notice(&mut notices).await;
        silent.abort();

        for backend in [local, backend(&records, config)] {
            let listed = backend.list_builds(&ib).await.unwrap();
            let pods = backend.build_pods("team", &job.name_any()).await.unwrap();
            assert!(pods.is_empty());
            match job_outcome(&listed[0], None) {
                JobOutcome::Failed(failure) => {
                    assert_eq!(failure.reason, Reason::BuildTimeout);
                    assert!(failure.message.contains("timeout of 1s"), "{failure:?}");
                }
                JobOutcome::Succeeded(image) => panic!("unexpected success: {image:?}"),
            }
        }
    }

    #[tokio::test]
    async fn waiting_builds_hold_no_slot_and_can_be_abandoned() {
        let records = FakeRecords::default();
        let config = Config {
            max_concurrent_builds: 1,
            ..Config::default()
        };
        let local = backend(&records, config.clone());
        // Take the only slot so that the build waits.
        let held = local.permits.clone().acquire_owned().await.unwrap();
        let ib = unreadable_keyring();
        let (config_map, job) = objects(&ib, &config);
        local.start_build(&ib, &config_map, &job).await.unwrap();
        tokio::task::yield_now().await;
        let listed = local.list_builds(&ib).await.unwrap();
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
        let records = FakeRecords::default();
        let config = Config {
            job_ttl_seconds: Some(0),
            ..Config::default()
        };
        let local = backend(&records, config.clone());
        let mut notices = local.build_notices().unwrap();
        let ib = unreadable_keyring();
        let (config_map, job) = objects(&ib, &config);
        local.start_build(&ib, &config_map, &job).await.unwrap();
        next_notice(&mut notices).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(local.list_builds(&ib).await.unwrap().is_empty());
        assert_eq!(records.len(), 0);
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
