//! Every configuration in apko's `examples/` directory parses, includes merged, and passes
//! validation. apko's files are not part of this repository: the test reads them from
//! `apko-examples/` in the reference data (`$SECUREBUILD_REFERENCE_DATA`, by default
//! `../shared/apk-reference` beside the workspace; docs/apk-compatibility.md), and `.ci/test`
//! runs it when that directory exists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use securebuild_crds::include::{self, ConfigSource};

struct Disk;

impl ConfigSource for Disk {
    fn read(&self, path: &Path) -> std::io::Result<Option<(PathBuf, String)>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some((std::fs::canonicalize(path)?, text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn apko_examples() -> PathBuf {
    let reference = match std::env::var_os("SECUREBUILD_REFERENCE_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/apk-reference"),
    };
    let dir = reference.join("apko-examples");
    assert!(
        dir.join("alpine-base.yaml").is_file(),
        "{} does not hold apko's examples/: set SECUREBUILD_REFERENCE_DATA",
        dir.display()
    );
    dir
}

#[test]
#[ignore = "needs apko's examples/ in the reference data (run by .ci/test when present)"]
fn every_apko_example_parses() {
    let source = apko_examples();
    // apko's includes are relative to apko's repository root: lay the files out the same way.
    let root = tempfile::tempdir().unwrap();
    let examples = root.path().join("examples");
    std::fs::create_dir(&examples).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_owned();
            std::fs::copy(&path, examples.join(&name)).unwrap();
            names.push(name.to_string_lossy().into_owned());
        }
    }
    names.sort();
    assert_eq!(names.len(), 19, "{names:?}");
    for name in &names {
        let config = include::load(&examples.join(name), &[root.path().to_path_buf()], &Disk)
            .unwrap_or_else(|e| panic!("{name}: {}", chain(&e)));
        config
            .validate()
            .unwrap_or_else(|e| panic!("{name}: {}", chain(&e)));
        assert!(!config.contents.packages.is_empty(), "{name}");
    }

    let load = |name: &str| {
        include::load(&examples.join(name), &[root.path().to_path_buf()], &Disk).unwrap()
    };
    // include.yaml is alpine-base.yaml; overlay.yaml adds nano after it.
    assert_eq!(load("include.yaml"), load("alpine-base.yaml"));
    assert_eq!(
        load("overlay.yaml").contents.packages,
        ["alpine-base", "nano"]
    );
    let certificates = load("certificates.yaml").certificates.unwrap();
    assert_eq!(
        certificates
            .additional
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["pretend-pear-x1", "bogus-broccoli-x2"]
    );
    assert_eq!(
        load("package-certificates.yaml")
            .certificates
            .unwrap()
            .providers,
        ["custom-ca-certificates"]
    );
    assert_eq!(
        load("runtime-keyring.yaml").contents.runtime_keyring[0].name,
        "example-mirror.rsa.pub"
    );
    let nginx = load("nginx.yaml");
    assert!(nginx.is_service_bundle());
    assert_eq!(
        nginx.entrypoint.unwrap().services["nginx"],
        "/usr/sbin/nginx -c /etc/nginx/nginx.conf -g \"daemon off;\""
    );
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
