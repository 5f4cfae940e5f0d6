//! `securebuild-proxy` in front of a real `docker-registry`, checked with real clients:
//! skopeo, the project's own registry client and `securebuild verify`; every refused method and
//! malformed request; an htpasswd upstream; a token-auth upstream (a real token server issuing
//! bearer tokens) behind `public` and `passthrough` routes; hostile upstreams (5xx, resets, bytes that do not
//! match their digest); and a client that does not read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use securebuild_builder::attest::keys::SigningKey;
use securebuild_builder::cli::{Cli, Command as CliCommand};
use securebuild_proxy::config::TlsFiles;
use securebuild_proxy::routes::{Access, Route, RouteSpec, RouteTable};
use securebuild_proxy::serve::{Proxy, ProxySettings};
use securebuild_proxy::server::Server;
use securebuild_registry::auth::DockerConfig;
use securebuild_registry::{
    OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, Reference, Registry, RegistryOptions,
    parse_reference, sha256_digest,
};
use securebuild_tests::registry::TestRegistry;
use securebuild_tests::token_server::{SERVICE, TokenServer, TokenUser};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// A proxy served in-process on a free loopback port; stopped on drop.
struct RunningProxy {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningProxy {
    async fn start(routes: &[&str], docker_config: DockerConfig) -> Self {
        Self::start_with(routes, docker_config, settings()).await
    }

    async fn start_with(
        routes: &[&str],
        docker_config: DockerConfig,
        settings: ProxySettings,
    ) -> Self {
        let specs = routes
            .iter()
            .map(|text| text.parse::<RouteSpec>().unwrap())
            .collect();
        Self::start_routes(specs, docker_config, settings, None).await
    }

    async fn start_routes(
        specs: Vec<RouteSpec>,
        docker_config: DockerConfig,
        settings: ProxySettings,
        tls: Option<&TlsFiles>,
    ) -> Self {
        let routes = specs
            .iter()
            .map(|spec| Route::parse(spec).unwrap())
            .collect();
        let registry = Registry::new(RegistryOptions {
            docker_config,
            retries: 0,
            ..RegistryOptions::default()
        })
        .unwrap();
        let proxy = Proxy::new(RouteTable::new(routes), registry, &settings);
        let server = Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            tls,
            proxy,
            Duration::from_secs(30),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let address = server.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            address,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn host(&self) -> String {
        self.address.to_string()
    }

    /// Stops the server and waits for it.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn settings() -> ProxySettings {
    ProxySettings {
        manifest_cache_bytes: 1 << 20,
        tag_ttl: Duration::from_secs(5),
        upstream_concurrency: 16,
        redirect_blobs: false,
        request_timeout: Duration::from_secs(20),
        https: false,
    }
}

fn client() -> Registry {
    client_with(DockerConfig::empty())
}

fn client_with(docker_config: DockerConfig) -> Registry {
    Registry::new(RegistryOptions {
        docker_config,
        retries: 0,
        ..RegistryOptions::default()
    })
    .unwrap()
}

/// An image pushed upstream: an index of one manifest with a config and one layer.
struct Image {
    index: String,
    manifest: String,
    layer: String,
    layer_bytes: Vec<u8>,
}

/// Pushes an image with a layer of `layer_size` pseudo-random bytes under `tag`.
async fn push_image(
    registry: &Registry,
    repository: &Reference,
    tag: &str,
    layer_size: usize,
) -> Image {
    let mut layer_bytes = Vec::with_capacity(layer_size);
    let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ layer_size as u64;
    while layer_bytes.len() < layer_size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        layer_bytes.extend_from_slice(&state.to_le_bytes());
    }
    layer_bytes.truncate(layer_size);
    let (layer, _) = registry
        .push_blob_bytes(repository, layer_bytes.clone())
        .await
        .unwrap();
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}})).unwrap();
    let (config_digest, _) = registry
        .push_blob_bytes(repository, config.clone())
        .await
        .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer, "size": layer_size}],
    }))
    .unwrap();
    let manifest_digest = sha256_digest(&manifest);
    registry
        .push_manifest_bytes(
            repository,
            &manifest_digest,
            manifest.clone(),
            OCI_MANIFEST_MEDIA_TYPE,
        )
        .await
        .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }))
    .unwrap();
    let index = registry
        .push_manifest_bytes(repository, tag, index, OCI_INDEX_MEDIA_TYPE)
        .await
        .unwrap();
    Image {
        index,
        manifest: manifest_digest,
        layer,
        layer_bytes,
    }
}

/// What a raw HTTP exchange gave back.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether the body had the length the headers announced.
    complete: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The first error code of a spec error body.
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Sends one HTTP/1.1 request on a fresh connection and reads the answer to the end.
async fn http(address: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if matches!(method, "POST" | "PUT" | "PATCH") {
        request.push_str("Content-Length: 2\r\n\r\n{}");
    } else {
        request.push_str("\r\n");
    }
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let announced = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.parse::<usize>().unwrap());
    let complete = method == "HEAD" || announced.is_none_or(|length| length == body.len());
    Answer {
        status,
        headers,
        body,
        complete,
    }
}

fn skopeo() -> tokio::process::Command {
    tokio::process::Command::from(securebuild_tests::skopeo::command())
}

/// Inspects `image` (`docker://…`) with skopeo and `creds` and copies all of it to an OCI
/// layout; returns the raw manifest the inspection read.
async fn pull_with_skopeo(image: &str, creds: &str) -> Vec<u8> {
    let raw = run_skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        creds,
        image,
    ])
    .await;
    let copy = tempfile::tempdir().unwrap();
    let destination = format!("oci:{}:copy", copy.path().display());
    run_skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        creds,
        image,
        &destination,
    ])
    .await;
    raw
}

/// Asserts that skopeo cannot inspect `image` with each of `attempts` (no credentials, or
/// `user:password`).
async fn assert_skopeo_refused(image: &str, attempts: &[Option<&str>]) {
    for creds in attempts {
        let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
        if let Some(creds) = creds {
            args.extend(["--creds", creds]);
        }
        args.push(image);
        let output = skopeo().args(&args).output().await.unwrap();
        assert!(!output.status.success(), "{creds:?}");
    }
}

/// Runs skopeo and returns its stdout, failing the test with its stderr.
async fn run_skopeo(args: &[&str]) -> Vec<u8> {
    securebuild_tests::skopeo::stdout_of(skopeo().args(args).output().await, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_inspects_and_copies_images_by_their_vanity_names() {
    let upstream = TestRegistry::start().unwrap();
    let registry = client();
    let repository = parse_reference(&format!("{}/team/hello", upstream.host())).unwrap();
    let image = push_image(&registry, &repository, "latest", 3 << 20).await;
    let proxy = RunningProxy::start(
        &[&format!("hello={}/team/hello", upstream.host())],
        DockerConfig::empty(),
    )
    .await;

    let vanity = format!("{}/hello", proxy.host());
    for reference in [
        format!("{vanity}:latest"),
        format!("{vanity}@{}", image.index),
    ] {
        let raw = run_skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ])
        .await;
        assert_eq!(sha256_digest(&raw), image.index, "{reference}");
    }
    let inspected: Value = serde_json::from_slice(
        &run_skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{vanity}:latest"),
        ])
        .await,
    )
    .unwrap();
    assert_eq!(inspected["Digest"], image.index.as_str());
    assert_eq!(inspected["Layers"][0], image.layer.as_str());

    let copy = tempfile::tempdir().unwrap();
    let destination = format!("oci:{}:copy", copy.path().display());
    run_skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{vanity}:latest"),
        &destination,
    ])
    .await;
    let index: Value =
        serde_json::from_slice(&std::fs::read(copy.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], image.index.as_str());
    let hex = image.layer.strip_prefix("sha256:").unwrap();
    let layer = std::fs::read(copy.path().join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(layer, image.layer_bytes);

    // Names outside every route are unknown, without asking the upstream.
    let output = skopeo()
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/team/hello:latest", proxy.host()),
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("name unknown")
            || String::from_utf8_lossy(&output.stderr).contains("NAME_UNKNOWN"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_client_pulls_by_tag_and_digest_and_the_proxy_reports_it() {
    let upstream = TestRegistry::start().unwrap();
    let registry = client();
    let repository = parse_reference(&format!("{}/base/alpine", upstream.host())).unwrap();
    let image = push_image(&registry, &repository, "3.20", 200_000).await;
    for tag in ["a", "b", "c"] {
        push_image(&registry, &repository, tag, 1000).await;
    }
    let proxy = RunningProxy::start(
        &[&format!("base/*={}/base/*", upstream.host())],
        DockerConfig::empty(),
    )
    .await;
    let host = proxy.host();

    let through = client();
    let vanity = parse_reference(&format!("{host}/base/alpine:3.20")).unwrap();
    let by_tag = through.fetch_manifest(&vanity).await.unwrap();
    assert_eq!(
        (by_tag.digest.as_str(), by_tag.media_type.as_str()),
        (image.index.as_str(), OCI_INDEX_MEDIA_TYPE)
    );
    let by_digest = through
        .fetch_manifest(
            &parse_reference(&format!("{host}/base/alpine@{}", image.manifest)).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(by_digest.digest, image.manifest);
    let layer = through.fetch_blob(&vanity, &image.layer).await.unwrap();
    assert_eq!(layer.as_ref(), image.layer_bytes.as_slice());
    assert!(through.blob_exists(&vanity, &image.layer).await.unwrap());
    assert_eq!(
        through
            .tag_digest(&vanity, "3.20")
            .await
            .unwrap()
            .as_deref(),
        Some(image.index.as_str())
    );

    // HEAD and GET carry the digest, type and length; a range gives part of the blob.
    let path = format!("/v2/base/alpine/manifests/{}", image.manifest);
    let head = http(&host, "HEAD", &path, &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("docker-content-digest"),
        Some(image.manifest.as_str())
    );
    assert_eq!(head.header("content-type"), Some(OCI_MANIFEST_MEDIA_TYPE));
    assert_eq!(
        head.header("content-length"),
        Some(by_digest.bytes.len().to_string().as_str())
    );
    let blob_path = format!("/v2/base/alpine/blobs/{}", image.layer);
    let part = http(&host, "GET", &blob_path, &[("Range", "bytes=10-19")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, image.layer_bytes[10..20]);
    let head = http(&host, "HEAD", &blob_path, &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("200000"));
    assert!(head.body.is_empty());

    // Tag lists name the vanity repository (pagination is checked against the hostile
    // upstream below; this registry does not paginate tags).
    let list = http(&host, "GET", "/v2/base/alpine/tags/list", &[]).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["name"], "base/alpine");
    let mut tags: Vec<String> = serde_json::from_value(list.json()["tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, ["3.20", "a", "b", "c"]);

    // An unknown tag and blob are the spec's errors.
    let missing = http(&host, "GET", "/v2/base/alpine/manifests/nope", &[]).await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let missing = http(
        &host,
        "GET",
        &format!("/v2/base/alpine/blobs/{}", sha256_digest(b"none")),
        &[],
    )
    .await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "BLOB_UNKNOWN")
    );

    // The operational endpoints.
    assert_eq!(http(&host, "GET", "/healthz", &[]).await.status, 200);
    assert_eq!(http(&host, "GET", "/readyz", &[]).await.status, 200);
    let root = http(&host, "GET", "/v2/", &[]).await;
    assert_eq!(root.status, 200);
    assert_eq!(
        root.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    // The manifest by digest was fetched once and then served from the cache.
    for _ in 0..3 {
        assert_eq!(http(&host, "GET", &path, &[]).await.status, 200);
    }
    let metrics = String::from_utf8(http(&host, "GET", "/metrics", &[]).await.body).unwrap();
    for needle in [
        "securebuild_proxy_requests_total{route=\"base/*\",method=\"GET\",status=\"200\"}",
        "securebuild_proxy_requests_total{route=\"none\",method=\"GET\",status=\"200\"}",
        "securebuild_proxy_cache_hits_total{cache=\"manifest\"}",
        "securebuild_proxy_upstream_duration_seconds_count{route=\"base/*\"}",
        "securebuild_proxy_served_bytes_total{route=\"base/*\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    let hits: f64 = metrics
        .lines()
        .find(|line| line.starts_with("securebuild_proxy_cache_hits_total{cache=\"manifest\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(hits >= 3.0, "{hits}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_catalogs_and_malformed_requests_are_refused_and_nothing_reaches_upstream() {
    let upstream = TestRegistry::start().unwrap();
    let registry = client();
    let repository = parse_reference(&format!("{}/team/hello", upstream.host())).unwrap();
    let image = push_image(&registry, &repository, "latest", 1000).await;
    let proxy = RunningProxy::start(
        &[&format!("hello={}/team/hello", upstream.host())],
        DockerConfig::empty(),
    )
    .await;
    let host = proxy.host();

    let manifest_path = format!("/v2/hello/manifests/{}", image.index);
    let blob_path = format!("/v2/hello/blobs/{}", image.layer);
    let writes = [
        ("PUT", "/v2/hello/manifests/latest"),
        ("PUT", manifest_path.as_str()),
        ("DELETE", manifest_path.as_str()),
        ("DELETE", blob_path.as_str()),
        ("POST", "/v2/hello/blobs/uploads/"),
        ("POST", "/v2/hello/blobs/uploads/?mount=x&from=y"),
        ("PATCH", "/v2/hello/blobs/uploads/abc"),
        ("PUT", "/v2/hello/blobs/uploads/abc?digest=sha256:00"),
        ("GET", "/v2/hello/blobs/uploads/abc"),
        ("OPTIONS", "/v2/"),
    ];
    for (method, path) in writes {
        let answer = http(&host, method, path, &[]).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (405, "UNSUPPORTED"),
            "{method} {path}"
        );
        assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{method} {path}");
    }
    let catalog = http(&host, "GET", "/v2/_catalog", &[]).await;
    assert_eq!((catalog.status, catalog.code().as_str()), (403, "DENIED"));

    let long_name = format!("/v2/{}/tags/list", "a".repeat(256));
    let malformed = [
        ("/v2/Hello/manifests/latest", 400, "NAME_INVALID"),
        ("/v2/hello//x/manifests/latest", 400, "NAME_INVALID"),
        ("/v2/hello/../x/manifests/latest", 400, "NAME_INVALID"),
        (long_name.as_str(), 400, "NAME_INVALID"),
        ("/v2/hello/manifests/-latest", 400, "MANIFEST_INVALID"),
        ("/v2/hello/manifests/sha256:abc", 400, "DIGEST_INVALID"),
        ("/v2/hello/blobs/sha512:abc", 400, "DIGEST_INVALID"),
        ("/v2/hello/blobs/latest", 400, "DIGEST_INVALID"),
        ("/v2/hello/referrers/sha256:ABC", 400, "DIGEST_INVALID"),
        ("/v2/hello/tags/list?n=x", 400, "PAGINATION_NUMBER_INVALID"),
        (
            "/v2/hello/tags/list?last=%2e%2e",
            400,
            "PAGINATION_NUMBER_INVALID",
        ),
        ("/v2/other/manifests/latest", 404, "NAME_UNKNOWN"),
        ("/v2/team/hello/manifests/latest", 404, "NAME_UNKNOWN"),
    ];
    for (path, status, code) in malformed {
        let answer = http(&host, "GET", path, &[]).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (status, code),
            "{path}"
        );
    }
    for range in ["bytes=5-1", "bytes=0-1,4-5", "items=0-1", "bytes=x-"] {
        let answer = http(&host, "GET", &blob_path, &[("Range", range)]).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (416, "RANGE_INVALID"),
            "{range}"
        );
    }

    // The upstream still holds exactly what was pushed.
    let upstream_tags = http(&upstream.host(), "GET", "/v2/team/hello/tags/list", &[]).await;
    assert_eq!(upstream_tags.json()["tags"], json!(["latest"]));
    let upstream_catalog = http(&upstream.host(), "GET", "/v2/_catalog", &[]).await;
    assert_eq!(
        upstream_catalog.json()["repositories"],
        json!(["team/hello"])
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_route_pulls_from_an_htpasswd_upstream_with_the_proxys_credentials() {
    let upstream = TestRegistry::start_with_auth("puller", "s3cret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_file = upstream.docker_config_json(dir.path()).unwrap();
    let registry = client_with(DockerConfig::from_file(&config_file).unwrap());
    let repository = parse_reference(&format!("{}/team/private", upstream.host())).unwrap();
    let image = push_image(&registry, &repository, "v1", 5000).await;

    let route = format!("private={}/team/private", upstream.host());
    let proxy =
        RunningProxy::start(&[&route], DockerConfig::from_file(&config_file).unwrap()).await;
    let raw = run_skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/private:v1", proxy.host()),
    ])
    .await;
    assert_eq!(sha256_digest(&raw), image.index);
    let layer = http(
        &proxy.host(),
        "GET",
        &format!("/v2/private/blobs/{}", image.layer),
        &[],
    )
    .await;
    assert_eq!(layer.body, image.layer_bytes);
    proxy.stop().await;

    // Without credentials the upstream refuses the proxy, which says so without leaking more.
    let anonymous = RunningProxy::start(&[&route], DockerConfig::empty()).await;
    let refused = http(&anonymous.host(), "GET", "/v2/private/manifests/v1", &[]).await;
    assert_eq!((refused.status, refused.code().as_str()), (502, "UNKNOWN"));
    assert!(
        refused.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("refused the proxy's credentials")
    );
    anonymous.stop().await;
}

/// Everything the proxies of this test binary log (securebuild crates at trace level), from
/// the first call on.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,securebuild_proxy=trace,securebuild_registry=trace",
            ))
            .with_ansi(false)
            .with_writer(move || LogSink(Arc::clone(&sink)))
            .try_init();
        logs
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A token server with a user that may push (`pusher`) and one that may only pull
/// (`puller`), and a registry that wants its tokens, holding an image at `team/private:v1`.
async fn token_upstream() -> (TokenServer, TestRegistry, Image) {
    let tokens = TokenServer::start(vec![
        TokenUser::read_write("pusher", "push-pw"),
        TokenUser::read_only("puller", "s3cret"),
    ])
    .unwrap();
    let upstream = TestRegistry::start_with_token(&tokens).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_file = upstream.docker_config_json(dir.path()).unwrap();
    let registry = client_with(DockerConfig::from_file(&config_file).unwrap());
    let repository = parse_reference(&format!("{}/team/private", upstream.host())).unwrap();
    let image = push_image(&registry, &repository, "v1", 5000).await;
    (tokens, upstream, image)
}

/// A docker config.json in `dir` with `user_pass` for `host`.
fn docker_config(dir: &std::path::Path, host: &str, user_pass: &str) -> DockerConfig {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(user_pass);
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&json!({ "auths": { host: { "auth": auth } } })).unwrap(),
    )
    .unwrap();
    DockerConfig::from_file(&path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_route_pulls_from_a_token_upstream_with_the_proxys_credentials() {
    let (tokens, upstream, image) = token_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let route = format!("private={}/team/private", upstream.host());
    let proxy = RunningProxy::start(
        &[&route],
        docker_config(dir.path(), &upstream.host(), "puller:s3cret"),
    )
    .await;
    let before = tokens.requests().len();

    // Anonymous clients pull: skopeo and the project's client.
    let raw = run_skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/private:v1", proxy.host()),
    ])
    .await;
    assert_eq!(sha256_digest(&raw), image.index);
    let vanity = parse_reference(&format!("{}/private:v1", proxy.host())).unwrap();
    let anonymous = client();
    assert_eq!(
        anonymous.fetch_manifest(&vanity).await.unwrap().digest,
        image.index
    );
    let by_digest =
        Reference::with_digest(proxy.host(), "private".to_owned(), image.manifest.clone());
    assert_eq!(
        anonymous.fetch_manifest(&by_digest).await.unwrap().digest,
        image.manifest
    );
    let layer = anonymous.fetch_blob(&vanity, &image.layer).await.unwrap();
    assert_eq!(layer, image.layer_bytes);

    // The proxy got its tokens as puller, for the upstream repository, pull only; the clients
    // never reached the token server.
    let requests = tokens.requests()[before..].to_vec();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(request.user.as_deref(), Some("puller"), "{request:?}");
        assert_eq!(request.status, 200, "{request:?}");
        assert_eq!(
            request.scopes,
            ["repository:team/private:pull"],
            "{request:?}"
        );
    }
    // Tokens are reused: far fewer token requests than pulls.
    assert!(requests.len() <= 2, "{requests:?}");
    proxy.stop().await;

    // Without credentials of its own, the token server refuses the proxy, which says so.
    let before = tokens.requests().len();
    let bare = RunningProxy::start(&[&route], DockerConfig::empty()).await;
    let refused = http(&bare.host(), "GET", "/v2/private/manifests/v1", &[]).await;
    assert_eq!((refused.status, refused.code().as_str()), (502, "UNKNOWN"));
    assert!(
        refused.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("refused the proxy's credentials"),
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(refused.header("www-authenticate").is_none());
    assert!(
        tokens.requests()[before..]
            .iter()
            .all(|request| request.status == 401 && !request.sent_credentials),
        "{:?}",
        tokens.requests()
    );
    bare.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_route_relays_the_bearer_flow_of_a_token_upstream() {
    let logs = captured_logs();
    let (tokens, upstream, image) = token_upstream().await;
    let mut route: RouteSpec = format!("private={}/team/private", upstream.host())
        .parse()
        .unwrap();
    route.access = Access::Passthrough;
    // The proxy has no credentials of its own.
    let proxy =
        RunningProxy::start_routes(vec![route], DockerConfig::empty(), settings(), None).await;
    let host = proxy.host();
    let vanity = format!("docker://{host}/private:v1");
    let realm = format!("http://{host}/token");
    let before = tokens.requests().len();

    // Clients are challenged to get tokens from the proxy, for the vanity repository.
    let root = http(&host, "GET", "/v2/", &[]).await;
    assert_eq!((root.status, root.code().as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(
        root.header("www-authenticate").unwrap(),
        format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\"")
    );
    for path in [
        "/v2/private/manifests/v1".to_owned(),
        format!("/v2/private/blobs/{}", image.layer),
    ] {
        let answer = http(&host, "GET", &path, &[]).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (401, "UNAUTHORIZED"),
            "{path}"
        );
        assert_eq!(
            answer.header("www-authenticate").unwrap(),
            format!(
                "Bearer realm=\"{realm}\",service=\"{SERVICE}\",scope=\"repository:private:pull\""
            ),
            "{path}"
        );
    }
    assert_eq!(tokens.requests().len(), before, "challenges need no token");

    // With credentials, skopeo gets a token through the proxy and pulls.
    let raw = pull_with_skopeo(&vanity, "puller:s3cret").await;
    assert_eq!(sha256_digest(&raw), image.index);
    let granted = tokens.requests()[before..].to_vec();
    assert!(!granted.is_empty());
    for request in &granted {
        assert_eq!(request.user.as_deref(), Some("puller"), "{request:?}");
        assert_eq!(request.status, 200, "{request:?}");
        assert_eq!(request.service.as_deref(), Some(SERVICE), "{request:?}");
        assert_eq!(
            request.scopes,
            ["repository:team/private:pull"],
            "{request:?}"
        );
    }

    // Asking the proxy's /token for push gets the upstream asked for pull only, and the
    // token works for the vanity name.
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("pusher:push-pw")
    );
    let before = tokens.requests().len();
    let answer = http(
        &host,
        "GET",
        &format!("/token?service={SERVICE}&scope=repository%3Aprivate%3Apull%2Cpush"),
        &[("Authorization", &basic)],
    )
    .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let token = answer.json()["token"].as_str().unwrap().to_owned();
    let seen = tokens.requests()[before..].to_vec();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].user.as_deref(), Some("pusher"));
    assert_eq!(seen[0].scopes, ["repository:team/private:pull"]);
    let bearer = format!("Bearer {token}");
    let manifest = http(
        &host,
        "GET",
        &format!("/v2/private/manifests/{}", image.index),
        &[("Authorization", &bearer), ("Accept", OCI_INDEX_MEDIA_TYPE)],
    )
    .await;
    assert_eq!(manifest.status, 200);
    assert_eq!(sha256_digest(&manifest.body), image.index);
    // Other scopes than the route's repositories are refused without asking upstream.
    let before = tokens.requests().len();
    let elsewhere = http(
        &host,
        "GET",
        &format!("/token?service={SERVICE}&scope=repository%3Ateam%2Fprivate%3Apull"),
        &[("Authorization", &basic)],
    )
    .await;
    assert_eq!(
        elsewhere.status,
        404,
        "{}",
        String::from_utf8_lossy(&elsewhere.body)
    );
    assert_eq!(tokens.requests().len(), before);

    // Wrong or missing credentials are refused, also for what was just pulled (nothing is
    // cached for passthrough routes), and every attempt went to the token server.
    assert_skopeo_refused(&vanity, &[None, Some("puller:wrong")]).await;
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("puller:wrong")
    );
    let before = tokens.requests().len();
    for headers in [vec![], vec![("Authorization", wrong.as_str())]] {
        let refused = http(
            &host,
            "GET",
            &format!("/token?service={SERVICE}&scope=repository%3Aprivate%3Apull"),
            &headers,
        )
        .await;
        assert_eq!(refused.status, 401, "{headers:?}");
        assert!(!String::from_utf8_lossy(&refused.body).contains("token\":"));
        // The token service's own challenge reaches the client, which asks for credentials.
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Basic realm=\"token\""),
            "{headers:?}"
        );
    }
    let refused = tokens.requests()[before..].to_vec();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|request| request.status == 401 && request.user.is_none())
    );
    for path in [
        format!("/v2/private/manifests/{}", image.index),
        format!("/v2/private/blobs/{}", image.layer),
    ] {
        let answer = http(&host, "GET", &path, &[]).await;
        assert_eq!(answer.status, 401, "{path}");
        let forged = http(&host, "GET", &path, &[("Authorization", "Bearer forged")]).await;
        assert_eq!(forged.status, 401, "{path}");
    }
    // The token server never saw a vanity name nor anything but pull.
    for request in tokens.requests() {
        for scope in &request.scopes {
            assert!(scope.starts_with("repository:team/private:"), "{request:?}");
        }
    }
    proxy.stop().await;

    // The proxy logged the requests but never a password or a token.
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logs.contains("/v2/private/manifests/v1"), "nothing logged");
    let encoded = base64::engine::general_purpose::STANDARD.encode("puller:s3cret");
    for secret in ["s3cret", "push-pw", encoded.as_str()] {
        assert!(!logs.contains(secret), "the logs contain {secret}");
    }
    for token in tokens.issued_tokens() {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "the logs contain a token");
    }
}

/// Runs `securebuild sign` or `securebuild verify` in-process; its stdout, or the error `main`
/// would print.
async fn run_cli(args: &[&str]) -> Result<String, String> {
    use clap::Parser as _;
    let cli = Cli::try_parse_from(std::iter::once("securebuild").chain(args.iter().copied()))
        .map_err(|error| error.to_string())?;
    let mut out = Vec::new();
    let result = match cli.command {
        CliCommand::Sign(args) => securebuild_builder::cli::sign::run(&args, &mut out).await,
        CliCommand::Verify(args) => securebuild_builder::cli::verify::run(&args, &mut out).await,
        other => panic!("not a signing command: {other:?}"),
    };
    result
        .map(|()| String::from_utf8(out).unwrap())
        .map_err(|error| securebuild_builder::error::chain(&error))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn securebuild_verify_accepts_a_signature_by_the_vanity_name() {
    let upstream = TestRegistry::start().unwrap();
    let registry = client();
    let upstream_name = format!("{}/team/hello", upstream.host());
    let image = push_image(
        &registry,
        &parse_reference(&upstream_name).unwrap(),
        "latest",
        1000,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, contents: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let empty_config = write("config.json", b"{}");
    let key = SigningKey::generate().unwrap();
    let key_file = write(
        "cosign.key",
        key.to_encrypted_pem(b"pw").unwrap().as_bytes(),
    );
    let password_file = write("password", b"pw\n");
    let public_file = write(
        "cosign.pub",
        key.verifying_key().to_pem().unwrap().as_bytes(),
    );
    let stranger = SigningKey::generate().unwrap().verifying_key();
    let stranger_file = write("stranger.pub", stranger.to_pem().unwrap().as_bytes());
    run_cli(&[
        "sign",
        &format!("{upstream_name}:latest"),
        "--key",
        &key_file,
        "--key-password-file",
        &password_file,
        "--registry-config",
        &empty_config,
        "-a",
        "team=blue",
    ])
    .await
    .unwrap();

    let proxy =
        RunningProxy::start(&[&format!("hello={upstream_name}")], DockerConfig::empty()).await;
    let vanity = format!("{}/hello", proxy.host());
    let verify = |image: String, key: String| {
        let config = empty_config.clone();
        async move {
            run_cli(&[
                "verify",
                &image,
                "--key",
                &key,
                "--registry-config",
                &config,
            ])
            .await
        }
    };
    let out = verify(format!("{vanity}:latest"), public_file.clone())
        .await
        .unwrap();
    assert!(
        out.starts_with(&format!("verified {vanity}@{}\n", image.index)),
        "{out}"
    );
    assert!(
        out.contains(&format!("docker-reference={upstream_name}")),
        "{out}"
    );
    let out = verify(format!("{vanity}@{}", image.index), public_file.clone())
        .await
        .unwrap();
    assert!(out.contains("signatures: 1 valid of 1"), "{out}");
    // Annotations asked for must have been signed.
    let annotated = |value: &str| {
        let (image, key, config) = (
            format!("{vanity}:latest"),
            public_file.clone(),
            empty_config.clone(),
        );
        let wanted = format!("team={value}");
        async move {
            run_cli(&[
                "verify",
                &image,
                "--key",
                &key,
                "--registry-config",
                &config,
                "-a",
                &wanted,
            ])
            .await
        }
    };
    let out = annotated("blue").await.unwrap();
    assert!(out.contains("team=blue"), "{out}");
    let error = annotated("red").await.unwrap_err();
    assert!(
        error.contains("carries the annotations team=red; the valid ones carry: team=blue"),
        "{error}"
    );
    // Another key still does not verify, whatever the name.
    let error = verify(format!("{vanity}:latest"), stranger_file)
        .await
        .unwrap_err();
    assert!(error.contains("signature does not verify"), "{error}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_route_passes_the_clients_credentials_and_keeps_none() {
    let upstream = TestRegistry::start_with_auth("puller", "s3cret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_file = upstream.docker_config_json(dir.path()).unwrap();
    let registry = client_with(DockerConfig::from_file(&config_file).unwrap());
    let repository = parse_reference(&format!("{}/team/private", upstream.host())).unwrap();
    let image = push_image(&registry, &repository, "v1", 5000).await;

    let mut route: RouteSpec = format!("private={}/team/private", upstream.host())
        .parse()
        .unwrap();
    route.access = Access::Passthrough;
    // The proxy has no credentials of its own.
    let proxy =
        RunningProxy::start_routes(vec![route], DockerConfig::empty(), settings(), None).await;
    let host = proxy.host();
    let vanity = format!("docker://{host}/private:v1");

    // Clients are challenged as the upstream challenges them.
    let root = http(&host, "GET", "/v2/", &[]).await;
    assert_eq!((root.status, root.code().as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(
        root.header("www-authenticate"),
        Some("Basic realm=\"securebuild-test\"")
    );

    let raw = pull_with_skopeo(&vanity, "puller:s3cret").await;
    assert_eq!(sha256_digest(&raw), image.index);

    // Wrong or missing credentials are refused, also for what was just pulled (nothing is
    // cached for passthrough routes).
    assert_skopeo_refused(&vanity, &[None, Some("puller:wrong")]).await;
    for path in [
        format!("/v2/private/manifests/{}", image.index),
        format!("/v2/private/blobs/{}", image.layer),
    ] {
        let answer = http(&host, "GET", &path, &[]).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (401, "UNAUTHORIZED"),
            "{path}"
        );
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Basic realm=\"securebuild-test\"")
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_from_certificate_files_and_redirects_blobs_when_asked() {
    let upstream = TestRegistry::start().unwrap();
    let registry = client();
    let repository = parse_reference(&format!("{}/team/hello", upstream.host())).unwrap();
    let image = push_image(&registry, &repository, "latest", 100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let (certificate, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    securebuild_tests::token_server::self_signed_certificate(
        &key,
        &certificate,
        "/CN=localhost",
        &["subjectAltName=DNS:localhost,IP:127.0.0.1"],
    )
    .unwrap();
    let tls = TlsFiles {
        certificate: certificate.clone(),
        key,
    };
    let route: RouteSpec = format!("hello={}/team/hello", upstream.host())
        .parse()
        .unwrap();
    let mut redirecting = settings();
    redirecting.redirect_blobs = true;
    let proxy =
        RunningProxy::start_routes(vec![route], DockerConfig::empty(), redirecting, Some(&tls))
            .await;

    // An HTTPS client that checks the certificate.
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--cacert"])
        .arg(&certificate)
        .arg(format!(
            "https://localhost:{}/v2/hello/manifests/latest",
            proxy.address.port()
        ))
        .args(["-H", &format!("Accept: {OCI_INDEX_MEDIA_TYPE}")])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(sha256_digest(&output.stdout), image.index);
    // Plain HTTP gets no answer.
    let mut stream = TcpStream::connect(proxy.address).await.unwrap();
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"));

    // Blobs of this anonymous upstream are redirected to it, and clients follow.
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--cacert"])
        .arg(&certificate)
        .args([
            "--write-out",
            "%{http_code} %{redirect_url}",
            "--output",
            "/dev/null",
        ])
        .arg(format!(
            "https://localhost:{}/v2/hello/blobs/{}",
            proxy.address.port(),
            image.layer
        ))
        .output()
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        answer,
        format!(
            "307 http://{}/v2/team/hello/blobs/{}",
            upstream.host(),
            image.layer
        )
    );
    let copy = tempfile::tempdir().unwrap();
    run_skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://localhost:{}/hello:latest", proxy.address.port()),
        &format!("oci:{}:copy", copy.path().display()),
    ])
    .await;
    let hex = image.layer.strip_prefix("sha256:").unwrap();
    assert_eq!(
        std::fs::read(copy.path().join("blobs/sha256").join(hex)).unwrap(),
        image.layer_bytes
    );
    proxy.stop().await;
}

/// What the hostile upstream does for a request path.
type Behaviour = Arc<dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync>;

/// A loopback upstream that answers each request with the raw bytes `behaviour` gives for
/// its path, or resets the connection when it gives none.
async fn hostile_upstream(behaviour: Behaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let behaviour = Arc::clone(&behaviour);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                match behaviour(&path) {
                    Some(reply) => {
                        let _ = stream.write_all(&reply).await;
                        let _ = stream.shutdown().await;
                    }
                    None => {
                        let _ = stream.set_zero_linger();
                        drop(stream);
                    }
                }
            });
        }
    });
    host
}

fn reply(status: u16, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut text = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_upstreams_are_never_passed_on_as_valid() {
    let manifest =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#.to_vec();
    let good_manifest = sha256_digest(&manifest);
    let other_manifest = sha256_digest(b"another manifest");
    let blob = vec![7u8; 256 << 10];
    let blob_digest = sha256_digest(&blob);
    let mut forged = blob.clone();
    forged[200_000] = 8;
    let forged_digest = sha256_digest(b"the blob the client asks for");
    let truncated_digest = sha256_digest(b"truncated");
    let reset_digest = sha256_digest(b"reset");

    let behaviour: Behaviour = {
        let (manifest, blob, forged) = (manifest.clone(), blob.clone(), forged.clone());
        let (good_manifest, other_manifest) = (good_manifest.clone(), other_manifest.clone());
        let (blob_digest, forged_digest) = (blob_digest.clone(), forged_digest.clone());
        let (truncated_digest, reset_digest) = (truncated_digest.clone(), reset_digest.clone());
        let json_type = ("Content-Type", OCI_MANIFEST_MEDIA_TYPE.to_owned());
        Arc::new(move |path: &str| {
            let path = path.strip_prefix("/v2/").unwrap_or(path);
            Some(match path {
                "" => reply(200, &[], b"{}"),
                "app/manifests/unavailable" => reply(503, &[], b"down for maintenance"),
                "app/manifests/header-lies" => reply(
                    200,
                    &[
                        json_type.clone(),
                        ("Docker-Content-Digest", other_manifest.clone()),
                    ],
                    &manifest,
                ),
                "app/manifests/honest" => reply(
                    200,
                    &[
                        json_type.clone(),
                        ("Docker-Content-Digest", good_manifest.clone()),
                    ],
                    &manifest,
                ),
                path if path == format!("app/manifests/{other_manifest}") => {
                    reply(200, std::slice::from_ref(&json_type), &manifest)
                }
                path if path == format!("app/blobs/{blob_digest}") => reply(200, &[], &blob),
                path if path == format!("app/blobs/{forged_digest}") => reply(200, &[], &forged),
                path if path == format!("app/blobs/{truncated_digest}") => {
                    let mut bytes = reply(200, &[], &blob);
                    bytes.truncate(bytes.len() - 1000);
                    bytes
                }
                path if path == format!("app/blobs/{reset_digest}") => return None,
                "app/tags/list?n=2&last=a" => reply(
                    200,
                    &[(
                        "Link",
                        "</v2/app/tags/list?last=c&n=2>; rel=\"next\"".to_owned(),
                    )],
                    br#"{"name":"app","tags":["b","c"]}"#,
                ),
                "app/manifests/reset" => return None,
                _ => reply(404, &[], br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#),
            })
        })
    };
    let upstream = hostile_upstream(behaviour).await;
    let proxy = RunningProxy::start(
        &[
            &format!("app={upstream}/app"),
            &format!("mirror/={upstream}/"),
        ],
        DockerConfig::empty(),
    )
    .await;
    let host = proxy.host();

    // Pagination is passed on, and the next page is linked under the vanity name.
    let page = http(&host, "GET", "/v2/mirror/app/tags/list?n=2&last=a", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.json(),
        json!({"name": "mirror/app", "tags": ["b", "c"]})
    );
    assert_eq!(
        page.header("link"),
        Some("</v2/mirror/app/tags/list?last=c&n=2>; rel=\"next\"")
    );

    let honest = http(&host, "GET", "/v2/app/manifests/honest", &[]).await;
    assert_eq!(honest.status, 200);
    assert_eq!(honest.body, manifest);
    let honest_blob = http(&host, "GET", &format!("/v2/app/blobs/{blob_digest}"), &[]).await;
    assert_eq!((honest_blob.status, honest_blob.complete), (200, true));
    assert_eq!(honest_blob.body, blob);

    for path in [
        "/v2/app/manifests/unavailable".to_owned(),
        "/v2/app/manifests/header-lies".to_owned(),
        format!("/v2/app/manifests/{other_manifest}"),
        "/v2/app/manifests/reset".to_owned(),
        format!("/v2/app/blobs/{reset_digest}"),
    ] {
        let answer = http(&host, "GET", &path, &[]).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (502, "UNKNOWN"),
            "{path}"
        );
    }
    // Blobs whose bytes do not match, or that break off, never arrive complete.
    for digest in [&forged_digest, &truncated_digest] {
        let answer = http(&host, "GET", &format!("/v2/app/blobs/{digest}"), &[]).await;
        assert_eq!(answer.status, 200, "{digest}");
        assert!(
            !answer.complete,
            "{digest}: {} of {:?} bytes",
            answer.body.len(),
            answer.header("content-length")
        );
        assert!(answer.body.len() < blob.len());
    }
    // Our own client refuses them too.
    let reference = parse_reference(&format!("{host}/app:x")).unwrap();
    assert!(
        client()
            .fetch_blob(&reference, &forged_digest)
            .await
            .is_err()
    );
    let metrics = String::from_utf8(http(&host, "GET", "/metrics", &[]).await.body).unwrap();
    // Two manifests and two pulls of the forged blob.
    assert!(
        metrics.contains("securebuild_proxy_digest_mismatches_total{route=\"app\"} 4"),
        "{metrics}"
    );
    proxy.stop().await;
}

/// The resident set size of this process, in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_keep_memory_bounded() {
    const BLOB_SIZE: usize = 64 << 20;
    const CLIENTS: usize = 8;
    let upstream = TestRegistry::start().unwrap();
    let registry = client();
    let repository = parse_reference(&format!("{}/big/blob", upstream.host())).unwrap();
    let image = push_image(&registry, &repository, "latest", BLOB_SIZE).await;
    let layer = image.layer.clone();
    drop(image);
    let proxy = RunningProxy::start(
        &[&format!("big/={}/big/", upstream.host())],
        DockerConfig::empty(),
    )
    .await;

    let before = resident_bytes();
    let mut stalled = Vec::new();
    for _ in 0..CLIENTS {
        let mut stream = TcpStream::connect(proxy.address).await.unwrap();
        let request = format!(
            "GET /v2/big/blob/blobs/{layer} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            proxy.host()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut first = [0u8; 512];
        let read = stream.read(&mut first).await.unwrap();
        assert!(String::from_utf8_lossy(&first[..read]).starts_with("HTTP/1.1 200"));
        stalled.push(stream);
    }
    // Give the proxy time to read as far ahead as it would.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let growth = resident_bytes().saturating_sub(before);
    assert!(
        growth < (CLIENTS * BLOB_SIZE / 8) as u64,
        "{CLIENTS} stalled clients of a {BLOB_SIZE}-byte blob grew the proxy by {growth} bytes"
    );
    // A reader that starts late still gets the whole blob.
    let mut stream = stalled.pop().unwrap();
    let mut received = Vec::new();
    stream.read_to_end(&mut received).await.ok();
    drop(stalled);
    assert!(received.len() >= BLOB_SIZE - 512, "{}", received.len());
    proxy.stop().await;
}

/// An upstream with the referrers API (docker-registry 2.8 has none): the proxy passes the
/// index, its content type, the `artifactType` filter and `OCI-Filters-Applied` through, and a
/// `404` (no referrers API) stays the `404` clients fall back on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_pass_through_where_the_upstream_has_them() {
    let subject = sha256_digest(b"the signed image");
    let missing = sha256_digest(b"an image without referrers API");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":512,"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"}}]}}"#,
        sha256_digest(b"the signature manifest")
    );
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let behaviour: Behaviour = {
        let (subject, missing, index, seen) = (
            subject.clone(),
            missing.clone(),
            index.clone(),
            Arc::clone(&seen),
        );
        Arc::new(move |path: &str| {
            seen.lock().unwrap().push(path.to_owned());
            let index_type = (
                "Content-Type",
                "application/vnd.oci.image.index.v1+json".to_owned(),
            );
            Some(match path {
                "/v2/" => reply(200, &[], b"{}"),
                p if p
                    == format!(
                        "/v2/team/app/referrers/{subject}?artifactType=application/vnd.dev.cosign.artifact.sig.v1%2Bjson"
                    ) =>
                {
                    reply(
                        200,
                        &[
                            index_type,
                            ("OCI-Filters-Applied", "artifactType".to_owned()),
                        ],
                        index.as_bytes(),
                    )
                }
                p if p == format!("/v2/team/app/referrers/{subject}") => {
                    reply(200, &[index_type], index.as_bytes())
                }
                p if p == format!("/v2/team/app/referrers/{missing}") => reply(
                    404,
                    &[],
                    br#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#,
                ),
                _ => reply(404, &[], b""),
            })
        })
    };
    let upstream = hostile_upstream(behaviour).await;
    let proxy = RunningProxy::start(
        &[&format!("app={upstream}/team/app")],
        DockerConfig::empty(),
    )
    .await;
    let host = proxy.host();

    let filtered = http(
        &host,
        "GET",
        &format!(
            "/v2/app/referrers/{subject}?artifactType=application/vnd.dev.cosign.artifact.sig.v1%2Bjson"
        ),
        &[],
    )
    .await;
    assert_eq!(filtered.status, 200);
    assert_eq!(filtered.body, index.as_bytes());
    assert_eq!(
        filtered.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));

    let all = http(&host, "GET", &format!("/v2/app/referrers/{subject}"), &[]).await;
    assert_eq!(all.status, 200);
    assert_eq!(all.body, index.as_bytes());
    assert_eq!(all.header("oci-filters-applied"), None);

    let none = http(&host, "GET", &format!("/v2/app/referrers/{missing}"), &[]).await;
    assert_eq!(none.status, 404);
    assert_eq!(none.code(), "MANIFEST_UNKNOWN");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|p| p.contains("artifactType=application/vnd.dev.cosign.artifact.sig.v1%2Bjson")),
        "the filter reached the upstream"
    );
    proxy.stop().await;
}
