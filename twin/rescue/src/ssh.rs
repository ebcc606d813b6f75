//! The rescue system's SSH server (russh): root only, public keys from an allowed set only
//! (no password, keyboard-interactive or none), one `session` channel per command.
//!
//! `exec` runs the command line in a fresh [`Shell`] (bash `-c` semantics) with the channel's
//! data as stdin, stdout as channel data and stderr as extended data 1, then sends
//! `exit-status`, EOF and close. `shell` reads lines from the client and runs each (a prompt
//! `root@rescue ~ # ` is printed when a pty was requested); `exit` or EOF ends it. `subsystem`
//! (sftp) is refused. Stopping the server (the server leaves rescue) disconnects every client and
//! cancels what runs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::io::{In, Out, Sink, Source, Stdio};
use crate::shell::{Machine, Shell};

/// One command a client ran (for the twin's control API and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// The command line.
    pub command: String,
    /// Its exit status.
    pub status: i32,
}

/// What the sessions of one server share.
pub(crate) struct Shared {
    pub(crate) machine: Arc<Machine>,
    pub(crate) authorized: Vec<PublicKey>,
    pub(crate) cancel: CancellationToken,
    pub(crate) log: Mutex<Vec<ExecRecord>>,
    pub(crate) logins: Mutex<u64>,
}

impl Shared {
    fn record(&self, command: &str, status: i32) {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ExecRecord {
                command: command.to_string(),
                status,
            });
    }
}

#[derive(Clone)]
pub(crate) struct Server {
    pub(crate) shared: Arc<Shared>,
}

impl russh::server::Server for Server {
    type Handler = Handler;

    fn new_client(&mut self, _peer: Option<SocketAddr>) -> Handler {
        Handler {
            shared: self.shared.clone(),
        }
    }
}

pub(crate) struct Handler {
    shared: Arc<Shared>,
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.decide(user, offer.public_key))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let auth = self.decide(user, key.public_key);
        if matches!(auth, Auth::Accept) {
            *self
                .shared
                .logins
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        }
        Ok(auth)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        let shared = self.shared.clone();
        tokio::spawn(serve_channel(shared, channel));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}

impl Handler {
    fn decide(&self, user: &str, key: &PublicKey) -> Auth {
        let known = self
            .shared
            .authorized
            .iter()
            .any(|k| k.key_data() == key.key_data());
        if user == "root" && known {
            Auth::Accept
        } else {
            Auth::Reject {
                proceed_with_methods: Some(russh::MethodSet::from(
                    &[russh::MethodKind::PublicKey][..],
                )),
                partial_success: false,
            }
        }
    }
}

/// Stdin fed from the channel's data messages (unbounded, so a command that never reads its
/// stdin cannot stall the session).
struct ChannelStdin(mpsc::UnboundedReceiver<Vec<u8>>, Vec<u8>, usize);

impl tokio::io::AsyncRead for ChannelStdin {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        loop {
            if self.2 < self.1.len() {
                let n = buf.remaining().min(self.1.len() - self.2);
                let start = self.2;
                buf.put_slice(&self.1[start..start + n]);
                self.2 += n;
                return std::task::Poll::Ready(Ok(()));
            }
            match self.0.poll_recv(cx) {
                std::task::Poll::Ready(Some(chunk)) => {
                    self.1 = chunk;
                    self.2 = 0;
                }
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(Ok(())),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}

async fn serve_channel(shared: Arc<Shared>, channel: Channel<Msg>) {
    let (mut read, write) = channel.split();
    let write = Arc::new(write);
    let (stdin_tx, stdin_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut stdin_tx = Some(stdin_tx);
    let mut stdin_rx = Some(stdin_rx);
    let mut pty = false;
    let mut started = false;
    while let Some(msg) = read.wait().await {
        match msg {
            ChannelMsg::RequestPty { .. } => pty = true,
            // One program per channel, as with sshd.
            ChannelMsg::Exec { .. } | ChannelMsg::RequestShell { .. } if started => {}
            ChannelMsg::Exec { command, .. } => {
                started = true;
                let Some(rx) = stdin_rx.take() else { continue };
                let command = String::from_utf8_lossy(&command).into_owned();
                tokio::spawn(run_exec(shared.clone(), write.clone(), command, rx));
            }
            ChannelMsg::RequestShell { .. } => {
                started = true;
                let Some(rx) = stdin_rx.take() else { continue };
                tokio::spawn(run_shell(shared.clone(), write.clone(), rx, pty));
            }
            ChannelMsg::Data { data } => {
                if let Some(tx) = &stdin_tx {
                    let _ = tx.send(data.to_vec());
                }
            }
            ChannelMsg::Eof => {
                stdin_tx = None;
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
}

fn channel_stdio(
    write: &russh::ChannelWriteHalf<Msg>,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
) -> Stdio {
    Stdio {
        stdin: In::new(Source::Stream(Box::new(ChannelStdin(rx, Vec::new(), 0)))),
        stdout: Out::new(Sink::Stream(Box::new(write.make_writer()))),
        stderr: Out::new(Sink::Stream(Box::new(write.make_writer_ext(Some(1))))),
    }
}

async fn finish(write: &russh::ChannelWriteHalf<Msg>, stdio: Stdio, status: i32) {
    let _ = stdio.stdout.flush().await;
    let _ = stdio.stderr.flush().await;
    drop(stdio);
    let _ = write.exit_status(status as u32).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}

async fn run_exec(
    shared: Arc<Shared>,
    write: Arc<russh::ChannelWriteHalf<Msg>>,
    command: String,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let stdio = channel_stdio(&write, rx);
    let mut shell = Shell::new(shared.machine.clone(), shared.cancel.clone());
    let status = shell.run_script(&command, stdio.clone()).await;
    shared.record(&command, status);
    finish(&write, stdio, status).await;
}

async fn run_shell(
    shared: Arc<Shared>,
    write: Arc<russh::ChannelWriteHalf<Msg>>,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    pty: bool,
) {
    let stdio = channel_stdio(&write, rx);
    let mut shell = Shell::new(shared.machine.clone(), shared.cancel.clone());
    let prompt = format!("root@{} ~ # ", shared.machine.hostname);
    let mut status = 0;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    if pty {
        let _ = stdio.stdout.print(&prompt).await;
        let _ = stdio.stdout.flush().await;
    }
    loop {
        let n = tokio::select! {
            r = stdio.stdin.read(&mut byte) => r.unwrap_or(0),
            _ = shared.cancel.cancelled() => 0,
        };
        if n == 0 {
            break;
        }
        if byte[0] != b'\n' && byte[0] != b'\r' {
            line.push(byte[0]);
            continue;
        }
        let cmd = String::from_utf8_lossy(&line).into_owned();
        line.clear();
        if cmd.trim() == "exit" || cmd.trim().starts_with("exit ") {
            status = cmd.trim()[4..].trim().parse().unwrap_or(status);
            break;
        }
        if !cmd.trim().is_empty() {
            // The shell's stdin is the rest of the session; commands here do not read it.
            let cmd_io = Stdio {
                stdin: In::new(Source::Empty),
                ..stdio.clone()
            };
            status = shell.run_script(&cmd, cmd_io).await;
            shared.record(&cmd, status);
        }
        if pty {
            let _ = stdio.stdout.print(&prompt).await;
        }
        let _ = stdio.stdout.flush().await;
    }
    finish(&write, stdio, status).await;
}

/// The server config: the host key, quick rejections (the twin's clients retry), keepalives off.
pub(crate) fn config(host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        keys: vec![host_key],
        auth_rejection_time: Duration::from_millis(20),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(3600)),
        methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
        ..Default::default()
    }
}
