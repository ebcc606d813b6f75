//! The sandbox: the twin (a local Hetzner Cloud API on loopback) started in-process for
//! `--sandbox`, or in the foreground for `hk8s sandbox`.
//!
//! The product does not know it talks to a twin: the sandbox only supplies an endpoint and a
//! token (and the image factory URL and rescue SSH port), exactly as `HCLOUD_ENDPOINT`,
//! `HCLOUD_TOKEN`, `HK8S_IMAGE_FACTORY` and `HK8S_SSH_PORT` would. It seeds no snapshot: runs
//! build their Talos images through the twin, like on a new real project.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use hk8s_twin::{Twin, TwinHandle, TwinOptions};

use crate::exit::Failure;

/// The port the sandbox's rescue systems serve SSH on, at each server's own loopback IP (22
/// would need root and may collide with a local sshd on 0.0.0.0:22).
pub const SANDBOX_SSH_PORT: u16 = 22022;

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
    /// Starts a twin on a random loopback port with no snapshot: the run builds its Talos
    /// images through the twin's rescue systems and image factory, as on a new real project.
    pub async fn start(speed: f64) -> anyhow::Result<Sandbox> {
        let token = format!("sandbox-{}", std::process::id());
        let twin = Twin::start(TwinOptions {
            speed,
            token: Some(token.clone()),
            rescue_ssh_port: SANDBOX_SSH_PORT,
            ..TwinOptions::default()
        })
        .await?;
        Ok(Sandbox {
            endpoint: twin.api_url(),
            token,
            factory_url: twin.factory_url(),
            ssh_port: SANDBOX_SSH_PORT,
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
        rescue_ssh_port: SANDBOX_SSH_PORT,
        ..TwinOptions::default()
    })
    .await
    .context("cannot start the sandbox twin")?;
    println!(
        "hk8s sandbox: a local Hetzner Cloud API with an image factory and rescue systems \
         (no snapshot: the first create-cluster builds them)"
    );
    println!();
    println!("  export HCLOUD_ENDPOINT={}", twin.api_url());
    println!("  export HCLOUD_TOKEN={token}");
    println!("  export HK8S_IMAGE_FACTORY={}", twin.factory_url());
    println!("  export HK8S_SSH_PORT={SANDBOX_SSH_PORT}");
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
