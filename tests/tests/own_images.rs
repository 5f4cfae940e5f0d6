//! SecureBuild builds its own images: `images/build-images.sh` packages the real `securebuild`,
//! `securebuild-operator` and `securebuild-proxy` binaries of this workspace as signed APKs
//! with `securebuild package`, builds the three images from them with `securebuild build`
//! (Wolfi replaced by stand-in packages made from this machine's own glibc and libgcc, with the
//! same `securebuild package`), pushes them to a real `docker-registry`, and signs and attests
//! them.
//! The images are then read back with skopeo and umoci, and the binaries inside run with the
//! image's own loader and libraries. The packages are checked independently with Python's
//! `cryptography`, `tarfile` and `hashlib`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser as _;
use securebuild_builder::attest::keys::SigningKey as CosignKey;
use securebuild_builder::cli::{Cli, Command as CliCommand};
use securebuild_builder::elf;
use securebuild_builder::result::BuildResult;
use securebuild_crds::ImageConfiguration;
use securebuild_tests::registry::TestRegistry;
use serde_json::Value;

use crate::support::{entry, inspect};
use crate::workspace_root;

/// The images `build-images.sh` builds, each named after its binary and package (sorted, as
/// the package index lists them).
const IMAGES: [&str; 3] = ["securebuild", "securebuild-operator", "securebuild-proxy"];
const PACKAGE_KEY_FILE: &str = "securebuild-packages.rsa";
const SOURCE_DATE_EPOCH: &str = "1750000000";
const COSIGN_PASSWORD: &str = "correct horse battery staple";

/// The workspace's own binaries, built next to this test by `cargo test --workspace`.
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let binary = profile_dir.join(name);
    assert!(
        binary.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (which builds every binary) \
         or `cargo build --bins` first",
        binary.display()
    );
    binary
}

fn apk_arch() -> &'static str {
    securebuild_builder::resolve::host_arch()
}

fn rust_target() -> String {
    format!("{}-unknown-linux-gnu", apk_arch())
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Where this machine keeps a shared library the binaries need.
fn host_library(name: &str) -> PathBuf {
    let multiarch = format!("{}-linux-gnu", apk_arch());
    let dirs = [
        format!("/lib/{multiarch}"),
        format!("/usr/lib/{multiarch}"),
        "/lib64".to_string(),
        "/usr/lib64".to_string(),
        "/lib".to_string(),
        "/usr/lib".to_string(),
    ];
    dirs.iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{name} not found on this machine"))
}

/// Copies a file (following links) into `root/relative` with `mode`.
fn install(source: &Path, root: &Path, relative: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let target = root.join(relative);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(source, &target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write(root: &Path, relative: &str, contents: &str) {
    let target = root.join(relative);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(target, contents).unwrap();
}

fn package(config: &str, destdir: &Path, key: &Path, output: &Path) -> String {
    let config_file = destdir.with_extension("yaml");
    std::fs::write(&config_file, config).unwrap();
    run(Command::new(workspace_binary("securebuild"))
        .arg("package")
        .arg(&config_file)
        .arg("--destdir")
        .arg(destdir)
        .args(["--arch", apk_arch(), "--signing-key"])
        .arg(key)
        .arg("--output")
        .arg(output)
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH))
}

fn rsa_key(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join(name);
    run(Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048"));
    key
}

/// Stand-ins for the Wolfi packages: this machine's loader, libc and libgcc_s (whatever the
/// binaries need, found through their `DT_NEEDED`), a base layout and a CA bundle, each made
/// with `securebuild package` so that their `so:` provides come from the same analysis.
fn wolfi_stand_in(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rsa_key(&dir.join("keys"), "wolfi-signing.rsa");
    let repository = dir.join("repository");
    let stage = dir.join("stage");

    let mut needed = std::collections::BTreeSet::new();
    let mut interpreter = None;
    for binary in IMAGES {
        let file = std::fs::File::open(workspace_binary(binary)).unwrap();
        let parsed = elf::read_elf(&file).unwrap().expect("an ELF binary");
        needed.extend(parsed.needed);
        interpreter = parsed.interpreter.or(interpreter);
    }
    let interpreter = interpreter.expect("dynamically linked binaries");
    let glibc = stage.join("glibc");
    install(
        Path::new(&interpreter),
        &glibc,
        interpreter.trim_start_matches('/'),
        0o755,
    );
    let libgcc = stage.join("libgcc");
    std::fs::create_dir_all(&libgcc).unwrap();
    for library in &needed {
        let root = if library.starts_with("libgcc_s") {
            &libgcc
        } else {
            &glibc
        };
        install(
            &host_library(library),
            root,
            &format!("usr/lib/{library}"),
            0o755,
        );
    }
    let output = package(
        "package: {name: glibc, version: '2.41', epoch: 5, copyright: [{license: LGPL-2.1-or-later}]}\n",
        &glibc,
        &key,
        &repository,
    );
    assert!(output.contains("provides = so:libc.so.6=6"), "{output}");
    if needed.iter().any(|l| l.starts_with("libgcc_s")) {
        let output = package(
            "package: {name: libgcc, version: 15.1.0, epoch: 1, copyright: [{license: GPL-3.0-or-later WITH GCC-exception-3.1}]}\n",
            &libgcc,
            &key,
            &repository,
        );
        assert!(output.contains("provides = so:libgcc_s.so.1=1"), "{output}");
        assert!(output.contains("depend = so:libc.so.6"), "{output}");
    }

    let baselayout = stage.join("wolfi-baselayout");
    write(
        &baselayout,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/ash\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
    );
    write(&baselayout, "etc/group", "root:x:0:root\nnobody:x:65534:\n");
    write(
        &baselayout,
        "etc/os-release",
        "ID=wolfi\nNAME=\"Wolfi\"\nPRETTY_NAME=\"Wolfi\"\nVERSION_ID=\"20230201\"\n",
    );
    std::fs::create_dir_all(baselayout.join("home")).unwrap();
    package(
        "package: {name: wolfi-baselayout, version: '20230201', epoch: 20, copyright: [{license: MIT}]}\n",
        &baselayout,
        &key,
        &repository,
    );
    let certificates = stage.join("ca-certificates-bundle");
    write(
        &certificates,
        "etc/ssl/certs/ca-certificates.crt",
        "-----BEGIN CERTIFICATE-----\n",
    );
    package(
        "package: {name: ca-certificates-bundle, version: '20250619', epoch: 1, copyright: [{license: MPL-2.0}]}\n",
        &certificates,
        &key,
        &repository,
    );
    let public = dir.join("keys/wolfi-signing.rsa.pub");
    run(Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public));
    (repository, public)
}

/// The image configurations and package descriptions of `images/`, with Wolfi's https
/// repository and key replaced by the stand-ins.
fn offline_configs(config_dir: &Path, wolfi: &Path, wolfi_key: &Path) {
    std::fs::create_dir_all(config_dir).unwrap();
    let images = workspace_root().join("images");
    for image in IMAGES {
        let package = format!("{image}.package.yaml");
        std::fs::copy(images.join(&package), config_dir.join(&package)).unwrap();
        let apko = format!("{image}.apko.yaml");
        let text = std::fs::read_to_string(images.join(&apko)).unwrap();
        let mut config = ImageConfiguration::from_yaml(&text).unwrap();
        let remote = |entry: &String| entry.starts_with("https://");
        assert_eq!(
            config
                .contents
                .repositories
                .iter()
                .filter(|e| remote(e))
                .count(),
            1,
            "{apko}: one remote repository (Wolfi)"
        );
        for entry in config
            .contents
            .repositories
            .iter_mut()
            .filter(|e| remote(e))
        {
            *entry = wolfi.display().to_string();
        }
        for entry in config.contents.keyring.iter_mut().filter(|e| remote(e)) {
            *entry = wolfi_key.display().to_string();
        }
        std::fs::write(config_dir.join(&apko), config.to_yaml().unwrap()).unwrap();
    }
}

/// Runs an image's binary with the image's own loader and libraries, and checks with the
/// loader's own trace (`LD_DEBUG=libs`) that every library it initialised came from the image.
fn run_in_rootfs(rootfs: &Path, interpreter: &str, binary: &str, args: &[&str]) -> String {
    let loader = rootfs.join(interpreter.trim_start_matches('/'));
    let output = Command::new(&loader)
        .arg("--inhibit-cache")
        .arg("--library-path")
        .arg(rootfs.join("usr/lib"))
        .arg(rootfs.join("usr/bin").join(binary))
        .args(args)
        .env("LD_DEBUG", "libs")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", loader.display()));
    let trace = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{binary} {args:?}: {trace}");
    let initialised: Vec<&str> = trace
        .lines()
        .filter_map(|line| {
            line.split_once("calling init: ")
                .map(|(_, path)| path.trim())
        })
        .collect();
    assert!(initialised.len() >= 2, "{trace}");
    let root = rootfs.to_str().unwrap();
    for path in &initialised {
        assert!(
            path.starts_with(root),
            "{binary} loaded {path} from outside the image:\n{trace}"
        );
    }
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn securebuild_builds_signs_and_runs_its_own_images() {
    let registry = TestRegistry::start().expect("docker-registry starts");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The release layout the script reads: BIN_DIR/<rust target>/release/<binary>.
    let bin_dir = dir.join("target");
    let release = bin_dir.join(rust_target()).join("release");
    std::fs::create_dir_all(&release).unwrap();
    for binary in IMAGES {
        std::os::unix::fs::symlink(workspace_binary(binary), release.join(binary)).unwrap();
    }
    let (wolfi, wolfi_key) = wolfi_stand_in(&dir.join("wolfi"));
    let config_dir = dir.join("images");
    offline_configs(&config_dir, &wolfi, &wolfi_key);
    let package_key = rsa_key(&dir.join("package-key"), PACKAGE_KEY_FILE);
    let cosign = CosignKey::generate().unwrap();
    let cosign_key = dir.join("cosign.key");
    std::fs::write(
        &cosign_key,
        cosign.to_encrypted_pem(COSIGN_PASSWORD.as_bytes()).unwrap(),
    )
    .unwrap();
    let cosign_pub = dir.join("cosign.pub");
    std::fs::write(&cosign_pub, cosign.verifying_key().to_pem().unwrap()).unwrap();

    let results = dir.join("results");
    let prefix = format!("{}/securebuild", registry.host());
    let output = run(Command::new("bash")
        .arg(workspace_root().join("images/build-images.sh"))
        .arg(&prefix)
        .env("PACKAGE_KEY", &package_key)
        .env("COSIGN_KEY", &cosign_key)
        .env("COSIGN_PASSWORD", COSIGN_PASSWORD)
        .env("ARCHS", apk_arch())
        .env("BIN_DIR", &bin_dir)
        .env("CONFIG_DIR", &config_dir)
        .env("RESULT_DIR", &results)
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .env("SECUREBUILD_CACHE_DIR", dir.join("cache"))
        .env("DOCKER_CONFIG", dir.join("docker"))
        .env_remove("SECUREBUILD"));

    let version = crate::container_images::workspace_field("version");
    let interpreter = {
        let file = std::fs::File::open(workspace_binary("securebuild")).unwrap();
        elf::read_elf(&file).unwrap().unwrap().interpreter.unwrap()
    };
    let loader_name = Path::new(&interpreter)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let packages = config_dir.join("packages");
    let package_public = packages.join(format!("{PACKAGE_KEY_FILE}.pub"));
    assert!(package_public.is_file(), "{output}");

    for image in IMAGES {
        // The package: signed with the package key (checked by Python's cryptography), its
        // datahash over the data member, and so: dependencies read from the binary.
        let apk = packages
            .join(apk_arch())
            .join(format!("{image}-{version}-r0.apk"));
        let inspected = inspect(&apk, Some(&package_public));
        let signature = &inspected["signature"];
        assert_eq!(
            signature["name"],
            format!(".SIGN.RSA256.{PACKAGE_KEY_FILE}.pub"),
            "{image}"
        );
        assert_eq!(signature["valid"], true, "{image}: the package signature");
        let members = inspected["members"].as_array().unwrap();
        assert_eq!(members.len(), 3, "{image}: signature, control, data");
        let pkginfo = entry(&members[1], ".PKGINFO")["text"]
            .as_str()
            .unwrap()
            .to_string();
        let values = |key: &str| -> Vec<String> {
            pkginfo
                .lines()
                .filter_map(|line| line.strip_prefix(&format!("{key} = ")))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(values("pkgname"), [image]);
        assert_eq!(values("pkgver"), [format!("{version}-r0")]);
        assert_eq!(values("arch"), [apk_arch()]);
        assert_eq!(values("builddate"), [SOURCE_DATE_EPOCH]);
        assert_eq!(values("license"), ["Apache-2.0"]);
        assert_eq!(values("datahash"), [members[2]["sha256"].as_str().unwrap()]);
        let depends = values("depend");
        for expected in [
            "ca-certificates-bundle".to_string(),
            "so:libc.so.6".to_string(),
            format!("so:{loader_name}"),
        ] {
            assert!(depends.contains(&expected), "{image}: {depends:?}");
        }
        assert_eq!(
            values("provides"),
            [format!("cmd:{image}={version}-r0")],
            "{image}"
        );

        // The image: pushed, tagged with the version, signed, with SBOMs and provenance.
        let result: BuildResult = serde_json::from_slice(
            &std::fs::read(results.join(format!("{image}.result.json"))).unwrap(),
        )
        .unwrap();
        let built = result.image.unwrap_or_else(|| panic!("{image}: {output}"));
        assert_eq!(built.tags, std::slice::from_ref(&version));
        let reference = format!("{prefix}/{image}@{}", built.digest);
        let cli = Cli::try_parse_from([
            "securebuild",
            "verify",
            &reference,
            "--key",
            cosign_pub.to_str().unwrap(),
            "--attestation",
            "slsaprovenance",
            "--attestation",
            "spdx",
        ])
        .unwrap();
        let CliCommand::Verify(args) = &cli.command else {
            unreachable!()
        };
        let mut verified = Vec::new();
        securebuild_builder::cli::verify::run(args, &mut verified)
            .await
            .unwrap_or_else(|e| panic!("{image}: verify: {e}"));

        // Read back by skopeo, unpacked by umoci, run with the image's own libraries.
        let tagged = format!("docker://{prefix}/{image}:{version}");
        let config: Value = serde_json::from_str(&run(Command::new("skopeo").args([
            "inspect",
            "--config",
            "--tls-verify=false",
            &tagged,
        ])))
        .unwrap();
        assert_eq!(config["config"]["User"], "65532", "{image}");
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!([format!("/usr/bin/{image}")]),
            "{image}"
        );
        let layout = dir.join(format!("{image}.oci"));
        run(Command::new("skopeo").args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            &tagged,
            &format!("oci:{}:{version}", layout.display()),
        ]));
        let bundle = dir.join(format!("{image}.bundle"));
        run(Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{version}", layout.display()))
            .arg(&bundle));
        let rootfs = bundle.join("rootfs");
        let printed = run_in_rootfs(&rootfs, &interpreter, image, &["--version"]);
        assert_eq!(printed.trim(), format!("{image} {version}"), "{image}");
        let installed = std::fs::read_to_string(rootfs.join("usr/lib/apk/db/installed")).unwrap();
        let names: Vec<&str> = installed
            .lines()
            .filter_map(|l| l.strip_prefix("P:"))
            .collect();
        for package in [image, "glibc", "wolfi-baselayout", "ca-certificates-bundle"] {
            assert!(names.contains(&package), "{image}: {names:?}");
        }
        let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
        let nonroot = passwd
            .lines()
            .find(|line| line.starts_with("nonroot:"))
            .unwrap_or_else(|| panic!("{image}: no nonroot in {passwd}"));
        assert_eq!(nonroot.split(':').nth(2), Some("65532"));
        assert!(
            nonroot.ends_with(":/home/nonroot:/sbin/nologin"),
            "{nonroot}"
        );
        for shell in ["bin/sh", "bin/bash", "bin/ash", "usr/bin/sh"] {
            assert!(!rootfs.join(shell).exists(), "{image}: {shell}");
        }
    }

    // The package repository is what apk reads: one signed index listing every package.
    let index = inspect(
        &packages.join(apk_arch()).join("APKINDEX.tar.gz"),
        Some(&package_public),
    );
    assert_eq!(index["signature"]["valid"], true);
    let text = entry(&index["members"][1], "APKINDEX")["text"]
        .as_str()
        .unwrap()
        .to_string();
    let listed: BTreeMap<&str, usize> = text
        .lines()
        .filter_map(|l| l.strip_prefix("P:"))
        .map(|name| (name, 1))
        .collect();
    assert_eq!(listed.keys().copied().collect::<Vec<_>>(), IMAGES);
}
