//! Test objects (ImageBuilds, Jobs, Pods and builder results built step by step) and the
//! [`ApiServerVerifier`], a mock API server that checks each request of a [`Scenario`] in
//! order and answers as Kubernetes would.
//!
//! Test-only; nothing here runs in the operator.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::{Client, ResourceExt};
use securebuild_builder::result::{ImageResult, PlatformResult};
use securebuild_crds::conditions::{ConditionType, Reason, find_condition, is_true, set_condition};
use securebuild_crds::imagebuild::{
    BuildFailure, BuildOutcome, BuildRecord, HistoryEntry, ImageBuildSpec, ImageBuildStatus,
    PackageSummary, SecretReference, Target,
};
use securebuild_crds::{ImageBuild, ImageConfiguration};
use serde_json::{Value, json};

use crate::config::Config;
use crate::controller::{Context, FIELD_MANAGER, Hooks, State};
use crate::job::{
    CONTAINER_NAME, GENERATION_LABEL, JOB_NAME_LABEL, LOCK_DIGEST_ANNOTATION, TRIGGER_LABEL,
};
use crate::triggers::{Trigger, TriggerKind};

/// The namespace of test ImageBuilds.
pub const NAMESPACE: &str = "team";
/// The name of test ImageBuilds.
pub const NAME: &str = "app";
/// The uid of test ImageBuilds.
pub const UID: &str = "0b7e0c9e-1111-4222-8333-944455556666";

/// A time `seconds` after the Unix epoch.
pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

/// A successful builder result for two platforms with the tag `latest`.
pub fn image_result(lock: &str) -> ImageResult {
    let digest = format!("sha256:{}", "a".repeat(64));
    ImageResult {
        digest: digest.clone(),
        reference: Some(format!("registry.example.com/team/app@{digest}")),
        platforms: vec![
            PlatformResult {
                arch: "amd64".into(),
                variant: None,
                digest: format!("sha256:{}", "b".repeat(64)),
            },
            PlatformResult {
                arch: "arm".into(),
                variant: Some("v7".into()),
                digest: format!("sha256:{}", "c".repeat(64)),
            },
        ],
        tags: vec!["latest".into()],
        lock: lock.into(),
        packages: 12,
    }
}

/// An ImageBuild built step by step.
pub struct TestImageBuild(ImageBuild);

impl TestImageBuild {
    /// `team/app`, generation 1, stored (uid set), building `wolfi-base` for
    /// `registry.example.com/team/app:latest`.
    pub fn new() -> Self {
        let image = ImageConfiguration::from_yaml(
            "contents:\n  repositories: [https://packages.wolfi.dev/os]\n  keyring: [https://packages.wolfi.dev/os/wolfi-signing.rsa.pub]\n  packages: [wolfi-base]\n",
        )
        .unwrap();
        let spec = ImageBuildSpec {
            image,
            target: Target {
                repository: "registry.example.com/team/app".into(),
                tags: vec!["latest".into()],
                push_secret_ref: None,
            },
            ..ImageBuildSpec::default()
        };
        let mut ib = ImageBuild::new(NAME, spec);
        ib.metadata.namespace = Some(NAMESPACE.into());
        ib.metadata.uid = Some(UID.into());
        ib.metadata.generation = Some(1);
        ib.metadata.creation_timestamp = Some(Time(at(0)));
        Self(ib)
    }

    /// The finished ImageBuild.
    pub fn build(self) -> ImageBuild {
        self.0
    }

    fn status(&mut self) -> &mut ImageBuildStatus {
        self.0.status.get_or_insert_with(ImageBuildStatus::default)
    }

    /// Sets `metadata.generation`.
    pub fn generation(mut self, generation: i64) -> Self {
        self.0.metadata.generation = Some(generation);
        self
    }

    /// Sets `metadata.uid`.
    pub fn uid(mut self, uid: &str) -> Self {
        self.0.metadata.uid = Some(uid.into());
        self
    }

    /// Marks the ImageBuild as being deleted.
    pub fn deleting(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(at(50)));
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.annotations_mut().insert(key.into(), value.into());
        self
    }

    /// Sets the tags.
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.0.spec.target.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Sets the repositories.
    pub fn repositories(mut self, repositories: &[&str]) -> Self {
        self.0.spec.image.contents.repositories =
            repositories.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Sets the keyring.
    pub fn keyring(mut self, keys: &[&str]) -> Self {
        self.0.spec.image.contents.keyring = keys.iter().map(|k| k.to_string()).collect();
        self
    }

    /// Sets the push Secret.
    pub fn push_secret(mut self, name: &str) -> Self {
        self.0.spec.target.push_secret_ref = Some(SecretReference { name: name.into() });
        self
    }

    /// Sets `spec.builder.timeout`.
    pub fn timeout(mut self, timeout: &str) -> Self {
        self.0.spec.builder.timeout = Some(timeout.into());
        self
    }

    /// Sets `spec.rebuild.interval`.
    pub fn interval(mut self, interval: &str) -> Self {
        self.0.spec.rebuild.interval = Some(interval.into());
        self
    }

    /// Sets `spec.rebuild.statusHistoryLimit`.
    pub fn history_limit(mut self, limit: u32) -> Self {
        self.0.spec.rebuild.status_history_limit = limit;
        self
    }

    /// Sets `spec.rebuild.successfulJobsHistoryLimit`.
    pub fn successful_limit(mut self, limit: u32) -> Self {
        self.0.spec.rebuild.successful_jobs_history_limit = limit;
        self
    }

    /// Sets `status.handledRebuildRequest`.
    pub fn handled(mut self, request: &str) -> Self {
        self.status().handled_rebuild_request = Some(request.into());
        self
    }

    /// Sets `status.lastResolved` to a time.
    pub fn resolved_at(mut self, seconds: i64) -> Self {
        self.status().last_resolved = Some(crate::status::format_time(at(seconds)));
        self
    }

    /// Sets `status.lastResolved` to any text.
    pub fn resolved_text(mut self, text: &str) -> Self {
        self.status().last_resolved = Some(text.into());
        self
    }

    /// Prepends a history entry.
    pub fn history(mut self, entry: HistoryEntry) -> Self {
        self.status().history.insert(0, entry);
        self
    }

    /// A build of `generation` by `job` that is running.
    pub fn running(mut self, generation: i64, job: &str) -> Self {
        let status = self.status();
        status.last_build = Some(record(job, generation, BuildOutcome::Running, None));
        set_condition(
            &mut status.conditions,
            ConditionType::Ready,
            false,
            Reason::Building,
            "building",
            Some(generation),
            at(0),
        );
        set_condition(
            &mut status.conditions,
            ConditionType::Reconciling,
            true,
            Reason::Building,
            "building",
            Some(generation),
            at(0),
        );
        self
    }

    /// A build of `generation` by `job` that succeeded with `lock`.
    pub fn succeeded(mut self, generation: i64, job: &str, lock: &str) -> Self {
        let status = self.status();
        status.observed_generation = Some(generation);
        status.last_build = Some(record(job, generation, BuildOutcome::Succeeded, None));
        status.digest = Some(format!("sha256:{}", "a".repeat(64)));
        status.packages = Some(PackageSummary {
            count: 12,
            lock_digest: lock.into(),
            installed: Vec::new(),
        });
        status.history.insert(
            0,
            HistoryEntry {
                digest: status.digest.clone(),
                reason: securebuild_crds::imagebuild::BuildReason::SpecChanged,
                outcome: BuildOutcome::Succeeded,
                time: "1970-01-01T00:00:00Z".into(),
                lock_digest: Some(lock.into()),
                job: Some(job.into()),
                start_time: None,
                failure: None,
                package_changes: None,
                package_changes_omitted: None,
            },
        );
        set_condition(
            &mut status.conditions,
            ConditionType::Ready,
            true,
            Reason::Succeeded,
            "built",
            Some(generation),
            at(0),
        );
        self
    }

    /// A build of `generation` by `job` that failed with `reason` (stalled when terminal).
    pub fn failed(mut self, generation: i64, job: &str, reason: Reason) -> Self {
        let status = self.status();
        status.observed_generation = Some(generation);
        let failure = BuildFailure {
            reason: reason.as_str().into(),
            message: "failed".into(),
            log_snippet: None,
        };
        status.last_build = Some(record(job, generation, BuildOutcome::Failed, Some(failure)));
        set_condition(
            &mut status.conditions,
            ConditionType::Ready,
            false,
            reason,
            "failed",
            Some(generation),
            at(0),
        );
        // As `status` records every failed build: Stalled until the spec or a rebuild request
        // changes.
        set_condition(
            &mut status.conditions,
            ConditionType::Stalled,
            true,
            reason,
            "failed",
            Some(generation),
            at(0),
        );
        self
    }
}

fn record(
    job: &str,
    generation: i64,
    outcome: BuildOutcome,
    failure: Option<BuildFailure>,
) -> BuildRecord {
    BuildRecord {
        job: job.into(),
        reason: securebuild_crds::imagebuild::BuildReason::SpecChanged,
        generation,
        outcome,
        start_time: Some("1970-01-01T00:00:00Z".into()),
        completion_time: None,
        failure,
    }
}

/// Sets a Job's conditions from `(type, status)` pairs.
pub fn set_job_conditions(job: &mut Job, conditions: &[(&str, &str)]) {
    let status = job.status.get_or_insert_with(JobStatus::default);
    status.conditions = Some(
        conditions
            .iter()
            .map(|(kind, value)| JobCondition {
                type_: kind.to_string(),
                status: value.to_string(),
                ..JobCondition::default()
            })
            .collect(),
    );
}

/// A builder Job built step by step, starting from what [`crate::job::desired_job`] makes.
pub struct TestJob(Job);

impl TestJob {
    /// The Job for a spec-change build of `ib`, renamed to `name`, active.
    pub fn for_build(ib: &ImageBuild, name: &str) -> Self {
        let trigger = Trigger {
            generation: ib.metadata.generation.unwrap_or(1),
            kind: TriggerKind::SpecChanged,
        };
        let config = Config::default();
        let (_, mut job) = crate::job::desired_job(ib, &trigger, &config).unwrap();
        job.metadata.name = Some(name.into());
        job.metadata.creation_timestamp = Some(Time(at(0)));
        job.metadata.uid = Some(format!("uid-{name}"));
        job.status = Some(JobStatus {
            active: Some(1),
            ..JobStatus::default()
        });
        Self(job)
    }

    /// The finished Job.
    pub fn build(self) -> Job {
        self.0
    }

    fn status(&mut self) -> &mut JobStatus {
        self.0.status.get_or_insert_with(JobStatus::default)
    }

    /// Sets the creation time.
    pub fn created(mut self, seconds: i64) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(at(seconds)));
        self
    }

    /// Sets the generation label.
    pub fn generation(mut self, generation: i64) -> Self {
        self.0
            .labels_mut()
            .insert(GENERATION_LABEL.into(), generation.to_string());
        self
    }

    /// Sets the trigger label.
    pub fn trigger(mut self, trigger: &str) -> Self {
        self.0
            .labels_mut()
            .insert(TRIGGER_LABEL.into(), trigger.into());
        self
    }

    /// Sets the lock digest annotation.
    pub fn lock(mut self, lock: &str) -> Self {
        self.0
            .annotations_mut()
            .insert(LOCK_DIGEST_ANNOTATION.into(), lock.into());
        self
    }

    /// Sets `status.startTime`.
    pub fn started(mut self, seconds: i64) -> Self {
        self.status().start_time = Some(Time(at(seconds)));
        self
    }

    /// Marks the Pod ready.
    pub fn ready(mut self) -> Self {
        self.status().ready = Some(1);
        self
    }

    /// Sets `status.completionTime`.
    pub fn completed_at(mut self, seconds: i64) -> Self {
        self.status().completion_time = Some(Time(at(seconds)));
        self
    }

    /// Marks the Job complete.
    pub fn succeeded(mut self) -> Self {
        set_job_conditions(
            &mut self.0,
            &[("SuccessCriteriaMet", "True"), ("Complete", "True")],
        );
        let status = self.status();
        status.active = None;
        status.succeeded = Some(1);
        self
    }

    /// Marks the Job failed with a condition reason.
    pub fn failed(mut self, reason: &str) -> Self {
        set_job_conditions(&mut self.0, &[("Failed", "True")]);
        let status = self.status();
        status.active = None;
        status.failed = Some(1);
        if let Some(condition) = status.conditions.as_mut().and_then(|c| c.first_mut()) {
            condition.reason = Some(reason.into());
            condition.message = Some(format!("Job failed: {reason}"));
            condition.last_transition_time = Some(Time(at(90)));
        }
        self
    }
}

/// A builder Pod built step by step.
pub struct TestPod(Pod);

impl TestPod {
    /// A Pod of Job `job` with a builder container and no state yet.
    pub fn new(job: &str) -> Self {
        let mut pod = Pod::default();
        pod.metadata.name = Some(format!("{job}-abcde"));
        pod.metadata.namespace = Some(NAMESPACE.into());
        pod.labels_mut().insert(JOB_NAME_LABEL.into(), job.into());
        pod.status = Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: CONTAINER_NAME.into(),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        });
        Self(pod)
    }

    /// The finished Pod.
    pub fn build(self) -> Pod {
        self.0
    }

    fn container(&mut self) -> &mut ContainerStatus {
        let status = self.0.status.get_or_insert_with(PodStatus::default);
        &mut status.container_statuses.get_or_insert_with(Vec::new)[0]
    }

    /// The builder container terminated.
    pub fn terminated(mut self, reason: &str, exit_code: i32, message: &str) -> Self {
        self.container().state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code,
                reason: Some(reason.into()),
                message: Some(message.into()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        });
        self
    }

    /// The builder container's previous run terminated (the current one is waiting).
    pub fn previous_terminated(mut self, reason: &str, exit_code: i32) -> Self {
        self.container().last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code,
                reason: Some(reason.into()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        });
        self
    }

    /// The builder container waits.
    pub fn waiting(mut self, reason: &str, message: &str) -> Self {
        self.container().state = Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(message.into()),
            }),
            ..ContainerState::default()
        });
        self
    }

    /// The Pod was evicted.
    pub fn evicted(mut self, message: &str) -> Self {
        let status = self.0.status.get_or_insert_with(PodStatus::default);
        status.phase = Some("Failed".into());
        status.reason = Some("Evicted".into());
        status.message = Some(message.into());
        self
    }
}

/// The mock API server's side of the client.
pub struct ApiServerVerifier(tower_test::mock::Handle<Request<Body>, Response<Body>>);

/// The sequences of API calls a reconcile is expected to make.
pub enum Scenario {
    /// A new ImageBuild: list Jobs (none), create the ConfigMap and the Job, patch the status
    /// (`Reconciling`), publish `BuildStarted`.
    BuildStarted(ImageBuild),
    /// The Job succeeded: list Jobs, list its Pods (signing starts), then, in the reconcile
    /// after signing, list Jobs, patch the status (digest, `Ready=True`), publish
    /// `BuildSucceeded`, delete the input ConfigMap.
    BuildSucceeded(ImageBuild, Job, Pod),
    /// The Job failed with `ResolutionFailed`: list Jobs, list Pods, patch the status
    /// (`Stalled=True`), publish `BuildFailed`, delete the input ConfigMap.
    BuildFailedStalled(ImageBuild, Job, Pod),
    /// The Job appeared between the list and the create (another reconcile or replica made
    /// it): both creates answer 409 `AlreadyExists`, the status records the Job; no event.
    JobAlreadyExists(ImageBuild),
    /// A restart mid-build with the Job listed: list Jobs, patch the status to adopt it.
    ActiveJobAdopted(ImageBuild, Job),
    /// Nothing is called (an ImageBuild being deleted).
    RadioSilence,
    /// An up-to-date ImageBuild with old Jobs: list Jobs, delete the named one.
    RetentionDeletes(ImageBuild, Vec<Job>, String),
    /// All build slots taken: list Jobs, patch the status (`BuildPending`, waiting).
    BuildQueued(ImageBuild),
    /// A spec that cannot be built: list Jobs, patch the status (`InvalidSpec`), publish
    /// `BuildFailed`.
    InvalidSpec(ImageBuild),
    /// Re-resolution found a new lock: list Jobs, create the ConfigMap and a Job annotated
    /// with the lock, patch the status (`PackageUpdate` running), publish `BuildStarted`.
    PackageUpdateStarted(ImageBuild, String),
    /// Re-resolution found the same lock: list Jobs, patch the status (`lastResolved`).
    ResolvedUnchanged(ImageBuild),
    /// Re-resolution failed: list Jobs, patch the status (`lastResolved`), publish
    /// `ResolveFailed`.
    ResolveFailed(ImageBuild),
    /// The Job list fails with a 500.
    ListFails,
    /// An up-to-date ImageBuild: list Jobs (these), and nothing else.
    ListedJobs(Vec<Job>),
    /// The Job succeeded and the image was signed: list Jobs, list its Pods (signing starts),
    /// then list Jobs, patch the status (digest, signature, attestations), publish
    /// `BuildSucceeded` and `ImageSigned`, delete the input ConfigMap.
    BuildSucceededSigned(ImageBuild, Job, Pod),
    /// The Job succeeded and signing failed: list Jobs, list its Pods, list Jobs, patch the status
    /// (`SigningFailed` with `message`, which the `Ready` condition carries too), publish
    /// `BuildFailed` noting it, delete the input ConfigMap.
    BuildSigningFailed(ImageBuild, Job, Pod, String),
    /// A new ImageBuild with the `local` backend: list the build records (none), create the
    /// record, then, in any order, patch the status (`Reconciling`), publish `BuildStarted`
    /// and record the (failed) build's end in the record; the status written is sent on the
    /// channel.
    LocalBuildStarted(
        ImageBuild,
        tokio::sync::mpsc::UnboundedSender<ImageBuildStatus>,
    ),
    /// A failed `local` build: list the records, patch the status (failed with `reason` and
    /// `message`, which the `Ready` and `Stalled` conditions carry too), publish `BuildFailed`
    /// noting both.
    LocalBuildFailed(ImageBuild, Reason, String),
}

/// Waits for the mock server to finish its scenario, failing after one second.
pub async fn timeout_after_1s(handle: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .expect("timeout on mock apiserver")
        .expect("scenario succeeded");
}

/// A context with a mocked client and default configuration.
pub fn test_context() -> (Arc<Context>, ApiServerVerifier) {
    test_context_with(Hooks::default())
}

/// A context with a mocked client, default configuration and the given hooks.
pub fn test_context_with(hooks: Hooks) -> (Arc<Context>, ApiServerVerifier) {
    test_context_with_backend(hooks, |client, _| {
        Arc::new(crate::backend::PodBackend::new(client))
    })
}

/// A context with a mocked client, default configuration, the given hooks and the backend
/// `backend` makes from the client and configuration.
pub fn test_context_with_backend(
    hooks: Hooks,
    backend: impl FnOnce(Client, Arc<Config>) -> Arc<dyn crate::backend::BuildBackend>,
) -> (Arc<Context>, ApiServerVerifier) {
    let config = Config {
        max_concurrent_builds: 2,
        ..Config::default()
    };
    test_context_configured(config, hooks, backend)
}

/// A context with a mocked client, `config`, the given hooks and the backend `backend` makes
/// from the client and configuration.
pub fn test_context_configured(
    config: Config,
    hooks: Hooks,
    backend: impl FnOnce(Client, Arc<Config>) -> Arc<dyn crate::backend::BuildBackend>,
) -> (Arc<Context>, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let config = Arc::new(config);
    let backend = backend(client.clone(), config.clone());
    let ctx = State::default().to_context_with(client, config, hooks, backend);
    (ctx, ApiServerVerifier(handle))
}

const JOBS_PATH: &str = "/apis/batch/v1/namespaces/team/jobs";
const CONFIG_MAPS_PATH: &str = "/api/v1/namespaces/team/configmaps";
const PODS_PATH: &str = "/api/v1/namespaces/team/pods";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/team/events";
const STATUS_PATH: &str = "/apis/securebuild.dev/v1alpha1/namespaces/team/imagebuilds/app/status";

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn failure_status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": reason})
}

type Check = Box<dyn FnOnce(&ImageBuildStatus) + Send>;

impl ApiServerVerifier {
    /// Serves `scenario`, asserting each request; await the handle with
    /// [`timeout_after_1s`] to be sure every expected call came.
    pub fn run(self, scenario: Scenario) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            self.serve(scenario).await;
        })
    }

    /// Serves `scenario` like [`Self::run`] and hands the verifier back for the next one.
    pub fn run_and_keep(self, scenario: Scenario) -> tokio::task::JoinHandle<Self> {
        tokio::spawn(self.serve(scenario))
    }

    async fn serve(self, scenario: Scenario) -> Self {
        {
            match scenario {
                Scenario::BuildStarted(ib) => {
                    self.list_jobs(vec![])
                        .await
                        .create(CONFIG_MAPS_PATH, None)
                        .await
                        .create(JOBS_PATH, None)
                        .await
                        .patch_status(
                            &ib,
                            Box::new(|status| {
                                assert!(is_true(&status.conditions, ConditionType::Reconciling));
                                let last = status.last_build.as_ref().unwrap();
                                assert_eq!(last.outcome, BuildOutcome::Running);
                                assert_eq!(status.observed_generation, Some(1));
                            }),
                        )
                        .await
                        .event("BuildStarted")
                        .await
                }
                Scenario::BuildSucceeded(ib, job, pod) => {
                    self.list_jobs(vec![job.clone()])
                        .await
                        .list_pods(vec![pod])
                        .await
                        .list_jobs(vec![job])
                        .await
                        .patch_status(
                            &ib,
                            Box::new(|status| {
                                assert!(is_true(&status.conditions, ConditionType::Ready));
                                assert!(!is_true(&status.conditions, ConditionType::Reconciling));
                                assert_eq!(
                                    status.digest,
                                    Some(format!("sha256:{}", "a".repeat(64)))
                                );
                                assert_eq!(
                                    status.last_build.as_ref().unwrap().outcome,
                                    BuildOutcome::Succeeded
                                );
                                assert_eq!(
                                    status.packages.as_ref().unwrap().lock_digest,
                                    "sha256:lock"
                                );
                            }),
                        )
                        .await
                        .event("BuildSucceeded")
                        .await
                        .delete(&format!("{CONFIG_MAPS_PATH}/app-job"))
                        .await
                }
                Scenario::BuildFailedStalled(ib, job, pod) => {
                    self.list_jobs(vec![job])
                        .await
                        .list_pods(vec![pod])
                        .await
                        .patch_status(
                            &ib,
                            Box::new(|status| {
                                assert!(is_true(&status.conditions, ConditionType::Stalled));
                                assert!(!is_true(&status.conditions, ConditionType::Ready));
                                let failure =
                                    status.last_build.as_ref().unwrap().failure.clone().unwrap();
                                assert_eq!(failure.reason, "ResolutionFailed");
                                assert_eq!(failure.message, "nothing provides go-9");
                            }),
                        )
                        .await
                        .event("BuildFailed")
                        .await
                        .delete(&format!("{CONFIG_MAPS_PATH}/app-job"))
                        .await
                }
                Scenario::JobAlreadyExists(ib) => {
                    self.list_jobs(vec![])
                        .await
                        .create(CONFIG_MAPS_PATH, Some(StatusCode::CONFLICT))
                        .await
                        .create(JOBS_PATH, Some(StatusCode::CONFLICT))
                        .await
                        .patch_status(
                            &ib,
                            Box::new(|status| {
                                let last = status.last_build.as_ref().unwrap();
                                assert_eq!(last.outcome, BuildOutcome::Running);
                                assert!(last.job.starts_with("app-"));
                            }),
                        )
                        .await
                }
                Scenario::ActiveJobAdopted(ib, job) => {
                    let name = job.name_any();
                    self.list_jobs(vec![job])
                        .await
                        .patch_status(
                            &ib,
                            Box::new(move |status| {
                                let last = status.last_build.as_ref().unwrap();
                                assert_eq!(last.job, name);
                                assert_eq!(last.outcome, BuildOutcome::Running);
                                let ready = securebuild_crds::conditions::find_condition(
                                    &status.conditions,
                                    ConditionType::Ready,
                                )
                                .unwrap();
                                assert_eq!(ready.reason, "Building");
                            }),
                        )
                        .await
                }
                Scenario::RadioSilence => self,
                Scenario::RetentionDeletes(_ib, jobs, doomed) => {
                    self.list_jobs(jobs)
                        .await
                        .delete(&format!("{JOBS_PATH}/{doomed}"))
                        .await
                }
                Scenario::BuildQueued(ib) => {
                    self.list_jobs(vec![])
                        .await
                        .patch_status(
                            &ib,
                            Box::new(|status| {
                                let ready = securebuild_crds::conditions::find_condition(
                                    &status.conditions,
                                    ConditionType::Ready,
                                )
                                .unwrap();
                                assert_eq!(ready.reason, "BuildPending");
                                assert!(
                                    ready.message.contains("waiting for a build slot (2 of 2"),
                                    "{}",
                                    ready.message
                                );
                                assert!(status.last_build.is_none());
                            }),
                        )
                        .await
                }
                Scenario::InvalidSpec(ib) => {
                    self.list_jobs(vec![])
                        .await
                        .patch_status(
                            &ib,
                            Box::new(|status| {
                                assert!(is_true(&status.conditions, ConditionType::Stalled));
                                let ready = securebuild_crds::conditions::find_condition(
                                    &status.conditions,
                                    ConditionType::Ready,
                                )
                                .unwrap();
                                assert_eq!(ready.reason, "InvalidSpec");
                                assert!(
                                    ready.message.contains("spec.builder.timeout"),
                                    "{}",
                                    ready.message
                                );
                            }),
                        )
                        .await
                        .event("BuildFailed")
                        .await
                }
                Scenario::PackageUpdateStarted(ib, lock) => {
                    let job_lock = lock.clone();
                    self.list_jobs(vec![])
                        .await
                        .create(CONFIG_MAPS_PATH, None)
                        .await
                        .create_checked(
                            JOBS_PATH,
                            Box::new(move |job| {
                                assert_eq!(
                                    job["metadata"]["annotations"][LOCK_DIGEST_ANNOTATION],
                                    job_lock.as_str()
                                );
                                assert_eq!(
                                    job["metadata"]["labels"][TRIGGER_LABEL],
                                    "PackageUpdate"
                                );
                            }),
                        )
                        .await
                        .patch_status(
                            &ib,
                            Box::new(|status| {
                                let last = status.last_build.as_ref().unwrap();
                                assert_eq!(
                                    last.reason,
                                    securebuild_crds::imagebuild::BuildReason::PackageUpdate
                                );
                                assert_eq!(last.outcome, BuildOutcome::Running);
                                assert!(status.last_resolved.is_some());
                            }),
                        )
                        .await
                        .event("BuildStarted")
                        .await
                }
                Scenario::ResolvedUnchanged(ib) => {
                    self.list_jobs(vec![])
                        .await
                        .patch_status(
                            &ib,
                            Box::new(|status| {
                                assert!(status.last_resolved.is_some());
                                assert_eq!(status.last_build.as_ref().unwrap().job, "app-old");
                            }),
                        )
                        .await
                }
                Scenario::ResolveFailed(ib) => {
                    let before = ib.status.as_ref().and_then(|s| s.last_resolved.clone());
                    self.list_jobs(vec![])
                        .await
                        .patch_status(
                            &ib,
                            Box::new(move |status| {
                                assert!(status.last_resolved.is_some());
                                assert_ne!(status.last_resolved, before);
                                assert!(
                                    is_true(&status.conditions, ConditionType::Ready),
                                    "the image stays ready"
                                );
                            }),
                        )
                        .await
                        .event("ResolveFailed")
                        .await
                }
                Scenario::BuildSucceededSigned(ib, job, pod) => {
                    self.list_jobs(vec![job.clone()])
                        .await
                        .list_pods(vec![pod])
                        .await
                        .list_jobs(vec![job])
                        .await
                        .patch_status(
                            &ib,
                            Box::new(|status| {
                                assert!(is_true(&status.conditions, ConditionType::Ready));
                                let signature = status.signature.as_ref().unwrap();
                                assert!(signature.reference.ends_with(".sig"));
                                assert_eq!(status.attestations.len(), 1);
                                assert!(status.sbom.is_some());
                            }),
                        )
                        .await
                        .event("BuildSucceeded")
                        .await
                        .event("ImageSigned")
                        .await
                        .delete(&format!("{CONFIG_MAPS_PATH}/app-job"))
                        .await
                }
                Scenario::BuildSigningFailed(ib, job, pod, message) => {
                    let note = format!("SigningFailed: {message}");
                    self.list_jobs(vec![job.clone()])
                        .await
                        .list_pods(vec![pod])
                        .await
                        .list_jobs(vec![job])
                        .await
                        .patch_status(
                            &ib,
                            Box::new(move |status| {
                                let failure =
                                    status.last_build.as_ref().unwrap().failure.clone().unwrap();
                                assert_eq!(failure.reason, "SigningFailed");
                                assert_eq!(failure.message, message);
                                let ready =
                                    find_condition(&status.conditions, ConditionType::Ready);
                                assert_eq!(ready.unwrap().message, message);
                                assert!(status.signature.is_none());
                            }),
                        )
                        .await
                        .event_noting("BuildFailed", &note)
                        .await
                        .delete(&format!("{CONFIG_MAPS_PATH}/app-job"))
                        .await
                }
                Scenario::LocalBuildStarted(ib, written) => {
                    let mut this = self
                        .list_config_maps(vec![])
                        .await
                        .create(CONFIG_MAPS_PATH, None)
                        .await;
                    // The status write, the event and the record of the (failing) build's end
                    // race each other.
                    let mut check = Some(written);
                    for _ in 0..3 {
                        let (request, send) =
                            this.0.next_request().await.expect("service not called");
                        let (method, path) =
                            (request.method().clone(), request.uri().path().to_string());
                        let body = request.into_body().collect_bytes().await.unwrap();
                        let body: Value = serde_json::from_slice(&body).unwrap();
                        if method == Method::PATCH && path == STATUS_PATH {
                            let status: ImageBuildStatus =
                                serde_json::from_value(body["status"].clone()).unwrap();
                            assert!(is_true(&status.conditions, ConditionType::Reconciling));
                            let last = status.last_build.as_ref().unwrap();
                            assert_eq!(last.outcome, BuildOutcome::Running);
                            check.take().unwrap().send(status.clone()).unwrap();
                            let mut updated = ib.clone();
                            updated.status = Some(status);
                            send.send_response(json_response(
                                StatusCode::OK,
                                &serde_json::to_value(&updated).unwrap(),
                            ));
                        } else if method == Method::POST && path == EVENTS_PATH {
                            assert_eq!(body["reason"], "BuildStarted");
                            send.send_response(json_response(StatusCode::CREATED, &body));
                        } else {
                            assert_eq!(method, Method::PATCH, "{path}");
                            assert!(path.starts_with(CONFIG_MAPS_PATH), "{path}");
                            let annotations = &body["metadata"]["annotations"];
                            assert!(
                                annotations[crate::backend::RECORD_FINISHED_ANNOTATION].is_string(),
                                "{body}"
                            );
                            assert!(
                                annotations[crate::backend::RECORD_RESULT_ANNOTATION].is_string(),
                                "{body}"
                            );
                            send.send_response(json_response(StatusCode::OK, &body));
                        }
                    }
                    this
                }
                Scenario::LocalBuildFailed(ib, reason, message) => {
                    let note = format!("{}: {message}", reason.as_str());
                    let record = ib
                        .status
                        .as_ref()
                        .unwrap()
                        .last_build
                        .as_ref()
                        .unwrap()
                        .job
                        .clone();
                    self.list_config_maps(vec![
                        json!({"metadata": {"name": record, "namespace": "team"}}),
                    ])
                    .await
                    .patch_status(
                        &ib,
                        Box::new(move |status| {
                            let last = status.last_build.as_ref().unwrap();
                            assert_eq!(last.outcome, BuildOutcome::Failed);
                            let failure = last.failure.as_ref().unwrap();
                            assert_eq!(failure.reason, reason.as_str());
                            assert_eq!(failure.message, message);
                            assert!(!is_true(&status.conditions, ConditionType::Ready));
                            for kind in [ConditionType::Ready, ConditionType::Stalled] {
                                let condition = find_condition(&status.conditions, kind);
                                assert_eq!(condition.unwrap().message, message, "{kind:?}");
                            }
                            assert_eq!(status.history.len(), 1);
                        }),
                    )
                    .await
                    .event_noting("BuildFailed", &note)
                    .await
                }
                Scenario::ListedJobs(jobs) => self.list_jobs(jobs).await,
                Scenario::ListFails => {
                    let mut this = self;
                    let (request, send) = this.0.next_request().await.expect("service not called");
                    assert_eq!(request.uri().path(), JOBS_PATH);
                    send.send_response(json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &failure_status(500, "InternalError"),
                    ));
                    this
                }
            }
        }
    }

    async fn next(
        &mut self,
        method: Method,
        path: &str,
    ) -> (
        Request<Body>,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        let (request, send) = self.0.next_request().await.expect("service not called");
        assert_eq!(request.method(), method, "method of {}", request.uri());
        assert_eq!(request.uri().path(), path);
        (request, send)
    }

    async fn list_jobs(mut self, jobs: Vec<Job>) -> Self {
        let (request, send) = self.next(Method::GET, JOBS_PATH).await;
        let query = request.uri().query().unwrap_or_default().to_string();
        assert!(query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsecurebuild-operator%2Csecurebuild.dev%2Fimagebuild%3Dapp"), "{query}");
        let items = jobs
            .iter()
            .map(|j| serde_json::to_value(j).unwrap())
            .collect();
        send.send_response(json_response(
            StatusCode::OK,
            &list("JobList", "batch/v1", items),
        ));
        self
    }

    async fn list_config_maps(mut self, items: Vec<Value>) -> Self {
        let (request, send) = self.next(Method::GET, CONFIG_MAPS_PATH).await;
        let query = request.uri().query().unwrap_or_default().to_string();
        assert!(query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsecurebuild-operator%2Csecurebuild.dev%2Fimagebuild%3Dapp"), "{query}");
        send.send_response(json_response(
            StatusCode::OK,
            &list("ConfigMapList", "v1", items),
        ));
        self
    }

    async fn list_pods(mut self, pods: Vec<Pod>) -> Self {
        let (request, send) = self.next(Method::GET, PODS_PATH).await;
        let query = request.uri().query().unwrap_or_default().to_string();
        assert!(
            query.contains("labelSelector=batch.kubernetes.io%2Fjob-name%3Dapp-job"),
            "{query}"
        );
        let items = pods
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        send.send_response(json_response(StatusCode::OK, &list("PodList", "v1", items)));
        self
    }

    async fn create_checked(mut self, path: &str, check: Box<dyn FnOnce(&Value) + Send>) -> Self {
        let (request, send) = self.next(Method::POST, path).await;
        let body = request.into_body().collect_bytes().await.unwrap();
        let object: Value = serde_json::from_slice(&body).unwrap();
        check(&object);
        send.send_response(json_response(StatusCode::CREATED, &object));
        self
    }

    async fn create(mut self, path: &str, fail: Option<StatusCode>) -> Self {
        let (request, send) = self.next(Method::POST, path).await;
        let body = request.into_body().collect_bytes().await.unwrap();
        let object: Value = serde_json::from_slice(&body).unwrap();
        let owner = &object["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], UID);
        assert_eq!(owner["controller"], true);
        match fail {
            Some(code) => send.send_response(json_response(
                code,
                &failure_status(code.as_u16(), "AlreadyExists"),
            )),
            None => send.send_response(json_response(StatusCode::CREATED, &object)),
        }
        self
    }

    async fn patch_status(mut self, ib: &ImageBuild, check: Check) -> Self {
        let (request, send) = self.next(Method::PATCH, STATUS_PATH).await;
        let query = request.uri().query().unwrap_or_default().to_string();
        assert!(query.contains("force=true"), "{query}");
        assert!(
            query.contains(&format!("fieldManager={FIELD_MANAGER}")),
            "{query}"
        );
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(content_type, "application/apply-patch+yaml");
        let body = request.into_body().collect_bytes().await.unwrap();
        let patch: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(patch["kind"], "ImageBuild");
        assert_eq!(patch["apiVersion"], "securebuild.dev/v1alpha1");
        let status: ImageBuildStatus = serde_json::from_value(patch["status"].clone()).unwrap();
        check(&status);
        let mut updated = ib.clone();
        updated.status = Some(status);
        send.send_response(json_response(
            StatusCode::OK,
            &serde_json::to_value(&updated).unwrap(),
        ));
        self
    }

    async fn event(mut self, reason: &str) -> Self {
        let (request, send) = self.next(Method::POST, EVENTS_PATH).await;
        let body = request.into_body().collect_bytes().await.unwrap();
        let event: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event["reason"], reason);
        assert_eq!(event["regarding"]["kind"], "ImageBuild");
        assert_eq!(event["regarding"]["name"], "app");
        send.send_response(json_response(StatusCode::CREATED, &event));
        self
    }

    /// Like [`Self::event`], checking the event's note too.
    async fn event_noting(mut self, reason: &str, note: &str) -> Self {
        let (request, send) = self.next(Method::POST, EVENTS_PATH).await;
        let body = request.into_body().collect_bytes().await.unwrap();
        let event: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event["reason"], reason);
        assert_eq!(event["note"], note);
        assert_eq!(event["regarding"]["name"], "app");
        send.send_response(json_response(StatusCode::CREATED, &event));
        self
    }

    async fn delete(mut self, path: &str) -> Self {
        let (request, send) = self.next(Method::DELETE, path).await;
        if path.starts_with(JOBS_PATH) {
            let body = request.into_body().collect_bytes().await.unwrap();
            let params: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(params["propagationPolicy"], "Background");
        }
        send.send_response(json_response(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
        ));
        self
    }
}

/// An API server that keeps ConfigMaps (the `local` backend's build records) in memory:
/// create (409 when it exists), list (per namespace, label selectors ignored), merge patches of
/// annotations and delete. Every other request is answered 404. Clones share the objects, so a
/// second client plays a restarted operator against the same API server.
#[derive(Clone, Default)]
pub struct FakeRecords {
    objects: Arc<std::sync::Mutex<std::collections::BTreeMap<(String, String), Value>>>,
}

impl FakeRecords {
    /// A client of this API server.
    pub fn client(&self) -> Client {
        let records = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let records = records.clone();
            async move { Ok::<_, std::convert::Infallible>(records.answer(request).await) }
        });
        Client::new(service, "default")
    }

    /// The record `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        self.objects
            .lock()
            .unwrap()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.objects.lock().unwrap().len()
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let body = request.into_body().collect_bytes().await.unwrap();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // api/v1/namespaces/<ns>/configmaps[/<name>]
        let (namespace, name) = match parts.as_slice() {
            ["api", "v1", "namespaces", ns, "configmaps"] => (ns.to_string(), None),
            ["api", "v1", "namespaces", ns, "configmaps", name] => {
                (ns.to_string(), Some(name.to_string()))
            }
            _ => return json_response(StatusCode::NOT_FOUND, &failure_status(404, "NotFound")),
        };
        let mut objects = self.objects.lock().unwrap();
        match (method, name) {
            (Method::POST, None) => {
                let mut object: Value = serde_json::from_slice(&body).unwrap();
                let name = object["metadata"]["name"].as_str().unwrap().to_string();
                let key = (namespace, name);
                if objects.contains_key(&key) {
                    return json_response(
                        StatusCode::CONFLICT,
                        &failure_status(409, "AlreadyExists"),
                    );
                }
                object["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
                objects.insert(key, object.clone());
                json_response(StatusCode::CREATED, &object)
            }
            (Method::GET, None) => {
                let items = objects
                    .iter()
                    .filter(|((ns, _), _)| *ns == namespace)
                    .map(|(_, v)| v.clone())
                    .collect();
                json_response(StatusCode::OK, &list("ConfigMapList", "v1", items))
            }
            (Method::PATCH, Some(name)) => {
                let patch: Value = serde_json::from_slice(&body).unwrap();
                let Some(object) = objects.get_mut(&(namespace, name)) else {
                    return json_response(StatusCode::NOT_FOUND, &failure_status(404, "NotFound"));
                };
                let annotations = object["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .entry("annotations")
                    .or_insert_with(|| json!({}));
                for (key, value) in patch["metadata"]["annotations"].as_object().unwrap() {
                    annotations[key] = value.clone();
                }
                json_response(StatusCode::OK, object)
            }
            (Method::DELETE, Some(name)) => match objects.remove(&(namespace, name)) {
                Some(_) => json_response(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
                ),
                None => json_response(StatusCode::NOT_FOUND, &failure_status(404, "NotFound")),
            },
            _ => json_response(StatusCode::NOT_FOUND, &failure_status(404, "NotFound")),
        }
    }
}
