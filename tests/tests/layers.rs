//! Package layers: the image stacked from package data sections, rebuilt layers and the final
//! layer unpacks (with umoci) to exactly the tree of the single-layer build — content, modes,
//! owners, mtimes, extended attributes, symlinks and hard links — across conflicting packages,
//! merged-/usr layouts, shared directories, replaces in both orders, hard links and setuid
//! files; package layers are the packages' own data sections; builds are reproducible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use securebuild_tests::apkgen::{PackageSpec, Repository, TestKey};
use serde_json::Value;

use crate::build_push::{digest_line, securebuild};

/// Build time of the later packages, so that shared directories differ in mtime.
const LATER: u64 = 1_700_100_000;

/// A repository exercising everything that makes stacked layers differ from apk's install.
fn repository(key: &TestKey) -> Repository {
    Repository::new(key)
        // merged /usr: bin is a symlink into usr/bin, and no directory entries for usr/lib
        // (the parents come from the builder).
        .package(
            PackageSpec::new("base", "1.0-r0")
                .dir("usr", 0o755, 0, 0)
                .dir("usr/bin", 0o755, 0, 0)
                .symlink("bin", "usr/bin")
                .symlink("lib", "usr/lib")
                .file("usr/lib/libc.so", "libc", 0o755, 0, 0)
                .file("usr/bin/sh", "#!shell\n", 0o755, 0, 0)
                .hardlink("usr/bin/sh2", "usr/bin/sh")
                .dir("srv", 0o755, 0, 0)
                .dir("tmp", 0o1777, 0, 0)
                .file("etc/shared.conf", "from base\n", 0o644, 0, 0),
        )
        // Shares directories with other metadata and a later build time; setuid and setgid
        // files; an extended attribute.
        .package(
            PackageSpec::new("tools", "2.0-r0")
                .builddate(LATER)
                .depend("base")
                .dir("usr", 0o755, 0, 0)
                .dir("usr/bin", 0o755, 0, 0)
                .dir("srv", 0o750, 10, 20)
                .file("usr/bin/su", "su binary\n", 0o4755, 0, 0)
                .file("usr/bin/wall", "wall binary\n", 0o2711, 0, 5)
                .file("usr/bin/dir", "dir\n", 0o644, 0, 0)
                .hardlink("usr/bin/vdir", "usr/bin/dir")
                .file("srv/data", "data\n", 0o600, 10, 20)
                .xattr("srv/data", "user.origin", "tools"),
        )
        // Replaces base's file and its hard-linked shell: the link must follow the new file.
        .package(
            PackageSpec::new("override", "1.0-r0")
                .builddate(LATER)
                .depend("tools")
                .replace("base")
                .file("etc/shared.conf", "from override\n", 0o640, 0, 0)
                .file("usr/bin/sh", "#!new shell\n", 0o755, 0, 0),
        )
        // Installed before `keeper` (which depends on it), but `keeper` replaces it with a
        // higher priority: keeper's file stays whatever the order.
        .package(
            PackageSpec::new("intruder", "1.0-r0")
                .origin("contested")
                .file("etc/contested", "intruder\n", 0o644, 0, 0),
        )
        .package(
            PackageSpec::new("keeper", "1.0-r0")
                .origin("contested")
                .depend("intruder")
                .replace("intruder")
                .replaces_priority(10)
                .file("etc/contested", "keeper\n", 0o644, 0, 0),
        )
        // The other order: `loser` is installed after `winner`, which replaces it with a higher
        // priority, so apk skips loser's file while its layer still carries it.
        .package(
            PackageSpec::new("winner", "1.0-r0")
                .replace("loser")
                .replaces_priority(10)
                .file("etc/order", "winner\n", 0o644, 0, 0),
        )
        .package(
            PackageSpec::new("loser", "1.0-r0")
                .depend("winner")
                .file("etc/order", "loser\n", 0o644, 0, 0)
                .file("etc/loser-only", "kept\n", 0o644, 0, 0),
        )
        // A merged-/usr user that writes through /usr, as it must.
        .package(PackageSpec::new("app", "1.0-r0").depend("base").file(
            "usr/bin/app",
            "app\n",
            0o755,
            0,
            0,
        ))
}

/// Writes the repository and a configuration with `layering` (YAML, or nothing).
fn write_config(dir: &Path, repo: &Repository, layering: &str, extra: &str) -> PathBuf {
    let repo_dir = dir.join("repo");
    if !repo_dir.exists() {
        repo.write(&repo_dir).unwrap();
    }
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = repo.key().write_public(&keys).unwrap();
    let name = format!("image-{}.yaml", dir.read_dir().unwrap().count());
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "contents:\n  repositories: [{}]\n  keyring: [{}]\n  packages: [override, keeper, loser, app]\narchs: [x86_64]\naccounts:\n  users: [{{username: svc, uid: 1234}}]\n  run-as: svc\npaths:\n  - {{path: /srv/data, type: permissions, permissions: 0o640, uid: 1234, gid: 1234}}\n{layering}{extra}",
            repo_dir.display(),
            key.display()
        ),
    )
    .unwrap();
    path
}

async fn build(config: &Path, output: &Path, cache: &Path) -> String {
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

/// Unpacks the amd64 image of a layout with umoci into `<into>/<name>`; returns the rootfs.
fn unpack(layout: &Path, into: &Path, name: &str) -> PathBuf {
    let dir = into.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    crate::build_push::unpack(layout, "latest", "amd64", &dir)
}

/// Every path of an unpacked tree: type, mode, mtime, link target, content digest, extended
/// attributes (umoci keeps owners in `user.rootlesscontainers`), and which paths share an
/// inode. Read by Python, independently of the builder.
fn describe(rootfs: &Path) -> Value {
    const SCRIPT: &str = r#"
import hashlib, json, os, stat, sys
root = sys.argv[1]
out, inodes = {}, {}
for top, dirs, files in os.walk(root):
    for name in sorted(dirs + files):
        path = os.path.join(top, name)
        rel = os.path.relpath(path, root)
        st = os.lstat(path)
        entry = {"mode": oct(st.st_mode), "mtime": st.st_mtime_ns, "nlink": st.st_nlink}
        if stat.S_ISLNK(st.st_mode):
            entry["link"] = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            entry["sha256"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
            inodes.setdefault(st.st_ino, []).append(rel)
        entry["xattrs"] = {k: os.getxattr(path, k, follow_symlinks=False).hex()
                           for k in sorted(os.listxattr(path, follow_symlinks=False))}
        out[rel] = entry
groups = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
print(json.dumps({"paths": out, "hardlinks": groups}, sort_keys=True))
"#;
    let output = Command::new(crate::python())
        .arg("-c")
        .arg(SCRIPT)
        .arg(rootfs)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The amd64 manifest of a layout (read from its blobs).
fn manifest(layout: &Path) -> Value {
    let blob = |digest: &str| -> Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let outer: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let index = blob(outer["manifests"][0]["digest"].as_str().unwrap());
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap();
    blob(entry["digest"].as_str().unwrap())
}

/// The layers' `securebuild.dev/packages` annotations (empty for the final layer).
fn layer_packages(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            layer["annotations"]["securebuild.dev/packages"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Compares two described trees path by path, for a readable failure.
fn assert_same_tree(layered: &Value, single: &Value, what: &str) {
    let paths = |tree: &Value| -> BTreeMap<String, Value> {
        tree["paths"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (a, b) = (paths(layered), paths(single));
    for (path, entry) in &b {
        assert_eq!(a.get(path), Some(entry), "{what}: {path} differs");
    }
    for path in a.keys() {
        assert!(
            b.contains_key(path),
            "{what}: {path} only in the layered image"
        );
    }
    assert_eq!(
        layered["hardlinks"], single["hardlinks"],
        "{what}: hard links"
    );
}

#[tokio::test]
async fn stacked_layers_unpack_to_the_single_layer_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let key = TestKey::shared().unwrap();
    let repo = repository(&key);
    let cache = tmp.path().join("cache");
    let single_config = write_config(tmp.path(), &repo, "layering: {strategy: none}\n", "");
    let single = tmp.path().join("single.oci");
    build(&single_config, &single, &cache).await;
    assert_eq!(manifest(&single)["layers"].as_array().unwrap().len(), 1);
    let expected = describe(&unpack(&single, tmp.path(), "single"));
    // The cases are there: merged /usr, the setuid file, the owner from `paths`, the kept file.
    let paths = &expected["paths"];
    assert_eq!(paths["bin"]["link"], "usr/bin");
    assert_eq!(paths["usr/bin/su"]["mode"], "0o104755");
    assert_eq!(paths["usr/bin/wall"]["mode"], "0o102711");
    assert_eq!(paths["tmp"]["mode"], "0o41777");
    assert!(
        paths["srv/data"]["xattrs"]
            .as_object()
            .unwrap()
            .contains_key("user.origin")
    );
    assert_eq!(
        expected["hardlinks"],
        serde_json::json!([
            ["usr/bin/dir", "usr/bin/vdir"],
            ["usr/bin/sh", "usr/bin/sh2"]
        ])
    );

    // By default only base is rebuilt: its hard link's header does not match its file.
    for (name, layering, rebuilt) in [
        ("default", "", Some(1)),
        (
            "budget-3",
            "layering: {strategy: origin, budget: 3}\n",
            None,
        ),
        (
            "budget-0",
            "layering: {strategy: origin, budget: 0}\n",
            Some(1),
        ),
    ] {
        let config = write_config(tmp.path(), &repo, layering, "");
        let layout = tmp.path().join(format!("{name}.oci"));
        let stdout = build(&config, &layout, &cache).await;
        let manifest = manifest(&layout);
        let listed = layer_packages(&manifest);
        assert_eq!(
            listed.last().map(String::as_str),
            Some(""),
            "{name}: final layer last"
        );
        let rows = |kind: &str| stdout.lines().filter(|l| l.contains(kind)).count();
        if let Some(rebuilt) = rebuilt {
            assert_eq!(rows(" rebuilt  rebuilt "), rebuilt, "{name}:\n{stdout}");
        }
        assert_eq!(rows(" rebuilt  final "), 1, "{name}:\n{stdout}");
        if name == "budget-3" {
            assert_eq!(
                listed.len(),
                4,
                "{name}: three package layers and the final one"
            );
        }
        let tree = describe(&unpack(&layout, tmp.path(), name));
        assert_same_tree(&tree, &expected, name);
    }
}

#[tokio::test]
async fn package_layers_are_the_packages_data_sections_and_builds_repeat() {
    let tmp = tempfile::tempdir().unwrap();
    let key = TestKey::shared().unwrap();
    let repo = repository(&key);
    let built = repo.build().unwrap();
    let config = write_config(tmp.path(), &repo, "", "");
    let mut digests = Vec::new();
    for run in 0..2 {
        let layout = tmp.path().join(format!("run-{run}.oci"));
        let stdout = build(&config, &layout, &tmp.path().join(format!("cache-{run}"))).await;
        digests.push(digest_line(&stdout, "index: "));
        if run == 1 {
            continue;
        }
        assert!(stdout.contains("layers of linux/amd64:"), "{stdout}");
        let manifest = manifest(&layout);
        let layers = manifest["layers"].as_array().unwrap();
        let listed = layer_packages(&manifest);
        // One layer per package (in install order), then the final layer.
        let mut names = listed.clone();
        assert_eq!(names.pop().as_deref(), Some(""));
        names.sort();
        assert_eq!(
            names,
            [
                "app=1.0-r0",
                "base=1.0-r0",
                "intruder=1.0-r0",
                "keeper=1.0-r0",
                "loser=1.0-r0",
                "override=1.0-r0",
                "tools=2.0-r0",
                "winner=1.0-r0",
            ]
        );
        for (layer, packages) in layers.iter().zip(&listed) {
            let Some((name, _)) = packages.split_once('=') else {
                continue;
            };
            if name == "base" {
                // Rebuilt: its hard link's header does not match its file's.
                continue;
            }
            let package = built.package("x86_64", name).unwrap();
            assert_eq!(
                layer["digest"],
                format!("sha256:{}", package.data_sha256_hex()),
                "{name}'s layer is its data section"
            );
            let hex = package.data_sha256_hex();
            let blob = std::fs::read(layout.join("blobs/sha256").join(&hex)).unwrap();
            assert_eq!(blob, package.data_member(), "{name}");
            assert_eq!(
                layer["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
        }
    }
    assert_eq!(
        digests[0], digests[1],
        "two builds of the same inputs differ"
    );
}

#[tokio::test]
async fn writing_through_a_merged_usr_symlink_is_refused_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let key = TestKey::shared().unwrap();
    let repo = Repository::new(&key)
        .package(
            PackageSpec::new("usrmerge", "1.0-r0")
                .dir("usr", 0o755, 0, 0)
                .dir("usr/bin", 0o755, 0, 0)
                .symlink("bin", "usr/bin"),
        )
        .package(
            PackageSpec::new("old-layout", "1.0-r0")
                .depend("usrmerge")
                .file("bin/x", "x\n", 0o755, 0, 0),
        );
    repo.write(&tmp.path().join("repo")).unwrap();
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key_path = key.write_public(&keys).unwrap();
    let mut errors = Vec::new();
    for (name, layering) in [("single", "layering: {strategy: none}\n"), ("layers", "")] {
        let config = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "contents:\n  repositories: [{}]\n  keyring: [{}]\n  packages: [old-layout]\narchs: [x86_64]\n{layering}",
                tmp.path().join("repo").display(),
                key_path.display()
            ),
        )
        .unwrap();
        let output = tmp.path().join(format!("{name}.oci"));
        let (ok, _, error) = securebuild(&[
            "build",
            config.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--cache-dir",
            tmp.path().join("cache").to_str().unwrap(),
        ])
        .await;
        assert!(!ok, "{name} built");
        assert!(!output.exists(), "{name}: nothing is written");
        errors.push(error);
    }
    assert!(
        errors[0].contains("would be written through the symlink \"bin\""),
        "{}",
        errors[0]
    );
    assert_eq!(errors[0], errors[1]);
}

/// A package with `size` bytes of content that does not compress away.
fn sized_package(name: &str, version: &str, size: usize) -> PackageSpec {
    let content: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ name.len() as u8)
        .collect();
    PackageSpec::new(name, version)
        .file(format!("usr/share/{name}/data"), content, 0o644, 0, 0)
        .file(format!("usr/share/{name}/version"), version, 0o644, 0, 0)
}

/// The blobs of a layout's amd64 image: (digest, size) of each layer, and of the config.
fn blobs(layout: &Path) -> (Vec<(String, u64)>, (String, u64)) {
    let manifest = manifest(layout);
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let config = (
        manifest["config"]["digest"].as_str().unwrap().to_string(),
        manifest["config"]["size"].as_u64().unwrap(),
    );
    (layers, config)
}

/// Bytes sent in blob uploads to `repository` among `exchanges`, and the mounts the registry
/// granted there.
fn uploads(exchanges: &[securebuild_tests::proxy::Exchange], repository: &str) -> (u64, usize) {
    let prefix = format!("/v2/{repository}/blobs/uploads/");
    let bytes = exchanges
        .iter()
        .filter(|e| e.path.starts_with(&prefix) && !e.query.contains("mount="))
        .map(|e| e.request_bytes)
        .sum();
    let mounts = exchanges
        .iter()
        .filter(|e| e.path.starts_with(&prefix) && e.query.contains("mount=") && e.status == 201)
        .count();
    (bytes, mounts)
}

#[tokio::test]
async fn pushes_send_only_the_layers_the_registry_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let key = TestKey::shared().unwrap();
    let registry = securebuild_tests::registry::TestRegistry::start().unwrap();
    let proxy = securebuild_tests::proxy::RegistryProxy::start(registry.host().parse().unwrap())
        .await
        .unwrap();
    let cache = tmp.path().join("cache");
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key_path = key.write_public(&keys).unwrap();
    let common = |lib_version: &str| {
        Repository::new(&key)
            .package(sized_package("base", "1.0-r0", 60_000))
            .package(sized_package("lib", lib_version, 40_000).depend("base"))
            .package(sized_package("one", "1.0-r0", 3_000).depend("lib"))
            .package(sized_package("two", "1.0-r0", 5_000).depend("lib"))
    };
    let push = |repo: Repository, image: &'static str, name: &'static str| {
        let dir = tmp.path().join(name);
        let cache = cache.clone();
        let key_path = key_path.clone();
        let target = format!("{}/team/{image}", proxy.host());
        async move {
            repo.write(&dir.join("repo")).unwrap();
            let config = dir.join("image.yaml");
            std::fs::write(
                &config,
                format!(
                    "contents:\n  repositories: [{}]\n  keyring: [{}]\n  packages: [{image}]\narchs: [x86_64]\n",
                    dir.join("repo").display(),
                    key_path.display()
                ),
            )
            .unwrap();
            let layout = dir.join("image.oci");
            let (ok, stdout, error) = securebuild(&[
                "build",
                config.to_str().unwrap(),
                "--output",
                layout.to_str().unwrap(),
                "--push",
                &target,
                "--cache-dir",
                cache.to_str().unwrap(),
            ])
            .await;
            assert!(ok, "{error}");
            (layout, stdout)
        }
    };

    // The first image uploads everything.
    let (first, _) = push(common("1.0-r0"), "one", "first").await;
    let (layers, config) = blobs(&first);
    assert_eq!(layers.len(), 4, "base, lib, one and the final layer");
    let total: u64 = layers.iter().map(|l| l.1).sum::<u64>() + config.1;
    assert_eq!(uploads(&proxy.exchanges(), "team/one"), (total, 0));

    // A second image in another repository mounts the shared packages' layers and uploads
    // only its own package's layer, its final layer and its config.
    let (second, stdout) = push(common("1.0-r0"), "two", "second").await;
    let (layers_two, config_two) = blobs(&second);
    assert_eq!(
        layers_two[..2],
        layers[..2],
        "base and lib are the same layers"
    );
    let own: u64 = layers_two[2..].iter().map(|l| l.1).sum::<u64>() + config_two.1;
    assert_eq!(
        uploads(&proxy.exchanges(), "team/two"),
        (own, 2),
        "{stdout}"
    );
    assert!(stdout.contains("2 mounted"), "{stdout}");

    // After an update of lib, the rebuilt first image uploads lib's new layer, the final
    // layer and the config; base and its own package are already there.
    let before = proxy.exchanges().len();
    let (third, stdout) = push(common("1.1-r0"), "one", "third").await;
    let (layers_three, config_three) = blobs(&third);
    assert_eq!(layers_three[0], layers[0]);
    assert_ne!(layers_three[1], layers[1]);
    assert_eq!(layers_three[2], layers[2]);
    let changed = layers_three[1].1 + layers_three[3].1 + config_three.1;
    let exchanges = proxy.exchanges().split_off(before);
    assert_eq!(uploads(&exchanges, "team/one"), (changed, 0), "{stdout}");
    let manifests: Vec<&str> = exchanges
        .iter()
        .filter(|e| e.method == "PUT" && e.path.contains("/manifests/"))
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(manifests.len(), 3, "manifest, index and tag: {manifests:?}");
}

/// A small deterministic generator (64-bit LCG), so that every case can be rebuilt by its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// A generated repository: a chain of packages (each depends on the one before, so the install
/// order is the chain's) over a small shared set of directories and files, with directory
/// metadata that differs between packages, files several packages ship (the later one
/// replacing the earlier, or the earlier keeping its file by a replaces priority), setuid and
/// private modes, hard links, symlinks and extended attributes. Returns the repository and the
/// name of the last package (the world).
fn generated_repository(key: &TestKey, seed: u64) -> (Repository, String) {
    const DIRS: [&str; 5] = ["opt", "opt/a", "opt/a/b", "var/lib/x", "srv"];
    const FILES: [&str; 7] = [
        "opt/f1",
        "opt/a/f2",
        "opt/a/b/f3",
        "var/lib/x/f4",
        "srv/f5",
        "etc/g1",
        "etc/g2",
    ];
    const DIR_MODES: [u32; 4] = [0o755, 0o750, 0o700, 0o2775];
    const FILE_MODES: [u32; 5] = [0o644, 0o600, 0o755, 0o4755, 0o640];
    let mut rng = Lcg(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed);
    let count = 3 + rng.below(4);
    let names: Vec<String> = (0..count).map(|i| format!("gen{seed}-p{i}")).collect();
    let mut specs: Vec<PackageSpec> = Vec::new();
    // Who ships each file so far, for the replaces a conflict needs.
    let mut owners: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let mut spec = PackageSpec::new(name.as_str(), "1.0-r0")
            .builddate(1_700_000_000 + rng.below(1000) as u64 * 3600);
        if i > 0 {
            spec = spec.depend(names[i - 1].as_str());
        }
        for dir in DIRS {
            if rng.chance(40) {
                let (uid, gid) = rng.pick(&[(0, 0), (10, 20), (0, 5)]);
                spec = spec.dir(dir, rng.pick(&DIR_MODES), uid, gid);
            }
        }
        let mut shipped = Vec::new();
        for file in FILES {
            if !rng.chance(35) {
                continue;
            }
            let (uid, gid) = rng.pick(&[(0, 0), (10, 20)]);
            let contents = format!("{file} from {name} ({})\n", rng.next());
            spec = spec.file(file, contents, rng.pick(&FILE_MODES), uid, gid);
            if rng.chance(20) {
                spec = spec.xattr(file, "user.generated", name.as_str());
            }
            for &earlier in owners.get(file).map(Vec::as_slice).unwrap_or_default() {
                if rng.chance(60) {
                    // The later package takes the file over.
                    spec = spec.replace(names[earlier].as_str());
                } else {
                    // The earlier one keeps it: apk skips the later package's copy.
                    let keeper = std::mem::replace(
                        &mut specs[earlier],
                        PackageSpec::new("placeholder", "0"),
                    );
                    specs[earlier] = keeper.replace(name.as_str()).replaces_priority(10);
                }
            }
            owners.entry(file).or_default().push(i);
            shipped.push(file);
        }
        if let Some(&target) = shipped.first()
            && rng.chance(40)
        {
            // Named after its file, so that it sorts after it in the archive.
            let link = format!("{target}-hard-{i}");
            spec = spec.hardlink(link.as_str(), target);
        }
        if rng.chance(50) {
            let target = rng.pick(&FILES);
            spec = spec.symlink(format!("opt/link-{i}"), format!("/{target}"));
        }
        specs.push(spec);
    }
    let mut repo = Repository::new(key);
    for spec in specs {
        repo = repo.package(spec);
    }
    let world = names.last().cloned().unwrap_or_default();
    (repo, world)
}

/// Many generated repositories: for each, the default (package layers), a budget that groups
/// packages and a budget of one unpack with umoci to the single-layer build's tree.
#[tokio::test]
async fn generated_packages_stack_to_the_single_layer_tree() {
    let key = TestKey::shared().unwrap();
    for seed in 1..=24u64 {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, world) = generated_repository(&key, seed);
        let repo_dir = tmp.path().join("repo");
        repo.write(&repo_dir).unwrap();
        let keys = tmp.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let key_path = repo.key().write_public(&keys).unwrap();
        let cache = tmp.path().join("cache");
        let mut expected = None;
        for (name, layering) in [
            ("single", "layering: {strategy: none}\n"),
            ("default", ""),
            ("budget-2", "layering: {strategy: origin, budget: 2}\n"),
            ("budget-1", "layering: {strategy: origin, budget: 1}\n"),
        ] {
            let config = tmp.path().join(format!("{name}.yaml"));
            std::fs::write(
                &config,
                format!(
                    "contents:\n  repositories: [{}]\n  keyring: [{}]\n  packages: [{world}]\narchs: [x86_64]\n{layering}",
                    repo_dir.display(),
                    key_path.display()
                ),
            )
            .unwrap();
            let layout = tmp.path().join(format!("{name}.oci"));
            build(&config, &layout, &cache).await;
            let tree = describe(&unpack(&layout, tmp.path(), name));
            match &expected {
                None => expected = Some(tree),
                Some(single) => assert_same_tree(&tree, single, &format!("seed {seed}, {name}")),
            }
        }
    }
}
