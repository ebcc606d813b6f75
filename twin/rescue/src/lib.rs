//! The twin's rescue system: what a Hetzner server boots into after `enable_rescue`. An SSH
//! server (russh) on `<server ip>:22` that lets root in with the keys given to `enable_rescue`
//! only, and a small bash ([`shell`]) whose programs ([`commands`]: `wget`, `curl`, `xz`, `dd`,
//! `blkdiscard`, `blockdev`, `sync`, `uname`, ...) act on that server's disk, `/dev/sda`, a
//! sparse file ([`io::BlockDevice`]).
//!
//! ```no_run
//! # async fn demo(disk: hk8s_twin_rescue::BlockDevice, key: &str) -> Result<(), hk8s_twin_rescue::RescueError> {
//! let rescue = hk8s_twin_rescue::RescueServer::start(hk8s_twin_rescue::RescueOptions {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     authorized_keys: vec![key.to_string()],
//!     hostname: "rescue".into(),
//!     uname_machine: "x86_64".into(),
//!     disk,
//!     power: None,
//! })
//! .await?;
//! println!("ssh root@{} (host key {})", rescue.addr(), rescue.host_key_openssh());
//! rescue.stop();
//! # Ok(())
//! # }
//! ```
//!
//! **Architecture Invariant:** a twin crate: it depends on no product crate, and it only ever
//! connects to loopback addresses (`wget`/`curl` refuse any other host as unresolvable).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
pub mod commands;
pub mod io;
pub mod shell;
mod ssh;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use russh::keys::{PrivateKey, PublicKey};
use russh::server::Server as _;
use tokio_util::sync::CancellationToken;

pub use crate::io::{BlockDevice, Vfs};
pub use crate::shell::{Machine, Power};
pub use crate::ssh::ExecRecord;

/// Starting a rescue system failed.
#[derive(Debug, thiserror::Error)]
pub enum RescueError {
    /// The listen address is not loopback.
    #[error("refusing to listen on {0}: only loopback addresses are allowed")]
    NotLoopback(SocketAddr),
    /// Binding the SSH port failed (port 22 needs root or `CAP_NET_BIND_SERVICE`).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An authorized key is not an OpenSSH public key line.
    #[error("invalid authorized key {key:?}: {message}")]
    Key {
        /// The key text.
        key: String,
        /// Why.
        message: String,
    },
    /// The host key could not be generated.
    #[error("cannot generate the host key: {0}")]
    HostKey(String),
}

/// What a rescue system needs.
pub struct RescueOptions {
    /// Where SSH listens (a loopback address; the twin uses `<server ip>:22`).
    pub listen: SocketAddr,
    /// OpenSSH public key lines (`ssh-ed25519 AAAA... comment`) that may log in as root.
    pub authorized_keys: Vec<String>,
    /// `hostname`.
    pub hostname: String,
    /// `uname -m` (`x86_64` or `aarch64`).
    pub uname_machine: String,
    /// `/dev/sda`.
    pub disk: BlockDevice,
    /// What `poweroff`/`reboot` do.
    pub power: Option<Arc<dyn Fn(Power) + Send + Sync>>,
}

/// A running rescue system; [`RescueServer::stop`] ends it (also on drop).
pub struct RescueServer {
    addr: SocketAddr,
    host_key: PublicKey,
    shared: Arc<ssh::Shared>,
    handle: russh::server::RunningServerHandle,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RescueServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RescueServer")
            .field("addr", &self.addr)
            .field("host_key", &self.host_key_openssh())
            .finish_non_exhaustive()
    }
}

/// Parses an OpenSSH public key line (`type base64 [comment]`).
pub fn parse_public_key(line: &str) -> Result<PublicKey, RescueError> {
    let err = |message: String| RescueError::Key {
        key: line.to_string(),
        message,
    };
    let mut fields = line.split_whitespace();
    let (Some(_kind), Some(b64)) = (fields.next(), fields.next()) else {
        return Err(err("expected `<type> <base64> [comment]`".into()));
    };
    russh::keys::parse_public_key_base64(b64).map_err(|e| err(e.to_string()))
}

impl RescueServer {
    /// Binds `opts.listen`, makes a fresh ed25519 host key and serves SSH.
    pub async fn start(opts: RescueOptions) -> Result<RescueServer, RescueError> {
        if !opts.listen.ip().is_loopback() {
            return Err(RescueError::NotLoopback(opts.listen));
        }
        let authorized = opts
            .authorized_keys
            .iter()
            .map(|k| parse_public_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        let seed: [u8; 32] = rand::random();
        let host = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
            &seed,
        ));
        let host_key = host.public_key().clone();
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| RescueError::Bind {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| RescueError::Bind {
            addr: opts.listen,
            source,
        })?;
        let shared = Arc::new(ssh::Shared {
            machine: Arc::new(Machine {
                hostname: opts.hostname,
                uname_machine: opts.uname_machine,
                disk: opts.disk,
                vfs: Vfs::default(),
                power: opts.power,
            }),
            authorized,
            cancel: CancellationToken::new(),
            log: Mutex::new(Vec::new()),
            logins: Mutex::new(0),
        });
        let mut server = ssh::Server {
            shared: shared.clone(),
        };
        let config = Arc::new(ssh::config(host));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let running = server.run_on_socket(config, &listener);
            let _ = ready_tx.send(running.handle());
            if let Err(e) = running.await {
                tracing::debug!(error = %e, "rescue SSH server ended");
            }
        });
        let handle = ready_rx
            .await
            .map_err(|e| RescueError::HostKey(format!("the SSH server did not start: {e}")))?;
        Ok(RescueServer {
            addr,
            host_key,
            shared,
            handle,
            task,
        })
    }

    /// The address SSH listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The host key (fresh for every rescue boot).
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// The host key as an OpenSSH line (`ssh-ed25519 AAAA...`).
    pub fn host_key_openssh(&self) -> String {
        self.host_key.to_openssh().unwrap_or_default()
    }

    /// The commands run so far, with their exit statuses.
    pub fn exec_log(&self) -> Vec<ExecRecord> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many logins succeeded.
    pub fn logins(&self) -> u64 {
        *self
            .shared
            .logins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The machine (disk, RAM file system).
    pub fn machine(&self) -> &Machine {
        &self.shared.machine
    }

    /// Stops listening, disconnects every client and cancels running commands.
    pub fn stop(&self) {
        self.shared.cancel.cancel();
        self.handle
            .shutdown("the server left the rescue system".into());
    }

    /// [`RescueServer::stop`], then waits until the listener is closed.
    pub async fn shutdown(mut self) {
        self.stop();
        let _ = (&mut self.task).await;
    }
}

impl Drop for RescueServer {
    fn drop(&mut self) {
        self.stop();
        self.task.abort();
    }
}
