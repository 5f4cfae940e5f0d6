//! Prometheus metrics of the operator (`securebuild_operator_*`): builds started, succeeded and
//! failed by reason, build durations, builds waiting for a slot, reconcile errors and
//! durations.
//!
//! Only the instruments and their registration; serving them is `http.rs`'s job.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The prefix of every metric name.
pub const PREFIX: &str = "securebuild_operator";

/// A label set with the reason of a failed build.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The condition reason, e.g. `ResolutionFailed`.
    pub reason: String,
}

/// A label set with the trigger of a build.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// `SpecChanged`, `Manual` or `PackageUpdate`.
    pub trigger: String,
}

/// A label set with the kind of a reconcile error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`crate::Error::metric_label`].
    pub error: String,
}

/// The operator's instruments.
#[derive(Debug)]
pub struct Metrics {
    /// Builds started, by trigger.
    pub builds_started: Family<TriggerLabels, Counter>,
    /// Builds that succeeded.
    pub builds_succeeded: Counter,
    /// Builds that failed, by reason.
    pub builds_failed: Family<ReasonLabels, Counter>,
    /// How long finished builds ran.
    pub build_duration: Histogram,
    /// ImageBuilds waiting for a build slot.
    pub queued_builds: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Reconciles that failed, by error.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Reconciles run.
    pub reconciliations: Counter,
    /// How long reconciles took.
    pub reconcile_duration: Histogram,
    /// When the last reconcile started, in seconds since the Unix epoch (for liveness dashboards).
    pub last_reconcile: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            builds_started: Family::default(),
            builds_succeeded: Counter::default(),
            builds_failed: Family::default(),
            // 15 s … about 2 h
            build_duration: Histogram::new(exponential_buckets(15.0, 2.0, 10)),
            queued_builds: Gauge::default(),
            reconcile_errors: Family::default(),
            reconciliations: Counter::default(),
            // 5 ms … about 20 s
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.5, 10)),
            last_reconcile: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Creates the instruments and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "builds_started",
            "Builds started",
            metrics.builds_started.clone(),
        );
        registry.register(
            "builds_succeeded",
            "Builds that succeeded",
            metrics.builds_succeeded.clone(),
        );
        registry.register(
            "builds_failed",
            "Builds that failed, by reason",
            metrics.builds_failed.clone(),
        );
        registry.register_with_unit(
            "build_duration",
            "How long finished builds ran",
            Unit::Seconds,
            metrics.build_duration.clone(),
        );
        registry.register(
            "queued_builds",
            "ImageBuilds waiting for a build slot",
            metrics.queued_builds.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "reconciliations",
            "Reconciles run",
            metrics.reconciliations.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "How long reconciles took",
            Unit::Seconds,
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "last_reconcile_timestamp",
            "When the last reconcile started, in seconds since the Unix epoch",
            metrics.last_reconcile.clone(),
        );
        metrics
    }

    /// A new registry with the operator's prefix and these metrics in it.
    pub fn new_registry() -> (Registry, Self) {
        let mut registry = Registry::with_prefix(PREFIX);
        let metrics = Self::register(&mut registry);
        (registry, metrics)
    }

    /// Counts a started build.
    pub fn build_started(&self, trigger: &str) {
        self.builds_started
            .get_or_create(&TriggerLabels {
                trigger: trigger.to_string(),
            })
            .inc();
    }

    /// Counts a finished build; `failure` is the reason of a failed one.
    pub fn build_finished(&self, failure: Option<&str>, duration: Option<Duration>) {
        match failure {
            None => {
                self.builds_succeeded.inc();
            }
            Some(reason) => {
                self.builds_failed
                    .get_or_create(&ReasonLabels {
                        reason: reason.to_string(),
                    })
                    .inc();
            }
        }
        if let Some(duration) = duration {
            self.build_duration.observe(duration.as_secs_f64());
        }
    }

    /// Sets how many ImageBuilds wait for a build slot.
    pub fn set_queued(&self, waiting: usize) {
        self.queued_builds
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, error: &crate::Error) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: error.metric_label().to_string(),
            })
            .inc();
    }

    /// Counts a reconcile and returns a guard that records its duration when dropped.
    pub fn reconcile_timer(&self) -> ReconcileTimer<'_> {
        self.reconciliations.inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_reconcile.set(now.as_secs_f64());
        ReconcileTimer {
            start: Instant::now(),
            histogram: &self.reconcile_duration,
        }
    }
}

/// Records a reconcile's duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer<'a> {
    start: Instant,
    histogram: &'a Histogram,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// The registry in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_with_prefix_and_labels() {
        let (registry, metrics) = Metrics::new_registry();
        metrics.build_started("SpecChanged");
        metrics.build_finished(None, Some(Duration::from_secs(90)));
        metrics.build_finished(Some("ResolutionFailed"), None);
        metrics.set_queued(3);
        drop(metrics.reconcile_timer());
        let error = crate::Error::MissingNamespace { name: "x".into() };
        metrics.reconcile_failed(&error);
        let text = encode(&registry);
        for expected in [
            "securebuild_operator_builds_started_total{trigger=\"SpecChanged\"} 1",
            "securebuild_operator_builds_succeeded_total 1",
            "securebuild_operator_builds_failed_total{reason=\"ResolutionFailed\"} 1",
            "securebuild_operator_build_duration_seconds_count 1",
            "securebuild_operator_queued_builds 3",
            "securebuild_operator_reconcile_errors_total{error=\"missing_namespace\"} 1",
            "securebuild_operator_reconciliations_total 1",
            "securebuild_operator_reconcile_duration_seconds_count 1",
            "# EOF",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in\n{text}");
        }
    }
}
