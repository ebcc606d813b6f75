//! The sandbox: the twin (a local Hetzner Cloud API on loopback) started in-process for
//! `--sandbox`, or in the foreground for `hk8s sandbox`.
//!
//! The product does not know it talks to a twin: the sandbox only supplies an endpoint and a
//! token, exactly as `HCLOUD_ENDPOINT` and `HCLOUD_TOKEN` would.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use hk8s_twin::{Twin, TwinHandle, TwinOptions};
use hk8s_workflows::ClusterSpec;
use hk8s_workflows::activity::talos_arch_name;
use hk8s_workflows::spec::Arch;

use crate::exit::Failure;

/// Talos versions the foreground sandbox seeds snapshots for.
const SEEDED_TALOS_VERSIONS: &[&str] = &["v1.9.6", "v1.10.7", "v1.11.6"];

/// An in-process twin serving one run.
pub struct Sandbox {
    /// The twin's Hetzner API URL.
    pub endpoint: String,
    /// The token the twin accepts.
    pub token: String,
    /// The twin's image factory base URL.
    pub factory_url: String,
    /// The port its rescue systems serve SSH on.
    pub ssh_port: u16,
    twin: TwinHandle,
}

impl Sandbox {
    /// Starts a twin on a random loopback port with the spec's Talos snapshots in place
    /// (standing in for the image builder).
    pub async fn start(speed: f64, spec: &ClusterSpec) -> anyhow::Result<Sandbox> {
        let token = format!("sandbox-{}", std::process::id());
        let twin = Twin::start(TwinOptions {
            speed,
            token: Some(token.clone()),
            ..TwinOptions::default()
        })
        .await?;
        for arch in spec.arches() {
            seed(&twin, talos_arch_name(arch), &spec.talos.version)?;
        }
        Ok(Sandbox {
            endpoint: twin.api_url(),
            token,
            factory_url: hk8s_workflows::spec::DEFAULT_IMAGE_FACTORY.to_string(),
            ssh_port: hk8s_workflows::build_image::DEFAULT_SSH_PORT,
            twin,
        })
    }

    /// Stops the twin.
    pub async fn stop(self) {
        self.twin.shutdown().await;
    }
}

/// Runs `hk8s sandbox`: a twin in the foreground until Ctrl-C.
pub async fn serve(listen: SocketAddr, speed: f64) -> Result<ExitCode, Failure> {
    let token = "hk8s-sandbox-token".to_string();
    let twin = Twin::start(TwinOptions {
        speed,
        listen: Some(listen),
        token: Some(token.clone()),
        ..TwinOptions::default()
    })
    .await
    .context("cannot start the sandbox twin")?;
    for version in SEEDED_TALOS_VERSIONS {
        for arch in [Arch::X86, Arch::Arm] {
            seed(&twin, talos_arch_name(arch), version)?;
        }
    }
    println!(
        "hk8s sandbox: a local Hetzner Cloud API (Talos snapshots {} seeded)",
        SEEDED_TALOS_VERSIONS.join(", ")
    );
    println!();
    println!("  export HCLOUD_ENDPOINT={}", twin.api_url());
    println!("  export HCLOUD_TOKEN={token}");
    println!("  hk8s run create-cluster -f examples/cluster.yaml");
    println!();
    println!(
        "control API: {} (state, requests, faults); Ctrl-C stops it",
        twin.control_url()
    );
    hk8s_runtime::shutdown_signal().await;
    twin.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Puts an available Talos snapshot into the twin, labelled as hk8s's image builder labels it.
fn seed(twin: &TwinHandle, arch: &str, version: &str) -> anyhow::Result<()> {
    let mut extra = hk8s_twin::labels::Labels::new();
    extra.insert("managed-by".into(), "hk8s".into());
    twin.state()
        .seed_talos_snapshot(arch, version, extra)
        .map_err(|e| {
            anyhow!(
                "cannot seed the Talos {version} {arch} snapshot: {}",
                e.message
            )
        })?;
    Ok(())
}
