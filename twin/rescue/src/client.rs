//! A minimal SSH client for tests of the rescue system and of the twin (one `exec` per
//! connection), so those tests need no `ssh` binary: [`exec`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use russh::ChannelMsg;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};

/// What one command returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status (`None` if the server sent none).
    pub status: Option<u32>,
    /// Channel data.
    pub stdout: Vec<u8>,
    /// Extended data 1.
    pub stderr: Vec<u8>,
    /// The server's host key.
    pub host_key: PublicKey,
}

impl ExecOutput {
    /// stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a command could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or the SSH protocol failed.
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
    /// The server refused the key.
    #[error("ssh: permission denied (publickey)")]
    Denied,
}

struct Client {
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key {
            *self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key.clone());
        }
        Ok(true)
    }
}

/// A fresh ed25519 key pair (for tests) and its OpenSSH public line.
pub fn generate_key() -> (PrivateKey, String) {
    let seed: [u8; 32] = rand::random();
    let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
        &seed,
    ));
    let line = key.public_key().to_openssh().unwrap_or_default();
    (key, line)
}

/// Connects to `addr` as `user` with `key`, runs `command` with `stdin` as its input and returns
/// its output and exit status.
pub async fn exec(
    addr: SocketAddr,
    user: &str,
    key: &PrivateKey,
    command: &str,
    stdin: &[u8],
) -> Result<ExecOutput, ClientError> {
    let seen = Arc::new(Mutex::new(None));
    let config = Arc::new(russh::client::Config::default());
    let mut session = russh::client::connect(config, addr, Client { seen: seen.clone() }).await?;
    let auth = session
        .authenticate_publickey(
            user,
            PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None),
        )
        .await?;
    if !auth.success() {
        return Err(ClientError::Denied);
    }
    let mut channel = session.channel_open_session().await?;
    channel.exec(true, command).await?;
    if !stdin.is_empty() {
        channel.data(stdin).await?;
    }
    channel.eof().await?;
    let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    let _ = session
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    let host_key = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .ok_or(ClientError::Ssh(russh::Error::UnknownKey))?;
    Ok(ExecOutput {
        status,
        stdout,
        stderr,
        host_key,
    })
}
