//! [`TalosClient`]: the machine API calls hk8s makes.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use crate::archive::extract_kubeconfig;
use crate::connect::TlsConnector;
use crate::error::TalosError;
use crate::proto::{common, cosi, machine, storage};
use crate::tls::{TalosCredentials, maintenance_config, secure_config};
use crate::types::{
    ApplyMode, ApplyResult, BootstrapOutcome, DiskInfo, EtcdMember, Extension, NodeEvent,
    NodeEventKind, NodeVersion, ServiceStatus, UpgradeAck, UpgradeOptions,
};

/// The extension the Image Factory adds to every image it builds: its version is the
/// schematic ID.
pub const SCHEMATIC_EXTENSION: &str = "schematic";

/// The Talos API port (apid).
pub const TALOS_API_PORT: u16 = 50000;

/// Largest response message accepted (talosctl's client limit).
const MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;

/// Timeouts of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// Bound on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Deadline of each RPC (for `Kubeconfig`, of the whole stream).
    pub call_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(60),
        }
    }
}

/// Which TLS mode a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    /// TLS without server verification and without client certificate.
    Maintenance,
    /// Mutual TLS with the talosconfig credentials.
    Secure,
}

/// A connection to one Talos node's API (`<ip>:50000`). Cheap to clone.
#[derive(Clone)]
pub struct TalosClient {
    channel: Channel,
    addr: SocketAddr,
    mode: ClientMode,
    node: Option<String>,
    call_timeout: Duration,
}

impl fmt::Debug for TalosClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TalosClient")
            .field("addr", &self.addr)
            .field("mode", &self.mode)
            .field("node", &self.node)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

trait NodeMessage {
    fn metadata(&self) -> Option<&common::Metadata>;
}

macro_rules! node_message {
    ($($ty:ty),*) => {$(
        impl NodeMessage for $ty {
            fn metadata(&self) -> Option<&common::Metadata> {
                self.metadata.as_ref()
            }
        }
    )*};
}

node_message!(
    machine::ApplyConfiguration,
    machine::Bootstrap,
    machine::Version,
    machine::Upgrade,
    machine::Reboot,
    machine::ServiceList,
    machine::EtcdMembers,
    machine::Event,
    storage::Disks,
    common::Data
);

/// Fails with [`TalosError::NodeError`] when apid embedded a per-node error in the message.
fn check_metadata<M: NodeMessage>(rpc: &'static str, message: &M) -> Result<(), TalosError> {
    match message.metadata() {
        Some(meta) if !meta.error.is_empty() => Err(TalosError::NodeError {
            rpc,
            hostname: meta.hostname.clone(),
            message: meta.error.clone(),
            code: meta.status.as_ref().map(|s| Code::from_i32(s.code)),
        }),
        _ => Ok(()),
    }
}

fn first<M: NodeMessage>(rpc: &'static str, messages: Vec<M>) -> Result<M, TalosError> {
    let message = messages
        .into_iter()
        .next()
        .ok_or(TalosError::EmptyResponse { rpc })?;
    check_metadata(rpc, &message)?;
    Ok(message)
}

impl TalosClient {
    /// Connects to a node in maintenance mode (ApplyConfiguration and storage Disks only).
    pub async fn maintenance(addr: SocketAddr) -> Result<Self, TalosError> {
        Self::maintenance_with(addr, ClientOptions::default(), None).await
    }

    /// Connects in maintenance mode with explicit timeouts and an optional SHA-256 pin of the
    /// server's SubjectPublicKeyInfo.
    pub async fn maintenance_with(
        addr: SocketAddr,
        options: ClientOptions,
        spki_sha256: Option<[u8; 32]>,
    ) -> Result<Self, TalosError> {
        let config = maintenance_config(spki_sha256)?;
        Self::connect(addr, config, options, ClientMode::Maintenance).await
    }

    /// Connects with mutual TLS using the talosconfig credentials; the server certificate must
    /// chain to `credentials.ca_pem` and carry `addr`'s IP as an IP SAN.
    pub async fn secure(
        addr: SocketAddr,
        credentials: &TalosCredentials,
    ) -> Result<Self, TalosError> {
        Self::secure_with(addr, credentials, ClientOptions::default()).await
    }

    /// [`TalosClient::secure`] with explicit timeouts.
    pub async fn secure_with(
        addr: SocketAddr,
        credentials: &TalosCredentials,
        options: ClientOptions,
    ) -> Result<Self, TalosError> {
        let config = secure_config(credentials)?;
        Self::connect(addr, config, options, ClientMode::Secure).await
    }

    async fn connect(
        addr: SocketAddr,
        config: rustls::ClientConfig,
        options: ClientOptions,
        mode: ClientMode,
    ) -> Result<Self, TalosError> {
        // The scheme is http because TLS is done by our connector, not by tonic.
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|source| TalosError::Connect { addr, source })?
            .connect_timeout(options.connect_timeout);
        let channel = endpoint
            .connect_with_connector(TlsConnector::new(addr, config))
            .await
            .map_err(|source| TalosError::Connect { addr, source })?;
        Ok(Self {
            channel,
            addr,
            mode,
            node: None,
            call_timeout: options.call_timeout,
        })
    }

    /// Targets `node` through apid's one-to-one proxying (gRPC metadata `node`).
    pub fn with_node(mut self, node: impl fmt::Display) -> Self {
        self.node = Some(node.to_string());
        self
    }

    /// The address this client dials.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS mode of this client.
    pub fn mode(&self) -> ClientMode {
        self.mode
    }

    fn request<M>(&self, message: M) -> Result<tonic::Request<M>, TalosError> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.call_timeout);
        if let Some(node) = &self.node {
            let value = MetadataValue::try_from(node.as_str())
                .map_err(|_| TalosError::InvalidNode { node: node.clone() })?;
            request.metadata_mut().insert("node", value);
        }
        Ok(request)
    }

    async fn unary<Req, Resp>(
        &self,
        rpc: &'static str,
        path: &'static str,
        message: Req,
    ) -> Result<Resp, TalosError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let request = self.request(message)?;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        let call = async move {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("talos api not ready: {e}")))?;
            grpc.unary(
                request,
                PathAndQuery::from_static(path),
                ProstCodec::<Req, Resp>::default(),
            )
            .await
        };
        match tokio::time::timeout(self.call_timeout, call).await {
            Err(_) => Err(TalosError::Timeout {
                rpc,
                timeout: self.call_timeout,
            }),
            Ok(Err(status)) => Err(TalosError::Rpc { rpc, status }),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    /// `machine.MachineService/ApplyConfiguration`. The config bytes never appear in errors or logs.
    pub async fn apply_configuration(
        &self,
        config: &[u8],
        mode: ApplyMode,
    ) -> Result<ApplyResult, TalosError> {
        self.apply_configuration_request(config, mode, false).await
    }

    /// `ApplyConfiguration` with `dry_run` set: validates and reports, changes nothing.
    pub async fn apply_configuration_dry_run(
        &self,
        config: &[u8],
        mode: ApplyMode,
    ) -> Result<ApplyResult, TalosError> {
        self.apply_configuration_request(config, mode, true).await
    }

    async fn apply_configuration_request(
        &self,
        config: &[u8],
        mode: ApplyMode,
        dry_run: bool,
    ) -> Result<ApplyResult, TalosError> {
        const RPC: &str = "ApplyConfiguration";
        let request = machine::ApplyConfigurationRequest {
            data: config.to_vec(),
            mode: mode.as_i32(),
            dry_run,
            try_mode_timeout: None,
        };
        let response: machine::ApplyConfigurationResponse = self
            .unary(RPC, "/machine.MachineService/ApplyConfiguration", request)
            .await?;
        let message = first(RPC, response.messages)?;
        Ok(ApplyResult {
            warnings: message.warnings,
            mode: ApplyMode::from_i32(message.mode),
            mode_details: message.mode_details,
        })
    }

    /// `storage.StorageService/Disks`; works in maintenance and secure mode.
    pub async fn disks(&self) -> Result<Vec<DiskInfo>, TalosError> {
        const RPC: &str = "Disks";
        let response: storage::DisksResponse = self
            .unary(RPC, "/storage.StorageService/Disks", common::Empty {})
            .await?;
        let message = first(RPC, response.messages)?;
        Ok(message
            .disks
            .into_iter()
            .map(|d| DiskInfo {
                device_name: d.device_name,
                size: d.size,
                model: d.model,
                serial: d.serial,
                wwid: d.wwid,
                disk_type: d.r#type,
                system_disk: d.system_disk,
                readonly: d.readonly,
            })
            .collect())
    }

    /// `machine.MachineService/Bootstrap`; `AlreadyExists` is reported as
    /// [`BootstrapOutcome::AlreadyBootstrapped`].
    pub async fn bootstrap(&self) -> Result<BootstrapOutcome, TalosError> {
        const RPC: &str = "Bootstrap";
        let result: Result<machine::BootstrapResponse, _> = self
            .unary(
                RPC,
                "/machine.MachineService/Bootstrap",
                machine::BootstrapRequest::default(),
            )
            .await;
        match result {
            Ok(response) => {
                if let Some(message) = response.messages.first()
                    && let Err(err) = check_metadata(RPC, message)
                {
                    return already_exists(err);
                }
                Ok(BootstrapOutcome::Bootstrapped)
            }
            Err(err) => already_exists(err),
        }
    }

    /// `machine.MachineService/Kubeconfig`: collects the `common.Data` stream, gunzips and untars
    /// it and returns the `kubeconfig` file. The per-call deadline bounds the whole stream.
    pub async fn kubeconfig(&self) -> Result<Vec<u8>, TalosError> {
        let archive = self
            .data_stream(
                "Kubeconfig",
                "/machine.MachineService/Kubeconfig",
                common::Empty {},
            )
            .await?;
        extract_kubeconfig(&archive)
    }

    /// `machine.MachineService/Version`.
    pub async fn version(&self) -> Result<NodeVersion, TalosError> {
        const RPC: &str = "Version";
        let response: machine::VersionResponse = self
            .unary(RPC, "/machine.MachineService/Version", common::Empty {})
            .await?;
        let message = first(RPC, response.messages)?;
        let version = message.version.unwrap_or_default();
        let platform = message.platform.unwrap_or_default();
        Ok(NodeVersion {
            tag: version.tag,
            sha: version.sha,
            built: version.built,
            go_version: version.go_version,
            os: version.os,
            arch: version.arch,
            platform_name: platform.name,
            platform_mode: platform.mode,
        })
    }

    /// `machine.MachineService/ServiceList`.
    pub async fn service_list(&self) -> Result<Vec<ServiceStatus>, TalosError> {
        const RPC: &str = "ServiceList";
        let response: machine::ServiceListResponse = self
            .unary(RPC, "/machine.MachineService/ServiceList", common::Empty {})
            .await?;
        let message = first(RPC, response.messages)?;
        Ok(message
            .services
            .into_iter()
            .map(|s| {
                let health = s.health.unwrap_or_default();
                ServiceStatus {
                    id: s.id,
                    state: s.state,
                    healthy: health.healthy,
                    health_unknown: health.unknown,
                    last_message: health.last_message,
                }
            })
            .collect())
    }

    /// `machine.MachineService/EtcdMemberList` (control planes only).
    pub async fn etcd_member_list(&self) -> Result<Vec<EtcdMember>, TalosError> {
        const RPC: &str = "EtcdMemberList";
        let response: machine::EtcdMemberListResponse = self
            .unary(
                RPC,
                "/machine.MachineService/EtcdMemberList",
                machine::EtcdMemberListRequest { query_local: false },
            )
            .await?;
        let message = first(RPC, response.messages)?;
        Ok(message
            .members
            .into_iter()
            .map(|m| EtcdMember {
                id: m.id,
                hostname: m.hostname,
                peer_urls: m.peer_urls,
                client_urls: m.client_urls,
                is_learner: m.is_learner,
            })
            .collect())
    }

    /// `machine.MachineService/Upgrade` (reboot mode DEFAULT). The node replies once the image is
    /// accepted and then upgrades and reboots; poll [`TalosClient::version`] for the new tag.
    pub async fn upgrade(&self, options: &UpgradeOptions) -> Result<UpgradeAck, TalosError> {
        const RPC: &str = "Upgrade";
        let request = machine::UpgradeRequest {
            image: options.image.clone(),
            preserve: options.preserve,
            stage: options.stage,
            force: options.force,
            reboot_mode: i32::from(options.powercycle),
        };
        let response: machine::UpgradeResponse = self
            .unary(RPC, "/machine.MachineService/Upgrade", request)
            .await?;
        let message = first(RPC, response.messages)?;
        Ok(UpgradeAck {
            ack: message.ack,
            actor_id: message.actor_id,
        })
    }

    /// `machine.MachineService/Read` of `path`: the file's bytes (admin only).
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, TalosError> {
        let request = machine::ReadRequest {
            path: path.to_owned(),
        };
        self.data_stream("Read", "/machine.MachineService/Read", request)
            .await
    }

    /// A server-streaming RPC answering `common.Data` chunks: their bytes, concatenated, after
    /// each chunk's metadata was checked. The per-call deadline bounds the whole stream.
    async fn data_stream<Req>(
        &self,
        rpc: &'static str,
        path: &'static str,
        message: Req,
    ) -> Result<Vec<u8>, TalosError>
    where
        Req: prost::Message + Send + Sync + 'static,
    {
        let chunks: Vec<common::Data> = self.collect_stream(rpc, path, message).await?;
        let mut bytes = Vec::new();
        for chunk in &chunks {
            check_metadata(rpc, chunk)?;
            bytes.extend_from_slice(&chunk.bytes);
        }
        Ok(bytes)
    }

    /// A server-streaming RPC read to its end; the per-call deadline bounds the whole stream.
    async fn collect_stream<Req, Resp>(
        &self,
        rpc: &'static str,
        path: &'static str,
        message: Req,
    ) -> Result<Vec<Resp>, TalosError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let request = self.request(message)?;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        let call = async move {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("talos api not ready: {e}")))?;
            let mut stream = grpc
                .server_streaming(
                    request,
                    PathAndQuery::from_static(path),
                    ProstCodec::<Req, Resp>::default(),
                )
                .await?
                .into_inner();
            let mut items = Vec::new();
            while let Some(item) = stream.message().await? {
                items.push(item);
            }
            Ok::<_, Status>(items)
        };
        match tokio::time::timeout(self.call_timeout, call).await {
            Err(_) => Err(TalosError::Timeout {
                rpc,
                timeout: self.call_timeout,
            }),
            Ok(Err(status)) => Err(TalosError::Rpc { rpc, status }),
            Ok(Ok(items)) => Ok(items),
        }
    }

    /// `cosi.resource.State/List` of `namespace`/`resource_type`: each resource's ID and
    /// YAML spec.
    pub async fn list_resources(
        &self,
        namespace: &str,
        resource_type: &str,
    ) -> Result<Vec<(String, String)>, TalosError> {
        let request = cosi::ListRequest {
            namespace: namespace.to_owned(),
            r#type: resource_type.to_owned(),
        };
        let items: Vec<cosi::ListResponse> = self
            .collect_stream("List", "/cosi.resource.State/List", request)
            .await?;
        Ok(items
            .into_iter()
            .filter_map(|item| item.resource)
            .map(|r| {
                (
                    r.metadata.map(|m| m.id).unwrap_or_default(),
                    r.spec.map(|s| s.yaml_spec).unwrap_or_default(),
                )
            })
            .collect())
    }

    /// The system extensions the node booted with (`runtime/ExtensionStatuses`), in order.
    pub async fn extensions(&self) -> Result<Vec<Extension>, TalosError> {
        #[derive(serde::Deserialize)]
        struct Layer {
            metadata: Extension,
        }
        let mut out = Vec::new();
        for (id, yaml) in self
            .list_resources("runtime", "ExtensionStatuses.runtime.talos.dev")
            .await?
        {
            let layer: Layer =
                serde_saphyr::from_str(&yaml).map_err(|e| TalosError::ResourceSpec {
                    resource: format!("runtime/ExtensionStatuses.runtime.talos.dev/{id}"),
                    message: e.to_string(),
                })?;
            out.push(layer.metadata);
        }
        Ok(out)
    }

    /// The Image Factory schematic ID the node booted (the version of its `schematic`
    /// extension); `None` for an image not built by the Image Factory.
    pub async fn schematic(&self) -> Result<Option<String>, TalosError> {
        Ok(self
            .extensions()
            .await?
            .into_iter()
            .find(|e| e.name == SCHEMATIC_EXTENSION)
            .map(|e| e.version))
    }

    /// The node's current boot ID (`/proc/sys/kernel/random/boot_id`): it changes at every boot.
    pub async fn boot_id(&self) -> Result<String, TalosError> {
        let bytes = self.read_file("/proc/sys/kernel/random/boot_id").await?;
        Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
    }

    /// `machine.MachineService/Events` with `tail_events=-1`: every event buffered since the
    /// node booted. The stream never ends by itself, so it is read until no event came for
    /// `idle` (or the call deadline passes).
    pub async fn events_since_boot(&self, idle: Duration) -> Result<Vec<NodeEvent>, TalosError> {
        const RPC: &str = "Events";
        let request = self.request(machine::EventsRequest {
            tail_events: -1,
            ..Default::default()
        })?;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        let deadline = tokio::time::Instant::now() + self.call_timeout;
        let call = async move {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("talos api not ready: {e}")))?;
            let mut stream = grpc
                .server_streaming(
                    request,
                    PathAndQuery::from_static("/machine.MachineService/Events"),
                    ProstCodec::<machine::EventsRequest, machine::Event>::default(),
                )
                .await?
                .into_inner();
            let mut events = Vec::new();
            loop {
                let wait =
                    idle.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                match tokio::time::timeout(wait, stream.message()).await {
                    Err(_) | Ok(Ok(None)) => break,
                    Ok(Ok(Some(event))) => events.push(event),
                    Ok(Err(status)) => return Err(status),
                }
            }
            Ok::<_, Status>(events)
        };
        let events = match call.await {
            Err(status) => return Err(TalosError::Rpc { rpc: RPC, status }),
            Ok(events) => events,
        };
        let mut out = Vec::new();
        for event in events {
            check_metadata(RPC, &event)?;
            out.push(decode_event(event));
        }
        Ok(out)
    }

    /// `machine.MachineService/Reboot` (mode DEFAULT); returns the actor id.
    pub async fn reboot(&self) -> Result<String, TalosError> {
        const RPC: &str = "Reboot";
        let response: machine::RebootResponse = self
            .unary(
                RPC,
                "/machine.MachineService/Reboot",
                machine::RebootRequest { mode: 0 },
            )
            .await?;
        Ok(first(RPC, response.messages)?.actor_id)
    }
}

/// `common.Code` LOCKED.
const ERROR_CODE_LOCKED: i32 = 1;

/// The parts of an `Event` hk8s reads.
fn decode_event(event: machine::Event) -> NodeEvent {
    use prost::Message as _;
    let any = event.data.unwrap_or_default();
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let kind = match name {
        "machine.SequenceEvent" => match machine::SequenceEvent::decode(any.value.as_slice()) {
            Ok(e) => NodeEventKind::Sequence {
                sequence: e.sequence,
                action: e.action,
                locked: e
                    .error
                    .as_ref()
                    .is_some_and(|err| err.code == ERROR_CODE_LOCKED),
                error: e.error.map(|err| err.message),
            },
            Err(_) => NodeEventKind::Other {
                type_url: any.type_url,
            },
        },
        "machine.MachineStatusEvent" => {
            match machine::MachineStatusEvent::decode(any.value.as_slice()) {
                Ok(e) => NodeEventKind::MachineStatus {
                    stage: e.stage,
                    ready: e.status.is_some_and(|s| s.ready),
                },
                Err(_) => NodeEventKind::Other {
                    type_url: any.type_url,
                },
            }
        }
        _ => NodeEventKind::Other {
            type_url: any.type_url,
        },
    };
    NodeEvent {
        id: event.id,
        actor_id: event.actor_id,
        kind,
    }
}

/// Maps Bootstrap's `AlreadyExists` to success; passes every other error through.
fn already_exists(err: TalosError) -> Result<BootstrapOutcome, TalosError> {
    if err.code() == Some(Code::AlreadyExists) {
        Ok(BootstrapOutcome::AlreadyBootstrapped)
    } else {
        Err(err)
    }
}
