//! Logging: a JSON `tracing` subscriber whose filter comes from `RUST_LOG` (default `info`).
//!
//! Only installs the subscriber; what is logged is decided where it happens. No tracing
//! export (OpenTelemetry) is set up.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

use crate::Error;

/// The environment variable holding the log filter, e.g. `info,securebuild_operator=debug`.
pub const FILTER_ENV: &str = "RUST_LOG";

/// Installs the global JSON subscriber. Fails when `RUST_LOG` is not a valid filter or a
/// subscriber is already installed.
pub fn init() -> Result<(), Error> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .with_env_var(FILTER_ENV)
        .from_env()
        .map_err(|source| Error::LogFilter { source })?;
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_env_filter(filter)
        .try_init()
        .map_err(|source| Error::Telemetry { source })
}
