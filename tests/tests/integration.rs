//! Cross-crate integration tests: one test target, one module per flow.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apk_fetch;
mod build_push;
mod container_images;
mod example_repo;
mod health_checks;
mod helm_chart;
mod install;
mod operator_local;
mod own_images;
mod registry_push;
mod sign_verify;
mod support;
