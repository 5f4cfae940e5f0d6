//! skopeo, the independent OCI client the tests read registries with: the command
//! (`SECUREBUILD_SKOPEO`, else `skopeo` on the `PATH`, never with an auth file from the
//! environment) and the check of what it printed.

use std::process::{Command, Output};

/// The environment variable naming the skopeo program to run.
pub const SKOPEO_ENV: &str = "SECUREBUILD_SKOPEO";

/// A skopeo command with no arguments yet.
pub fn command() -> Command {
    let program = std::env::var_os(SKOPEO_ENV).unwrap_or_else(|| "skopeo".into());
    let mut command = Command::new(program);
    command.env_remove("REGISTRY_AUTH_FILE");
    command
}

/// The stdout of a skopeo run with `args`; panics (failing the test) with its stderr when it
/// could not run or failed.
pub fn stdout_of(output: std::io::Result<Output>, args: &[&str]) -> Vec<u8> {
    let output = output
        .unwrap_or_else(|error| panic!("running skopeo (install it or set {SKOPEO_ENV}): {error}"));
    assert!(
        output.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
