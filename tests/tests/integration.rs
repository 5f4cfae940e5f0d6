//! Cross-crate integration tests: one test target, one module per flow.

mod apk_fetch;
mod example_repo;
mod health_checks;
mod helm_chart;
mod install;
mod registry_push;
mod support;
