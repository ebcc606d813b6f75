//! Load balancer forwarding: every `tcp` service of a load balancer with a public IPv4 listens
//! on `<lb ip>:<listen_port>` and forwards each connection, byte for byte, to a target on
//! `destination_port` (round robin; a target that refuses is skipped). TLS therefore terminates
//! at the target, as behind a real Hetzner TCP service, so a client sees the control plane's
//! certificate and checks the load balancer's IP against its SANs.
//!
//! The twin's private networks are not routed: a target reached over its private IP
//! (`use_private_ip`) is connected at the server's public (loopback) IPv4 instead. Only running
//! servers are targets. Listeners follow [`TwinState::changes`]; one that cannot bind (e.g. a
//! port below 1024 without the capability) is logged and skipped. `proxyprotocol` is ignored
//! (no PROXY header is sent).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use hk8s_twin_hetzner::handle::TwinState;

/// How long a connect to one target may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

struct Listener {
    backends: Arc<RwLock<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The forwarders of one twin. Cheap to clone.
#[derive(Clone, Default)]
pub struct LbForwarding {
    status: Arc<Mutex<BTreeMap<SocketAddr, Vec<SocketAddr>>>>,
    changed: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for LbForwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbForwarding")
            .field("listeners", &self.listeners())
            .finish()
    }
}

fn read(l: &RwLock<Vec<SocketAddr>>) -> Vec<SocketAddr> {
    l.read()
        .map(|v| v.clone())
        .unwrap_or_else(|p| p.into_inner().clone())
}

impl LbForwarding {
    fn status(&self) -> MutexGuard<'_, BTreeMap<SocketAddr, Vec<SocketAddr>>> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Listening addresses with the backends they forward to.
    pub fn listeners(&self) -> BTreeMap<SocketAddr, Vec<SocketAddr>> {
        self.status().clone()
    }

    /// A receiver that changes whenever a listener or its backends change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Follows the load balancers of `state` until `stop` turns true.
    pub fn spawn(&self, state: TwinState, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut rx = state.changes();
            let mut listeners: BTreeMap<SocketAddr, Listener> = BTreeMap::new();
            loop {
                rx.mark_unchanged();
                me.reconcile(&state, &mut listeners).await;
                tokio::select! {
                    r = rx.changed() => if r.is_err() { break },
                    _ = stop.changed() => break,
                }
            }
            listeners.clear();
            me.status().clear();
        })
    }

    async fn reconcile(&self, state: &TwinState, listeners: &mut BTreeMap<SocketAddr, Listener>) {
        let public: BTreeMap<i64, (Option<Ipv4Addr>, bool)> = state
            .servers()
            .into_iter()
            .map(|s| (s.id, (s.public_ipv4, s.status == "running")))
            .collect();
        let mut desired: BTreeMap<SocketAddr, Vec<SocketAddr>> = BTreeMap::new();
        for lb in state.load_balancers() {
            let Some(ip) = lb.public_ipv4 else { continue };
            for (protocol, listen, dest) in &lb.services {
                if protocol != "tcp" || *listen == 0 || *dest == 0 {
                    continue;
                }
                let backends = lb
                    .targets
                    .iter()
                    .filter_map(|t| match public.get(&t.server_id) {
                        Some((Some(ip), true)) => Some(SocketAddr::from((*ip, *dest))),
                        _ => None,
                    })
                    .collect();
                desired.insert(SocketAddr::from((ip, *listen)), backends);
            }
        }
        let mut changed = false;
        let before = listeners.len();
        listeners.retain(|addr, _| desired.contains_key(addr));
        changed |= before != listeners.len();
        for (addr, backends) in &desired {
            if let Some(l) = listeners.get(addr) {
                if read(&l.backends) != *backends {
                    match l.backends.write() {
                        Ok(mut b) => *b = backends.clone(),
                        Err(p) => *p.into_inner() = backends.clone(),
                    }
                    changed = true;
                }
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let shared = Arc::new(RwLock::new(backends.clone()));
                    let task = tokio::spawn(accept_loop(listener, shared.clone()));
                    listeners.insert(
                        *addr,
                        Listener {
                            backends: shared,
                            task,
                        },
                    );
                    changed = true;
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot listen for the load balancer")
                }
            }
        }
        if changed {
            *self.status() = listeners
                .iter()
                .map(|(a, l)| (*a, read(&l.backends)))
                .collect();
            self.changed.send_modify(|g| *g = g.wrapping_add(1));
        }
    }
}

async fn accept_loop(listener: TcpListener, backends: Arc<RwLock<Vec<SocketAddr>>>) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        let targets = read(&backends);
        let start = next.fetch_add(1, Ordering::Relaxed);
        conns.spawn(forward(client, targets, start));
    }
}

/// Connects to the first target (from `start`, round robin) that accepts and copies both ways.
async fn forward(mut client: TcpStream, targets: Vec<SocketAddr>, start: usize) {
    let n = targets.len();
    for i in 0..n {
        let addr = targets[(start + i) % n];
        if let Ok(Ok(mut upstream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            return;
        }
    }
    // No target: the connection is closed, as a load balancer without healthy targets does.
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn forwards_to_the_first_target_that_accepts() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        // A port that refuses: bind and drop.
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let backends = Arc::new(RwLock::new(vec![dead_addr, echo_addr]));
        let task = tokio::spawn(accept_loop(front, backends));
        let mut c = TcpStream::connect(front_addr).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        task.abort();
    }
}
