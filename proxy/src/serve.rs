//! Answering one request: the operational endpoints (`/healthz`, `/readyz`, `/metrics`) and
//! the pull endpoints, each resolved through the routes to an upstream repository and served
//! from the caches or the upstream, with digests checked before anything counts as served.

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
    ) -> Result<(reqwest::Response, OwnedSemaphorePermit), SpecError> {
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

    async fn manifest(
        &self,
        call: &Call<'_>,
        reference: &ManifestReference,
    ) -> Result<Response<Body>, SpecError> {
        // Clients such as skopeo send one `Accept` header per media type.
        let accepted: Vec<&str> = call
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let accept = if accepted.is_empty() {
            format!("{}, {DEFAULT_ACCEPT_EXTRA}", accept_manifests())
        } else {
            accepted.join(", ")
        };
        // What one client of a passthrough route may read says nothing about another, so
        // those manifests are always asked of the upstream with the client's credentials.
        if call.route.access == Access::Passthrough {
            let (digest, manifest) = self
                .fetch_manifest(call, reference.as_str(), &accept)
                .await?;
            return Ok(manifest_response(call.method, &digest, manifest));
        }
        let (digest, manifest) = match reference {
            ManifestReference::Digest(digest) => {
                let cached = self.manifests.get(digest);
                self.metrics.cache_lookup("manifest", cached.is_some());
                match cached {
                    Some(manifest) => (digest.clone(), manifest),
                    None => {
                        let (digest, manifest) = self.fetch_manifest(call, digest, &accept).await?;
                        (digest, manifest)
                    }
                }
            }
            ManifestReference::Tag(tag) => {
                let key = format!(
                    "{}/{}:{tag}\n{accept}",
                    call.upstream.registry(),
                    call.upstream.repository()
                );
                let cached = self.tags.get(&key).and_then(|target| {
                    self.manifests
                        .get(&target.digest)
                        .map(|manifest| (target.digest, manifest))
                });
                self.metrics.cache_lookup("tag", cached.is_some());
                match cached {
                    Some(found) => found,
                    None => {
                        let (digest, manifest) = self.fetch_manifest(call, tag, &accept).await?;
                        self.tags.insert(
                            key,
                            TagTarget {
                                digest: digest.clone(),
                                media_type: manifest.media_type.clone(),
                            },
                        );
                        (digest, manifest)
                    }
                }
            }
        };
        Ok(manifest_response(call.method, &digest, manifest))
    }

    /// `GET`s a manifest by tag or digest, checks it and keeps it in the cache.
    async fn fetch_manifest(
        &self,
        call: &Call<'_>,
        target: &str,
        accept: &str,
    ) -> Result<(String, CachedManifest), SpecError> {
        let mut request = call.request(Method::GET, format!("manifests/{target}"));
        if let Ok(value) = HeaderValue::from_str(accept) {
            request.headers.insert(header::ACCEPT, value);
        }
        let (response, _permit) = self.upstream(call, request).await?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(self.status_error(call, &response, ErrorCode::ManifestUnknown, target));
        }
        let reported = reported_digest(response.headers());
        let media_type = content_media_type(response.headers());
        let bytes = read_limited(response, MAX_MANIFEST_BYTES, call, target).await?;
        let digest = sha256_digest(&bytes);
        let expected = if target.contains(':') {
            Some(target.to_owned())
        } else {
            reported.filter(|reported| reported.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != digest
        {
            self.metrics
                .digest_mismatches
                .get_or_create(&route_labels(call.route))
                .inc();
            tracing::warn!(
                route = %call.route.label,
                upstream = %call.upstream.registry(),
                %expected,
                actual = %digest,
                "upstream manifest does not match its digest; refused"
            );
            return Err(SpecError::new(
                ErrorCode::UpstreamFailed,
                format!(
                    "the upstream served a manifest for {target} that does not match digest {expected}; it was not passed on"
                ),
            ));
        }
        let media_type = media_type
            .or_else(|| declared_media_type(&bytes))
            .unwrap_or_else(|| OCTET_STREAM.to_owned());
        let manifest = CachedManifest { bytes, media_type };
        if call.route.access == Access::Public {
            self.manifests.insert(&digest, manifest.clone());
        }
        Ok((digest, manifest))
    }

    async fn blob(&self, call: &Call<'_>, digest: &str) -> Result<Response<Body>, SpecError> {
        let range = match call.headers.get(header::RANGE) {
            None => None,
            Some(value) => {
                let text = value.to_str().unwrap_or_default();
                if parse_range(text).is_none() {
                    return Err(SpecError::new(
                        ErrorCode::RangeInvalid,
                        format!(
                            "Range {text:?} is not one byte range (bytes=START-END, bytes=START- or bytes=-LENGTH)"
                        ),
                    ));
                }
                Some(value.clone())
            }
        };
        let path = format!("blobs/{digest}");
        if self.redirect_blobs
            && *call.method == Method::GET
            && call.route.access == Access::Public
            && self
                .registry
                .is_anonymous(&call.upstream)
                .await
                .unwrap_or(false)
        {
            let location = self
                .registry
                .pull_url(&call.upstream, &path, None)
                .await
                .map_err(|error| upstream_error(call, &error))?;
            return Ok(respond(
                StatusCode::TEMPORARY_REDIRECT,
                &[
                    (header::LOCATION, location.as_str()),
                    (
                        HeaderName::from_static(DOCKER_CONTENT_DIGEST_HEADER),
                        digest,
                    ),
                ],
                empty(),
            ));
        }
        let mut request = call.request(call.method.clone(), path);
        if let Some(range) = range {
            request.headers.insert(header::RANGE, range);
        }
        let (response, permit) = self.upstream(call, request).await?;
        let status = response.status();
        if status != StatusCode::OK && status != StatusCode::PARTIAL_CONTENT {
            return Err(self.status_error(call, &response, ErrorCode::BlobUnknown, digest));
        }
        let mut builder = Response::builder()
            .status(status)
            .header(API_VERSION_HEADER, API_VERSION)
            .header(DOCKER_CONTENT_DIGEST_HEADER, digest);
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
            header::ETAG,
        ] {
            if let Some(value) = response.headers().get(&name) {
                builder = builder.header(name, value);
            }
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static(OCTET_STREAM));
        builder = builder.header(header::CONTENT_TYPE, content_type);
        let body = if *call.method == Method::HEAD {
            empty()
        } else {
            let labels = route_labels(call.route);
            let served = self.metrics.bytes_served.get_or_create(&labels).clone();
            let observer = Observer {
                metrics: self.metrics.clone(),
                labels,
                served,
            };
            let stream = VerifiedBody::new(
                response.bytes_stream(),
                digest.to_owned(),
                status == StatusCode::OK,
                observer,
                Some(permit),
            );
            use futures::TryStreamExt as _;
            StreamBody::new(stream.map_ok(hyper::body::Frame::data)).boxed_unsync()
        };
        builder.body(body).map_err(|error| {
            SpecError::new(
                ErrorCode::UpstreamFailed,
                format!("building the response: {error}"),
            )
        })
    }

    async fn tag_list(&self, call: &Call<'_>) -> Result<Response<Body>, SpecError> {
        let query = tag_list_query(call.query)?;
        let mut request = call.request(Method::GET, "tags/list".to_owned());
        request.query = query;
        let (response, _permit) = self.upstream(call, request).await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(call, &response, ErrorCode::NameUnknown, "tags/list"));
        }
        let link = response
            .headers()
            .get(header::LINK)
            .and_then(|value| value.to_str().ok())
            .map(|link| {
                link.replace(
                    &format!("/v2/{}/", call.upstream.repository()),
                    &format!("/v2/{}/", call.name),
                )
            });
        let bytes = read_limited(response, MAX_MANIFEST_BYTES, call, "tags/list").await?;
        let mut list: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
            SpecError::new(
                ErrorCode::UpstreamFailed,
                "the upstream's tag list is not JSON".to_owned(),
            )
        })?;
        if let Some(object) = list.as_object_mut() {
            object.insert("name".to_owned(), serde_json::Value::from(call.name));
        }
        let body = Bytes::from(list.to_string());
        let length = body.len().to_string();
        let mut headers = vec![
            (header::CONTENT_TYPE, JSON),
            (header::CONTENT_LENGTH, length.as_str()),
        ];
        if let Some(link) = &link {
            headers.push((header::LINK, link.as_str()));
        }
        Ok(respond(
            StatusCode::OK,
            &headers,
            body_for(call.method, body),
        ))
    }

    async fn referrers(&self, call: &Call<'_>, digest: &str) -> Result<Response<Body>, SpecError> {
        let query = referrers_query(call.query)?;
        let mut request = call.request(Method::GET, format!("referrers/{digest}"));
        request.query = query;
        let (response, _permit) = self.upstream(call, request).await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(call, &response, ErrorCode::ManifestUnknown, digest));
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/vnd.oci.image.index.v1+json")
            .to_owned();
        let filters = response
            .headers()
            .get(OCI_FILTERS_APPLIED)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(response, MAX_MANIFEST_BYTES, call, digest).await?;
        let length = bytes.len().to_string();
        let mut headers = vec![
            (header::CONTENT_TYPE, content_type.as_str()),
            (header::CONTENT_LENGTH, length.as_str()),
        ];
        if let Some(filters) = &filters {
            headers.push((
                HeaderName::from_static(OCI_FILTERS_APPLIED),
                filters.as_str(),
            ));
        }
        Ok(respond(
            StatusCode::OK,
            &headers,
            body_for(call.method, bytes),
        ))
    }

    /// For `/v2/` asked of a host with a `passthrough` route: the upstream's challenge when it
    /// refuses the client's credentials (or their absence), so that clients log in.
    async fn root_challenge(&self, headers: &HeaderMap) -> Option<SpecError> {
        let host = request_host(headers);
        let route = self
            .routes
            .routes()
            .iter()
            .find(|route| route.access == Access::Passthrough && route.serves_host(host))?;
        let upstream = Reference::with_tag(
            route.registry.clone(),
            "ping".to_owned(),
            PLACEHOLDER_TAG.to_owned(),
        );
        let response = match self
            .registry
            .ping(&upstream, headers.get(header::AUTHORIZATION).cloned())
            .await
        {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(route = %route.label, error = %Chain(&error), "upstream ping failed");
                return Some(SpecError::new(
                    ErrorCode::UpstreamFailed,
                    "the upstream registry could not be reached".to_owned(),
                ));
            }
        };
        if response.status() != StatusCode::UNAUTHORIZED {
            return None;
        }
        let error = SpecError::new(
            ErrorCode::Unauthorized,
            "authentication is required".to_owned(),
        );
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .and_then(Challenge::parse);
        Some(match challenge {
            Some(upstream) => {
                error.with_challenge(self.rewrite_challenge(headers, route, &upstream))
            }
            None => error,
        })
    }

    /// An upstream challenge as a client of `route` sees it; a bearer realm is remembered.
    fn rewrite_challenge(
        &self,
        headers: &HeaderMap,
        route: &Route,
        upstream: &Challenge,
    ) -> String {
        if upstream.is_bearer()
            && let Some(realm) = upstream.param("realm")
        {
            self.realms
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(route.registry.clone(), realm.to_owned());
        }
        let realm = format!(
            "{}://{}{TOKEN_PATH}",
            self.client_scheme(headers),
            request_host(headers).unwrap_or("localhost")
        );
        client_challenge(upstream, &realm, |name| route.vanity_name(name)).render()
    }

    /// The scheme clients use: `X-Forwarded-Proto` from an ingress, else the listener's.
    fn client_scheme<'a>(&self, headers: &'a HeaderMap) -> &'a str {
        match headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(',').next().unwrap_or_default().trim())
        {
            Some("https") => "https",
            Some("http") => "http",
            _ => self.scheme,
        }
    }

    /// The token endpoint of `passthrough` routes: the client's token request, with its scope
    /// renamed to upstream repositories and cut to `pull`, sent to the upstream's token server
    /// with the client's credentials, and the answer passed back as it came.
    async fn token(
        &self,
        headers: &HeaderMap,
        query: &str,
    ) -> Result<(String, Response<Body>), SpecError> {
        let host = request_host(headers);
        let names = scope_repositories(query);
        let target = names
            .first()
            .and_then(|name| self.routes.resolve(host, name))
            .filter(|target| target.route.access == Access::Passthrough)
            .ok_or_else(|| {
                SpecError::new(
                    ErrorCode::NameUnknown,
                    "a token request needs a repository scope naming a passthrough route"
                        .to_owned(),
                )
            })?;
        let route = target.route;
        let upstream_query = upstream_token_query(query, |name| {
            self.routes
                .resolve(host, name)
                .filter(|other| {
                    other.route.access == Access::Passthrough
                        && other.route.registry == route.registry
                })
                .map(|other| other.repository)
        })?;
        let upstream = Reference::with_tag(
            route.registry.clone(),
            target.repository.clone(),
            PLACEHOLDER_TAG.to_owned(),
        );
        let learned = self
            .realms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&route.registry)
            .cloned();
        let realm = match learned {
            Some(realm) => realm,
            None => {
                let response = self.registry.ping(&upstream, None).await.map_err(|error| {
                    tracing::warn!(route = %route.label, error = %Chain(&error), "upstream ping failed");
                    SpecError::new(ErrorCode::UpstreamFailed, "the upstream registry could not be reached".to_owned())
                })?;
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|value| value.to_str().ok())
                    .and_then(Challenge::parse)
                    .filter(Challenge::is_bearer);
                let realm = challenge
                    .as_ref()
                    .and_then(|challenge| challenge.param("realm"))
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        SpecError::new(
                            ErrorCode::Unsupported,
                            "the upstream offers no token service; send credentials with each request instead".to_owned(),
                        )
                    })?;
                self.realms
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(route.registry.clone(), realm.clone());
                realm
            }
        };
        let response = self
            .registry
            .token_request(&upstream, &realm, &upstream_query, headers.get(header::AUTHORIZATION).cloned())
            .await
            .map_err(|error| {
                tracing::warn!(route = %route.label, error = %Chain(&error), "upstream token request failed");
                SpecError::new(ErrorCode::UpstreamFailed, "the upstream token service could not be reached".to_owned())
            })?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or(JSON)
            .to_owned();
        // A token service refusing the client says how to authenticate: the client needs that
        // challenge to ask its user for credentials.
        let challenge = (status == StatusCode::UNAUTHORIZED)
            .then(|| response.headers().get(header::WWW_AUTHENTICATE))
            .flatten()
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut body = BytesMut::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|_| {
            SpecError::new(
                ErrorCode::UpstreamFailed,
                "the upstream token answer broke off".to_owned(),
            )
        })? {
            if (body.len() + chunk.len()) as u64 > MAX_TOKEN_BYTES {
                return Err(SpecError::new(
                    ErrorCode::UpstreamFailed,
                    "the upstream token answer is too large".to_owned(),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let mut headers = vec![
            (header::CONTENT_TYPE, content_type.as_str()),
            (header::CACHE_CONTROL, "no-store"),
        ];
        if let Some(challenge) = &challenge {
            headers.push((header::WWW_AUTHENTICATE, challenge.as_str()));
        }
        Ok((
            route.label.clone(),
            respond(status, &headers, full(body.freeze())),
        ))
    }

    /// The error for an upstream answer other than success.
    fn status_error(
        &self,
        call: &Call<'_>,
        response: &reqwest::Response,
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

/// Counts bytes served and mismatches of one blob stream.
struct Observer {
    metrics: Metrics,
    labels: RouteLabels,
    /// The route's served-bytes counter, looked up once per stream.
    served: Counter,
}

impl StreamObserver for Observer {
    fn sent(&self, bytes: u64) {
        self.served.inc_by(bytes);
    }

    fn mismatch(&self, error: &StreamError) {
        self.metrics
            .digest_mismatches
            .get_or_create(&self.labels)
            .inc();
        tracing::warn!(route = %self.labels.route, error = %error, "upstream blob does not match its digest; aborted");
    }
}

/// A manifest with its digest, type and length.
fn manifest_response(method: &Method, digest: &str, manifest: CachedManifest) -> Response<Body> {
    let length = manifest.bytes.len().to_string();
    respond(
        StatusCode::OK,
        &[
            (header::CONTENT_TYPE, manifest.media_type.as_str()),
            (header::CONTENT_LENGTH, length.as_str()),
            (
                HeaderName::from_static(DOCKER_CONTENT_DIGEST_HEADER),
                digest,
            ),
        ],
        body_for(method, manifest.bytes),
    )
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
    mut response: reqwest::Response,
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

/// The `mediaType` a manifest declares in its body.
fn declared_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct MediaTypeOnly {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<MediaTypeOnly>(bytes)
        .ok()
        .and_then(|body| body.media_type)
        .filter(|media_type| !media_type.is_empty())
}

/// The `n` and `last` of a tag list request, checked and re-encoded.
fn tag_list_query(query: Option<&str>) -> Result<Option<String>, SpecError> {
    let mut parts = Vec::new();
    for (key, value) in query_pairs(query) {
        match key {
            "n" if !value.is_empty()
                && value.len() <= 9
                && value.bytes().all(|b| b.is_ascii_digit()) =>
            {
                parts.push(format!("n={value}"));
            }
            "n" => {
                return Err(SpecError::new(
                    ErrorCode::PaginationInvalid,
                    format!("n={value:?} is not a number of tags"),
                ));
            }
            "last" if is_valid_tag(value) => parts.push(format!("last={value}")),
            "last" => {
                return Err(SpecError::new(
                    ErrorCode::PaginationInvalid,
                    format!("last={value:?} is not a tag"),
                ));
            }
            _ => {}
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("&")))
}

/// The `artifactType` filter of a referrers request, checked and passed on.
fn referrers_query(query: Option<&str>) -> Result<Option<String>, SpecError> {
    let mut parts = Vec::new();
    for (key, value) in query_pairs(query) {
        if key != "artifactType" {
            continue;
        }
        let valid = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+/%".contains(&b));
        if !valid {
            return Err(SpecError::new(
                ErrorCode::Unsupported,
                format!("artifactType={value:?} is not a media type"),
            ));
        }
        parts.push(format!("artifactType={value}"));
    }
    Ok((!parts.is_empty()).then(|| parts.join("&")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_and_filters_are_checked_before_going_upstream() {
        assert_eq!(tag_list_query(None).unwrap(), None);
        assert_eq!(
            tag_list_query(Some("n=10&last=v1&other=x"))
                .unwrap()
                .as_deref(),
            Some("n=10&last=v1")
        );
        for bad in ["n=-1", "n=abc", "n=", "last=../x", "n=1234567890"] {
            assert_eq!(
                tag_list_query(Some(bad)).unwrap_err().code,
                ErrorCode::PaginationInvalid,
                "{bad}"
            );
        }
        assert_eq!(
            referrers_query(Some(
                "artifactType=application/vnd.dev.cosign.artifact.sig.v1%2Bjson"
            ))
            .unwrap()
            .as_deref(),
            Some("artifactType=application/vnd.dev.cosign.artifact.sig.v1%2Bjson")
        );
        assert!(referrers_query(Some("artifactType=a b")).is_err());
    }
}
