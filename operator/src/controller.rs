//! The reconciler: lists an ImageBuild's builds (Jobs), asks [`triggers::decide`] what to do,
//! starts a new build, reads the result of a finished one, writes the status with server-side
//! apply, deletes builds beyond the history limits and publishes events (`BuildStarted`,
//! `BuildSucceeded`, `ImageSigned`, `BuildFailed`).
//!
//! Every decision it acts on comes from the pure modules. Builds are started and read through
//! the [`BuildBackend`] (Jobs, or in-process builds); signing and package re-resolution are
//! [`Hooks`], and signing runs off the reconcile workers ([`PostBuildTasks`]). Apart from
//! those, this is the only module that talks to the API server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use prometheus_client::registry::Registry;
use securebuild_builder::error::{Chain, chain};
use securebuild_crds::ImageBuild;
use securebuild_crds::imagebuild::{ConfigurationSources, ImageBuildStatus};
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::backend::{BuildBackend, BuildNotice, PodBackend};
use crate::config::Config;
use crate::hooks::{LockResolver, NoResolver, NoSigning, PostBuild};
use crate::http::HttpState;
use crate::includes::{self, ApiConfigMaps};
use crate::job::{self, JobState, job_state};
use crate::metrics::Metrics;
use crate::post_build::{PostBuildTasks, Progress};
use crate::slots::BuildSlots;
use crate::status::{self, Finish, JobOutcome};
use crate::triggers::{self, Decision, Trigger};
use crate::watched::WatchedImageBuilds;
use crate::{Error, Result};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "securebuild-operator";

/// How often a running build is looked at without a Job event.
pub const REQUEUE_RUNNING: Duration = Duration::from_secs(300);
/// How often an ImageBuild waiting for a build slot asks again. Only a fallback: a freed slot
/// reconciles the next waiting ImageBuilds at once.
pub const REQUEUE_QUEUED: Duration = Duration::from_secs(300);
/// How many slot hand-offs wait for the controller before the oldest are dropped (a dropped
/// one only delays that ImageBuild until its [`REQUEUE_QUEUED`]).
pub const HANDOFF_CAPACITY: usize = 1024;
/// How soon after recording a finished build the ImageBuild is looked at again.
pub const REQUEUE_FINISHED: Duration = Duration::from_secs(1);
/// The first delay before a failed watch is started again; it doubles up to
/// [`WATCH_RETRY_MAX_DELAY`].
pub const WATCH_RETRY_MIN_DELAY: Duration = Duration::from_millis(500);
/// The longest delay before a failed watch is started again. kube's default (30 s) applies
/// twice after an API server restart — once to reconnect, once more to re-list after the new
/// server answers `410 Gone` — and left the operator a minute behind; five seconds keep it
/// within seconds at the cost of one request per watch every five seconds while the API
/// server is away.
pub const WATCH_RETRY_MAX_DELAY: Duration = Duration::from_secs(5);
/// The first delay after a failed reconcile; it doubles up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(5);
/// The longest delay after failed reconciles.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// Signing and re-resolution, as plugged into the controller.
#[derive(Clone)]
pub struct Hooks {
    /// Runs after each successful build.
    pub post_build: Arc<dyn PostBuild>,
    /// Re-resolves packages for `spec.rebuild.interval`.
    pub resolver: Arc<dyn LockResolver>,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            post_build: Arc::new(NoSigning),
            resolver: Arc::new(NoResolver),
        }
    }
}

/// State shared by the controller and the HTTP endpoints.
#[derive(Clone, Debug)]
pub struct State {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl Default for State {
    fn default() -> Self {
        let (registry, metrics) = Metrics::new_registry();
        Self {
            registry: Arc::new(registry),
            metrics: Arc::new(metrics),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl State {
    /// What the HTTP endpoints read.
    pub fn http(&self) -> HttpState {
        HttpState {
            registry: self.registry.clone(),
            ready: self.ready.clone(),
        }
    }

    /// Marks the operator ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The reconciler's context, building with Jobs (the `pod` backend).
    pub fn to_context(&self, client: Client, config: Arc<Config>, hooks: Hooks) -> Arc<Context> {
        let backend = Arc::new(PodBackend::new(client.clone()));
        self.to_context_with(client, config, hooks, backend)
    }

    /// The reconciler's context, building with `backend`.
    pub fn to_context_with(
        &self,
        client: Client,
        config: Arc<Config>,
        hooks: Hooks,
        backend: Arc<dyn BuildBackend>,
    ) -> Arc<Context> {
        Arc::new(Context::with_backend(
            client,
            config,
            self.metrics.clone(),
            hooks,
            backend,
        ))
    }
}

/// What every reconcile gets.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The operator configuration.
    pub config: Arc<Config>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes `events.k8s.io` events about ImageBuilds.
    pub recorder: Recorder,
    /// Signing and re-resolution.
    pub hooks: Hooks,
    /// Where builds run.
    pub backend: Arc<dyn BuildBackend>,
    /// Where included configurations are read.
    pub config_maps: ApiConfigMaps,
    /// The post-build work (signing) of finished builds, off the reconcile workers.
    pub post_build: PostBuildTasks,
    /// The controller's ImageBuild caches, for the console.
    pub watched: WatchedImageBuilds,
    slots: Mutex<BuildSlots>,
    handoff: broadcast::Sender<String>,
    failures: Mutex<BTreeMap<String, u32>>,
    written: Mutex<BTreeMap<String, Written>>,
}

/// The ImageBuild as this operator last wrote it, with the version its write replaced.
struct Written {
    replaced: Option<String>,
    object: Arc<ImageBuild>,
}

impl Context {
    /// A context with empty build slots that builds with `backend`.
    pub fn with_backend(
        client: Client,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        hooks: Hooks,
        backend: Arc<dyn BuildBackend>,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter::from(FIELD_MANAGER));
        let config_maps = ApiConfigMaps(client.clone());
        let slots = BuildSlots::new(usize::from(config.max_concurrent_builds))
            .with_run_ahead(backend.run_ahead());
        let (handoff, _) = broadcast::channel(HANDOFF_CAPACITY);
        // As many signings at once as builds: each finished build is signed while the slot it
        // freed builds the next image.
        let post_build = PostBuildTasks::new(
            hooks.post_build.clone(),
            usize::from(config.max_concurrent_builds),
        );
        Self {
            client,
            config,
            metrics,
            recorder,
            hooks,
            backend,
            config_maps,
            post_build,
            watched: WatchedImageBuilds::default(),
            slots: Mutex::new(slots),
            handoff,
            failures: Mutex::new(BTreeMap::new()),
            written: Mutex::new(BTreeMap::new()),
        }
    }

    /// Releases the build slot of `key` and asks for an immediate reconcile of the waiting
    /// ImageBuilds that the freed slots let start, oldest request first.
    fn release_slot(&self, key: &str) {
        for next in self.with_slots(|s| s.finish(key)) {
            // No subscriber only means no controller is running (tests, shutdown).
            let _ = self.handoff.send(next);
        }
    }

    /// The keys (`namespace/name`) of waiting ImageBuilds that a freed build slot lets start.
    pub fn slot_handoffs(&self) -> broadcast::Receiver<String> {
        self.handoff.subscribe()
    }

    /// `ib`, or the object this operator last wrote for it while the watch cache still holds
    /// the version that write replaced (a status write not yet seen by the watch, for example
    /// right after the API server came back), so that no decision is taken on a status the
    /// operator already overwrote.
    fn freshest(&self, key: &str, ib: Arc<ImageBuild>) -> Arc<ImageBuild> {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mine) = written.get(key) else {
            return ib;
        };
        if mine.replaced.is_some() && mine.replaced == ib.metadata.resource_version {
            return mine.object.clone();
        }
        written.remove(key);
        ib
    }

    fn remember_written(&self, key: &str, replaced: Option<String>, object: ImageBuild) {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key.to_string(),
                Written {
                    replaced,
                    object: Arc::new(object),
                },
            );
    }

    fn with_slots<T>(&self, change: impl FnOnce(&mut BuildSlots) -> T) -> T {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let result = change(&mut slots);
        self.metrics.set_queued(slots.waiting());
        result
    }

    fn record_failure(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    fn forget_failures(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// The backoff of the controller's watches after an error: [`WATCH_RETRY_MIN_DELAY`],
/// doubling up to [`WATCH_RETRY_MAX_DELAY`], with jitter, never giving up, and starting over
/// once a watch works again.
pub struct WatchBackoff {
    builder: ExponentialBuilder,
    current: backon::ExponentialBackoff,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(WATCH_RETRY_MIN_DELAY)
            .with_max_delay(WATCH_RETRY_MAX_DELAY)
            .with_jitter()
            .without_max_times();
        Self {
            current: builder.build(),
            builder,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.current.next()
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.current = self.builder.build();
    }
}

/// The delay before retrying after `attempts` failed reconciles in a row: 5 s, doubling, at
/// most 5 minutes.
pub fn retry_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_RETRY_DELAY
        .saturating_mul(1u32 << doublings)
        .min(MAX_RETRY_DELAY)
}

/// Reconciles one ImageBuild.
pub async fn reconcile(ib: Arc<ImageBuild>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer();
    let name = ib.name_any();
    let namespace = ib
        .namespace()
        .ok_or_else(|| Error::MissingNamespace { name: name.clone() })?;
    let key = format!("{namespace}/{name}");
    // The caches changed (or a requeue is due): the console's live pages look again.
    ctx.watched.changed();
    let ib = ctx.freshest(&key, ib);
    let action = Reconciler {
        ctx: &ctx,
        ib: &ib,
        namespace: &namespace,
        name: &name,
        key: &key,
        now: Timestamp::now(),
        configuration: None,
    }
    .run()
    .await?;
    ctx.forget_failures(&key);
    Ok(action)
}

/// Logs the error, counts it and retries with a growing delay.
pub fn error_policy(ib: Arc<ImageBuild>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", ib.namespace().unwrap_or_default(), ib.name_any());
    let attempts = ctx.record_failure(&key);
    let delay = retry_delay(attempts);
    tracing::warn!(imagebuild = %key, error = %Chain(error), attempts, retry_in = ?delay, "reconcile failed");
    ctx.metrics.reconcile_failed(error);
    Action::requeue(delay)
}

/// One reconcile of one ImageBuild.
#[derive(Clone, Copy)]
struct Reconciler<'a> {
    ctx: &'a Context,
    /// The ImageBuild, with its includes merged into `spec.image`.
    ib: &'a ImageBuild,
    namespace: &'a str,
    name: &'a str,
    key: &'a str,
    now: Timestamp,
    /// Where the merged configuration came from, when the spec includes others.
    configuration: Option<&'a ConfigurationSources>,
}

impl Reconciler<'_> {
    async fn run(&self) -> Result<Action> {
        if self.ib.metadata.deletion_timestamp.is_some() {
            self.ctx.release_slot(self.key);
            self.ctx.post_build.forget(self.key);
            self.ctx.backend.abandon(self.namespace, self.name).await;
            return Ok(Action::await_change());
        }
        let merged = match includes::merge_includes(self.ib, &self.ctx.config_maps).await {
            Ok(merged) => merged,
            Err(error) if error.is_transient() => return Err(error.into()),
            Err(error) => return self.reject_includes(&error).await,
        };
        let Some(merged) = merged else {
            return self.act().await;
        };
        let mut effective = self.ib.clone();
        effective.spec.image = merged.image;
        Reconciler {
            ib: &effective,
            configuration: Some(&merged.sources),
            ..*self
        }
        .act()
        .await
    }

    /// Refuses an ImageBuild whose includes cannot be merged. The digest is cleared, so that
    /// the build starts again once they can; the ConfigMap that is missing joins the recorded
    /// sources, so that its creation reconciles this ImageBuild.
    async fn reject_includes(&self, error: &includes::IncludeError) -> Result<Action> {
        let message = chain(error);
        let mut failed = status::invalid_spec(self.ib, &message, self.now);
        let mut sources = failed.configuration.take().unwrap_or_default();
        sources.digest = String::new();
        if let Some(missing) = error.missing()
            && !sources.includes.contains(&missing)
        {
            sources.includes.push(missing);
        }
        failed.configuration = Some(sources);
        self.reject_with(failed, &message).await
    }

    async fn act(&self) -> Result<Action> {
        let listed = self.ctx.backend.list_builds(self.ib).await?;
        let owned: Vec<Job> = listed
            .into_iter()
            .filter(|j| job::is_owned_by(j, self.ib))
            .collect();

        let configuration = self.configuration.map(|c| c.digest.as_str());
        let mut decision = triggers::decide(self.ib, &owned, self.now, configuration, None);
        let mut resolved = false;
        if decision == Decision::ResolveNow {
            match self.ctx.hooks.resolver.resolve(self.ib).await {
                Ok(lock) => {
                    resolved = true;
                    decision =
                        triggers::decide(self.ib, &owned, self.now, configuration, Some(&lock));
                }
                Err(error) => {
                    tracing::warn!(imagebuild = %self.key, error = %Chain(&error), "cannot re-resolve packages");
                    self.patch_status(status::resolved(self.ib, self.now))
                        .await?;
                    self.publish(
                        EventType::Warning,
                        "ResolveFailed",
                        "Resolve",
                        chain(&error),
                    )
                    .await;
                    let retry = triggers::rebuild_interval(self.ib).unwrap_or(MAX_RETRY_DELAY);
                    return Ok(Action::requeue(retry));
                }
            }
        }

        match decision {
            Decision::Idle { requeue_after } => {
                self.ctx.release_slot(self.key);
                if resolved {
                    self.patch_status(status::resolved(self.ib, self.now))
                        .await?;
                }
                self.apply_retention(&owned).await?;
                Ok(requeue_after.map_or_else(Action::await_change, Action::requeue))
            }
            Decision::InvalidSpec { message } => self.reject(&message).await,
            Decision::Build(trigger) => self.start_build(&trigger).await,
            Decision::Observe { job } => self.observe(&job, &owned).await,
            // `decide` with a resolved lock never asks to resolve again.
            Decision::ResolveNow => Ok(Action::requeue(MAX_RETRY_DELAY)),
        }
    }

    /// Creates the ConfigMap and Job for `trigger`, or records that the build waits for a slot.
    async fn start_build(&self, trigger: &Trigger) -> Result<Action> {
        let (config_map, job) = match job::desired_job(self.ib, trigger, &self.ctx.config) {
            Ok(objects) => objects,
            Err(error) => return self.reject(&chain(&error)).await,
        };
        let since = status::pending_since(self.ib).unwrap_or(self.now);
        let started = self
            .ctx
            .with_slots(|s| s.try_start(self.key, since.as_second(), self.now.as_second()));
        if !started {
            // Builds started ahead wait in the backend: at most `limit` run.
            let (running, limit) = self
                .ctx
                .with_slots(|s| (s.running().min(s.limit()), s.limit()));
            self.patch_status(status::build_queued(
                self.ib, trigger, running, limit, self.now,
            ))
            .await?;
            return Ok(Action::requeue(REQUEUE_QUEUED));
        }
        let job_name = job.name_any();
        let created = match self
            .ctx
            .backend
            .start_build(self.ib, &config_map, &job)
            .await
        {
            Ok(created) => created,
            Err(error) => {
                self.ctx.release_slot(self.key);
                return Err(error);
            }
        };
        let mut started = status::build_started(self.ib, trigger, &job_name, self.now);
        if let Some(configuration) = self.configuration {
            started.configuration = Some(configuration.clone());
        }
        self.patch_status(started).await?;
        if created {
            tracing::info!(imagebuild = %self.key, job = %job_name, trigger = %trigger.describe(), "build started");
            self.ctx
                .metrics
                .build_started(job::reason_name(trigger.reason()));
            let note = format!("{}: started Job {job_name}", trigger.describe());
            self.publish(EventType::Normal, "BuildStarted", "Build", note)
                .await;
        } else {
            tracing::info!(imagebuild = %self.key, job = %job_name, "build Job already exists; recording it");
        }
        Ok(Action::requeue(REQUEUE_RUNNING))
    }

    /// Records the state of the build run by `job_name`.
    async fn observe(&self, job_name: &str, owned: &[Job]) -> Result<Action> {
        let Some(job) = owned.iter().find(|j| j.name_any() == job_name) else {
            self.ctx.release_slot(self.key);
            let new_status = status::build_lost(self.ib, job_name, self.now);
            let failure = new_status
                .last_build
                .as_ref()
                .and_then(|b| b.failure.clone())
                .unwrap_or_default();
            self.patch_status(new_status).await?;
            self.ctx.metrics.build_finished(Some(&failure.reason), None);
            self.publish(
                EventType::Warning,
                "BuildFailed",
                "Build",
                format!("{}: {}", failure.reason, failure.message),
            )
            .await;
            return Ok(Action::requeue(REQUEUE_FINISHED));
        };
        if job_state(job) == JobState::Active {
            self.ctx.with_slots(|s| s.mark_running(self.key));
            self.patch_status(status::build_progress(self.ib, job, self.now))
                .await?;
            return Ok(Action::requeue(REQUEUE_RUNNING));
        }
        // The build is over: its slot goes to the next waiting ImageBuild now, not after
        // signing and the status write.
        self.ctx.release_slot(self.key);

        let finish = match self.ctx.post_build.progress(self.key, job_name) {
            Some(Progress::Finished(finish)) => *finish,
            Some(Progress::Running) => return Ok(Action::requeue(REQUEUE_RUNNING)),
            None => {
                let mut job_pods = self
                    .ctx
                    .backend
                    .build_pods(self.namespace, job_name)
                    .await?;
                job_pods.sort_by(job::newest_first);
                match status::job_outcome(job, job_pods.first()) {
                    JobOutcome::Succeeded(image) => {
                        // Signed in a task of its own, which reconciles this ImageBuild
                        // again when it is done.
                        self.ctx
                            .post_build
                            .start(self.key, job_name, self.ib, &image);
                        tracing::info!(imagebuild = %self.key, job = %job_name, digest = %image.digest, "build pushed; signing");
                        return Ok(Action::requeue(REQUEUE_RUNNING));
                    }
                    JobOutcome::Failed(failure) => Finish::Failed(failure),
                }
            }
        };
        let mut new_status =
            status::build_finished(self.ib, job_name, Some(job), &finish, self.now);
        new_status.pull_image = new_status
            .latest_image
            .as_deref()
            .and_then(|image| job::pull_reference(image, &self.ctx.config));
        let latest_image = new_status.latest_image.clone();
        self.patch_status(new_status).await?;
        self.ctx.post_build.recorded(self.key, job_name);

        let duration = status::build_duration(job);
        match &finish {
            Finish::Succeeded { image, signing } => {
                tracing::info!(imagebuild = %self.key, job = %job_name, digest = %image.digest, "build succeeded");
                self.ctx.metrics.build_finished(None, duration);
                let built = latest_image.unwrap_or_else(|| image.digest.clone());
                self.publish(
                    EventType::Normal,
                    "BuildSucceeded",
                    "Build",
                    format!("built {built}"),
                )
                .await;
                if let Some(signature) = &signing.signature {
                    let note = format!(
                        "signed {} ({}; {} attestations)",
                        image.digest,
                        signature.reference,
                        signing.attestations.len()
                    );
                    self.publish(EventType::Normal, "ImageSigned", "Sign", note)
                        .await;
                }
            }
            Finish::SigningFailed { message, .. } => {
                tracing::warn!(imagebuild = %self.key, job = %job_name, %message, "signing failed");
                self.ctx
                    .metrics
                    .build_finished(Some("SigningFailed"), duration);
                self.publish(
                    EventType::Warning,
                    "BuildFailed",
                    "Build",
                    format!("SigningFailed: {message}"),
                )
                .await;
            }
            Finish::Failed(failure) => {
                tracing::warn!(imagebuild = %self.key, job = %job_name, reason = failure.reason.as_str(), message = %failure.message, "build failed");
                self.ctx
                    .metrics
                    .build_finished(Some(failure.reason.as_str()), duration);
                let note = format!("{}: {}", failure.reason.as_str(), failure.message);
                self.publish(EventType::Warning, "BuildFailed", "Build", note)
                    .await;
            }
        }
        self.ctx
            .backend
            .release_inputs(self.namespace, job_name)
            .await?;
        self.apply_retention(owned).await?;
        Ok(Action::requeue(REQUEUE_FINISHED))
    }

    /// Records an ImageBuild that cannot be built as written.
    async fn reject(&self, message: &str) -> Result<Action> {
        self.reject_with(status::invalid_spec(self.ib, message, self.now), message)
            .await
    }

    /// Writes an `InvalidSpec` status and, when it changed, says so in an event.
    async fn reject_with(&self, invalid: ImageBuildStatus, message: &str) -> Result<Action> {
        self.ctx.release_slot(self.key);
        let changed = self.patch_status(invalid).await?;
        if changed {
            tracing::warn!(imagebuild = %self.key, %message, "invalid spec");
            self.publish(
                EventType::Warning,
                "BuildFailed",
                "Build",
                format!("InvalidSpec: {message}"),
            )
            .await;
        }
        Ok(Action::await_change())
    }

    /// Deletes finished builds beyond the history limits (Jobs with their Pods).
    async fn apply_retention(&self, owned: &[Job]) -> Result<()> {
        let policy = &self.ib.spec.rebuild;
        let doomed = crate::retention::jobs_to_delete(
            owned,
            policy.successful_jobs_history_limit,
            policy.failed_jobs_history_limit,
            None,
        );
        for name in doomed {
            self.ctx.backend.delete_build(self.namespace, &name).await?;
            tracing::info!(imagebuild = %self.key, job = %name, "deleted old build");
        }
        Ok(())
    }

    /// Writes the status with server-side apply unless it is unchanged; returns whether it
    /// wrote.
    async fn patch_status(&self, new_status: ImageBuildStatus) -> Result<bool> {
        if self.ib.status.as_ref() == Some(&new_status) {
            return Ok(false);
        }
        let api: Api<ImageBuild> = Api::namespaced(self.ctx.client.clone(), self.namespace);
        let patch = Patch::Apply(json!({
            "apiVersion": ImageBuild::api_version(&()),
            "kind": ImageBuild::kind(&()),
            "status": new_status,
        }));
        let written = api
            .patch_status(
                self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &patch,
            )
            .await
            .map_err(Error::kube("patch", "ImageBuild status", self.name))?;
        self.ctx
            .remember_written(self.key, self.ib.metadata.resource_version.clone(), written);
        Ok(true)
    }

    /// Publishes an event about the ImageBuild; a failure is logged, not returned, since events
    /// are informational.
    async fn publish(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self
            .ctx
            .recorder
            .publish(&event, &self.ib.object_ref(&()))
            .await
        {
            tracing::warn!(imagebuild = %self.key, error = %Chain(&error), reason, "cannot publish event");
        }
    }
}

/// The ImageBuilds whose builds started or finished, from a backend's notices, kept to `namespace` (all
/// namespaces when `None`); lagging behind skips notices, which only delays those reconciles
/// until their periodic requeue.
fn notice_refs(
    notices: tokio::sync::broadcast::Receiver<BuildNotice>,
    namespace: Option<String>,
) -> impl futures::Stream<Item = ObjectRef<ImageBuild>> + Send + 'static {
    futures::stream::unfold(notices, |mut notices| async move {
        loop {
            match notices.recv().await {
                Ok(notice) => return Some((notice, notices)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "missed build notices");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter_map(move |notice| {
        let wanted = namespace.as_deref().is_none_or(|ns| ns == notice.namespace);
        futures::future::ready(
            wanted.then(|| ObjectRef::new(&notice.image_build).within(&notice.namespace)),
        )
    })
}

/// The ImageBuilds named by `keys` (`namespace/name`: the waiting ImageBuilds a freed build
/// slot lets start, or those whose post-build work ended), kept to `namespace` (all
/// namespaces when `None`); lagging behind skips some, which only delays them until their
/// periodic requeue.
fn key_refs(
    keys: broadcast::Receiver<String>,
    namespace: Option<String>,
    what: &'static str,
) -> impl futures::Stream<Item = ObjectRef<ImageBuild>> + Send + 'static {
    futures::stream::unfold(keys, move |mut keys| async move {
        loop {
            match keys.recv().await {
                Ok(key) => return Some((key, keys)),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, what, "missed reconcile requests");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter_map(move |key| {
        let wanted = key.split_once('/').and_then(|(ns, name)| {
            namespace
                .as_deref()
                .is_none_or(|watched| watched == ns)
                .then(|| ObjectRef::new(name).within(ns))
        });
        futures::future::ready(wanted)
    })
}

/// The ImageBuilds that include a ConfigMap that changed (created, updated or deleted), from a
/// metadata-only watch of the ConfigMaps the operator does not manage and the ImageBuilds in
/// the controller's cache: those whose spec names the ConfigMap or whose last merge read it.
fn included_config_map_refs(
    config_maps: Api<PartialObjectMeta<ConfigMap>>,
    imagebuilds: Store<ImageBuild>,
) -> impl futures::Stream<Item = ObjectRef<ImageBuild>> + Send + 'static {
    let unmanaged =
        watcher::Config::default().labels(&format!("{}!={}", job::MANAGED_BY_LABEL, job::MANAGER));
    watcher(config_maps, unmanaged)
        .backoff(WatchBackoff::default())
        .touched_objects()
        .filter_map(|changed| async move {
            changed
                .map_err(|error| tracing::warn!(error = %Chain(&error), "ConfigMap watch failed"))
                .ok()
        })
        .flat_map(move |changed| {
            let namespace = changed.namespace().unwrap_or_default();
            let name = changed.name_any();
            let refs: Vec<ObjectRef<ImageBuild>> = imagebuilds
                .state()
                .iter()
                .filter(|ib| {
                    ib.namespace().as_deref() == Some(namespace.as_str())
                        && includes::depends_on(ib, &name)
                })
                .map(|ib| ObjectRef::from_obj(ib.as_ref()))
                .collect();
            futures::stream::iter(refs)
        })
}

/// Runs the controller until `shutdown` is cancelled: one watch of ImageBuilds (all namespaces,
/// or one per configured namespace) with the builder Jobs it owns, plus the finished-build
/// notices of a backend that has them.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<()> {
    let namespaces: Vec<Option<String>> = if ctx.config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        ctx.config
            .watch_namespaces
            .iter()
            .cloned()
            .map(Some)
            .collect()
    };
    let mut controllers = Vec::new();
    let mut stores = Vec::new();
    for namespace in namespaces {
        let (imagebuilds, jobs, config_maps): (
            Api<ImageBuild>,
            Api<Job>,
            Api<PartialObjectMeta<ConfigMap>>,
        ) = match &namespace {
            Some(ns) => (
                Api::namespaced(ctx.client.clone(), ns),
                Api::namespaced(ctx.client.clone(), ns),
                Api::namespaced(ctx.client.clone(), ns),
            ),
            None => (
                Api::all(ctx.client.clone()),
                Api::all(ctx.client.clone()),
                Api::all(ctx.client.clone()),
            ),
        };
        let scope = namespace
            .clone()
            .unwrap_or_else(|| "all namespaces".to_string());
        imagebuilds
            .list(&ListParams::default().limit(1))
            .await
            .map_err(Error::kube(
                "list",
                "ImageBuild (is the CRD installed?)",
                &scope,
            ))?;
        tracing::info!(scope = %scope, backend = %ctx.config.backend, "watching ImageBuilds");
        let stop = shutdown.clone();
        let mut controller = Controller::new(imagebuilds, watcher::Config::default())
            .owns(
                jobs,
                watcher::Config::default().labels(&job::managed_selector()),
            )
            .trigger_backoff(WatchBackoff::default());
        if let Some(notices) = ctx.backend.build_notices() {
            controller = controller.reconcile_on(notice_refs(notices, namespace.clone()));
        }
        controller = controller.reconcile_on(key_refs(
            ctx.slot_handoffs(),
            namespace.clone(),
            "build slot hand-offs",
        ));
        controller = controller.reconcile_on(key_refs(
            ctx.post_build.finished(),
            namespace.clone(),
            "finished signings",
        ));
        let store = controller.store();
        stores.push(store.clone());
        controller = controller.reconcile_on(included_config_map_refs(config_maps, store));
        let controller = controller
            .with_config(
                controller::Config::default().concurrency(ctx.config.reconcile_concurrency),
            )
            .graceful_shutdown_on(async move { stop.cancelled().await })
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                match result {
                    Ok((object, _)) => tracing::debug!(imagebuild = %object, "reconciled"),
                    Err(error) => {
                        tracing::debug!(error = %Chain(&error), "reconcile did not complete")
                    }
                }
            });
        controllers.push(controller);
    }
    ctx.watched.replace(stores);
    futures::future::join_all(controllers).await;
    // A controller that stopped (shutdown, a lost lease) feeds nothing: show nothing stale.
    ctx.watched.replace(Vec::new());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{
        Scenario, TestImageBuild, TestJob, TestPod, image_result, test_context, test_context_with,
        test_context_with_backend, timeout_after_1s,
    };
    use crate::hooks::SigningOutcome;
    use securebuild_builder::result::BuildResult;

    #[tokio::test]
    async fn new_imagebuild_creates_configmap_and_job() {
        let (ctx, server) = test_context();
        let ib = TestImageBuild::new().build();
        let mock = server.run(Scenario::BuildStarted(ib.clone()));
        reconcile(Arc::new(ib), ctx).await.unwrap();
        timeout_after_1s(mock).await;
    }

    /// Reconciles `ib` through a finished build's signing: once to read the build's result
    /// and start signing, then once more when the signing task says it is done.
    async fn reconcile_through_signing(ib: &ImageBuild, ctx: &Arc<Context>) -> Action {
        let mut finished = ctx.post_build.finished();
        let action = reconcile(Arc::new(ib.clone()), ctx.clone()).await.unwrap();
        assert_eq!(action, Action::requeue(REQUEUE_RUNNING), "signing started");
        let key = tokio::time::timeout(Duration::from_secs(1), finished.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(key, "team/app");
        reconcile(Arc::new(ib.clone()), ctx.clone()).await.unwrap()
    }

    /// The `app-job` build of `ib` finished: its Job succeeded and its Pod's termination
    /// message carries the image.
    fn succeeded_build(ib: &ImageBuild) -> Scenario {
        let job = TestJob::for_build(ib, "app-job")
            .started(10)
            .completed_at(70)
            .succeeded()
            .build();
        let result = BuildResult::success(image_result("sha256:lock")).to_termination_message();
        let pod = TestPod::new("app-job")
            .terminated("Completed", 0, &result)
            .build();
        Scenario::BuildSucceeded(ib.clone(), job, pod)
    }

    #[tokio::test]
    async fn succeeded_job_reports_digest_and_ready() {
        let (ctx, server) = test_context();
        let ib = TestImageBuild::new().running(1, "app-job").build();
        let mock = server.run(succeeded_build(&ib));
        reconcile_through_signing(&ib, &ctx).await;
        timeout_after_1s(mock).await;
        assert_eq!(ctx.metrics.builds_succeeded.get(), 1);
    }

    /// With a `pullPrefix`, the status also names the image by its pull name.
    #[tokio::test]
    async fn the_pull_name_of_the_image_is_recorded() {
        let config = Config {
            registry_prefix: Some("registry.example.com/team".into()),
            pull_prefix: Some("images.example.com".into()),
            ..Config::default()
        };
        let (ctx, server) =
            crate::fixtures::test_context_configured(config, Hooks::default(), |client, _| {
                Arc::new(PodBackend::new(client))
            });
        let mut ib = TestImageBuild::new().running(1, "app-job").build();
        ib.metadata.resource_version = Some("41".into());
        let mock = server.run(succeeded_build(&ib));
        reconcile_through_signing(&ib, &ctx).await;
        timeout_after_1s(mock).await;
        let written = ctx.freshest("team/app", Arc::new(ib));
        let status = written.status.as_ref().unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            status.latest_image,
            Some(format!("registry.example.com/team/app@{digest}"))
        );
        assert_eq!(
            status.pull_image,
            Some(format!("images.example.com/app@{digest}"))
        );
    }

    /// Issue 17: after an API server outage the watch cache lagged behind the operator's own
    /// status writes, and every reconcile recorded (and signed) the same finished build again,
    /// about once a second. The status the operator wrote is what it decides on until the
    /// cache has caught up.
    #[tokio::test]
    async fn a_recorded_build_is_not_recorded_again_from_a_stale_cache() {
        let (ctx, server) = test_context();
        let mut ib = TestImageBuild::new().running(1, "app-job").build();
        ib.metadata.resource_version = Some("41".into());
        let job = TestJob::for_build(&ib, "app-job")
            .started(10)
            .completed_at(70)
            .succeeded()
            .build();
        let result = BuildResult::success(image_result("sha256:lock")).to_termination_message();
        let pod = TestPod::new("app-job")
            .terminated("Completed", 0, &result)
            .build();
        let mock = server.run_and_keep(Scenario::BuildSucceeded(ib.clone(), job.clone(), pod));
        reconcile_through_signing(&ib, &ctx).await;
        let server = tokio::time::timeout(Duration::from_secs(1), mock)
            .await
            .unwrap()
            .unwrap();
        // The watch has not delivered the write yet: the cache hands over the same object.
        let mock = server.run(Scenario::ListedJobs(vec![job]));
        let action = reconcile(Arc::new(ib), ctx.clone()).await.unwrap();
        timeout_after_1s(mock).await;
        assert_eq!(action, Action::await_change());
        assert_eq!(ctx.metrics.builds_succeeded.get(), 1);
    }

    #[tokio::test]
    async fn resolution_failure_stalls() {
        let (ctx, server) = test_context();
        let ib = TestImageBuild::new().running(1, "app-job").build();
        let job = TestJob::for_build(&ib, "app-job")
            .failed("PodFailurePolicy")
            .build();
        let result = BuildResult::failure("ResolutionFailed", "nothing provides go-9").to_json();
        let pod = TestPod::new("app-job")
            .terminated("Error", 2, &result)
            .build();
        let mock = server.run(Scenario::BuildFailedStalled(ib.clone(), job, pod));
        reconcile(Arc::new(ib), ctx).await.unwrap();
        timeout_after_1s(mock).await;
    }

    #[tokio::test]
    async fn restart_mid_build_finds_the_job_already_created() {
        let (ctx, server) = test_context();
        let ib = TestImageBuild::new().build();
        let mock = server.run(Scenario::JobAlreadyExists(ib.clone()));
        reconcile(Arc::new(ib), ctx).await.unwrap();
        timeout_after_1s(mock).await;
    }

    #[tokio::test]
    async fn restart_mid_build_adopts_the_listed_job() {
        let (ctx, server) = test_context();
        let ib = TestImageBuild::new().build();
        let job = TestJob::for_build(&ib, "app-job")
            .started(10)
            .ready()
            .build();
        let mock = server.run(Scenario::ActiveJobAdopted(ib.clone(), job));
        reconcile(Arc::new(ib), ctx).await.unwrap();
        timeout_after_1s(mock).await;
    }

    #[tokio::test]
    async fn deleted_imagebuild_needs_nothing() {
        let (ctx, server) = test_context();
        let ib = TestImageBuild::new().deleting().build();
        let mock = server.run(Scenario::RadioSilence);
        let action = reconcile(Arc::new(ib), ctx).await.unwrap();
        timeout_after_1s(mock).await;
        assert_eq!(action, Action::await_change());
    }

    #[tokio::test]
    async fn old_jobs_beyond_the_history_limit_are_deleted() {
        let (ctx, server) = test_context();
        let ib = TestImageBuild::new()
            .succeeded(1, "app-new", "sha256:lock")
            .successful_limit(1)
            .build();
        let old = TestJob::for_build(&ib, "app-old")
            .created(1)
            .succeeded()
            .build();
        let new = TestJob::for_build(&ib, "app-new")
            .created(2)
            .succeeded()
            .build();
        let mock = server.run(Scenario::RetentionDeletes(
            ib.clone(),
            vec![old, new],
            "app-old".into(),
        ));
        reconcile(Arc::new(ib), ctx).await.unwrap();
        timeout_after_1s(mock).await;
    }

    #[tokio::test]
    async fn full_slots_queue_the_build() {
        let (ctx, server) = test_context();
        ctx.with_slots(|s| {
            for i in 0..s.limit() {
                s.mark_running(&format!("other/ib-{i}"));
            }
        });
        let ib = TestImageBuild::new().build();
        let mock = server.run(Scenario::BuildQueued(ib.clone()));
        let action = reconcile(Arc::new(ib), ctx.clone()).await.unwrap();
        timeout_after_1s(mock).await;
        assert_eq!(action, Action::requeue(REQUEUE_QUEUED));
        assert_eq!(ctx.metrics.queued_builds.get(), 1);
    }

    /// Issue 17: a queued ImageBuild was only looked at again on its 15-second requeue, so
    /// freed slots sat idle. A finished build now hands its slot to the oldest waiting
    /// ImageBuild at once.
    ///
    /// Signing runs off the reconcile: the reconcile that finds the build finished hands the
    /// slot on and returns while the image is still being signed.
    #[tokio::test]
    async fn a_finished_build_hands_its_slot_to_the_oldest_waiter() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let hooks = Hooks {
            post_build: Arc::new(GatedSigning(gate.clone())),
            ..Hooks::default()
        };
        let (ctx, server) = test_context_with(hooks);
        let mut handoffs = ctx.slot_handoffs();
        let mut signed = ctx.post_build.finished();
        ctx.with_slots(|s| {
            s.mark_running("team/app");
            s.mark_running("other/busy");
            assert!(!s.try_start("other/younger", 20, 30));
            assert!(!s.try_start("other/older", 10, 30));
        });
        let ib = TestImageBuild::new().running(1, "app-job").build();
        let mock = server.run(succeeded_build(&ib));
        let action = reconcile(Arc::new(ib.clone()), ctx.clone()).await.unwrap();
        assert_eq!(action, Action::requeue(REQUEUE_RUNNING));
        assert_eq!(handoffs.try_recv().unwrap(), "other/older");
        assert!(handoffs.try_recv().is_err(), "one slot, one hand-off");
        assert_eq!(
            ctx.post_build.progress("team/app", "app-job"),
            Some(Progress::Running)
        );
        assert!(signed.try_recv().is_err(), "still signing");

        gate.add_permits(1);
        let key = tokio::time::timeout(Duration::from_secs(1), signed.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(key, "team/app");
        reconcile(Arc::new(ib), ctx.clone()).await.unwrap();
        timeout_after_1s(mock).await;
        assert_eq!(ctx.metrics.builds_succeeded.get(), 1);
        assert_eq!(ctx.post_build.progress("team/app", "app-job"), None);
    }

    /// Signs nothing, and only once a permit of its gate is added.
    struct GatedSigning(Arc<tokio::sync::Semaphore>);

    impl PostBuild for GatedSigning {
        fn after_success<'a>(
            &'a self,
            _ib: &'a ImageBuild,
            _result: &'a securebuild_builder::result::ImageResult,
        ) -> futures::future::BoxFuture<'a, Result<SigningOutcome, crate::hooks::HookError>>
        {
            Box::pin(async move {
                self.0.acquire().await.unwrap().forget();
                Ok(SigningOutcome::default())
            })
        }
    }

    #[tokio::test]
    async fn hand_offs_become_reconciles_in_the_watched_namespace() {
        let (sender, receiver) = broadcast::channel(8);
        let refs = key_refs(receiver, Some("team".into()), "build slot hand-offs");
        for key in ["other/a", "team/b", "malformed", "team/c"] {
            sender.send(key.to_string()).unwrap();
        }
        drop(sender);
        let refs: Vec<ObjectRef<ImageBuild>> = refs.collect().await;
        assert_eq!(
            refs,
            [
                ObjectRef::new("b").within("team"),
                ObjectRef::new("c").within("team")
            ]
        );
    }

    #[tokio::test]
    async fn invalid_spec_is_reported_once() {
        let (ctx, server) = test_context();
        let ib = TestImageBuild::new().timeout("forever").build();
        let mock = server.run(Scenario::InvalidSpec(ib.clone()));
        reconcile(Arc::new(ib), ctx).await.unwrap();
        timeout_after_1s(mock).await;
    }

    #[tokio::test]
    async fn api_errors_are_counted_and_retried_with_backoff() {
        let (ctx, server) = test_context();
        let ib = Arc::new(TestImageBuild::new().build());
        let mock = server.run(Scenario::ListFails);
        let error = reconcile(ib.clone(), ctx.clone()).await.unwrap_err();
        timeout_after_1s(mock).await;
        assert_eq!(error.metric_label(), "kube_api");
        assert_eq!(
            error_policy(ib.clone(), &error, ctx.clone()),
            Action::requeue(Duration::from_secs(5))
        );
        assert_eq!(
            error_policy(ib, &error, ctx.clone()),
            Action::requeue(Duration::from_secs(10))
        );
        let text = crate::metrics::encode(&{
            let mut registry = Registry::default();
            registry.register("errors", "", ctx.metrics.reconcile_errors.clone());
            registry
        });
        assert!(
            text.contains("errors_total{error=\"kube_api\"} 2"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn missing_namespace_is_an_error() {
        let (ctx, _server) = test_context();
        let mut ib = TestImageBuild::new().build();
        ib.metadata.namespace = None;
        let error = reconcile(Arc::new(ib), ctx).await.unwrap_err();
        assert!(matches!(error, Error::MissingNamespace { .. }));
    }

    struct FixedLock(&'static str);

    impl LockResolver for FixedLock {
        fn resolve<'a>(
            &'a self,
            _ib: &'a ImageBuild,
        ) -> futures::future::BoxFuture<'a, Result<String, crate::hooks::HookError>> {
            Box::pin(async move { Ok(self.0.to_string()) })
        }
    }

    #[tokio::test]
    async fn new_packages_start_a_package_update_build() {
        let hooks = Hooks {
            resolver: Arc::new(FixedLock("sha256:newer")),
            ..Hooks::default()
        };
        let (ctx, server) = test_context_with(hooks);
        let ib = TestImageBuild::new()
            .interval("1h")
            .succeeded(1, "app-old", "sha256:lock")
            .build();
        let mock = server.run(Scenario::PackageUpdateStarted(
            ib.clone(),
            "sha256:newer".into(),
        ));
        reconcile(Arc::new(ib), ctx.clone()).await.unwrap();
        timeout_after_1s(mock).await;
    }

    #[tokio::test]
    async fn unchanged_packages_only_record_the_resolution() {
        let hooks = Hooks {
            resolver: Arc::new(FixedLock("sha256:lock")),
            ..Hooks::default()
        };
        let (ctx, server) = test_context_with(hooks);
        let ib = TestImageBuild::new()
            .interval("1h")
            .succeeded(1, "app-old", "sha256:lock")
            .build();
        let mock = server.run(Scenario::ResolvedUnchanged(ib.clone()));
        let action = reconcile(Arc::new(ib), ctx).await.unwrap();
        timeout_after_1s(mock).await;
        assert_eq!(action, Action::requeue(Duration::from_secs(3600)));
    }

    #[tokio::test]
    async fn unavailable_resolution_warns_and_waits_an_interval() {
        let (ctx, server) = test_context();
        let ib = TestImageBuild::new()
            .interval("2h")
            .succeeded(1, "app-old", "sha256:lock")
            .build();
        let mock = server.run(Scenario::ResolveFailed(ib.clone()));
        let action = reconcile(Arc::new(ib), ctx).await.unwrap();
        timeout_after_1s(mock).await;
        assert_eq!(action, Action::requeue(Duration::from_secs(7200)));
    }

    struct FixedSignature;

    impl PostBuild for FixedSignature {
        fn after_success<'a>(
            &'a self,
            _ib: &'a ImageBuild,
            result: &'a securebuild_builder::result::ImageResult,
        ) -> futures::future::BoxFuture<'a, Result<SigningOutcome, crate::hooks::HookError>>
        {
            let reference = |suffix: &str| securebuild_crds::imagebuild::ArtifactReference {
                reference: format!(
                    "registry.example.com/team/app:{}.{suffix}",
                    result.digest.replace(':', "-")
                ),
                digest: format!("sha256:{}", "d".repeat(64)),
            };
            let attestation = reference("att");
            Box::pin(async move {
                Ok(SigningOutcome {
                    signature: Some(reference("sig")),
                    sbom: Some(attestation.clone()),
                    attestations: vec![securebuild_crds::imagebuild::AttestationReference {
                        predicate_type: "https://spdx.dev/Document".into(),
                        reference: attestation.reference,
                        digest: attestation.digest,
                    }],
                    packages: None,
                })
            })
        }
    }

    #[tokio::test]
    async fn signed_builds_record_the_signature_and_say_so() {
        let hooks = Hooks {
            post_build: Arc::new(FixedSignature),
            ..Hooks::default()
        };
        let (ctx, server) = test_context_with(hooks);
        let ib = TestImageBuild::new().running(1, "app-job").build();
        let job = TestJob::for_build(&ib, "app-job")
            .started(10)
            .completed_at(70)
            .succeeded()
            .build();
        let result = BuildResult::success(image_result("sha256:lock")).to_termination_message();
        let pod = TestPod::new("app-job")
            .terminated("Completed", 0, &result)
            .build();
        let mock = server.run(Scenario::BuildSucceededSigned(ib.clone(), job, pod));
        reconcile_through_signing(&ib, &ctx).await;
        timeout_after_1s(mock).await;
    }

    /// Fails as the signer does when a package cannot be read back.
    struct UnreadablePackage(&'static str);

    impl PostBuild for UnreadablePackage {
        fn after_success<'a>(
            &'a self,
            ib: &'a ImageBuild,
            _result: &'a securebuild_builder::result::ImageResult,
        ) -> futures::future::BoxFuture<'a, Result<SigningOutcome, crate::hooks::HookError>>
        {
            Box::pin(async move {
                let source = std::fs::read(self.0).unwrap_err();
                let error = crate::signer::SignerError::PackageRead {
                    path: self.0.into(),
                    source,
                };
                Err(crate::hooks::HookError::failed(
                    crate::signer::HOOK_NAME,
                    ib,
                    error,
                ))
            })
        }
    }

    #[tokio::test]
    async fn signing_failures_report_their_cause() {
        let package = "/nonexistent/securebuild/hello-1.0-r0.apk";
        let hooks = Hooks {
            post_build: Arc::new(UnreadablePackage(package)),
            ..Hooks::default()
        };
        let (ctx, server) = test_context_with(hooks);
        let ib = TestImageBuild::new().running(1, "app-job").build();
        let job = TestJob::for_build(&ib, "app-job")
            .started(10)
            .completed_at(70)
            .succeeded()
            .build();
        let result = BuildResult::success(image_result("sha256:lock")).to_termination_message();
        let pod = TestPod::new("app-job")
            .terminated("Completed", 0, &result)
            .build();
        let cause = std::fs::read(package).unwrap_err();
        let message = format!(
            "{} failed for ImageBuild `team/app`: cannot read {package}: {cause}",
            crate::signer::HOOK_NAME
        );
        let mock = server.run(Scenario::BuildSigningFailed(ib.clone(), job, pod, message));
        reconcile_through_signing(&ib, &ctx).await;
        timeout_after_1s(mock).await;
    }

    #[tokio::test]
    async fn local_builds_run_without_jobs() {
        let local = std::sync::OnceLock::new();
        let (ctx, server) = test_context_with_backend(Hooks::default(), |client, config| {
            let backend = Arc::new(crate::backend::LocalBackend::new(client, config));
            let _ = local.set(backend.clone());
            backend
        });
        let local = local.get().unwrap().clone();
        let mut notices = local.build_notices().unwrap();
        // A keyring that cannot be read fails the build at once, before any network use.
        let key = "/nonexistent/securebuild/key.rsa.pub";
        let ib = TestImageBuild::new()
            .repositories(&["/nonexistent/securebuild/os"])
            .keyring(&[key])
            .build();
        // The status says what the CLI prints: the error and its cause.
        let cause = std::fs::read(key).unwrap_err();
        let message = format!("cannot read {key}: {cause}");
        let (written, mut statuses) = tokio::sync::mpsc::unbounded_channel();
        let mock = server.run_and_keep(Scenario::LocalBuildStarted(ib.clone(), written));
        let action = reconcile(Arc::new(ib.clone()), ctx.clone()).await.unwrap();
        let server = tokio::time::timeout(Duration::from_secs(1), mock)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(action, Action::requeue(REQUEUE_RUNNING));

        let notice = loop {
            let notice = tokio::time::timeout(Duration::from_secs(30), notices.recv())
                .await
                .unwrap()
                .unwrap();
            if notice.event == crate::backend::BuildEvent::Finished {
                break notice;
            }
        };
        assert_eq!(notice.image_build, "app");
        let mut running = ib;
        running.status = Some(statuses.recv().await.unwrap());
        assert_eq!(
            running
                .status
                .as_ref()
                .unwrap()
                .last_build
                .as_ref()
                .unwrap()
                .job,
            notice.build
        );

        let mock = server.run(Scenario::LocalBuildFailed(
            running.clone(),
            securebuild_crds::conditions::Reason::FetchFailed,
            message,
        ));
        let action = reconcile(Arc::new(running), ctx.clone()).await.unwrap();
        timeout_after_1s(mock).await;
        assert_eq!(action, Action::requeue(REQUEUE_FINISHED));
        assert_eq!(local.len(), 1);
    }

    #[test]
    fn watch_retries_grow_cap_and_start_over() {
        use kube::runtime::utils::Backoff as _;
        let mut backoff = WatchBackoff::default();
        let delays: Vec<Duration> = backoff.by_ref().take(12).collect();
        assert_eq!(delays.len(), 12, "never gives up");
        assert!(delays[0] >= WATCH_RETRY_MIN_DELAY, "{delays:?}");
        assert!(
            delays.iter().all(|d| *d <= WATCH_RETRY_MAX_DELAY * 2),
            "{delays:?}"
        );
        backoff.reset();
        assert!(backoff.next().unwrap() < WATCH_RETRY_MAX_DELAY);
    }

    #[test]
    fn retry_delays_grow_and_cap() {
        let delays: Vec<u64> = [0, 1, 2, 3, 7, 100]
            .iter()
            .map(|a| retry_delay(*a).as_secs())
            .collect();
        assert_eq!(delays, [5, 5, 10, 20, 300, 300]);
    }
}
