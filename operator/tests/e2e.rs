//! End-to-end tests against a real cluster (`KUBECONFIG`, or the in-cluster account) with the
//! operator already running against it; see `docs/e2e.md` for a kind or k3d setup. Every test
//! is `#[ignore]`d: run them with
//! `cargo test -p securebuild-operator --test e2e -- --ignored --test-threads=1`.
//!
//! Each test applies the CRD, works in a namespace of its own and deletes it at the end.
//! Settings (environment):
//!
//! - `SECUREBUILD_E2E_REGISTRY` (required): the registry as the builders reach it, e.g.
//!   `kind-registry:5000`; images go to `<registry>/securebuild-e2e/<name>`.
//! - `SECUREBUILD_E2E_REPOSITORY_URL`, `SECUREBUILD_E2E_KEYRING_URL`,
//!   `SECUREBUILD_E2E_PACKAGES` (comma-separated): the https APK repository, its key and what
//!   to install; Wolfi's `wolfi-base` by default.
//! - `SECUREBUILD_E2E_DOCKER_CONFIG`: a docker `config.json` with push credentials, stored as
//!   the ImageBuild's push Secret; anonymous pushes without it.
//! - `SECUREBUILD_E2E_BACKEND`: `pod` (the default: builder Jobs are checked) or `local`.
//! - `SECUREBUILD_E2E_SIGNED`: `true` when the operator has a signing key, so that the status
//!   must name a signature and attestations.
//! - `SECUREBUILD_E2E_TIMEOUT`: seconds to wait for a build, 900 by default.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use securebuild_crds::conditions::{ConditionType, find_condition, is_true};
use securebuild_crds::imagebuild::{
    BuildOutcome, ImageBuildSpec, ImageBuildStatus, SecretReference, Target,
};
use securebuild_crds::{ImageBuild, ImageConfiguration};
use securebuild_operator::job;

const FIELD_MANAGER: &str = "securebuild-e2e";
const REGISTRY_ENV: &str = "SECUREBUILD_E2E_REGISTRY";
const REPOSITORY_ENV: &str = "SECUREBUILD_E2E_REPOSITORY_URL";
const KEYRING_ENV: &str = "SECUREBUILD_E2E_KEYRING_URL";
const PACKAGES_ENV: &str = "SECUREBUILD_E2E_PACKAGES";
const DOCKER_CONFIG_ENV: &str = "SECUREBUILD_E2E_DOCKER_CONFIG";
const BACKEND_ENV: &str = "SECUREBUILD_E2E_BACKEND";
const SIGNED_ENV: &str = "SECUREBUILD_E2E_SIGNED";
const TIMEOUT_ENV: &str = "SECUREBUILD_E2E_TIMEOUT";
const DEFAULT_REPOSITORY: &str = "https://packages.wolfi.dev/os";
const DEFAULT_KEYRING: &str = "https://packages.wolfi.dev/os/wolfi-signing.rsa.pub";
const DEFAULT_PACKAGES: &str = "wolfi-base";
const DEFAULT_TIMEOUT_SECONDS: u64 = 900;
const PUSH_SECRET: &str = "regcred";
const POLL: Duration = Duration::from_secs(2);
const SHORT_WAIT: Duration = Duration::from_secs(120);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn build_timeout() -> Duration {
    Duration::from_secs(
        env(TIMEOUT_ENV)
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
    )
}

/// A namespace for one test, deleted (with everything in it) when dropped.
struct TestNamespace {
    client: Client,
    name: String,
}

impl TestNamespace {
    async fn create(client: &Client, prefix: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("{prefix}-{:x}", nanos % 0xffff_ffff);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(name.clone());
        namespace.labels_mut().insert(
            "pod-security.kubernetes.io/enforce".into(),
            "restricted".into(),
        );
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        Self {
            client: client.clone(),
            name,
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let client = self.client.clone();
        let name = self.name.clone();
        // Best effort: the cluster removes the rest in the background.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Runtime::new() else {
                return;
            };
            runtime.block_on(async move {
                let namespaces: Api<Namespace> = Api::all(client);
                let _ = namespaces.delete(&name, &DeleteParams::default()).await;
            });
        })
        .join();
    }
}

async fn client() -> Client {
    Client::try_default()
        .await
        .expect("a cluster from KUBECONFIG (see docs/e2e.md)")
}

/// Applies the CRD as the operator prints it and waits until it is established.
async fn apply_crd(client: &Client) {
    let yaml = securebuild_crds::crd_yaml().unwrap();
    let crd: CustomResourceDefinition = serde_norway::from_str(&yaml).unwrap();
    let name = crd.name_any();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + SHORT_WAIT;
    loop {
        let current = crds.get(&name).await.unwrap();
        let established = current
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the CRD {name} is not established"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn push_secret(client: &Client, namespace: &str) -> Option<SecretReference> {
    let path = env(DOCKER_CONFIG_ENV)?;
    let config = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut secret = Secret {
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            job::DOCKER_CONFIG_JSON_KEY.to_string(),
            ByteString(config),
        )])),
        ..Secret::default()
    };
    secret.metadata.name = Some(PUSH_SECRET.into());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    Some(SecretReference {
        name: PUSH_SECRET.into(),
    })
}

fn image_build(
    name: &str,
    packages: &[String],
    push_secret: Option<SecretReference>,
) -> ImageBuild {
    let registry = env(REGISTRY_ENV)
        .unwrap_or_else(|| panic!("set {REGISTRY_ENV} to a registry the builders can push to"));
    let repository = env(REPOSITORY_ENV).unwrap_or_else(|| DEFAULT_REPOSITORY.into());
    let keyring = env(KEYRING_ENV).unwrap_or_else(|| DEFAULT_KEYRING.into());
    let mut image = ImageConfiguration::from_yaml("contents: {}\n").unwrap();
    image.contents.repositories = vec![repository];
    image.contents.keyring = vec![keyring];
    image.contents.packages = packages.to_vec();
    let spec = ImageBuildSpec {
        image,
        target: Target {
            repository: format!("{registry}/securebuild-e2e/{name}"),
            tags: vec!["latest".into()],
            push_secret_ref: push_secret,
        },
        ..ImageBuildSpec::default()
    };
    ImageBuild::new(name, spec)
}

fn packages() -> Vec<String> {
    env(PACKAGES_ENV)
        .unwrap_or_else(|| DEFAULT_PACKAGES.into())
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Polls the ImageBuild until `done` says so, failing after `timeout` with the last status.
async fn wait_for(
    api: &Api<ImageBuild>,
    name: &str,
    timeout: Duration,
    done: impl Fn(&ImageBuildStatus) -> bool,
) -> ImageBuildStatus {
    let deadline = Instant::now() + timeout;
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
            "ImageBuild {name} did not get there in {timeout:?}; status: {}",
            serde_json::to_string_pretty(&status).unwrap_or_default()
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn jobs_of(client: &Client, namespace: &str, name: &str) -> Vec<Job> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    jobs.list(&ListParams::default().labels(&job::selector(name)))
        .await
        .unwrap()
        .items
}

#[tokio::test]
#[ignore = "needs a cluster, a registry and a running operator; see docs/e2e.md"]
async fn imagebuild_becomes_ready_and_its_jobs_go_with_it() {
    let client = client().await;
    apply_crd(&client).await;
    let namespace = TestNamespace::create(&client, "securebuild-e2e").await;
    let push_secret = push_secret(&client, &namespace.name).await;
    let api: Api<ImageBuild> = Api::namespaced(client.clone(), &namespace.name);
    let ib = image_build("hello", &packages(), push_secret);
    api.create(&PostParams::default(), &ib).await.unwrap();

    let status = wait_for(&api, "hello", build_timeout(), |status| {
        let stalled = find_condition(&status.conditions, ConditionType::Stalled)
            .filter(|c| c.status == "True");
        assert!(stalled.is_none(), "the build stalled: {stalled:?}");
        is_true(&status.conditions, ConditionType::Ready)
    })
    .await;

    let digest = status.digest.clone().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let latest = status.latest_image.clone().unwrap();
    assert!(
        latest.ends_with(&format!("/securebuild-e2e/hello@{digest}")),
        "{latest}"
    );
    assert!(!status.platforms.is_empty());
    assert!(status.packages.as_ref().unwrap().count > 0);
    assert!(
        status
            .packages
            .as_ref()
            .unwrap()
            .lock_digest
            .starts_with("sha256:")
    );
    assert_eq!(status.observed_generation, Some(1));
    let last = status.last_build.clone().unwrap();
    assert_eq!(last.outcome, BuildOutcome::Succeeded);
    assert_eq!(status.history.len(), 1);
    if env(SIGNED_ENV).as_deref() == Some("true") {
        let signature = status.signature.clone().expect("a signature");
        assert!(signature.reference.ends_with(".sig"), "{signature:?}");
        assert!(!status.attestations.is_empty());
    }

    let backend = env(BACKEND_ENV).unwrap_or_else(|| "pod".into());
    if backend == "pod" {
        let jobs = jobs_of(&client, &namespace.name, "hello").await;
        assert!(
            jobs.iter().any(|j| j.name_any() == last.job),
            "the Job {} of the build is kept",
            last.job
        );
        api.delete("hello", &DeleteParams::background())
            .await
            .unwrap();
        let deadline = Instant::now() + SHORT_WAIT;
        while !jobs_of(&client, &namespace.name, "hello").await.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the builder Jobs outlived their ImageBuild"
            );
            tokio::time::sleep(POLL).await;
        }
    } else {
        assert!(jobs_of(&client, &namespace.name, "hello").await.is_empty());
        api.delete("hello", &DeleteParams::background())
            .await
            .unwrap();
    }
}

#[tokio::test]
#[ignore = "needs a cluster, a registry and a running operator; see docs/e2e.md"]
async fn unresolvable_packages_stall_the_imagebuild() {
    let client = client().await;
    apply_crd(&client).await;
    let namespace = TestNamespace::create(&client, "securebuild-e2e").await;
    let api: Api<ImageBuild> = Api::namespaced(client.clone(), &namespace.name);
    let missing = vec!["securebuild-e2e-no-such-package".to_string()];
    let ib = image_build("missing", &missing, None);
    api.create(&PostParams::default(), &ib).await.unwrap();

    let status = wait_for(&api, "missing", build_timeout(), |status| {
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
}
