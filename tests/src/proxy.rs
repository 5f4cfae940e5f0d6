//! Loopback proxies that put faults between the operator and what it talks to.
//!
//! [`RegistryProxy`] is an HTTP/1.1 reverse proxy in front of a test registry: it records every
//! exchange (method, path, query, request body size, status), fails pushes with `503` while told to, and runs hooks when a
//! request matches (to kill the operator or stop the API server at a precise step of a build).
//! [`TcpProxy`] forwards TCP connections (TLS passes through untouched) and drops every open
//! connection on demand, which ends the operator's watch streams. Both bind to 127.0.0.1 only
//! and stop when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Failures starting a proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The loopback listener could not be bound.
    #[error("binding a proxy listener on 127.0.0.1")]
    Bind {
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

/// One request the registry proxy handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// The method.
    pub method: String,
    /// The path (without the query).
    pub path: String,
    /// The query, without `?` (empty when there is none).
    pub query: String,
    /// Bytes in the request body.
    pub request_bytes: u64,
    /// The status sent back.
    pub status: u16,
}

impl Exchange {
    /// Whether this was a push of a manifest under `reference` (a tag or digest) in `repository`.
    pub fn is_manifest_put(&self, repository: &str, reference: &str) -> bool {
        self.method == Method::PUT.as_str()
            && self.path == format!("/v2/{repository}/manifests/{reference}")
    }

    /// Whether the registry accepted it.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What a hook matches: a method and a path suffix.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// The method.
    pub method: Method,
    /// What the path ends with (for example `.sig`).
    pub path_suffix: String,
    /// What the path contains (for example a repository).
    pub path_contains: String,
}

impl Matcher {
    fn matches(&self, method: &Method, path: &str) -> bool {
        method == self.method
            && path.ends_with(&self.path_suffix)
            && path.contains(&self.path_contains)
    }
}

/// An action a hook runs, awaited before the request is forwarded; it returns whether to
/// forward the request (`false` answers `502` without reaching the registry, as if the
/// client had died before sending it).
pub type HookAction = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

struct Hook {
    matcher: Matcher,
    action: HookAction,
}

type Body = BoxBody<Bytes, hyper::Error>;

struct RegistryState {
    upstream: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    exchanges: Mutex<Vec<Exchange>>,
    fail_pushes: AtomicBool,
    hooks: Mutex<Vec<Hook>>,
}

/// A listener on a free 127.0.0.1 port, and its address.
async fn bind_loopback() -> Result<(TcpListener, SocketAddr), ProxyError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| ProxyError::Bind { source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ProxyError::Bind { source })?;
    Ok((listener, addr))
}

/// An HTTP reverse proxy in front of a registry; see the module docs.
pub struct RegistryProxy {
    addr: SocketAddr,
    state: Arc<RegistryState>,
    task: JoinHandle<()>,
}

impl RegistryProxy {
    /// Starts a proxy on a free 127.0.0.1 port forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self, ProxyError> {
        let (listener, addr) = bind_loopback().await?;
        let state = Arc::new(RegistryState {
            upstream,
            client: Client::builder(TokioExecutor::new()).build_http(),
            exchanges: Mutex::new(Vec::new()),
            fail_pushes: AtomicBool::new(false),
            hooks: Mutex::new(Vec::new()),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        // Handled on a task of its own, so that an exchange the client gave up
                        // on (a killed operator) still reaches the registry as sent and is
                        // recorded.
                        let exchange = tokio::spawn(async move { handle(&state, request).await });
                        async move {
                            Ok::<_, Infallible>(exchange.await.unwrap_or_else(|_| {
                                text_response(StatusCode::BAD_GATEWAY, "the proxy task failed")
                            }))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// `127.0.0.1:<port>`, the registry host as image references name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every exchange so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state
            .exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes every push (`POST`, `PUT`, `PATCH`) fail with `503` until called with `false`.
    pub fn fail_pushes(&self, fail: bool) {
        self.state.fail_pushes.store(fail, Ordering::SeqCst);
    }

    /// Runs `action` (once) on the first request that `matcher` matches, before forwarding it.
    pub fn on_request(&self, matcher: Matcher, action: HookAction) {
        self.state
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Hook { matcher, action });
    }
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

async fn handle(state: &RegistryState, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    // The body is read whole (test blobs are small), counted and sent on.
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return text_response(StatusCode::BAD_REQUEST, "the request body failed"),
    };
    let request_bytes = body.len() as u64;
    let request = Request::from_parts(parts, Full::new(body));
    let push = matches!(method, Method::POST | Method::PUT | Method::PATCH);
    let response = if push && state.fail_pushes.load(Ordering::SeqCst) {
        text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"pushes fail for a while\"}]}",
        )
    } else {
        let hook = {
            let mut hooks = state.hooks.lock().unwrap_or_else(PoisonError::into_inner);
            hooks
                .iter()
                .position(|h| h.matcher.matches(&method, &path))
                .map(|index| hooks.remove(index).action)
        };
        let forwarded = match hook {
            Some(action) => action().await,
            None => true,
        };
        if forwarded {
            forward(state, request).await
        } else {
            text_response(StatusCode::BAD_GATEWAY, "dropped by a test hook")
        }
    };
    state
        .exchanges
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Exchange {
            method: method.to_string(),
            path,
            query,
            request_bytes,
            status: response.status().as_u16(),
        });
    response
}

async fn forward(state: &RegistryState, mut request: Request<Full<Bytes>>) -> Response<Body> {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let Ok(uri) = format!("http://{}{path_and_query}", state.upstream).parse() else {
        return text_response(StatusCode::BAD_REQUEST, "bad request target");
    };
    *request.uri_mut() = uri;
    match state.client.request(request).await {
        Ok(response) => response.map(|body| body.boxed()),
        Err(_) => text_response(StatusCode::BAD_GATEWAY, "the registry did not answer"),
    }
}

/// A TCP forwarder that can drop every open connection; see the module docs.
pub struct TcpProxy {
    addr: SocketAddr,
    connections: Arc<Mutex<JoinSet<()>>>,
    refusing: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts a forwarder on a free 127.0.0.1 port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self, ProxyError> {
        let (listener, addr) = bind_loopback().await?;
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let refusing = Arc::new(AtomicBool::new(false));
        let held = connections.clone();
        let refuse = refusing.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if refuse.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut set = held.lock().unwrap_or_else(PoisonError::into_inner);
                // Reap finished connections so the set stays small.
                while set.try_join_next().is_some() {}
                set.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            connections,
            refusing,
            task,
        })
    }

    /// While `true`, closes every new connection at once.
    pub fn refuse(&self, refuse: bool) {
        self.refusing.store(refuse, Ordering::SeqCst);
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection (new ones are still accepted); returns how many.
    pub fn drop_connections(&self) -> usize {
        let mut set = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let open = set.len();
        set.abort_all();
        open
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.drop_connections();
    }
}
