//! The image write against a real OpenSSH server: `sshd` on a loopback port with a temporary
//! host key and authorized key, the disk a file, the image served over HTTP.
//!
//! Skips locally without `sshd` (set `HK8S_SSHD`; `scripts/test` installs openssh-server) and
//! fails under CI.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hk8s_ssh::{BuilderKey, Endpoint, SshErrorKind, WriteOptions, probe, write_image};
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, PrivateKey};

/// `sshd` found through `HK8S_SSHD` or `PATH`, as an absolute path (sshd re-executes itself).
fn sshd() -> Option<PathBuf> {
    let path = hk8s_testkit::tool("sshd", "HK8S_SSHD", "-V")?;
    if path.is_absolute() {
        return Some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(&path))
            .find(|candidate| candidate.is_file())
    })
}

struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn start_sshd(sshd: &Path, dir: &Path, authorized: &BuilderKey) -> Sshd {
    let host = PrivateKey::from(Ed25519Keypair::from_seed(&[7u8; 32]));
    let host_key = dir.join("host_ed25519");
    write_private(&host_key, &host.to_openssh(LineEnding::LF).unwrap());
    let authorized_keys = dir.join("authorized_keys");
    write_private(
        &authorized_keys,
        &format!("{}\n", authorized.public_openssh().unwrap()),
    );
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n",
            host_key.display(),
            authorized_keys.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    // Privilege separation needs this folder (as root); without root sshd runs without it.
    let _ = std::fs::create_dir_all("/run/sshd");
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Sshd { child, port }
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("xz")
        .args(["-c", "-1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("xz runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Serves `/image.raw.xz` and a truncated `/broken.raw.xz` on a loopback port.
async fn serve_images(xz_image: Vec<u8>) -> String {
    let broken = xz_image[..xz_image.len() / 2].to_vec();
    let app = axum::Router::new()
        .route(
            "/image.raw.xz",
            axum::routing::get(move || {
                let body = xz_image.clone();
                async move { body }
            }),
        )
        .route(
            "/broken.raw.xz",
            axum::routing::get(move || {
                let body = broken.clone();
                async move { body }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn writes_a_real_raw_xz_through_openssh() {
    let Some(sshd) = sshd() else { return };
    if hk8s_testkit::tool("xz", "HK8S_XZ", "--version").is_none()
        || hk8s_testkit::tool("wget", "HK8S_WGET", "--version").is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = BuilderKey::derive(b"test material", "run/amd64");
    let server = start_sshd(&sshd, dir.path(), &key);
    let endpoint = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: server.port,
    };

    // sshd needs a moment to listen: the same patient retry the workflow's step policy gives.
    let probed = hk8s_testkit::eventually("sshd answers", || async {
        probe(endpoint, &key).await.ok()
    })
    .await;
    assert!(probed.host_key.starts_with("SHA256:"), "{probed:?}");
    assert_eq!(probed.machine, std::env::consts::ARCH);

    // A disk image that is not a multiple of dd's 4 MiB block.
    let image: Vec<u8> = (0..(5 * 1024 * 1024 + 4096u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let base = serve_images(xz(&image)).await;
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, b"old contents that must go").unwrap();
    let opts = WriteOptions {
        disk: disk.display().to_string(),
        ..WriteOptions::default()
    };

    let written = write_image(
        endpoint,
        &key,
        &probed.host_key,
        &format!("{base}/image.raw.xz"),
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(written.bytes, image.len() as u64);
    assert!(
        std::fs::read(&disk).unwrap() == image,
        "the disk holds the image"
    );

    // A stage in the middle of the pipe fails (xz on a truncated stream): the step fails,
    // although dd at the end of the pipe exits 0.
    let err = write_image(
        endpoint,
        &key,
        &probed.host_key,
        &format!("{base}/broken.raw.xz"),
        &opts,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, SshErrorKind::CommandFailed, "{err}");
    assert!(err.exit_status.is_some_and(|s| s != 0), "{err}");

    // A download that fails (404) fails the step too.
    let err = write_image(
        endpoint,
        &key,
        &probed.host_key,
        &format!("{base}/nope.raw.xz"),
        &opts,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, SshErrorKind::CommandFailed, "{err}");

    // Another host key than the pinned one is refused before anything is sent.
    let err = write_image(
        endpoint,
        &key,
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &format!("{base}/image.raw.xz"),
        &opts,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, SshErrorKind::HostKeyMismatch, "{err}");

    // A key the server does not know is refused (permanent).
    let other = BuilderKey::derive(b"other material", "run/amd64");
    let err = probe(endpoint, &other).await.unwrap_err();
    assert_eq!(err.kind, SshErrorKind::Auth, "{err}");
}
