//! Reconcile throughput and memory: 1,000 ImageBuilds through [`reconcile`] per scenario,
//! against an in-process mock API server that answers every call with a canned response.
//!
//! Scenarios: an up-to-date ImageBuild (the baseline: one Job list, nothing to do), a new
//! ImageBuild (list, create the ConfigMap and Job, patch the status, publish an event), a
//! finished build (list Jobs and Pods and start the post-build task; once it ended, list Jobs,
//! patch the status, publish an event, delete the ConfigMap: two reconciles, one measured
//! unit) and new ImageBuilds of which all but one wait for the single build slot (list,
//! patch). It prints reconciles per second,
//! each scenario's rate relative to the baseline measured in the same run, the API calls per
//! reconcile, and peak RSS (`VmHWM` from `/proc/self/status`, reset between scenarios where
//! the kernel allows). It asserts nothing about time: numbers are for comparing runs.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use securebuild_builder::result::{BuildResult, ImageResult, PlatformResult};
use securebuild_crds::conditions::{ConditionType, Reason, set_condition};
use securebuild_crds::imagebuild::{
    BuildOutcome, BuildReason, BuildRecord, HistoryEntry, ImageBuildSpec, ImageBuildStatus,
    PackageSummary, Target,
};
use securebuild_crds::{ImageBuild, ImageConfiguration};
use securebuild_operator::config::Config;
use securebuild_operator::controller::{Context, Hooks, State, reconcile};
use securebuild_operator::job::{CONTAINER_NAME, JOB_NAME_LABEL, desired_job};
use securebuild_operator::post_build::Progress;
use securebuild_operator::triggers::{Trigger, TriggerKind};
use serde_json::{Value, json};

const IMAGE_BUILDS: usize = 1000;
const NAMESPACE: &str = "bench";
const IMAGEBUILD_SELECTOR: &str = "securebuild.dev%2Fimagebuild%3D";
const JOB_NAME_SELECTOR: &str = "batch.kubernetes.io%2Fjob-name%3D";

/// Canned answers, by ImageBuild name (Job lists) and Job name (Pod lists).
#[derive(Default)]
struct Canned {
    jobs: BTreeMap<String, Vec<u8>>,
    pods: BTreeMap<String, Vec<u8>>,
    imagebuild: Vec<u8>,
    calls: AtomicUsize,
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"resourceVersion": "1"},
        "items": items,
    }))
    .unwrap()
}

fn response(code: StatusCode, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// The value of a label in an encoded selector, up to the next `&` or `,` (`%2C`).
fn selected<'a>(query: &'a str, prefix: &str) -> Option<&'a str> {
    let start = query.find(prefix)? + prefix.len();
    let rest = &query[start..];
    let end = rest
        .find('&')
        .into_iter()
        .chain(rest.find("%2C"))
        .min()
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

async fn answer(canned: Arc<Canned>, request: Request<Body>) -> Response<Body> {
    canned.calls.fetch_add(1, Ordering::Relaxed);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let body = request
        .into_body()
        .collect_bytes()
        .await
        .unwrap_or_default();
    match method {
        Method::GET if path.ends_with("/jobs") => {
            let jobs = selected(&query, IMAGEBUILD_SELECTOR)
                .and_then(|name| canned.jobs.get(name).cloned())
                .unwrap_or_else(|| list("JobList", "batch/v1", Vec::new()));
            response(StatusCode::OK, jobs)
        }
        Method::GET if path.ends_with("/pods") => {
            let pods = selected(&query, JOB_NAME_SELECTOR)
                .and_then(|name| canned.pods.get(name).cloned())
                .unwrap_or_else(|| list("PodList", "v1", Vec::new()));
            response(StatusCode::OK, pods)
        }
        Method::PATCH if path.ends_with("/status") => {
            response(StatusCode::OK, canned.imagebuild.clone())
        }
        Method::POST => response(StatusCode::CREATED, body.to_vec()),
        Method::DELETE => response(
            StatusCode::OK,
            serde_json::to_vec(
                &json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
            )
            .unwrap(),
        ),
        _ => response(StatusCode::NOT_FOUND, b"{}".to_vec()),
    }
}

fn context(canned: Arc<Canned>, config: Config) -> Arc<Context> {
    let service = tower::service_fn(move |request: Request<Body>| {
        let canned = canned.clone();
        async move { Ok::<_, Infallible>(answer(canned, request).await) }
    });
    let client = kube::Client::new(service, "default");
    State::default().to_context(client, Arc::new(config), Hooks::default())
}

fn image_build(index: usize) -> ImageBuild {
    let image = ImageConfiguration::from_yaml(
        "contents:\n  repositories: [https://packages.example.com/os]\n  keyring: [https://packages.example.com/os/key.rsa.pub]\n  packages: [base, hello]\narchs: [x86_64, aarch64]\n",
    )
    .unwrap();
    let spec = ImageBuildSpec {
        image,
        target: Target {
            repository: format!("registry.example.com/bench/app-{index}"),
            tags: vec!["latest".into()],
            push_secret_ref: None,
        },
        ..ImageBuildSpec::default()
    };
    let mut ib = ImageBuild::new(&format!("app-{index:04}"), spec);
    ib.metadata.namespace = Some(NAMESPACE.into());
    ib.metadata.uid = Some(format!("00000000-0000-4000-8000-{index:012}"));
    ib.metadata.generation = Some(1);
    ib
}

fn digest(byte: char) -> String {
    format!("sha256:{}", byte.to_string().repeat(64))
}

fn image_result(index: usize) -> ImageResult {
    let index_digest = format!("sha256:{index:064x}");
    ImageResult {
        digest: index_digest.clone(),
        reference: Some(format!(
            "registry.example.com/bench/app-{index}@{index_digest}"
        )),
        platforms: vec![
            PlatformResult {
                arch: "amd64".into(),
                variant: None,
                digest: digest('b'),
            },
            PlatformResult {
                arch: "arm64".into(),
                variant: None,
                digest: digest('c'),
            },
        ],
        tags: vec!["latest".into()],
        lock: digest('d'),
        packages: 12,
    }
}

fn record(job: &str, outcome: BuildOutcome) -> BuildRecord {
    BuildRecord {
        job: job.into(),
        reason: BuildReason::SpecChanged,
        generation: 1,
        outcome,
        start_time: Some("2025-01-01T00:00:00Z".into()),
        completion_time: None,
        failure: None,
    }
}

/// An ImageBuild whose build succeeded and was recorded.
fn up_to_date(index: usize) -> ImageBuild {
    let mut ib = image_build(index);
    let mut status = ImageBuildStatus {
        observed_generation: Some(1),
        last_build: Some(record("done", BuildOutcome::Succeeded)),
        digest: Some(digest('a')),
        packages: Some(PackageSummary {
            count: 12,
            lock_digest: digest('d'),
            installed: Vec::new(),
        }),
        history: vec![HistoryEntry {
            digest: Some(digest('a')),
            reason: BuildReason::SpecChanged,
            outcome: BuildOutcome::Succeeded,
            time: "2025-01-01T00:00:00Z".into(),
            lock_digest: Some(digest('d')),
            job: Some("done".into()),
            start_time: None,
            failure: None,
            package_changes: None,
            package_changes_omitted: None,
        }],
        ..ImageBuildStatus::default()
    };
    set_condition(
        &mut status.conditions,
        ConditionType::Ready,
        true,
        Reason::Succeeded,
        "built",
        Some(1),
        Timestamp::UNIX_EPOCH,
    );
    ib.status = Some(status);
    ib
}

/// An ImageBuild whose build is recorded as running, with its Job complete and its Pod's
/// result: the Job list and Pod list answers go into `canned`.
fn finished(index: usize, canned: &mut Canned) -> ImageBuild {
    let mut ib = image_build(index);
    let trigger = Trigger {
        generation: 1,
        kind: TriggerKind::SpecChanged,
    };
    let (_, mut job) = desired_job(&ib, &trigger, &Config::default()).unwrap();
    let job_name = job.metadata.name.clone().unwrap();
    let started = Timestamp::from_second(1_735_689_600).unwrap();
    let ended = Timestamp::from_second(1_735_689_660).unwrap();
    job.metadata.creation_timestamp = Some(Time(started));
    job.status = Some(JobStatus {
        start_time: Some(Time(started)),
        completion_time: Some(Time(ended)),
        succeeded: Some(1),
        conditions: Some(vec![JobCondition {
            type_: "Complete".into(),
            status: "True".into(),
            ..JobCondition::default()
        }]),
        ..JobStatus::default()
    });
    let mut pod = Pod::default();
    pod.metadata.name = Some(format!("{job_name}-abcde"));
    pod.metadata.namespace = Some(NAMESPACE.into());
    pod.metadata.labels = Some(BTreeMap::from([(
        JOB_NAME_LABEL.to_string(),
        job_name.clone(),
    )]));
    pod.status = Some(PodStatus {
        container_statuses: Some(vec![ContainerStatus {
            name: CONTAINER_NAME.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 0,
                    reason: Some("Completed".into()),
                    message: Some(
                        BuildResult::success(image_result(index)).to_termination_message(),
                    ),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]),
        ..PodStatus::default()
    });
    canned.jobs.insert(
        ib.metadata.name.clone().unwrap(),
        list(
            "JobList",
            "batch/v1",
            vec![serde_json::to_value(&job).unwrap()],
        ),
    );
    canned.pods.insert(
        job_name.clone(),
        list("PodList", "v1", vec![serde_json::to_value(&pod).unwrap()]),
    );
    ib.status = Some(ImageBuildStatus {
        observed_generation: Some(1),
        last_build: Some(record(&job_name, BuildOutcome::Running)),
        ..ImageBuildStatus::default()
    });
    ib
}

/// Peak resident set size so far, in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets the peak RSS to the current RSS (`5` to `clear_refs`, Linux 4.0 and later); returns
/// whether the kernel allowed it.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

struct Measurement {
    name: &'static str,
    rate: f64,
    calls_per_reconcile: f64,
    peak_rss_kib: Option<u64>,
}

/// How many reconciles one ImageBuild of a scenario takes.
#[derive(Clone, Copy, PartialEq)]
enum Rounds {
    One,
    /// One to read the finished build and start its post-build task, one more once the task
    /// ended to record the outcome.
    ThroughPostBuild,
}

async fn measure(
    name: &'static str,
    canned: Canned,
    config: Config,
    image_builds: Vec<ImageBuild>,
) -> Measurement {
    measure_rounds(name, canned, config, image_builds, Rounds::One).await
}

async fn measure_rounds(
    name: &'static str,
    canned: Canned,
    config: Config,
    image_builds: Vec<ImageBuild>,
    rounds: Rounds,
) -> Measurement {
    let canned = Arc::new(canned);
    let concurrency = usize::from(config.reconcile_concurrency);
    let ctx = context(canned.clone(), config);
    let image_builds: Vec<Arc<ImageBuild>> = image_builds.into_iter().map(Arc::new).collect();
    let resettable = reset_peak_rss();
    let start = Instant::now();
    let failures = AtomicUsize::new(0);
    futures::stream::iter(image_builds.iter().cloned())
        .for_each_concurrent(concurrency, |ib| {
            let ctx = ctx.clone();
            let failures = &failures;
            async move {
                if reconcile(ib.clone(), ctx.clone()).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if rounds == Rounds::ThroughPostBuild {
                    let key = format!("{NAMESPACE}/{}", ib.metadata.name.as_deref().unwrap());
                    let build = ib.status.as_ref().unwrap().last_build.as_ref().unwrap();
                    while !matches!(
                        ctx.post_build.progress(&key, &build.job),
                        Some(Progress::Finished(_))
                    ) {
                        tokio::task::yield_now().await;
                    }
                    if reconcile(ib, ctx).await.is_err() {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .await;
    let elapsed = start.elapsed().max(Duration::from_nanos(1));
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("{name}: {failed} reconciles failed");
    }
    Measurement {
        name,
        rate: image_builds.len() as f64 / elapsed.as_secs_f64(),
        calls_per_reconcile: canned.calls.load(Ordering::Relaxed) as f64
            / image_builds.len() as f64,
        peak_rss_kib: if resettable { peak_rss_kib() } else { None },
    }
}

fn config(max_concurrent_builds: u16) -> Config {
    Config {
        max_concurrent_builds,
        ..Config::default()
    }
}

async fn run() -> Vec<Measurement> {
    let all = |make: fn(usize) -> ImageBuild| (0..IMAGE_BUILDS).map(make).collect::<Vec<_>>();
    // A first pass warms up allocators and lazily initialised state.
    measure("warm-up", Canned::default(), config(4), all(up_to_date)).await;

    let mut results = Vec::new();
    let imagebuild = serde_json::to_vec(&image_build(0)).unwrap();
    let canned = || Canned {
        imagebuild: imagebuild.clone(),
        ..Canned::default()
    };
    results.push(
        measure(
            "up-to-date (baseline)",
            canned(),
            config(4),
            all(up_to_date),
        )
        .await,
    );
    results.push(
        measure(
            "new: start a build",
            canned(),
            config(u16::MAX),
            all(image_build),
        )
        .await,
    );
    let mut finished_canned = canned();
    let finished_builds: Vec<ImageBuild> = (0..IMAGE_BUILDS)
        .map(|index| finished(index, &mut finished_canned))
        .collect();
    results.push(
        measure_rounds(
            "finished: record the result",
            finished_canned,
            config(u16::MAX),
            finished_builds,
            Rounds::ThroughPostBuild,
        )
        .await,
    );
    results.push(
        measure(
            "new: wait for a slot",
            canned(),
            // One slot: the first ImageBuild to get it starts a build, every other one waits.
            config(1),
            all(image_build),
        )
        .await,
    );
    results
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime.block_on(run());
    let baseline = results[0].rate;
    println!(
        "reconcile: {IMAGE_BUILDS} ImageBuilds per scenario, {} at once, mocked API server",
        Config::default().reconcile_concurrency
    );
    println!(
        "{:<30} {:>14} {:>10} {:>12} {:>14}",
        "scenario", "reconciles/s", "vs base", "API calls", "peak RSS MiB"
    );
    for result in &results {
        let rss = result.peak_rss_kib.map_or_else(
            || "n/a".to_string(),
            |kib| format!("{:.1}", kib as f64 / 1024.0),
        );
        println!(
            "{:<30} {:>14.0} {:>9.2}x {:>12.1} {:>14}",
            result.name,
            result.rate,
            result.rate / baseline,
            result.calls_per_reconcile,
            rss
        );
    }
    match peak_rss_kib() {
        Some(kib) => println!("process peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("process peak RSS (VmHWM): not available"),
    }
}
