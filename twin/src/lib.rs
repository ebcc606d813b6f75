//! The twin's wiring: the Hetzner Cloud API of [`hetzner`] (crate `hk8s-twin-hetzner`) served
//! together with the Talos nodes of `hk8s-twin-talos` and the Kubernetes APIs of
//! `hk8s-twin-kube`, used as the test bench and as `--sandbox`; and the `hk8s-twin` binary.
//!
//! # Brief overview
//!
//! - [`Twin::start`] binds a loopback socket, reserves an address block for public IPs and serves
//!   the Hetzner API at [`TwinHandle::api_url`] (`http://127.0.0.1:PORT/v1`) and the control API
//!   at [`TwinHandle::control_url`] (`http://127.0.0.1:PORT/twin`).
//! - [`hetzner::router`] is the API as an axum router, for `tower::ServiceExt::oneshot` tests;
//!   [`app`] adds the control API ([`control`]).
//! - [`TwinState`] holds everything; read it with [`TwinState::servers`] and
//!   [`TwinState::load_balancers`], register [`ServerHooks`] with [`TwinState::set_hooks`].
//! - Actions last a realistic time divided by the speed factor; the resource is `locked` (423)
//!   meanwhile.
//! - Servers booted from a Talos snapshot run Talos nodes ([`talos_nodes`]); once a Talos
//!   cluster is bootstrapped its Kubernetes API serves on `<cp ip>:6443` ([`kube_nodes`], read
//!   with [`TwinHandle::kube`]), with load balancers and volumes of its CCM and CSI driver made
//!   in the twin ([`kube_cloud`]). Load balancers forward their tcp services ([`lb_forward`]).
//!
//! **Architecture Invariant:** the twin imports no product crate and not the `hcloud` crate; it is
//! written from `spec/hcloud-openapi.json`.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), hk8s_twin::TwinError> {
//! let twin = hk8s_twin::Twin::start(hk8s_twin::TwinOptions {
//!     speed: 1000.0,
//!     ..Default::default()
//! })
//! .await?;
//! println!("HCLOUD_ENDPOINT={}", twin.api_url());
//! twin.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod control;
pub mod critical_path;
pub mod kube_cloud;
pub mod kube_nodes;
pub mod lb_forward;
pub mod machines;
pub mod talos_nodes;
pub mod upgrades;

/// The Hetzner Cloud API (crate `hk8s-twin-hetzner`).
pub use hk8s_twin_hetzner as hetzner;
pub use hk8s_twin_hetzner::labels;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use ipnet::Ipv4Net;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use hk8s_twin_hetzner::{
    AddrBlock, ApiError, Id, Kind, Latency, LoadBalancerInfo, NoHooks, RateLimit, ServerBoot,
    ServerHooks, ServerInfo, TargetInfo, TwinState,
};

/// How to start a twin.
#[derive(Clone)]
pub struct TwinOptions {
    /// Divides every action duration (1.0 = realistic; 1000 = tests).
    pub speed: f64,
    /// Required bearer token; `None` accepts any non-empty token.
    pub token: Option<String>,
    /// Rate-limit bucket (default 3600 per hour, refilling one per second).
    pub rate_limit: RateLimit,
    /// Talos snapshots to seed, as (arch, version), e.g. `("x86", "v1.11.6")`.
    pub seed_talos_snapshots: Vec<(String, String)>,
    /// Public IPv4 block inside 127.0.0.0/8; `None` draws a free random /20.
    pub addr_block: Option<Ipv4Net>,
    /// Listen address (must be loopback); `None` is `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// Hooks of the other twin parts.
    pub hooks: Option<Arc<dyn ServerHooks>>,
    /// Base action durations at speed 1 (default: realistic latencies).
    pub latency: Latency,
    /// Whether `k!=v` and `k notin (..)` select resources without `k` (default true, as in
    /// Kubernetes; the Hetzner docs do not say).
    pub negative_selector_matches_missing: bool,
    /// The port a server's rescue system serves SSH on at its public IP (default 22, as on
    /// Hetzner; binding it needs root). 0 picks a free port per server (see `/twin/rescue`).
    pub rescue_ssh_port: u16,
    /// Where server disk files live; `None`: a temporary folder removed with the twin.
    pub disk_dir: Option<std::path::PathBuf>,
    /// Jitter of server create, start, boot and install durations: each is multiplied by a
    /// factor drawn from `[1 - jitter, 1 + jitter]` (0 = none, the default).
    pub jitter: f64,
    /// Seed of the jitter draws (the same seed gives the same durations in the same order).
    pub seed: u64,
}

impl std::fmt::Debug for TwinOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinOptions")
            .field("speed", &self.speed)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("rate_limit", &self.rate_limit)
            .field("seed_talos_snapshots", &self.seed_talos_snapshots)
            .field("addr_block", &self.addr_block)
            .field("listen", &self.listen)
            .field("hooks", &self.hooks.as_ref().map(|_| "<set>"))
            .field("latency", &self.latency)
            .field(
                "negative_selector_matches_missing",
                &self.negative_selector_matches_missing,
            )
            .field("rescue_ssh_port", &self.rescue_ssh_port)
            .field("disk_dir", &self.disk_dir)
            .field("jitter", &self.jitter)
            .field("seed", &self.seed)
            .finish()
    }
}

impl Default for TwinOptions {
    fn default() -> Self {
        Self {
            speed: 1.0,
            token: None,
            rate_limit: RateLimit::default(),
            seed_talos_snapshots: Vec::new(),
            addr_block: None,
            listen: None,
            hooks: None,
            latency: Latency::default(),
            negative_selector_matches_missing: true,
            rescue_ssh_port: 22,
            disk_dir: None,
            jitter: 0.0,
            seed: 0,
        }
    }
}

/// Starting a twin failed.
#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    /// The speed factor is not a positive finite number.
    #[error("speed must be a positive number, got {0}")]
    InvalidSpeed(f64),
    /// The listen address is not on loopback.
    #[error("refusing to listen on {0}: only loopback addresses are allowed")]
    NotLoopback(SocketAddr),
    /// Binding the listen socket failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reserving the public address block failed.
    #[error("cannot reserve a public address block")]
    AddrBlock(#[source] hetzner::addr::AddrError),
    /// The folder for server disks could not be made.
    #[error(transparent)]
    DiskDir(#[from] machines::DiskDirError),
    /// A Talos snapshot could not be seeded.
    #[error("cannot seed talos snapshot {arch}:{version}: {message}")]
    SeedTalos {
        /// Architecture given.
        arch: String,
        /// Version given.
        version: String,
        /// Why.
        message: String,
    },
}

/// The Hetzner API plus the control API.
pub fn app(state: TwinState) -> Router {
    hetzner::router(state.clone()).merge(control::router(state))
}

/// Entry point: see [`Twin::start`].
#[derive(Debug)]
pub struct Twin;

/// A running twin; dropping it does not stop it, call [`TwinHandle::shutdown`].
#[derive(Debug)]
pub struct TwinHandle {
    addr: SocketAddr,
    state: TwinState,
    block: Arc<AddrBlock>,
    talos: Arc<talos_nodes::TalosHooks>,
    machines: Option<Arc<machines::Machines>>,
    factory: hk8s_twin_factory::Factory,
    kube: kube_nodes::KubeTwin,
    lbs: lb_forward::LbForwarding,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    loops: Vec<JoinHandle<()>>,
}

impl Twin {
    /// Binds the listen address, reserves an address block, seeds snapshots and serves.
    pub async fn start(opts: TwinOptions) -> Result<TwinHandle, TwinError> {
        if !(opts.speed.is_finite() && opts.speed > 0.0) {
            return Err(TwinError::InvalidSpeed(opts.speed));
        }
        let listen = opts
            .listen
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        if !listen.ip().is_loopback() {
            return Err(TwinError::NotLoopback(listen));
        }
        let block = match opts.addr_block {
            Some(net) => AddrBlock::reserve(net),
            None => AddrBlock::random(),
        }
        .map_err(TwinError::AddrBlock)?;
        let state = TwinState::new(block.net(), opts.speed, opts.token.clone(), opts.rate_limit);
        state.set_latency(opts.latency);
        state.world().negative_selector_matches_missing = opts.negative_selector_matches_missing;
        state.world().jitter = hetzner::timeline::Jitter::new(opts.jitter, opts.seed);
        // Servers booted from a Talos snapshot run simulated Talos nodes unless the caller
        // brings its own hooks.
        let talos = Arc::new(talos_nodes::TalosHooks::new(
            hk8s_twin_talos::TalosFleet::new(),
            opts.speed,
        ));
        talos.set_jitter(hetzner::timeline::Jitter::new(
            opts.jitter,
            opts.seed.wrapping_add(1),
        ));
        // Disks decide what a server boots: the rescue system, Talos (a valid image for its
        // arch) or nothing the twin serves.
        let machines = match &opts.hooks {
            Some(h) => {
                state.set_hooks(h.clone());
                None
            }
            None => {
                let m = Arc::new(machines::Machines::new(
                    state.clone(),
                    talos.clone(),
                    opts.rescue_ssh_port,
                    opts.disk_dir.clone(),
                )?);
                state.set_hooks(m.clone());
                Some(m)
            }
        };
        let factory = hk8s_twin_factory::Factory::new(hk8s_twin_factory::default_versions());
        for (_, version) in &opts.seed_talos_snapshots {
            factory.add_version(version);
        }
        {
            let mut w = state.world();
            for (arch, version) in &opts.seed_talos_snapshots {
                hetzner::seed::seed_talos(&mut w, arch, version, labels::Labels::new()).map_err(
                    |e| TwinError::SeedTalos {
                        arch: arch.clone(),
                        version: version.clone(),
                        message: e.message,
                    },
                )?;
            }
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| TwinError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| TwinError::Bind {
            addr: listen,
            source,
        })?;
        let (stop, stop_rx) = watch::channel(false);
        // Load balancers forward their tcp services; bootstrapped Talos clusters run a
        // Kubernetes API (only with the twin's own Talos nodes).
        let kube = kube_nodes::KubeTwin::new(talos.serving());
        // Upgrades pull installers from the factory and cordon and drain through the
        // Kubernetes twin.
        talos
            .fleet()
            .set_installer_registry(Arc::new(upgrades::FactoryInstallers::new(
                factory.clone(),
                addr.to_string(),
            )));
        talos
            .fleet()
            .set_cluster_hooks(Arc::new(upgrades::KubeUpgradeHooks::new(kube.clone())));
        let lbs = lb_forward::LbForwarding::default();
        let mut loops = vec![lbs.spawn(state.clone(), stop.subscribe())];
        if opts.hooks.is_none() {
            loops.push(kube.spawn(state.clone(), talos.fleet().clone(), stop.subscribe()));
        }
        let mut router = app(state.clone())
            .merge(talos_nodes::router(talos.clone(), kube.clone()))
            .merge(critical_path::router(state.clone(), talos.clone()))
            .merge(kube_nodes::router(kube.clone(), lbs.clone()))
            .merge(hk8s_twin_factory::router(factory.clone()));
        if let Some(m) = &machines {
            router = router.merge(machines::router(m.clone()));
        }
        let task = tokio::spawn(serve(listener, router, stop_rx));
        Ok(TwinHandle {
            addr,
            state,
            block: Arc::new(block),
            talos,
            machines,
            factory,
            kube,
            lbs,
            stop,
            task,
            loops,
        })
    }
}

impl TwinHandle {
    /// `http://127.0.0.1:PORT/v1`.
    pub fn api_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT/twin`.
    pub fn control_url(&self) -> String {
        format!("http://{}/twin", self.addr)
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state.
    pub fn state(&self) -> TwinState {
        self.state.clone()
    }

    /// The image factory's base URL, `http://127.0.0.1:PORT` (images under
    /// `/image/<schematic>/<version>/hcloud-<arch>.raw.xz`, `POST /schematics`).
    pub fn factory_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The image factory (versions, schematics, download count).
    pub fn factory(&self) -> &hk8s_twin_factory::Factory {
        &self.factory
    }

    /// Server disks and rescue systems (`None` when the caller brought its own hooks).
    pub fn machines(&self) -> Option<&Arc<machines::Machines>> {
        self.machines.as_ref()
    }

    /// The reserved public IPv4 block.
    pub fn addr_block(&self) -> Ipv4Net {
        self.block.net()
    }

    /// The simulated Talos nodes of servers booted from Talos snapshots.
    pub fn talos_fleet(&self) -> &hk8s_twin_talos::TalosFleet {
        self.talos.fleet()
    }

    /// The Kubernetes APIs of bootstrapped Talos clusters.
    pub fn kube(&self) -> &kube_nodes::KubeTwin {
        &self.kube
    }

    /// The load balancer listeners.
    pub fn lb_forwarding(&self) -> &lb_forward::LbForwarding {
        &self.lbs
    }

    /// Stops accepting, closes open connections, stops the rescue systems, the Kubernetes APIs
    /// and load balancer listeners, and waits for those tasks.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some(m) = &self.machines {
            m.stop_all();
        }
        let _ = self.task.await;
        for l in self.loops {
            let _ = l.await;
        }
    }
}

/// Accept loop: one task per connection; a fault can drop a connection through [`hetzner::routes::ConnKill`].
async fn serve(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let app = app.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let k = kill.clone();
            let svc = hyper::service::service_fn(
                move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(hetzner::routes::ConnKill(k.clone()));
                    let app = app.clone();
                    async move { tower::ServiceExt::oneshot(app, req.map(axum::body::Body::new)).await }
                },
            );
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {}
                _ = stop.changed() => {}
            }
        });
    }
}
