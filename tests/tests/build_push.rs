//! `securebuild build` end to end: the offline example into an OCI layout checked by skopeo and
//! umoci, byte-identical rebuilds, pushes to a real `docker-registry` (anonymous and htpasswd)
//! with idempotent re-pushes, lockfiles, and hostile packages that must push nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Parser;
use securebuild_builder::attest::cosign::attestation_tag;
use securebuild_builder::cli::{Cli, Command as CliCommand};
use securebuild_registry::digest::sha256_digest;
use securebuild_tests::apkgen::{PackageSpec, Repository, TarEntry, TestKey};
use securebuild_tests::registry::TestRegistry;
use serde_json::Value;

use crate::{PYTHON_ENV, python, workspace_root};

/// Runs the CLI in-process with `args` (without the program name); returns (ok, stdout, error).
pub(crate) async fn securebuild(args: &[&str]) -> (bool, String, String) {
    let mut argv = vec!["securebuild"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    let result = match &cli.command {
        CliCommand::Build(args) => securebuild_builder::cli::build::run(args, &mut out).await,
        CliCommand::Lock(args) => securebuild_builder::cli::lock::run(args, &mut out).await,
        CliCommand::Resolve(args) => securebuild_builder::cli::resolve::run(args, &mut out).await,
        CliCommand::Verify(args) => securebuild_builder::cli::verify::run(args, &mut out).await,
        other => panic!("unexpected command {other:?}"),
    };
    let stdout = String::from_utf8(out).unwrap();
    match result {
        Ok(()) => (true, stdout, String::new()),
        Err(err) => (false, stdout, securebuild_builder::error::chain(&err)),
    }
}

pub(crate) fn digest_line(stdout: &str, prefix: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{stdout}"))
        .trim()
        .to_string()
}

pub(crate) fn skopeo(args: &[&str]) -> String {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed");
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Copies one platform of a layout to a single-manifest layout and unpacks it with umoci.
pub(crate) fn unpack(layout: &Path, tag: &str, arch: &str, into: &Path) -> PathBuf {
    let single = into.join(format!("single-{arch}"));
    skopeo(&[
        "copy",
        "-q",
        "--override-arch",
        arch,
        &format!("oci:{}:{tag}", layout.display()),
        &format!("oci:{}:{tag}", single.display()),
    ]);
    let bundle = into.join(format!("bundle-{arch}"));
    let output = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", single.display()))
        .arg(&bundle)
        .output()
        .expect("umoci is installed");
    assert!(
        output.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    bundle.join("rootfs")
}

/// The layer blobs (gzip-compressed tars), bottom first, of one platform (`amd64`, `arm64`, …)
/// of a layout.
pub(crate) fn layer_blobs(layout: &Path, arch: &str) -> Vec<PathBuf> {
    let read_json = |digest: &str| -> Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let outer: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let index = read_json(outer["manifests"][0]["digest"].as_str().unwrap());
    let manifest_digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = read_json(&manifest_digest);
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let digest = layer["digest"].as_str().unwrap();
            layout
                .join("blobs/sha256")
                .join(digest.strip_prefix("sha256:").unwrap())
        })
        .collect()
}

/// One tar entry of a layer: path (without a trailing `/`), mode, uid, gid, link target, and
/// whether it is a directory.
pub(crate) type TarListing = (String, u32, u64, u64, Option<String>, bool);

/// The entries of one layer blob, in tar order.
pub(crate) fn tar_entries(blob: &Path) -> Vec<TarListing> {
    let file = std::fs::File::open(blob).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                e.link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned()),
                h.entry_type() == tar::EntryType::Directory,
            )
        })
        .collect()
}

/// The layers of one platform stacked as a runtime stacks them (a later entry replaces an
/// earlier one and, unless both are directories, what was below it; `.wh.<name>` removes
/// `<name>`), in path order.
pub(crate) fn layer_entries(layout: &Path, arch: &str) -> Vec<TarListing> {
    let mut stacked: BTreeMap<String, TarListing> = BTreeMap::new();
    for blob in layer_blobs(layout, arch) {
        for entry in tar_entries(&blob) {
            let path = entry.0.clone();
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            let removed = name.strip_prefix(".wh.").map(|gone| {
                if dir.is_empty() {
                    gone.to_string()
                } else {
                    format!("{dir}/{gone}")
                }
            });
            let replaced = removed.clone().unwrap_or_else(|| path.clone());
            let directory_over_directory =
                entry.5 && stacked.get(&replaced).is_some_and(|old| old.5);
            if removed.is_some() || !directory_over_directory {
                let prefix = format!("{replaced}/");
                stacked.retain(|p, _| !p.starts_with(&prefix));
            }
            match removed {
                Some(gone) => {
                    stacked.remove(&gone);
                }
                None => {
                    stacked.insert(path, entry);
                }
            }
        }
    }
    stacked.into_values().collect()
}

#[tokio::test]
async fn the_offline_example_builds_reproducibly_and_unpacks() {
    let example = workspace_root().join("examples/hello.apko.yaml");
    let tmp = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for run in 0..2 {
        let output = tmp.path().join(format!("hello-{run}.oci"));
        let cache = tmp.path().join(format!("cache-{run}"));
        let (ok, stdout, error) = securebuild(&[
            "build",
            example.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--tag",
            "latest",
            "--tag",
            "{{ version \"hello\" }}",
        ])
        .await;
        assert!(ok, "{error}");
        digests.push((
            digest_line(&stdout, "index: "),
            digest_line(&stdout, "linux/amd64: "),
            digest_line(&stdout, "linux/arm64: "),
        ));
    }
    assert_eq!(
        digests[0], digests[1],
        "two builds of the same inputs differ"
    );

    let layout = tmp.path().join("hello-0.oci");
    // The index has one manifest per architecture with the right platform.
    let raw: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}:latest", layout.display()),
    ]))
    .unwrap();
    let platforms: Vec<(String, String)> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["os"].as_str().unwrap().to_string(),
                m["platform"]["architecture"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        [
            ("linux".into(), "amd64".into()),
            ("linux".into(), "arm64".into())
        ]
    );
    // Both tags are in the layout.
    let tagged = skopeo(&["inspect", &format!("oci:{}:1.2.0", layout.display())]);
    assert!(tagged.contains("\"Architecture\""), "{tagged}");

    // umoci unpacks what the packages declared.
    let rootfs = unpack(&layout, "latest", "amd64", tmp.path());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("usr/bin/hello")).unwrap(),
        "#!/bin/sh\n# Prints a greeting.\necho \"hello, ${1:-world}\"\n"
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("usr/lib/libhello.so.1")).unwrap(),
        PathBuf::from("libhello.so.1.2.0")
    );
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    assert!(rootfs.join("home/nonroot/data").is_dir());
    // The apk database lists every package, so scanners see them.
    let installed = std::fs::read_to_string(rootfs.join("usr/lib/apk/db/installed")).unwrap();
    for name in [
        "P:example-base",
        "P:libhello",
        "P:hello",
        "V:1.2.0-r0",
        "R:hello",
    ] {
        assert!(
            installed.contains(name),
            "{name} missing from the apk database"
        );
    }
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/apk/world")).unwrap(),
        "example-base\nhello\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/apk/arch")).unwrap(),
        "x86_64\n"
    );
    assert!(
        rootfs
            .join("etc/apk/keys/securebuild-example.rsa.pub")
            .is_file()
    );

    // Owners and modes exactly as declared, from the layer itself (umoci --rootless maps
    // owners to the caller).
    let entries = layer_entries(&layout, "amd64");
    let find = |path: &str| {
        entries
            .iter()
            .find(|e| e.0.trim_end_matches('/') == path)
            .unwrap_or_else(|| panic!("{path} not in the layer"))
            .clone()
    };
    assert_eq!(find("tmp").1, 0o1777);
    assert_eq!(find("root").1, 0o700);
    assert_eq!(find("usr/bin/hello").1, 0o755);
    let data = find("home/nonroot/data");
    assert_eq!((data.1, data.2, data.3), (0o750, 65532, 65532));
    assert_eq!(
        find("usr/lib/libhello.so.1").4.as_deref(),
        Some("libhello.so.1.2.0")
    );
    // The layer the builder writes lists its entries in path order.
    let blobs = layer_blobs(&layout, "amd64");
    let final_layer = tar_entries(blobs.last().unwrap());
    let paths: Vec<&str> = final_layer.iter().map(|e| e.0.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "layer entries are written in path order");
}

#[tokio::test]
async fn lockfile_builds_exactly_the_locked_packages() {
    let example = workspace_root().join("examples/hello.apko.yaml");
    let tmp = tempfile::tempdir().unwrap();
    let lock = tmp.path().join("hello.lock.json");
    let cache = tmp.path().join("cache");
    let (ok, _, error) = securebuild(&[
        "lock",
        example.to_str().unwrap(),
        "-o",
        lock.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{error}");
    let locked: Value = serde_json::from_str(&std::fs::read_to_string(&lock).unwrap()).unwrap();
    assert_eq!(locked["version"], "v1");
    let packages = locked["contents"]["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 6, "3 packages for each of 2 architectures");
    for package in packages {
        assert!(
            package["control"]["range"]
                .as_str()
                .unwrap()
                .starts_with("bytes=")
        );
        assert!(
            package["data"]["checksum"]
                .as_str()
                .unwrap()
                .starts_with("sha256-")
        );
        assert!(package["checksum"].as_str().unwrap().starts_with("Q1"));
    }

    let build = |output: PathBuf, with_lock: bool| {
        let example = example.clone();
        let lock = lock.clone();
        let cache = cache.clone();
        async move {
            let mut args = vec![
                "build".to_string(),
                example.to_str().unwrap().to_string(),
                "--output".into(),
                output.to_str().unwrap().to_string(),
                "--cache-dir".into(),
                cache.to_str().unwrap().to_string(),
            ];
            if with_lock {
                args.push("--lockfile".into());
                args.push(lock.to_str().unwrap().to_string());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            securebuild(&args).await
        }
    };
    let (ok, free, error) = build(tmp.path().join("free.oci"), false).await;
    assert!(ok, "{error}");
    let (ok, pinned, error) = build(tmp.path().join("locked.oci"), true).await;
    assert!(ok, "{error}");
    assert_eq!(
        digest_line(&free, "index: "),
        digest_line(&pinned, "index: ")
    );
}

/// A signed repository with `app` and, optionally, a hostile package, served from a temp dir.
fn write_repo(dir: &Path, hostile: bool) -> (PathBuf, PathBuf) {
    let key = TestKey::shared().unwrap();
    let mut repo = Repository::new(&key).package(
        PackageSpec::new("app", "2.1.0-r1")
            .builddate(1_750_000_000)
            .dir("usr/bin", 0o755, 0, 0)
            .file("usr/bin/app", "app binary", 0o755, 0, 0),
    );
    if hostile {
        repo = repo.package(
            PackageSpec::new("evil", "1.0-r0")
                .builddate(1_750_000_000)
                .raw_entry(TarEntry::file(
                    "../../etc/cron.d/evil",
                    "* * * * * root sh\n",
                    0o644,
                )),
        );
    }
    let repo_dir = dir.join("repo");
    repo.write(&repo_dir).unwrap();
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key_path = key.write_public(&keys).unwrap();
    (repo_dir, key_path)
}

fn write_config(dir: &Path, repo: &Path, key: &Path, packages: &[&str]) -> PathBuf {
    let config = format!(
        "contents:\n  repositories: [{}]\n  keyring: [{}]\n  packages: [{}]\narchs: [x86_64]\nentrypoint: {{command: /usr/bin/app}}\n",
        repo.display(),
        key.display(),
        packages.join(", ")
    );
    let path = dir.join("app.apko.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test]
async fn push_then_push_again_uploads_nothing() {
    let registry = TestRegistry::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, key) = write_repo(tmp.path(), false);
    let config = write_config(tmp.path(), &repo, &key, &["app"]);
    let target = format!("{}/team/app", registry.host());
    let result = tmp.path().join("result.json");
    let push = || {
        let config = config.clone();
        let target = target.clone();
        let result = result.clone();
        let cache = tmp.path().join("cache");
        async move {
            securebuild(&[
                "build",
                config.to_str().unwrap(),
                "--push",
                &target,
                "--tag",
                "{{ version \"app\" }}",
                "--tag",
                "stable",
                "--result",
                result.to_str().unwrap(),
                "--cache-dir",
                cache.to_str().unwrap(),
            ])
            .await
        }
    };
    let (ok, first, error) = push().await;
    assert!(ok, "{error}");
    // The package's layer, the final layer and the config.
    assert!(first.contains("3 blobs uploaded"), "{first}");
    let index = digest_line(&first, "index: ");
    let (ok, second, error) = push().await;
    assert!(ok, "{error}");
    assert!(second.contains("0 blobs uploaded"), "{second}");
    assert_eq!(digest_line(&second, "index: "), index);

    // Every tag resolves to the index; skopeo reads it back.
    for tag in ["latest", "2.1.0", "stable"] {
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{target}:{tag}"),
        ]);
        assert_eq!(sha256_digest(raw.as_bytes()), index, "tag {tag}");
    }
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(result["image"]["digest"], index.as_str());
    assert_eq!(result["image"]["reference"], format!("{target}@{index}"));
    assert_eq!(result["image"]["packages"], 1);
    assert_eq!(
        result["image"]["tags"],
        serde_json::json!(["2.1.0", "stable"])
    );
}

#[tokio::test]
async fn push_with_htpasswd_credentials() {
    let registry = TestRegistry::start_with_auth("builder", "s3cret").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, key) = write_repo(tmp.path(), false);
    let config = write_config(tmp.path(), &repo, &key, &["app"]);
    let target = format!("{}/team/app", registry.host());
    let cache = tmp.path().join("cache");
    let docker = tmp.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let docker_config = registry.docker_config_json(&docker).unwrap();

    let (ok, _, error) = securebuild(&[
        "build",
        config.to_str().unwrap(),
        "--push",
        &target,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--registry-config",
        tmp.path().join("missing-config.json").to_str().unwrap(),
    ])
    .await;
    assert!(!ok, "pushing without credentials must fail");
    assert!(!error.is_empty());

    let (ok, stdout, error) = securebuild(&[
        "build",
        config.to_str().unwrap(),
        "--push",
        &target,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--registry-config",
        docker_config.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{error}");
    assert!(stdout.contains("pushed "), "{stdout}");
}

#[tokio::test]
async fn hostile_packages_fail_the_build_and_push_nothing() {
    let registry = TestRegistry::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (repo, key) = write_repo(tmp.path(), true);
    let config = write_config(tmp.path(), &repo, &key, &["app", "evil"]);
    let target = format!("{}/team/evil", registry.host());
    let result = tmp.path().join("result.json");
    let (ok, stdout, error) = securebuild(&[
        "build",
        config.to_str().unwrap(),
        "--push",
        &target,
        "--result",
        result.to_str().unwrap(),
        "--cache-dir",
        tmp.path().join("cache").to_str().unwrap(),
    ])
    .await;
    assert!(!ok, "{stdout}");
    assert!(error.contains("evil-1.0-r0"), "{error}");
    let failure: Value = serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(failure["error"]["reason"], "PackageVerificationFailed");
    // The repository does not exist in the registry: nothing was pushed.
    let status = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/v2/team/evil/tags/list", registry.url()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "404");
}

#[tokio::test]
async fn unsatisfiable_requests_name_the_package() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, key) = write_repo(tmp.path(), false);
    let (ok, _, error) = securebuild(&[
        "resolve",
        "--repository",
        repo.to_str().unwrap(),
        "--keyring",
        key.to_str().unwrap(),
        "--arch",
        "x86_64",
        "app>3",
    ])
    .await;
    assert!(!ok);
    assert!(error.contains("unable to select packages"), "{error}");
    assert!(error.contains("app"), "{error}");
}

/// Makes an ECDSA P-256 key pair with Python's `cryptography` (an independent implementation):
/// `<name>.key` (PKCS#8 PEM) and `<name>.pub` (SPKI PEM) in `dir`.
fn generate_key_pair(python: &str, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let output = Command::new(python)
        .arg("-c")
        .arg(
            "import sys\n\
             from cryptography.hazmat.primitives.asymmetric import ec\n\
             from cryptography.hazmat.primitives import serialization as s\n\
             k = ec.generate_private_key(ec.SECP256R1())\n\
             open(sys.argv[1], 'wb').write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))\n\
             open(sys.argv[2], 'wb').write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))\n",
        )
        .arg(&private)
        .arg(&public)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (set {PYTHON_ENV}): {e}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (private, public)
}

/// Runs `securebuild verify` in-process.
async fn verify(args: &[&str]) -> (bool, String, String) {
    securebuild(&[&["verify"], args].concat()).await
}

/// Fetches a blob from the test registry.
fn registry_blob(registry: &TestRegistry, repository: &str, digest: &str) -> Vec<u8> {
    let output = Command::new("curl")
        .args(["-sf"])
        .arg(format!("{}/v2/{repository}/blobs/{digest}", registry.url()))
        .output()
        .unwrap();
    assert!(output.status.success(), "fetching {digest}");
    output.stdout
}

/// Fetches a manifest by tag from the test registry.
fn registry_manifest(registry: &TestRegistry, repository: &str, tag: &str) -> Value {
    let output = Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!(
            "{}/v2/{repository}/manifests/{tag}",
            registry.url()
        ))
        .output()
        .unwrap();
    assert!(output.status.success(), "fetching manifest {tag}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The in-toto statement in the DSSE envelope stored as blob `digest`.
fn registry_statement(registry: &TestRegistry, repository: &str, digest: &str) -> Value {
    let envelope: Value =
        serde_json::from_slice(&registry_blob(registry, repository, digest)).unwrap();
    let payload = BASE64
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[tokio::test]
async fn signed_builds_carry_provenance_and_an_sbom_that_verifiers_accept() {
    let registry = TestRegistry::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let python = python();
    let (private_key, key) = generate_key_pair(&python, tmp.path(), "cosign");

    let example = workspace_root().join("examples/hello.apko.yaml");
    let target = format!("{}/team/hello", registry.host());
    let (ok, stdout, error) = securebuild(&[
        "build",
        example.to_str().unwrap(),
        "--push",
        &target,
        "--cache-dir",
        tmp.path().join("cache").to_str().unwrap(),
        "--sign-key",
        private_key.to_str().unwrap(),
        "--sbom",
        "--provenance",
    ])
    .await;
    assert!(ok, "{error}");
    let index = digest_line(&stdout, "index: ");
    let amd64 = digest_line(&stdout, "linux/amd64: ");

    let reference = format!("{target}@{index}");
    let (ok, report, error) = verify(&[
        &reference,
        "--key",
        key.to_str().unwrap(),
        "--attestation",
        "slsaprovenance",
        "--attestation",
        "spdx",
    ])
    .await;
    assert!(ok, "{error}");
    assert!(
        report.contains("https://slsa.dev/provenance/v1"),
        "{report}"
    );

    // The provenance lists every package with its digest and purl, every index and the key.
    let manifest = registry_manifest(&registry, "team/hello", &attestation_tag(&index).unwrap());
    let mut predicates = BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let statement =
            registry_statement(&registry, "team/hello", layer["digest"].as_str().unwrap());
        predicates.insert(
            statement["predicateType"].as_str().unwrap().to_string(),
            statement,
        );
    }
    let provenance = &predicates["https://slsa.dev/provenance/v1"];
    let dependencies = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    for name in ["hello", "libhello", "example-base"] {
        let package = dependencies
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from provenance"));
        assert!(
            package["uri"]
                .as_str()
                .unwrap()
                .starts_with("pkg:apk/securebuild-example/"),
            "{package}"
        );
        assert_eq!(package["digest"]["sha256"].as_str().unwrap().len(), 64);
    }
    assert!(dependencies.iter().any(|d| d["name"] == "APKINDEX.tar.gz"));
    assert_eq!(
        provenance["predicate"]["buildDefinition"]["externalParameters"]["target"]["repository"],
        target.as_str()
    );

    // The platform SBOM is valid SPDX 2.3 for pyspdxtools.
    let manifest = registry_manifest(&registry, "team/hello", &attestation_tag(&amd64).unwrap());
    let statement = registry_statement(
        &registry,
        "team/hello",
        manifest["layers"][0]["digest"].as_str().unwrap(),
    );
    assert_eq!(statement["predicateType"], "https://spdx.dev/Document");
    let spdx_path = tmp.path().join("sbom.spdx.json");
    std::fs::write(
        &spdx_path,
        serde_json::to_vec(&statement["predicate"]).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = statement["predicate"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["hello", "libhello", "example-base"] {
        assert!(
            names.contains(&name),
            "{name} missing from the SBOM: {names:?}"
        );
    }
    let check = Command::new(&python)
        .args(["-m", "spdx_tools.spdx.clitools.pyspdxtools", "-i"])
        .arg(&spdx_path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "pyspdxtools rejected the SBOM: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The wrong key fails verification.
    let (_, other) = generate_key_pair(&python, tmp.path(), "other");
    let (ok, _, _) = verify(&[&reference, "--key", other.to_str().unwrap()]).await;
    assert!(!ok, "a signature made with another key must not verify");
}
