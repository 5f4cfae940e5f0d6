//! Prometheus metrics of the proxy (`securebuild_proxy_*`): requests by route, method and
//! status, upstream latency, bytes served, cache hits and misses, and blobs refused because
//! their bytes did not match their digest. Only the instruments; `server.rs` serves them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The prefix of every metric name.
pub const PREFIX: &str = "securebuild_proxy";

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's vanity, or `none`.
    pub route: String,
    /// The method.
    pub method: String,
    /// The status sent.
    pub status: u16,
}

/// Labels naming a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route's vanity.
    pub route: String,
}

/// Labels naming a cache.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `manifest` or `tag`.
    pub cache: String,
}

/// The proxy's instruments.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Requests answered, by route, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// How long the upstream took to answer (until its response headers), by route.
    pub upstream_duration: Family<RouteLabels, Histogram>,
    /// Body bytes sent to clients, by route.
    pub bytes_served: Family<RouteLabels, Counter>,
    /// Cache hits, by cache.
    pub cache_hits: Family<CacheLabels, Counter>,
    /// Cache misses, by cache.
    pub cache_misses: Family<CacheLabels, Counter>,
    /// Manifests and blobs whose upstream bytes did not match their digest, by route.
    pub digest_mismatches: Family<RouteLabels, Counter>,
}

impl Metrics {
    /// Creates the instruments and registers them in a new registry with the proxy's prefix.
    pub fn new_registry() -> (Registry, Self) {
        let mut registry = Registry::with_prefix(PREFIX);
        let metrics = Self {
            requests: Family::default(),
            // 1 ms … about 30 s
            upstream_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.8, 11))
            }),
            bytes_served: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            digest_mismatches: Family::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by route, method and status",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "upstream_duration",
            "How long the upstream took to answer, by route",
            Unit::Seconds,
            metrics.upstream_duration.clone(),
        );
        registry.register_with_unit(
            "served",
            "Body bytes sent to clients, by route",
            Unit::Bytes,
            metrics.bytes_served.clone(),
        );
        registry.register(
            "cache_hits",
            "Cache hits, by cache",
            metrics.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Cache misses, by cache",
            metrics.cache_misses.clone(),
        );
        registry.register(
            "digest_mismatches",
            "Upstream content that did not match its digest, by route",
            metrics.digest_mismatches.clone(),
        );
        (registry, metrics)
    }

    /// Counts a cache lookup.
    pub fn cache_lookup(&self, cache: &str, hit: bool) {
        let labels = CacheLabels {
            cache: cache.to_owned(),
        };
        if hit {
            self.cache_hits.get_or_create(&labels).inc();
        } else {
            self.cache_misses.get_or_create(&labels).inc();
        }
    }
}

/// The registry in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}
