//! Server disks and what a server boots: the [`ServerHooks`] that own every server's `/dev/sda`,
//! start the rescue system ([`hk8s_twin_rescue`]) on `<public ip>:<rescue port>` for a rescue
//! boot, and otherwise boot Talos ([`TalosHooks::boot`]) only when the disk holds a valid Talos
//! image for the server's architecture ([`hk8s_twin_factory::image::inspect`]).
//!
//! - A disk starts as the content of the image the server was created from: a snapshot made by
//!   `create_image` holds what the source disk held then; a snapshot seeded with
//!   `--seed-talos`/`POST /twin/images/talos` (labelled `os=talos`, never made from a disk)
//!   holds the factory image of its version and arch (vanilla schematic); system images hold no
//!   Talos.
//! - A rescue boot turns the disk into a sparse file of the server type's size (GB × 10⁹
//!   bytes) under the twin's disk folder, which the rescue shell writes; the next normal boot
//!   inspects it, and a Talos node that ran before is forgotten (the disk is new).
//! - `create_image` captures the first 16 MiB of the disk (trailing zeros trimmed) when the
//!   request is accepted; a larger image would be cut there (the twin's images are 2 MiB).
//! - Rescue is one boot: the SSH server stops when the server stops (power-off, reset, reboot)
//!   or is deleted, disconnecting its clients.
//! - `poweroff`/`halt`/`shutdown` typed in the rescue system turn the server `off` (no action,
//!   as when a guest powers itself off on Hetzner); `reboot` restarts it (out of rescue).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hk8s_twin_factory::{Arch, ImageInfo, Inspection, image, schematic};
use hk8s_twin_hetzner::TwinState;
use hk8s_twin_hetzner::hooks::{HookEvent, ServerBoot, ServerHooks};
use hk8s_twin_hetzner::model::{Id, ServerStatus};
use hk8s_twin_rescue::{BlockDevice, Power, RescueOptions, RescueServer};
use serde_json::{Value, json};

use crate::talos_nodes::TalosHooks;

/// How much of a disk a snapshot keeps.
const CAPTURE: u64 = 16 * 1024 * 1024;

/// A disk's content as an image holds it.
#[derive(Debug)]
struct Content {
    bytes: Vec<u8>,
    inspection: Inspection,
}

impl Content {
    fn from_bytes(mut bytes: Vec<u8>) -> Content {
        let inspection = image::inspect(&bytes);
        let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
        bytes.truncate(end);
        Content { bytes, inspection }
    }

    fn empty() -> Content {
        Content {
            bytes: Vec::new(),
            inspection: Inspection::NotAnImage,
        }
    }
}

#[derive(Debug)]
enum Disk {
    /// Never written since the server was created: the image's content.
    Image(Arc<Content>),
    /// A file (after a rescue boot); `fresh` says the rescue system may have written it since
    /// it was last inspected.
    File {
        dev: BlockDevice,
        inspection: Option<Inspection>,
    },
}

struct Rescue {
    seq: u64,
    server: Option<RescueServer>,
    listen: SocketAddr,
    error: Option<String>,
}

#[derive(Default)]
struct Inner {
    disks: HashMap<Id, Disk>,
    images: HashMap<Id, Arc<Content>>,
    seeded: HashMap<Id, Arc<Content>>,
    rescues: HashMap<Id, Rescue>,
    seq: u64,
}

/// Server disks, rescue systems and Talos boots (see the module docs).
pub struct Machines {
    state: TwinState,
    talos: Arc<TalosHooks>,
    rescue_port: u16,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Machines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machines")
            .field("rescue_port", &self.rescue_port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The disk folder could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the disk folder: {0}")]
pub struct DiskDirError(#[from] std::io::Error);

impl Machines {
    /// Machines whose Talos boots go to `talos`, whose rescue SSH listens on `rescue_port` (0:
    /// a free port per server, see [`Machines::rescue_addr`]) and whose disk files live in
    /// `disk_dir` (`None`: a temporary folder removed with the twin).
    pub fn new(
        state: TwinState,
        talos: Arc<TalosHooks>,
        rescue_port: u16,
        disk_dir: Option<PathBuf>,
    ) -> Result<Machines, DiskDirError> {
        let (dir, tmp) = match disk_dir {
            Some(d) => {
                std::fs::create_dir_all(&d)?;
                (d, None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("hk8s-twin-disks-")
                    .tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        Ok(Machines {
            state,
            talos,
            rescue_port,
            dir,
            _tmp: tmp,
            inner: Arc::new(Mutex::new(Inner::default())),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops every rescue system (the twin shuts down).
    pub fn stop_all(&self) {
        let mut inner = self.lock();
        for (_, r) in inner.rescues.drain() {
            if let Some(s) = r.server {
                s.stop();
            }
        }
    }

    /// The port rescue SSH listens on (0: a free one per server).
    pub fn rescue_port(&self) -> u16 {
        self.rescue_port
    }

    /// Where the rescue system of server `id` listens, once it does.
    pub fn rescue_addr(&self, id: Id) -> Option<SocketAddr> {
        let inner = self.lock();
        let r = inner.rescues.get(&id)?;
        r.server.as_ref().map(RescueServer::addr)
    }

    /// The rescue system's host key (OpenSSH line), once it listens.
    pub fn rescue_host_key(&self, id: Id) -> Option<String> {
        let inner = self.lock();
        inner
            .rescues
            .get(&id)?
            .server
            .as_ref()
            .map(RescueServer::host_key_openssh)
    }

    /// What server `id`'s disk holds now.
    pub fn disk_inspection(&self, id: Id) -> Option<Inspection> {
        let inner = self.lock();
        match inner.disks.get(&id)? {
            Disk::Image(c) => Some(c.inspection.clone()),
            Disk::File { dev, .. } => Some(inspect_file(dev)),
        }
    }

    /// What snapshot `id` holds (`None`: not made from a disk the twin saw).
    pub fn image_inspection(&self, id: Id) -> Option<Inspection> {
        self.lock().images.get(&id).map(|c| c.inspection.clone())
    }

    /// The `/twin/rescue` document.
    pub fn describe(&self) -> Value {
        let inner = self.lock();
        let mut rescues: Vec<(Id, Value)> = inner
            .rescues
            .iter()
            .map(|(id, r)| {
                let (host_key, logins, commands) = match &r.server {
                    Some(s) => (
                        Value::String(s.host_key_openssh()),
                        s.logins(),
                        s.exec_log()
                            .into_iter()
                            .map(|e| json!({"command": e.command, "status": e.status}))
                            .collect(),
                    ),
                    None => (Value::Null, 0, Vec::new()),
                };
                (
                    *id,
                    json!({
                        "server": id,
                        "listen": r.server.as_ref().map(|s| s.addr().to_string()).unwrap_or_else(|| r.listen.to_string()),
                        "listening": r.server.is_some(),
                        "host_key": host_key,
                        "logins": logins,
                        "commands": commands,
                        "error": r.error,
                    }),
                )
            })
            .collect();
        rescues.sort_by_key(|(id, _)| *id);
        let mut disks: Vec<(Id, Value)> = inner
            .disks
            .iter()
            .map(|(id, d)| {
                let (kind, inspection) = match d {
                    Disk::Image(c) => ("image", c.inspection.clone()),
                    Disk::File { dev, .. } => ("file", inspect_file(dev)),
                };
                (*id, json!({"server": id, "backing": kind, "holds": describe_inspection(&inspection)}))
            })
            .collect();
        disks.sort_by_key(|(id, _)| *id);
        json!({
            "ssh_port": self.rescue_port,
            "rescue": rescues.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
            "disks": disks.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        })
    }

    /// The content a server created from `boot.image_id` starts with.
    fn initial_content(&self, inner: &mut Inner, boot: &ServerBoot) -> Arc<Content> {
        let Some(image) = boot.image_id else {
            return Arc::new(Content::empty());
        };
        if let Some(c) = inner.images.get(&image) {
            return c.clone();
        }
        if let Some(c) = inner.seeded.get(&image) {
            return c.clone();
        }
        // A seeded Talos snapshot: the factory image of its labelled version and arch.
        let labels = &boot.image_labels;
        let content = if labels.get("os").map(String::as_str) == Some("talos") {
            let arch = labels
                .get("arch")
                .and_then(|a| Arch::parse(a))
                .or_else(|| Arch::parse(&boot.architecture))
                .unwrap_or(Arch::Amd64);
            let info = ImageInfo {
                talos_version: labels
                    .get("version")
                    .cloned()
                    .unwrap_or_else(|| "v1.11.6".into()),
                arch,
                schematic: schematic::VANILLA_ID.into(),
            };
            Arc::new(Content::from_bytes(image::generate(&info)))
        } else {
            Arc::new(Content::empty())
        };
        inner.seeded.insert(image, content.clone());
        content
    }

    fn disk_size(boot: &ServerBoot) -> u64 {
        hk8s_twin_hetzner::catalog::server_type(&boot.server_type)
            .map(|t| t.disk.max(1) as u64 * 1_000_000_000)
            .unwrap_or(20_000_000_000)
    }

    /// Makes server `boot.id`'s disk a file (writing the image content into it).
    fn materialize(&self, inner: &mut Inner, boot: &ServerBoot) -> std::io::Result<BlockDevice> {
        if let Some(Disk::File { dev, .. }) = inner.disks.get(&boot.id) {
            return Ok(dev.clone());
        }
        let content = match inner.disks.get(&boot.id) {
            Some(Disk::Image(c)) => c.clone(),
            _ => self.initial_content(inner, boot),
        };
        let dev = BlockDevice::create(
            self.dir.join(format!("server-{}.disk", boot.id)),
            Self::disk_size(boot),
        )?;
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&dev.path)?;
            f.write_all_at(&content.bytes, 0)?;
        }
        inner.disks.insert(
            boot.id,
            Disk::File {
                dev: dev.clone(),
                inspection: None,
            },
        );
        Ok(dev)
    }

    fn stop_rescue(&self, inner: &mut Inner, id: Id) {
        if let Some(r) = inner.rescues.remove(&id)
            && let Some(s) = r.server
        {
            s.stop();
        }
    }

    fn start_rescue(&self, inner: &mut Inner, boot: &ServerBoot) {
        let Some(ip) = boot.public_ipv4 else { return };
        let listen = SocketAddr::new(IpAddr::V4(ip), self.rescue_port);
        inner.seq += 1;
        let seq = inner.seq;
        let dev = match self.materialize(inner, boot) {
            Ok(d) => d,
            Err(e) => {
                inner.rescues.insert(
                    boot.id,
                    Rescue {
                        seq,
                        server: None,
                        listen,
                        error: Some(format!("cannot create the disk file: {e}")),
                    },
                );
                return;
            }
        };
        inner.rescues.insert(
            boot.id,
            Rescue {
                seq,
                server: None,
                listen,
                error: None,
            },
        );
        let opts = RescueOptions {
            listen,
            authorized_keys: boot.ssh_public_keys.clone(),
            hostname: "rescue".into(),
            uname_machine: if boot.architecture == "arm" {
                "aarch64"
            } else {
                "x86_64"
            }
            .into(),
            disk: dev,
            power: Some(guest_power(self.state.clone(), boot.id)),
        };
        let shared = self.inner.clone();
        let id = boot.id;
        let name = boot.name.clone();
        tokio::spawn(async move {
            let started = RescueServer::start(opts).await;
            let mut inner = shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The server may have left rescue meanwhile.
            let Some(slot) = inner.rescues.get_mut(&id).filter(|r| r.seq == seq) else {
                if let Ok(s) = started {
                    s.stop();
                }
                return;
            };
            match started {
                Ok(s) => slot.server = Some(s),
                Err(e) => {
                    tracing::warn!(server = %name, %listen, error = %e, "cannot start the rescue system");
                    slot.error = Some(format!(
                        "{e}: {}",
                        std::error::Error::source(&e)
                            .map(|s| s.to_string())
                            .unwrap_or_default()
                    ));
                }
            }
        });
    }
}

/// `poweroff`/`reboot` in the server: it goes `off` (or restarts) without an API action.
fn guest_power(state: TwinState, id: Id) -> Arc<dyn Fn(Power) + Send + Sync> {
    Arc::new(move |power| {
        let state = state.clone();
        // After the command returns, as an OS shutting down would.
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            let _ = state.mutate(|w| {
                let running = w
                    .servers
                    .get(&id)
                    .is_some_and(|s| s.status == ServerStatus::Running);
                if !running {
                    return Ok(());
                }
                w.emit(HookEvent::Stopped(id));
                match power {
                    Power::Off => {
                        if let Some(s) = w.servers.get_mut(&id) {
                            s.status = ServerStatus::Off;
                        }
                    }
                    Power::Reboot => {
                        if let Some(boot) = w.boot(id) {
                            w.emit(HookEvent::Running(Box::new(boot)));
                        }
                    }
                }
                Ok(())
            });
        });
    })
}

fn inspect_file(dev: &BlockDevice) -> Inspection {
    match dev.read_prefix(image::IMAGE_SIZE as u64 + image::HEADER_SIZE as u64) {
        Ok(bytes) => image::inspect(&bytes),
        Err(e) => Inspection::Corrupt(format!("cannot read the disk: {e}")),
    }
}

fn describe_inspection(i: &Inspection) -> Value {
    match i {
        Inspection::Talos(info) => json!({
            "talos_version": info.talos_version,
            "arch": info.arch.factory_name(),
            "schematic": info.schematic,
        }),
        Inspection::NotAnImage => json!("no Talos image"),
        Inspection::Corrupt(why) => json!(format!("corrupt Talos image: {why}")),
    }
}

impl ServerHooks for Machines {
    fn server_running(&self, boot: &ServerBoot) {
        let mut inner = self.lock();
        self.stop_rescue(&mut inner, boot.id);
        if boot.rescue {
            drop(inner);
            self.talos.boot(boot, None);
            let mut inner = self.lock();
            self.start_rescue(&mut inner, boot);
            return;
        }
        let arch = Arch::parse(&boot.architecture).unwrap_or(Arch::Amd64);
        let mut forget_node = false;
        let inspection = match inner.disks.get_mut(&boot.id) {
            Some(Disk::Image(c)) => c.inspection.clone(),
            Some(Disk::File { dev, inspection }) => match inspection {
                Some(i) => i.clone(),
                None => {
                    // Written in rescue since the last boot: a new disk for Talos too.
                    let i = inspect_file(dev);
                    *inspection = Some(i.clone());
                    forget_node = true;
                    i
                }
            },
            None => {
                let c = self.initial_content(&mut inner, boot);
                let i = c.inspection.clone();
                inner.disks.insert(boot.id, Disk::Image(c));
                i
            }
        };
        drop(inner);
        if forget_node {
            self.talos.server_deleted(boot.id);
        }
        let image = inspection
            .boots_on(arch)
            .map(|i| (i.talos_version.clone(), i.schematic.clone()));
        if image.is_none() {
            tracing::debug!(server = %boot.name, holds = ?inspection, "the disk holds no Talos for {arch}: not booting Talos");
        }
        self.talos
            .boot(boot, image.as_ref().map(|(v, s)| (v.as_str(), s.as_str())));
    }

    fn server_stopped(&self, id: Id) {
        {
            let mut inner = self.lock();
            self.stop_rescue(&mut inner, id);
            if let Some(Disk::File { inspection, .. }) = inner.disks.get_mut(&id) {
                // The rescue system may have written it: inspect again at the next boot.
                *inspection = None;
            }
        }
        self.talos.server_stopped(id);
    }

    fn server_deleted(&self, id: Id) {
        {
            let mut inner = self.lock();
            self.stop_rescue(&mut inner, id);
            if let Some(Disk::File { dev, .. }) = inner.disks.remove(&id) {
                let _ = std::fs::remove_file(&dev.path);
            }
        }
        self.talos.server_deleted(id);
    }

    fn image_creating(&self, server_id: Id, image_id: Id) {
        let mut inner = self.lock();
        let content = match inner.disks.get(&server_id) {
            Some(Disk::Image(c)) => c.clone(),
            Some(Disk::File { dev, .. }) => Arc::new(match dev.read_prefix(CAPTURE) {
                Ok(b) => Content::from_bytes(b),
                Err(e) => {
                    tracing::warn!(server = server_id, error = %e, "cannot read the disk for a snapshot");
                    Content::empty()
                }
            }),
            None => Arc::new(Content::empty()),
        };
        inner.images.insert(image_id, content);
    }

    fn target_health(&self, server_id: Id, ip: std::net::Ipv4Addr, port: u16) -> Option<bool> {
        self.talos.target_health(server_id, ip, port)
    }
}

/// `GET /twin/rescue`: the rescue SSH port, every rescue system (listen address, host key,
/// logins, commands run with their statuses, start errors) and every disk (what it holds).
pub fn router(machines: Arc<Machines>) -> Router {
    Router::new()
        .route("/twin/rescue", get(control_rescue))
        .with_state(machines)
}

async fn control_rescue(State(m): State<Arc<Machines>>) -> Response {
    axum::Json(m.describe()).into_response()
}
