//! The TLS + HTTP/2 listener of a node's API: rustls handshake (so the twin sees the client
//! certificate), then hyper's HTTP/2 server handing each request to a [`Handler`] (the node's API, `crate::api`). Imports no handler code.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::tls::roles_of;

/// Who is calling, fixed per connection.
pub(crate) struct Caller {
    pub(crate) roles: Vec<String>,
    pub(crate) mode: ServeMode,
}

/// What answers the requests of a listener's connections.
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    /// Serves one request from `caller`.
    fn handle(
        &self,
        caller: &Caller,
        req: http::Request<hyper::body::Incoming>,
    ) -> impl std::future::Future<Output = http::Response<tonic::body::Body>> + Send;
}

/// Which API a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServeMode {
    /// Maintenance: no client certificate; callers get `os:reader`.
    Maintenance,
    /// Configured: mTLS; roles from the client certificate's `O=`.
    Configured,
}

/// A running listener and its connections.
pub(crate) struct Listener {
    task: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
}

impl Listener {
    /// Binds `addr` and starts accepting.
    pub(crate) async fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        api: impl Handler,
        mode: ServeMode,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let task = tokio::spawn(accept_loop(listener, acceptor, api, mode, shutdown_rx));
        Ok(Self { task, shutdown })
    }

    /// Stops accepting, lets in-flight calls finish (bounded), then closes everything.
    pub(crate) async fn shutdown(self) {
        self.shutdown.send_replace(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// Closes the listener and every connection at once (power off, the reboot at the end of
    /// an upgrade); returns once the socket is closed.
    pub(crate) async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    api: impl Handler,
    mode: ServeMode,
    mut shutdown: watch::Receiver<bool>,
) {
    // Dropping this set (when the task is aborted) aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    conns.spawn(serve_connection(tcp, acceptor.clone(), api.clone(), mode, shutdown.clone()));
                }
                Err(e) => tracing::debug!(error = %e, "talos twin: accept failed"),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    api: impl Handler,
    mode: ServeMode,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        // A refused client certificate ends here: the handshake failed.
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "talos twin: tls handshake failed");
            return;
        }
        Err(_) => return,
    };
    let roles = match mode {
        ServeMode::Maintenance => vec!["os:reader".to_string()],
        ServeMode::Configured => tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| roles_of(leaf.as_ref()))
            .unwrap_or_default(),
    };
    let caller = Arc::new(Caller { roles, mode });
    let service = hyper::service::service_fn(move |req| {
        let api = api.clone();
        let caller = caller.clone();
        async move { Ok::<_, Infallible>(api.handle(&caller, req).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
