//! Scale on a real control plane: 1,000 ImageBuilds of a small image (the example `hello`
//! package, two architectures, signed) applied at once to a kapi API server, built by one
//! `securebuild-operator` process with the `local` backend and default settings, running with
//! the Helm chart's ServiceAccount token.
//!
//! It reports the time until every ImageBuild is `Ready`, builds per second against the slot
//! count, how busy the slots were while builds were queued, the operator's peak RSS, API
//! requests per build (the API server's own count of requests in the `service-accounts` flow
//! schema, which holds the operator's requests and nothing else of this run), and the writes
//! while idle afterwards. It asserts nothing about time; it fails only when a build fails.
//!
//! Run it through `.ci/e2e bench`, which starts the control plane (`docs/performance.md`);
//! `SECUREBUILD_BENCH_IMAGEBUILDS` changes the count.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use securebuild_builder::attest::keys::SigningKey;
use securebuild_crds::conditions::{ConditionType, is_true};
use securebuild_crds::imagebuild::{ImageBuildSpec, SecretReference, Target};
use securebuild_crds::{ImageBuild, ImageConfiguration};
use securebuild_operator::config::DEFAULT_MAX_CONCURRENT_BUILDS;
use securebuild_operator::job;
use securebuild_operator::signer::{COSIGN_KEY, COSIGN_PASSWORD};
use securebuild_tests::cluster::{self, OPERATOR_NAMESPACE, SIGNING_SECRET};
use securebuild_tests::example_repo::{EXAMPLE_KEY_NAME, example_key, example_repository};
use securebuild_tests::kapi::ControlPlane;
use securebuild_tests::operator_process::{OperatorProcess, OperatorSpec};
use securebuild_tests::registry::TestRegistry;
use securebuild_tests::serve::ServedDir;
use serde_json::{Value, json};

const OPERATOR_BIN: &str = env!("CARGO_BIN_EXE_securebuild-operator");
const COUNT_ENV: &str = "SECUREBUILD_BENCH_IMAGEBUILDS";
const DEFAULT_COUNT: usize = 1000;
const NAMESPACE: &str = "bench-scale";
const PUSH_SECRET: &str = "regcred";
const KEY_PASSWORD: &str = "bench signing key";
/// How long the operator is watched after the last build for writes while idle.
const IDLE: Duration = Duration::from_secs(60);
/// How long the whole run may take before it gives up.
const LIMIT: Duration = Duration::from_secs(3600);
/// The operator's flow schema: requests of ServiceAccounts outside kube-system.
const OPERATOR_FLOW: &str = "flow_schema=\"service-accounts\"";

#[tokio::main]
async fn main() {
    let Ok(plane) = ControlPlane::from_env() else {
        println!("scale benchmark skipped: no control plane (run it through `.ci/e2e bench`)");
        return;
    };
    let count = std::env::var(COUNT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_COUNT);
    let admin = plane.admin_client().await.unwrap();
    cluster::apply_crd(&admin).await.unwrap();
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/securebuild");
    cluster::install_chart_rbac(&admin, &chart, &json!({}))
        .await
        .unwrap();
    cluster::delete_namespace(&admin, NAMESPACE).await.unwrap();
    wait_for_namespace_gone(&admin).await;
    cluster::ensure_namespace(
        &admin,
        NAMESPACE,
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let signing = SigningKey::generate().unwrap();
    let encrypted = signing.to_encrypted_pem(KEY_PASSWORD.as_bytes()).unwrap();
    cluster::apply_secret(
        &admin,
        OPERATOR_NAMESPACE,
        SIGNING_SECRET,
        "Opaque",
        &[
            (COSIGN_KEY, encrypted.as_bytes()),
            (COSIGN_PASSWORD, KEY_PASSWORD.as_bytes()),
        ],
    )
    .await
    .unwrap();
    let repo_dir = dir.path().join("repo");
    let key = example_key().unwrap();
    example_repository(&key).write(&repo_dir).unwrap();
    key.write_public(&repo_dir).unwrap();
    let served = ServedDir::start(repo_dir).await.unwrap();
    let registry = TestRegistry::start_with_auth("bench", "bench-push").unwrap();
    let docker_config = registry.docker_config_json(dir.path()).unwrap();
    cluster::apply_secret(
        &admin,
        NAMESPACE,
        PUSH_SECRET,
        "kubernetes.io/dockerconfigjson",
        &[(
            job::DOCKER_CONFIG_JSON_KEY,
            &std::fs::read(docker_config).unwrap(),
        )],
    )
    .await
    .unwrap();

    let kubeconfig = dir.path().join("operator.kubeconfig");
    let admin_config = plane.read_kubeconfig().unwrap();
    cluster::service_account_kubeconfig(&admin, &admin_config, None, &kubeconfig)
        .await
        .unwrap();
    let config = dir.path().join("operator.yaml");
    let operator_config = json!({
        "namespace": OPERATOR_NAMESPACE,
        "backend": "local",
        "signingKeySecret": SIGNING_SECRET,
        "watchNamespaces": [NAMESPACE],
        "cacheDir": dir.path().join("cache"),
        "workDir": dir.path().join("work"),
    });
    std::fs::write(&config, serde_norway::to_string(&operator_config).unwrap()).unwrap();
    let operator = OperatorProcess::spawn(OperatorSpec {
        binary: OPERATOR_BIN.into(),
        config,
        kubeconfig,
        log: dir.path().join("operator.log"),
        leader_election: false,
        identity: "bench".into(),
        log_filter: "info".into(),
    })
    .unwrap();
    // Wait until the operator watches (its first list shows up in the API server's count).
    let before_start = operator_requests(&admin).await;
    while operator_requests(&admin).await <= before_start {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let api: Api<ImageBuild> = Api::namespaced(admin.clone(), NAMESPACE);
    let image = ImageConfiguration::from_yaml(&format!(
        "contents:\n  repositories: [{}]\n  keyring: [{}]\n  packages: [hello]\narchs: [x86_64, aarch64]\nentrypoint:\n  command: /usr/bin/hello\n",
        served.base_url(),
        served.url(&format!("/{EXAMPLE_KEY_NAME}")),
    ))
    .unwrap();
    let watch = tokio::spawn(wait_all_ready(api.clone(), count));
    let requests_before = operator_requests(&admin).await;
    let started = Instant::now();
    let mut creates = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let spec = ImageBuildSpec {
                image: image.clone(),
                target: Target {
                    repository: format!("{}/bench/app-{i}", registry.host()),
                    tags: vec!["latest".into()],
                    push_secret_ref: Some(SecretReference {
                        name: PUSH_SECRET.into(),
                    }),
                },
                ..ImageBuildSpec::default()
            };
            async move {
                api.create(
                    &PostParams::default(),
                    &ImageBuild::new(&format!("app-{i:04}"), spec),
                )
                .await
            }
        })
        .buffer_unordered(16);
    while let Some(created) = creates.next().await {
        created.unwrap();
    }
    let applied = started.elapsed();
    let ready = tokio::time::timeout(LIMIT, watch).await.unwrap().unwrap();
    let all_ready = started.elapsed();
    let requests_after = operator_requests(&admin).await;
    let peak_rss = operator.peak_rss_kib().unwrap_or(0);

    let writes_before = write_requests(&admin).await;
    let idle_before = operator_requests(&admin).await;
    tokio::time::sleep(IDLE).await;
    let idle_writes = write_requests(&admin).await - writes_before;
    let idle_requests = operator_requests(&admin).await - idle_before;
    let peak_rss = peak_rss.max(operator.peak_rss_kib().unwrap_or(0));

    let busy = slot_use(&operator.log(), usize::from(DEFAULT_MAX_CONCURRENT_BUILDS));
    operator.kill();
    let slots = f64::from(DEFAULT_MAX_CONCURRENT_BUILDS);
    let seconds = all_ready.as_secs_f64();
    let rate = count as f64 / seconds;
    println!(
        "securebuild-operator scale benchmark: {count} ImageBuilds (hello, 2 archs, signed), local backend, {slots} build slots, {} cores",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!(
        "applied in                      {:>9.1} s",
        applied.as_secs_f64()
    );
    println!("all Ready after                 {seconds:>9.1} s   ({ready} Ready)");
    println!(
        "builds per second               {rate:>9.2}     ({:.3} per slot per second)",
        rate / slots
    );
    println!(
        "mean slot time of a build       {:>9.2} s   (started to finished, from the operator's log)",
        busy.mean_build_seconds
    );
    println!(
        "slots busy while builds queued  {:>9.1} %   ({:.2} of {slots} slots on average over {:.1} s; idle slot-seconds {:.1})",
        busy.busy_fraction * 100.0,
        busy.busy_fraction * slots,
        busy.queued_seconds,
        busy.idle_slot_seconds
    );
    println!(
        "operator peak RSS               {:>9.1} MiB (target <= 256 MiB)",
        peak_rss as f64 / 1024.0
    );
    println!(
        "API requests per build          {:>9.2}     ({} requests of the operator for {count} builds)",
        (requests_after - requests_before) as f64 / count as f64,
        requests_after - requests_before
    );
    println!(
        "writes while idle ({}s)          {idle_writes:>9}       (requests of any kind: {idle_requests})",
        IDLE.as_secs()
    );
    let _ = cluster::delete_namespace(&admin, NAMESPACE).await;
}

/// Waits until `count` ImageBuilds are `Ready`; panics when one stalls. Returns the count.
async fn wait_all_ready(api: Api<ImageBuild>, count: usize) -> usize {
    let mut ready = BTreeSet::new();
    let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.try_next().await.unwrap() {
        let objects = match event {
            Event::Apply(ib) | Event::InitApply(ib) => vec![ib],
            _ => continue,
        };
        for ib in objects {
            let status = ib.status.clone().unwrap_or_default();
            assert!(
                !is_true(&status.conditions, ConditionType::Stalled),
                "{:?} stalled: {status:?}",
                ib.metadata.name
            );
            if is_true(&status.conditions, ConditionType::Ready) {
                ready.insert(ib.metadata.name.clone().unwrap_or_default());
            }
        }
        if ready.len() >= count {
            return ready.len();
        }
    }
    ready.len()
}

async fn wait_for_namespace_gone(admin: &kube::Client) {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    while namespaces.get_opt(NAMESPACE).await.unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The API server's metrics text.
async fn metrics(admin: &kube::Client) -> String {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    admin.request_text(request).await.unwrap()
}

/// Requests dispatched for the operator's flow schema so far.
async fn operator_requests(admin: &kube::Client) -> u64 {
    sum(
        &metrics(admin).await,
        "apiserver_flowcontrol_dispatched_requests_total",
        &[OPERATOR_FLOW],
    )
}

/// Writes to what the operator writes (ImageBuild status, ConfigMaps, events) so far.
async fn write_requests(admin: &kube::Client) -> u64 {
    let text = metrics(admin).await;
    ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .flat_map(|verb| {
            ["imagebuilds", "configmaps", "events"]
                .into_iter()
                .map(move |resource| (verb, resource))
        })
        .map(|(verb, resource)| {
            sum(
                &text,
                "apiserver_request_total",
                &[
                    &format!("verb=\"{verb}\""),
                    &format!("resource=\"{resource}\""),
                ],
            )
        })
        .sum()
}

/// The sum of the samples of `name` whose labels contain every one of `labels`.
fn sum(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// How busy the build slots were: a build holds its slot from the backend's `local build
/// started` record (it took one of the backend's permits and runs) to its `local build
/// finished`; the gaps are the hand-offs.
struct SlotUse {
    /// Builds holding a slot over slots, time-weighted, from the first start to the last start
    /// (while builds were queued).
    busy_fraction: f64,
    /// That period.
    queued_seconds: f64,
    /// Slot-seconds without a build in that period.
    idle_slot_seconds: f64,
    mean_build_seconds: f64,
}

fn slot_use(log: &str, slots: usize) -> SlotUse {
    let mut events: Vec<(Timestamp, i32)> = Vec::new();
    let mut started: BTreeMap<String, Timestamp> = BTreeMap::new();
    let mut durations = Vec::new();
    for line in log.lines() {
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(at) = record["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
        else {
            continue;
        };
        let fields = &record["fields"];
        match fields["message"].as_str() {
            Some("local build started") => {
                let build = fields["build"].as_str().unwrap_or_default().to_string();
                events.push((at, 1));
                started.insert(build, at);
            }
            Some("local build finished") => {
                let build = fields["build"].as_str().unwrap_or_default().to_string();
                events.push((at, -1));
                if let Some(start) = started.get(&build) {
                    durations.push(at.duration_since(*start).as_secs_f64());
                }
            }
            _ => {}
        }
    }
    events.sort();
    let first = events.first().map(|e| e.0);
    let last_start = events.iter().filter(|e| e.1 > 0).map(|e| e.0).next_back();
    let (Some(first), Some(last_start)) = (first, last_start) else {
        return SlotUse {
            busy_fraction: 0.0,
            queued_seconds: 0.0,
            idle_slot_seconds: 0.0,
            mean_build_seconds: 0.0,
        };
    };
    let mut running = 0i32;
    let mut previous = first;
    let mut busy = 0.0;
    for (at, change) in &events {
        if *at > last_start {
            break;
        }
        busy += f64::from(running.min(slots as i32)) * at.duration_since(previous).as_secs_f64();
        running += change;
        previous = *at;
    }
    let period = last_start.duration_since(first).as_secs_f64();
    let capacity = period * slots as f64;
    SlotUse {
        busy_fraction: if capacity > 0.0 { busy / capacity } else { 1.0 },
        queued_seconds: period,
        idle_slot_seconds: capacity - busy,
        mean_build_seconds: durations.iter().sum::<f64>() / durations.len().max(1) as f64,
    }
}
