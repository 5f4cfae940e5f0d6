//! A loopback HTTP/1.1 file server for tests, hand-written on `tokio::net::TcpListener` so
//! that every byte, delay and fault is under the test's control.
//!
//! It serves files below a root directory with `Content-Length`, strong `ETag`s,
//! `If-None-Match` → 304 and `Range: bytes=` → 206, records every request, and injects faults
//! per path (error statuses with `Retry-After`, connection resets, truncated or wrong bodies,
//! bounded delays). It binds only to 127.0.0.1, speaks plain HTTP only (no TLS, no chunked
//! encoding, no compression) and stops when dropped.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Longest delay a [`Fault::Delay`] may impose.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// Largest request head (request line plus headers) the server reads.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// Largest request body the server reads and discards.
pub const MAX_REQUEST_BODY: u64 = 1024 * 1024;

const ACCEPT_RETRY: Duration = Duration::from_millis(10);
const HEADER_CONTENT_LENGTH: &str = "content-length";
const HEADER_CONNECTION: &str = "connection";
const HEADER_IF_NONE_MATCH: &str = "if-none-match";
const HEADER_RANGE: &str = "range";
const CONTENT_TYPE: &str = "application/octet-stream";

/// Failures of the test file server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The loopback listener could not be bound.
    #[error("binding a listener on 127.0.0.1")]
    Bind {
        /// Underlying failure.
        #[source]
        source: std::io::Error,
    },
}

/// A fault injected into responses for one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a short body, with `Retry-After: <seconds>` when set.
    Status {
        /// HTTP status code, e.g. 503 or 429.
        status: u16,
        /// Value of the `Retry-After` header in seconds.
        retry_after: Option<u64>,
    },
    /// Close the connection with a TCP reset instead of answering.
    Reset,
    /// Send the normal headers (full `Content-Length`) but only this many body bytes, then
    /// close the connection.
    Truncate(u64),
    /// Serve the file with its bytes altered (same length, same `ETag`).
    CorruptBody,
    /// Serve these bytes instead of the file (their own length and `ETag`).
    ReplaceBody(Vec<u8>),
    /// Wait this long (capped at [`MAX_DELAY`]) before answering normally.
    Delay(Duration),
}

impl Fault {
    /// `503 Service Unavailable` without `Retry-After`.
    pub fn unavailable() -> Self {
        Self::Status {
            status: 503,
            retry_after: None,
        }
    }

    /// `429 Too Many Requests` with `Retry-After: <seconds>`.
    pub fn too_many_requests(retry_after_seconds: u64) -> Self {
        Self::Status {
            status: 429,
            retry_after: Some(retry_after_seconds),
        }
    }
}

/// How many requests a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    /// The next `n` requests for the path.
    First(usize),
    /// Every request for the path.
    Always,
}

/// One request the server received, with the status it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Request target as sent (path and query).
    pub target: String,
    /// Decoded path without the query.
    pub path: String,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Status answered, or `None` when the connection was reset.
    pub status: Option<u16>,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The first value of header `name` (case-insensitive) in `headers`.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

struct FaultRule {
    fault: Fault,
    remaining: Option<usize>,
}

struct Shared {
    root: PathBuf,
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<BTreeMap<String, VecDeque<FaultRule>>>,
}

impl Shared {
    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        let rules = faults.get_mut(path)?;
        while let Some(rule) = rules.front_mut() {
            match &mut rule.remaining {
                Some(0) => {
                    rules.pop_front();
                }
                Some(remaining) => {
                    *remaining -= 1;
                    return Some(rule.fault.clone());
                }
                None => return Some(rule.fault.clone()),
            }
        }
        None
    }

    fn record(&self, request: RecordedRequest) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
    }
}

/// A running loopback file server; stops when dropped.
pub struct ServedDir {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl std::fmt::Debug for ServedDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedDir")
            .field("addr", &self.addr)
            .field("root", &self.shared.root)
            .finish_non_exhaustive()
    }
}

impl ServedDir {
    /// Starts serving `root` on an ephemeral 127.0.0.1 port (needs a tokio runtime).
    pub async fn start(root: impl Into<PathBuf>) -> Result<Self, ServeError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|source| ServeError::Bind { source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { source })?;
        let shared = Arc::new(Shared {
            root: root.into(),
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(BTreeMap::new()),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            accept_task,
        })
    }

    /// The bound address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of `path` below the root (a leading `/` is optional).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), normalize_path(path))
    }

    /// The directory being served.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Every request so far, in arrival order of completion.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The requests whose path is `path` (a leading `/` is optional).
    pub fn requests_for(&self, path: &str) -> Vec<RecordedRequest> {
        let path = normalize_path(path);
        self.requests()
            .into_iter()
            .filter(|request| request.path == path)
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Applies `fault` to requests for `path`; rules for one path apply in the order added.
    pub fn inject(&self, path: &str, times: Times, fault: Fault) {
        let remaining = match times {
            Times::First(count) => Some(count),
            Times::Always => None,
        };
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(normalize_path(path))
            .or_default()
            .push_back(FaultRule { fault, remaining });
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Drop for ServedDir {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// The strong `ETag` the server sends for `contents`.
pub fn etag_for(contents: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(contents));
    format!("\"{}\"", &digest[..32])
}

fn normalize_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _)) => {
                        connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                    }
                    Err(_) => tokio::time::sleep(ACCEPT_RETRY).await,
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

struct Request {
    method: String,
    target: String,
    path: String,
    headers: Vec<(String, String)>,
    wants_close: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader).await else {
            return;
        };
        let fault = shared.take_fault(&request.path);
        match respond(reader.get_mut(), &shared, &request, fault.as_ref()).await {
            After::Reset => return,
            After::KeepAlive if !request.wants_close => {}
            After::Close | After::KeepAlive => {
                let _ = reader.get_mut().shutdown().await;
                return;
            }
        }
    }
}

/// Reads one request head (and discards any body); `None` on EOF or malformed input.
async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut head_len = 0usize;
    let mut line = String::new();
    let read = reader.read_line(&mut line).await.ok()?;
    if read == 0 {
        return None;
    }
    head_len += read;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let version = parts.next().unwrap_or("HTTP/1.0").to_owned();

    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        let read = reader.read_line(&mut header).await.ok()?;
        head_len += read;
        if read == 0 || head_len > MAX_REQUEST_HEAD {
            return None;
        }
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }

    let body_len = header(&headers, HEADER_CONTENT_LENGTH)
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    if body_len > MAX_REQUEST_BODY {
        return None;
    }
    let mut discard = vec![0u8; usize::try_from(body_len).ok()?];
    reader.read_exact(&mut discard).await.ok()?;

    let connection = header(&headers, HEADER_CONNECTION).map(str::to_ascii_lowercase);
    let wants_close = match connection.as_deref() {
        Some(value) if value.contains("close") => true,
        Some(value) if value.contains("keep-alive") => false,
        _ => version == "HTTP/1.0",
    };
    let raw_path = target.split(['?', '#']).next().unwrap_or_default();
    Some(Request {
        path: percent_decode(raw_path),
        method,
        target,
        headers,
        wants_close,
    })
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let decoded = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Maps a request path to a file below `root`, refusing `..` and absolute escapes.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut resolved = root.to_path_buf();
    for component in Path::new(path.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => resolved.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(resolved)
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    fn simple(status: u16, text: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: format!("{text}\n").into_bytes(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// What happens to a connection after a response.
enum After {
    KeepAlive,
    Close,
    /// Drop the socket with a zero linger so the peer sees a reset.
    Reset,
}

impl After {
    fn close_if(close: bool) -> Self {
        if close { Self::Close } else { Self::KeepAlive }
    }
}

/// Answers one request and says what to do with the connection afterwards.
async fn respond(
    stream: &mut TcpStream,
    shared: &Shared,
    request: &Request,
    fault: Option<&Fault>,
) -> After {
    let record = |status: Option<u16>| RecordedRequest {
        method: request.method.clone(),
        target: request.target.clone(),
        path: request.path.clone(),
        headers: request.headers.clone(),
        status,
        fault: fault.cloned(),
    };

    match fault {
        Some(Fault::Reset) => {
            shared.record(record(None));
            return match stream.set_zero_linger() {
                Ok(()) => After::Reset,
                Err(_) => After::Close,
            };
        }
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            let mut response = Response::simple(*status, reason(*status));
            if let Some(seconds) = retry_after {
                response.headers.push(("Retry-After", seconds.to_string()));
            }
            shared.record(record(Some(*status)));
            let failed = write_response(stream, request, &response, None)
                .await
                .is_err();
            return After::close_if(failed);
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep((*delay).min(MAX_DELAY)).await,
        _ => {}
    }

    let response = file_response(shared, request, fault).await;
    shared.record(record(Some(response.status)));
    let truncate = match fault {
        Some(Fault::Truncate(keep)) => Some(*keep),
        _ => None,
    };
    let failed = write_response(stream, request, &response, truncate)
        .await
        .is_err();
    After::close_if(failed || truncate.is_some())
}

async fn file_response(shared: &Shared, request: &Request, fault: Option<&Fault>) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        let mut response = Response::simple(405, reason(405));
        response.headers.push(("Allow", "GET, HEAD".to_owned()));
        return response;
    }
    let contents = match fault {
        Some(Fault::ReplaceBody(body)) => Some(body.clone()),
        _ => match resolve(&shared.root, &request.path) {
            Some(path) if path.is_file() => tokio::fs::read(&path).await.ok(),
            _ => None,
        },
    };
    let Some(mut contents) = contents else {
        return Response::simple(404, reason(404));
    };
    let etag = etag_for(&contents);
    let middle_index = contents.len() / 2;
    if matches!(fault, Some(Fault::CorruptBody))
        && let Some(middle) = contents.get_mut(middle_index)
    {
        *middle ^= 0xff;
    }

    let mut headers = vec![
        ("ETag", etag.clone()),
        ("Accept-Ranges", "bytes".to_owned()),
    ];
    if let Some(candidates) = request.header(HEADER_IF_NONE_MATCH)
        && candidates
            .split(',')
            .map(str::trim)
            .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
    {
        return Response {
            status: 304,
            headers,
            body: Vec::new(),
        };
    }

    let total = contents.len() as u64;
    match request
        .header(HEADER_RANGE)
        .map(|range| parse_range(range, total))
    {
        Some(RangeRequest::Satisfiable { start, end }) => {
            headers.push(("Content-Range", format!("bytes {start}-{end}/{total}")));
            let body = contents[start as usize..=end as usize].to_vec();
            Response {
                status: 206,
                headers,
                body,
            }
        }
        Some(RangeRequest::Unsatisfiable) => {
            headers.push(("Content-Range", format!("bytes */{total}")));
            Response {
                status: 416,
                headers,
                body: Vec::new(),
            }
        }
        Some(RangeRequest::Ignored) | None => Response {
            status: 200,
            headers,
            body: contents,
        },
    }
}

enum RangeRequest {
    Satisfiable { start: u64, end: u64 },
    Unsatisfiable,
    Ignored,
}

/// Parses a single `bytes=N-`, `bytes=N-M` or `bytes=-N` range; anything else is ignored.
fn parse_range(header: &str, total: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignored;
    };
    if spec.contains(',') {
        return RangeRequest::Ignored;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Ignored;
    };
    let (first, last) = (first.trim(), last.trim());
    let (start, end) = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(total.saturating_sub(1))),
        (Ok(start), Err(_)) if last.is_empty() => (start, total.saturating_sub(1)),
        (Err(_), Ok(suffix)) if first.is_empty() && suffix > 0 => {
            (total.saturating_sub(suffix), total.saturating_sub(1))
        }
        _ => return RangeRequest::Ignored,
    };
    if start >= total {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Satisfiable { start, end }
}

async fn write_response(
    stream: &mut TcpStream,
    request: &Request,
    response: &Response,
    truncate_body_at: Option<u64>,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if response.status != 304 {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
        head.push_str(&format!("Content-Type: {CONTENT_TYPE}\r\n"));
    }
    if request.wants_close || truncate_body_at.is_some() {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if request.method != "HEAD" {
        let keep = truncate_body_at.map_or(response.body.len(), |keep| {
            (keep as usize).min(response.body.len())
        });
        stream.write_all(&response.body[..keep]).await?;
    }
    stream.flush().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let check = |header: &str, total: u64, expected: Option<(u64, u64)>| {
            let got = match parse_range(header, total) {
                RangeRequest::Satisfiable { start, end } => Some((start, end)),
                RangeRequest::Unsatisfiable => Some((u64::MAX, u64::MAX)),
                RangeRequest::Ignored => None,
            };
            assert_eq!(got, expected, "{header} of {total}");
        };
        check("bytes=0-", 10, Some((0, 9)));
        check("bytes=4-", 10, Some((4, 9)));
        check("bytes=4-6", 10, Some((4, 6)));
        check("bytes=4-60", 10, Some((4, 9)));
        check("bytes=-3", 10, Some((7, 9)));
        check("bytes=10-", 10, Some((u64::MAX, u64::MAX)));
        check("bytes=6-4", 10, None);
        check("bytes=0-1,4-5", 10, None);
        check("items=0-", 10, None);
    }

    #[test]
    fn paths_cannot_escape_the_root() {
        let root = Path::new("/srv/repo");
        assert_eq!(
            resolve(root, "/x86_64/APKINDEX.tar.gz"),
            Some(root.join("x86_64/APKINDEX.tar.gz"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/../../b"), None);
        assert_eq!(percent_decode("/a%20b/%2e%2e"), "/a b/..");
        assert_eq!(resolve(root, &percent_decode("/%2e%2e/etc")), None);
    }
}
