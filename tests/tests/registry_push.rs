//! Pushing OCI layouts to a real `docker-registry` and reading them back, checked with skopeo
//! as an independent client: anonymous, htpasswd and token-auth registries (a real token
//! server issuing bearer tokens for basic credentials), idempotent re-pushes, tags, wrong
//! credentials and layouts that must not be pushed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use securebuild_registry::auth::{CredentialSource, DockerConfig};
use securebuild_registry::{
    OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, Reference, Registry, RegistryError,
    RegistryOptions, parse_reference, sha256_digest,
};
use securebuild_tests::registry::TestRegistry;
use securebuild_tests::token_server::{SERVICE, TokenServer, TokenUser};
use serde_json::{Value, json};

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Big enough that the layer is streamed in many reads.
const LAYER_SIZE: usize = 3 * 1024 * 1024 + 17;

/// A hand-made two-platform layout: `index.json` → image index → two manifests, each with its
/// own config and one shared layer.
struct Layout {
    dir: tempfile::TempDir,
    index_digest: String,
    manifest_digests: Vec<String>,
    config_digests: Vec<String>,
    layer_digest: String,
    blob_bytes: u64,
}

fn write_blob(dir: &Path, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let path = blob_path(dir, &digest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    digest
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs")
        .join("sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

fn make_layout(seed: u8) -> Layout {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let layer: Vec<u8> = (0..LAYER_SIZE)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    let layer_digest = write_blob(dir.path(), &layer);
    let mut blob_bytes = layer.len() as u64;
    let mut manifests = Vec::new();
    let mut manifest_digests = Vec::new();
    let mut config_digests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{:064x}", seed)] },
        }))
        .unwrap();
        let config_digest = write_blob(dir.path(), &config);
        blob_bytes += config.len() as u64;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": descriptor(CONFIG_MEDIA_TYPE, &config_digest, config.len()),
            "layers": [descriptor(LAYER_MEDIA_TYPE, &layer_digest, layer.len())],
        }))
        .unwrap();
        let manifest_digest = write_blob(dir.path(), &manifest);
        let mut entry = descriptor(OCI_MANIFEST_MEDIA_TYPE, &manifest_digest, manifest.len());
        entry["platform"] = json!({ "architecture": arch, "os": "linux" });
        manifests.push(entry);
        manifest_digests.push(manifest_digest);
        config_digests.push(config_digest);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX_MEDIA_TYPE,
        "manifests": manifests,
    }))
    .unwrap();
    let index_digest = write_blob(dir.path(), &index);
    let top = json!({
        "schemaVersion": 2,
        "manifests": [descriptor(OCI_INDEX_MEDIA_TYPE, &index_digest, index.len())],
    });
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&top).unwrap(),
    )
    .unwrap();
    Layout {
        dir,
        index_digest,
        manifest_digests,
        config_digests,
        layer_digest,
        blob_bytes,
    }
}

fn registry_with(config: DockerConfig) -> Registry {
    Registry::new(RegistryOptions {
        docker_config: config,
        retries: 1,
        ..RegistryOptions::default()
    })
    .unwrap()
}

fn skopeo() -> Command {
    securebuild_tests::skopeo::command()
}

/// Runs skopeo and returns its stdout, failing the test with its stderr.
fn run_skopeo(args: &[&str]) -> Vec<u8> {
    securebuild_tests::skopeo::stdout_of(skopeo().args(args).output(), args)
}

/// The raw manifest skopeo reads for `reference`, with optional `user:password`.
fn skopeo_raw(reference: &str, creds: Option<&str>) -> Vec<u8> {
    let image = format!("docker://{reference}");
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(creds) = creds {
        args.extend(["--creds", creds]);
    }
    args.push(&image);
    run_skopeo(&args)
}

#[tokio::test]
async fn pushes_to_an_anonymous_registry_and_pushing_again_uploads_nothing() {
    let server = TestRegistry::start().unwrap();
    let layout = make_layout(1);
    let target = parse_reference(&format!("{}/demo/app:v1", server.host())).unwrap();
    let registry = registry_with(DockerConfig::empty());
    let tags = ["stable".to_owned(), "v1".to_owned()];

    let report = registry
        .push_layout(layout.dir.path(), &target, &tags)
        .await
        .unwrap();
    assert_eq!(report.digest, layout.index_digest);
    assert_eq!(report.media_type, OCI_INDEX_MEDIA_TYPE);
    assert_eq!(
        report.reference,
        format!("{}/demo/app@{}", server.host(), layout.index_digest)
    );
    assert_eq!((report.blobs_uploaded, report.blobs_skipped), (3, 0));
    assert_eq!(report.bytes_uploaded, layout.blob_bytes);
    assert_eq!((report.manifests_pushed, report.manifests_skipped), (3, 0));
    assert_eq!(report.tags, ["v1", "stable"]);
    assert_eq!(report.tags_updated, 2);

    // An independent client sees the index under both tags and by digest.
    for reference in ["v1", "stable"]
        .map(|tag| format!("{}/demo/app:{tag}", server.host()))
        .into_iter()
        .chain([format!(
            "{}/demo/app@{}",
            server.host(),
            layout.index_digest
        )])
    {
        let raw = skopeo_raw(&reference, None);
        assert_eq!(sha256_digest(&raw), layout.index_digest, "{reference}");
    }
    let copy = tempfile::tempdir().unwrap();
    let destination = format!("oci:{}:copy", copy.path().display());
    run_skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{}/demo/app:v1", server.host()),
        &destination,
    ]);
    let copied: Value =
        serde_json::from_slice(&std::fs::read(copy.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(copied["manifests"][0]["digest"], layout.index_digest);
    let copied_layer = std::fs::read(blob_path(copy.path(), &layout.layer_digest)).unwrap();
    assert_eq!(sha256_digest(&copied_layer), layout.layer_digest);

    let again = registry
        .push_layout(layout.dir.path(), &target, &tags)
        .await
        .unwrap();
    assert_eq!((again.blobs_uploaded, again.bytes_uploaded), (0, 0));
    assert_eq!(
        (again.blobs_skipped, again.bytes_skipped),
        (3, layout.blob_bytes)
    );
    assert_eq!((again.manifests_pushed, again.manifests_skipped), (0, 3));
    assert_eq!(again.tags_updated, 0);
    assert_eq!(again.digest, report.digest);

    // A fresh client (no cached sessions) also uploads nothing.
    let fresh = registry_with(DockerConfig::empty())
        .push_layout(layout.dir.path(), &target, &[])
        .await
        .unwrap();
    assert_eq!((fresh.blobs_uploaded, fresh.manifests_pushed), (0, 0));
    assert_eq!(fresh.tags, ["v1"]);
}

#[tokio::test]
async fn reads_back_what_was_pushed() {
    let server = TestRegistry::start().unwrap();
    let layout = make_layout(2);
    let target = parse_reference(&format!("{}/read/back:latest", server.host())).unwrap();
    let registry = registry_with(DockerConfig::empty());
    registry
        .push_layout(layout.dir.path(), &target, &[])
        .await
        .unwrap();

    assert_eq!(
        registry.tag_digest(&target, "latest").await.unwrap(),
        Some(layout.index_digest.clone())
    );
    assert_eq!(registry.tag_digest(&target, "absent").await.unwrap(), None);
    let elsewhere = parse_reference(&format!("{}/no/such-repo", server.host())).unwrap();
    assert_eq!(
        registry.tag_digest(&elsewhere, "latest").await.unwrap(),
        None
    );

    let index = registry.fetch_manifest(&target).await.unwrap();
    assert_eq!(index.digest, layout.index_digest);
    assert_eq!(index.media_type, OCI_INDEX_MEDIA_TYPE);
    assert_eq!(
        index.bytes,
        std::fs::read(blob_path(layout.dir.path(), &layout.index_digest)).unwrap()
    );
    let by_digest = Reference::with_digest(
        target.registry().to_owned(),
        target.repository().to_owned(),
        layout.manifest_digests[1].clone(),
    );
    let manifest = registry.fetch_manifest(&by_digest).await.unwrap();
    assert_eq!(manifest.digest, layout.manifest_digests[1]);
    assert_eq!(manifest.media_type, OCI_MANIFEST_MEDIA_TYPE);
    assert!(registry.manifest_exists(&by_digest).await.unwrap());

    let config = registry
        .fetch_blob(&target, &layout.config_digests[0])
        .await
        .unwrap();
    assert_eq!(sha256_digest(&config), layout.config_digests[0]);
    assert!(
        registry
            .blob_exists(&target, &layout.layer_digest)
            .await
            .unwrap()
    );

    let unknown = sha256_digest(b"never pushed");
    assert!(!registry.blob_exists(&target, &unknown).await.unwrap());
    let missing = Reference::with_digest(
        target.registry().to_owned(),
        target.repository().to_owned(),
        unknown.clone(),
    );
    assert!(!registry.manifest_exists(&missing).await.unwrap());
    match registry.fetch_manifest(&missing).await.unwrap_err() {
        RegistryError::NotFound { context } => assert_eq!(context.target, unknown),
        other => panic!("expected not found, got {other}"),
    }
    match registry.fetch_blob(&target, &unknown).await.unwrap_err() {
        RegistryError::Status { status, detail, .. } => {
            assert_eq!(status, 404);
            assert!(detail.has_code("BLOB_UNKNOWN"), "{detail}");
        }
        other => panic!("expected status 404, got {other}"),
    }
}

#[tokio::test]
async fn pushes_single_blobs_and_manifests_for_signatures() {
    let server = TestRegistry::start().unwrap();
    let repository = parse_reference(&format!("{}/signed/app", server.host())).unwrap();
    let registry = registry_with(DockerConfig::empty());

    let payload: &'static [u8] = br#"{"critical":{}}"#;
    let config: &'static [u8] = b"{}";
    let (payload_digest, uploaded) = registry
        .push_blob_bytes(&repository, payload)
        .await
        .unwrap();
    assert!(uploaded);
    assert_eq!(payload_digest, sha256_digest(payload));
    let (_, uploaded_again) = registry
        .push_blob_bytes(&repository, payload)
        .await
        .unwrap();
    assert!(!uploaded_again);
    let (config_digest, _) = registry.push_blob_bytes(&repository, config).await.unwrap();

    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, &config_digest, config.len()),
        "layers": [descriptor("application/vnd.dev.cosign.simplesigning.v1+json", &payload_digest, payload.len())],
    }))
    .unwrap();
    let tag = format!("{}.sig", sha256_digest(b"subject").replace(':', "-"));
    let digest = registry
        .push_manifest_bytes(&repository, &tag, manifest.clone(), OCI_MANIFEST_MEDIA_TYPE)
        .await
        .unwrap();
    assert_eq!(digest, sha256_digest(&manifest));
    assert_eq!(
        registry.tag_digest(&repository, &tag).await.unwrap(),
        Some(digest.clone())
    );
    let by_tag = Reference::with_tag(
        repository.registry().to_owned(),
        repository.repository().to_owned(),
        tag.clone(),
    );
    let fetched = registry.fetch_manifest(&by_tag).await.unwrap();
    assert_eq!(fetched.bytes, manifest);
    assert_eq!(fetched.digest, digest);
    assert_eq!(fetched.media_type, OCI_MANIFEST_MEDIA_TYPE);
    assert_eq!(
        sha256_digest(&skopeo_raw(
            &format!("{}/signed/app:{tag}", server.host()),
            None
        )),
        digest
    );

    // By digest works; a digest that is not the bytes' is refused before anything is sent.
    registry
        .push_manifest_bytes(
            &repository,
            &digest,
            manifest.clone(),
            OCI_MANIFEST_MEDIA_TYPE,
        )
        .await
        .unwrap();
    let wrong = sha256_digest(b"something else");
    let error = registry
        .push_manifest_bytes(
            &repository,
            &wrong,
            manifest.clone(),
            OCI_MANIFEST_MEDIA_TYPE,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(
        !registry
            .manifest_exists(&Reference::with_digest(
                repository.registry().to_owned(),
                repository.repository().to_owned(),
                wrong,
            ))
            .await
            .unwrap()
    );

    // The registry refuses a manifest whose blobs it lacks, and the envelope says why.
    let dangling = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, &sha256_digest(b"absent"), 6),
        "layers": [],
    }))
    .unwrap();
    match registry
        .push_manifest_bytes(&repository, "dangling", dangling, OCI_MANIFEST_MEDIA_TYPE)
        .await
        .unwrap_err()
    {
        RegistryError::Status {
            status,
            detail,
            context,
        } => {
            assert_eq!(status, 400);
            assert!(detail.has_code("MANIFEST_BLOB_UNKNOWN"), "{detail}");
            assert_eq!(context.target, "dangling");
        }
        other => panic!("expected status 400, got {other}"),
    }
}

#[tokio::test]
async fn pushes_with_credentials_from_a_docker_config() {
    let server = TestRegistry::start_with_auth("alice", "correct horse").unwrap();
    let layout = make_layout(3);
    let target = parse_reference(&format!("{}/private/app:v1", server.host())).unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let config_path = server.docker_config_json(config_dir.path()).unwrap();
    let registry = registry_with(DockerConfig::from_file(&config_path).unwrap());

    let report = registry
        .push_layout(layout.dir.path(), &target, &[])
        .await
        .unwrap();
    assert_eq!(report.blobs_uploaded, 3);
    assert_eq!(
        registry.tag_digest(&target, "v1").await.unwrap(),
        Some(layout.index_digest.clone())
    );
    let raw = skopeo_raw(
        &format!("{}/private/app:v1", server.host()),
        Some("alice:correct horse"),
    );
    assert_eq!(sha256_digest(&raw), layout.index_digest);
    let again = registry
        .push_layout(layout.dir.path(), &target, &[])
        .await
        .unwrap();
    assert_eq!((again.blobs_uploaded, again.manifests_pushed), (0, 0));
}

#[tokio::test]
async fn wrong_or_missing_credentials_fail_clearly_and_push_nothing() {
    let server = TestRegistry::start_with_auth("alice", "correct horse").unwrap();
    let layout = make_layout(4);
    let target = parse_reference(&format!("{}/private/app:v1", server.host())).unwrap();

    let config_dir = tempfile::tempdir().unwrap();
    let config_path = config_dir.path().join("config.json");
    let wrong = base64_user_pass("alice:battery staple");
    std::fs::write(
        &config_path,
        serde_json::to_vec(&json!({ "auths": { server.host(): { "auth": wrong } } })).unwrap(),
    )
    .unwrap();
    let error = registry_with(DockerConfig::from_file(&config_path).unwrap())
        .push_layout(layout.dir.path(), &target, &[])
        .await
        .unwrap_err();
    let message = error.to_string();
    match &error {
        RegistryError::Unauthorized {
            status,
            credentials,
            context,
            ..
        } => {
            assert_eq!(*status, 401);
            assert!(matches!(**credentials, CredentialSource::ConfigFile { .. }));
            assert_eq!(context.registry, server.host());
        }
        other => panic!("expected unauthorized, got {other}"),
    }
    assert!(message.contains(&server.host()), "{message}");
    assert!(
        message.contains(&config_path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("docker login"), "{message}");

    let anonymous = registry_with(DockerConfig::empty())
        .push_layout(layout.dir.path(), &target, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(anonymous, RegistryError::Unauthorized { status: 401, .. }),
        "{anonymous}"
    );
    assert!(anonymous.to_string().contains("anonymous"), "{anonymous}");

    // Nothing reached the registry.
    let good_dir = tempfile::tempdir().unwrap();
    let good = server.docker_config_json(good_dir.path()).unwrap();
    let registry = registry_with(DockerConfig::from_file(&good).unwrap());
    assert_eq!(registry.tag_digest(&target, "v1").await.unwrap(), None);
    assert!(
        !registry
            .blob_exists(&target, &layout.layer_digest)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn layouts_that_do_not_match_are_never_pushed() {
    let server = TestRegistry::start().unwrap();
    let registry = registry_with(DockerConfig::empty());

    // A target digest that is not the layout's root.
    let layout = make_layout(5);
    let other = sha256_digest(b"another image");
    let pinned = parse_reference(&format!("{}/pinned/app@{other}", server.host())).unwrap();
    let error = registry
        .push_layout(layout.dir.path(), &pinned, &["v1".to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::TargetDigestMismatch { .. }),
        "{error}"
    );
    let pinned_tag = parse_reference(&format!("{}/pinned/app:v1", server.host())).unwrap();
    assert_eq!(registry.tag_digest(&pinned_tag, "v1").await.unwrap(), None);

    // A layer whose content changed after the manifest was written: same size, other bytes.
    let tampered = make_layout(6);
    let layer_path = blob_path(tampered.dir.path(), &tampered.layer_digest);
    let mut bytes = std::fs::read(&layer_path).unwrap();
    bytes[LAYER_SIZE / 2] ^= 0xff;
    std::fs::write(&layer_path, bytes).unwrap();
    let target = parse_reference(&format!("{}/tampered/app:v1", server.host())).unwrap();
    let error = registry
        .push_layout(tampered.dir.path(), &target, &[])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("hashes to"), "{error}");
    assert_eq!(registry.tag_digest(&target, "v1").await.unwrap(), None);
    assert!(
        !registry
            .blob_exists(&target, &tampered.layer_digest)
            .await
            .unwrap()
    );
}

/// A docker config.json in `dir` with `user:password` for `host`.
fn config_with(dir: &Path, host: &str, user_pass: &str) -> PathBuf {
    let path = dir.join(format!("{}.json", user_pass.split(':').next().unwrap()));
    std::fs::write(
        &path,
        serde_json::to_vec(&json!({ "auths": { host: { "auth": base64_user_pass(user_pass) } } }))
            .unwrap(),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn pushes_and_pulls_with_bearer_tokens_from_a_token_server() {
    let tokens = TokenServer::start(vec![
        TokenUser::read_write("alice", "correct horse"),
        TokenUser::read_only("reader", "just looking"),
    ])
    .unwrap();
    let server = TestRegistry::start_with_token(&tokens).unwrap();
    // The registry really asks for bearer tokens from the token server.
    let probe = reqwest_free_probe(&server.host());
    assert!(
        probe.contains(&format!(
            "Bearer realm=\"{}\",service=\"{SERVICE}\"",
            tokens.realm()
        )),
        "{probe}"
    );
    let layout = make_layout(7);
    let target = parse_reference(&format!("{}/tokens/app:v1", server.host())).unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let config_path = server.docker_config_json(config_dir.path()).unwrap();
    let registry = registry_with(DockerConfig::from_file(&config_path).unwrap());

    let report = registry
        .push_layout(layout.dir.path(), &target, &["stable".to_owned()])
        .await
        .unwrap_or_else(|error| panic!("{error}; registry log:\n{}", server.log()));
    assert_eq!(report.digest, layout.index_digest);
    assert_eq!((report.blobs_uploaded, report.manifests_pushed), (3, 3));
    // Every token request authenticated as alice for the pushed repository, and push was
    // asked for.
    let requests = tokens.requests();
    assert!(
        requests
            .iter()
            .any(|request| request.scopes == ["repository:tokens/app:pull,push"]),
        "{requests:?}"
    );
    for request in &requests {
        assert_eq!(request.user.as_deref(), Some("alice"), "{request:?}");
        assert_eq!(request.status, 200, "{request:?}");
        assert_eq!(request.service.as_deref(), Some(SERVICE), "{request:?}");
        assert!(
            request
                .scopes
                .iter()
                .all(|scope| scope.starts_with("repository:tokens/app:")),
            "{request:?}"
        );
    }

    // Read back with the project's client and with skopeo, both through tokens.
    assert_eq!(
        registry.tag_digest(&target, "stable").await.unwrap(),
        Some(layout.index_digest.clone())
    );
    let manifest = registry
        .fetch_manifest(&Reference::with_digest(
            target.registry().to_owned(),
            target.repository().to_owned(),
            layout.manifest_digests[0].clone(),
        ))
        .await
        .unwrap();
    assert_eq!(manifest.digest, layout.manifest_digests[0]);
    let config = registry
        .fetch_blob(&target, &layout.config_digests[0])
        .await
        .unwrap();
    assert_eq!(sha256_digest(&config), layout.config_digests[0]);
    let raw = skopeo_raw(
        &format!("{}/tokens/app:v1", server.host()),
        Some("alice:correct horse"),
    );
    assert_eq!(sha256_digest(&raw), layout.index_digest);
    // A fresh client with the same credentials pushes nothing again.
    let again = registry_with(DockerConfig::from_file(&config_path).unwrap())
        .push_layout(layout.dir.path(), &target, &[])
        .await
        .unwrap();
    assert_eq!((again.blobs_uploaded, again.manifests_pushed), (0, 0));

    // A read-only user pulls, but its token carries no push: the registry refuses the push.
    let reader_config = config_with(config_dir.path(), &server.host(), "reader:just looking");
    let reader = registry_with(DockerConfig::from_file(&reader_config).unwrap());
    let pulled = reader.fetch_manifest(&target).await.unwrap();
    assert_eq!(pulled.digest, layout.index_digest);
    let other = make_layout(8);
    let denied = parse_reference(&format!("{}/tokens/other:v1", server.host())).unwrap();
    let error = reader
        .push_layout(other.dir.path(), &denied, &[])
        .await
        .unwrap_err();
    let message = error.to_string();
    match &error {
        RegistryError::Unauthorized {
            status, context, ..
        } => {
            assert_eq!(*status, 401);
            assert_eq!(context.repository, "tokens/other");
        }
        other => panic!("expected unauthorized, got {other}"),
    }
    assert!(message.contains(&server.host()), "{message}");
    // The reader's credentials work: the message says they lack the permission, not only to
    // log in again.
    assert!(
        message.contains(&format!(
            "they are not allowed this on tokens/other: grant them access to {}/tokens/other",
            server.host()
        )),
        "{message}"
    );
    assert!(
        tokens
            .requests()
            .iter()
            .any(|request| request.user.as_deref() == Some("reader")
                && request.scopes == ["repository:tokens/other:pull,push"]),
        "{:?}",
        tokens.requests()
    );
    assert_eq!(registry.tag_digest(&denied, "v1").await.unwrap(), None);

    // A wrong password: the token server refuses, and the error names the registry and where
    // the credentials came from.
    let wrong_config = config_with(config_dir.path(), &server.host(), "alice:battery staple");
    let before = tokens.requests().len();
    let error = registry_with(DockerConfig::from_file(&wrong_config).unwrap())
        .push_layout(other.dir.path(), &denied, &[])
        .await
        .unwrap_err();
    let message = error.to_string();
    match &error {
        RegistryError::AuthenticationFailed {
            registry,
            repository,
            credentials,
            ..
        } => {
            assert_eq!(*registry, server.host());
            assert_eq!(repository, "tokens/other");
            assert!(matches!(**credentials, CredentialSource::ConfigFile { .. }));
        }
        other => panic!("expected authentication failed, got {other}"),
    }
    assert!(message.contains(&server.host()), "{message}");
    assert!(
        message.contains(&wrong_config.display().to_string()),
        "{message}"
    );
    assert!(message.contains("docker login"), "{message}");
    assert!(!message.contains("battery staple"), "{message}");
    let refused: Vec<_> = tokens.requests()[before..].to_vec();
    assert!(!refused.is_empty());
    assert!(
        refused.iter().all(|request| request.status == 401
            && request.sent_credentials
            && request.user.is_none()),
        "{refused:?}"
    );
    assert_eq!(registry.tag_digest(&denied, "v1").await.unwrap(), None);
}

/// The `WWW-Authenticate` header of an anonymous `GET /v2/`.
fn reqwest_free_probe(host: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|line| line.to_ascii_lowercase().starts_with("www-authenticate:"))
        .unwrap_or_else(|| panic!("no challenge: {text}"))
        .to_owned()
}

fn base64_user_pass(user_pass: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(user_pass)
}
