//! The seam to the other twin parts: [`ServerHooks`] (Talos nodes, the Kubernetes API, load
//! balancer health), the [`ServerBoot`] they get and the [`HookEvent`]s the world queues for them.

use std::net::Ipv4Addr;

use crate::labels::Labels;
use crate::model::Id;

/// Everything a booting server is: what the Talos, SSH and Kubernetes twins need.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerBoot {
    /// Server id.
    pub id: Id,
    /// Server name.
    pub name: String,
    /// Public IPv4 (inside the twin's loopback block).
    pub public_ipv4: Option<Ipv4Addr>,
    /// Private IPs, one per attached network.
    pub private_ips: Vec<Ipv4Addr>,
    /// Image the server was created from.
    pub image_id: Option<Id>,
    /// That image's labels (e.g. `os=talos,arch=..,version=..`).
    pub image_labels: Labels,
    /// Whether this boot goes into the rescue system.
    pub rescue: bool,
    /// Public keys authorized for this boot (rescue keys in rescue, else creation keys).
    pub ssh_public_keys: Vec<String>,
    /// Server labels.
    pub labels: Labels,
    /// `x86` or `arm`.
    pub architecture: String,
    /// Server type name.
    pub server_type: String,
    /// Cloud-init user data given at creation.
    pub user_data: Option<String>,
}

/// Callbacks for the other twin parts. Every method defaults to doing nothing.
///
/// Hooks run on a tokio task after the world lock is released; they must not block.
pub trait ServerHooks: Send + Sync {
    /// A server reached `running` (after create, poweron, reset or reboot).
    fn server_running(&self, _boot: &ServerBoot) {}
    /// A server stopped (poweroff, shutdown, or the first half of a reset/reboot).
    fn server_stopped(&self, _id: Id) {}
    /// A server was deleted.
    fn server_deleted(&self, _id: Id) {}
    /// `create_image` started: snapshot `image_id` is taken of the disk of `server_id` as it is
    /// now. Delivered before the API answers, so the disk is captured before any later request
    /// (a delete, say) can change it.
    fn image_creating(&self, _server_id: Id, _image_id: Id) {}
    /// `create_image` finished: snapshot `image_id` holds the disk of `server_id`.
    fn image_created(&self, _server_id: Id, _image_id: Id) {}
    /// Health of a load balancer target; `None` means "healthy iff the server is running".
    /// Called under the world lock: it must be cheap and must not call back into the twin.
    fn target_health(&self, _server_id: Id, _ip: Ipv4Addr, _port: u16) -> Option<bool> {
        None
    }
}

/// The default hooks: nothing happens.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl ServerHooks for NoHooks {}

/// An event for the hooks, produced under the world lock and delivered after it.
#[derive(Debug, Clone)]
pub enum HookEvent {
    /// See [`ServerHooks::server_running`].
    Running(Box<ServerBoot>),
    /// See [`ServerHooks::server_stopped`].
    Stopped(Id),
    /// See [`ServerHooks::server_deleted`].
    Deleted(Id),
    /// See [`ServerHooks::image_creating`].
    ImageCreating(Id, Id),
    /// See [`ServerHooks::image_created`].
    ImageCreated(Id, Id),
}
