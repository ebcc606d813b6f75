//! Connecting as `root` with a [`BuilderKey`], host-key pinning, and running one command.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use serde::{Deserialize, Serialize};

use crate::error::{SshError, SshErrorKind};
use crate::key::{BuilderKey, HostKeyFingerprint};

/// Where the rescue system's SSH server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The server's public IPv4 (or any address).
    pub ip: IpAddr,
    /// The SSH port (22 on Hetzner).
    pub port: u16,
}

impl Endpoint {
    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// What [`probe`] learnt about the rescue system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The host key's fingerprint, to pin for the rest of the run.
    pub host_key: HostKeyFingerprint,
    /// `uname -m`: `x86_64` or `aarch64`.
    pub machine: String,
}

/// How long one TCP connect plus handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The most output of one command kept in memory (the tail is kept).
const MAX_OUTPUT: usize = 64 * 1024;

/// Connects to `endpoint` as root with `key`, learns the host key and runs `uname -m`.
///
/// Connection errors are [`SshErrorKind::Connect`] (retryable: the rescue system may still
/// be booting); a refused key is [`SshErrorKind::Auth`].
pub async fn probe(endpoint: Endpoint, key: &BuilderKey) -> Result<Probe, SshError> {
    let session = Session::connect(endpoint, key, None).await?;
    let out = session.exec("uname -m", CONNECT_TIMEOUT).await?;
    let op = format!("uname -m on {}", endpoint.addr());
    out.check_success(&op)?;
    let machine = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if machine.is_empty() {
        return Err(SshError::new(SshErrorKind::Check, op, "printed nothing"));
    }
    let host_key = session.host_key.clone();
    session.close().await;
    Ok(Probe { host_key, machine })
}

/// The output of one command.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_status: Option<u32>,
    pub exit_signal: Option<String>,
}

impl Output {
    /// The last lines of stderr, for messages.
    pub fn stderr_tail(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// `Ok` when the command exited 0.
    pub fn check_success(&self, op: &str) -> Result<(), SshError> {
        match (self.exit_status, &self.exit_signal) {
            (Some(0), _) => Ok(()),
            (_, Some(signal)) => Err(SshError::new(
                SshErrorKind::CommandFailed,
                op,
                format!("killed by signal {signal}: {}", self.stderr_tail()),
            )),
            (Some(status), None) => Err(SshError {
                exit_status: Some(status),
                ..SshError::new(SshErrorKind::CommandFailed, op, self.stderr_tail())
            }),
            (None, None) => Err(SshError::new(
                SshErrorKind::Channel,
                op,
                "the channel closed without an exit status",
            )),
        }
    }
}

/// Checks the server's key: learns it when nothing is pinned, else compares.
struct Checker {
    pinned: Option<HostKeyFingerprint>,
    seen: Arc<Mutex<Option<HostKeyFingerprint>>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let fingerprint = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.fingerprint(HashAlg::Sha256),
            PublicKeyOrCertificate::Certificate(cert) => {
                cert.public_key().fingerprint(HashAlg::Sha256)
            }
        }
        .to_string();
        let ok = self.pinned.as_ref().is_none_or(|p| *p == fingerprint);
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(fingerprint);
        Ok(ok)
    }
}

/// An authenticated SSH session as root.
pub(crate) struct Session {
    handle: Handle<Checker>,
    /// The server's host key fingerprint.
    pub host_key: HostKeyFingerprint,
    addr: SocketAddr,
}

impl Session {
    /// Connects and authenticates; with `pinned`, any other host key is refused.
    pub async fn connect(
        endpoint: Endpoint,
        key: &BuilderKey,
        pinned: Option<&str>,
    ) -> Result<Session, SshError> {
        let addr = endpoint.addr();
        let op = format!("ssh root@{addr}");
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(120)),
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 4,
            ..client::Config::default()
        });
        let seen = Arc::new(Mutex::new(None));
        let checker = Checker {
            pinned: pinned.map(str::to_string),
            seen: seen.clone(),
        };
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, client::connect(config, addr, checker))
                .await
                .map_err(|_| {
                    SshError::new(
                        SshErrorKind::Timeout,
                        &op,
                        format!("no SSH handshake within {CONNECT_TIMEOUT:?}"),
                    )
                })?;
        let seen_key = || seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut handle = match connected {
            Ok(handle) => handle,
            Err(e) => {
                if let (Some(pinned), Some(seen)) = (pinned, seen_key())
                    && pinned != seen
                {
                    return Err(SshError::new(
                        SshErrorKind::HostKeyMismatch,
                        &op,
                        format!(
                            "the host key is {seen}, not {pinned} pinned earlier in this run; \
                             refusing to send the image to another machine"
                        ),
                    ));
                }
                return Err(SshError::new(SshErrorKind::Connect, &op, e.to_string()));
            }
        };
        let host_key = seen_key().ok_or_else(|| {
            SshError::new(SshErrorKind::Connect, &op, "the server showed no host key")
        })?;
        let auth = handle
            .authenticate_publickey("root", PrivateKeyWithHashAlg::new(key.private(), None))
            .await
            .map_err(|e| SshError::new(SshErrorKind::Connect, &op, e.to_string()))?;
        if !auth.success() {
            return Err(SshError::new(
                SshErrorKind::Auth,
                &op,
                format!(
                    "the server refused key {} for root (is the server in rescue mode with this key?)",
                    key.fingerprint()
                ),
            ));
        }
        Ok(Session {
            handle,
            host_key,
            addr,
        })
    }

    /// Runs `command`, collecting its output, its exit status, for at most `timeout`.
    pub async fn exec(&self, command: &str, timeout: Duration) -> Result<Output, SshError> {
        let op = format!("run a command on {}", self.addr);
        tokio::time::timeout(timeout, self.exec_inner(command, &op))
            .await
            .map_err(|_| {
                SshError::new(
                    SshErrorKind::Timeout,
                    &op,
                    format!("the command did not finish within {timeout:?}"),
                )
            })?
    }

    async fn exec_inner(&self, command: &str, op: &str) -> Result<Output, SshError> {
        let channel_error =
            |e: russh::Error| SshError::new(SshErrorKind::Channel, op, e.to_string());
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(channel_error)?;
        channel.exec(true, command).await.map_err(channel_error)?;
        let mut out = Output::default();
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => push_capped(&mut out.stdout, &data),
                ChannelMsg::ExtendedData { data, .. } => push_capped(&mut out.stderr, &data),
                ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    out.exit_signal = Some(format!("{signal_name:?}"));
                }
                ChannelMsg::Failure => {
                    return Err(SshError::new(
                        SshErrorKind::Channel,
                        op,
                        "the server refused to run the command",
                    ));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Says goodbye (errors ignored: the work is done).
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

fn push_capped(buf: &mut Vec<u8>, data: &[u8]) {
    buf.extend_from_slice(data);
    if buf.len() > MAX_OUTPUT {
        let cut = buf.len() - MAX_OUTPUT;
        buf.drain(..cut);
    }
}
