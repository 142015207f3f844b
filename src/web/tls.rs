//! The console over HTTPS (`console.tls_cert` and `console.tls_key`, PEM files): what makes a
//! non-loopback address safe to serve. Handshakes run beside each other, each within
//! [`HANDSHAKE`], so a client that connects and says nothing holds up nobody.

use super::ConsoleError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

const HANDSHAKE: Duration = Duration::from_secs(10);
/// Handshakes under way at once; more connections meanwhile are closed (a flood of silent
/// clients must not use up the file descriptors the console needs).
const MAX_HANDSHAKES: usize = 64;

/// The server's certificate chain and key, checked to belong together.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, ConsoleError> {
    let bad = |what: &str, path: &Path, e: String| ConsoleError::Tls(format!("console.{what} {}: {e}", path.display()));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("tls_cert", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("tls_cert", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad("tls_cert", cert, "no certificate in it (a PEM file with BEGIN CERTIFICATE)".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("tls_key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConsoleError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| ConsoleError::Tls(format!("console.tls_cert and console.tls_key do not go together: {e}")))?;
    Ok(Arc::new(config))
}

/// A TCP listener whose connections are TLS sessions, for `axum::serve`.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> TlsListener {
        TlsListener { tcp, acceptor: TlsAcceptor::from(config), handshakes: JoinSet::new() }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((_, addr)) if self.handshakes.len() >= MAX_HANDSHAKES => {
                        tracing::debug!(%addr, "too many TLS handshakes under way; connection closed");
                    }
                    Ok((stream, addr)) => {
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => Some((tls, addr)),
                                // Plain HTTP to the HTTPS port, an untrusted certificate, a
                                // client that never finished: that client's problem alone.
                                Ok(Err(e)) => { tracing::debug!(%addr, error = %e, "TLS handshake failed"); None }
                                Err(_) => { tracing::debug!(%addr, "TLS handshake timed out"); None }
                            }
                        });
                    }
                    // Out of file descriptors and the like: wait, as axum's own listener does.
                    Err(e) => {
                        tracing::warn!(error = %e, "console: accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(session)) = done {
                        return session;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
