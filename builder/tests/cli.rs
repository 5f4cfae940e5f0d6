//! The `securebuild` binary itself: exit codes and messages of the packaging commands, run as
//! a user runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

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
