//! The machine API of a simulated node: routing by gRPC path, RBAC, `node` targeting and the
//! RPC handlers for maintenance and configured mode.

use std::future::{Ready, ready};
use std::sync::Arc;

use hyper::body::Incoming;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::tokio_stream;
use tonic::server::{Grpc, ServerStreamingService, UnaryService};
use tonic_prost::ProstCodec;

use crate::config::{self, MachineRole};
use crate::fleet::TalosFleet;
use crate::kubeconfig;
use crate::node_state::{NodeEvent, NodePhase, NodeShared, cluster_key};
use crate::proto::{self, apply_mode};
use crate::server::{Caller, Handler, ServeMode};

const ADMIN: &[&str] = &["os:admin"];
const OPERATOR: &[&str] = &["os:admin", "os:operator"];
const READER: &[&str] = &["os:admin", "os:operator", "os:reader"];
const ETCD_READER: &[&str] = &["os:admin", "os:operator", "os:reader", "os:etcd:backup"];

/// Roles allowed to call an implemented method (Talos `machined.go` rules); `None` for methods
/// the twin does not simulate.
fn allowed_roles(path: &str) -> Option<&'static [&'static str]> {
    Some(match path {
        "/machine.MachineService/ApplyConfiguration"
        | "/machine.MachineService/Bootstrap"
        | "/machine.MachineService/Kubeconfig"
        | "/machine.MachineService/Upgrade" => ADMIN,
        "/machine.MachineService/Reboot" => OPERATOR,
        "/machine.MachineService/Version"
        | "/machine.MachineService/ServiceList"
        | "/storage.StorageService/Disks" => READER,
        "/machine.MachineService/EtcdMemberList" => ETCD_READER,
        _ => return None,
    })
}

struct UnaryFn<F>(Option<F>);

impl<Req, Resp, F> UnaryService<Req> for UnaryFn<F>
where
    F: FnOnce(Req) -> Result<Resp, Status>,
{
    type Response = Resp;
    type Future = Ready<Result<tonic::Response<Resp>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        ready(match self.0.take() {
            Some(f) => f(request.into_inner()).map(tonic::Response::new),
            None => Err(Status::internal("handler called twice")),
        })
    }
}

struct StreamFn<F>(Option<F>);

impl<Req, Resp, F> ServerStreamingService<Req> for StreamFn<F>
where
    F: FnOnce(Req) -> Result<Vec<Resp>, Status>,
{
    type Response = Resp;
    type ResponseStream = tokio_stream::Iter<std::vec::IntoIter<Result<Resp, Status>>>;
    type Future = Ready<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        ready(match self.0.take() {
            Some(f) => f(request.into_inner()).map(|items| {
                tonic::Response::new(tokio_stream::iter(
                    items.into_iter().map(Ok).collect::<Vec<_>>(),
                ))
            }),
            None => Err(Status::internal("handler called twice")),
        })
    }
}

async fn unary<Req, Resp>(
    req: http::Request<Incoming>,
    f: impl FnOnce(Req) -> Result<Resp, Status>,
) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    Grpc::new(ProstCodec::<Resp, Req>::default())
        .unary(UnaryFn(Some(f)), req)
        .await
}

async fn server_streaming<Req, Resp>(
    req: http::Request<Incoming>,
    f: impl FnOnce(Req) -> Result<Vec<Resp>, Status>,
) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    Grpc::new(ProstCodec::<Resp, Req>::default())
        .server_streaming(StreamFn(Some(f)), req)
        .await
}

/// Which nodes handle a configured-mode call.
enum Targets {
    /// Neither `nodes` nor a foreign `node`: this node, or the `node` target; the response
    /// passes through verbatim.
    One(Api),
    /// `nodes`: every listed node; responses concatenated with `metadata.hostname` set and
    /// per-node failures embedded as `metadata.error`.
    Many(Vec<(String, Result<Api, Status>)>),
}

async fn dispatch<Req, Resp>(
    req: http::Request<Incoming>,
    targets: Targets,
    f: impl Fn(&Api, Req) -> Result<Resp, Status>,
) -> http::Response<Body>
where
    Req: prost::Message + Default + Clone + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    unary(req, |r: Req| match &targets {
        Targets::One(api) => f(api, r),
        Targets::Many(list) => fan_out(list, |api| f(api, r.clone())),
    })
    .await
}

/// Any `XResponse` seen as its `repeated X messages = 1`, each message as raw bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct Envelope {
    #[prost(bytes = "vec", repeated, tag = "1")]
    messages: Vec<Vec<u8>>,
}

/// Any `X` seen only through its `common.Metadata metadata = 1`.
#[derive(Clone, PartialEq, prost::Message)]
struct MetadataOnly {
    #[prost(message, optional, tag = "1")]
    metadata: Option<proto::Metadata>,
}

fn node_error(hostname: &str, status: &Status) -> proto::Metadata {
    proto::Metadata {
        hostname: hostname.to_string(),
        error: format!(
            "rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        ),
        status: Some(proto::RpcStatus {
            code: status.code() as i32,
            message: status.message().to_string(),
        }),
    }
}

/// apid one-to-many semantics for unary calls, generic over the response type: every
/// response is `repeated X messages = 1`, so encoded responses concatenate, and appending an
/// encoded field 1 to a message merges `metadata.hostname` into it.
fn fan_out<Resp>(
    list: &[(String, Result<Api, Status>)],
    f: impl Fn(&Api) -> Result<Resp, Status>,
) -> Result<Resp, Status>
where
    Resp: prost::Message + Default,
{
    use prost::Message;
    let mut all = Vec::new();
    for (hostname, target) in list {
        match target.clone().and_then(|api| f(&api)) {
            Ok(response) => {
                let envelope = Envelope::decode(response.encode_to_vec().as_slice())
                    .map_err(|e| Status::internal(format!("re-encode response: {e}")))?;
                let meta = MetadataOnly {
                    metadata: Some(proto::Metadata {
                        hostname: hostname.clone(),
                        ..Default::default()
                    }),
                }
                .encode_to_vec();
                for mut message in envelope.messages {
                    message.extend_from_slice(&meta);
                    all.push(message);
                }
            }
            Err(status) => all.push(
                MetadataOnly {
                    metadata: Some(node_error(hostname, &status)),
                }
                .encode_to_vec(),
            ),
        }
    }
    Resp::decode(Envelope { messages: all }.encode_to_vec().as_slice())
        .map_err(|e| Status::internal(format!("re-encode response: {e}")))
}

/// One-to-many for the `Data` stream of Kubeconfig.
fn fan_out_stream(
    list: &[(String, Result<Api, Status>)],
    f: impl Fn(&Api) -> Result<Vec<proto::Data>, Status>,
) -> Vec<proto::Data> {
    let mut out = Vec::new();
    for (hostname, target) in list {
        match target.clone().and_then(|api| f(&api)) {
            Ok(chunks) => out.extend(chunks.into_iter().map(|mut d| {
                d.metadata = Some(proto::Metadata {
                    hostname: hostname.clone(),
                    ..Default::default()
                });
                d
            })),
            Err(status) => out.push(proto::Data {
                metadata: Some(node_error(hostname, &status)),
                bytes: Vec::new(),
            }),
        }
    }
    out
}

fn method_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn actor_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The API of one node (the node that received the call, or the `node` target).
#[derive(Clone)]
pub(crate) struct Api {
    fleet: TalosFleet,
    node: Arc<NodeShared>,
}

impl Handler for Api {
    async fn handle(&self, caller: &Caller, req: http::Request<Incoming>) -> http::Response<Body> {
        self.route(caller, req).await
    }
}

impl Api {
    pub(crate) fn new(fleet: TalosFleet, node: Arc<NodeShared>) -> Self {
        Self { fleet, node }
    }

    /// Serves one gRPC request.
    pub(crate) async fn route(
        &self,
        caller: &Caller,
        req: http::Request<Incoming>,
    ) -> http::Response<Body> {
        let path = req.uri().path().to_string();
        if let Some(status) = self.fleet.record_call(self.node.ip, method_name(&path)) {
            return status.into_http();
        }
        match caller.mode {
            ServeMode::Maintenance => self.route_maintenance(&path, req).await,
            ServeMode::Configured => match self.route_configured(caller, &path, req).await {
                Ok(response) => response,
                Err(status) => status.into_http(),
            },
        }
    }

    async fn route_maintenance(
        &self,
        path: &str,
        req: http::Request<Incoming>,
    ) -> http::Response<Body> {
        match path {
            "/machine.MachineService/ApplyConfiguration" => {
                unary(req, |r: proto::ApplyConfigurationRequest| {
                    self.maintenance_apply(r)
                })
                .await
            }
            "/storage.StorageService/Disks" => unary(req, |_: proto::Empty| self.disks()).await,
            _ if path.starts_with("/machine.MachineService/") => {
                let method = method_name(path);
                // Talos's maintenance service implements these for admins only; a reader gets this.
                let message = if matches!(
                    method,
                    "Version" | "Upgrade" | "Reset" | "MetaWrite" | "MetaDelete"
                ) {
                    "API is not implemented in maintenance mode".to_string()
                } else {
                    format!("method {method} not implemented")
                };
                Status::unimplemented(message).into_http()
            }
            _ => Status::unimplemented(format!(
                "unknown service {}",
                path.trim_start_matches('/')
                    .split('/')
                    .next()
                    .unwrap_or_default()
            ))
            .into_http(),
        }
    }

    async fn route_configured(
        &self,
        caller: &Caller,
        path: &str,
        req: http::Request<Incoming>,
    ) -> Result<http::Response<Body>, Status> {
        let Some(allowed) = allowed_roles(path) else {
            return Err(Status::unimplemented(format!(
                "twin: {} is not simulated",
                path.trim_start_matches('/')
            )));
        };
        if !caller.roles.iter().any(|r| allowed.contains(&r.as_str())) {
            return Err(Status::permission_denied("not authorized"));
        }
        let targets = self.targets(req.headers())?;
        Ok(match path {
            "/machine.MachineService/ApplyConfiguration" => {
                dispatch(req, targets, |api, r: proto::ApplyConfigurationRequest| {
                    api.configured_apply(r)
                })
                .await
            }
            "/machine.MachineService/Bootstrap" => {
                dispatch(req, targets, |api, _: proto::BootstrapRequest| {
                    api.bootstrap()
                })
                .await
            }
            "/machine.MachineService/Kubeconfig" => {
                server_streaming(req, |_: proto::Empty| match &targets {
                    Targets::One(api) => api.kubeconfig(),
                    Targets::Many(list) => Ok(fan_out_stream(list, |api| api.kubeconfig())),
                })
                .await
            }
            "/machine.MachineService/Version" => {
                dispatch(req, targets, |api, _: proto::Empty| api.version()).await
            }
            "/machine.MachineService/ServiceList" => {
                dispatch(req, targets, |api, _: proto::Empty| api.service_list()).await
            }
            "/machine.MachineService/EtcdMemberList" => {
                dispatch(req, targets, |api, _: proto::EtcdMemberListRequest| {
                    api.etcd_member_list()
                })
                .await
            }
            "/machine.MachineService/Upgrade" => {
                dispatch(req, targets, |api, r: proto::UpgradeRequest| api.upgrade(r)).await
            }
            "/machine.MachineService/Reboot" => {
                dispatch(req, targets, |api, _: proto::RebootRequest| api.reboot()).await
            }
            "/storage.StorageService/Disks" => {
                dispatch(req, targets, |api, _: proto::Empty| api.disks()).await
            }
            _ => return Err(Status::unimplemented("twin: method is not simulated")),
        })
    }

    /// Resolves `node` (one-to-one proxying) and `nodes` (one-to-many) metadata.
    fn targets(&self, headers: &http::HeaderMap) -> Result<Targets, Status> {
        let values = |key: &str| -> Result<Vec<String>, Status> {
            headers
                .get_all(key)
                .iter()
                .map(|v| {
                    v.to_str().map(str::to_string).map_err(|_| {
                        Status::invalid_argument(format!("{key} metadata is not valid"))
                    })
                })
                .collect()
        };
        let nodes: Vec<String> = values("nodes")?
            .iter()
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if !nodes.is_empty() {
            return Ok(Targets::Many(
                nodes
                    .into_iter()
                    .map(|n| {
                        let target = self.target(&n);
                        (n, target)
                    })
                    .collect(),
            ));
        }
        match values("node")?.as_slice() {
            [] => Ok(Targets::One(self.clone())),
            [one] => self.target(one.trim()).map(Targets::One),
            _ => Err(Status::invalid_argument(
                "node metadata must contain exactly one value",
            )),
        }
    }

    /// The node that handles a call proxied to `target` (IP or hostname).
    fn target(&self, target: &str) -> Result<Api, Status> {
        if target == self.node.ip.to_string() || target == self.node.hostname() {
            return Ok(self.clone());
        }
        let unreachable = || {
            Status::unavailable(format!(
                "connection error: desc = \"transport: Error while dialing: dial tcp {target}:50000: connect: connection refused\""
            ))
        };
        let node = self.fleet.lookup(target).ok_or_else(unreachable)?;
        if node.phase() != NodePhase::Running {
            return Err(unreachable());
        }
        if node.cluster_key() != self.node.cluster_key() {
            return Err(Status::unavailable(format!(
                "connection error: desc = \"transport: authentication handshake failed: tls: failed to verify certificate of {target}\""
            )));
        }
        Ok(Api::new(self.fleet.clone(), node))
    }

    fn maintenance_apply(
        &self,
        req: proto::ApplyConfigurationRequest,
    ) -> Result<proto::ApplyConfigurationResponse, Status> {
        match req.mode {
            apply_mode::NO_REBOOT => {
                return Err(Status::unimplemented(
                    "apply configuration --mode='no-reboot' is not supported in maintenance mode",
                ));
            }
            apply_mode::STAGED => {
                return Err(Status::unimplemented(
                    "apply configuration --mode='staged' is not supported in maintenance mode",
                ));
            }
            apply_mode::REBOOT | apply_mode::AUTO | apply_mode::TRY => {}
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown apply mode {other}"
                )));
            }
        }
        let config = config::parse(&req.data).map_err(|e| Status::invalid_argument(e.message))?;
        if req.dry_run {
            return Ok(apply_reply(
                Vec::new(),
                0,
                "Dry run summary:\nNode is running in maintenance mode and does not have a config yet.",
            ));
        }
        if !self.node.accept_maintenance_config(config) {
            return Err(Status::unavailable("node is leaving maintenance mode"));
        }
        self.node.send(NodeEvent::Applied);
        Ok(apply_reply(Vec::new(), 0, ""))
    }

    fn configured_apply(
        &self,
        req: proto::ApplyConfigurationRequest,
    ) -> Result<proto::ApplyConfigurationResponse, Status> {
        let config =
            Arc::new(config::parse(&req.data).map_err(|e| Status::invalid_argument(e.message))?);
        let current = self.node.config();
        let unchanged = current.as_ref().is_some_and(|c| c.digest == config.digest);
        let live_ok = current.as_ref().is_some_and(|c| {
            c.role == config.role
                && cluster_key(&c.os_ca_crt_pem) == cluster_key(&config.os_ca_crt_pem)
        });
        if req.dry_run {
            let summary = if unchanged {
                "Dry run summary:\nNo changes."
            } else {
                "Dry run summary:\nConfig changed (the twin does not render a diff)."
            };
            return Ok(apply_reply(Vec::new(), req.mode, summary));
        }
        let (mode, details, reboot) = match req.mode {
            apply_mode::STAGED => {
                self.node.lock().staged = Some(config);
                return Ok(apply_reply(
                    Vec::new(),
                    apply_mode::STAGED,
                    "Staged configuration to be applied after the next reboot",
                ));
            }
            apply_mode::NO_REBOOT => (
                apply_mode::NO_REBOOT,
                "Applied configuration without a reboot",
                false,
            ),
            apply_mode::TRY => (
                apply_mode::TRY,
                "Applied configuration without a reboot (the twin does not roll TRY back)",
                false,
            ),
            apply_mode::AUTO if unchanged || live_ok => (
                apply_mode::NO_REBOOT,
                "Applied configuration without a reboot",
                false,
            ),
            apply_mode::AUTO | apply_mode::REBOOT => (
                apply_mode::REBOOT,
                "Applied configuration with a reboot",
                true,
            ),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown apply mode {other}"
                )));
            }
        };
        self.node.lock().config = Some(config);
        if reboot {
            self.node.send(NodeEvent::Reboot);
        }
        Ok(apply_reply(Vec::new(), mode, details))
    }

    fn running_config(&self) -> Result<Arc<config::MachineConfig>, Status> {
        self.node
            .config()
            .ok_or_else(|| Status::unavailable("node is not configured"))
    }

    fn bootstrap(&self) -> Result<proto::BootstrapResponse, Status> {
        let config = self.running_config()?;
        if config.role != MachineRole::ControlPlane {
            return Err(Status::failed_precondition(
                "bootstrap can only be performed on a control plane node",
            ));
        }
        let key = cluster_key(&config.os_ca_crt_pem);
        self.fleet
            .bootstrap(&key, self.node.ip, &self.node.hostname())
            .map_err(|()| Status::already_exists("etcd data directory is not empty"))?;
        Ok(proto::BootstrapResponse {
            messages: vec![proto::Bootstrap { metadata: None }],
        })
    }

    fn kubeconfig(&self) -> Result<Vec<proto::Data>, Status> {
        let config = self.running_config()?;
        if config.role != MachineRole::ControlPlane {
            return Err(Status::unimplemented(
                "kubeconfig is only available on control plane nodes",
            ));
        }
        let (Some(crt), Some(key)) = (&config.k8s_ca_crt_pem, &config.k8s_ca_key_pem) else {
            return Err(Status::failed_precondition(
                "kubernetes CA certificate and key are missing from the config (.cluster.ca)",
            ));
        };
        let yaml = kubeconfig::render(&config.cluster_name, &config.endpoint, crt, &key.0)
            .map_err(|e| Status::internal(format!("failed to generate kubeconfig: {e}")))?;
        let bytes = kubeconfig::targz(yaml.as_bytes())
            .map_err(|e| Status::internal(format!("failed to pack kubeconfig: {e}")))?;
        Ok(vec![proto::Data {
            metadata: None,
            bytes,
        }])
    }

    fn version(&self) -> Result<proto::VersionResponse, Status> {
        let tag = self.node.lock().version.clone();
        Ok(proto::VersionResponse {
            messages: vec![proto::Version {
                metadata: None,
                version: Some(proto::VersionInfo {
                    tag,
                    sha: "twin".into(),
                    built: String::new(),
                    go_version: "go1.24.11".into(),
                    os: "linux".into(),
                    arch: self.node.opts.arch.clone(),
                }),
                platform: Some(proto::PlatformInfo {
                    name: "hcloud".into(),
                    mode: "cloud".into(),
                }),
                features: Some(proto::FeaturesInfo { rbac: true }),
            }],
        })
    }

    fn service_list(&self) -> Result<proto::ServiceListResponse, Status> {
        let config = self.running_config()?;
        let key = cluster_key(&config.os_ca_crt_pem);
        let is_cp = config.role == MachineRole::ControlPlane;
        let etcd_member = self
            .fleet
            .members(&key)
            .iter()
            .any(|m| m.ip == self.node.ip);
        let running = |id: &str| service(id, "Running", Some(true), "");
        let mut services = vec![running("apid"), running("containerd"), running("cri")];
        if is_cp {
            services.push(if etcd_member {
                running("etcd")
            } else {
                service("etcd", "Preparing", None, "Running pre state")
            });
        }
        services.push(running("kubelet"));
        services.push(running("machined"));
        services.push(running("syslogd"));
        if is_cp {
            services.push(running("trustd"));
        }
        services.push(running("udevd"));
        Ok(proto::ServiceListResponse {
            messages: vec![proto::ServiceList {
                metadata: None,
                services,
            }],
        })
    }

    fn etcd_member_list(&self) -> Result<proto::EtcdMemberListResponse, Status> {
        let config = self.running_config()?;
        if config.role != MachineRole::ControlPlane {
            return Err(Status::unimplemented(
                "etcd is only available on control plane nodes",
            ));
        }
        let members = self.fleet.members(&cluster_key(&config.os_ca_crt_pem));
        if !members.iter().any(|m| m.ip == self.node.ip) {
            return Err(Status::unavailable("etcd is not running on this node"));
        }
        Ok(proto::EtcdMemberListResponse {
            messages: vec![proto::EtcdMembers {
                metadata: None,
                legacy_members: Vec::new(),
                members: members
                    .into_iter()
                    .map(|m| proto::EtcdMember {
                        id: m.id,
                        hostname: m.hostname,
                        peer_urls: vec![format!("https://{}:2380", m.ip)],
                        client_urls: vec![format!("https://{}:2379", m.ip)],
                        is_learner: false,
                    })
                    .collect(),
            }],
        })
    }

    fn upgrade(&self, req: proto::UpgradeRequest) -> Result<proto::UpgradeResponse, Status> {
        let config = self.running_config()?;
        let Some(tag) = image_tag(&req.image) else {
            return Err(Status::invalid_argument(format!(
                "twin: installer image {:?} has no version tag",
                req.image
            )));
        };
        if config.role == MachineRole::ControlPlane && !req.force {
            let key = cluster_key(&config.os_ca_crt_pem);
            for member in self.fleet.members(&key) {
                if member.ip != self.node.ip
                    && self.fleet.phase_of(member.ip) != Some(NodePhase::Running)
                {
                    return Err(Status::failed_precondition(format!(
                        "etcd member {} is not healthy; all members must be healthy to perform an upgrade",
                        member.hostname
                    )));
                }
            }
        }
        self.node.send(NodeEvent::Upgrade(tag.to_string()));
        Ok(proto::UpgradeResponse {
            messages: vec![proto::Upgrade {
                metadata: None,
                ack: "Upgrade request received".into(),
                actor_id: actor_id(),
            }],
        })
    }

    fn reboot(&self) -> Result<proto::RebootResponse, Status> {
        self.node.send(NodeEvent::Reboot);
        Ok(proto::RebootResponse {
            messages: vec![proto::Reboot {
                metadata: None,
                actor_id: actor_id(),
            }],
        })
    }

    fn disks(&self) -> Result<proto::DisksResponse, Status> {
        Ok(proto::DisksResponse {
            messages: vec![proto::Disks {
                metadata: None,
                disks: vec![proto::Disk {
                    size: self.node.opts.disk_size_bytes,
                    model: "QEMU HARDDISK".into(),
                    device_name: "/dev/sda".into(),
                    name: "sda".into(),
                    serial: String::new(),
                    modalias: "scsi:t-0x00".into(),
                    uuid: String::new(),
                    wwid: String::new(),
                    r#type: 1,
                    bus_path: "/pci0000:00/0000:00:05.0/virtio2/host0/target0:0:0/0:0:0:0".into(),
                    system_disk: true,
                    subsystem: "/sys/class/block".into(),
                    readonly: false,
                }],
            }],
        })
    }
}

fn apply_reply(
    warnings: Vec<String>,
    mode: i32,
    details: &str,
) -> proto::ApplyConfigurationResponse {
    proto::ApplyConfigurationResponse {
        messages: vec![proto::ApplyConfiguration {
            metadata: None,
            warnings,
            mode,
            mode_details: details.to_string(),
        }],
    }
}

fn service(id: &str, state: &str, healthy: Option<bool>, message: &str) -> proto::ServiceInfo {
    proto::ServiceInfo {
        id: id.to_string(),
        state: state.to_string(),
        events: Some(proto::ServiceEvents {
            events: vec![proto::ServiceEvent {
                msg: message.to_string(),
                state: state.to_string(),
                ts: None,
            }],
        }),
        health: Some(proto::ServiceHealth {
            unknown: healthy.is_none(),
            healthy: healthy.unwrap_or(false),
            last_message: message.to_string(),
            last_change: None,
        }),
    }
}

/// The version tag of an installer image reference (`repo/name:tag[@digest]`).
fn image_tag(image: &str) -> Option<&str> {
    let image = image.split('@').next()?;
    let last = image.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    (!tag.is_empty()).then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(
            image_tag("ghcr.io/siderolabs/installer:v1.11.6"),
            Some("v1.11.6")
        );
        assert_eq!(
            image_tag("factory.talos.dev/hcloud-installer/376567988ad3:v1.12.0"),
            Some("v1.12.0")
        );
        assert_eq!(image_tag("localhost:5000/installer"), None);
        assert_eq!(image_tag("ghcr.io/siderolabs/installer"), None);
    }

    #[test]
    fn rbac_table() {
        assert_eq!(
            allowed_roles("/machine.MachineService/Bootstrap"),
            Some(ADMIN)
        );
        assert_eq!(
            allowed_roles("/machine.MachineService/Reboot"),
            Some(OPERATOR)
        );
        assert_eq!(allowed_roles("/storage.StorageService/Disks"), Some(READER));
        assert!(allowed_roles("/machine.MachineService/Reset").is_none());
    }
}
