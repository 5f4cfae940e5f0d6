//! The install step against real signed `.apk` files: what lands in the tree (owners, modes,
//! links, xattrs), apk's conflict and directory rules with the metadata of each package's own
//! `.PKGINFO`, hostile packages refused, and images built for two architectures from packages
//! whose index records lack their `replaces`.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use securebuild_builder::apk::index::{PackageRecord, parse_index};
use securebuild_builder::image::entry::EntryKind;
use securebuild_builder::image::install::{
    InstallError, InstallLimits, Installed, PackageFile, install,
};
use securebuild_tests::apkgen::{PackageSpec, Repository, TarEntry, TestKey};

use crate::build_push::{layer_blobs, securebuild};

struct Built {
    _dir: tempfile::TempDir,
    spool: tempfile::TempDir,
    records: Vec<PackageRecord>,
    paths: Vec<PathBuf>,
}

fn build(specs: Vec<PackageSpec>) -> Built {
    let key = TestKey::shared().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    let mut paths = Vec::new();
    for spec in specs {
        let built = spec.build(&key).unwrap();
        let path = dir.path().join(built.file_name());
        std::fs::write(&path, built.bytes()).unwrap();
        records.extend(parse_index(&built.index_record()).unwrap());
        paths.push(path);
    }
    Built {
        _dir: dir,
        spool: tempfile::tempdir().unwrap(),
        records,
        paths,
    }
}

fn run(built: &Built, limits: &InstallLimits) -> Result<Installed, InstallError> {
    let files: Vec<PackageFile<'_>> = built
        .records
        .iter()
        .zip(&built.paths)
        .map(|(record, path)| PackageFile {
            record,
            path: path.clone(),
        })
        .collect();
    install(&files, built.spool.path(), limits)
}

/// Installs and returns the result with the files it reads from (dropped with the result).
fn install_ok(specs: Vec<PackageSpec>) -> (Installed, Built) {
    let built = build(specs);
    let installed = run(&built, &InstallLimits::default()).unwrap();
    (installed, built)
}

fn install_err(specs: Vec<PackageSpec>) -> String {
    let built = build(specs);
    run(&built, &InstallLimits::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn keeps_what_packages_declare() {
    let (installed, _files) = install_ok(vec![
        PackageSpec::new("base", "1.0-r0")
            .dir("etc", 0o755, 0, 0)
            .dir("tmp", 0o1777, 0, 0)
            .file("etc/motd", "welcome\n", 0o644, 0, 0)
            .dir("usr/bin", 0o755, 0, 0)
            .file("usr/bin/su", "su binary", 0o4755, 0, 0)
            .file("usr/bin/wall", "wall binary", 0o2755, 0, 5)
            .file("usr/bin/ping", "ping binary", 0o755, 0, 0)
            .xattr("usr/bin/ping", "security.capability", vec![1, 0, 0, 2])
            .symlink("usr/bin/sh", "busybox")
            .hardlink("usr/bin/su2", "usr/bin/su")
            .file("home/app/data", "owned", 0o600, 1000, 1000),
    ]);
    let tree = &installed.tree;
    let node = |path: &str| tree.get(path).unwrap_or_else(|| panic!("{path} missing"));
    assert_eq!(node("tmp").entry.mode, 0o1777);
    assert_eq!(node("usr/bin/su").entry.mode, 0o4755);
    assert_eq!(node("usr/bin/wall").entry.mode, 0o2755);
    assert_eq!(node("usr/bin/wall").entry.gid, 5);
    assert_eq!(node("home/app/data").entry.uid, 1000);
    assert_eq!(node("home/app/data").entry.gid, 1000);
    assert_eq!(
        node("usr/bin/ping").entry.xattrs.get("security.capability"),
        Some(&vec![1, 0, 0, 2])
    );
    assert_eq!(
        node("usr/bin/sh").entry.kind,
        EntryKind::Symlink {
            target: "busybox".into()
        }
    );
    assert_eq!(
        node("usr/bin/su2").entry.kind,
        EntryKind::Hardlink {
            target: "usr/bin/su".into()
        }
    );
    assert_eq!(
        tree.read("etc/motd", &installed.spools).unwrap().unwrap(),
        b"welcome\n"
    );
    let owned: Vec<_> = installed.packages[0]
        .paths
        .iter()
        .map(|p| p.path.as_str())
        .collect();
    assert!(owned.contains(&"usr/bin/su"));
    let motd = installed.packages[0]
        .paths
        .iter()
        .find(|p| p.path == "etc/motd")
        .unwrap();
    let expected: [u8; 20] = {
        use sha1::Digest;
        sha1::Sha1::digest(b"welcome\n").into()
    };
    assert_eq!(motd.sha1, Some(expected));
}

/// The content of `path` in an installed tree.
fn content(installed: &Installed, path: &str) -> Vec<u8> {
    installed
        .tree
        .read(path, &installed.spools)
        .unwrap()
        .unwrap()
}

/// Whether package `index` lists `path` in the apk database.
fn lists(installed: &Installed, index: usize, path: &str) -> bool {
    installed.packages[index]
        .paths
        .iter()
        .any(|p| p.path == path)
}

#[test]
fn conflicts_follow_apk() {
    let conf = |name: &str| PackageSpec::new(name, "1.0-r0").file("etc/conf", name, 0o644, 0, 0);

    // Identical content is still two packages shipping one file: apk refuses it.
    let message = install_err(vec![
        PackageSpec::new("a", "1.0-r0").file("etc/shared", "same\n", 0o644, 0, 0),
        PackageSpec::new("b", "2.0-r0").file("etc/shared", "same\n", 0o644, 0, 0),
    ]);
    assert!(message.contains("etc/shared"), "{message}");
    assert!(message.contains("a-1.0-r0"), "{message}");
    assert!(message.contains("b-2.0-r0"), "{message}");

    // `replaces` lets the newcomer overwrite; the owner no longer lists the file.
    let (installed, _files) = install_ok(vec![conf("a"), conf("b").replace("a")]);
    assert_eq!(content(&installed, "etc/conf"), b"b");
    assert!(!lists(&installed, 0, "etc/conf"));
    assert!(lists(&installed, 1, "etc/conf"));

    // The owner replacing the newcomer keeps its file; the newcomer does not list it.
    let (installed, _files) = install_ok(vec![conf("a").replace("b"), conf("b")]);
    assert_eq!(content(&installed, "etc/conf"), b"a");
    assert!(lists(&installed, 0, "etc/conf"));
    assert!(!lists(&installed, 1, "etc/conf"));

    // Both replace each other: the higher `replaces_priority` keeps it, the newcomer on a tie.
    let (installed, _files) = install_ok(vec![
        conf("a").replace("b").replaces_priority(10),
        conf("b").replace("a").replaces_priority(2),
    ]);
    assert_eq!(content(&installed, "etc/conf"), b"a");
    let (installed, _files) = install_ok(vec![
        conf("a").replace("b").replaces_priority(2),
        conf("b").replace("a").replaces_priority(10),
    ]);
    assert_eq!(content(&installed, "etc/conf"), b"b");
    let (installed, _files) = install_ok(vec![conf("a").replace("b"), conf("b").replace("a")]);
    assert_eq!(content(&installed, "etc/conf"), b"b");

    // A versioned `replaces` counts only for the versions it names.
    let message = install_err(vec![conf("a"), conf("b").replace("a<1.0")]);
    assert!(message.contains("etc/conf"), "{message}");
    let (installed, _files) = install_ok(vec![conf("a"), conf("b").replace("a>=1.0")]);
    assert_eq!(content(&installed, "etc/conf"), b"b");

    // Same origin: the later package overwrites.
    let (installed, _files) =
        install_ok(vec![conf("a").origin("src"), conf("a-extra").origin("src")]);
    assert_eq!(installed.tree.get("etc/conf").unwrap().owner, Some(1));

    // Otherwise a clear error naming both packages.
    let message = install_err(vec![
        PackageSpec::new("a", "1.0-r0").file("etc/conf", "a\n", 0o644, 0, 0),
        PackageSpec::new("b", "2.0-r0").file("etc/conf", "b\n", 0o644, 0, 0),
    ]);
    assert!(message.contains("etc/conf"), "{message}");
    assert!(message.contains("a-1.0-r0"), "{message}");
    assert!(message.contains("b-2.0-r0"), "{message}");
}

#[test]
fn replaces_come_from_the_package_not_the_index() {
    // `.PKGINFO` says `replaces`, the index record does not (as melange writes indexes).
    let (installed, _files) = install_ok(vec![
        PackageSpec::new("base", "1.0-r0").file("etc/os-release", "base", 0o644, 501, 20),
        PackageSpec::new("layout", "1.0-r0")
            .replace("base")
            .replaces_priority(3)
            .index_without_replaces()
            .file("etc/os-release", "layout", 0o644, 501, 20),
    ]);
    assert_eq!(content(&installed, "etc/os-release"), b"layout");
    let node = installed.tree.get("etc/os-release").unwrap();
    assert_eq!((node.entry.uid, node.entry.gid), (501, 20));
    let layout = &installed.packages[1];
    assert_eq!(
        layout
            .replaces
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["base"]
    );
    assert_eq!(layout.replaces_priority, 3);

    // An index `r:` the package does not declare replaces nothing.
    let message = install_err(vec![
        PackageSpec::new("base", "1.0-r0").file("etc/os-release", "base", 0o644, 0, 0),
        PackageSpec::new("layout", "1.0-r0")
            .index_only_replace("base")
            .file("etc/os-release", "layout", 0o644, 0, 0),
    ]);
    assert!(message.contains("etc/os-release"), "{message}");
    assert!(message.contains("base-1.0-r0"), "{message}");
    assert!(message.contains("layout-1.0-r0"), "{message}");
}

#[test]
fn shared_directories_follow_apk() {
    let dir = |name: &str, mode: u32, uid: u32| {
        PackageSpec::new(name, "1.0-r0").dir("srv/data", mode, uid, uid)
    };
    let metadata = |installed: &Installed| {
        let node = installed.tree.get("srv/data").unwrap();
        (node.entry.mode, node.entry.uid, node.owner)
    };
    // The name that sorts first keeps a directory's mode and owner...
    let (installed, _files) = install_ok(vec![dir("a", 0o700, 1), dir("b", 0o755, 2)]);
    assert_eq!(metadata(&installed), (0o700, 1, Some(0)));
    let (installed, _files) = install_ok(vec![dir("b", 0o755, 2), dir("a", 0o700, 1)]);
    assert_eq!(metadata(&installed), (0o700, 1, Some(1)));
    // ... unless a higher `replaces_priority` decides, with or without `replaces`.
    let (installed, _files) = install_ok(vec![
        dir("a", 0o700, 1),
        dir("b", 0o755, 2).replaces_priority(1),
    ]);
    assert_eq!(metadata(&installed), (0o755, 2, Some(1)));
    // Among packages of one origin, the one named like the origin keeps it.
    let (installed, _files) = install_ok(vec![
        dir("src", 0o700, 1).origin("src"),
        dir("a", 0o755, 2).origin("src"),
    ]);
    assert_eq!(metadata(&installed), (0o700, 1, Some(0)));
    // Every package that ships the directory lists it.
    assert!(lists(&installed, 0, "srv/data") && lists(&installed, 1, "srv/data"));
}

#[test]
fn hostile_packages_are_refused() {
    let check = |spec: PackageSpec, fragment: &str| {
        let message = install_err(vec![spec]);
        assert!(
            message.contains(fragment),
            "expected `{fragment}` in: {message}"
        );
    };
    check(
        PackageSpec::new("evil", "1.0-r0").raw_entry(TarEntry::file("../etc/passwd", "x", 0o644)),
        "evil-1.0-r0",
    );
    check(
        PackageSpec::new("evil", "1.0-r0").raw_entry(TarEntry::file("/etc/passwd", "x", 0o644)),
        "evil-1.0-r0",
    );
    check(
        PackageSpec::new("evil", "1.0-r0").write_through_symlink(
            "etc",
            "/",
            "etc/passwd",
            "root::0:0::/:/bin/sh\n",
        ),
        "evil-1.0-r0",
    );
    check(
        PackageSpec::new("evil", "1.0-r0")
            .raw_entry(TarEntry::hardlink("usr/shadow", "../../etc/shadow")),
        "evil-1.0-r0",
    );
    check(
        PackageSpec::new("evil", "1.0-r0").char_device("dev/mem", 1, 1, 0o600),
        "evil-1.0-r0",
    );
}

#[test]
fn limits_and_bombs_are_enforced() {
    let built = build(vec![
        PackageSpec::new("bomb", "1.0-r0").gzip_bomb("var/bomb", 64 * 1024 * 1024),
    ]);
    let mut limits = InstallLimits::default();
    limits.archive.max_data_size = 8 * 1024 * 1024;
    let message = run(&built, &limits).unwrap_err().to_string();
    assert!(message.contains("bomb-1.0-r0"), "{message}");

    let built = build(vec![
        PackageSpec::new("many", "1.0-r0")
            .file("a", "1", 0o644, 0, 0)
            .file("b", "2", 0o644, 0, 0)
            .file("c", "3", 0o644, 0, 0),
    ]);
    let mut limits = InstallLimits::default();
    limits.guard.max_entries = 2;
    assert!(run(&built, &limits).is_err());
    limits.guard.max_entries = 100;
    limits.guard.max_entry_size = 0;
    assert!(run(&built, &limits).is_err());
}

#[test]
fn tampered_packages_are_refused() {
    let message = install_err(vec![
        PackageSpec::new("bad", "1.0-r0")
            .wrong_datahash()
            .file("etc/x", "x", 0o644, 0, 0),
    ]);
    assert!(message.contains("bad"), "{message}");
    let message = install_err(vec![
        PackageSpec::new("bad", "1.0-r0")
            .index_checksum_mismatch()
            .file("etc/x", "x", 0o644, 0, 0),
    ]);
    assert!(message.contains("control checksum"), "{message}");
}

/// The variable naming a checkout of apko's `internal/cli/testdata` for
/// [`apko_testdata_builds_for_both_archs`].
const APKO_TESTDATA_ENV: &str = "SECUREBUILD_APKO_TESTDATA";

/// `/etc/os-release` of the package that replaces the base layout.
const REPLAYOUT_OS_RELEASE: &str = "ID=replaces\nNAME=\"Replaces\"\nVERSION_ID=\"1.0.0-r0\"\n";

/// The stacked layers' entries: path → (uid, gid, content).
type LayerFiles = BTreeMap<String, (u64, u64, Vec<u8>)>;

fn layer_files(layout: &Path, arch: &str) -> LayerFiles {
    // The layers bottom first: a later layer's entry replaces an earlier one's.
    let mut files = BTreeMap::new();
    for blob in layer_blobs(layout, arch) {
        let file = std::fs::File::open(blob).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let (uid, gid) = (entry.header().uid().unwrap(), entry.header().gid().unwrap());
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            files.insert(path, (uid, gid, content));
        }
    }
    files
}

/// The installed-database stanza of `name`.
fn installed_stanza(files: &LayerFiles, name: &str) -> String {
    let database = String::from_utf8(files["usr/lib/apk/db/installed"].2.clone()).unwrap();
    database
        .split("\n\n")
        .find(|stanza| stanza.lines().any(|line| line == format!("P:{name}")))
        .unwrap_or_else(|| panic!("{name} is not in the installed database:\n{database}"))
        .to_string()
}

/// Builds `config` for every architecture it names into a new OCI layout under `dir`.
async fn build_layout(config: &Path, dir: &Path) -> PathBuf {
    let layout = dir.join("image.oci");
    let (ok, _, error) = securebuild(&[
        "build",
        config.to_str().unwrap(),
        "--output",
        layout.to_str().unwrap(),
        "--cache-dir",
        dir.join("cache").to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{error}");
    layout
}

/// Checks both architectures of an image of apko's `replayout` test configuration:
/// `/etc/os-release` comes from `replayout` (whose `.PKGINFO` replaces `pretend-baselayout`)
/// with the owner recorded in the package, and the apk database says who owns what.
fn check_replayout_image(layout: &Path, os_release_start: &str) {
    for arch in ["amd64", "arm64"] {
        let files = layer_files(layout, arch);
        let (uid, gid, content) = &files["etc/os-release"];
        let text = String::from_utf8_lossy(content);
        assert!(text.starts_with(os_release_start), "{arch}: {text}");
        assert_eq!((*uid, *gid), (501, 20), "{arch}: owner of etc/os-release");
        let replayout = installed_stanza(&files, "replayout");
        assert!(
            replayout.contains("\nr:pretend-baselayout\n"),
            "{arch}: {replayout}"
        );
        assert!(
            replayout.contains("\nF:etc\nR:os-release\na:501:20:0644\n"),
            "{arch}: {replayout}"
        );
        let base = installed_stanza(&files, "pretend-baselayout");
        assert!(!base.contains("R:os-release"), "{arch}: {base}");
        // Control files that are not scripts (`.melange.yaml`) stay out of `scripts.tar`.
        let scripts = &files["usr/lib/apk/db/scripts.tar"].2;
        let names: Vec<String> = tar::Archive::new(scripts.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|name| !name.contains("melange")),
            "{arch}: {names:?}"
        );
    }
}

/// apko's `internal/cli/testdata/packages` situation, made by the test support: melange-built
/// packages for two architectures where `replayout` depends on `pretend-baselayout` and replaces
/// it in its `.PKGINFO` only, both ship `/etc/os-release` owned by 501:20, and both carry a
/// `.melange.yaml` control file.
#[tokio::test]
async fn replaces_from_pkginfo_build_for_both_archs() {
    let key = TestKey::shared().unwrap();
    let layout_package = |name: &str, os_release: &str| {
        PackageSpec::new(name, "1.0.0-r0")
            .maintainer("unknown")
            .builddate(0)
            .script(".melange.yaml", format!("package:\n  name: {name}\n"))
            .dir("etc", 0o755, 0, 0)
            .raw_entry(
                TarEntry::file("etc/os-release", os_release, 0o644)
                    .owned_by(501, 20)
                    .owner_names("", "dialout"),
            )
            .dir("var", 0o755, 0, 0)
            .dir("var/lib", 0o755, 0, 0)
            .dir("var/lib/db", 0o755, 0, 0)
            .dir("var/lib/db/sbom", 0o755, 0, 0)
            .file(
                format!("var/lib/db/sbom/{name}-1.0.0-r0.spdx.json"),
                "{}\n",
                0o644,
                0,
                0,
            )
    };
    let archs = ["x86_64", "aarch64"];
    let repository = Repository::new(&key)
        .package_for_archs(
            layout_package("pretend-baselayout", "ID=pretend\nNAME=\"Pretend\"\n"),
            &archs,
        )
        .package_for_archs(
            layout_package("replayout", REPLAYOUT_OS_RELEASE)
                .depend("pretend-baselayout")
                .replace("pretend-baselayout")
                .index_without_replaces(),
            &archs,
        );
    let dir = tempfile::tempdir().unwrap();
    let built = repository.write(&dir.path().join("packages")).unwrap();
    for arch in archs {
        let record = &built.package(arch, "replayout").unwrap().index_record();
        assert!(!record.contains("\nr:"), "{record}");
    }
    let key_path = key.write_public(dir.path()).unwrap();
    let config = dir.path().join("apko.yaml");
    std::fs::write(
        &config,
        format!(
            "contents:\n  keyring:\n    - {}\n  repositories:\n    - ./packages\n  packages:\n    - replayout\n\n\
             entrypoint:\n  command: /bin/sh -l\n\narchs:\n- x86_64\n- aarch64\n",
            key_path.display()
        ),
    )
    .unwrap();
    let layout = build_layout(&config, dir.path()).await;
    check_replayout_image(&layout, REPLAYOUT_OS_RELEASE);
}

/// The same against apko's own test repository and configuration: apko's `internal/cli/testdata`
/// as `$SECUREBUILD_APKO_TESTDATA`, or `apko-testdata` in the reference data
/// (docs/apk-compatibility.md).
#[tokio::test]
#[ignore = "needs apko's internal/cli/testdata in the reference data (run by .ci/test when present)"]
async fn apko_testdata_builds_for_both_archs() {
    let testdata = match std::env::var_os(APKO_TESTDATA_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => crate::reference_data().join("apko-testdata"),
    };
    assert!(
        testdata.join("apko.yaml").is_file(),
        "{} is not apko's internal/cli/testdata: set {APKO_TESTDATA_ENV}",
        testdata.display()
    );
    let testdata = testdata.canonicalize().unwrap();
    // apko's test runs from `internal/cli`, so its paths start with `./testdata/`.
    let config = std::fs::read_to_string(testdata.join("apko.yaml"))
        .unwrap()
        .replace("./testdata/", &format!("{}/", testdata.display()));
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("apko.yaml");
    std::fs::write(&config_path, config).unwrap();
    let layout = build_layout(&config_path, dir.path()).await;
    check_replayout_image(&layout, "ID=replaces\n");
}
