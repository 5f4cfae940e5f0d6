//! The listener: accepts connections (plain HTTP behind an ingress, or TLS from certificate
//! files with rustls), serves HTTP/1.1 on each with a header-read (idle) timeout, and on a
//! shutdown signal stops accepting, lets open requests finish for a grace period and then
//! closes what is left.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::Error;
use crate::config::TlsFiles;
use crate::serve::Proxy;

/// Largest buffer a connection keeps for reading and writing.
const MAX_CONNECTION_BUFFER: usize = 64 << 10;

/// A bound listener, ready to serve.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy: Arc<Proxy>,
    idle_timeout: Duration,
    shutdown_grace: Duration,
}

impl Server {
    /// Binds `address` and loads the TLS files, if any.
    pub async fn bind(
        address: SocketAddr,
        tls: Option<&TlsFiles>,
        proxy: Proxy,
        idle_timeout: Duration,
        shutdown_grace: Duration,
    ) -> Result<Self, Error> {
        let tls = tls.map(load_tls).transpose()?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| Error::Bind { address, source })?;
        Ok(Self {
            listener,
            tls,
            proxy: Arc::new(proxy),
            idle_timeout,
            shutdown_grace,
        })
    }

    /// The address actually bound (the port when `0` was asked for).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener
            .local_addr()
            .map_err(|source| Error::Listener { source })
    }

    /// Serves until `shutdown` completes, then drains open connections for the grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let (stop, stopped) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.idle_timeout)
            .max_buf_size(MAX_CONNECTION_BUFFER);
        let builder = Arc::new(builder);
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let proxy = Arc::clone(&self.proxy);
            let builder = Arc::clone(&builder);
            let tls = self.tls.clone();
            let mut stopped = stopped.clone();
            connections.spawn(async move {
                let service = service_fn(move |request| {
                    let proxy = Arc::clone(&proxy);
                    async move { Ok::<_, Infallible>(proxy.handle(request).await) }
                });
                match tls {
                    None => {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        drive(connection, &mut stopped, peer).await;
                    }
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => {
                            let connection =
                                builder.serve_connection(TokioIo::new(stream), service);
                            drive(connection, &mut stopped, peer).await;
                        }
                        Err(error) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    },
                }
            });
        }
        tracing::info!(
            open = connections.len(),
            grace_seconds = self.shutdown_grace.as_secs(),
            "shutting down"
        );
        let _ = stop.send(true);
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = connections.len(),
                "closing connections still open after the grace period"
            );
            connections.shutdown().await;
        }
        Ok(())
    }
}

/// Serves one connection until it ends; on shutdown, finishes its request in flight and
/// closes it.
async fn drive<C>(connection: C, stopped: &mut watch::Receiver<bool>, peer: SocketAddr)
where
    C: Future<Output = hyper::Result<()>> + GracefulConnection,
{
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            return;
        }
        _ = stopped.wait_for(|stop| *stop) => {}
    }
    connection.as_mut().graceful();
    if let Err(error) = connection.await {
        tracing::debug!(%peer, %error, "connection ended with an error during shutdown");
    }
}

/// A connection that can be told to finish its request in flight and close.
trait GracefulConnection {
    /// Starts a graceful shutdown.
    fn graceful(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    fn graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Reads the certificate chain and key and makes a TLS acceptor offering HTTP/1.1.
pub fn load_tls(files: &TlsFiles) -> Result<TlsAcceptor, Error> {
    securebuild_registry::init_tls();
    let pem_error = |path: &Path, source| Error::TlsFile {
        path: path.to_owned(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(&files.certificate)
        .map_err(|source| pem_error(&files.certificate, source))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| pem_error(&files.certificate, source))?;
    if certificates.is_empty() {
        return Err(Error::NoCertificate {
            path: files.certificate.clone(),
        });
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|source| pem_error(&files.key, source))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|source| Error::TlsConfig {
            certificate: files.certificate.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
