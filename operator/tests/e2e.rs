//! End-to-end and fault tests on a real control plane: kapi's etcd, kube-apiserver and
//! kube-controller-manager (`.ci/e2e` starts them; see `docs/e2e.md`). Every test is
//! `#[ignore]`d, so `cargo test` alone never runs them; `.ci/e2e` runs them with
//! `cargo test -p securebuild-operator --test e2e -- --ignored --test-threads=1`.
//!
//! Each test installs the CRD and the Helm chart's ServiceAccount and RBAC, and runs its own
//! `securebuild-operator` processes with that ServiceAccount's token (never as cluster-admin),
//! through a TCP proxy to the API server. It serves the example APK repository over loopback
//! HTTP, pushes to a real `docker-registry` with basic auth behind a fault-injecting proxy,
//! signs with a key from a Secret, and works in a namespace of its own (Pod Security
//! `restricted` enforced). With the `pod` backend, a stand-in kubelet runs each builder Pod's
//! container as a local `securebuild` process, and the real Job controller completes the Job.
//!
//! Every test ends with the same checks: each ImageBuild is `Ready`, it was built, signed and
//! recorded exactly once per trigger (builder runs, `build succeeded` records, signature
//! pushes, history entries), and its status digest is the digest the registry serves for its
//! tag.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use securebuild_builder::attest::keys::SigningKey;
use securebuild_crds::conditions::{ConditionType, is_true};
use securebuild_crds::imagebuild::{
    BuildOutcome, BuildReason, ImageBuildSpec, ImageBuildStatus, SecretReference, Target,
};
use securebuild_crds::{ImageBuild, ImageConfiguration};
use securebuild_operator::job;
use securebuild_operator::leader::LEASE_NAME;
use securebuild_operator::signer::{COSIGN_KEY, COSIGN_PASSWORD};
use securebuild_tests::cluster::{self, OPERATOR_NAMESPACE, SIGNING_SECRET};
use securebuild_tests::example_repo::{
    EXAMPLE_KEY_NAME, example_key, example_repository, example_repository_updated,
};
use securebuild_tests::kapi::ControlPlane;
use securebuild_tests::kubelet::{KubeletConfig, StandInKubelet};
use securebuild_tests::operator_process::{OperatorProcess, OperatorSpec};
use securebuild_tests::proxy::{Exchange, HookAction, Matcher, RegistryProxy, TcpProxy};
use securebuild_tests::registry::TestRegistry;
use securebuild_tests::serve::ServedDir;
use securebuild_tests::webdriver::{ChromeDriver, Element, KEY_ENTER, KEY_TAB, Session};
use serde_json::{Value, json};

const OPERATOR_BIN: &str = env!("CARGO_BIN_EXE_securebuild-operator");
const BUILDER_BIN_ENV: &str = "SECUREBUILD_E2E_BUILDER_BIN";
/// Set to keep each test's directory (operator logs, kubelet Pod directories) and namespace.
const KEEP_ENV: &str = "SECUREBUILD_E2E_KEEP";
/// Set to a directory to keep the console test's screenshots there (`docs/images`).
const SCREENSHOTS_ENV: &str = "SECUREBUILD_SCREENSHOTS";
const BUILDER_IMAGE: &str = "securebuild:e2e";
const PUSH_SECRET: &str = "regcred";
const REGISTRY_USER: &str = "builder";
const REGISTRY_PASSWORD: &str = "e2e-push";
const KEY_PASSWORD: &str = "e2e signing key";
const REPOSITORY_PREFIX: &str = "securebuild-e2e";
/// How long a test waits for its ImageBuilds.
const WAIT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(500);
/// How long the final checks wait for the operator's log records of what the status shows.
const RECORD_WAIT: Duration = Duration::from_secs(20);
/// How long the final checks then wait for records that should not come (a repeated build).
const SETTLE: Duration = Duration::from_secs(2);
/// How long the API server stays down in the outage tests.
const OUTAGE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Local,
    Pod,
}

impl Backend {
    fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Pod => "pod",
        }
    }
}

#[derive(Clone, Debug)]
struct Options {
    backend: Backend,
    max_concurrent_builds: u16,
    replicas: usize,
}

impl Options {
    fn new(backend: Backend) -> Self {
        Self {
            backend,
            max_concurrent_builds: 4,
            replicas: 1,
        }
    }
}

/// The `securebuild` CLI the stand-in kubelet runs for the builder image.
fn builder_binary() -> PathBuf {
    std::env::var_os(BUILDER_BIN_ENV).map_or_else(
        || Path::new(OPERATOR_BIN).with_file_name("securebuild"),
        PathBuf::from,
    )
}

/// Everything one test runs against.
struct Harness {
    plane: ControlPlane,
    admin: Client,
    namespace: String,
    _dir: tempfile::TempDir,
    served: ServedDir,
    _registry: TestRegistry,
    registry_auth: String,
    proxy: Arc<RegistryProxy>,
    api_proxy: Arc<TcpProxy>,
    kubelet: Option<StandInKubelet>,
    operators: Vec<OperatorProcess>,
    options: Options,
    started: Instant,
}

impl Harness {
    async fn start(test: &str, options: Options) -> Self {
        let started = Instant::now();
        let plane = ControlPlane::from_env().unwrap();
        let admin = plane.admin_client().await.unwrap();
        cluster::apply_crd(&admin).await.unwrap();
        let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/securebuild");
        let applied = cluster::install_chart_rbac(&admin, &chart, &json!({}))
            .await
            .unwrap();
        assert!(applied >= 5, "the chart's RBAC objects: {applied}");

        let dir = tempfile::tempdir().unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let namespace = format!("e2e-{test}-{:x}", nanos % 0xfffff);
        cluster::ensure_namespace(
            &admin,
            &namespace,
            &[("pod-security.kubernetes.io/enforce", "restricted")],
        )
        .await
        .unwrap();

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

        let registry = TestRegistry::start_with_auth(REGISTRY_USER, REGISTRY_PASSWORD).unwrap();
        let proxy = Arc::new(
            RegistryProxy::start(registry.host().parse().unwrap())
                .await
                .unwrap(),
        );
        use base64::Engine as _;
        let registry_auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"));
        let docker_config = json!({"auths": {proxy.host(): {"auth": registry_auth}}}).to_string();
        cluster::apply_secret(
            &admin,
            &namespace,
            PUSH_SECRET,
            "kubernetes.io/dockerconfigjson",
            &[(job::DOCKER_CONFIG_JSON_KEY, docker_config.as_bytes())],
        )
        .await
        .unwrap();

        let admin_config = plane.read_kubeconfig().unwrap();
        let server = admin_config
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.server.clone())
            .unwrap();
        let upstream = server
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let api_proxy = Arc::new(TcpProxy::start(upstream).await.unwrap());
        let kubeconfig = dir.path().join("operator.kubeconfig");
        cluster::service_account_kubeconfig(
            &admin,
            &admin_config,
            Some(&format!("https://{}", api_proxy.addr())),
            &kubeconfig,
        )
        .await
        .unwrap();

        let config = dir.path().join("operator.yaml");
        let operator_config = json!({
            "namespace": OPERATOR_NAMESPACE,
            "backend": options.backend.as_str(),
            "builderImage": BUILDER_IMAGE,
            "signingKeySecret": SIGNING_SECRET,
            "maxConcurrentBuilds": options.max_concurrent_builds,
            "watchNamespaces": [namespace],
            "cacheDir": dir.path().join("cache"),
            "workDir": dir.path().join("work"),
            "deploymentName": "securebuild-e2e",
        });
        std::fs::write(&config, serde_norway::to_string(&operator_config).unwrap()).unwrap();

        let kubelet = (options.backend == Backend::Pod).then(|| {
            let root = dir.path().join("kubelet");
            std::fs::create_dir_all(&root).unwrap();
            StandInKubelet::start(
                admin.clone(),
                KubeletConfig {
                    namespace: namespace.clone(),
                    images: BTreeMap::from([(BUILDER_IMAGE.to_string(), builder_binary())]),
                    root,
                    env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
                },
            )
        });
        let operators = (0..options.replicas)
            .map(|replica| {
                OperatorProcess::spawn(OperatorSpec {
                    binary: OPERATOR_BIN.into(),
                    config: config.clone(),
                    kubeconfig: kubeconfig.clone(),
                    log: dir.path().join(format!("operator-{replica}.log")),
                    leader_election: options.replicas > 1,
                    identity: format!("{namespace}-operator-{replica}"),
                    log_filter: std::env::var("SECUREBUILD_E2E_LOG")
                        .unwrap_or_else(|_| "info".into()),
                })
                .unwrap()
            })
            .collect();
        Self {
            plane,
            admin,
            namespace,
            _dir: dir,
            served,
            _registry: registry,
            registry_auth,
            proxy,
            api_proxy,
            kubelet,
            operators,
            options,
            started,
        }
    }

    fn repository(&self, name: &str) -> String {
        format!("{REPOSITORY_PREFIX}/{name}")
    }

    fn image_build(&self, name: &str, packages: &[&str]) -> ImageBuild {
        let image = ImageConfiguration::from_yaml(&format!(
            "contents:\n  repositories: [{}]\n  keyring: [{}]\n  packages: [{}]\narchs: [x86_64, aarch64]\nentrypoint:\n  command: /usr/bin/hello\n",
            self.served.base_url(),
            self.served.url(&format!("/{EXAMPLE_KEY_NAME}")),
            packages.join(", "),
        ))
        .unwrap();
        let spec = ImageBuildSpec {
            image,
            target: Target {
                repository: format!("{}/{}", self.proxy.host(), self.repository(name)),
                tags: vec!["latest".into()],
                push_secret_ref: Some(SecretReference {
                    name: PUSH_SECRET.into(),
                }),
            },
            ..ImageBuildSpec::default()
        };
        ImageBuild::new(name, spec)
    }

    fn api(&self) -> Api<ImageBuild> {
        Api::namespaced(self.admin.clone(), &self.namespace)
    }

    /// Creates `count` ImageBuilds of the example `hello` package, named `app-<i>`.
    async fn create(&self, count: usize) -> Vec<String> {
        let mut names = Vec::new();
        for i in 0..count {
            let name = format!("app-{i}");
            self.api()
                .create(&PostParams::default(), &self.image_build(&name, &["hello"]))
                .await
                .unwrap();
            names.push(name);
        }
        names
    }

    /// The status of each ImageBuild, polled until all are `Ready` (failing at once when one
    /// stalls, and after [`WAIT`]).
    async fn wait_ready(&self, names: &[String]) -> BTreeMap<String, ImageBuildStatus> {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut statuses = BTreeMap::new();
            for name in names {
                // The API server may be away for a moment in fault tests.
                let Ok(ib) = self.api().get_status(name).await else {
                    break;
                };
                let status = ib.status.unwrap_or_default();
                assert!(
                    !is_true(&status.conditions, ConditionType::Stalled),
                    "{name} stalled: {}\n{}",
                    serde_json::to_string_pretty(&status).unwrap(),
                    self.logs_tail()
                );
                statuses.insert(name.clone(), status);
            }
            if statuses.len() == names.len()
                && statuses
                    .values()
                    .all(|s| is_true(&s.conditions, ConditionType::Ready))
            {
                return statuses;
            }
            assert!(
                Instant::now() < deadline,
                "not all Ready after {WAIT:?}: {}\n{}",
                serde_json::to_string_pretty(&statuses).unwrap(),
                self.logs_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn logs_tail(&self) -> String {
        self.operators
            .iter()
            .map(|o| {
                let log = o.log();
                let start = log.len().saturating_sub(6000);
                let start = (start..log.len())
                    .find(|i| log.is_char_boundary(*i))
                    .unwrap_or(0);
                format!("--- {} ---\n{}", o.log_path().display(), &log[start..])
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The operators' log records (JSON lines) whose message is `message`.
    fn records(&self, message: &str) -> Vec<Value> {
        self.operators
            .iter()
            .flat_map(|o| {
                o.log()
                    .lines()
                    .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                    .filter(|record| record["fields"]["message"] == message)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The digest the registry serves for `name:tag`.
    async fn registry_digest(&self, name: &str, tag: &str) -> String {
        let url = format!(
            "http://{}/v2/{}/manifests/{tag}",
            self.proxy.host(),
            self.repository(name)
        );
        let response = reqwest_head(&url, &self.registry_auth).await;
        response.unwrap_or_else(|| panic!("the registry has no {name}:{tag}"))
    }

    /// The end-of-test checks: one build, one signature and one record per trigger, and the
    /// digest the registry serves.
    async fn assert_built_once(
        &self,
        statuses: &BTreeMap<String, ImageBuildStatus>,
        triggers: usize,
    ) {
        // The operator logs `build succeeded` right after the status write the test saw: wait
        // for those records, then a little longer, so that a repeated recording shows.
        let recorded = |name: &str| {
            let key = format!("{}/{name}", self.namespace);
            self.records("build succeeded")
                .iter()
                .filter(|r| r["fields"]["imagebuild"] == key.as_str())
                .count()
        };
        let deadline = Instant::now() + RECORD_WAIT;
        while Instant::now() < deadline && statuses.keys().any(|n| recorded(n) < triggers) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(SETTLE).await;
        let exchanges = self.proxy.exchanges();
        let succeeded = self.records("build succeeded");
        let finished = self.records("local build finished");
        for (name, status) in statuses {
            let last = status.last_build.clone().unwrap();
            assert_eq!(last.outcome, BuildOutcome::Succeeded, "{name}");
            assert_eq!(
                status.history.len(),
                triggers,
                "{name}: {:?}",
                status.history
            );
            assert!(
                status
                    .history
                    .iter()
                    .all(|h| h.outcome == BuildOutcome::Succeeded),
                "{name}: {:?}",
                status.history
            );
            let digest = status.digest.clone().unwrap();
            assert_eq!(
                self.registry_digest(name, "latest").await,
                digest,
                "{name}: the status digest is the registry's"
            );
            assert_eq!(status.platforms.len(), 2, "{name}: two architectures");
            let signature = status.signature.clone().expect("a signature");
            assert!(signature.reference.ends_with(".sig"), "{signature:?}");
            assert!(!status.attestations.is_empty(), "{name}: attestations");

            let repository = self.repository(name);
            let count = |reference: &str| {
                exchanges
                    .iter()
                    .filter(|e| e.is_manifest_put(&repository, reference) && e.succeeded())
                    .count()
            };
            let sig_tag = format!("{}.sig", digest.replace(':', "-"));
            let pushes: Vec<&Exchange> = exchanges
                .iter()
                .filter(|e| e.method != "GET" && e.method != "HEAD")
                .filter(|e| e.path.starts_with(&format!("/v2/{repository}/")))
                .collect();
            assert_eq!(
                count(&sig_tag),
                triggers,
                "{name}: signatures pushed; pushes: {pushes:#?}\n{}",
                self.logs_tail()
            );
            let recorded = succeeded
                .iter()
                .filter(|r| r["fields"]["imagebuild"] == format!("{}/{name}", self.namespace))
                .count();
            assert_eq!(recorded, triggers, "{name}: `build succeeded` records");
            match self.options.backend {
                Backend::Local => {
                    let runs = finished
                        .iter()
                        .filter(|r| {
                            r["fields"]["build"] == last.job.as_str()
                                && r["fields"]["namespace"] == self.namespace.as_str()
                                && r["fields"]["succeeded"] == true
                        })
                        .count();
                    assert_eq!(runs, 1, "{name}: local builds of {}", last.job);
                }
                Backend::Pod => {
                    let kubelet = self.kubelet.as_ref().unwrap();
                    assert_eq!(
                        kubelet.finished_runs_of(&last.job),
                        1,
                        "{name}: builder containers of {}: {:?}",
                        last.job,
                        kubelet.runs()
                    );
                }
            }
        }
    }

    /// Kills every operator replica.
    fn kill_operators(&self) {
        for operator in &self.operators {
            operator.kill();
        }
    }

    async fn finish(self) {
        if std::env::var_os(KEEP_ENV).is_some() {
            eprintln!("e2e: kept {}", self._dir.keep().display());
            return;
        }
        eprintln!(
            "e2e: {} ({} backend) took {:.1}s",
            self.namespace,
            self.options.backend.as_str(),
            self.started.elapsed().as_secs_f64()
        );
        let _ = cluster::delete_namespace(&self.admin, &self.namespace).await;
    }
}

/// `HEAD` on a manifest with basic auth; the `Docker-Content-Digest` header.
async fn reqwest_head(url: &str, auth: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    let request = format!(
        "HEAD /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\nAccept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    if !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    response.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("docker-content-digest")
            .then(|| value.trim().to_string())
    })
}

fn matcher(method: hyper::Method, suffix: &str) -> Matcher {
    Matcher {
        method,
        path_suffix: suffix.to_string(),
        path_contains: format!("/v2/{REPOSITORY_PREFIX}/"),
    }
}

/// A blob upload starting: the builds are pushing.
fn upload_started() -> Matcher {
    matcher(hyper::Method::POST, "/blobs/uploads/")
}

/// A signature manifest push: the operator is signing.
fn signature_push() -> Matcher {
    matcher(hyper::Method::PUT, ".sig")
}

/// An attestation manifest push: the last step before the status write.
fn attestation_push() -> Matcher {
    matcher(hyper::Method::PUT, ".att")
}

fn hook<F, Fut>(action: F) -> HookAction
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    Arc::new(move || action().boxed())
}

// ---------------------------------------------------------------------------------------------
// The flows

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the kapi control plane; run through .ci/e2e (docs/e2e.md)"]
async fn local_backend_builds_signs_and_reports() {
    let harness = Harness::start("local", Options::new(Backend::Local)).await;
    let names = harness.create(2).await;
    let statuses = harness.wait_ready(&names).await;
    harness.assert_built_once(&statuses, 1).await;
    for (name, status) in &statuses {
        assert_eq!(status.observed_generation, Some(1));
        assert!(status.packages.as_ref().unwrap().count > 0);
        let latest = status.latest_image.clone().unwrap();
        assert!(
            latest.ends_with(&format!(
                "/{}@{}",
                harness.repository(name),
                status.digest.clone().unwrap()
            )),
            "{latest}"
        );
    }
    // No Jobs: the builds ran in the operator, recorded in ConfigMaps the ImageBuild owns.
    let jobs: Api<Job> = Api::namespaced(harness.admin.clone(), &harness.namespace);
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let records = build_records(&harness).await;
    assert_eq!(records.len(), 2, "one build record per ImageBuild");
    for name in &names {
        harness
            .api()
            .delete(name, &DeleteParams::foreground())
            .await
            .unwrap();
    }
    wait_until("the build records go with their ImageBuilds", || async {
        build_records(&harness).await.is_empty()
    })
    .await;
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the kapi control plane; run through .ci/e2e (docs/e2e.md)"]
async fn pod_backend_runs_builder_jobs() {
    let harness = Harness::start("pod", Options::new(Backend::Pod)).await;
    let names = harness.create(2).await;
    let statuses = harness.wait_ready(&names).await;
    harness.assert_built_once(&statuses, 1).await;
    let jobs: Api<Job> = Api::namespaced(harness.admin.clone(), &harness.namespace);
    for (name, status) in &statuses {
        let last = status.last_build.clone().unwrap();
        let job = jobs.get(&last.job).await.unwrap();
        assert_eq!(job.status.unwrap().succeeded, Some(1), "{name}");
    }
    for name in &names {
        harness
            .api()
            .delete(name, &DeleteParams::background())
            .await
            .unwrap();
    }
    wait_until("the builder Jobs go with their ImageBuilds", || async {
        jobs.list(&ListParams::default().labels(&job::managed_selector()))
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the kapi control plane; run through .ci/e2e (docs/e2e.md)"]
async fn unresolvable_packages_stall_the_imagebuild() {
    let harness = Harness::start("stall", Options::new(Backend::Local)).await;
    let ib = harness.image_build("missing", &["securebuild-e2e-no-such-package"]);
    harness
        .api()
        .create(&PostParams::default(), &ib)
        .await
        .unwrap();
    let api = harness.api();
    let status = wait_for_status(&api, "missing", |status| {
        is_true(&status.conditions, ConditionType::Stalled)
    })
    .await;
    assert!(!is_true(&status.conditions, ConditionType::Ready));
    let failure = status.last_build.unwrap().failure.unwrap();
    assert_eq!(failure.reason, "ResolutionFailed", "{failure:?}");
    assert!(
        failure.message.contains("securebuild-e2e-no-such-package"),
        "{failure:?}"
    );
    assert!(status.digest.is_none());
    harness.finish().await;
}

/// With one build slot, queued builds start in the order they were requested, each as soon
/// as the previous build freed the slot (the periodic requeue of a queued ImageBuild is
/// minutes away, so only the hand-off can start them in time).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the kapi control plane; run through .ci/e2e (docs/e2e.md)"]
async fn queued_builds_start_in_request_order() {
    let options = Options {
        max_concurrent_builds: 1,
        ..Options::new(Backend::Local)
    };
    let harness = Harness::start("queue", options).await;
    let mut names = Vec::new();
    for i in 0..3 {
        let name = format!("app-{i}");
        harness
            .api()
            .create(
                &PostParams::default(),
                &harness.image_build(&name, &["hello"]),
            )
            .await
            .unwrap();
        names.push(name);
        // Distinct request times (the status has whole seconds).
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let statuses = harness.wait_ready(&names).await;
    harness.assert_built_once(&statuses, 1).await;
    let started = harness.records("local build started");
    let order: Vec<String> = started
        .iter()
        .map(|r| r["fields"]["build"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = names
        .iter()
        .map(|n| statuses[n].last_build.clone().unwrap().job)
        .collect();
    assert_eq!(order, expected, "builds start in request order");
    harness.finish().await;
}

/// `spec.image.include` names a ConfigMap key, which includes another key of the same
/// ConfigMap: the build input is the merged configuration, the status names the sources, and
/// editing the ConfigMap builds again (`IncludeChanged`) without touching the ImageBuild.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the kapi control plane; run through .ci/e2e (docs/e2e.md)"]
async fn included_configmaps_are_merged_and_rebuild_on_change() {
    let harness = Harness::start("include", Options::new(Backend::Local)).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(harness.admin.clone(), &harness.namespace);
    let base = |greeting: &str| {
        format!(
            "include: ./os.yaml\ncontents:\n  repositories: [{}]\n  keyring: [{}]\n  packages: [hello]\narchs: [x86_64]\nenvironment:\n  GREETING: {greeting}\n  APP: base\n",
            harness.served.base_url(),
            harness.served.url(&format!("/{EXAMPLE_KEY_NAME}")),
        )
    };
    let config_map = |greeting: &str| ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("base".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("base.yaml".to_string(), base(greeting)),
            (
                "os.yaml".to_string(),
                "entrypoint:\n  command: /usr/bin/hello\n".to_string(),
            ),
        ])),
        ..Default::default()
    };
    config_maps
        .create(&PostParams::default(), &config_map("one"))
        .await
        .unwrap();
    let mut ib = harness.image_build("app", &["hello"]);
    ib.spec.image = ImageConfiguration::from_yaml(
        "include: configmap:base/base.yaml\nenvironment:\n  APP: own\n",
    )
    .unwrap();
    harness
        .api()
        .create(&PostParams::default(), &ib)
        .await
        .unwrap();
    let names = vec!["app".to_string()];
    let first = harness.wait_ready(&names).await.remove("app").unwrap();
    let sources = first.configuration.clone().unwrap();
    let included: Vec<(String, String)> = sources
        .includes
        .iter()
        .map(|i| (i.config_map.clone(), i.key.clone()))
        .collect();
    assert_eq!(
        included,
        [
            ("base".to_string(), "base.yaml".to_string()),
            ("base".to_string(), "os.yaml".to_string())
        ]
    );
    assert!(
        sources
            .includes
            .iter()
            .all(|i| i.resource_version.is_some())
    );
    // The build's input is the merged configuration: the spec's value wins, the rest is the
    // ConfigMaps', and nothing is left to include.
    let records = build_records(&harness).await;
    assert_eq!(records.len(), 1);
    let input =
        ImageConfiguration::from_yaml(&records[0].data.clone().unwrap()[job::IMAGE_CONFIG_KEY])
            .unwrap();
    assert_eq!(input.include, None);
    assert_eq!(input.environment["APP"], "own");
    assert_eq!(input.environment["GREETING"], "one");
    assert_eq!(input.contents.packages, ["hello"]);
    assert_eq!(
        input.entrypoint.and_then(|e| e.command).as_deref(),
        Some("/usr/bin/hello")
    );

    // Editing the ConfigMap builds again, with its new content.
    config_maps
        .replace("base", &PostParams::default(), &{
            let mut changed = config_map("two");
            changed.metadata.resource_version = config_maps
                .get("base")
                .await
                .unwrap()
                .metadata
                .resource_version;
            changed
        })
        .await
        .unwrap();
    let api = harness.api();
    let second = wait_for_status(&api, "app", |status| {
        status.history.len() == 2 && is_true(&status.conditions, ConditionType::Ready)
    })
    .await;
    let last = second.last_build.clone().unwrap();
    assert_eq!(last.reason, BuildReason::IncludeChanged);
    assert_eq!(last.generation, 1, "the ImageBuild itself did not change");
    assert_ne!(
        second.digest, first.digest,
        "a new environment, a new image"
    );
    assert_ne!(second.configuration.unwrap().digest, sources.digest);

    // An include of a ConfigMap that does not exist yet stalls the ImageBuild with a message
    // naming it; creating the ConfigMap builds it.
    let mut late = harness.image_build("late", &["hello"]);
    late.spec.image = ImageConfiguration::from_yaml("include: configmap:late/base.yaml\n").unwrap();
    api.create(&PostParams::default(), &late).await.unwrap();
    let stalled = wait_for_status(&api, "late", |status| {
        is_true(&status.conditions, ConditionType::Stalled)
    })
    .await;
    let ready = stalled
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready.message.contains(&format!(
            "ConfigMap `{}/late` does not exist",
            harness.namespace
        )),
        "{}",
        ready.message
    );
    let mut late_map = config_map("three");
    late_map.metadata.name = Some("late".into());
    config_maps
        .create(&PostParams::default(), &late_map)
        .await
        .unwrap();
    let built = wait_for_status(&api, "late", |status| {
        is_true(&status.conditions, ConditionType::Ready)
    })
    .await;
    assert_eq!(built.history.len(), 1);
    assert!(!is_true(&built.conditions, ConditionType::Stalled));
    assert!(!built.configuration.unwrap().digest.is_empty());
    harness.finish().await;
}

async fn wait_for_status(
    api: &Api<ImageBuild>,
    name: &str,
    done: impl Fn(&ImageBuildStatus) -> bool,
) -> ImageBuildStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = api
            .get_status(name)
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {}",
            serde_json::to_string_pretty(&status).unwrap()
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not after {WAIT:?}");
        tokio::time::sleep(POLL).await;
    }
}

async fn build_records(harness: &Harness) -> Vec<ConfigMap> {
    let api: Api<ConfigMap> = Api::namespaced(harness.admin.clone(), &harness.namespace);
    api.list(&ListParams::default().labels(&job::managed_selector()))
        .await
        .unwrap()
        .items
}

// ---------------------------------------------------------------------------------------------
// Faults

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The API server is stopped while the builds push, and started again.
    ApiServerRestartDuringBuilds,
    /// The API server is stopped when the first build is about to record its result.
    ApiServerDownDuringStatusWrites,
    /// The operator is killed (SIGKILL) while the builds push, then started again.
    OperatorKilledDuringBuild,
    /// The operator is killed while it pushes a signature.
    OperatorKilledDuringSigning,
    /// The operator is killed while its status write cannot get through.
    OperatorKilledWhileWritingStatus,
    /// The registry fails every push for a while.
    RegistryFailsPushes,
    /// Two replicas with leader election; the leader is killed during the builds.
    LeaderKilled,
    /// The operator's connections to the API server (its watches among them) are dropped
    /// again and again during the builds.
    WatchStreamsDropped,
}

/// How many ImageBuilds each fault test builds.
const FAULT_IMAGEBUILDS: usize = 3;

async fn fault_test(backend: Backend, fault: Fault) {
    let test = format!("{fault:?}").to_lowercase();
    let test = &test[..test.len().min(24)];
    let options = Options {
        replicas: if matches!(fault, Fault::LeaderKilled) {
            2
        } else {
            1
        },
        ..Options::new(backend)
    };
    let harness = Harness::start(test, options).await;
    let (kill_tx, mut kill_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    match fault {
        Fault::ApiServerRestartDuringBuilds => {
            let plane = harness.plane.clone();
            harness.proxy.on_request(
                upload_started(),
                hook(move || {
                    let plane = plane.clone();
                    async move {
                        tokio::spawn(outage(plane));
                        true
                    }
                }),
            );
        }
        Fault::ApiServerDownDuringStatusWrites => {
            let plane = harness.plane.clone();
            harness.proxy.on_request(
                attestation_push(),
                hook(move || {
                    let plane = plane.clone();
                    async move {
                        let stop = plane.clone();
                        tokio::task::spawn_blocking(move || stop.stop_apiserver().unwrap())
                            .await
                            .unwrap();
                        tokio::spawn(async move {
                            tokio::time::sleep(OUTAGE).await;
                            tokio::task::spawn_blocking(move || plane.start_apiserver().unwrap())
                                .await
                                .unwrap();
                        });
                        true
                    }
                }),
            );
        }
        Fault::OperatorKilledDuringBuild | Fault::OperatorKilledDuringSigning => {
            let matcher = if matches!(fault, Fault::OperatorKilledDuringBuild) {
                upload_started()
            } else {
                signature_push()
            };
            let tx = kill_tx.clone();
            harness.proxy.on_request(
                matcher,
                hook(move || {
                    let tx = tx.clone();
                    async move {
                        // Killed before this request leaves the operator.
                        let _ = tx.send(());
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        false
                    }
                }),
            );
        }
        Fault::OperatorKilledWhileWritingStatus => {
            let tx = kill_tx.clone();
            let api_proxy = harness.api_proxy.clone();
            harness.proxy.on_request(
                attestation_push(),
                hook(move || {
                    let tx = tx.clone();
                    let api_proxy = api_proxy.clone();
                    async move {
                        // The status write that follows cannot get through; the operator is
                        // killed while it tries.
                        api_proxy.refuse(true);
                        api_proxy.drop_connections();
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            let _ = tx.send(());
                        });
                        true
                    }
                }),
            );
        }
        Fault::RegistryFailsPushes => {
            let proxy = Arc::downgrade(&harness.proxy);
            harness.proxy.on_request(
                upload_started(),
                hook(move || {
                    let proxy = proxy.clone();
                    async move {
                        if let Some(proxy) = proxy.upgrade() {
                            proxy.fail_pushes(true);
                        }
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            if let Some(proxy) = proxy.upgrade() {
                                proxy.fail_pushes(false);
                            }
                        });
                        false
                    }
                }),
            );
        }
        Fault::LeaderKilled => {
            let tx = kill_tx.clone();
            harness.proxy.on_request(
                upload_started(),
                hook(move || {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send(());
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        false
                    }
                }),
            );
        }
        Fault::WatchStreamsDropped => {
            let api_proxy = harness.api_proxy.clone();
            harness.proxy.on_request(
                upload_started(),
                hook(move || {
                    let api_proxy = api_proxy.clone();
                    async move {
                        tokio::spawn(async move {
                            for _ in 0..5 {
                                api_proxy.drop_connections();
                                tokio::time::sleep(Duration::from_secs(2)).await;
                            }
                        });
                        true
                    }
                }),
            );
        }
    }

    let names = harness.create(FAULT_IMAGEBUILDS).await;
    let statuses = {
        let wait = harness.wait_ready(&names);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                statuses = &mut wait => break statuses,
                Some(()) = kill_rx.recv() => restart_after_kill(&harness, fault).await,
            }
        }
    };
    harness.assert_built_once(&statuses, 1).await;
    if matches!(fault, Fault::RegistryFailsPushes) {
        let refused = harness
            .proxy
            .exchanges()
            .iter()
            .filter(|e: &&Exchange| e.status == 503)
            .count();
        assert!(refused > 0, "the registry refused pushes for a while");
    }
    harness.kill_operators();
    harness.finish().await;
}

/// Kills the operator (the leader, with several replicas) with SIGKILL; restarts it unless
/// another replica takes over.
async fn restart_after_kill(harness: &Harness, fault: Fault) {
    let target = if matches!(fault, Fault::LeaderKilled) {
        let leases: Api<Lease> = Api::namespaced(harness.admin.clone(), OPERATOR_NAMESPACE);
        let holder = leases
            .get(LEASE_NAME)
            .await
            .ok()
            .and_then(|l| l.spec?.holder_identity)
            .unwrap_or_default();
        holder
            .rsplit('-')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(0)
    } else {
        0
    };
    let operator = &harness.operators[target];
    if matches!(fault, Fault::LeaderKilled) {
        operator.kill();
        // The other replica takes over once the lease expires; the killed one stays down.
        return;
    }
    operator.kill();
    harness.api_proxy.refuse(false);
    operator.start().unwrap();
}

/// Stops the API server for [`OUTAGE`] and starts it again.
async fn outage(plane: ControlPlane) {
    let stop = plane.clone();
    tokio::task::spawn_blocking(move || stop.stop_apiserver().unwrap())
        .await
        .unwrap();
    tokio::time::sleep(OUTAGE).await;
    tokio::task::spawn_blocking(move || plane.start_apiserver().unwrap())
        .await
        .unwrap();
}

macro_rules! fault_tests {
    ($($name:ident: $backend:expr, $fault:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread")]
        #[ignore = "needs the kapi control plane; run through .ci/e2e (docs/e2e.md)"]
        async fn $name() {
            fault_test($backend, $fault).await;
        }
    )*};
}

fault_tests! {
    local_api_server_restart_during_builds: Backend::Local, Fault::ApiServerRestartDuringBuilds;
    pod_api_server_restart_during_builds: Backend::Pod, Fault::ApiServerRestartDuringBuilds;
    local_api_server_down_during_status_writes: Backend::Local, Fault::ApiServerDownDuringStatusWrites;
    pod_api_server_down_during_status_writes: Backend::Pod, Fault::ApiServerDownDuringStatusWrites;
    local_operator_killed_during_build: Backend::Local, Fault::OperatorKilledDuringBuild;
    pod_operator_killed_during_build: Backend::Pod, Fault::OperatorKilledDuringBuild;
    local_operator_killed_during_signing: Backend::Local, Fault::OperatorKilledDuringSigning;
    pod_operator_killed_during_signing: Backend::Pod, Fault::OperatorKilledDuringSigning;
    local_operator_killed_while_writing_status: Backend::Local, Fault::OperatorKilledWhileWritingStatus;
    pod_operator_killed_while_writing_status: Backend::Pod, Fault::OperatorKilledWhileWritingStatus;
    local_registry_fails_pushes: Backend::Local, Fault::RegistryFailsPushes;
    pod_registry_fails_pushes: Backend::Pod, Fault::RegistryFailsPushes;
    local_leader_killed: Backend::Local, Fault::LeaderKilled;
    pod_leader_killed: Backend::Pod, Fault::LeaderKilled;
    local_watch_streams_dropped: Backend::Local, Fault::WatchStreamsDropped;
    pod_watch_streams_dropped: Backend::Pod, Fault::WatchStreamsDropped;
}

/// `GET` on the console: the status code and the body; status 0 while nothing listens.
async fn console_get(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else {
        return (0, String::new());
    };
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Tabs through the page until the focused element matches `css` (checked in the page, since
/// a live update may replace the element while the keys go in).
async fn tab_to(browser: &Session, css: &str) -> Element {
    for _ in 0..40 {
        browser.send_keys_to_active(KEY_TAB).await.unwrap();
        let reached = browser
            .execute(
                "return document.activeElement.matches(arguments[0]);",
                vec![json!(css)],
            )
            .await
            .unwrap();
        if reached == json!(true) {
            return browser.active_element().await.unwrap();
        }
    }
    panic!("Tab never reached {css}");
}

/// Saves a screenshot as `<SECUREBUILD_SCREENSHOTS>/<name>.png` when that directory is set
/// (docs/console.md: how the documentation's pictures are made), checking it is a PNG either
/// way.
async fn screenshot(browser: &Session, name: &str) {
    let png = browser.screenshot_png().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
    if let Some(dir) = std::env::var_os(SCREENSHOTS_ENV) {
        let path = Path::new(&dir).join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("e2e: wrote {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the kapi control plane; run through .ci/e2e (docs/e2e.md)"]
async fn console_follows_builds_in_a_browser() {
    let harness = Harness::start("console", Options::new(Backend::Local)).await;
    let console = harness.operators[0].console_url();
    wait_until("the console answers", || async {
        tokio::net::TcpStream::connect(console.trim_start_matches("http://"))
            .await
            .is_ok()
    })
    .await;
    let driver = ChromeDriver::start().await.unwrap();
    let browser = driver.session().await.unwrap();
    browser.set_window_size(1400, 1000).await.unwrap();
    let namespace = harness.namespace.clone();
    let row = |name: &str| format!("tr[data-namespace=\"{namespace}\"][data-name=\"{name}\"]");

    // The list is open before anything exists; it fills and follows the builds without a reload.
    browser.goto(&format!("{console}/")).await.unwrap();
    browser
        .wait_until_text("#image-count", "0 of 0 images", WAIT)
        .await
        .unwrap();
    browser
        .wait_for("html[data-live=\"connected\"]", Duration::from_secs(10))
        .await
        .unwrap();
    browser
        .execute("window.securebuildMarker = 'same page';", vec![])
        .await
        .unwrap();
    let mut web = harness.image_build("web", &["hello"]);
    web.spec.rebuild.interval = Some("3s".into());
    let api_image = harness.image_build("api", &["hello"]);
    let broken = harness.image_build("broken", &["securebuild-e2e-no-such-package"]);
    for ib in [web, api_image, broken] {
        harness
            .api()
            .create(&PostParams::default(), &ib)
            .await
            .unwrap();
    }
    // An ImageBuild in a namespace the operator does not watch is never shown.
    let unwatched = format!("{namespace}-unwatched");
    cluster::ensure_namespace(&harness.admin, &unwatched, &[])
        .await
        .unwrap();
    Api::<ImageBuild>::namespaced(harness.admin.clone(), &unwatched)
        .create(
            &PostParams::default(),
            &harness.image_build("hidden", &["hello"]),
        )
        .await
        .unwrap();
    let names = vec!["web".to_string(), "api".to_string()];
    browser
        .wait_for(&format!("{}[data-state=\"stalled\"]", row("broken")), WAIT)
        .await
        .unwrap();
    for name in &names {
        browser
            .wait_for(&format!("{}[data-state=\"ready\"]", row(name)), WAIT)
            .await
            .unwrap();
    }
    let statuses = harness.wait_ready(&names).await;
    assert_eq!(
        browser
            .execute("return window.securebuildMarker;", vec![])
            .await
            .unwrap(),
        json!("same page"),
        "the list updated in place, without a reload"
    );
    browser
        .wait_until_text("#image-count", "3 of 3 images", Duration::from_secs(10))
        .await
        .unwrap();
    let (_, list) = console_get(&format!("{console}/")).await;
    assert!(list.contains("data-name=\"web\""), "{list}");
    assert!(!list.contains(&unwatched), "{list}");
    assert!(!list.contains("data-name=\"hidden\""), "{list}");
    let (status, _) = console_get(&format!("{console}/images/{unwatched}/hidden")).await;
    assert_eq!(status, 404);
    let _ = cluster::delete_namespace(&harness.admin, &unwatched).await;
    let web_status = &statuses["web"];
    let reference = web_status.latest_image.clone().unwrap();
    let copy = browser
        .find(&format!("{} code[data-copy]", row("web")))
        .await
        .unwrap();
    assert_eq!(
        copy.attribute("data-copy").await.unwrap(),
        Some(reference.clone())
    );
    // One click copies it.
    let button = browser
        .find(&format!("{} button.copy-button", row("web")))
        .await
        .unwrap();
    button.click().await.unwrap();
    browser
        .wait_for(
            &format!("{} button[data-copied=\"{reference}\"]", row("web")),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    browser
        .wait_until_text("#announce", "Copied", Duration::from_secs(5))
        .await
        .unwrap();
    let installed = &web_status.packages.as_ref().unwrap().installed;
    let versions: BTreeMap<&str, &str> = installed
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        versions,
        BTreeMap::from([
            ("example-base", "1.0-r0"),
            ("hello", "1.2.0-r0"),
            ("libhello", "1.2.0-r0")
        ]),
        "the recorded package list"
    );
    screenshot(&browser, "console-images").await;

    // A failed build's page says why, with the end of its log.
    browser
        .goto(&format!("{console}/images/{namespace}/broken"))
        .await
        .unwrap();
    let failure = browser
        .wait_until_text("#failure + p", "ResolutionFailed", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        failure
            .text()
            .await
            .unwrap()
            .contains("securebuild-e2e-no-such-package"),
        "the failure names the missing package"
    );

    // A package update: the repository publishes hello and libhello 1.2.1; `web` re-resolves
    // every 3 s, builds again, and its page shows what moved.
    let key = example_key().unwrap();
    example_repository_updated(&key)
        .write(harness.served.root())
        .unwrap();
    let api = harness.api();
    let updated = wait_for_status(&api, "web", |status| {
        status.history.len() == 2 && is_true(&status.conditions, ConditionType::Ready)
    })
    .await;
    assert_eq!(updated.history[0].reason, BuildReason::PackageUpdate);
    let changes = updated.history[0].package_changes.clone().unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    browser
        .goto(&format!("{console}/images/{namespace}/web"))
        .await
        .unwrap();
    browser
        .wait_until_text("#build-0 h3", "Package update", Duration::from_secs(10))
        .await
        .unwrap();
    for package in ["hello", "libhello"] {
        let change = browser
            .find(&format!("#changes-0 tr[data-package=\"{package}\"]"))
            .await
            .unwrap();
        assert_eq!(
            change.attribute("data-change").await.unwrap().as_deref(),
            Some("upgraded")
        );
        let text = change.text().await.unwrap();
        assert!(
            text.contains("1.2.0-r0") && text.contains("1.2.1-r0"),
            "{package}: {text}"
        );
        assert!(text.contains("aarch64, x86_64"), "{package}: {text}");
    }
    let commands = browser
        .find("#verify-cosign code")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        commands.contains(&format!(
            "cosign verify --key cosign.pub --insecure-ignore-tlog {}",
            updated.latest_image.clone().unwrap()
        )),
        "{commands}"
    );
    screenshot(&browser, "console-image").await;
    browser
        .execute(
            "document.getElementById('history').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&browser, "console-history").await;

    // The SBOM downloads are the attested document, in both formats, and the public key is
    // the operator's.
    let (status, spdx) = console_get(&format!(
        "{console}/images/{namespace}/web/sbom/amd64.spdx.json"
    ))
    .await;
    assert_eq!(status, 200, "{spdx}");
    let spdx: Value = serde_json::from_str(&spdx).unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    let names_in_sbom = spdx["packages"].to_string();
    assert!(names_in_sbom.contains("1.2.1-r0"), "{names_in_sbom}");
    let (status, cdx) = console_get(&format!(
        "{console}/images/{namespace}/web/sbom/arm64.cdx.json"
    ))
    .await;
    assert_eq!(status, 200, "{cdx}");
    let cdx: Value = serde_json::from_str(&cdx).unwrap();
    assert_eq!(cdx["bomFormat"], "CycloneDX");
    assert_eq!(cdx["specVersion"], "1.5");
    let (status, pem) = console_get(&format!("{console}/cosign.pub")).await;
    assert_eq!(status, 200, "{pem}");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");

    // The page's `securebuild verify` command, run as shown with that key, verifies the image,
    // its provenance and its SBOM.
    let command = browser
        .find("#verify-securebuild code")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("cosign.pub"), &pem).unwrap();
    let registry_config = work.path().join("config.json");
    std::fs::write(
        &registry_config,
        json!({"auths": {harness.proxy.host(): {"auth": harness.registry_auth}}}).to_string(),
    )
    .unwrap();
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[..2], ["securebuild", "verify"], "{command}");
    assert!(
        command.contains("--attestation slsaprovenance"),
        "{command}"
    );
    assert!(command.contains("--attestation spdx"), "{command}");
    let verified = std::process::Command::new(builder_binary())
        .args(&words[1..])
        .arg("--registry-config")
        .arg(&registry_config)
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{command}: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );

    // The package search: only `api` still has a hello older than 1.2.1.
    browser.goto(&format!("{console}/packages")).await.unwrap();
    let name_field = browser.find("#p-name").await.unwrap();
    name_field.send_keys("hello").await.unwrap();
    let range_field = browser.find("#p-range").await.unwrap();
    range_field.send_keys("<1.2.1").await.unwrap();
    range_field.send_keys(KEY_ENTER).await.unwrap();
    browser
        .wait_until_text("#result-count", "1 image installs", Duration::from_secs(10))
        .await
        .unwrap();
    let hits = browser.find_all("#results tbody tr").await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].attribute("data-image").await.unwrap(),
        Some(format!("{namespace}/api"))
    );
    screenshot(&browser, "console-packages").await;

    // Keyboard only: the skip link comes first and moves focus to the content; the filter
    // field submits with Enter; a row's link opens the image.
    browser.goto(&format!("{console}/")).await.unwrap();
    browser.send_keys_to_active(KEY_TAB).await.unwrap();
    let skip = browser.active_element().await.unwrap();
    assert_eq!(skip.text().await.unwrap(), "Skip to content");
    skip.send_keys(KEY_ENTER).await.unwrap();
    let focused = browser.active_element().await.unwrap();
    assert_eq!(
        focused.attribute("id").await.unwrap().as_deref(),
        Some("content")
    );
    let filter = tab_to(&browser, "#f-q").await;
    filter.send_keys("web").await.unwrap();
    filter.send_keys(KEY_ENTER).await.unwrap();
    browser
        .wait_until_text("#image-count", "1 of 3 images", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(browser.current_url().await.unwrap().contains("q=web"));
    tab_to(&browser, &format!("{} a", row("web"))).await;
    // `web` re-resolves every 3 s and its next re-resolution moves: the live update that
    // shows it keeps the keyboard focus where it was.
    let live_html = || async {
        browser
            .execute("return document.getElementById('live').innerHTML;", vec![])
            .await
            .unwrap()
    };
    let shown = live_html().await;
    wait_until("a live update of the list", || async {
        live_html().await != shown
    })
    .await;
    assert_eq!(
        browser
            .execute("return document.activeElement.id;", vec![])
            .await
            .unwrap(),
        json!(format!("image:{namespace}/web")),
        "the focus survives the update"
    );
    let link = browser.active_element().await.unwrap();
    link.send_keys(KEY_ENTER).await.unwrap();
    browser
        .wait_for("#verification", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .ends_with(&format!("/images/{namespace}/web"))
    );
    browser.close().await.unwrap();
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the kapi control plane; run through .ci/e2e (docs/e2e.md)"]
async fn every_replica_serves_the_console() {
    let options = Options {
        replicas: 2,
        ..Options::new(Backend::Local)
    };
    let harness = Harness::start("consoles", options).await;
    let names = harness.create(1).await;
    let statuses = harness.wait_ready(&names).await;
    let digest = statuses["app-0"].digest.clone().unwrap();
    // One replica leads and reads its controller's cache; the other waits for the lease and
    // reads a watch of its own. Behind a Service either may answer: both show the image.
    for operator in &harness.operators {
        let console = operator.console_url();
        wait_until("the replica's console shows the built image", || async {
            let (status, page) = console_get(&format!("{console}/")).await;
            status == 200
                && page.contains("data-name=\"app-0\" data-state=\"ready\"")
                && page.contains(&digest)
        })
        .await;
    }
    harness.finish().await;
}
