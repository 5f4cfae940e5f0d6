//! apko configuration features end to end, from test-made signed packages: `include` chains,
//! `certificates` (inline and from providers, into CA bundles and a Java truststore),
//! `contents.runtime_keyring`, a `service-bundle` entrypoint and `layering`. Each image is
//! unpacked with umoci and its files compared with what apko's code writes for the same input
//! (`pkg/build/certificates.go`, `pkg/build/runtime_keyring.go`, `pkg/s6/supervision_tree.go`).

use std::path::{Path, PathBuf};

use securebuild_builder::image::jks::{self, Entry, KeyStore, TrustedCertificateEntry};
use securebuild_tests::apkgen::{PackageSpec, Repository, TestKey};
use serde_json::Value;

use crate::build_push::{digest_line, layer_entries, securebuild, skopeo, unpack};
use crate::workspace_root;

/// Self-signed test roots (`builder/src/image/testdata`) and the fingerprint of the first, the
/// SHA-256 of its DER.
fn certificate(name: &str) -> String {
    std::fs::read_to_string(
        workspace_root()
            .join("builder/src/image/testdata")
            .join(name),
    )
    .unwrap()
}
const X1: &str = "test-root-1.pem";
const X1_FINGERPRINT: &str = "b533734285f50a1a9da7149f6afcfccd880a99f3c097e8fc4489af719dbffc69";
const X2: &str = "test-root-2.pem";

/// The Java truststore `java-cacerts` installs: a trusted certificate `existing` (X2) and a
/// private key entry `server`, made with SecureBuild's own JKS codec (which `keytool` checks in
/// the unit tests of `image::jks`).
fn packaged_truststore() -> KeyStore {
    let der = |name| {
        securebuild_builder::image::certificates::parse_certificate(&certificate(name))
            .unwrap()
            .der
    };
    let mut store = KeyStore::new();
    store.insert(
        "existing",
        Entry::TrustedCertificate(TrustedCertificateEntry {
            creation_time: 1_600_000_000_123,
            certificate: jks::Certificate::x509(der(X2)),
        }),
    );
    store.insert(
        "server",
        Entry::PrivateKey(jks::PrivateKeyEntry {
            creation_time: 1_600_000_000_456,
            protected_key: b"an encrypted key stays as it is".to_vec(),
            chain: vec![jks::Certificate::x509(der(X1))],
        }),
    );
    store
}

/// A signed repository: a base with a CA bundle, two certificate providers, a Java truststore,
/// `s6` and `app`.
/// (A provider of a versioned `custom-ca-certificates=1.0`, which apko does not match, cannot
/// be installed next to these: apk lets only unversioned provides coexist. The unit tests of
/// `image::certificates` cover it.)
fn write_repo(dir: &Path) -> (PathBuf, PathBuf) {
    let key = TestKey::shared().unwrap();
    let certs = "usr/local/share/ca-certificates";
    let repo = Repository::new(&key)
        .package(
            PackageSpec::new("base", "1.0-r0")
                .builddate(1_750_000_000)
                .dir("etc", 0o755, 0, 0)
                .dir("etc/ssl", 0o755, 0, 0)
                .dir("etc/ssl/certs", 0o755, 0, 0)
                .file(
                    "etc/ssl/certs/ca-certificates.crt",
                    "# base bundle\n",
                    0o644,
                    0,
                    0,
                ),
        )
        .package(
            PackageSpec::new("custom-ca-certs-1", "1.0-r0")
                .builddate(1_750_000_000)
                .provide("custom-ca-certificates")
                .dir("usr/local/share/ca-certificates", 0o755, 0, 0)
                .file(format!("{certs}/cert-b.crt"), certificate(X2), 0o644, 0, 0)
                .file(format!("{certs}/README.md"), "not a cert\n", 0o644, 0, 0)
                .file(format!("{certs}/broken.pem"), "broken\n", 0o644, 0, 0),
        )
        .package(
            // Installed after custom-ca-certs-1, its file sorts first in the bundle.
            PackageSpec::new("custom-ca-certs-2", "1.0-r0")
                .builddate(1_750_000_000)
                .provide("custom-ca-certificates")
                .dir("usr/local/share/ca-certificates", 0o755, 0, 0)
                .file(format!("{certs}/cert-a.crt"), certificate(X1), 0o644, 0, 0),
        )
        .package(
            PackageSpec::new("java-cacerts", "1.0-r0")
                .builddate(1_750_000_000)
                .dir("etc/ssl/certs/java", 0o755, 0, 0)
                .file(
                    "etc/ssl/certs/java/cacerts",
                    packaged_truststore().encode("changeit").unwrap(),
                    0o644,
                    0,
                    0,
                ),
        )
        .package(
            PackageSpec::new("s6", "2.13-r0")
                .builddate(1_750_000_000)
                .dir("bin", 0o755, 0, 0)
                .file("bin/s6-svscan", "#!/bin/sh\n", 0o755, 0, 0),
        )
        .package(
            PackageSpec::new("app", "2.1.0-r1")
                .builddate(1_750_000_000)
                .dir("usr/bin", 0o755, 0, 0)
                .file("usr/bin/app", "app binary", 0o755, 0, 0),
        );
    let repo_dir = dir.join("repo");
    repo.write(&repo_dir).unwrap();
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key_path = key.write_public(&keys).unwrap();
    (repo_dir, key_path)
}

async fn build(config: &Path, output: &Path) -> String {
    let cache = output.with_extension("cache");
    let (ok, stdout, error) = securebuild(&[
        "build",
        config.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{error}");
    stdout
}

/// Every path of the amd64 layer with its mode: (path, mode).
fn modes(layout: &Path) -> Vec<(String, u32)> {
    layer_entries(layout, "amd64")
        .into_iter()
        .map(|(path, mode, ..)| (path.trim_end_matches('/').to_string(), mode))
        .collect()
}

#[tokio::test]
async fn include_chains_build_the_flat_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, key) = write_repo(tmp.path());
    let contents = format!(
        "contents:\n  repositories: [{}]\n  keyring: [{}]\n  packages: [base]\n",
        repo.display(),
        key.display()
    );
    std::fs::create_dir(tmp.path().join("shared")).unwrap();
    std::fs::write(
        tmp.path().join("shared/base.yaml"),
        format!("{contents}archs: [x86_64]\ncmd: base\nenvironment: {{A: base, B: base}}\n"),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("shared/middle.yaml"),
        "include: base.yaml\ncontents: {packages: [app]}\nenvironment: {B: middle}\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("top.yaml"),
        "include: shared/middle.yaml\nentrypoint: {command: /usr/bin/app}\n",
    )
    .unwrap();
    let flat = format!(
        "contents:\n  repositories: [{}]\n  keyring: [{}]\n  packages: [base, app]\narchs: [x86_64]\ncmd: base\nentrypoint: {{command: /usr/bin/app}}\nenvironment: {{A: base, B: middle}}\n",
        repo.display(),
        key.display()
    );
    std::fs::write(tmp.path().join("flat.yaml"), flat).unwrap();

    let included = build(&tmp.path().join("top.yaml"), &tmp.path().join("top.oci")).await;
    let flat = build(&tmp.path().join("flat.yaml"), &tmp.path().join("flat.oci")).await;
    assert_eq!(
        digest_line(&included, "index: "),
        digest_line(&flat, "index: ")
    );
    let rootfs = unpack(&tmp.path().join("top.oci"), "latest", "amd64", tmp.path());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/apk/world")).unwrap(),
        "app\nbase\n"
    );

    // A cycle names the files.
    std::fs::write(tmp.path().join("a.yaml"), "include: b.yaml\n").unwrap();
    std::fs::write(tmp.path().join("b.yaml"), "include: a.yaml\n").unwrap();
    let (ok, _, error) = securebuild(&[
        "build",
        tmp.path().join("a.yaml").to_str().unwrap(),
        "--output",
        tmp.path().join("a.oci").to_str().unwrap(),
    ])
    .await;
    assert!(!ok);
    assert!(error.starts_with("include cycle: "), "{error}");
    assert!(
        error.contains("a.yaml includes ") && error.contains("b.yaml includes "),
        "{error}"
    );
}

#[tokio::test]
async fn certificates_runtime_keys_and_services_are_written_as_apko_writes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, key) = write_repo(tmp.path());
    let mirror = TestKey::generate("mirror").unwrap().public_pem().unwrap();
    let indent = |text: &str| {
        text.lines()
            .map(|l| format!("        {l}\n"))
            .collect::<String>()
    };
    let config = format!(
        "contents:
  repositories: [{repo}]
  keyring: [{key}]
  packages: [base, custom-ca-certs-1, custom-ca-certs-2, app]
  runtime_repositories: [https://mirror.example.com/os]
  runtime_keyring:
    - name: mirror.rsa.pub
      content: |
{mirror}archs: [x86_64]
certificates:
  additional:
    - name: pretend-pear-x1
      content: |
        some text before the block
{x1}  providers: [custom-ca-certificates]
entrypoint:
  type: service-bundle
  services:
    app: /usr/bin/app --serve \"quoted arg\"
layering:
  strategy: origin
  budget: 2
",
        repo = repo.display(),
        key = key.display(),
        mirror = indent(&mirror),
        x1 = indent(&certificate(X1)),
    );
    let path = tmp.path().join("features.yaml");
    std::fs::write(&path, config).unwrap();
    let layout = tmp.path().join("features.oci");
    build(&path, &layout).await;
    let rootfs = unpack(&layout, "latest", "amd64", tmp.path());
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap();

    // certificates: the inline certificate as its own file, named by its DER's SHA-256; the
    // bundle gets the inline certificate, then the providers' valid files sorted by path
    // across packages, each followed by an empty line. README.md and broken.pem are skipped
    // (apko skips a provider's file that does not parse, without a word).
    let x1 = certificate(X1);
    let x2 = certificate(X2);
    assert_eq!(
        read(&format!(
            "usr/local/share/ca-certificates/pretend-pear-x1-{X1_FINGERPRINT}.crt"
        )),
        x1
    );
    assert_eq!(
        read("etc/ssl/certs/ca-certificates.crt"),
        format!("# base bundle\n{x1}\n{x1}\n{x2}\n")
    );
    assert_eq!(read("usr/local/share/ca-certificates/cert-b.crt"), x2);

    // runtime_keyring: next to the build key, not replacing it; the runtime repository listed.
    assert_eq!(read("etc/apk/keys/mirror.rsa.pub"), mirror);
    assert!(
        rootfs
            .join("etc/apk/keys")
            .join(key.file_name().unwrap())
            .is_file()
    );
    assert!(
        read("etc/apk/repositories").contains("https://mirror.example.com/os\n"),
        "{}",
        read("etc/apk/repositories")
    );

    // service-bundle: s6 installed, /sv/<name>/run an execline script, s6-svscan the entrypoint.
    assert_eq!(
        read("sv/app/run"),
        "#!/bin/execlineb\n/usr/bin/app --serve \"quoted arg\"\n"
    );
    assert!(read("etc/apk/world").lines().any(|l| l == "s6"));
    assert!(rootfs.join("bin/s6-svscan").is_file());
    let modes = modes(&layout);
    let mode = |p: &str| {
        modes
            .iter()
            .find(|(path, _)| path == p)
            .unwrap_or_else(|| panic!("{p} not in the layer"))
            .1
    };
    assert_eq!(mode("sv"), 0o777);
    assert_eq!(mode("sv/app"), 0o777);
    assert_eq!(mode("sv/app/run"), 0o755);
    assert_eq!(mode("etc/apk/keys/mirror.rsa.pub"), 0o644);
    assert_eq!(
        mode(&format!(
            "usr/local/share/ca-certificates/pretend-pear-x1-{X1_FINGERPRINT}.crt"
        )),
        0o644
    );
    let config: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        "--override-arch",
        "amd64",
        &format!("oci:{}:latest", layout.display()),
    ]))
    .unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/s6-svscan", "/sv"])
    );
    // `layering: {strategy: origin, budget: 2}`: two package layers, then the final layer.
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn certificates_are_added_to_the_java_truststore_as_apko_adds_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, key) = write_repo(tmp.path());
    let x1 = certificate(X1);
    let indented: String = x1.lines().map(|l| format!("        {l}\n")).collect();
    let config = format!(
        "contents:
  repositories: [{repo}]
  keyring: [{key}]
  packages: [base, java-cacerts, custom-ca-certs-1]
archs: [x86_64]
certificates:
  additional:
    - name: Pretend-Pear-X1
      content: |
{indented}  providers: [custom-ca-certificates]
",
        repo = repo.display(),
        key = key.display(),
    );
    let path = tmp.path().join("java.yaml");
    std::fs::write(&path, config).unwrap();
    let epoch = "1760000000";
    let mut digests = Vec::new();
    for run in ["a", "b"] {
        let layout = tmp.path().join(format!("java-{run}.oci"));
        let (ok, stdout, error) = securebuild(&[
            "build",
            path.to_str().unwrap(),
            "--output",
            layout.to_str().unwrap(),
            "--cache-dir",
            tmp.path().join(format!("cache-{run}")).to_str().unwrap(),
            "--source-date-epoch",
            epoch,
        ])
        .await;
        assert!(ok, "{error}");
        digests.push(digest_line(&stdout, "index: "));
    }
    assert_eq!(digests[0], digests[1], "two builds, one digest");

    let layout = tmp.path().join("java-a.oci");
    let rootfs = unpack(&layout, "latest", "amd64", tmp.path());
    let written = std::fs::read(rootfs.join("etc/ssl/certs/java/cacerts")).unwrap();
    let store = KeyStore::decode(&written, "changeit").unwrap();

    // The package's entries as they were; the inline certificate under `<name>-<sha256>`
    // lower-cased, the provider's (custom-ca-certs-1's cert-b.crt, X2) under `pkg-<sha256>`,
    // both created at the build time, in milliseconds.
    let x2_fingerprint =
        securebuild_builder::image::certificates::parse_certificate(&certificate(X2))
            .unwrap()
            .fingerprint;
    let packaged = packaged_truststore();
    let mut expected = packaged.clone();
    let added = |name: &str| TrustedCertificateEntry {
        creation_time: 1_760_000_000_000,
        certificate: jks::Certificate::x509(
            securebuild_builder::image::certificates::parse_certificate(&certificate(name))
                .unwrap()
                .der,
        ),
    };
    expected.insert(
        format!("pretend-pear-x1-{X1_FINGERPRINT}"),
        Entry::TrustedCertificate(added(X1)),
    );
    expected.insert(
        format!("pkg-{x2_fingerprint}"),
        Entry::TrustedCertificate(added(X2)),
    );
    assert_eq!(store, expected);
    assert_eq!(written, expected.encode("changeit").unwrap());
    assert_eq!(store.get(b"server"), packaged.get(b"server"));
    assert_eq!(
        store
            .entries()
            .map(|(alias, _)| alias.to_vec())
            .collect::<Vec<_>>(),
        [
            b"existing".to_vec(),
            format!("pkg-{x2_fingerprint}").into_bytes(),
            format!("pretend-pear-x1-{X1_FINGERPRINT}").into_bytes(),
            b"server".to_vec(),
        ]
    );
    // Java's own keytool reads it (and checks its digest with the password).
    let output = std::process::Command::new("keytool")
        .args(["-list", "-storepass", "changeit", "-keystore"])
        .arg(rootfs.join("etc/ssl/certs/java/cacerts"))
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run keytool ({error}): install a Java runtime (default-jre-headless)")
        });
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{listing}");
    assert!(
        listing.contains("Your keystore contains 4 entries"),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("pretend-pear-x1-{X1_FINGERPRINT}, ")),
        "{listing}"
    );
    assert!(listing.contains("server, "), "{listing}");

    // Its mode is the package's.
    let modes = modes(&layout);
    assert!(
        modes.contains(&("etc/ssl/certs/java/cacerts".to_string(), 0o644)),
        "{modes:?}"
    );
}

#[tokio::test]
async fn unsupported_and_invalid_fields_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, key) = write_repo(tmp.path());
    let head = format!(
        "contents:\n  repositories: [{}]\n  keyring: [{}]\n  packages: [base]\n",
        repo.display(),
        key.display()
    );
    for (extra, expected) in [
        (
            "  baseimage: {image: ./base, apkindex: ./index}\n",
            "`contents.baseimage` is not supported",
        ),
        ("format: erofs\n", "`format` is not supported"),
        (
            "layering: {strategy: size}\n",
            "unrecognized layering strategy `size`",
        ),
        (
            "certificates: {additional: [{name: bad, content: junk}]}\n",
            "certificate `bad` in certificates.additional is invalid",
        ),
        (
            "certificates: {additional: [{name: ../x, content: junk}]}\n",
            "`certificates.additional` entry `../x` has an invalid name",
        ),
        (
            "entrypoint: {type: oneshot}\n",
            "entrypoint type `oneshot` is not supported",
        ),
    ] {
        let path = tmp.path().join("refused.yaml");
        std::fs::write(&path, format!("{head}{extra}archs: [x86_64]\n")).unwrap();
        let (ok, _, error) = securebuild(&[
            "build",
            path.to_str().unwrap(),
            "--output",
            tmp.path().join("refused.oci").to_str().unwrap(),
            "--cache-dir",
            tmp.path().join("cache").to_str().unwrap(),
        ])
        .await;
        assert!(!ok, "{extra}");
        assert!(error.contains(expected), "{extra}: {error}");
    }
}
