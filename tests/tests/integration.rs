//! Cross-crate integration tests: one test target, one module per flow.

mod example_repo;
mod support;
