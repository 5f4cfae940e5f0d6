//! The registry client over TLS, through an HTTPS proxy named by the environment, as in a
//! cluster whose egress goes through a proxy: a real `docker-registry` reached by the name
//! `registry.invalid` through a `CONNECT` tunnel that terminates TLS with a certificate the
//! client trusts through `SSL_CERT_FILE` ([`securebuild_tests::tls_tunnel`]).
//!
//! The environment is per process, so the client side runs in a child: this test binary run
//! again for this test alone, with `HTTPS_PROXY`, `SSL_CERT_FILE` and what to pull set. It
//! pulls a manifest and a blob by digest with `Registry::pull` (the streaming transport the
//! proxy uses) and checks their digests, and pings the registry through the client's other
//! transport (`Registry::ping`), so both honour the same proxy and roots.

use securebuild_registry::auth::DockerConfig;
use securebuild_registry::pull::PullRequest;
use securebuild_registry::{
    OCI_MANIFEST_MEDIA_TYPE, Registry, RegistryOptions, parse_reference, sha256_digest,
};
use securebuild_tests::registry::{TestRegistry, push_blob_image};
use securebuild_tests::tls_tunnel::{TlsTunnel, Tunnelled};
use securebuild_tests::token_server::self_signed_certificate;

/// The registry's name as the client knows it; nothing resolves it.
const REGISTRY_HOST: &str = "registry.invalid";
const TEST_NAME: &str = "registry_tls::pulls_over_tls_through_an_https_proxy_from_the_environment";
/// Set in the child: `<manifest digest> <blob digest>`.
const CHILD_ENV: &str = "SECUREBUILD_TLS_CHILD";
const PROXY_VARIABLES: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

fn client() -> Registry {
    Registry::new(RegistryOptions {
        docker_config: DockerConfig::empty(),
        retries: 0,
        ..RegistryOptions::default()
    })
    .unwrap()
}

#[tokio::test]
async fn pulls_over_tls_through_an_https_proxy_from_the_environment() {
    if let Ok(digests) = std::env::var(CHILD_ENV) {
        let (manifest, blob) = digests.split_once(' ').unwrap();
        return pull_as_the_child(manifest, blob).await;
    }
    let upstream = TestRegistry::start().unwrap();
    let registry = client();
    let local = parse_reference(&format!("{}/team/app", upstream.host())).unwrap();
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (manifest_digest, blob) = push_blob_image(&registry, &local, layer).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (certificate, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    self_signed_certificate(
        &key,
        &certificate,
        &format!("/CN={REGISTRY_HOST}"),
        &[
            &format!("subjectAltName=DNS:{REGISTRY_HOST}"),
            "basicConstraints=critical,CA:FALSE",
            "extendedKeyUsage=serverAuth",
        ],
    )
    .unwrap();
    let tunnel = TlsTunnel::start(&certificate, &key, upstream.host().parse().unwrap())
        .await
        .unwrap();

    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap());
    child.args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"]);
    for name in PROXY_VARIABLES.iter().chain(&["SSL_CERT_DIR"]) {
        child.env_remove(name);
    }
    let output = child
        .env("HTTPS_PROXY", tunnel.url())
        .env("SSL_CERT_FILE", &certificate)
        .env(CHILD_ENV, format!("{manifest_digest} {blob}"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let tunnelled = tunnel.tunnelled();
    assert!(!tunnelled.is_empty(), "nothing went through the proxy");
    let expected = Tunnelled {
        target: format!("{REGISTRY_HOST}:443"),
        server_name: Some(REGISTRY_HOST.to_owned()),
    };
    assert!(
        tunnelled.iter().all(|tunnel| *tunnel == expected),
        "{tunnelled:?}"
    );
}

/// The child's part: pulls by digest through the environment's proxy and checks the bytes.
async fn pull_as_the_child(manifest: &str, blob: &str) {
    let registry = client();
    let repository = parse_reference(&format!("{REGISTRY_HOST}/team/app")).unwrap();
    for (path, digest) in [
        (format!("manifests/{manifest}"), manifest),
        (format!("blobs/{blob}"), blob),
    ] {
        let mut request = PullRequest::new(http::Method::GET, path);
        request.headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static(OCI_MANIFEST_MEDIA_TYPE),
        );
        let mut response = registry.pull(&repository, request).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
        assert_eq!(sha256_digest(&body), digest);
    }
    let ping = registry.ping(&repository, None).await.unwrap();
    assert_eq!(ping.status().as_u16(), 200);
}
