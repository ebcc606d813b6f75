//! The HTTPS listener: TLS accept, per-connection client authentication, HTTP/1.1 and h2.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::state::{Inner, KubeError};
use crate::tls::server_config;

/// A running API server. Dropping it (or [`ServerHandle::stop`]) stops accepting and closes
/// its open connections.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the server.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn serve(
    inner: Arc<Inner>,
    addr: SocketAddr,
    cert_ip: IpAddr,
) -> Result<ServerHandle, KubeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| KubeError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| KubeError::Bind { addr, source })?;
    let identity = inner
        .ca
        .serving_identity(&inner.cert_sans, cert_ip)
        .map_err(KubeError::MakeServingCert)?;
    let config = server_config(identity, inner.ca.cert_der()).map_err(KubeError::BuildTls)?;
    let acceptor = TlsAcceptor::from(config);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((tcp, _peer)) = listener.accept().await else {
                continue;
            };
            while connections.try_join_next().is_some() {}
            connections.spawn(connection(inner.clone(), acceptor.clone(), tcp, local_addr));
        }
    });
    Ok(ServerHandle { local_addr, task })
}

async fn connection(
    inner: Arc<Inner>,
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    local_addr: SocketAddr,
) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let user = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| inner.authenticator.authenticate(chain));
    let service = hyper::service::service_fn(move |req| {
        let inner = inner.clone();
        let user = user.clone();
        async move { Ok::<_, Infallible>(crate::api::handle(inner, user, local_addr, req).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await;
}
