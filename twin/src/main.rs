//! `hk8s-twin serve --listen 127.0.0.1:PORT [--speed N] [--token T] [--seed-talos x86:v1.11.6,...]
//! [--jitter 0.2 --seed 7]`
//!
//! Prints `hk8s-twin: Hetzner API at http://127.0.0.1:PORT/v1` first, then serves until SIGTERM or
//! Ctrl-C. Runs as its own process so crash tests can kill the client and keep the cloud.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hk8s_twin::{RateLimit, Twin, TwinOptions};

#[derive(Parser)]
#[command(name = "hk8s-twin", about = "Local twin of the Hetzner Cloud API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Hetzner API and the control API.
    Serve {
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Divides action durations (1 = realistic).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Required bearer token (any non-empty token when absent).
        #[arg(long, env = "HK8S_TWIN_TOKEN")]
        token: Option<String>,
        /// Talos snapshots to seed, e.g. `x86:v1.11.6,arm:v1.11.6`.
        #[arg(long, value_delimiter = ',')]
        seed_talos: Vec<String>,
        /// Rate-limit bucket size.
        #[arg(long, default_value_t = 3600)]
        rate_limit: u32,
        /// Rate-limit refill per second.
        #[arg(long, default_value_t = 1.0)]
        rate_refill: f64,
        /// Public IPv4 block inside 127.0.0.0/8 (default: a free random /20).
        #[arg(long)]
        addr_block: Option<ipnet::Ipv4Net>,
        /// Port of the rescue systems' SSH on each server's IP (22 needs root; 0: a free port
        /// per server, listed at /twin/rescue).
        #[arg(long, default_value_t = 22)]
        rescue_ssh_port: u16,
        /// Folder for server disk files (default: a temporary folder).
        #[arg(long)]
        disk_dir: Option<std::path::PathBuf>,
        /// Jitter of server create/start/boot/install durations, as a fraction (0.2: each is
        /// drawn from 80 %–120 % of its base); see `/twin/critical-path`.
        #[arg(long, default_value_t = 0.0)]
        jitter: f64,
        /// Seed of the jitter draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run() -> anyhow::Result<()> {
    let Cli {
        command:
            Command::Serve {
                listen,
                speed,
                token,
                seed_talos,
                rate_limit,
                rate_refill,
                addr_block,
                rescue_ssh_port,
                disk_dir,
                jitter,
                seed,
            },
    } = Cli::parse();
    if !listen.ip().is_loopback() {
        bail!("refusing to listen on {listen}: only loopback addresses are allowed");
    }
    let seeds = seed_talos
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split_once(':')
                .map(|(a, v)| (a.to_string(), v.to_string()))
                .with_context(|| format!("--seed-talos expects arch:version, got '{s}'"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let twin = Twin::start(TwinOptions {
        speed,
        token,
        rate_limit: RateLimit {
            capacity: rate_limit,
            refill_per_sec: rate_refill,
        },
        seed_talos_snapshots: seeds,
        addr_block,
        listen: Some(listen),
        rescue_ssh_port,
        disk_dir,
        jitter,
        seed,
        ..TwinOptions::default()
    })
    .await
    .context("starting the twin")?;
    // A closed stdout (the reader went away) must not stop the twin: print errors are ignored.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "hk8s-twin: Hetzner API at {}", twin.api_url());
    let _ = writeln!(out, "hk8s-twin: control API at {}", twin.control_url());
    let _ = writeln!(out, "hk8s-twin: public IPv4 block {}", twin.addr_block());
    let _ = writeln!(out, "hk8s-twin: image factory at {}", twin.factory_url());
    let _ = writeln!(
        out,
        "hk8s-twin: rescue SSH on <server ip>:{rescue_ssh_port}"
    );
    let _ = out.flush();
    drop(out);
    shutdown_signal().await;
    twin.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hk8s-twin: {e:#}");
            ExitCode::from(2)
        }
    }
}
