//! The web console: a read-only view of every ImageBuild the operator watches — the image
//! list, one image with its build history and package changes, a package search across all
//! images — served on a port of its own (off unless `--console-addr` is given; the chart turns
//! it on).
//!
//! Pages are server-rendered HTML from the controller's own watch caches
//! ([`WatchedImageBuilds`]), so a page costs no API request; JavaScript only adds copy buttons
//! and live updates (server-sent events on `/events`). Nothing here changes anything in the
//! cluster: every route is `GET` (and `HEAD`). The only reads beyond the caches are on demand:
//! an SBOM download fetches the attestation from the registry with the ImageBuild's push
//! Secret, and `/cosign.pub` reads the signing key Secret. The console has no login of its
//! own: put the user's authentication in front (docs/install.md shows oauth2-proxy).

pub mod html;
pub mod live;
pub mod model;
pub mod pages;
pub mod sbom;
pub mod search;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use securebuild_builder::error::Chain;
use securebuild_crds::ImageBuild;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::Config;
use crate::signer::Signer;
use crate::watched::WatchedImageBuilds;

use self::model::ListFilter;
use self::pages::Site;
use self::sbom::parse_file_name;

/// The console's stylesheet.
pub const STYLESHEET: &str = include_str!("assets/console.css");
/// The console's script.
pub const SCRIPT: &str = include_str!("assets/console.js");
/// The Content-Security-Policy of every response: nothing from elsewhere, no inline script.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The thing asked for is not there.
    #[error("{what}")]
    NotFound {
        /// What is missing.
        what: String,
    },
    /// SBOMs are verified with the operator's key, and there is none.
    #[error(
        "the operator has no signing key configured (signingKeySecret), so it cannot verify SBOM attestations"
    )]
    NoSigningKey,
    /// An SBOM could not be read or checked.
    #[error("{message}")]
    Sbom {
        /// What went wrong.
        message: String,
    },
}

/// What SBOM downloads and the public key need: the API client (for the push and signing key
/// Secrets), the configuration (plain-HTTP registries) and the signer (the key).
#[derive(Clone)]
pub struct SbomSource {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The operator configuration.
    pub config: Arc<Config>,
    /// The signer, when the operator signs.
    pub signer: Option<Arc<Signer>>,
}

/// What the console's handlers read.
#[derive(Clone)]
pub struct ConsoleState {
    /// The controller's caches.
    pub watched: WatchedImageBuilds,
    /// SBOMs and the public key; `None` where no cluster is at hand (tests, benchmarks).
    pub sbom: Option<SbomSource>,
    /// Ends live streams at shutdown.
    pub shutdown: CancellationToken,
}

impl ConsoleState {
    fn site(&self) -> Site {
        Site {
            signs: self
                .sbom
                .as_ref()
                .is_some_and(|source| source.signer.is_some()),
        }
    }
}

/// The console's routes.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(images))
        .route("/images/{namespace}/{name}", get(image))
        .route("/images/{namespace}/{name}/sbom/{file}", get(sbom_download))
        .route("/packages", get(packages))
        .route("/events", get(events))
        .route("/cosign.pub", get(public_key))
        .route(html::STYLESHEET_PATH, get(stylesheet))
        .route(html::SCRIPT_PATH, get(script))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found)
        .with_state(state)
}

/// A response with the console's security headers.
fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut response = (status, body.into()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html_response(status: StatusCode, body: String) -> Response {
    respond(status, "text/html; charset=utf-8", body)
}

/// The ImageBuild `namespace/name` among the cached ones.
fn find<'a>(
    snapshot: &'a [Arc<ImageBuild>],
    namespace: &str,
    name: &str,
) -> Option<&'a Arc<ImageBuild>> {
    snapshot
        .iter()
        .find(|ib| ib.namespace().as_deref() == Some(namespace) && ib.name_any() == name)
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn images(State(state): State<ConsoleState>, uri: Uri) -> Response {
    let filter = ListFilter::from_query(&query_pairs(&uri));
    let snapshot = state.watched.snapshot();
    let html = pages::images_page(
        &snapshot,
        &filter,
        state.watched.is_active(),
        Timestamp::now(),
    );
    html_response(StatusCode::OK, html)
}

async fn image(
    State(state): State<ConsoleState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let snapshot = state.watched.snapshot();
    let Some(ib) = find(&snapshot, &namespace, &name) else {
        return html_response(
            StatusCode::NOT_FOUND,
            pages::not_found_page(&format!(
                "No ImageBuild {namespace}/{name} is watched by this operator."
            )),
        );
    };
    let version = pages::version_of(&snapshot);
    let html = pages::image_page(ib, &version, &state.site(), Timestamp::now());
    html_response(StatusCode::OK, html)
}

async fn sbom_download(
    State(state): State<ConsoleState>,
    Path((namespace, name, file)): Path<(String, String, String)>,
) -> Response {
    let text = |status, message: String| respond(status, "text/plain; charset=utf-8", message);
    let Some((platform, format)) = parse_file_name(&file) else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "`{file}` is not an SBOM file: ask for PLATFORM.spdx.json or PLATFORM.cdx.json"
            ),
        );
    };
    let snapshot = state.watched.snapshot();
    let Some(ib) = find(&snapshot, &namespace, &name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no ImageBuild {namespace}/{name} is watched by this operator"),
        );
    };
    let Some(source) = &state.sbom else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "SBOM downloads need the operator's cluster access".into(),
        );
    };
    match sbom::document(source, ib, &platform, format).await {
        Ok(bytes) => {
            let mut response = respond(StatusCode::OK, format.content_type(), bytes);
            let disposition = format!("attachment; filename=\"{name}-{file}\"");
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(error @ ConsoleError::NotFound { .. }) => {
            text(StatusCode::NOT_FOUND, error.to_string())
        }
        Err(error) => {
            tracing::warn!(imagebuild = %format!("{namespace}/{name}"), error = %error, "SBOM download failed");
            text(StatusCode::BAD_GATEWAY, error.to_string())
        }
    }
}

async fn packages(State(state): State<ConsoleState>, uri: Uri) -> Response {
    let pairs = query_pairs(&uri);
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let snapshot = state.watched.snapshot();
    let html = pages::packages_page(&snapshot, get("name"), get("range"));
    html_response(StatusCode::OK, html)
}

async fn events(State(state): State<ConsoleState>) -> Response {
    let stream = live::updates(state.watched.clone(), state.shutdown.clone());
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx (ingress-nginx) would otherwise buffer the stream and delay every event.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

async fn public_key(State(state): State<ConsoleState>) -> Response {
    let text = |status, message: String| respond(status, "text/plain; charset=utf-8", message);
    let Some(signer) = state.sbom.as_ref().and_then(|s| s.signer.clone()) else {
        return text(
            StatusCode::NOT_FOUND,
            "this operator does not sign: no signingKeySecret is configured".into(),
        );
    };
    match signer.signing_key().await {
        Ok(key) => match key.verifying_key().to_pem() {
            Ok(pem) => respond(StatusCode::OK, "application/x-pem-file", pem),
            Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, Chain(&error).to_string()),
        },
        Err(error) => text(
            StatusCode::BAD_GATEWAY,
            format!("cannot read the signing key: {}", Chain(&error)),
        ),
    }
}

async fn stylesheet() -> Response {
    respond(StatusCode::OK, "text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> Response {
    respond(StatusCode::OK, "text/javascript; charset=utf-8", SCRIPT)
}

async fn not_found(uri: Uri) -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        pages::not_found_page(&format!("There is no page at {}.", uri.path())),
    )
}

/// Serves the console on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, state: ConsoleState) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(|source| Error::Http {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    tracing::info!(%addr, "serving the console");
    let shutdown = state.shutdown.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| Error::Http { addr, source })
}
