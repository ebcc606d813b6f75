//! The handle: [`TwinState`], the shared, locked state (world, token, rate-limit bucket, faults,
//! request log, hooks) that every handler and twin part clones. [`TwinState::mutate`] runs a
//! change under the world lock, then starts the timers of the actions it scheduled and delivers
//! the hook events; read-only views ([`ServerInfo`], [`LoadBalancerInfo`]) serve other twin parts.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use ipnet::Ipv4Net;

use crate::addr::AddrPool;
use crate::error::ApiError;
use crate::faults::Faults;
use crate::hooks::{HookEvent, NoHooks, ServerHooks};
use crate::labels::Labels;
use crate::model::{Id, ServerStatus};
use crate::ratelimit::{Bucket, RateLimit};
use crate::request_log::RequestLog;
use crate::world::{Effect, Latency, Scheduled, World};

struct Shared {
    world: Mutex<World>,
    token: RwLock<Option<String>>,
    read_only_tokens: RwLock<Vec<String>>,
    bucket: Mutex<Bucket>,
    faults: Mutex<Faults>,
    log: Mutex<RequestLog>,
    hooks: RwLock<Arc<dyn ServerHooks>>,
    changes: tokio::sync::watch::Sender<u64>,
}

/// Shared handle to the twin's state; clones share everything.
#[derive(Clone)]
pub struct TwinState(Arc<Shared>);

impl std::fmt::Debug for TwinState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinState").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read-only view of a server for other twin parts (e.g. LB forwarding).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    /// Id.
    pub id: Id,
    /// Name.
    pub name: String,
    /// Status string of the spec.
    pub status: String,
    /// Labels.
    pub labels: Labels,
    /// Public IPv4.
    pub public_ipv4: Option<Ipv4Addr>,
    /// Private IPs as (network, ip).
    pub private_ips: Vec<(Id, Ipv4Addr)>,
    /// Image id.
    pub image_id: Option<Id>,
    /// Rescue enabled for the next boot.
    pub rescue_enabled: bool,
}

/// A resolved load balancer target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// Server id.
    pub server_id: Id,
    /// The address traffic goes to (private IP if `use_private_ip`, else public).
    pub ip: Option<Ipv4Addr>,
    /// Whether the private network is used.
    pub use_private_ip: bool,
    /// Whether the server is running.
    pub running: bool,
}

/// Read-only view of a load balancer for other twin parts.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancerInfo {
    /// Id.
    pub id: Id,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Public IPv4 (loopback block).
    pub public_ipv4: Option<Ipv4Addr>,
    /// Private IPs as (network, ip).
    pub private_ips: Vec<(Id, Ipv4Addr)>,
    /// Services as (protocol, listen_port, destination_port).
    pub services: Vec<(String, u16, u16)>,
    /// Resolved targets (label selectors expanded, duplicates removed).
    pub targets: Vec<TargetInfo>,
}

impl TwinState {
    /// A new state with a public address pool, speed factor, token and rate limit.
    pub fn new(pool_net: Ipv4Net, speed: f64, token: Option<String>, rate: RateLimit) -> Self {
        Self(Arc::new(Shared {
            world: Mutex::new(World::new(AddrPool::new(pool_net), speed)),
            token: RwLock::new(token),
            read_only_tokens: RwLock::new(Vec::new()),
            bucket: Mutex::new(Bucket::new(rate)),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(RequestLog::default()),
            hooks: RwLock::new(Arc::new(NoHooks)),
            changes: tokio::sync::watch::channel(0).0,
        }))
    }

    /// Locks the world for reading or direct manipulation (no timers, no hooks).
    pub fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.0.world)
    }

    /// Runs a mutation; afterwards starts the timers of scheduled actions and delivers hook
    /// events. Must be called inside a tokio runtime for timers to run; without one, actions
    /// complete at once.
    pub fn mutate<R>(
        &self,
        f: impl FnOnce(&mut World) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let (r, pending, events) = {
            let mut w = self.world();
            let r = f(&mut w);
            (
                r,
                std::mem::take(&mut w.pending),
                std::mem::take(&mut w.events),
            )
        };
        self.deliver(events);
        for p in pending {
            self.spawn(p);
        }
        if r.is_ok() {
            self.bump();
        }
        r
    }

    fn bump(&self) {
        self.0.changes.send_modify(|g| *g += 1);
    }

    /// A receiver that sees a new generation number after every successful mutation and every
    /// finished action (e.g. to re-read [`TwinState::load_balancers`] for forwarding).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.changes.subscribe()
    }

    fn spawn(&self, p: Scheduled) {
        let state = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    tokio::time::sleep(p.delay).await;
                    state.finish(p.action, p.effect);
                });
            }
            Err(_) => state.finish(p.action, p.effect),
        }
    }

    fn finish(&self, action: Id, effect: Effect) {
        let (mut events, pending, more) = {
            let mut w = self.world();
            let ev = w.complete(action, effect);
            (
                ev,
                std::mem::take(&mut w.pending),
                std::mem::take(&mut w.events),
            )
        };
        events.extend(more);
        self.deliver(events);
        for p in pending {
            self.spawn(p);
        }
        self.bump();
    }

    fn deliver(&self, events: Vec<HookEvent>) {
        if events.is_empty() {
            return;
        }
        let hooks = self
            .0
            .hooks
            .read()
            .map(|h| h.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        for e in events {
            match e {
                HookEvent::Running(b) => hooks.server_running(&b),
                HookEvent::Stopped(id) => hooks.server_stopped(id),
                HookEvent::Deleted(id) => hooks.server_deleted(id),
                HookEvent::ImageCreating(s, i) => hooks.image_creating(s, i),
                HookEvent::ImageCreated(s, i) => hooks.image_created(s, i),
            }
        }
    }

    /// Registers the hooks of the other twin parts (replacing the previous ones).
    pub fn set_hooks(&self, hooks: Arc<dyn ServerHooks>) {
        match self.0.hooks.write() {
            Ok(mut h) => *h = hooks.clone(),
            Err(p) => *p.into_inner() = hooks.clone(),
        }
        self.world().hooks = hooks;
    }

    /// The expected bearer token (`None`: any non-empty token is accepted).
    pub fn token(&self) -> Option<String> {
        self.0.token.read().map(|t| t.clone()).unwrap_or(None)
    }

    /// Adds a token with "Read" permission: accepted for `GET`, refused with 403
    /// `token_readonly` for every other method (as a Hetzner token created with "Read").
    pub fn add_read_only_token(&self, token: impl Into<String>) {
        match self.0.read_only_tokens.write() {
            Ok(mut t) => t.push(token.into()),
            Err(p) => p.into_inner().push(token.into()),
        }
    }

    /// Whether `token` was added with [`TwinState::add_read_only_token`].
    pub fn is_read_only_token(&self, token: &str) -> bool {
        self.0
            .read_only_tokens
            .read()
            .map(|t| t.iter().any(|r| r == token))
            .unwrap_or(false)
    }

    /// The speed factor.
    pub fn speed(&self) -> f64 {
        self.world().speed
    }

    /// Changes the speed factor for actions started from now on.
    pub fn set_speed(&self, speed: f64) {
        if speed.is_finite() && speed > 0.0 {
            self.world().speed = speed;
        }
    }

    /// Replaces the base durations of actions started from now on.
    pub fn set_latency(&self, latency: Latency) {
        self.world().latency = latency;
    }

    /// Installs a fault rule (same shape as `POST /twin/faults`).
    pub fn add_fault(
        &self,
        rule: crate::faults::FaultRule,
    ) -> Result<u64, crate::faults::InvalidRule> {
        self.faults().add(rule)
    }

    /// The rate-limit bucket.
    pub fn bucket(&self) -> MutexGuard<'_, Bucket> {
        lock(&self.0.bucket)
    }

    /// The installed faults.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.0.faults)
    }

    /// The request log.
    pub fn log(&self) -> MutexGuard<'_, RequestLog> {
        lock(&self.0.log)
    }

    /// All servers with their labels and addresses.
    pub fn servers(&self) -> Vec<ServerInfo> {
        let w = self.world();
        w.servers
            .values()
            .map(|s| ServerInfo {
                id: s.id,
                name: s.name.clone(),
                status: s.status.as_str().to_string(),
                labels: s.labels.clone(),
                public_ipv4: s.public_ipv4,
                private_ips: s.private_net.iter().map(|p| (p.network, p.ip)).collect(),
                image_id: s.image,
                rescue_enabled: s.rescue_enabled,
            })
            .collect()
    }

    /// All load balancers with services and resolved targets.
    pub fn load_balancers(&self) -> Vec<LoadBalancerInfo> {
        let w = self.world();
        w.load_balancers
            .values()
            .map(|lb| {
                let targets = w
                    .resolve_targets(lb)
                    .into_iter()
                    .filter_map(|(id, private)| {
                        let s = w.servers.get(&id)?;
                        let ip = if private {
                            lb.private_net.iter().find_map(|(n, _)| {
                                s.private_net.iter().find(|p| p.network == *n).map(|p| p.ip)
                            })
                        } else {
                            s.public_ipv4
                        };
                        Some(TargetInfo {
                            server_id: id,
                            ip,
                            use_private_ip: private,
                            running: s.status == ServerStatus::Running,
                        })
                    })
                    .collect();
                LoadBalancerInfo {
                    id: lb.id,
                    name: lb.name.clone(),
                    labels: lb.labels.clone(),
                    public_ipv4: lb.public_ipv4,
                    private_ips: lb.private_net.clone(),
                    services: lb
                        .services
                        .iter()
                        .map(|s| {
                            (
                                s.protocol.clone(),
                                u16::try_from(s.listen_port).unwrap_or(0),
                                u16::try_from(s.destination_port).unwrap_or(0),
                            )
                        })
                        .collect(),
                    targets,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn state(speed: f64) -> TwinState {
        TwinState::new(
            "127.200.0.0/20".parse().unwrap(),
            speed,
            None,
            RateLimit::default(),
        )
    }

    #[test]
    fn speed_scales_durations() {
        let st = state(1000.0);
        assert_eq!(st.world().scaled(60.0), Duration::from_millis(60));
        st.set_speed(-1.0);
        assert_eq!(st.speed(), 1000.0);
    }
}
