//! Answering one request: the operational endpoints (`/healthz`, `/readyz`, `/metrics`) and
//! the pull endpoints, each resolved through the routes to an upstream repository and served
//! from the caches or the upstream, with digests checked before anything counts as served.
//!
//! This module dispatches and holds what every endpoint shares (the upstream call within a
//! concurrency slot, error mapping, responses); `manifests`, `blobs`, `listing` (tags and
//! referrers) and `token` (passthrough access) answer their endpoints.

mod blobs;
mod listing;
mod manifests;
mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use prometheus_client::metrics::counter::Counter;
use securebuild_registry::error::Chain;
use securebuild_registry::manifests::{accept_manifests, content_media_type, reported_digest};
use securebuild_registry::pull::{PullAuthorization, PullRequest};
use securebuild_registry::transport::StreamedResponse;
use securebuild_registry::{
    DOCKER_CONTENT_DIGEST_HEADER, MAX_MANIFEST_BYTES, PLACEHOLDER_TAG, Reference, Registry,
    RegistryError, sha256_digest,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cache::{CachedManifest, ManifestCache, TagCache, TagTarget};
use crate::endpoint::{self, Endpoint, ManifestReference};
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::names::{is_valid_tag, parse_range};
use crate::passthrough::{
    Challenge, TOKEN_PATH, client_challenge, scope_repositories, upstream_token_query,
};
use crate::routes::{Access, Route, RouteTable};
use crate::spec_error::{ErrorCode, SpecError};
use crate::verified_body::{BoxError, StreamError, StreamObserver, VerifiedBody};

/// The body of every response.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// The header naming the API version, sent with every distribution response.
const API_VERSION_HEADER: &str = "docker-distribution-api-version";
const API_VERSION: &str = "registry/2.0";
const OCI_FILTERS_APPLIED: &str = "oci-filters-applied";
const JSON: &str = "application/json";
const OCTET_STREAM: &str = "application/octet-stream";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Media types asked for when a client sends no `Accept`: manifests, indexes and artifacts.
const DEFAULT_ACCEPT_EXTRA: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// Largest token server answer passed back.
const MAX_TOKEN_BYTES: u64 = 1 << 20;
/// The route label of requests no route served.
const NO_ROUTE: &str = "none";

/// What the proxy needs to answer requests.
pub struct Proxy {
    routes: RouteTable,
    registry: Registry,
    manifests: ManifestCache,
    tags: TagCache,
    metrics: Metrics,
    metrics_registry: prometheus_client::registry::Registry,
    upstream_slots: Arc<Semaphore>,
    redirect_blobs: bool,
    request_timeout: Duration,
    scheme: &'static str,
    /// Upstream token servers learned from challenges, by upstream registry.
    realms: Mutex<HashMap<String, String>>,
}

/// How the proxy behaves, beyond its routes and client.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Manifest cache budget in bytes.
    pub manifest_cache_bytes: u64,
    /// How long tag lookups are reused.
    pub tag_ttl: Duration,
    /// Upstream requests in flight at once.
    pub upstream_concurrency: usize,
    /// Redirect blob `GET`s of anonymous upstreams instead of streaming them.
    pub redirect_blobs: bool,
    /// How long a request may take until its response starts.
    pub request_timeout: Duration,
    /// Whether clients reach the proxy over HTTPS (for the token realm it announces when no
    /// `X-Forwarded-Proto` says otherwise).
    pub https: bool,
}

/// The request being served, for the endpoint handlers.
struct Call<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    route: &'a Route,
    /// The vanity name the client used.
    name: &'a str,
    upstream: Reference,
}

impl Call<'_> {
    fn authorization(&self) -> PullAuthorization {
        match self.route.access {
            Access::Public => PullAuthorization::Own,
            Access::Passthrough => {
                PullAuthorization::Forwarded(self.headers.get(header::AUTHORIZATION).cloned())
            }
        }
    }

    fn request(&self, method: Method, path: String) -> PullRequest {
        let mut request = PullRequest::new(method, path);
        request.authorization = self.authorization();
        request
    }
}

impl Proxy {
    /// A proxy serving `routes` through `registry`.
    pub fn new(routes: RouteTable, registry: Registry, settings: &ProxySettings) -> Self {
        let (metrics_registry, metrics) = Metrics::new_registry();
        Self {
            routes,
            registry,
            manifests: ManifestCache::new(settings.manifest_cache_bytes),
            tags: TagCache::new(settings.tag_ttl),
            metrics,
            metrics_registry,
            upstream_slots: Arc::new(Semaphore::new(settings.upstream_concurrency.max(1))),
            redirect_blobs: settings.redirect_blobs,
            request_timeout: settings.request_timeout,
            scheme: if settings.https { "https" } else { "http" },
            realms: Mutex::new(HashMap::new()),
        }
    }

    /// Answers one request. Never fails: every failure becomes an error response.
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Response<Body> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        match (method.as_str(), path.as_str()) {
            ("GET" | "HEAD", "/healthz") => return text(StatusCode::OK, "ok\n"),
            ("GET" | "HEAD", "/readyz") => return self.readiness().await,
            ("GET", "/metrics") => return self.metrics_text(),
            _ => {}
        }
        let query = request.uri().query().map(str::to_owned);
        let headers = request.headers().clone();
        drop(request);
        let served = tokio::time::timeout(
            self.request_timeout,
            self.serve(&method, &path, query.as_deref(), &headers),
        )
        .await;
        let (route, response) = match served {
            Ok(served) => served,
            Err(_) => {
                let error = SpecError::new(
                    ErrorCode::UpstreamTimeout,
                    format!(
                        "the upstream did not answer within {} s",
                        self.request_timeout.as_secs()
                    ),
                );
                (NO_ROUTE.to_owned(), error_response(&method, &error))
            }
        };
        let status = response.status().as_u16();
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method: method.as_str().to_owned(),
                status,
            })
            .inc();
        tracing::info!(
            %method,
            %path,
            status,
            %route,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
        response
    }

    /// `200` when every upstream registry answers `/v2/` (with `200` or `401`), else `503`.
    async fn readiness(&self) -> Response<Body> {
        let mut registries: Vec<&str> = self
            .routes
            .routes()
            .iter()
            .map(|route| route.registry.as_str())
            .collect();
        registries.sort_unstable();
        registries.dedup();
        let mut failures = Vec::new();
        for registry in registries {
            let reference = Reference::with_tag(
                registry.to_owned(),
                "ping".to_owned(),
                PLACEHOLDER_TAG.to_owned(),
            );
            match self.registry.ping(&reference, None).await {
                Ok(response) if response.status().as_u16() < 500 => {}
                Ok(response) => {
                    failures.push(format!("{registry}: status {}", response.status().as_u16()));
                }
                Err(error) => failures.push(format!("{registry}: {}", Chain(&error))),
            }
        }
        if failures.is_empty() {
            text(StatusCode::OK, "ready\n")
        } else {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("upstreams unreachable: {}\n", failures.join("; ")),
            )
        }
    }

    fn metrics_text(&self) -> Response<Body> {
        match crate::metrics::encode(&self.metrics_registry) {
            Ok(body) => respond(
                StatusCode::OK,
                &[(header::CONTENT_TYPE, OPENMETRICS)],
                full(body),
            ),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
        }
    }

    /// Serves a distribution request; returns the route label with the response.
    async fn serve(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> (String, Response<Body>) {
        if path == TOKEN_PATH && (*method == Method::GET || *method == Method::HEAD) {
            return match self.token(headers, query.unwrap_or_default()).await {
                Ok(served) => served,
                Err(error) => (NO_ROUTE.to_owned(), error_response(method, &error)),
            };
        }
        let endpoint = match endpoint::parse(method, path) {
            Ok(endpoint) => endpoint,
            Err(error) => return (NO_ROUTE.to_owned(), error_response(method, &error)),
        };
        let Some(name) = endpoint.name() else {
            if let Some(error) = self.root_challenge(headers).await {
                return (NO_ROUTE.to_owned(), error_response(method, &error));
            }
            let response = respond(
                StatusCode::OK,
                &[(header::CONTENT_TYPE, JSON)],
                body_for(method, Bytes::from_static(b"{}")),
            );
            return (NO_ROUTE.to_owned(), response);
        };
        let host = request_host(headers);
        let Some(target) = self.routes.resolve(host, name) else {
            let error = SpecError::new(
                ErrorCode::NameUnknown,
                format!("no route of this proxy maps the repository name {name:?}"),
            );
            return (NO_ROUTE.to_owned(), error_response(method, &error));
        };
        let call = Call {
            method,
            headers,
            query,
            route: target.route,
            name,
            upstream: Reference::with_tag(
                target.route.registry.clone(),
                target.repository,
                PLACEHOLDER_TAG.to_owned(),
            ),
        };
        let result = match &endpoint {
            Endpoint::Manifest { reference, .. } => self.manifest(&call, reference).await,
            Endpoint::Blob { digest, .. } => self.blob(&call, digest).await,
            Endpoint::Tags { .. } => self.tag_list(&call).await,
            Endpoint::Referrers { digest, .. } => self.referrers(&call, digest).await,
            Endpoint::ApiRoot => Err(SpecError::new(
                ErrorCode::NotFound,
                "the API root has no repository".to_owned(),
            )),
        };
        let label = call.route.label.clone();
        match result {
            Ok(response) => (label, response),
            Err(error) => (label, error_response(method, &error)),
        }
    }

    /// Sends `request` upstream within a concurrency slot, timing it.
    async fn upstream(
        &self,
        call: &Call<'_>,
        request: PullRequest,
    ) -> Result<(StreamedResponse, OwnedSemaphorePermit), SpecError> {
        let permit = Arc::clone(&self.upstream_slots)
            .acquire_owned()
            .await
            .map_err(|_| {
                SpecError::new(
                    ErrorCode::UpstreamFailed,
                    "the proxy is shutting down".to_owned(),
                )
            })?;
        let started = Instant::now();
        let response = self
            .registry
            .pull(&call.upstream, request)
            .await
            .map_err(|error| upstream_error(call, &error))?;
        self.metrics
            .upstream_duration
            .get_or_create(&route_labels(call.route))
            .observe(started.elapsed().as_secs_f64());
        Ok((response, permit))
    }

    /// The error for an upstream answer other than success.
    fn status_error(
        &self,
        call: &Call<'_>,
        response: &StreamedResponse,
        not_found: ErrorCode,
        target: &str,
    ) -> SpecError {
        let status = response.status().as_u16();
        let name = call.name;
        match status {
            404 => SpecError::new(not_found, format!("{target} is not in {name}")),
            401 if call.route.access == Access::Passthrough => {
                let error = SpecError::new(
                    ErrorCode::Unauthorized,
                    format!("authentication is required to pull {name}"),
                );
                match response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|value| value.to_str().ok())
                    .and_then(Challenge::parse)
                {
                    Some(upstream) => error.with_challenge(self.rewrite_challenge(
                        call.headers,
                        call.route,
                        &upstream,
                    )),
                    None => error,
                }
            }
            401 | 403 if call.route.access == Access::Public => {
                tracing::warn!(
                    route = %call.route.label,
                    upstream = %call.upstream.registry(),
                    status,
                    "the upstream refused the proxy's credentials"
                );
                SpecError::new(
                    ErrorCode::UpstreamFailed,
                    format!(
                        "the upstream refused the proxy's credentials for {name} (status {status})"
                    ),
                )
            }
            403 => SpecError::new(ErrorCode::Denied, format!("pulling {name} is denied")),
            416 => SpecError::new(
                ErrorCode::RangeInvalid,
                format!("the range asked of {target} is not satisfiable"),
            ),
            429 => SpecError::new(
                ErrorCode::TooManyRequests,
                "the upstream is rate limiting; try again later".to_owned(),
            ),
            _ => {
                tracing::warn!(
                    route = %call.route.label,
                    upstream = %call.upstream.registry(),
                    status,
                    "the upstream failed"
                );
                SpecError::new(
                    ErrorCode::UpstreamFailed,
                    format!("the upstream answered status {status} for {target} in {name}"),
                )
            }
        }
    }
}

/// The `Host` a client asked for (`X-Forwarded-Host` from an ingress first).
fn request_host(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(',').next().unwrap_or_default().trim())
}

fn route_labels(route: &Route) -> RouteLabels {
    RouteLabels {
        route: route.label.clone(),
    }
}

fn upstream_error(call: &Call<'_>, error: &RegistryError) -> SpecError {
    tracing::warn!(
        route = %call.route.label,
        upstream = %call.upstream.registry(),
        error = %Chain(error),
        "upstream request failed"
    );
    // A token server refusing the proxy's own credentials is not an unreachable upstream.
    let message = if matches!(error, RegistryError::AuthenticationFailed { .. }) {
        format!(
            "the upstream refused the proxy's credentials for {}",
            call.name
        )
    } else {
        format!(
            "the upstream registry for {} could not be reached",
            call.name
        )
    };
    SpecError::new(ErrorCode::UpstreamFailed, message)
}

/// Reads a small body (manifests, tag lists, referrers) of at most `limit` bytes.
async fn read_limited(
    mut response: StreamedResponse,
    limit: u64,
    call: &Call<'_>,
    target: &str,
) -> Result<Bytes, SpecError> {
    let too_large = || {
        SpecError::new(
            ErrorCode::UpstreamFailed,
            format!("the upstream's answer for {target} is larger than {limit} bytes"),
        )
    };
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(error) => {
                tracing::warn!(route = %call.route.label, error = %Chain(&error), "reading from the upstream failed");
                return Err(SpecError::new(
                    ErrorCode::UpstreamFailed,
                    format!("the upstream's answer for {target} broke off"),
                ));
            }
        }
    }
}

fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// The body for `method`: none for `HEAD`.
fn body_for(method: &Method, bytes: Bytes) -> Body {
    if *method == Method::HEAD {
        empty()
    } else {
        full(bytes)
    }
}

fn respond(status: StatusCode, headers: &[(HeaderName, &str)], body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let map = response.headers_mut();
    map.insert(API_VERSION_HEADER, HeaderValue::from_static(API_VERSION));
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(name.clone(), value);
        }
    }
    response
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    respond(
        status,
        &[(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        full(body.to_owned()),
    )
}

/// The spec's error response; `Allow` names the methods served when the method was refused.
pub fn error_response(method: &Method, error: &SpecError) -> Response<Body> {
    let body = error.body();
    let length = body.len().to_string();
    let mut headers = vec![
        (header::CONTENT_TYPE, JSON),
        (header::CONTENT_LENGTH, length.as_str()),
    ];
    if error.code == ErrorCode::Unsupported {
        headers.push((header::ALLOW, "GET, HEAD"));
    }
    if let Some(challenge) = &error.challenge {
        headers.push((header::WWW_AUTHENTICATE, challenge.as_str()));
    }
    respond(
        error.code.status(),
        &headers,
        body_for(method, Bytes::from(body)),
    )
}
