//! `securebuild-operator crd` prints exactly the committed CRD manifest.

use std::path::Path;
use std::process::Command;

#[test]
fn crd_subcommand_matches_the_committed_manifest() {
    let output = Command::new(env!("CARGO_BIN_EXE_securebuild-operator"))
        .arg("crd")
        .output()
        .expect("run securebuild-operator crd");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).expect("utf-8 output");
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(securebuild_crds::CRD_PATH);
    let committed = std::fs::read_to_string(&committed_path).expect("read the committed CRD");
    assert_eq!(
        printed,
        committed,
        "regenerate with `cargo run -p securebuild-operator -- crd > {}`",
        securebuild_crds::CRD_PATH
    );
}

#[test]
fn unknown_flags_are_usage_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_securebuild-operator"))
        .arg("--no-such-flag")
        .output()
        .expect("run securebuild-operator");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn invalid_configuration_exits_with_ex_config() {
    let dir =
        std::env::temp_dir().join(format!("securebuild-operator-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("config.yaml");
    std::fs::write(&config, "maxConcurrentBuilds: 0\n").expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_securebuild-operator"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .output()
        .expect("run securebuild-operator");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        output.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("maxConcurrentBuilds must be at least 1")
    );
}
