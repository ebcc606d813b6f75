//! A tonic connector that dials TCP and runs the TLS handshake with our own rustls configuration.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::codegen::Service;
use tonic::codegen::http::Uri;

/// Connects to one fixed address; the URI tonic passes is ignored (it only carries the address).
#[derive(Clone)]
pub(crate) struct TlsConnector {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl TlsConnector {
    /// A connector for `addr` using `config` (the server name is the address's IP).
    pub(crate) fn new(addr: SocketAddr, config: ClientConfig) -> Self {
        Self {
            addr,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }
}

impl Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let addr = self.addr;
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            // Talos endpoints are IPs: rustls verifies the server certificate's IP SAN.
            let name = ServerName::IpAddress(addr.ip().into());
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
