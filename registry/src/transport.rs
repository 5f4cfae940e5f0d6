//! The HTTP/1.1 transport for responses their caller streams on, as the proxy does with every
//! pull: hyper's client with a bounded read buffer per connection, so that hundreds of blobs
//! in flight cost a bounded amount of memory each. It verifies TLS with the platform's roots
//! as the rest of the client does, honours `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
//! `NO_PROXY` the same way (a `CONNECT` tunnel for https, absolute-form requests for http),
//! pools connections, and gives up on a response that sends nothing for the read timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http::uri::Scheme;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper::body::{Body as _, Incoming};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The read buffer limit of each connection (hyper's default is 408 KiB). hyper asks for at
/// most this much free space and reads into whatever its buffer then has, which the buffer's
/// growth can round up to under twice this: a streamed body arrives in pieces below
/// `2 * MAX_READ_BUFFER`, and that is what one connection holds ahead of its reader.
pub const MAX_READ_BUFFER: usize = 128 << 10;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a streamed request failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The request could not be sent or its response head not read.
    #[error("sending the request")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// The response body broke off.
    #[error("reading the response body")]
    Body(#[source] hyper::Error),
    /// Nothing arrived for the read timeout.
    #[error("nothing arrived for {} s", .0.as_secs())]
    TimedOut(Duration),
    /// The URL is not a valid request target.
    #[error("{url:?} is not a valid URL")]
    Url {
        /// The URL.
        url: String,
    },
    /// The TLS configuration could not be built.
    #[error("setting up TLS")]
    Tls(#[source] rustls::Error),
}

/// A pooled HTTP/1.1 client for streamed responses.
pub(crate) struct StreamingClient {
    client: Client<HttpsConnector<ProxyConnector>, Empty<Bytes>>,
    proxies: Arc<Matcher>,
    user_agent: HeaderValue,
    read_timeout: Duration,
}

impl StreamingClient {
    /// A client connecting within `connect_timeout` and waiting at most `read_timeout` for
    /// each piece of a response, with the proxies the environment names.
    pub(crate) fn new(
        user_agent: &'static str,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Self, TransferError> {
        Self::with_proxies(
            user_agent,
            connect_timeout,
            read_timeout,
            Matcher::from_env(),
        )
    }

    /// [`Self::new`] with the proxies `proxies` names.
    fn with_proxies(
        user_agent: &'static str,
        connect_timeout: Duration,
        read_timeout: Duration,
        proxies: Matcher,
    ) -> Result<Self, TransferError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
            .map_err(TransferError::Tls)?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TransferError::Tls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let proxies = Arc::new(proxies);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(ProxyConnector {
                http,
                proxies: Arc::clone(&proxies),
            });
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .http1_max_buf_size(MAX_READ_BUFFER)
            .build(connector);
        Ok(Self {
            client,
            proxies,
            user_agent: HeaderValue::from_static(user_agent),
            read_timeout,
        })
    }

    /// Sends `method url` with `headers` and an empty body; answers with the response head,
    /// the body left to read.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        mut headers: HeaderMap,
    ) -> Result<StreamedResponse, TransferError> {
        let uri: Uri = url.parse().map_err(|_| TransferError::Url {
            url: url.to_owned(),
        })?;
        headers
            .entry(header::USER_AGENT)
            .or_insert_with(|| self.user_agent.clone());
        if uri.scheme() != Some(&Scheme::HTTPS)
            && let Some(auth) = self
                .proxies
                .intercept(&uri)
                .and_then(|intercept| intercept.basic_auth().cloned())
        {
            // Plain HTTP goes to the proxy in absolute form and carries its credentials.
            headers.insert(header::PROXY_AUTHORIZATION, auth);
        }
        let mut request = Request::new(Empty::new());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let response = tokio::time::timeout(self.read_timeout, self.client.request(request))
            .await
            .map_err(|_| TransferError::TimedOut(self.read_timeout))?
            .map_err(TransferError::Request)?;
        let (head, body) = response.into_parts();
        Ok(StreamedResponse {
            status: head.status,
            headers: head.headers,
            body: StreamedBody {
                body,
                idle: Box::pin(tokio::time::sleep(self.read_timeout)),
                read_timeout: self.read_timeout,
            },
        })
    }
}

/// A response whose body is read as it arrives.
#[derive(Debug)]
pub struct StreamedResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: StreamedBody,
}

impl StreamedResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The announced `Content-Length`, when there is a valid one.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    /// The next piece of the body, or `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, TransferError> {
        std::future::poll_fn(|context| Pin::new(&mut self.body).poll_next(context))
            .await
            .transpose()
    }

    /// The body as a stream of pieces.
    pub fn bytes_stream(self) -> StreamedBody {
        self.body
    }
}

/// A response body as a stream of pieces, each awaited at most the read timeout.
pub struct StreamedBody {
    body: Incoming,
    idle: Pin<Box<Sleep>>,
    read_timeout: Duration,
}

impl std::fmt::Debug for StreamedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedBody").finish_non_exhaustive()
    }
}

impl Stream for StreamedBody {
    type Item = Result<Bytes, TransferError>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.body).poll_frame(context) {
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(error))) => {
                    return Poll::Ready(Some(Err(TransferError::Body(error))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers carry nothing a pull needs.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    this.idle.as_mut().reset(Instant::now() + this.read_timeout);
                    return Poll::Ready(Some(Ok(data)));
                }
                Poll::Pending => {
                    if this.idle.as_mut().poll(context).is_ready() {
                        return Poll::Ready(Some(Err(TransferError::TimedOut(this.read_timeout))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Connects to a target directly, through a `CONNECT` tunnel when a proxy is configured for
/// an https target, or to the proxy itself for an http target.
#[derive(Clone)]
struct ProxyConnector {
    http: HttpConnector,
    proxies: Arc<Matcher>,
}

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = TcpConnection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TcpConnection, BoxError>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(context).map_err(Into::into)
    }

    fn call(&mut self, target: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let intercept = self.proxies.intercept(&target);
        Box::pin(async move {
            let Some(intercept) = intercept else {
                let io = http.call(target).await?;
                return Ok(TcpConnection {
                    io,
                    via_proxy: false,
                });
            };
            if target.scheme() == Some(&Scheme::HTTPS) {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), http);
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let io = tunnel.call(target).await?;
                Ok(TcpConnection {
                    io,
                    via_proxy: false,
                })
            } else {
                let io = http.call(intercept.uri().clone()).await?;
                Ok(TcpConnection {
                    io,
                    via_proxy: true,
                })
            }
        })
    }
}

/// A TCP connection, marked when it goes to an HTTP proxy (so requests on it use the
/// absolute form).
struct TcpConnection {
    io: TokioIo<TcpStream>,
    via_proxy: bool,
}

impl Connection for TcpConnection {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.via_proxy)
    }
}

impl hyper::rt::Read for TcpConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(context, buffer)
    }
}

impl hyper::rt::Write for TcpConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(context, buffer)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(context)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(context, buffers)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    const BODY: usize = 1 << 20;

    fn client(read_timeout: Duration, proxies: Matcher) -> StreamingClient {
        StreamingClient::with_proxies("test", Duration::from_secs(5), read_timeout, proxies)
            .unwrap()
    }

    /// Serves one connection: reads the request head, answers with `head` and `body`, then
    /// keeps the connection open for a while. Returns the address and the request head.
    async fn serve_once(
        head: String,
        body: Vec<u8>,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(&body).await.unwrap();
            stream.flush().await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            String::from_utf8(request).unwrap()
        });
        (address, task)
    }

    /// `GET /blob` from `address` without a proxy.
    async fn get_blob(address: std::net::SocketAddr, read_timeout: Duration) -> StreamedResponse {
        client(read_timeout, Matcher::builder().build())
            .send(
                Method::GET,
                &format!("http://{address}/blob"),
                HeaderMap::new(),
            )
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_large_body_arrives_in_bounded_pieces() {
        let (address, _) = serve_once(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n"),
            vec![7u8; BODY],
        )
        .await;
        let mut response = get_blob(address, Duration::from_secs(5)).await;
        assert_eq!(response.content_length(), Some(BODY as u64));
        let (mut total, mut largest) = (0, 0);
        while let Some(piece) = response.chunk().await.unwrap() {
            total += piece.len();
            largest = largest.max(piece.len());
        }
        assert_eq!(total, BODY);
        assert!(largest < 2 * MAX_READ_BUFFER, "a piece of {largest} bytes");
    }

    #[tokio::test]
    async fn plain_http_goes_to_the_proxy_in_absolute_form_with_its_credentials() {
        let (proxy, request) = serve_once(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n".to_owned(),
            b"ok".to_vec(),
        )
        .await;
        let proxies = Matcher::builder()
            .http(format!("http://user:secret@{proxy}"))
            .build();
        let client = client(Duration::from_secs(5), proxies);
        let mut response = client
            .send(
                Method::GET,
                "http://registry.invalid:5000/v2/",
                HeaderMap::new(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.chunk().await.unwrap().unwrap(), &b"ok"[..]);
        let request = request.await.unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("get http://registry.invalid:5000/v2/ http/1.1\r\n"),
            "{request}"
        );
        // base64("user:secret")
        assert!(
            request.contains("proxy-authorization: basic dxnlcjpzzwnyzxq=\r\n"),
            "{request}"
        );
        assert!(request.contains("user-agent: test\r\n"), "{request}");
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_times_out() {
        let (address, _) = serve_once(
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".to_owned(),
            b"abc".to_vec(),
        )
        .await;
        let mut response = get_blob(address, Duration::from_millis(300)).await;
        assert_eq!(response.chunk().await.unwrap().unwrap(), &b"abc"[..]);
        assert!(matches!(
            response.chunk().await,
            Err(TransferError::TimedOut(_))
        ));
    }
}
