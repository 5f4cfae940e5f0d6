//! The `securebuild` binary itself, run as a user runs it: exit codes and messages of the
//! packaging commands, and failures printed with their causes (a malformed index line, DNS,
//! TLS, HTTP status, signatures), on stderr and in the `--result` file the operator reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The loopback HTTP server of the cross-crate tests (`securebuild-tests` depends on this
/// crate, so it is compiled in here rather than depended on).
#[allow(dead_code)]
#[path = "../../tests/src/serve.rs"]
mod serve;

fn securebuild(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_securebuild"))
        .args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `securebuild package doc.yaml` of `stage/`, dated 1700000000, into `packages/`.
fn package_doc(dir: &Path) -> Output {
    securebuild(
        &[
            "package",
            "doc.yaml",
            "--destdir",
            "stage",
            "--arch",
            "x86_64",
            "--signing-key",
            "repo.rsa",
            "--source-date-epoch",
            "1700000000",
        ],
        dir,
    )
}

/// `securebuild index` of the packaged doc into `other/APKINDEX.tar.gz`.
fn index_doc(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "index",
        "packages/x86_64/doc-1.0.0-r0.apk",
        "-o",
        "other/APKINDEX.tar.gz",
        "--signing-key",
        "repo.rsa",
    ];
    args.extend_from_slice(extra);
    securebuild(&args, dir)
}

fn openssl_key(dir: &Path, name: &str) {
    let status = Command::new("openssl")
        .args(["genrsa", "-out", name, "2048"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
}

#[test]
fn package_then_index_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_key(dir, "repo.rsa");
    std::fs::create_dir_all(dir.join("stage/usr/share/doc")).unwrap();
    std::fs::write(dir.join("stage/usr/share/doc/README"), "hello\n").unwrap();
    std::fs::write(
        dir.join("doc.yaml"),
        "package:\n  name: doc\n  version: 1.0.0\n  copyright:\n    - license: CC0-1.0\n",
    )
    .unwrap();
    let output = package_doc(dir);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("wrote packages/x86_64/doc-1.0.0-r0.apk"),
        "{stdout}"
    );
    assert!(
        stdout.contains("indexed 1 package in packages/x86_64/APKINDEX.tar.gz"),
        "{stdout}"
    );
    let first = std::fs::read(dir.join("packages/x86_64/doc-1.0.0-r0.apk")).unwrap();
    // Readable by everyone, as a repository served over HTTP must be.
    for file in ["doc-1.0.0-r0.apk", "APKINDEX.tar.gz"] {
        let mode = std::fs::metadata(dir.join("packages/x86_64").join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{file}");
    }

    let output = index_doc(dir, &[]);
    assert!(
        !output.status.success(),
        "the output directory does not exist"
    );
    std::fs::create_dir(dir.join("other")).unwrap();
    let output = index_doc(
        dir,
        &["--description", "docs", "--source-date-epoch", "1700000000"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("signed with repo.rsa.pub"),
        "{}",
        text(&output.stdout)
    );
    assert!(dir.join("other/APKINDEX.tar.gz").is_file());

    // Packaging again with the same inputs gives the same bytes.
    let output = package_doc(dir);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        std::fs::read(dir.join("packages/x86_64/doc-1.0.0-r0.apk")).unwrap(),
        first
    );
}

#[test]
fn bad_inputs_exit_non_zero_and_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    openssl_key(dir, "repo.rsa");
    std::fs::create_dir(dir.join("stage")).unwrap();
    std::fs::write(
        dir.join("melange.yaml"),
        "package: {name: a, version: '1'}\npipeline:\n  - uses: go/build\n",
    )
    .unwrap();
    std::fs::write(dir.join("good.yaml"), "package: {name: a, version: '1'}\n").unwrap();
    std::fs::write(dir.join("not-a-key"), "hello\n").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "package",
                "melange.yaml",
                "--destdir",
                "stage",
                "-k",
                "repo.rsa",
            ],
            "melange.yaml: `pipeline` describe build steps",
        ),
        (
            &[
                "package",
                "missing.yaml",
                "--destdir",
                "stage",
                "-k",
                "repo.rsa",
            ],
            "missing.yaml",
        ),
        (
            &[
                "package",
                "good.yaml",
                "--destdir",
                "nowhere",
                "-k",
                "repo.rsa",
            ],
            "nowhere",
        ),
        (
            &[
                "package",
                "good.yaml",
                "--destdir",
                "stage",
                "-k",
                "not-a-key",
            ],
            "signing key not-a-key: not an RSA private key",
        ),
        (
            &["index", "good.yaml", "-k", "repo.rsa"],
            "good.yaml: not a valid APK package",
        ),
    ];
    for (args, expected) in cases {
        let output = securebuild(args, dir);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Nothing is written when the inputs are refused.
    assert!(!dir.join("packages").exists());
}

/// The example repository and its key, beside the workspace's crates.
fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// `securebuild resolve --arch x86_64 hello` against `repository`, with `extra` arguments and
/// a cache of its own; returns the failed run's stderr.
fn resolve_fails(dir: &Path, repository: &str, extra: &[&str]) -> String {
    let cache = dir.join("cache");
    let mut args = vec![
        "resolve",
        "--arch",
        "x86_64",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--repository",
        repository,
    ];
    args.extend_from_slice(extra);
    args.push("hello");
    let output = securebuild(&args, dir);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn a_malformed_index_line_is_named_with_its_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let index = dir.join("APKINDEX");
    std::fs::write(
        &index,
        "C:Q1bxdK3T4vHdcmqsXlMn0zi6MStXk=\nP:hello\nthis line has no field letter\nV:1.0-r0\n",
    )
    .unwrap();
    let stderr = resolve_fails(dir, index.to_str().unwrap(), &["--allow-untrusted"]);
    assert!(
        stderr.starts_with(&format!("securebuild: invalid index {}: ", index.display())),
        "{stderr}"
    );
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("this line has no field letter"), "{stderr}");
}

#[test]
fn an_unresolvable_host_is_reported_as_a_dns_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let stderr = resolve_fails(
        dir,
        "https://repo.does-not-exist.invalid/main",
        &["--allow-untrusted"],
    );
    assert!(
        stderr.starts_with(
            "securebuild: GET https://repo.does-not-exist.invalid/main/x86_64/APKINDEX.tar.gz failed: "
        ),
        "{stderr}"
    );
    assert!(stderr.contains("dns error"), "{stderr}");
}

/// Answers every connection on 127.0.0.1 with a TLS handshake presenting a self-signed
/// certificate (made by `openssl`); returns the port.
fn self_signed_tls_server(dir: &Path) -> u16 {
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "tls.key",
            "-out",
            "tls.crt",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let certificate = CertificateDer::from_pem_file(dir.join("tls.crt")).unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("tls.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certificate], key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    // The thread ends with the test process; each connection ends when the client gives up.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let Ok(connection) = rustls::ServerConnection::new(Arc::clone(&config)) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let _ = tls.read(&mut [0; 1]);
        }
    });
    port
}

#[test]
fn an_untrusted_certificate_is_reported_as_a_tls_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = self_signed_tls_server(dir);
    let url = format!("https://127.0.0.1:{port}/main");
    let stderr = resolve_fails(dir, &url, &["--allow-untrusted"]);
    assert!(
        stderr.starts_with(&format!(
            "securebuild: GET {url}/x86_64/APKINDEX.tar.gz failed: "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_index_is_reported_with_its_status() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let server = serve::ServedDir::start(dir.join("empty")).await.unwrap();
    let url = server.url("/main");
    let stderr = tokio::task::spawn_blocking({
        let url = url.clone();
        move || resolve_fails(&dir, &url, &["--allow-untrusted"])
    })
    .await
    .unwrap();
    assert_eq!(
        stderr.trim_end(),
        format!("securebuild: GET {url}/x86_64/APKINDEX.tar.gz failed: HTTP 404")
    );
}

#[test]
fn an_index_signed_by_another_key_is_refused_with_the_key_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let repo = examples().join("repo");
    let repo = repo.to_str().unwrap();
    // A key under another name: the index's signer is not trusted.
    openssl_key(dir, "other.rsa");
    public_key(dir, "other.rsa", "other.rsa.pub");
    let stderr = resolve_fails(dir, repo, &["--keyring", "other.rsa.pub"]);
    assert!(stderr.contains("x86_64/APKINDEX.tar.gz"), "{stderr}");
    assert!(
        stderr.contains("signed by untrusted key securebuild-example.rsa.pub"),
        "{stderr}"
    );
    // Another key under the signer's name: the signature does not verify.
    public_key(dir, "other.rsa", "securebuild-example.rsa.pub");
    let stderr = resolve_fails(dir, repo, &["--keyring", "securebuild-example.rsa.pub"]);
    assert!(
        stderr.contains("BAD signature by trusted key `securebuild-example.rsa.pub`"),
        "{stderr}"
    );
}

#[test]
fn a_failed_build_writes_the_whole_chain_to_its_result() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = examples().join("keys/securebuild-example.rsa.pub");
    std::fs::write(
        dir.join("image.yaml"),
        format!(
            "contents:\n  repositories: [https://repo.does-not-exist.invalid/main]\n  keyring: [{}]\n  packages: [hello]\narchs: [x86_64]\n",
            key.display()
        ),
    )
    .unwrap();
    let cache = dir.join("cache");
    let output = securebuild(
        &[
            "build",
            "image.yaml",
            "--output",
            "image.oci",
            "--result",
            "result.json",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        dir,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("dns error"), "{stderr}");
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["error"]["reason"], "FetchFailed", "{result}");
    let message = result["error"]["message"].as_str().unwrap();
    assert_eq!(
        format!("securebuild: {message}\n"),
        stderr,
        "the result carries what the CLI prints"
    );
}

/// Writes the public half of the private key `private` to `public`.
fn public_key(dir: &Path, private: &str, public: &str) {
    let output = Command::new("openssl")
        .args(["rsa", "-in", private, "-pubout", "-out", public])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
}
