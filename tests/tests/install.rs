//! The install step against real signed `.apk` files: what lands in the tree (owners, modes,
//! links, xattrs), apk's conflict rules, and hostile packages refused.

use std::path::PathBuf;

use securebuild_builder::apk::index::{PackageRecord, parse_index};
use securebuild_builder::image::entry::EntryKind;
use securebuild_builder::image::install::{InstallError, InstallLimits, PackageFile, install};
use securebuild_tests::apkgen::{PackageSpec, TarEntry, TestKey};

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

fn run(
    built: &Built,
    limits: &InstallLimits,
) -> Result<securebuild_builder::image::install::Installed, InstallError> {
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
fn install_ok(specs: Vec<PackageSpec>) -> (securebuild_builder::image::install::Installed, Built) {
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

#[test]
fn conflicts_follow_apk() {
    // Identical content: no conflict, the first owner keeps it.
    let (installed, _files) = install_ok(vec![
        PackageSpec::new("a", "1.0-r0").file("etc/shared", "same\n", 0o644, 0, 0),
        PackageSpec::new("b", "1.0-r0").file("etc/shared", "same\n", 0o644, 0, 0),
    ]);
    assert_eq!(installed.tree.get("etc/shared").unwrap().owner, Some(0));

    // `replaces` lets the newcomer overwrite.
    let (installed, _files) = install_ok(vec![
        PackageSpec::new("a", "1.0-r0").file("etc/conf", "from a\n", 0o644, 0, 0),
        PackageSpec::new("b", "1.0-r0")
            .replace("a")
            .file("etc/conf", "from b\n", 0o644, 0, 0),
    ]);
    assert_eq!(
        installed
            .tree
            .read("etc/conf", &installed.spools)
            .unwrap()
            .unwrap(),
        b"from b\n"
    );
    assert!(
        installed.packages[0]
            .paths
            .iter()
            .all(|p| p.path != "etc/conf")
    );

    // The owner replacing the newcomer keeps its file.
    let (installed, _files) = install_ok(vec![
        PackageSpec::new("a", "1.0-r0")
            .replace("b")
            .file("etc/conf", "from a\n", 0o644, 0, 0),
        PackageSpec::new("b", "1.0-r0").file("etc/conf", "from b\n", 0o644, 0, 0),
    ]);
    assert_eq!(
        installed
            .tree
            .read("etc/conf", &installed.spools)
            .unwrap()
            .unwrap(),
        b"from a\n"
    );

    // Same origin: the later package overwrites.
    let (installed, _files) = install_ok(vec![
        PackageSpec::new("a", "1.0-r0")
            .origin("src")
            .file("etc/conf", "a\n", 0o644, 0, 0),
        PackageSpec::new("a-extra", "1.0-r0")
            .origin("src")
            .file("etc/conf", "extra\n", 0o644, 0, 0),
    ]);
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
