//! An HTTPS proxy for tests that plays the host it is asked for: it answers `CONNECT
//! host:port` with `200`, terminates TLS itself with a certificate the test made for that
//! name, and forwards the decrypted bytes to one local plain-HTTP server (a real
//! `docker-registry`). So a client that honours `HTTPS_PROXY` and trusts the certificate
//! (`SSL_CERT_FILE`) reaches the registry by a name no resolver knows, over real TLS.
//!
//! It records each tunnel's `CONNECT` target and the server name the client sent in its TLS
//! handshake ([`TlsTunnel::tunnelled`]), and stops on drop.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use securebuild_proxy::config::TlsFiles;
use securebuild_proxy::server::load_tls;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The longest `CONNECT` request head read.
const MAX_HEAD: usize = 8 << 10;

/// Why the tunnel could not start.
#[derive(Debug, thiserror::Error)]
pub enum TlsTunnelError {
    /// The certificate and key do not make a TLS configuration (the proxy's own loader).
    #[error("loading the certificate and key")]
    Tls(#[source] securebuild_proxy::Error),
    /// No port could be bound.
    #[error("binding a loopback port")]
    Bind(#[source] std::io::Error),
}

/// One tunnel a client opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnelled {
    /// The `CONNECT` target, `host:port`.
    pub target: String,
    /// The server name (SNI) of the client's TLS handshake.
    pub server_name: Option<String>,
}

/// A running tunnel; stops on drop.
#[derive(Debug)]
pub struct TlsTunnel {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Tunnelled>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsTunnel {
    /// Serves on a free loopback port, presenting `certificate` with `key` (PEM) to clients
    /// and forwarding to `backend`. Must run inside a tokio runtime.
    pub async fn start(
        certificate: &Path,
        key: &Path,
        backend: SocketAddr,
    ) -> Result<Self, TlsTunnelError> {
        let acceptor = load_tls(&TlsFiles {
            certificate: certificate.to_owned(),
            key: key.to_owned(),
        })
        .map_err(TlsTunnelError::Tls)?;
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(TlsTunnelError::Bind)?;
        let address = listener.local_addr().map_err(TlsTunnelError::Bind)?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, recorded) = (acceptor.clone(), Arc::clone(&recorded));
                tokio::spawn(async move {
                    let _ = tunnel(client, acceptor, backend, recorded).await;
                });
            }
        });
        Ok(Self {
            address,
            seen,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The tunnels opened so far.
    pub fn tunnelled(&self) -> Vec<Tunnelled> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TlsTunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a `CONNECT` head, answers it, completes the TLS handshake and relays.
async fn tunnel(
    mut client: TcpStream,
    acceptor: TlsAcceptor,
    backend: SocketAddr,
    seen: Arc<Mutex<Vec<Tunnelled>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD || client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("CONNECT "))
        .and_then(|rest| rest.split(' ').next())
        .map(str::to_owned);
    let Some(target) = target else {
        client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    let mut tls = acceptor.accept(client).await?;
    let server_name = tls.get_ref().1.server_name().map(str::to_owned);
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Tunnelled {
            target,
            server_name,
        });
    let mut upstream = TcpStream::connect(backend).await?;
    tokio::io::copy_bidirectional(&mut tls, &mut upstream).await?;
    Ok(())
}
