//! Cross-crate integration tests: one test target, one module per flow.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apk_fetch;
mod apko_config;
mod build_push;
mod container_images;
mod example_repo;
mod health_checks;
mod helm_chart;
mod install;
mod layers;
mod operator_local;
mod own_images;
mod registry_push;
mod registry_tls;
mod sign_verify;
mod support;

/// The variable naming the Python interpreter the checkers run under; `python3` when unset.
const PYTHON_ENV: &str = "SECUREBUILD_PYTHON";

/// The Python interpreter the checkers run under ([`PYTHON_ENV`], else `python3`).
fn python() -> String {
    std::env::var(PYTHON_ENV).unwrap_or_else(|_| "python3".to_owned())
}

/// The directory holding other projects' test data (docs/apk-compatibility.md):
/// `$SECUREBUILD_REFERENCE_DATA`, else `../shared/apk-reference` beside the workspace.
fn reference_data() -> std::path::PathBuf {
    match std::env::var_os("SECUREBUILD_REFERENCE_DATA") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => workspace_root().join("../shared/apk-reference"),
    }
}

/// The workspace root, the parent of this package.
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives in the workspace")
        .to_path_buf()
}
