//! The example APK repository under `examples/repo` (and its public key under
//! `examples/keys`), which the README's first command builds from offline.
//!
//! The repository is generated from the declarations below with a key derived from a fixed
//! seed, so regenerating it gives the same bytes and a test can tell when the committed copy is
//! stale. The key is public knowledge by construction: it signs examples, nothing else.

use std::path::Path;

use crate::apkgen::{ApkGenError, PackageSpec, Repository, TestKey};

/// The keyring file name of the example key.
pub const EXAMPLE_KEY_NAME: &str = "securebuild-example.rsa.pub";
/// The seed the example key is derived from.
const EXAMPLE_KEY_SEED: &[u8] = b"securebuild example repository signing key";
/// The architectures the example repository carries.
pub const EXAMPLE_ARCHS: [&str; 2] = ["x86_64", "aarch64"];
/// Build date of every example package.
const BUILD_DATE: u64 = 1_767_225_600;

/// The example signing key.
pub fn example_key() -> Result<TestKey, ApkGenError> {
    TestKey::from_seed(EXAMPLE_KEY_NAME, EXAMPLE_KEY_SEED)
}

fn common(spec: PackageSpec) -> PackageSpec {
    spec.builddate(BUILD_DATE)
        .maintainer("SecureBuild Examples <examples@securebuild.dev>")
        .url("https://securebuild.dev/examples")
        .license("Apache-2.0")
}

/// The example repository's packages.
pub fn example_repository(key: &TestKey) -> Repository {
    example_repository_at(key, "1.2.0")
}

/// The example repository after a release of `hello` and `libhello` `1.2.1-r0`, the versions
/// before it still listed: what a package update looks like to the operator.
pub fn example_repository_updated(key: &TestKey) -> Repository {
    let mut repository = example_repository_at(key, "1.2.0");
    for spec in [libhello("1.2.1"), hello("1.2.1")] {
        repository = repository.package_for_archs(spec, &EXAMPLE_ARCHS);
    }
    repository
}

/// The example repository with `hello` and `libhello` at `version` (`-r0`).
fn example_repository_at(key: &TestKey, version: &str) -> Repository {
    let base = common(PackageSpec::new("example-base", "1.0-r0"))
        .description("Base filesystem layout of the example images")
        .origin("example-base")
        .dir("etc", 0o755, 0, 0)
        .dir("root", 0o700, 0, 0)
        .dir("home", 0o755, 0, 0)
        .dir("tmp", 0o1777, 0, 0)
        .dir("var", 0o755, 0, 0)
        .file(
            "etc/os-release",
            "ID=securebuild-example\nNAME=\"SecureBuild Example\"\nVERSION_ID=1.0\nPRETTY_NAME=\"SecureBuild Example 1.0\"\n",
            0o644,
            0,
            0,
        )
        .file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
            0o644,
            0,
            0,
        )
        .file("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644, 0, 0);
    let mut repository = Repository::new(key).description("securebuild example repository");
    for spec in [base, libhello(version), hello(version)] {
        repository = repository.package_for_archs(spec, &EXAMPLE_ARCHS);
    }
    repository
}

/// `libhello` at `version` (`-r0`).
fn libhello(version: &str) -> PackageSpec {
    common(PackageSpec::new("libhello", format!("{version}-r0")))
        .description("Greeting library of the example images")
        .origin("hello")
        .provide("so:libhello.so.1=1")
        .dir("usr", 0o755, 0, 0)
        .dir("usr/lib", 0o755, 0, 0)
        .file(
            format!("usr/lib/libhello.so.{version}"),
            format!("libhello {version}: greetings\n"),
            0o755,
            0,
            0,
        )
        .symlink("usr/lib/libhello.so.1", format!("libhello.so.{version}"))
}

/// `hello` at `version` (`-r0`).
fn hello(version: &str) -> PackageSpec {
    common(PackageSpec::new("hello", format!("{version}-r0")))
        .description("Prints a greeting")
        .origin("hello")
        .depend("example-base")
        .depend("so:libhello.so.1")
        .provide(format!("cmd:hello={version}-r0"))
        .dir("usr", 0o755, 0, 0)
        .dir("usr/bin", 0o755, 0, 0)
        .dir("usr/share", 0o755, 0, 0)
        .dir("usr/share/hello", 0o755, 0, 0)
        .file(
            "usr/bin/hello",
            "#!/bin/sh\n# Prints a greeting.\necho \"hello, ${1:-world}\"\n",
            0o755,
            0,
            0,
        )
        .file(
            "usr/share/hello/greeting.txt",
            "hello, world\n",
            0o644,
            0,
            0,
        )
}

/// Writes the example repository to `<examples>/repo` and the public key to
/// `<examples>/keys/<EXAMPLE_KEY_NAME>`.
pub fn write_example(examples: &Path) -> Result<(), ApkGenError> {
    let key = example_key()?;
    example_repository(&key).write(&examples.join("repo"))?;
    let keys = examples.join("keys");
    std::fs::create_dir_all(&keys).map_err(|source| ApkGenError::Write {
        path: keys.clone(),
        source,
    })?;
    key.write_public(&keys)?;
    Ok(())
}
