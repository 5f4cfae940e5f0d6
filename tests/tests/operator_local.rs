//! The operator's `local` backend end to end, with the Kubernetes API mocked and everything else
//! real: an ImageBuild is reconciled, built in-process from a signed APK repository served over
//! loopback HTTP, pushed to a `docker-registry` that requires credentials (read from the push
//! Secret), signed and attested with the key from the signing key Secret, and reported in the
//! status. The registry is then read back over its HTTP API and with the builder's verifier.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::runtime::controller::Action;
use securebuild_builder::attest::cosign::attestation_tag;
use securebuild_builder::attest::keys::SigningKey;
use securebuild_builder::attest::provenance::SLSA_PROVENANCE_V1;
use securebuild_builder::attest::sbom::SPDX_PREDICATE_TYPE;
use securebuild_builder::attest::verify::{AttestationType, verify_image};
use securebuild_crds::conditions::{ConditionType, is_true};
use securebuild_crds::imagebuild::{
    BuildOutcome, ImageBuildSpec, ImageBuildStatus, SecretReference, Target,
};
use securebuild_crds::{ImageBuild, ImageConfiguration};
use securebuild_operator::backend::{BuildBackend, BuildEvent, LocalBackend};
use securebuild_operator::config::{Backend, Config, SecretRef};
use securebuild_operator::controller::{
    Hooks, REQUEUE_FINISHED, REQUEUE_RUNNING, State, reconcile,
};
use securebuild_operator::hooks::LockResolver;
use securebuild_operator::resolver::PackageResolver;
use securebuild_operator::signer::{COSIGN_KEY, COSIGN_PASSWORD, Signer, builder_id};
use securebuild_registry::auth::DockerConfig;
use securebuild_registry::{Registry, RegistryOptions, parse_reference};
use securebuild_tests::example_repo::{EXAMPLE_KEY_NAME, example_key, example_repository};
use securebuild_tests::registry::TestRegistry;
use securebuild_tests::serve::ServedDir;
use serde_json::{Value, json};

const NAMESPACE: &str = "team";
const NAME: &str = "app";
const UID: &str = "5d1a2b3c-0000-4000-8000-00000000a11e";
const OPERATOR_NAMESPACE: &str = "securebuild-system";
const PUSH_SECRET: &str = "regcred";
const KEY_SECRET: &str = "signing-key";
const KEY_PASSWORD: &str = "correct horse battery staple";
const REGISTRY_USER: &str = "builder";
const REGISTRY_PASSWORD: &str = "s3cret-push";
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";

/// What the mocked API server saw.
#[derive(Default)]
struct Seen {
    statuses: Vec<ImageBuildStatus>,
    events: Vec<String>,
    secrets: Vec<String>,
    /// The build records (ConfigMaps) by name.
    records: BTreeMap<String, Value>,
    unexpected: Vec<String>,
}

/// A mocked API server that answers the calls the `local` backend and the signer make: Secret
/// reads, status patches (echoing the ImageBuild with the new status), event creation, and the
/// build records (ConfigMaps: create, list, annotation patches). Anything else is recorded as
/// unexpected and answered 404.
#[derive(Clone)]
struct MockApi {
    ib: ImageBuild,
    secrets: BTreeMap<String, Secret>,
    seen: Arc<Mutex<Seen>>,
}

impl MockApi {
    fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.answer(request).await) }
        });
        kube::Client::new(service, "default")
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let body = request.into_body().collect_bytes().await.unwrap();
        let status_path = format!(
            "/apis/securebuild.dev/v1alpha1/namespaces/{NAMESPACE}/imagebuilds/{NAME}/status"
        );
        let events_path = format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events");
        let mut seen = self.seen.lock().unwrap();
        if method == Method::GET
            && let Some(secret) = self.secrets.get(&path)
        {
            seen.secrets.push(path.clone());
            return json_response(StatusCode::OK, &serde_json::to_value(secret).unwrap());
        }
        if method == Method::PATCH && path == status_path {
            let patch: Value = serde_json::from_slice(&body).unwrap();
            let status: ImageBuildStatus = serde_json::from_value(patch["status"].clone()).unwrap();
            let mut updated = self.ib.clone();
            updated.status = Some(status.clone());
            seen.statuses.push(status);
            return json_response(StatusCode::OK, &serde_json::to_value(&updated).unwrap());
        }
        let records_path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
        if method == Method::POST && path == records_path {
            let record: Value = serde_json::from_slice(&body).unwrap();
            let name = record["metadata"]["name"].as_str().unwrap().to_string();
            seen.records.insert(name, record.clone());
            return json_response(StatusCode::CREATED, &record);
        }
        if method == Method::GET && path == records_path {
            let items: Vec<Value> = seen.records.values().cloned().collect();
            return json_response(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": items}),
            );
        }
        if method == Method::PATCH
            && let Some(name) = path.strip_prefix(&format!("{records_path}/"))
            && let Some(record) = seen.records.get_mut(name)
        {
            let patch: Value = serde_json::from_slice(&body).unwrap();
            let annotations = record["metadata"]
                .as_object_mut()
                .unwrap()
                .entry("annotations")
                .or_insert_with(|| json!({}));
            for (key, value) in patch["metadata"]["annotations"].as_object().unwrap() {
                annotations[key] = value.clone();
            }
            let record = record.clone();
            return json_response(StatusCode::OK, &record);
        }
        if method == Method::POST && path == events_path {
            let event: Value = serde_json::from_slice(&body).unwrap();
            seen.events
                .push(event["reason"].as_str().unwrap_or_default().to_string());
            return json_response(StatusCode::CREATED, &event);
        }
        seen.unexpected.push(format!("{method} {path}"));
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound"}),
        )
    }

    fn last_status(&self) -> ImageBuildStatus {
        self.seen.lock().unwrap().statuses.last().cloned().unwrap()
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn secret(namespace: &str, name: &str, kind: &str, data: &[(&str, &[u8])]) -> Secret {
    let mut secret = Secret {
        type_: Some(kind.to_string()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.to_string());
    secret.metadata.namespace = Some(namespace.to_string());
    secret.metadata.resource_version = Some("1".to_string());
    secret
}

fn image_build(repository_url: &str, key_url: &str, target: &str) -> ImageBuild {
    let image = ImageConfiguration::from_yaml(&format!(
        "contents:\n  repositories: [{repository_url}]\n  keyring: [{key_url}]\n  packages: [hello]\narchs: [x86_64, aarch64]\nentrypoint:\n  command: /usr/bin/hello\n"
    ))
    .unwrap();
    let spec = ImageBuildSpec {
        image,
        target: Target {
            repository: target.to_string(),
            tags: vec!["latest".into(), "{{ version \"hello\" }}".into()],
            push_secret_ref: Some(SecretReference {
                name: PUSH_SECRET.into(),
            }),
        },
        ..ImageBuildSpec::default()
    };
    let mut ib = ImageBuild::new(NAME, spec);
    ib.metadata.namespace = Some(NAMESPACE.into());
    ib.metadata.uid = Some(UID.into());
    ib.metadata.generation = Some(1);
    ib
}

/// One HTTP request to the registry; returns the status code and the headers (lower-cased).
fn registry_request(
    registry: &TestRegistry,
    method: &str,
    path: &str,
) -> (u16, BTreeMap<String, String>) {
    let (user, password) = registry.credentials().unwrap();
    let auth = BASE64.encode(format!("{user}:{password}"));
    let mut stream = TcpStream::connect(registry.host()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nAccept: {MANIFEST_ACCEPT}\r\nConnection: close\r\n\r\n",
        registry.host()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn registry_client(docker_config: &Path) -> Registry {
    Registry::new(RegistryOptions {
        docker_config: DockerConfig::from_file(docker_config).unwrap(),
        retries: 1,
        ..RegistryOptions::default()
    })
    .unwrap()
}

/// The in-toto statement inside a DSSE envelope blob.
fn statement_of(envelope: &[u8]) -> Value {
    let envelope: Value = serde_json::from_slice(envelope).unwrap();
    let payload = BASE64
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// The statements attached under `repository:sha256-<hex>.att`, decoded from their envelopes.
async fn attached_statements(registry: &Registry, repository: &str, digest: &str) -> Vec<Value> {
    let tag = attestation_tag(digest).unwrap();
    let reference = parse_reference(&format!("{repository}:{tag}")).unwrap();
    let manifest = registry.fetch_manifest(&reference).await.unwrap();
    let manifest: Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let mut statements = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let blob = registry
            .fetch_blob(&reference, layer["digest"].as_str().unwrap())
            .await
            .unwrap();
        statements.push(statement_of(&blob));
    }
    statements
}

#[tokio::test]
async fn local_backend_builds_pushes_signs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let key = example_key().unwrap();
    example_repository(&key).write(&repo_dir).unwrap();
    key.write_public(&repo_dir).unwrap();
    let served = ServedDir::start(repo_dir.clone()).await.unwrap();

    let registry = TestRegistry::start_with_auth(REGISTRY_USER, REGISTRY_PASSWORD).unwrap();
    let docker_config = registry.docker_config_json(dir.path()).unwrap();
    let docker_config_bytes = std::fs::read(&docker_config).unwrap();
    let repository = format!("{}/team/app", registry.host());

    let signing_key = SigningKey::generate().unwrap();
    let encrypted = signing_key
        .to_encrypted_pem(KEY_PASSWORD.as_bytes())
        .unwrap();

    let ib = image_build(
        &served.base_url(),
        &served.url(&format!("/{EXAMPLE_KEY_NAME}")),
        &repository,
    );
    let api = MockApi {
        ib: ib.clone(),
        secrets: BTreeMap::from([
            (
                format!("/api/v1/namespaces/{NAMESPACE}/secrets/{PUSH_SECRET}"),
                secret(
                    NAMESPACE,
                    PUSH_SECRET,
                    "kubernetes.io/dockerconfigjson",
                    &[(".dockerconfigjson", &docker_config_bytes)],
                ),
            ),
            (
                format!("/api/v1/namespaces/{OPERATOR_NAMESPACE}/secrets/{KEY_SECRET}"),
                secret(
                    OPERATOR_NAMESPACE,
                    KEY_SECRET,
                    "Opaque",
                    &[
                        (COSIGN_KEY, encrypted.as_bytes()),
                        (COSIGN_PASSWORD, KEY_PASSWORD.as_bytes()),
                    ],
                ),
            ),
        ]),
        seen: Arc::default(),
    };
    let client = api.client();
    let config = Arc::new(Config {
        backend: Backend::Local,
        namespace: OPERATOR_NAMESPACE.into(),
        signing_key: Some(SecretRef {
            name: KEY_SECRET.into(),
            namespace: OPERATOR_NAMESPACE.into(),
        }),
        cache_dir: Some(dir.path().join("cache")),
        work_dir: Some(dir.path().join("work")),
        max_concurrent_builds: 2,
        ..Config::default()
    });
    let backend = Arc::new(LocalBackend::new(client.clone(), config.clone()));
    let mut notices = backend.build_notices().unwrap();
    let resolver = Arc::new(PackageResolver::new(config.clone()));
    let hooks = Hooks {
        post_build: Arc::new(Signer::new(
            client.clone(),
            config.clone(),
            config.signing_key.clone().unwrap(),
        )),
        resolver: resolver.clone(),
    };
    let ctx = State::default().to_context_with(client, config.clone(), hooks, backend.clone());

    // A new ImageBuild starts a local build.
    let action = reconcile(Arc::new(ib.clone()), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(REQUEUE_RUNNING));
    let started = api.last_status();
    let build_name = started.last_build.as_ref().unwrap().job.clone();
    assert!(build_name.starts_with("app-"), "{build_name}");
    assert!(is_true(&started.conditions, ConditionType::Reconciling));

    // The build finishes in the background and says so.
    let started_notice = tokio::time::timeout(BUILD_TIMEOUT, notices.recv())
        .await
        .expect("the local build starts")
        .unwrap();
    assert_eq!(
        (started_notice.build.as_str(), started_notice.event),
        (build_name.as_str(), BuildEvent::Started)
    );
    let notice = tokio::time::timeout(BUILD_TIMEOUT, notices.recv())
        .await
        .expect("the local build finishes")
        .unwrap();
    assert_eq!(notice.event, BuildEvent::Finished);
    assert_eq!(
        (notice.namespace.as_str(), notice.image_build.as_str()),
        (NAMESPACE, NAME)
    );
    assert_eq!(notice.build, build_name);

    // The next reconcile reads the result and signs and attests in a task of its own, which
    // asks for another reconcile when it is done; that one records the outcome.
    let mut running = ib.clone();
    running.status = Some(started);
    let mut signed = ctx.post_build.finished();
    let action = reconcile(Arc::new(running.clone()), ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(REQUEUE_RUNNING));
    assert_eq!(
        api.last_status(),
        running.status.clone().unwrap(),
        "nothing recorded yet"
    );
    let key = tokio::time::timeout(BUILD_TIMEOUT, signed.recv())
        .await
        .expect("signing ends")
        .unwrap();
    assert_eq!(key, format!("{NAMESPACE}/{NAME}"));
    let action = reconcile(Arc::new(running), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(REQUEUE_FINISHED));
    let status = api.last_status();
    let failure = status.last_build.as_ref().and_then(|b| b.failure.clone());
    assert!(
        is_true(&status.conditions, ConditionType::Ready),
        "not ready: {failure:?}\nregistry log:\n{}",
        registry.log()
    );
    let last = status.last_build.as_ref().unwrap();
    assert_eq!(last.outcome, BuildOutcome::Succeeded);
    assert_eq!(last.job, build_name);
    let digest = status.digest.clone().unwrap();
    assert_eq!(
        status.latest_image.as_deref(),
        Some(format!("{repository}@{digest}").as_str())
    );
    assert_eq!(status.tags, ["latest", "1.2.0"]);
    let platforms: Vec<&str> = status
        .platforms
        .iter()
        .map(|p| p.architecture.as_str())
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"]);
    let packages = status.packages.clone().unwrap();
    assert_eq!(packages.count, 3);
    // The list the signer resolved again from the signed indexes, on both architectures.
    let installed: Vec<(&str, &str, Vec<&str>)> = packages
        .installed
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.version.as_str(),
                p.architectures.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        installed,
        [
            ("example-base", "1.0-r0", vec!["aarch64", "x86_64"]),
            ("hello", "1.2.0-r0", vec!["aarch64", "x86_64"]),
            ("libhello", "1.2.0-r0", vec!["aarch64", "x86_64"]),
        ]
    );
    let hex = digest.strip_prefix("sha256:").unwrap();
    let signature = status.signature.clone().unwrap();
    assert_eq!(
        signature.reference,
        format!("{repository}:sha256-{hex}.sig")
    );
    let predicate_types: Vec<&str> = status
        .attestations
        .iter()
        .map(|a| a.predicate_type.as_str())
        .collect();
    assert_eq!(
        predicate_types,
        [
            SLSA_PROVENANCE_V1,
            SPDX_PREDICATE_TYPE,
            SPDX_PREDICATE_TYPE,
            SPDX_PREDICATE_TYPE
        ]
    );
    assert_eq!(
        status.sbom.as_ref().unwrap().reference,
        format!("{repository}:sha256-{hex}.att")
    );
    {
        let seen = api.seen.lock().unwrap();
        assert_eq!(
            seen.events,
            ["BuildStarted", "BuildSucceeded", "ImageSigned"]
        );
        assert!(seen.unexpected.is_empty(), "{:?}", seen.unexpected);
        // The build read the push Secret; signing read the key and the push Secret again.
        assert_eq!(seen.secrets.len(), 3, "{:?}", seen.secrets);
    }

    // The registry has the index under its digest and its tags, and the signature.
    let manifest_path = |reference: &str| format!("/v2/team/app/manifests/{reference}");
    for reference in [digest.as_str(), "latest", "1.2.0"] {
        let (code, headers) = registry_request(&registry, "HEAD", &manifest_path(reference));
        assert_eq!(code, 200, "{reference}");
        assert_eq!(
            headers.get("docker-content-digest"),
            Some(&digest),
            "{reference}"
        );
    }
    let (code, headers) = registry_request(
        &registry,
        "HEAD",
        &manifest_path(&format!("sha256-{hex}.sig")),
    );
    assert_eq!(code, 200);
    assert_eq!(
        headers.get("docker-content-digest"),
        Some(&signature.digest)
    );
    let (code, _) = registry_request(
        &registry,
        "HEAD",
        &manifest_path(&format!("sha256-{hex}.att")),
    );
    assert_eq!(code, 200);
    let (code, _) = registry_request(&registry, "GET", "/v2/team/app/tags/list");
    assert_eq!(code, 200);

    // The signature and both kinds of attestation verify with the public key.
    let reader = registry_client(&docker_config);
    let report = verify_image(
        &reader,
        &repository,
        &digest,
        &signing_key.verifying_key(),
        &[AttestationType::SlsaProvenance, AttestationType::Spdx],
    )
    .await
    .unwrap();
    assert_eq!(report.signatures.len(), 1);
    assert!(report.rejected_signatures.is_empty());

    // Each status attestation names its own DSSE envelope: a layer of the manifest under its
    // tag, whose statement has the recorded predicate type.
    for attestation in &status.attestations {
        let reference = parse_reference(&attestation.reference).unwrap();
        let manifest = reader.fetch_manifest(&reference).await.unwrap();
        let manifest: Value = serde_json::from_slice(&manifest.bytes).unwrap();
        let layers: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|layer| layer["digest"].as_str())
            .collect();
        assert!(
            layers.contains(&attestation.digest.as_str()),
            "{} is not a layer of {}: {layers:?}",
            attestation.digest,
            attestation.reference
        );
        let blob = reader
            .fetch_blob(&reference, &attestation.digest)
            .await
            .unwrap();
        let statement = statement_of(&blob);
        assert_eq!(
            statement["predicateType"],
            attestation.predicate_type.as_str()
        );
    }

    // The provenance names the operator and every index, key and package it resolved.
    let statements = attached_statements(&reader, &repository, &digest).await;
    let provenance = statements
        .iter()
        .find(|s| s["predicateType"] == SLSA_PROVENANCE_V1)
        .unwrap();
    let predicate = &provenance["predicate"];
    assert_eq!(
        predicate["runDetails"]["builder"]["id"],
        builder_id(&config).as_str()
    );
    assert_eq!(
        builder_id(&config),
        "https://securebuild.dev/operator@securebuild-system/securebuild-operator"
    );
    assert_eq!(
        predicate["buildDefinition"]["externalParameters"]["target"]["repository"],
        repository.as_str()
    );
    assert_eq!(
        predicate["buildDefinition"]["externalParameters"]["image"]["contents"]["packages"],
        json!(["hello"])
    );
    let dependencies = predicate["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = dependencies
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    let apk_count = names.iter().filter(|n| **n == "APKINDEX.tar.gz").count();
    assert_eq!(apk_count, 2, "one index per architecture: {names:?}");
    assert!(names.contains(&EXAMPLE_KEY_NAME), "{names:?}");
    for package in ["example-base", "libhello", "hello"] {
        assert_eq!(
            names.iter().filter(|n| **n == package).count(),
            2,
            "{package} for both architectures: {names:?}"
        );
    }
    // Packages are attributed to the distribution the image's os-release names.
    assert!(
        dependencies.iter().any(|d| d["uri"]
            == "pkg:apk/securebuild-example/hello@1.2.0-r0?arch=x86_64&distro=securebuild-example-1.0"),
        "{dependencies:?}"
    );
    assert_eq!(
        predicate["buildDefinition"]["internalParameters"]["imageBuild"]["uid"],
        UID
    );
    let hello_apk = std::fs::read(repo_dir.join("x86_64/hello-1.2.0-r0.apk")).unwrap();
    let hello_sha256 = sha2_hex(&hello_apk);
    assert!(
        dependencies
            .iter()
            .any(|d| d["digest"]["sha256"] == hello_sha256.as_str()),
        "the package digest is the .apk file's"
    );

    // Re-resolution finds the lock the image was built from, revalidating the cached index.
    let mut built = ib.clone();
    built.status = Some(status.clone());
    served.clear_requests();
    let lock = resolver.resolve(&built).await.unwrap();
    assert_eq!(lock, packages.lock_digest);
    let index_requests = served.requests_for("/x86_64/APKINDEX.tar.gz");
    assert!(!index_requests.is_empty());
    assert!(
        index_requests
            .iter()
            .all(|r| r.header("if-none-match").is_some()),
        "cached indexes are revalidated by ETag"
    );

    // An up-to-date ImageBuild needs no API call.
    let before = api.seen.lock().unwrap().statuses.len();
    let action = reconcile(Arc::new(built), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let seen = api.seen.lock().unwrap();
    assert_eq!(seen.statuses.len(), before);
    assert!(seen.unexpected.is_empty(), "{:?}", seen.unexpected);
    assert_eq!(backend.len(), 1);
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
