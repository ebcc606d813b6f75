//! `hk8s run <workflow>` and `hk8s resume <id>`: build the workflow from the spec and the
//! environment, drive it through the runtime, print the outcome, pick the exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use hk8s_hetzner::{ApiToken, Hetzner, HetznerConfig};
use hk8s_journal::{Journal, RunId, RunStatus};
use hk8s_kube::HcloudToken;
use hk8s_runtime::Secret;
use hk8s_runtime::{
    ResumeOptions, RunOutcome, Runtime, RuntimeError, RuntimeOptions, Scrubber, Workflow,
};
use hk8s_workflows::build_image::DEFAULT_SSH_PORT;
use hk8s_workflows::cluster_lock::Locked;
use hk8s_workflows::preflight::Orders;
use hk8s_workflows::spec::{Arch, EXAMPLE_YAML, check_factory_url};
use hk8s_workflows::upgrade_cluster::RolloutOptions;
use hk8s_workflows::{
    BuildImage, BuildImageInput, Builder, BuiltImages, CloudTarget, ClusterCreated, ClusterSpec,
    CreateCluster, CreateClusterInput, DestroyCluster, DestroyClusterInput, DestroySummary,
    ImageBuild, RunRegistry, UpgradeCluster, UpgradeClusterInput, UpgradeSummary,
};
use serde::Serialize;

use crate::args::{ArchChoice, LogFormat, OutputFormat, RunWorkflow, SpecArgs};
use crate::debug::Timing;
use crate::exit::{self, Failure, usage};
use crate::files::{ClusterFiles, cluster_dir, cluster_files};
use crate::history::open_journal;
use crate::lock::LockEnv;
use crate::progress::{Mode, Progress};
use crate::runner::WorkerSettings;
use crate::sandbox::Sandbox;

/// Every workflow `hk8s run` starts and `hk8s resume` continues: adding a workflow means a
/// variant here (plus its `RunWorkflow` arguments), and nothing else in this file.
#[derive(Clone, Copy, Debug)]
enum Known {
    CreateCluster,
    DestroyCluster,
    BuildImage,
    UpgradeCluster,
}

impl Known {
    /// The workflow of a journaled run, by its stored name.
    fn from_name(name: &str) -> Option<Self> {
        match name {
            CreateCluster::NAME => Some(Self::CreateCluster),
            DestroyCluster::NAME => Some(Self::DestroyCluster),
            BuildImage::NAME => Some(Self::BuildImage),
            UpgradeCluster::NAME => Some(Self::UpgradeCluster),
            _ => None,
        }
    }

    /// Creates the run `workflow` asks for and drives it.
    async fn start(
        workflow: &RunWorkflow,
        session: &Session,
        hetzner: Arc<Hetzner>,
        token: &str,
        spec: ClusterSpec,
        cloud: CloudTarget,
        images: &ImageEnv,
    ) -> Result<ExitCode, Failure> {
        let cluster = spec.cluster_name.clone();
        let cluster_dir = cluster_dir(&cluster)?;
        let timing = session.timing;
        match workflow {
            RunWorkflow::CreateCluster(create) => {
                let wf = create_cluster(session, hetzner.clone(), token, timing, cluster_dir);
                let input = CreateClusterInput {
                    spec,
                    cloud,
                    secrets_import: create.secrets.clone(),
                    verify: create.verify,
                    image_factory: images.factory.clone(),
                    ssh_port: images.ssh_port,
                };
                session
                    .start_or_enqueue(wf, &hetzner, &cluster, &input, workflow.spec_args())
                    .await
            }
            RunWorkflow::BuildImage(args) => {
                let wf = BuildImage::new(builder(session, hetzner.clone(), token, timing));
                let arches = build_arches(args.arch, &spec);
                let input = BuildImageInput {
                    cluster: cluster.clone(),
                    build: ImageBuild::from_spec(
                        &spec,
                        arches,
                        images.factory.clone(),
                        images.ssh_port,
                        args.force,
                    ),
                    cloud,
                };
                session
                    .start_or_enqueue(wf, &hetzner, &cluster, &input, workflow.spec_args())
                    .await
            }
            RunWorkflow::DestroyCluster(_) => {
                let wf = destroy_cluster(session, hetzner.clone(), token, timing, cluster_dir);
                let input = DestroyClusterInput {
                    cluster: cluster.clone(),
                    cloud,
                };
                session
                    .start_or_enqueue(wf, &hetzner, &cluster, &input, workflow.spec_args())
                    .await
            }
            RunWorkflow::UpgradeCluster(args) => {
                let wf = UpgradeCluster::new(
                    hetzner.clone(),
                    builder(session, hetzner.clone(), token, timing),
                    cluster_dir.clone(),
                )
                .with_policies(timing.policies());
                if args.unattended {
                    // Another run on the cluster (create, destroy, upgrade) holds its lock.
                    check_not_held(&hetzner, &cluster).await?;
                    if let Some(run) = session.unfinished_upgrade(&cluster)? {
                        session.progress.println(&format!(
                            "resuming the unfinished upgrade run {run} of cluster {cluster}"
                        ));
                        return session
                            .resume_locked(wf, &hetzner, &cluster, run, false)
                            .await;
                    }
                }
                // Read-only: what the nodes run and the plan from there; a target no path
                // reaches is refused here, before the run exists (exit 2, naming the rule).
                use hk8s_workflows::upgrade_cluster::{PreviewError, preview};
                let preview =
                    preview(&hetzner, &spec, &cluster_dir)
                        .await
                        .map_err(|e| match e {
                            PreviewError::Refused(why) => usage(anyhow!("{why}")),
                            PreviewError::Unreadable(why) => Failure::Other(anyhow!(
                                "cannot read what cluster {cluster} runs: {why}"
                            )),
                        })?;
                let done = args.plan || preview.steps.is_empty();
                match session.output {
                    OutputFormat::Text => println!("{}", preview_text(&cluster, &preview)),
                    OutputFormat::Json if done => println!(
                        "{}",
                        serde_json::json!({"cluster": cluster, "running": preview.running, "plan": preview.steps})
                    ),
                    OutputFormat::Json => {}
                }
                if done {
                    return Ok(ExitCode::SUCCESS);
                }
                let input = UpgradeClusterInput {
                    spec,
                    cloud,
                    rollout: RolloutOptions {
                        concurrency: usize::from(args.concurrency),
                        pause_ms: args.pause.saturating_mul(1000),
                        node_timeout_secs: args.node_timeout,
                        gate_timeout_secs: args.gate_timeout,
                    },
                    image_factory: images.factory.clone(),
                    ssh_port: images.ssh_port,
                };
                session.start_locked(wf, &hetzner, &cluster, &input).await
            }
        }
    }

    /// Drives the journaled run `run` on.
    async fn resume(
        self,
        session: &Session,
        hetzner: Arc<Hetzner>,
        token: &str,
        cluster: &str,
        run: RunId,
        force: bool,
    ) -> Result<ExitCode, Failure> {
        let timing = session.timing;
        let h = &hetzner;
        // This machine's state folder: a run started elsewhere continues with the files here.
        let dir = cluster_dir(cluster)?;
        match self {
            Self::CreateCluster => {
                let wf = create_cluster(session, hetzner.clone(), token, timing, dir);
                session.resume_locked(wf, h, cluster, run, force).await
            }
            Self::DestroyCluster => {
                let wf = destroy_cluster(session, hetzner.clone(), token, timing, dir);
                session.resume_locked(wf, h, cluster, run, force).await
            }
            Self::BuildImage => {
                let wf = BuildImage::new(builder(session, hetzner.clone(), token, timing));
                session.resume_locked(wf, h, cluster, run, force).await
            }
            Self::UpgradeCluster => {
                let wf = UpgradeCluster::new(
                    hetzner.clone(),
                    builder(session, hetzner.clone(), token, timing),
                    dir,
                )
                .with_policies(timing.policies());
                session.resume_locked(wf, h, cluster, run, force).await
            }
        }
    }
}

/// The architectures `build-image` builds: `--arch`, else the spec's own.
fn build_arches(choice: Option<ArchChoice>, spec: &ClusterSpec) -> Vec<Arch> {
    match choice {
        None => spec.arches().into_iter().collect(),
        Some(ArchChoice::X86) => vec![Arch::X86],
        Some(ArchChoice::Arm) => vec![Arch::Arm],
        Some(ArchChoice::All) => vec![Arch::X86, Arch::Arm],
    }
}

/// What a fresh run of `workflow` will order (checked by the preflight); destroy orders nothing.
fn orders(workflow: &RunWorkflow, spec: &ClusterSpec) -> Option<Orders> {
    match workflow {
        RunWorkflow::CreateCluster(_) => Some(Orders::Cluster),
        RunWorkflow::BuildImage(args) => Some(Orders::Images(build_arches(args.arch, spec))),
        RunWorkflow::DestroyCluster(_) | RunWorkflow::UpgradeCluster(_) => None,
    }
}

/// Exit 75 when a live run holds `cluster`'s lock (read-only: `--unattended` looks before it
/// does anything).
async fn check_not_held(hetzner: &Hetzner, cluster: &str) -> Result<(), Failure> {
    let lock = hk8s_workflows::policies::retry_transient(|| hetzner.find_cluster_lock(cluster))
        .await
        .map_err(crate::preflight::api_failure)?;
    if let Some(lock) = lock {
        let dead = lock.pid.is_some_and(|p| !hk8s_runtime::pid_alive(p))
            && crate::lock::lock_env()
                .map(|env| env.host == lock.owner.host)
                .unwrap_or(false);
        if lock.expires > chrono::Utc::now() && !dead {
            return Err(Failure::Held(anyhow!(
                "{}",
                hk8s_workflows::cluster_lock::held_message(cluster, &lock)
            )));
        }
    }
    Ok(())
}

/// `--plan`'s text: what every node runs, then the steps (or "nothing to do").
fn preview_text(cluster: &str, preview: &hk8s_workflows::upgrade_cluster::Preview) -> String {
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(["NODE", "TALOS", "ARCH", "KUBELET"]);
    for n in &preview.running.nodes {
        table.add_row([
            n.node.clone(),
            n.talos.clone(),
            n.arch.clone(),
            n.kubelet.clone(),
        ]);
    }
    let mut out = format!(
        "cluster {cluster} runs Kubernetes {} (oldest component)\n{table}\n",
        preview.running.kubernetes
    );
    if preview.steps.is_empty() {
        out.push_str("everything is at target: nothing to do");
    } else {
        out.push_str("plan:");
        for (i, step) in preview.steps.iter().enumerate() {
            out.push_str(&format!("\n  {}. {step}", i + 1));
        }
    }
    out
}

/// Runs `hk8s run <workflow>`.
pub async fn run(
    journal: &Option<PathBuf>,
    output: OutputFormat,
    log_format: Option<LogFormat>,
    api_timeout: Duration,
    workflow: RunWorkflow,
) -> Result<ExitCode, Failure> {
    let args = workflow.spec_args();
    // Everything that can be wrong with the input is checked before any journal or API call.
    let spec = load_spec(args)?;
    let mut images = image_env()?;
    let lock_env = crate::lock::lock_env()?;
    let token = if args.sandbox {
        None
    } else {
        Some(token_from_env()?)
    };
    let journal = Arc::new(open_journal(journal)?);

    // The sandbox starts only now, after validation: bad input never starts anything.
    let sandbox = if args.sandbox {
        Some(
            Sandbox::start(args.sandbox_speed)
                .await
                .context("cannot start the sandbox")?,
        )
    } else {
        None
    };
    let (cloud, token) = match &sandbox {
        Some(sb) => (
            CloudTarget {
                endpoint: sb.endpoint.clone(),
                sandbox: true,
            },
            sb.token.clone(),
        ),
        None => (
            CloudTarget {
                endpoint: endpoint_from_env(),
                sandbox: false,
            },
            token.unwrap_or_default(),
        ),
    };
    let timing = match &sandbox {
        Some(_) => Timing::for_sandbox(args.sandbox_speed),
        None => Timing::from_env(),
    };
    if let Some(sb) = &sandbox {
        // The sandbox's own image factory and rescue SSH, as a real account has factory.talos.dev
        // and port 22.
        images.factory = Some(sb.factory_url.clone());
        images.ssh_port = sb.ssh_port;
    }
    let scale = timing.scale;
    let files = cluster_files(&journal, &spec.cluster_name)?;
    let session = Session::new(
        journal, output, log_format, &token, timing, scale, lock_env, None, files,
    )?;
    if let RunWorkflow::CreateCluster(_) = &workflow {
        let nodes: Vec<(String, bool)> = spec
            .node_plan()
            .into_iter()
            .map(|n| (n.name, n.role == hk8s_workflows::spec::Role::ControlPlane))
            .collect();
        session.progress.plan(&nodes);
    }
    let hetzner = session.hetzner(&cloud, &token)?;
    let cluster = spec.cluster_name.clone();
    let code = async {
        // Read-only, before the run exists: nothing is journaled or created when it fails.
        crate::preflight::check(&hetzner, Some(&spec), orders(&workflow, &spec), api_timeout)
            .await?;
        if let RunWorkflow::CreateCluster(create) = &workflow {
            crate::preflight::check_secrets_identity(
                &hetzner,
                &spec.cluster_name,
                &cluster_dir(&spec.cluster_name)?,
                create.secrets.as_deref(),
            )
            .await?;
        }
        Known::start(&workflow, &session, hetzner, &token, spec, cloud, &images).await
    }
    .await;
    if let Some(sb) = sandbox {
        // `--keep`: the sandbox serves on until Ctrl-C or SIGTERM, unless the run itself was
        // interrupted (then the person wants to stop).
        let interrupted = session.runtime.cancellation().is_cancelled();
        if args.keep && !interrupted {
            keep_serving(&sb, &cluster).await?;
        }
        sb.stop().await;
    }
    code
}

/// `--keep`: tells how to reach the kept sandbox and waits for Ctrl-C or SIGTERM.
async fn keep_serving(sandbox: &Sandbox, cluster: &str) -> Result<(), Failure> {
    let dir = cluster_dir(cluster)?;
    let kubeconfig = dir.join(hk8s_workflows::talos::KUBECONFIG_FILE);
    let talosconfig = dir.join(hk8s_workflows::talos::TALOSCONFIG_FILE);
    let mut lines = vec![format!(
        "sandbox kept serving: Hetzner API {} (token {}); Ctrl-C or SIGTERM stops it",
        sandbox.endpoint, sandbox.token
    )];
    if kubeconfig.exists() {
        lines.push(format!(
            "  kubectl --kubeconfig {} get nodes",
            kubeconfig.display()
        ));
    }
    if talosconfig.exists() {
        lines.push(format!("  talosconfig: {}", talosconfig.display()));
    }
    // On stdout: it is what the person copies (and what a script waits for).
    println!("{}", lines.join("\n"));
    hk8s_runtime::shutdown_signal().await;
    eprintln!("stopping the sandbox");
    Ok(())
}

/// Runs `hk8s resume <id>`; a worker drives the runs it claimed through here too (`worker`).
pub async fn resume(
    journal: &Option<PathBuf>,
    output: OutputFormat,
    log_format: Option<LogFormat>,
    api_timeout: Duration,
    id: &str,
    force: bool,
    worker: Option<&WorkerSettings>,
) -> Result<ExitCode, Failure> {
    let lock_env = crate::lock::lock_env()?;
    let journal = Arc::new(open_journal(journal)?);
    let run = journal
        .resolve_run(id)
        .map_err(|e| usage(anyhow::Error::new(e)))?;
    let state = journal.load_run(&run).context("cannot read the run")?;
    if state.run.status == RunStatus::Succeeded {
        return Err(usage(anyhow!(
            "run {run} already succeeded; nothing to resume"
        )));
    }
    let Some(known) = Known::from_name(&state.run.workflow) else {
        return Err(usage(anyhow!(
            "run {run} is of workflow {:?}, which this hk8s does not know",
            state.run.workflow
        )));
    };
    let cloud: CloudTarget =
        serde_json::from_value(state.run.input.get("cloud").cloned().unwrap_or_default())
            .with_context(|| format!("run {run} has no cloud endpoint in its journaled input"))?;
    if cloud.sandbox {
        return Err(usage(anyhow!(
            "run {run} ran on an in-process sandbox, which ended with its process; start a new sandbox run, \
             or use `hk8s sandbox` with HCLOUD_ENDPOINT for resumable experiments"
        )));
    }
    if let Ok(env_endpoint) = std::env::var("HCLOUD_ENDPOINT")
        && !env_endpoint.is_empty()
        && env_endpoint.trim_end_matches('/') != cloud.endpoint.trim_end_matches('/')
    {
        return Err(usage(anyhow!(
            "run {run} talks to {} but HCLOUD_ENDPOINT is {env_endpoint}; unset it or resume against the same API",
            cloud.endpoint
        )));
    }
    let token = token_from_env()?;
    let timing = Timing::from_env();
    // A resume checks again: the token, the catalog or the cluster may have changed.
    let spec: Option<ClusterSpec> = match known {
        Known::CreateCluster => state
            .run
            .input
            .get("spec")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok()),
        Known::DestroyCluster | Known::BuildImage | Known::UpgradeCluster => None,
    };
    let orders = spec.as_ref().map(|_| Orders::Cluster);
    let scale = timing.scale;
    let files = cluster_files(&journal, &state.run.cluster)?;
    let session = Session::new(
        journal, output, log_format, &token, timing, scale, lock_env, worker, files,
    )?;
    let hetzner = session.hetzner(&cloud, &token)?;
    crate::preflight::check(&hetzner, spec.as_ref(), orders, api_timeout).await?;
    known
        .resume(&session, hetzner, &token, &state.run.cluster, run, force)
        .await
}

fn create_cluster(
    session: &Session,
    hetzner: Arc<Hetzner>,
    token: &str,
    timing: Timing,
    dir: PathBuf,
) -> CreateCluster {
    let builder = builder(session, hetzner.clone(), token, timing);
    CreateCluster::new(hetzner, HcloudToken::new(token), builder, dir)
        .with_policies(timing.policies())
}

fn destroy_cluster(
    session: &Session,
    hetzner: Arc<Hetzner>,
    token: &str,
    timing: Timing,
    dir: PathBuf,
) -> DestroyCluster {
    let builder = builder(session, hetzner.clone(), token, timing);
    DestroyCluster::new(hetzner, dir)
        .with_builder(builder)
        .with_policies(timing.policies())
}

/// The image builder: SSH keys derived from the API token (in memory only), dead runs judged
/// by this journal.
fn builder(session: &Session, hetzner: Arc<Hetzner>, token: &str, timing: Timing) -> Builder {
    Builder::new(hetzner, Secret::new(token.as_bytes().to_vec()))
        .with_policies(timing.policies())
        .with_runs(Arc::new(JournalRuns(session.runtime.journal().clone())))
}

/// Where image builds download from and reach the rescue system.
struct ImageEnv {
    /// `HK8S_IMAGE_FACTORY`, else the spec's `imageBuilder.factory`.
    factory: Option<String>,
    /// `HK8S_SSH_PORT`, else 22.
    ssh_port: u16,
}

/// Reads `HK8S_IMAGE_FACTORY` and `HK8S_SSH_PORT`, checked before any API call.
fn image_env() -> Result<ImageEnv, Failure> {
    let factory = std::env::var("HK8S_IMAGE_FACTORY")
        .ok()
        .filter(|f| !f.trim().is_empty());
    if let Some(f) = &factory {
        check_factory_url(f).map_err(|e| usage(anyhow!("HK8S_IMAGE_FACTORY: {e}")))?;
    }
    let ssh_port = match std::env::var("HK8S_SSH_PORT") {
        Ok(p) if !p.trim().is_empty() => p
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| usage(anyhow!("HK8S_SSH_PORT: {p:?} is not a TCP port (1-65535)")))?,
        _ => DEFAULT_SSH_PORT,
    };
    Ok(ImageEnv { factory, ssh_port })
}

/// Dead runs as this journal knows them: finished (succeeded, failed, cancelled), or marked
/// running by a process that is gone. Interrupted runs wait for `hk8s resume`; runs of other
/// journals are unknown, hence alive.
struct JournalRuns(Arc<Journal>);

impl RunRegistry for JournalRuns {
    fn is_dead(&self, run_id: &str) -> bool {
        let Ok(id) = run_id.parse::<RunId>() else {
            return false;
        };
        let Ok(state) = self.0.load_run(&id) else {
            return false;
        };
        match state.run.status {
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled => true,
            RunStatus::Interrupted | RunStatus::Queued => false,
            RunStatus::Running => match &state.run.owner {
                Some(owner) => {
                    let local = hk8s_journal::Owner::current().same_machine(owner);
                    local && !hk8s_runtime::pid_alive(owner.pid)
                }
                None => true,
            },
        }
    }
}

fn load_spec(args: &SpecArgs) -> Result<ClusterSpec, Failure> {
    match (&args.config, args.sandbox) {
        (Some(path), _) => ClusterSpec::from_file(path).map_err(usage),
        (None, true) => {
            ClusterSpec::from_yaml(EXAMPLE_YAML, "<built-in example cluster>").map_err(usage)
        }
        (None, false) => Err(usage(anyhow!(
            "--config FILE is required (or --sandbox, which uses the built-in example cluster)"
        ))),
    }
}

fn token_from_env() -> Result<String, Failure> {
    match std::env::var("HCLOUD_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => Err(usage(anyhow!(
            "HCLOUD_TOKEN is not set: export a read-write API token of the Hetzner project (or use --sandbox)"
        ))),
    }
}

fn endpoint_from_env() -> String {
    std::env::var("HCLOUD_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| hk8s_hetzner::DEFAULT_ENDPOINT.to_string())
}

/// One command's journal, runtime and output settings.
struct Session {
    runtime: Runtime,
    timing: Timing,
    output: OutputFormat,
    progress: Arc<Progress>,
    lock_env: LockEnv,
    /// The cluster's files in a shared journal (PostgreSQL), synced with the state folder.
    files: Option<Arc<ClusterFiles>>,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    fn new(
        journal: Arc<Journal>,
        output: OutputFormat,
        log_format: Option<LogFormat>,
        token: &str,
        timing: Timing,
        scale: f64,
        lock_env: LockEnv,
        worker: Option<&WorkerSettings>,
        files: Option<Arc<ClusterFiles>>,
    ) -> Result<Session, Failure> {
        let scrubber = Scrubber::new();
        if !token.is_empty() {
            scrubber.register(token);
        }
        let mode: Mode = Progress::mode_for(output, log_format);
        let progress = Progress::new(mode, scale);
        let runner = crate::runner::runner_env()?;
        // The files an activity wrote are stored before its step is journaled, and before a
        // debug kill hook fires.
        let observer = match &files {
            Some(files) => files.observer(progress.observer()),
            None => progress.observer(),
        };
        let mut opts = RuntimeOptions {
            scrubber,
            observer: Some(crate::debug::with_kill_hook(observer)),
            owner: runner.owner,
            ..RuntimeOptions::default()
        };
        if let Some(ttl) = runner.lease_ttl {
            opts.lease_ttl = ttl;
        }
        if let Some(delay) = runner.intent_delay {
            opts.intent_delay = delay;
        }
        match worker {
            // A worker's run: its owner is the claim's, the worker's signal handler stops it,
            // and a stop puts it back in the queue.
            Some(worker) => {
                opts.owner = worker.owner.clone();
                opts.lease_ttl = worker.lease_ttl;
                opts.cancel = worker.cancel.child_token();
                opts.on_shutdown = RunStatus::Queued;
            }
            None => {
                // First Ctrl-C / SIGTERM: stop starting steps, give in-flight ones a grace
                // period. A second one exits at once (every journal write is a single
                // transaction).
                let cancel = opts.cancel.clone();
                tokio::spawn(async move {
                    hk8s_runtime::shutdown_signal().await;
                    cancel.cancel();
                    hk8s_runtime::shutdown_signal().await;
                    std::process::exit(i32::from(exit::INTERRUPTED));
                });
            }
        }
        let runtime = Runtime::new(journal, opts);
        Ok(Session {
            runtime,
            timing,
            output,
            progress,
            lock_env,
            files,
        })
    }

    /// `--queue`: journals the run as queued (deduplicated by `--dedup`) and prints its id;
    /// otherwise runs it here under the cluster lock.
    async fn start_or_enqueue<W>(
        &self,
        wf: W,
        hetzner: &Arc<Hetzner>,
        cluster: &str,
        input: &W::Input,
        args: &SpecArgs,
    ) -> Result<ExitCode, Failure>
    where
        W: Workflow,
        W::Output: Serialize + Summary,
    {
        if !args.queue {
            return self.start_locked(wf, hetzner, cluster, input).await;
        }
        let queued = self
            .runtime
            .enqueue(&wf, cluster, input, args.dedup.as_deref())
            .map_err(journal_failure)?;
        let run = queued.run;
        match self.output {
            OutputFormat::Json => println!(
                "{}",
                serde_json::json!({
                    "run_id": run.to_string(),
                    "workflow": W::NAME,
                    "status": "queued",
                    "created": queued.created,
                })
            ),
            OutputFormat::Text => {
                // The id alone on stdout, for scripts; the sentence on stderr.
                println!("{run}");
                if queued.created {
                    eprintln!("run {run} ({} {cluster}) queued for `hk8s worker`", W::NAME);
                } else {
                    eprintln!(
                        "run {run} already has dedup key {:?}; no new run queued",
                        args.dedup.as_deref().unwrap_or_default()
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Takes the cluster lock for a new run id, journals the run, drives it under the lock and
    /// releases the lock. A held lock or a token that cannot write stops before the journal.
    async fn start_locked<W>(
        &self,
        wf: W,
        hetzner: &Arc<Hetzner>,
        cluster: &str,
        input: &W::Input,
    ) -> Result<ExitCode, Failure>
    where
        W: Workflow,
        W::Output: Serialize + Summary,
    {
        // One active run per cluster: refuse before touching the cloud lock. A run left running
        // by a process of this machine that died is superseded (failed, naming the new run), as
        // a resume would take it over at once.
        let journal = self.runtime.journal();
        let mut active = journal
            .active_run(cluster)
            .context("cannot read the journal")?;
        let run = RunId::new();
        if let Some(dead) = &active
            && dead.status == RunStatus::Running
            && let Some(holder) = &dead.owner
            && crate::runner::runner_env()?.owner.same_machine(holder)
            && !hk8s_runtime::pid_alive(holder.pid)
        {
            let message = format!(
                "abandoned: its process ({holder}) died; superseded by run {run} (`hk8s resume {}` \
                 continues it once that one ended)",
                dead.id
            );
            if journal
                .supersede_dead_run(&dead.id, holder, &message, chrono::Utc::now())
                .context("cannot update the journal")?
            {
                eprintln!("note: run {} {message}", dead.id);
                active = None;
            }
        }
        if let Some(active) = active {
            return Err(journal_failure(RuntimeError::Journal {
                operation: "create run",
                source: hk8s_journal::JournalError::ClusterBusy {
                    cluster: cluster.to_owned(),
                    active: active.id,
                    workflow: active.workflow,
                    status: active.status,
                },
            }));
        }
        let lock = self.take_lock(hetzner, cluster, run).await?;
        let result = match self.create(&wf, run, cluster, input) {
            Ok(run) => {
                let wf = Locked::new(wf, &lock);
                self.drive(&wf, run, false).await
            }
            Err(e) => Err(e),
        };
        crate::lock::release(lock).await;
        result
    }

    /// Takes the cluster lock for `run`, drives it under the lock and releases the lock.
    async fn resume_locked<W>(
        &self,
        wf: W,
        hetzner: &Arc<Hetzner>,
        cluster: &str,
        run: RunId,
        force: bool,
    ) -> Result<ExitCode, Failure>
    where
        W: Workflow,
        W::Output: Serialize + Summary,
    {
        let lock = self.take_lock(hetzner, cluster, run).await?;
        let wf = Locked::new(wf, &lock);
        let result = self.drive(&wf, run, force).await;
        crate::lock::release(lock).await;
        result
    }

    /// The cluster lock for `run`; when it is lost later, the run is stopped (interrupted).
    async fn take_lock(
        &self,
        hetzner: &Arc<Hetzner>,
        cluster: &str,
        run: RunId,
    ) -> Result<hk8s_workflows::cluster_lock::HeldLock, Failure> {
        let cancel = self.runtime.cancellation().clone();
        crate::lock::take(hetzner.clone(), &self.lock_env, cluster, run, move |why| {
            eprintln!("error: {why}");
            cancel.cancel();
        })
        .await
    }

    /// The newest upgrade-cluster run of `cluster` that did not finish (running by a dead
    /// process, interrupted or failed), if any.
    fn unfinished_upgrade(&self, cluster: &str) -> Result<Option<RunId>, Failure> {
        let runs = self
            .runtime
            .journal()
            .list_runs(&hk8s_journal::RunFilter {
                cluster: Some(cluster.to_string()),
                workflow: Some(UpgradeCluster::NAME.to_string()),
                status: None,
                limit: Some(20),
            })
            .context("cannot list the journal's runs")?;
        Ok(runs
            .into_iter()
            .find(|r| {
                matches!(
                    r.status,
                    RunStatus::Running | RunStatus::Interrupted | RunStatus::Failed
                )
            })
            .map(|r| r.id))
    }

    fn hetzner(&self, cloud: &CloudTarget, token: &str) -> Result<Arc<Hetzner>, Failure> {
        let mut config =
            HetznerConfig::new(ApiToken::new(token)).with_endpoint(cloud.endpoint.clone());
        // HK8S_API_RESERVE: requests of the project's rate-limit bucket hk8s leaves to the
        // CCM, the CSI driver and other users of the token.
        if let Ok(value) = std::env::var("HK8S_API_RESERVE") {
            let reserve = value.trim().parse::<u32>().map_err(|_| {
                usage(anyhow!(
                    "HK8S_API_RESERVE must be a number of requests (e.g. 300), got {value:?}"
                ))
            })?;
            let pacing = config.pacing.with_reserve(reserve);
            config = config.with_pacing(pacing);
        }
        let poll = self.timing.scale(config.action_poll_interval);
        let poll_max = self.timing.scale(config.action_poll_max_interval);
        config = config
            .with_action_poll_max_interval(poll_max)
            .with_action_poll_interval(self.timing.action_poll.unwrap_or(poll));
        Hetzner::new(config).map(Arc::new).map_err(|e| {
            Failure::Other(anyhow::Error::new(e).context("cannot set up the Hetzner client"))
        })
    }

    fn create<W: Workflow>(
        &self,
        wf: &W,
        id: RunId,
        cluster: &str,
        input: &W::Input,
    ) -> Result<RunId, Failure> {
        let run = self
            .runtime
            .create_with_id(wf, id, cluster, input)
            .map_err(journal_failure)?;
        if self.output == OutputFormat::Text {
            self.progress
                .println(&format!("run {run} ({} {cluster})", W::NAME));
        }
        Ok(run)
    }

    async fn drive<W>(&self, wf: &W, run: RunId, force: bool) -> Result<ExitCode, Failure>
    where
        W: Workflow,
        W::Output: Serialize + Summary,
    {
        let result = self
            .runtime
            .execute(wf, &run, ResumeOptions { force })
            .await;
        if let Some(files) = &self.files
            && let Err(e) = files.store_changed()
        {
            eprintln!("warning: {e:#}");
        }
        self.progress.finish();
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e @ RuntimeError::LeaseHeld { .. }) => {
                return Err(Failure::Held(anyhow::Error::new(e)));
            }
            Err(
                e @ (RuntimeError::VersionMismatch { .. } | RuntimeError::WrongWorkflow { .. }),
            ) => {
                return Err(usage(e));
            }
            Err(e) => return Err(Failure::Other(anyhow::Error::new(e))),
        };
        self.report::<W>(&outcome);
        Ok(ExitCode::from(match outcome.status {
            RunStatus::Succeeded => 0,
            RunStatus::Interrupted => exit::INTERRUPTED,
            _ => exit::FAILED,
        }))
    }

    fn report<W>(&self, outcome: &RunOutcome<W::Output>)
    where
        W: Workflow,
        W::Output: Serialize + Summary,
    {
        let run = outcome.run_id;
        match self.output {
            OutputFormat::Json => {
                let value = serde_json::json!({
                    "run_id": run.to_string(),
                    "workflow": W::NAME,
                    "status": outcome.status.as_str(),
                    "error": outcome.error,
                    "output": outcome.output,
                });
                println!("{value}");
            }
            OutputFormat::Text => match outcome.status {
                RunStatus::Succeeded => {
                    if let Some(out) = &outcome.output {
                        println!("{}", out.summary());
                    }
                    self.progress.println(&format!("run {run} succeeded"));
                }
                RunStatus::Interrupted => {
                    self.progress.println(&format!(
                        "run {run} interrupted; continue it with:\n  hk8s resume {run}"
                    ));
                }
                status => {
                    self.progress.println(&format!(
                        "run {run} {status}: {}",
                        outcome.error.as_deref().unwrap_or("unknown error")
                    ));
                    self.progress.println(&format!(
                        "details: hk8s history {run}\nretry:   hk8s resume {run}"
                    ));
                }
            },
        }
    }
}

/// A refused run creation: another active run of the cluster is "held" (exit 75), the rest
/// cannot be journaled.
fn journal_failure(e: RuntimeError) -> Failure {
    match e {
        RuntimeError::Journal {
            source: source @ hk8s_journal::JournalError::ClusterBusy { .. },
            ..
        } => Failure::Held(anyhow::Error::new(source)),
        e => Failure::Other(anyhow::Error::new(e).context("cannot journal the run")),
    }
}

/// A human summary of a workflow's output.
trait Summary {
    fn summary(&self) -> String;
}

impl Summary for ClusterCreated {
    fn summary(&self) -> String {
        format!(
            "{}\nnodes Ready: {} of {}\ntalosconfig: {}\nkubeconfig:  {}",
            infra_summary(&self.infra, &self.kube.ready_nodes),
            self.kube.ready_nodes.len(),
            self.infra.servers.len(),
            self.talos.talosconfig.display(),
            self.talos.kubeconfig.display()
        )
    }
}

fn infra_summary(infra: &hk8s_workflows::ClusterInfra, ready: &[String]) -> String {
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header([
        "SERVER",
        "ROLE",
        "ID",
        "PUBLIC IPV4",
        "PRIVATE IP",
        "STATUS",
        "KUBERNETES",
    ]);
    for s in &infra.servers {
        table.add_row([
            s.name.clone(),
            s.role.label_value().to_string(),
            s.id.to_string(),
            s.public_ipv4.map(|ip| ip.to_string()).unwrap_or_default(),
            s.private_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            s.status.clone(),
            if ready.contains(&s.name) {
                "Ready"
            } else {
                "not Ready"
            }
            .to_string(),
        ]);
    }
    let endpoint = infra
        .endpoint_ip()
        .map(|ip| format!("https://{ip}:6443"))
        .unwrap_or_else(|| "-".into());
    format!(
        "cluster {}: Kubernetes API endpoint {endpoint}\n{table}",
        infra.cluster
    )
}

impl Summary for BuiltImages {
    fn summary(&self) -> String {
        let mut out: Vec<String> = self
            .images
            .iter()
            .map(|(arch, image)| format!("{arch}: snapshot {} ({})", image.id, image.description))
            .collect();
        if !self.leftovers.is_empty() {
            out.push(format!(
                "removed {} leftover(s) of dead image builds",
                self.leftovers.count()
            ));
        }
        out.join("\n")
    }
}

impl Summary for UpgradeSummary {
    fn summary(&self) -> String {
        let mut out = format!("cluster {}: upgraded", self.cluster);
        if self.steps.is_empty() {
            out.push_str(" nothing (everything was at target)");
        }
        for step in &self.steps {
            out.push_str(&format!("\n  done: {step}"));
        }
        for nodes in &self.talos {
            for n in nodes {
                let what = if n.skipped { "already at" } else { "now at" };
                out.push_str(&format!("\n  {}: {} {what} {}", n.node, n.from, n.to));
            }
        }
        for (arch, id) in &self.snapshots {
            out.push_str(&format!("\n  new {arch} nodes boot from snapshot {id}"));
        }
        out
    }
}

impl Summary for DestroySummary {
    fn summary(&self) -> String {
        let mut out = format!(
            "cluster {}: deleted {} resource(s), {} CCM load balancer(s) and {} CSI volume(s); \
             nothing labelled cluster={},managed-by=hk8s is left",
            self.cluster,
            self.deleted.count(),
            self.cloud_backed.service_uids.len(),
            self.cloud_backed.volume_ids.len(),
            self.cluster
        );
        for warning in &self.warnings {
            out.push_str(&format!("\nwarning: {warning}"));
        }
        out
    }
}
