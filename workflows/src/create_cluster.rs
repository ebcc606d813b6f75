//! `create-cluster`: from a validated spec to a cluster's infrastructure on Hetzner.
//!
//! The body reads top to bottom like the steps it journals: where the secrets bundle comes from
//! (its keys generated in the background) → Talos images (found by labels, or
//! built with build-image's steps) → network, firewalls, placement groups (concurrently) → load
//! balancer and servers (concurrently) → the bundle stored, the network labelled with its
//! fingerprint → per node, with no barrier across nodes: config applied
//! → installed → secure API; the first control plane bootstraps as soon as it is up, then etcd,
//! kubeconfig and the addons → every node Ready. Every step is an idempotent `ensure_*`
//! activity, so a resumed run re-runs only the step that was interrupted, and that one adopts
//! what it finds by name and labels.
//!
//! The cloud, the bundle and the nodes are three concurrent branches: the cloud branch
//! publishes each resource as soon as it exists ([`Slot`]), so a node's config is applied as
//! soon as *its* server, the load balancer and the bundle exist, not once every server does.
//! A resumed run publishes only after its journaled resources were checked against the labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::try_join_all;
use hk8s_hetzner::{
    ClusterResources, FirewallInfo, FirewallSpec, Hetzner, ImageInfo, LoadBalancerInfo,
    LoadBalancerSpec, NetworkInfo, NetworkSpec, PlacementGroupInfo, PlacementGroupSpec,
    ResourceSummary, ServerInfo, ServerListing, ServerSpec,
};
use hk8s_kube::HcloudToken;
use hk8s_runtime::{Ctx, Workflow, WorkflowError};
use hk8s_talos::TalosCredentials;
use hk8s_talos_config::SecretsBundle;
use serde::{Deserialize, Serialize};

use crate::activity::{hetzner_error, hetzner_step};
use crate::build_image::{Builder, DEFAULT_SSH_PORT, ImageBuild};
use crate::cloud::CloudTarget;
pub use crate::infra::ClusterInfra;
use crate::kube::{self, KubeSummary};
use crate::plan::NodePlan;
use crate::policies::Policies;
use crate::slot::Slot;
use crate::spec::{Arch, ClusterSpec, Role};
use crate::talos::{self, TalosFiles, TalosNode};

/// How many ensure passes `create-cluster` makes at most: the first, plus one for each time it
/// finds resources deleted while the run was stopped.
const MAX_ENSURE_PASSES: usize = 3;

/// Longest step-key suffix of a repeated ensure pass (see [`pass_suffix`]).
const MAX_PASS_SUFFIX_LEN: usize = 60;

pub use crate::spec::API_LOAD_BALANCER_TYPE;

/// The journaled input of a `create-cluster` run (no secrets: the token comes from the
/// environment on every start and resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateClusterInput {
    /// The validated cluster spec.
    pub spec: ClusterSpec,
    /// Which Hetzner API the run talks to.
    pub cloud: CloudTarget,
    /// An existing secrets bundle to import (`--secrets FILE`).
    pub secrets_import: Option<PathBuf>,
    /// Run the storage smoke test (a volume claim binds, then is removed) at the end.
    #[serde(default)]
    pub verify: bool,
    /// The image factory a missing snapshot is built from (`HK8S_IMAGE_FACTORY`); the spec's
    /// `imageBuilder.factory` when absent.
    #[serde(default)]
    pub image_factory: Option<String>,
    /// The rescue system's SSH port for image builds.
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
}

fn default_ssh_port() -> u16 {
    DEFAULT_SSH_PORT
}

/// What a successful `create-cluster` produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCreated {
    /// The cloud resources.
    pub infra: ClusterInfra,
    /// The Talos cluster's files.
    pub talos: TalosFiles,
    /// The Kubernetes addons and nodes.
    pub kube: KubeSummary,
}

/// The `create-cluster` workflow.
pub struct CreateCluster {
    hetzner: Arc<Hetzner>,
    cluster_dir: PathBuf,
    hcloud_token: HcloudToken,
    builder: Builder,
    policies: Policies,
}

impl CreateCluster {
    /// The workflow over a Hetzner client, with the default retry policies. `hcloud_token` goes
    /// into the cluster's `hcloud` secret for the CCM and CSI driver (never into the journal);
    /// `builder` builds the Talos snapshots that are missing. `cluster_dir` is this machine's
    /// state folder of the cluster (secrets bundle, talosconfig, kubeconfig, all 0600): a local
    /// path, so never journaled; a run resumed on another machine uses that machine's folder.
    pub fn new(
        hetzner: Arc<Hetzner>,
        hcloud_token: HcloudToken,
        builder: Builder,
        cluster_dir: PathBuf,
    ) -> Self {
        CreateCluster {
            hetzner,
            cluster_dir,
            hcloud_token,
            builder,
            policies: Policies::default(),
        }
    }

    /// Replaces the retry policies of the cloud steps and of the steps that wait for machines
    /// (the image builder's too).
    #[must_use]
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.builder = self.builder.with_policies(policies.clone());
        self.policies = policies;
        self
    }
}

impl Workflow for CreateCluster {
    const NAME: &'static str = "create-cluster";
    // 6: the cluster's state folder left the input (a local path; see `CreateCluster::new`).
    // 7: the secrets bundle is stored after the servers exist (`talos/secrets-source` first),
    //    and the network is labelled with its fingerprint by its own step.
    // 8: no barrier at the servers: `server/<name>` ends when the create is answered and
    //    `server/<name>/started` waits for the start actions while the node's Talos steps go
    //    on; the bundle is stored once the network exists, beside the servers.
    // 9: `firewall/<role>` ends when the create is answered (servers need only its id) and
    //    `firewall/<role>/applied` waits for its rules; the addons go in before etcd has every
    //    control plane.
    const VERSION: u32 = 9;
    type Input = CreateClusterInput;
    type Output = ClusterCreated;

    async fn run(
        &self,
        ctx: &Ctx,
        input: CreateClusterInput,
    ) -> Result<ClusterCreated, WorkflowError> {
        let spec = &input.spec;
        let hetzner = &*self.hetzner;
        let dir = self.cluster_dir.as_path();

        // 1. Where the secrets bundle comes from, decided once per cluster before any server
        //    exists; a new bundle's keys are generated while the cloud is made.
        let servers_exist = || async {
            hetzner
                .cluster_has_servers(&spec.cluster_name)
                .await
                .map_err(hetzner_error)
        };
        // Also asked outside the step, on every resume: a busy or dropped answer is waited
        // out there as inside it, instead of failing the run.
        let cloud_fingerprint = || async {
            crate::policies::retry_transient(|| {
                hetzner.cluster_secrets_fingerprint(&spec.cluster_name)
            })
            .await
            .map_err(hetzner_error)
        };
        let secrets = talos::plan_secrets(
            ctx,
            &self.policies.cloud,
            spec,
            dir,
            input.secrets_import.as_deref(),
            cloud_fingerprint,
            servers_exist,
        )
        .await?;

        // 2. A Talos snapshot per architecture: found by labels, or built (build-image's steps).
        let build = ImageBuild::from_spec(
            spec,
            spec.arches().into_iter().collect(),
            input.image_factory.clone(),
            input.ssh_port,
            false,
        );
        let images = self.builder.ensure_images(ctx, &build).await?;

        // 3. The cloud: network, firewalls, placement groups, load balancer, servers, each
        //    published as soon as it exists.
        let plan = spec.node_plan();
        let made = Made::new(plan.len());
        let cloud = self.ensure_infra(ctx, spec, &images, &made);

        // 4. The bundle, stored once the network exists; the network labelled with its
        //    fingerprint (the cluster's identity in Hetzner) before any configuration is made
        //    from it.
        let bundle = Slot::new();
        let store_bundle = async {
            let (_, pass) = made.network.get().await;
            let stored = talos::ensure_secrets(
                ctx,
                &self.policies.cloud,
                spec,
                dir,
                input.secrets_import.as_deref(),
                secrets,
                cloud_fingerprint,
            )
            .await?;
            let labelled = network_spec(spec, Some(talos::secrets_fingerprint(&stored)));
            // A network made again by a repeated pass is labelled again: the key ends as its pass.
            let key = format!("network/secrets-fingerprint{pass}");
            hetzner_step(ctx, &self.policies.cloud, &key, &labelled, || {
                hetzner.ensure_network(&labelled)
            })
            .await?;
            bundle.set(Arc::new(stored));
            Ok::<_, WorkflowError>(())
        };

        // 5. Talos and Kubernetes, each node on its own: config applied in maintenance mode →
        //    installed and rebooted → its secure API answers. The first control plane does not
        //    wait for the others: it bootstraps etcd as soon as it is up, and the kubeconfig,
        //    the hcloud secret and the addons follow at once while etcd gains its members.
        // 6. Then every node Ready and the addons ready (and the storage smoke test).
        let nodes = self.form_cluster(ctx, spec, dir, &plan, &made, &bundle, input.verify);

        let ((infra, _), (), (talos, kube)) = futures::try_join!(cloud, store_bundle, nodes)?;
        Ok(ClusterCreated { infra, talos, kube })
    }
}

/// What the cloud branch of `create-cluster` has made, each published as soon as it exists.
struct Made {
    /// The network, and the step-key suffix of the ensure pass that made it.
    network: Slot<(NetworkInfo, String)>,
    /// The API load balancer.
    load_balancer: Slot<LoadBalancerInfo>,
    /// The servers, in plan order: as their create was answered, then as they run.
    servers: Vec<Slot<ServerInfo>>,
    /// Both firewalls' rules are in force.
    firewalls_applied: Slot<()>,
    /// Everything, every server started.
    infra: Slot<ClusterInfra>,
}

impl Made {
    fn new(servers: usize) -> Self {
        Made {
            network: Slot::new(),
            load_balancer: Slot::new(),
            servers: (0..servers).map(|_| Slot::new()).collect(),
            firewalls_applied: Slot::new(),
            infra: Slot::new(),
        }
    }

    /// Publishes everything `infra` holds (a resumed run, once the labels confirmed it).
    fn publish(&self, infra: &ClusterInfra, pass: &str) {
        self.network.set((infra.network.clone(), pass.to_string()));
        self.load_balancer.set(infra.load_balancer.clone());
        for (slot, server) in self.servers.iter().zip(&infra.servers) {
            slot.set(server.clone());
        }
        self.firewalls_applied.set(());
        self.infra.set(infra.clone());
    }

    /// Every server, once each exists.
    async fn all_servers(&self) -> Vec<ServerInfo> {
        futures::future::join_all(self.servers.iter().map(Slot::get)).await
    }
}

/// The cluster's network as the spec wants it, with the bundle's `secrets_fingerprint` label
/// once there is one.
fn network_spec(spec: &ClusterSpec, secrets_fingerprint: Option<String>) -> NetworkSpec {
    NetworkSpec {
        cluster: spec.cluster_name.clone(),
        ip_range: spec.network.cidr,
        subnet_range: spec.network.subnet,
        network_zone: spec.hetzner.network_zone.clone(),
        secrets_fingerprint,
    }
}

/// The step-key suffix of a repeated ensure pass: `@redo-<missing ids joined by ->`, cut to
/// [`MAX_PASS_SUFFIX_LEN`] bytes.
///
/// The keys must change because the journal replays a finished step's recorded result by its
/// key: a pass that has to look at Hetzner again needs keys that have no result yet. The
/// spelling is stored in journals, so it must stay exactly this for old runs to resume.
fn pass_suffix(missing: &[i64]) -> String {
    let mut suffix = format!(
        "@redo-{}",
        missing
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join("-")
    );
    suffix.truncate(MAX_PASS_SUFFIX_LEN);
    suffix
}

impl CreateCluster {
    /// Ensures every cloud resource; re-ensures what was deleted while the run was stopped.
    /// Returns them and the step-key suffix of the pass that made them (see [`pass_suffix`]).
    ///
    /// Each resource is published in `made` as soon as its step ends on a fresh run; a resumed
    /// run publishes them once they were checked against the labels.
    async fn ensure_infra(
        &self,
        ctx: &Ctx,
        spec: &ClusterSpec,
        images: &BTreeMap<Arch, ImageInfo>,
        made: &Made,
    ) -> Result<(ClusterInfra, String), WorkflowError> {
        let resumed = ctx.finished_before("network");
        let early = (!resumed).then_some(made);
        let mut key_suffix = String::new();
        for _pass in 0..MAX_ENSURE_PASSES {
            let infra = self
                .ensure_all(ctx, spec, images, &key_suffix, early)
                .await?;
            // Results replayed from the journal may describe resources deleted by hand while the
            // run was stopped. Labels are the truth: look, and if anything is gone, ensure
            // everything again under new step keys (what exists is adopted as it is).
            if !resumed {
                made.infra.set(infra.clone());
                return Ok((infra, key_suffix));
            }
            let live = observe(&self.hetzner, &spec.cluster_name).await?;
            let missing = missing_ids(&infra, &live);
            if missing.is_empty() {
                made.publish(&infra, &key_suffix);
                return Ok((infra, key_suffix));
            }
            tracing::warn!(cluster = %spec.cluster_name, ?missing, "resources vanished while the run was stopped; ensuring again");
            key_suffix = pass_suffix(&missing);
        }
        Err(WorkflowError::failed(format!(
            "resources of cluster {} keep disappearing while hk8s creates them; is another tool deleting them?",
            spec.cluster_name
        )))
    }

    /// The Talos and Kubernetes steps (see steps 5 and 6 of [`CreateCluster::run`]); each node
    /// starts as soon as its server, the load balancer and the bundle are in `made` and
    /// `bundle`.
    #[allow(clippy::too_many_arguments)]
    async fn form_cluster(
        &self,
        ctx: &Ctx,
        spec: &ClusterSpec,
        dir: &Path,
        plan: &[NodePlan],
        made: &Made,
        bundle: &Slot<Arc<SecretsBundle>>,
        verify: bool,
    ) -> Result<(TalosFiles, KubeSummary), WorkflowError> {
        let Policies { cloud, wait } = &self.policies;
        let first = plan
            .iter()
            .position(|n| n.role == Role::ControlPlane)
            .ok_or_else(|| WorkflowError::failed("no control plane"))?;
        let control_planes = plan.iter().filter(|n| n.role == Role::ControlPlane).count();
        // The talosconfig names every node, so it is written once every server exists: long
        // before any node has installed Talos and answers on its secure API.
        let creds: Slot<TalosCredentials> = Slot::new();
        let talosconfig = async {
            let nodes = made
                .all_servers()
                .await
                .iter()
                .map(talos_node)
                .collect::<Result<Vec<_>, _>>()?;
            let bundle = bundle.get().await;
            let (_, pass) = made.network.get().await;
            let (path, made_creds) =
                talos::ensure_talosconfig(ctx, cloud, spec, dir, &bundle, &nodes, &pass).await?;
            creds.set(made_creds);
            Ok::<_, WorkflowError>(path)
        };
        let node_up = |i: usize| {
            let creds = &creds;
            async move {
                let node = talos_node(&made.servers[i].get().await)?;
                let endpoint_ip = made.load_balancer.get().await.public_ipv4.ok_or_else(|| {
                    WorkflowError::failed("the API load balancer has no public IPv4")
                })?;
                let bundle = bundle.get().await;
                let config = talos::machine_config(spec, &bundle, &node, endpoint_ip)?;
                // Nothing goes to a node's maintenance API before its firewall's rules hold
                // (set within seconds; a server boots in tens of them).
                made.firewalls_applied.get().await;
                talos::apply_config(ctx, wait, &node, &config, creds).await?;
                let creds = creds.get().await;
                talos::wait_secure(ctx, wait, &node, &creds).await?;
                Ok::<_, WorkflowError>((node, creds))
            }
        };
        // The first control plane's chain, up to the addons. They go in as soon as its API
        // answers, while the other control planes join etcd: the CNI and the CCM then run
        // when the last nodes register (the CCM needs a Ready node, a CNI pod ~10 s), instead
        // of starting after them.
        let first_chain = async {
            let (node, creds) = node_up(first).await?;
            talos::bootstrap(ctx, wait, &node, &creds).await?;
            let etcd = talos::wait_etcd(ctx, wait, &node, &creds, control_planes);
            let addons = async {
                let kubeconfig = talos::fetch_kubeconfig(ctx, wait, &node, &creds, dir).await?;
                let (network, _) = made.network.get().await;
                kube::apply_hcloud_secret(ctx, cloud, &kubeconfig, &self.hcloud_token, network.id)
                    .await?;
                let applied = kube::apply_addons(ctx, cloud, spec, &kubeconfig).await?;
                Ok::<_, WorkflowError>((kubeconfig, applied))
            };
            let (_, (kubeconfig, applied)) = futures::try_join!(etcd, addons)?;
            Ok::<_, WorkflowError>((node.name, kubeconfig, applied))
        };
        let other_nodes = try_join_all((0..plan.len()).filter(|&i| i != first).map(node_up));
        let (talosconfig, (bootstrap_node, kubeconfig, applied), _) =
            futures::try_join!(talosconfig, first_chain, other_nodes)?;

        // Nodes and addons become ready together (the addons' pods need Ready nodes); the
        // nodes' identities (private IPs) are the started servers'.
        let servers = made.infra.get().await.servers;
        let ((ready_nodes, approved_csrs), ()) = futures::try_join!(
            kube::wait_nodes_ready(ctx, wait, &servers, &kubeconfig),
            kube::wait_addons_ready(ctx, wait, spec, &kubeconfig),
        )?;
        if verify {
            kube::verify_volume(ctx, wait, &kubeconfig).await?;
        }
        Ok((
            TalosFiles {
                talosconfig,
                kubeconfig,
                bootstrap_node,
            },
            KubeSummary {
                applied,
                ready_nodes,
                approved_csrs,
            },
        ))
    }

    /// Ensures every resource once; `key_suffix` ends the step keys of a repeated pass
    /// (empty on the first, see [`pass_suffix`]). Publishes each resource in `made` as soon
    /// as it exists, when given.
    async fn ensure_all(
        &self,
        ctx: &Ctx,
        spec: &ClusterSpec,
        images: &BTreeMap<Arch, ImageInfo>,
        key_suffix: &str,
        made: Option<&Made>,
    ) -> Result<ClusterInfra, WorkflowError> {
        let cluster = spec.cluster_name.as_str();
        let hetzner = &*self.hetzner;
        let policy = &self.policies.cloud;
        let plan = spec.node_plan();

        // 1. Network, firewalls and placement groups, concurrently.
        // Labelled with the secrets fingerprint later, once the bundle exists (step 4 of
        // [`CreateCluster::run`]).
        let network_spec = network_spec(spec, None);
        let network_key = format!("network{key_suffix}");
        let network = hetzner_step(ctx, policy, &network_key, &network_spec, || {
            hetzner.ensure_network(&network_spec)
        });
        let firewalls = try_join_all([Role::ControlPlane, Role::Worker].into_iter().map(|role| {
            let firewall = FirewallSpec {
                cluster: cluster.to_string(),
                role: role.into(),
                private_cidr: spec.network.cidr,
                admin_cidrs: spec
                    .firewall
                    .admin_cidrs
                    .iter()
                    .copied()
                    .map(Into::into)
                    .collect(),
            };
            async move {
                let key = format!(
                    "firewall/{}{key_suffix}",
                    hk8s_hetzner::Role::from(role).label_value()
                );
                // The id is what a server create needs; the rules are set beside them.
                hetzner_step(ctx, policy, &key, &firewall, || {
                    hetzner.request_firewall(&firewall)
                })
                .await
            }
        }));
        let placement_groups = try_join_all(placement_specs(spec, &plan).into_iter().map(
            |group| async move {
                let key = format!("placement-group/{}{key_suffix}", group.name());
                let info = hetzner_step(ctx, policy, &key, &group, || {
                    hetzner.ensure_placement_group(&group)
                })
                .await?;
                Ok::<_, WorkflowError>((group.group.clone(), group.index, info))
            },
        ));
        let (network, requested_firewalls, placement_groups) =
            futures::try_join!(network, firewalls, placement_groups)?;
        let firewalls: Vec<FirewallInfo> = requested_firewalls
            .iter()
            .map(|r| r.firewall.clone())
            .collect();
        if let Some(made) = made {
            made.network.set((network.clone(), key_suffix.to_string()));
        }

        // 2. The load balancer on the network and, at the same time (servers do not need it),
        //    the servers, concurrently, looked up in one labelled listing (not one lookup each).
        let load_balancer_spec = LoadBalancerSpec {
            cluster: cluster.to_string(),
            lb_type: API_LOAD_BALANCER_TYPE.to_string(),
            location: Some(spec.hetzner.region.clone()),
            network_zone: None,
            network_id: network.id,
            private_ip: None,
            public_interface: true,
        };
        let load_balancer_key = format!("load-balancer{key_suffix}");
        let load_balancer = async {
            let load_balancer =
                hetzner_step(ctx, policy, &load_balancer_key, &load_balancer_spec, || {
                    hetzner.ensure_load_balancer(&load_balancer_spec)
                })
                .await?;
            if let Some(made) = made {
                made.load_balancer.set(load_balancer.clone());
            }
            Ok::<_, WorkflowError>(load_balancer)
        };
        let server_key = |node: &NodePlan| format!("server/{}{key_suffix}", node.name);
        let listing = if plan.iter().all(|n| ctx.finished_before(&server_key(n))) {
            ServerListing::default()
        } else {
            crate::policies::retry_transient(|| hetzner.list_cluster_servers(cluster))
                .await
                .map_err(hetzner_error)?
        };
        let servers = try_join_all(plan.iter().enumerate().map(|(i, node)| {
            let server = server_spec(spec, node, images, &network, &firewalls, &placement_groups);
            let listing = &listing;
            async move {
                let server = server?;
                // Published once the create is answered: the node's Talos steps talk to its
                // OS, which answers once the server has started, while this waits for the
                // start actions (confirming them, or failing the run with their error).
                let requested = hetzner_step(ctx, policy, &server_key(node), &server, || {
                    hetzner.request_listed_server(&server, listing)
                })
                .await?;
                let slot = made.and_then(|m| m.servers.get(i));
                if let Some(slot) = slot {
                    slot.set(requested.server.clone());
                }
                let key = format!("server/{}/started{key_suffix}", node.name);
                let started = hetzner_step(ctx, policy, &key, &requested, || {
                    hetzner.wait_server_started(&requested, &server)
                })
                .await?;
                if let Some(slot) = slot {
                    slot.set(started.clone());
                }
                Ok::<_, WorkflowError>(started)
            }
        }));
        let firewalls_applied = async {
            let applied = try_join_all(requested_firewalls.iter().map(|requested| async move {
                let key = format!(
                    "firewall/{}/applied{key_suffix}",
                    requested.firewall.role.label_value()
                );
                hetzner_step(ctx, policy, &key, requested, || {
                    hetzner.wait_firewall_applied(requested)
                })
                .await
            }))
            .await?;
            if let Some(made) = made {
                made.firewalls_applied.set(());
            }
            Ok::<_, WorkflowError>(applied)
        };
        let (load_balancer, servers, firewalls) =
            futures::try_join!(load_balancer, servers, firewalls_applied)?;

        Ok(ClusterInfra {
            cluster: cluster.to_string(),
            network,
            firewalls,
            load_balancer,
            placement_groups: placement_groups
                .into_iter()
                .map(|(_, _, group)| group)
                .collect(),
            servers,
        })
    }
}

/// The placement groups the plan needs: one spread group per 10 servers of each pool.
fn placement_specs(spec: &ClusterSpec, plan: &[NodePlan]) -> Vec<PlacementGroupSpec> {
    let mut pools: BTreeMap<(&str, Role), u32> = BTreeMap::new();
    for node in plan {
        *pools.entry((group_name(node), node.role)).or_default() += 1;
    }
    pools
        .into_iter()
        .flat_map(|((group, role), count)| {
            PlacementGroupSpec::for_servers(&spec.cluster_name, role.into(), group, count)
        })
        .collect()
}

/// The placement-group name part of a node's pool: the control planes' short role name
/// (`cp`), or the worker pool's name.
fn group_name(node: &NodePlan) -> &str {
    match node.role {
        Role::ControlPlane => hk8s_hetzner::Role::ControlPlane.short_name(),
        Role::Worker => &node.pool,
    }
}

fn server_spec(
    spec: &ClusterSpec,
    node: &NodePlan,
    images: &BTreeMap<Arch, ImageInfo>,
    network: &NetworkInfo,
    firewalls: &[FirewallInfo],
    placement_groups: &[(String, u32, PlacementGroupInfo)],
) -> Result<ServerSpec, WorkflowError> {
    let role = hk8s_hetzner::Role::from(node.role);
    let image = images.get(&node.arch).ok_or_else(|| {
        WorkflowError::failed(format!("no Talos image resolved for {}", node.arch))
    })?;
    let firewall = firewalls
        .iter()
        .find(|f| f.role == role)
        .ok_or_else(|| WorkflowError::failed(format!("no firewall for role {role}")))?;
    let pg_index = hk8s_hetzner::labels::placement_group_index(node.index);
    let placement_group = placement_groups
        .iter()
        .find(|(group, index, _)| group == group_name(node) && *index == pg_index)
        .map(|(_, _, pg)| pg.id);
    Ok(ServerSpec {
        cluster: spec.cluster_name.clone(),
        name: node.name.clone(),
        role,
        pool: (node.role == Role::Worker).then(|| node.pool.clone()),
        server_type: node.server_type.clone(),
        location: node.location.clone(),
        image_id: image.id,
        network_id: network.id,
        firewall_ids: vec![firewall.id],
        placement_group_id: placement_group,
        ssh_key_ids: Vec::new(),
        labels: Default::default(),
        private_ip: None,
    })
}

/// A server as the Talos steps see it.
fn talos_node(server: &ServerInfo) -> Result<TalosNode, WorkflowError> {
    let public_ip = server.public_ipv4.ok_or_else(|| {
        WorkflowError::failed(format!("server {} has no public IPv4", server.name))
    })?;
    Ok(TalosNode {
        name: server.name.clone(),
        role: server.role.into(),
        public_ip,
    })
}

/// Lists the cluster's labelled resources, retrying transient errors (not journaled: it is an
/// observation of the truth, taken fresh on every execution).
async fn observe(hetzner: &Hetzner, cluster: &str) -> Result<ClusterResources, WorkflowError> {
    crate::policies::retry_transient(|| hetzner.list_cluster_resources(cluster))
        .await
        .map_err(|e| {
            WorkflowError::failed(format!(
                "cannot list the resources of cluster {cluster}: {e}"
            ))
        })
}

/// Ids in `infra` that the live listing does not have.
fn missing_ids(infra: &ClusterInfra, live: &ClusterResources) -> Vec<i64> {
    let has = |list: &[ResourceSummary], id: i64| list.iter().any(|r| r.id == id);
    let mut missing = Vec::new();
    if !has(&live.networks, infra.network.id) {
        missing.push(infra.network.id);
    }
    if !has(&live.load_balancers, infra.load_balancer.id) {
        missing.push(infra.load_balancer.id);
    }
    missing.extend(
        infra
            .firewalls
            .iter()
            .map(|f| f.id)
            .filter(|id| !has(&live.firewalls, *id)),
    );
    missing.extend(
        infra
            .placement_groups
            .iter()
            .map(|group| group.id)
            .filter(|id| !has(&live.placement_groups, *id)),
    );
    missing.extend(
        infra
            .servers
            .iter()
            .map(|s| s.id)
            .filter(|id| !has(&live.servers, *id)),
    );
    missing.sort_unstable();
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::EXAMPLE_YAML;

    #[test]
    fn placement_groups_hold_at_most_ten_servers_per_pool() {
        let yaml = EXAMPLE_YAML.replace("count: 2\n", "count: 23\n");
        let spec = ClusterSpec::from_yaml(&yaml, "t").unwrap();
        let plan = spec.node_plan();
        let names: Vec<_> = placement_specs(&spec, &plan)
            .iter()
            .map(|p| p.name())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(
            names.iter().filter(|n| n.contains("worker")).count() == 3,
            "{names:?}"
        );
    }
}
