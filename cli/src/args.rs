//! The command line: clap definitions only; `main.rs` turns them into actions.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Talos Kubernetes on Hetzner Cloud, as resumable workflows.
#[derive(Debug, Parser)]
#[command(name = "hk8s", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Journal: a SQLite file (default: $HK8S_HOME/journal.db, else
    /// $XDG_STATE_HOME/hk8s/journal.db, else ~/.local/state/hk8s/journal.db), or a PostgreSQL
    /// database shared by several runners (postgres://user@host/db?sslmode=require).
    #[arg(long, global = true, env = "HK8S_JOURNAL", value_name = "PATH|URL")]
    pub journal: Option<PathBuf>,

    /// Output format; `json` prints one JSON object on stdout and no progress display.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// How long an unreachable Hetzner API is waited for before giving up (seconds).
    #[arg(long, global = true, env = "HK8S_API_TIMEOUT", value_name = "SECONDS", default_value = "30", value_parser = crate::preflight::parse_api_timeout)]
    pub api_timeout: std::time::Duration,

    /// Progress format on stderr: `text` is live lines on a terminal and plain timestamped
    /// lines otherwise; `json` is one JSON object per line (default: text, none with `-o json`).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How run progress is written to stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Live lines on a terminal, plain timestamped lines otherwise.
    Text,
    /// One JSON object per line (timestamp, level, event, step, node, phase, attempt, message).
    Json,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text and, on a terminal, a progress display.
    Text,
    /// One JSON object on stdout.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a workflow run.
    Run {
        /// The workflow.
        #[command(subcommand)]
        workflow: RunWorkflow,
    },
    /// Resume an interrupted or failed run where it stopped.
    Resume {
        /// Run id, or any unique prefix of it.
        id: String,
        /// Take the run over even if another live process holds it.
        #[arg(long)]
        force: bool,
    },
    /// List runs, or show one run's steps and attempts.
    History(HistoryArgs),
    /// Claim queued runs (and runs whose holder stopped renewing its lease) from the journal
    /// and run them, one at a time, until SIGTERM, which puts the current run back in the queue.
    Worker(WorkerArgs),
    /// Write the cluster's kubeconfig into the state folder (0600; from the journal when it is
    /// on PostgreSQL, with HK8S_FILES_KEY) and print its path.
    Kubeconfig {
        /// The cluster name.
        cluster: String,
    },
    /// Write the cluster's talosconfig into the state folder (0600; from the journal when it
    /// is on PostgreSQL, with HK8S_FILES_KEY) and print its path.
    Talosconfig {
        /// The cluster name.
        cluster: String,
    },
    /// Serve the twin (a local Hetzner Cloud API) in the foreground.
    Sandbox {
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1:8765")]
        listen: SocketAddr,
        /// Speed factor: realistic durations are divided by it.
        #[arg(long, default_value_t = 50.0)]
        speed: f64,
    },
    /// Print a shell completion script (bash: `source <(hk8s completions bash)`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Workflows that `hk8s run` starts or enqueues (`cli/src/run.rs` `Known` maps each to its
/// workflow).
#[derive(Debug, Subcommand)]
pub enum RunWorkflow {
    /// Create (or complete) a cluster from a spec.
    CreateCluster(CreateArgs),
    /// Delete everything hk8s made for a cluster, and prove nothing is left.
    DestroyCluster(SpecArgs),
    /// Build the spec's Talos snapshots (both architectures concurrently) from the image factory.
    BuildImage(BuildImageArgs),
    /// Upgrade Talos node by node, then Kubernetes, to the spec's versions (resumable).
    UpgradeCluster(UpgradeArgs),
}

/// `hk8s run upgrade-cluster`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The spec and cloud: `talos.version`, the schematic and `kubernetes.version` are the targets.
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print what the cluster runs and the planned steps; change nothing.
    #[arg(long, conflicts_with = "unattended")]
    pub plan: bool,
    /// For timers and CronJobs: resume this cluster's unfinished upgrade run instead of starting
    /// another; exit 0 at once when everything is at target; exit 75 while another run holds
    /// the cluster.
    #[arg(long)]
    pub unattended: bool,
    /// Workers upgraded at once (control planes always go one at a time).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub concurrency: u16,
    /// Durable pause after each node (or batch of workers), in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub pause: u64,
    /// How long a node may take to come back from its upgrade reboot before the run stops
    /// (resumably), in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub node_timeout: u64,
    /// How long a gate (etcd healthy, nodes Ready, PDBs, static pod Ready) may take, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub gate_timeout: u64,
}

/// `hk8s run build-image`.
#[derive(Debug, Args)]
pub struct BuildImageArgs {
    /// The spec and cloud.
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Which architectures: the spec's own by default.
    #[arg(long, value_enum)]
    pub arch: Option<ArchChoice>,
    /// Build even when a snapshot with the labels exists.
    #[arg(long)]
    pub force: bool,
}

/// `--arch` of build-image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchChoice {
    /// x86-64.
    X86,
    /// ARM64.
    Arm,
    /// Both.
    All,
}

impl RunWorkflow {
    /// Where the run's spec and cloud come from.
    pub fn spec_args(&self) -> &SpecArgs {
        match self {
            Self::CreateCluster(args) => &args.spec,
            Self::DestroyCluster(args) => args,
            Self::BuildImage(args) => &args.spec,
            Self::UpgradeCluster(args) => &args.spec,
        }
    }
}

/// Where a run's cluster spec and cloud come from (every `run` workflow).
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Cluster spec (YAML). Optional with --sandbox, which then uses the built-in example.
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run against an in-process twin of Hetzner on loopback instead of the real cloud.
    #[arg(long)]
    pub sandbox: bool,
    /// Sandbox speed factor (realistic durations are divided by it).
    #[arg(long, default_value_t = 200.0, requires = "sandbox")]
    pub sandbox_speed: f64,
    /// With --sandbox: keep the sandbox serving after the run (prints the kubectl line to
    /// paste) until Ctrl-C or SIGTERM.
    #[arg(long, requires = "sandbox")]
    pub keep: bool,
    /// Check the spec and the cloud, then put the run in the journal's queue for `hk8s worker`
    /// and print its id, instead of running it here.
    #[arg(long, conflicts_with = "sandbox")]
    pub queue: bool,
    /// With --queue: a key that makes several triggers one run (e.g. upgrade/<cluster>/<version>);
    /// while a queued or running run has it, its id is printed instead of a new run.
    #[arg(long, value_name = "KEY", requires = "queue")]
    pub dedup: Option<String>,
}

/// Arguments of `hk8s worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Exit after this many runs (default: run until SIGTERM).
    #[arg(long, value_name = "N")]
    pub max_runs: Option<u32>,
    /// Exit when nothing is left to claim, instead of polling on.
    #[arg(long)]
    pub exit_when_idle: bool,
    /// How often to look for work when there was none (seconds; a random tenth is added).
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub poll: f64,
}

/// Arguments of `run create-cluster`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The spec and cloud.
    #[command(flatten)]
    pub spec: SpecArgs,
    /// At the end, prove storage works: a volume claim binds (a Hetzner volume), then is removed.
    #[arg(long)]
    pub verify: bool,
    /// Import this Talos secrets bundle (`talosctl gen secrets` format) instead of generating one.
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
}

/// Arguments of `hk8s history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show this run (id or unique prefix) step by step.
    pub id: Option<String>,
    /// Only runs of this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Only runs of this workflow (create-cluster, destroy-cluster).
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only runs with this status (running, interrupted, failed, succeeded, cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

const EXIT_CODES: &str = "Exit codes: 0 succeeded (or nothing to do), 1 failed, 2 usage or config error, \
75 run or cluster held by another process, 130 interrupted (resume with `hk8s resume <id>`).";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_create_cluster_parses() {
        let cli = Cli::try_parse_from([
            "hk8s",
            "-o",
            "json",
            "run",
            "create-cluster",
            "-f",
            "c.yaml",
        ])
        .unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        match cli.command {
            Command::Run {
                workflow: RunWorkflow::CreateCluster(args),
            } => {
                assert_eq!(args.spec.config, Some(PathBuf::from("c.yaml")));
                assert!(!args.spec.sandbox);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keep_needs_the_sandbox() {
        let parsed =
            Cli::try_parse_from(["hk8s", "run", "create-cluster", "-f", "c.yaml", "--keep"]);
        assert!(parsed.is_err(), "--keep without --sandbox was accepted");
        let cli = Cli::try_parse_from([
            "hk8s",
            "--log-format",
            "json",
            "run",
            "create-cluster",
            "--sandbox",
            "--keep",
        ])
        .unwrap();
        assert_eq!(cli.log_format, Some(LogFormat::Json));
        match cli.command {
            Command::Run {
                workflow: RunWorkflow::CreateCluster(args),
            } => assert!(args.spec.keep && args.spec.sandbox),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn upgrade_cluster_parses_its_options() {
        let cli = Cli::try_parse_from([
            "hk8s",
            "run",
            "upgrade-cluster",
            "-f",
            "c.yaml",
            "--unattended",
            "--pause",
            "0",
        ])
        .unwrap();
        match cli.command {
            Command::Run {
                workflow: RunWorkflow::UpgradeCluster(args),
            } => {
                assert!(args.unattended && !args.plan);
                assert_eq!((args.pause, args.concurrency), (0, 1));
            }
            other => panic!("{other:?}"),
        }
        let both = Cli::try_parse_from([
            "hk8s",
            "run",
            "upgrade-cluster",
            "-f",
            "c.yaml",
            "--plan",
            "--unattended",
        ]);
        assert!(both.is_err(), "--plan with --unattended was accepted");
    }

    #[test]
    fn dedup_needs_the_queue_and_the_queue_no_sandbox() {
        let parsed = Cli::try_parse_from([
            "hk8s",
            "run",
            "create-cluster",
            "-f",
            "c.yaml",
            "--dedup",
            "k",
        ]);
        assert!(parsed.is_err(), "--dedup without --queue was accepted");
        let parsed = Cli::try_parse_from(["hk8s", "run", "create-cluster", "--sandbox", "--queue"]);
        assert!(parsed.is_err(), "--queue with --sandbox was accepted");
        let cli = Cli::try_parse_from([
            "hk8s",
            "run",
            "destroy-cluster",
            "-f",
            "c.yaml",
            "--queue",
            "--dedup",
            "d/1",
        ])
        .unwrap();
        match cli.command {
            Command::Run {
                workflow: RunWorkflow::DestroyCluster(args),
            } => assert!(args.queue && args.dedup.as_deref() == Some("d/1")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn destroy_cluster_takes_no_create_options() {
        for option in ["--verify", "--secrets=s.yaml"] {
            let parsed =
                Cli::try_parse_from(["hk8s", "run", "destroy-cluster", "-f", "c.yaml", option]);
            assert!(parsed.is_err(), "destroy-cluster accepted {option}");
        }
    }
}
