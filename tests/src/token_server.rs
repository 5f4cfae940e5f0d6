//! A token server for distribution's `token` auth, on a free 127.0.0.1 port: `GET /token`
//! with HTTP Basic credentials answers `{"token", "access_token", "expires_in", "issued_at"}`
//! carrying an ES256 JWT whose `x5c` header holds a self-signed certificate that the registry
//! trusts through `rootcertbundle` ([`TokenServer::cert_path`]).
//!
//! Like distribution's own `contrib/token-server` (an htpasswd access controller in front of
//! the token issuer), every request must authenticate: anonymous requests and wrong passwords
//! get `401` with `WWW-Authenticate: Basic realm="token"`. A user is granted the requested
//! actions it is allowed ([`TokenUser::actions`]); the others are left out of the token, as
//! distribution's servers do. Every request is recorded ([`TokenServer::requests`]) and every
//! token issued is remembered ([`TokenServer::issued_tokens`]) so tests can check what the
//! server saw and that tokens leak nowhere.
//!
//! The key and certificate are made with `openssl`; the server runs on its own thread with
//! its own runtime and stops on drop.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;
use serde_json::json;
use tokio::sync::oneshot;

/// The `service` the registry announces and the tokens' audience.
pub const SERVICE: &str = "securebuild-test";
/// The tokens' issuer.
pub const ISSUER: &str = "securebuild-test-issuer";
/// The Basic realm of the token server's own challenge.
pub const BASIC_REALM: &str = "token";
/// How long issued tokens are valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

const KEY_FILE: &str = "token.key";
const CERT_FILE: &str = "token.crt";
const TOKEN_PATH: &str = "/token";
/// Tokens are valid from a little before they are issued, for clock skew.
const NOT_BEFORE_LEEWAY: u64 = 10;

/// Failures starting the token server.
#[derive(Debug, thiserror::Error)]
pub enum TokenServerError {
    /// Creating the temporary directory or running openssl failed.
    #[error("preparing token server file {path}")]
    Prepare {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// openssl ran but failed.
    #[error("openssl could not make the token signing key: {stderr}")]
    Openssl {
        /// Its error output.
        stderr: String,
    },
    /// The key or certificate openssl made could not be read.
    #[error("reading the token signing key or certificate: {reason}")]
    Key {
        /// What was wrong.
        reason: String,
    },
    /// Binding the listener or starting the runtime failed.
    #[error("starting the token server")]
    Start {
        /// Underlying failure.
        #[source]
        source: std::io::Error,
    },
}

/// A user of the token server and the actions it may be granted.
#[derive(Debug, Clone)]
pub struct TokenUser {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Actions it may be granted on any repository (`pull`, `push`, ...).
    pub actions: Vec<String>,
}

impl TokenUser {
    /// A user that may pull and push.
    pub fn read_write(name: &str, password: &str) -> Self {
        Self::new(name, password, &["pull", "push"])
    }

    /// A user that may only pull.
    pub fn read_only(name: &str, password: &str) -> Self {
        Self::new(name, password, &["pull"])
    }

    /// A user that may be granted `actions`.
    pub fn new(name: &str, password: &str, actions: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            password: password.to_owned(),
            actions: actions.iter().map(|action| (*action).to_owned()).collect(),
        }
    }
}

/// One request the token server got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The user whose credentials were valid; `None` when anonymous or wrong.
    pub user: Option<String>,
    /// Whether Basic credentials were sent at all.
    pub sent_credentials: bool,
    /// The `service` parameter.
    pub service: Option<String>,
    /// The `account` parameter.
    pub account: Option<String>,
    /// Every requested scope, one entry each (`repository:NAME:ACTIONS`).
    pub scopes: Vec<String>,
    /// The HTTP status answered.
    pub status: u16,
}

struct State {
    users: Vec<TokenUser>,
    key: p256::ecdsa::SigningKey,
    cert_der: Vec<u8>,
    requests: Mutex<Vec<TokenRequest>>,
    issued: Mutex<Vec<String>>,
    serial: AtomicU64,
}

/// A running token server; stopped on drop.
pub struct TokenServer {
    port: u16,
    state: Arc<State>,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl TokenServer {
    /// Makes a key and certificate and starts serving `users`.
    pub fn start(users: Vec<TokenUser>) -> Result<Self, TokenServerError> {
        let dir = tempfile::Builder::new()
            .prefix("securebuild-token-")
            .tempdir()
            .map_err(|source| TokenServerError::Prepare {
                path: std::env::temp_dir(),
                source,
            })?;
        let (key, cert_der) = make_key(dir.path())?;
        let state = Arc::new(State {
            users,
            key,
            cert_der,
            requests: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
            serial: AtomicU64::new(0),
        });
        let listener = std::net::TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .map_err(|source| TokenServerError::Start { source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| TokenServerError::Start { source })?;
        let port = listener
            .local_addr()
            .map_err(|source| TokenServerError::Start { source })?
            .port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| TokenServerError::Start { source })?;
        let (stop, stopped) = oneshot::channel();
        let served = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            runtime.block_on(serve(listener, served, stopped));
        });
        Ok(Self {
            port,
            state,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>/token`, the realm the registry announces.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}{TOKEN_PATH}", self.port)
    }

    /// The self-signed certificate the registry trusts (`rootcertbundle`).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join(CERT_FILE)
    }

    /// The users it serves.
    pub fn users(&self) -> &[TokenUser] {
        &self.state.users
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state
            .issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes a P-256 key (`key`, PKCS#8 PEM) and a self-signed certificate for it (`certificate`,
/// PEM, valid two days) with openssl: for the token server's `x5c`, and for TLS test servers
/// (`extensions` such as `subjectAltName=DNS:localhost,IP:127.0.0.1`, each given to
/// `-addext`).
pub fn self_signed_certificate(
    key: &Path,
    certificate: &Path,
    subject: &str,
    extensions: &[&str],
) -> Result<(), TokenServerError> {
    let mut command = Command::new("openssl");
    command.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        subject,
    ]);
    for extension in extensions {
        command.arg("-addext").arg(extension);
    }
    let output = command
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(certificate)
        .output()
        .map_err(|source| TokenServerError::Prepare {
            path: key.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(TokenServerError::Openssl {
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Makes a P-256 key and a self-signed certificate for it with openssl.
fn make_key(dir: &Path) -> Result<(p256::ecdsa::SigningKey, Vec<u8>), TokenServerError> {
    let key_path = dir.join(KEY_FILE);
    let cert_path = dir.join(CERT_FILE);
    self_signed_certificate(&key_path, &cert_path, "/CN=securebuild-test-token", &[])?;
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| TokenServerError::Prepare {
            path: path.to_owned(),
            source,
        })
    };
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&read(&key_path)?).map_err(|error| {
        TokenServerError::Key {
            reason: format!("{}: {error}", key_path.display()),
        }
    })?;
    let cert_pem = read(&cert_path)?;
    let body: String = cert_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let cert_der = BASE64
        .decode(body.trim())
        .map_err(|error| TokenServerError::Key {
            reason: format!("{}: {error}", cert_path.display()),
        })?;
    Ok((key, cert_der))
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stopped: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(&state, &request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(state: &State, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != TOKEN_PATH {
        return respond(404, None, "not found\n".to_owned());
    }
    let mut service = None;
    let mut account = None;
    let mut scopes = Vec::new();
    for (key, value) in url_params(request.uri().query().unwrap_or_default()) {
        match key.as_str() {
            "service" => service = Some(value),
            "account" => account = Some(value),
            "scope" => scopes.extend(value.split_whitespace().map(str::to_owned)),
            _ => {}
        }
    }
    let basic = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| BASE64.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let user = basic.as_deref().and_then(|pair| {
        let (name, password) = pair.split_once(':')?;
        state
            .users
            .iter()
            .find(|user| user.name == name && user.password == password)
    });
    let (status, response) = match user {
        None => (
            401,
            respond(
                401,
                Some(format!("Basic realm=\"{BASIC_REALM}\"")),
                json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
                    .to_string(),
            ),
        ),
        Some(_) if service.as_deref() != Some(SERVICE) => (
            400,
            respond(
                400,
                None,
                json!({"errors": [{"code": "UNSUPPORTED", "message": "unknown service"}]})
                    .to_string(),
            ),
        ),
        Some(user) => {
            let token = issue(state, user, &scopes);
            let now = now_seconds();
            let body = json!({
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME.as_secs(),
                "issued_at": rfc3339(now),
            });
            (200, respond(200, None, body.to_string()))
        }
    };
    state
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(TokenRequest {
            user: user.map(|user| user.name.clone()),
            sent_credentials: basic.is_some(),
            service,
            account,
            scopes,
            status,
        });
    response
}

/// A signed JWT granting `user` the requested actions it is allowed.
fn issue(state: &State, user: &TokenUser, scopes: &[String]) -> String {
    let mut access = Vec::new();
    for scope in scopes {
        let mut parts = scope.splitn(2, ':');
        let (Some(kind), Some(rest)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        if kind != "repository" {
            continue;
        }
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|action| user.actions.iter().any(|allowed| allowed == action))
            .collect();
        access.push(json!({"type": kind, "name": name, "actions": granted}));
    }
    let now = now_seconds();
    let serial = state.serial.fetch_add(1, Ordering::Relaxed);
    let header = json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [BASE64.encode(&state.cert_der)],
    });
    let claims = json!({
        "iss": ISSUER,
        "sub": user.name,
        "aud": SERVICE,
        "exp": now + TOKEN_LIFETIME.as_secs(),
        "nbf": now.saturating_sub(NOT_BEFORE_LEEWAY),
        "iat": now,
        "jti": format!("securebuild-test-{now}-{serial}"),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        BASE64URL.encode(header.to_string()),
        BASE64URL.encode(claims.to_string())
    );
    let signature: p256::ecdsa::Signature = state.key.sign(signing_input.as_bytes());
    let token = format!(
        "{signing_input}.{}",
        BASE64URL.encode(signature.to_bytes().as_slice())
    );
    state
        .issued
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(token.clone());
    token
}

fn respond(status: u16, challenge: Option<String>, body: String) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(challenge) = challenge {
        builder = builder.header(hyper::header::WWW_AUTHENTICATE, challenge);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// `key=value` pairs of a query, percent- and plus-decoded.
fn url_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_and_decodes_queries() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(
            url_params("scope=repository%3Ateam%2Fapp%3Apull%2Cpush&service=a+b&x=%"),
            [
                (
                    "scope".to_owned(),
                    "repository:team/app:pull,push".to_owned()
                ),
                ("service".to_owned(), "a b".to_owned()),
                ("x".to_owned(), "%".to_owned()),
            ]
        );
    }
}
