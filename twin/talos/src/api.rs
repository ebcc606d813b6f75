//! The machine API of a simulated node: routing by gRPC path, RBAC, `node` targeting and the
//! RPC handlers for maintenance and configured mode.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::tokio_stream;
use tonic::server::{Grpc, ServerStreamingService, UnaryService};
use tonic_prost::ProstCodec;

use crate::config::{self, MachineRole};
use crate::fleet::{TalosFleet, member_id};
use crate::hooks::{Installer, UpgradeFaultKind, parse_installer};
use crate::kubeconfig;
use crate::node_state::{NodeEvent, NodePhase, NodeShared, UpgradeRun, cluster_key};
use crate::proto::{self, apply_mode, error_code, sequence_action};

/// Talos `QuorumCheckTimeout`: the etcd health probe per member.
const QUORUM_CHECK_TIMEOUT: Duration = Duration::from_secs(15);
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
        | "/machine.MachineService/Upgrade"
        | "/machine.MachineService/Read" => ADMIN,
        "/machine.MachineService/Reboot" => OPERATOR,
        "/machine.MachineService/Version"
        | "/machine.MachineService/ServiceList"
        | "/machine.MachineService/Events"
        | "/storage.StorageService/Disks"
        | "/cosi.resource.State/List" => READER,
        "/machine.MachineService/EtcdMemberList" | "/machine.MachineService/EtcdStatus" => {
            ETCD_READER
        }
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

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct UnaryAsync<F>(Option<F>);

impl<Req, Resp, F, Fut> UnaryService<Req> for UnaryAsync<F>
where
    Resp: Send + 'static,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<Result<tonic::Response<Resp>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        match self.0.take() {
            Some(f) => {
                let fut = f(request.into_inner());
                Box::pin(async move { fut.await.map(tonic::Response::new) })
            }
            None => Box::pin(ready(Err(Status::internal("handler called twice")))),
        }
    }
}

/// An `Events` stream: the buffered events asked for, then live ones until the boot ends.
pub(crate) struct EventStream {
    backlog: std::collections::VecDeque<proto::Event>,
    live: tokio::sync::mpsc::UnboundedReceiver<proto::Event>,
    actor: String,
}

impl tokio_stream::Stream for EventStream {
    type Item = Result<proto::Event, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(e) = self.backlog.pop_front() {
            return Poll::Ready(Some(Ok(e)));
        }
        loop {
            match self.live.poll_recv(cx) {
                Poll::Ready(Some(e)) => {
                    if self.actor.is_empty() || e.actor_id == self.actor {
                        return Poll::Ready(Some(Ok(e)));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

struct EventsService(Option<Api>);

impl ServerStreamingService<proto::EventsRequest> for EventsService {
    type Response = proto::Event;
    type ResponseStream = EventStream;
    type Future = Ready<Result<tonic::Response<EventStream>, Status>>;

    fn call(&mut self, request: tonic::Request<proto::EventsRequest>) -> Self::Future {
        ready(match self.0.take() {
            Some(api) => Ok(tonic::Response::new(api.events(request.into_inner()))),
            None => Err(Status::internal("handler called twice")),
        })
    }
}

async fn unary_async<Req, Resp, Fut>(
    req: http::Request<Incoming>,
    f: impl FnOnce(Req) -> Fut,
) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    Grpc::new(ProstCodec::<Resp, Req>::default())
        .unary(UnaryAsync(Some(f)), req)
        .await
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
    assemble(
        list.iter()
            .map(|(hostname, target)| (hostname.clone(), target.clone().and_then(|api| f(&api))))
            .collect(),
    )
}

/// Concatenates per-node results as apid's one-to-many proxying does.
fn assemble<Resp>(results: Vec<(String, Result<Resp, Status>)>) -> Result<Resp, Status>
where
    Resp: prost::Message + Default,
{
    use prost::Message;
    let mut all = Vec::new();
    for (hostname, result) in results {
        let hostname = &hostname;
        match result {
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
                unary_async(req, move |r: proto::UpgradeRequest| async move {
                    match targets {
                        Targets::One(api) => api.upgrade(r).await,
                        Targets::Many(list) => {
                            let mut results = Vec::new();
                            for (hostname, target) in list {
                                let result = match target {
                                    Ok(api) => api.upgrade(r.clone()).await,
                                    Err(status) => Err(status),
                                };
                                results.push((hostname, result));
                            }
                            assemble(results)
                        }
                    }
                })
                .await
            }
            "/machine.MachineService/Events" => {
                let api = match targets {
                    Targets::One(api) => api,
                    Targets::Many(mut list) if list.len() == 1 => list.remove(0).1?,
                    Targets::Many(_) => {
                        return Err(Status::invalid_argument(
                            "twin: Events streams from one node at a time",
                        ));
                    }
                };
                Grpc::new(ProstCodec::<proto::Event, proto::EventsRequest>::default())
                    .server_streaming(EventsService(Some(api)), req)
                    .await
            }
            "/machine.MachineService/Read" => {
                server_streaming(req, |r: proto::ReadRequest| match &targets {
                    Targets::One(api) => api.read(&r.path),
                    Targets::Many(list) => Ok(fan_out_stream(list, |api| api.read(&r.path))),
                })
                .await
            }
            "/machine.MachineService/EtcdStatus" => {
                dispatch(req, targets, |api, _: proto::Empty| api.etcd_status()).await
            }
            "/machine.MachineService/Reboot" => {
                dispatch(req, targets, |api, _: proto::RebootRequest| api.reboot()).await
            }
            "/storage.StorageService/Disks" => {
                dispatch(req, targets, |api, _: proto::Empty| api.disks()).await
            }
            "/cosi.resource.State/List" => {
                let Targets::One(api) = targets else {
                    // apid proxies COSI one-to-one only.
                    return Err(Status::invalid_argument(
                        "one-2-many proxying is not supported",
                    ));
                };
                server_streaming(req, |r: proto::CosiListRequest| api.cosi_list(&r)).await
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
        let talos = self.node.lock().version.clone();
        config::validate_kubernetes_window(&talos, &config.raw.0, config.role)
            .map_err(Status::invalid_argument)?;
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
        // Other twin parts follow the applied config (static pods, kubelet version).
        self.fleet.notify();
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

    /// `cosi.resource.State/List`: `runtime/ExtensionStatuses` holds the virtual `schematic`
    /// extension the Image Factory adds to every image (its version is the schematic ID the
    /// node booted); other resource types are not simulated.
    fn cosi_list(
        &self,
        r: &proto::CosiListRequest,
    ) -> Result<Vec<proto::CosiListResponse>, Status> {
        const EXTENSION_STATUS: &str = "ExtensionStatuses.runtime.talos.dev";
        if r.r#type != EXTENSION_STATUS {
            return Err(Status::unimplemented(format!(
                "twin: COSI resource type {:?} is not simulated",
                r.r#type
            )));
        }
        if r.namespace != "runtime" {
            return Ok(Vec::new());
        }
        let schematic = self.node.lock().schematic.clone();
        let yaml_spec = format!(
            "image: 0.sqsh\nmetadata:\n    name: schematic\n    version: {schematic}\n    \
             author: Image Factory\n    description: This image was built with Image Factory.\n    \
             compatibility:\n        talos:\n            version: '>= 1.0.0'\n"
        );
        Ok(vec![proto::CosiListResponse {
            resource: Some(proto::CosiResource {
                metadata: Some(proto::CosiMetadata {
                    namespace: "runtime".into(),
                    r#type: EXTENSION_STATUS.into(),
                    id: "0".into(),
                    version: "1".into(),
                    owner: "runtime.ExtensionStatusController".into(),
                    phase: "running".into(),
                }),
                spec: Some(proto::CosiSpec {
                    proto_spec: Vec::new(),
                    yaml_spec,
                }),
            }),
        }])
    }

    fn version(&self) -> Result<proto::VersionResponse, Status> {
        let (tag, platform) = {
            let s = self.node.lock();
            (s.version.clone(), s.platform.clone())
        };
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
                    mode: if platform == "metal" {
                        "metal"
                    } else {
                        "cloud"
                    }
                    .into(),
                    name: platform,
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
        // The upgrade's stopServices phase stops cri, trustd and their dependents.
        let up = self.node.lock().services_up;
        let running = |id: &str| service(id, "Running", Some(true), "");
        let stoppable = |id: &str| {
            if up {
                running(id)
            } else {
                service(id, "Finished", Some(false), "Service finished successfully")
            }
        };
        let mut services = vec![running("apid"), running("containerd"), stoppable("cri")];
        if is_cp {
            services.push(if !etcd_member {
                service("etcd", "Preparing", None, "Running pre state")
            } else {
                stoppable("etcd")
            });
        }
        services.push(stoppable("kubelet"));
        services.push(running("machined"));
        services.push(running("syslogd"));
        if is_cp {
            services.push(stoppable("trustd"));
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
        if !members.iter().any(|m| m.ip == self.node.ip)
            || !self.fleet.is_member_healthy(self.node.ip)
        {
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

    /// `Upgrade` (Talos `v1alpha1_server.go`): the synchronous installer pull and validation,
    /// the etcd pre-checks on a control plane unless `force`, then ack + actor ID; the sequence
    /// runs afterwards. A second Upgrade while one runs is acked and then hits the sequence lock.
    async fn upgrade(self, req: proto::UpgradeRequest) -> Result<proto::UpgradeResponse, Status> {
        let config = self.running_config()?;
        let installer = self.pull_installer(&req.image).await?;
        if config.role == MachineRole::ControlPlane && !req.force {
            self.etcd_prechecks(&cluster_key(&config.os_ca_crt_pem))
                .await?;
        }
        let actor_id = actor_id();
        let mut run = UpgradeRun {
            actor_id: actor_id.clone(),
            image: req.image.clone(),
            target_version: installer.version,
            target_schematic: installer.schematic,
            target_platform: installer.platform,
            stage: req.stage,
            force: req.force,
            reboot_mode: req.reboot_mode,
            phase: "accepted".into(),
            fault: None,
        };
        // Check and take the sequence lock at once (concurrent calls race for it).
        let reserved = {
            let mut s = self.node.lock();
            s.upgrade_rpcs_accepted += 1;
            if s.upgrade.is_some() || s.phase != NodePhase::Running {
                false
            } else {
                s.upgrade = Some(run.clone());
                true
            }
        };
        let fault = if reserved {
            self.fleet.take_upgrade_fault(self.node.ip)
        } else {
            None
        };
        if !reserved || fault == Some(UpgradeFaultKind::Locked) {
            if reserved {
                self.node.lock().upgrade = None;
            }
            self.publish_locked();
        } else {
            run.fault = fault;
            self.node.lock().upgrade = Some(run.clone());
            self.node.send(NodeEvent::Upgrade(Box::new(run)));
        }
        self.fleet.notify();
        Ok(proto::UpgradeResponse {
            messages: vec![proto::Upgrade {
                metadata: None,
                ack: "Upgrade request received".into(),
                actor_id,
            }],
        })
    }

    /// A sequence that could not start because another one holds the lock (Talos publishes
    /// this with `context.Background()`, so without actor ID).
    fn publish_locked(&self) {
        self.node.lock().publish(
            "",
            "SequenceEvent",
            &proto::SequenceEvent {
                sequence: String::new(),
                action: sequence_action::NOOP,
                error: Some(proto::CommonError {
                    code: error_code::LOCKED,
                    message: "sequence not started: locked".into(),
                }),
            },
        );
    }

    /// `install.PullAndValidateInstallerImage`: pulls into the system containerd (skipped when
    /// the image is there already), then validates it.
    async fn pull_installer(&self, image: &str) -> Result<Installer, Status> {
        let resolved = match self.fleet.installers() {
            Some(registry) => registry.resolve(image),
            None => parse_installer(image),
        };
        let pulled = self.node.lock().pulled.contains(image);
        if !pulled {
            tokio::time::sleep(self.node.scaled(self.node.opts.pull_delay)).await;
        }
        match resolved {
            Ok(installer) => {
                self.node.lock().pulled.insert(image.to_string());
                Ok(installer)
            }
            Err(tail) => Err(Status::unknown(format!(
                "error validating installer image {image:?}: failed to resolve reference {image:?}: {tail}"
            ))),
        }
    }

    /// `tryLockUpgradeMutex` + `ValidateForUpgrade` with Talos's texts.
    async fn etcd_prechecks(&self, key: &str) -> Result<(), Status> {
        // The mutex is an etcd session of the local member.
        if !self.fleet.is_member_healthy(self.node.ip) {
            tokio::time::sleep(self.node.scaled(QUORUM_CHECK_TIMEOUT)).await;
            return Err(Status::deadline_exceeded(
                "failed to acquire upgrade mutex: context deadline exceeded",
            ));
        }
        if !self.fleet.try_lock_upgrade_mutex(key) {
            return Err(Status::unknown(
                "failed to acquire upgrade mutex: mutex: Locked by another session",
            ));
        }
        struct Release<'a>(&'a TalosFleet, &'a str);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.unlock_upgrade_mutex(self.1);
            }
        }
        let _release = Release(&self.fleet, key);
        let members = self.fleet.members(key);
        if members.len() == 2 {
            return Err(Status::unknown(
                "error validating etcd for upgrade: etcd member count(2) is insufficient to maintain quorum if upgrade commences",
            ));
        }
        for member in &members {
            if member.hostname.is_empty() {
                return Err(Status::unknown(format!(
                    "error validating etcd for upgrade: etcd member {:016x} is not started, all members must be running to perform an upgrade",
                    member.id
                )));
            }
            if !self.fleet.is_member_healthy(member.ip) {
                // The KV probe runs into its 15 s timeout.
                tokio::time::sleep(self.node.scaled(QUORUM_CHECK_TIMEOUT)).await;
                return Err(Status::deadline_exceeded(format!(
                    "error validating etcd for upgrade: etcd member {:016x} is not healthy; all members must be healthy to perform an upgrade: context deadline exceeded",
                    member.id
                )));
            }
        }
        Ok(())
    }

    fn reboot(&self) -> Result<proto::RebootResponse, Status> {
        // A reboot cannot take over an upgrade: acked, then LOCKED.
        if self.node.lock().upgrade.is_some() {
            self.publish_locked();
        } else {
            self.node.send(NodeEvent::Reboot);
        }
        Ok(proto::RebootResponse {
            messages: vec![proto::Reboot {
                metadata: None,
                actor_id: actor_id(),
            }],
        })
    }

    /// `Events`: a hello event echoing `with_actor_id`, the buffered events `tail_*` asks
    /// for (`tail_events=-1`: all since boot), then live events until the node reboots.
    fn events(&self, req: proto::EventsRequest) -> EventStream {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut s = self.node.lock();
        let actor = req.with_actor_id.clone();
        let matches = |e: &proto::Event| actor.is_empty() || e.actor_id == actor;
        let buffered: Vec<&(Instant, proto::Event)> = s.events.buffer.iter().collect();
        let mut from = buffered.len();
        if req.tail_events < 0 {
            from = 0;
        } else if req.tail_events > 0 {
            from = buffered.len().saturating_sub(req.tail_events as usize);
        }
        if !req.tail_id.is_empty()
            && let Some(i) = buffered.iter().position(|(_, e)| e.id == req.tail_id)
        {
            from = from.min(i + 1);
        }
        if req.tail_seconds > 0 {
            let since = Instant::now().checked_sub(Duration::from_secs(req.tail_seconds as u64));
            if let Some(i) = buffered
                .iter()
                .position(|(t, _)| since.is_none_or(|since| *t >= since))
            {
                from = from.min(i);
            }
        }
        let mut backlog: std::collections::VecDeque<proto::Event> = buffered[from..]
            .iter()
            .map(|(_, e)| e.clone())
            .filter(matches)
            .collect();
        backlog.push_front(proto::Event {
            metadata: None,
            data: Some(prost_types::Any::default()),
            id: crate::node_state::event_id(),
            actor_id: req.with_actor_id.clone(),
        });
        s.events.subscribers.push(tx);
        EventStream {
            backlog,
            live: rx,
            actor,
        }
    }

    /// `Read`: only the boot ID file is simulated.
    fn read(&self, path: &str) -> Result<Vec<proto::Data>, Status> {
        if path != "/proc/sys/kernel/random/boot_id" {
            return Err(Status::unknown(format!(
                "open {path}: no such file or directory"
            )));
        }
        let boot_id = self.node.lock().boot_id.clone();
        Ok(vec![proto::Data {
            metadata: None,
            bytes: format!("{boot_id}\n").into_bytes(),
        }])
    }

    /// `EtcdStatus` of the local member (control planes whose etcd runs).
    fn etcd_status(&self) -> Result<proto::EtcdStatusResponse, Status> {
        let config = self.running_config()?;
        if config.role != MachineRole::ControlPlane {
            return Err(Status::unimplemented(
                "etcd is only available on control plane nodes",
            ));
        }
        let members = self.fleet.members(&cluster_key(&config.os_ca_crt_pem));
        if !members.iter().any(|m| m.ip == self.node.ip)
            || !self.fleet.is_member_healthy(self.node.ip)
        {
            return Err(Status::unavailable("etcd is not running on this node"));
        }
        // The leader: the first healthy member in join order.
        let leader = members
            .iter()
            .find(|m| self.fleet.is_member_healthy(m.ip))
            .map(|m| m.id)
            .unwrap_or_default();
        let (protocol, storage) = etcd_version(&self.node.lock().version);
        Ok(proto::EtcdStatusResponse {
            messages: vec![proto::EtcdStatus {
                metadata: None,
                member_status: Some(proto::EtcdMemberStatus {
                    protocol_version: protocol.into(),
                    db_size: 20_480_000,
                    db_size_in_use: 12_288_000,
                    leader,
                    raft_index: 1000,
                    raft_term: 2,
                    raft_applied_index: 1000,
                    errors: Vec::new(),
                    is_learner: false,
                    member_id: member_id(self.node.ip),
                    storage_version: storage.into(),
                }),
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

/// The default etcd (protocol, storage) version a Talos release runs (`DefaultEtcdVersion`).
fn etcd_version(talos: &str) -> (&'static str, &'static str) {
    match crate::hooks::semver(talos) {
        Some((1, 9, p)) => (
            match p {
                0..=2 => "3.5.17",
                3 | 4 => "3.5.18",
                5 => "3.5.19",
                _ => "3.5.21",
            },
            "3.5.0",
        ),
        Some((1, 10, p)) if p >= 9 => ("3.5.26", "3.5.0"),
        Some((1, 10, _)) => ("3.5.21", "3.5.0"),
        Some((1, 11, 0)) => ("3.6.4", "3.6.0"),
        Some((1, 11, _)) => ("3.6.5", "3.6.0"),
        Some((1, 12, _)) => ("3.6.7", "3.6.0"),
        _ => ("3.6.5", "3.6.0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
