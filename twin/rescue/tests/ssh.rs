//! The rescue system over SSH with a russh client: the image-write pipeline against the twin's
//! factory into the disk file, pipefail and truncation, key-only root login, the host key, stdin.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use hk8s_twin_factory::{Arch, Factory, Inspection, image, schematic};
use hk8s_twin_rescue::client::{self, ClientError};
use hk8s_twin_rescue::{BlockDevice, RescueOptions, RescueServer};

struct Bench {
    _dir: tempfile::TempDir,
    factory_url: String,
    factory: Factory,
    rescue: RescueServer,
    key: russh::keys::PrivateKey,
    disk: BlockDevice,
}

async fn bench(disk_size: u64) -> Bench {
    let factory = Factory::new(["v1.11.6".to_string()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let factory_url = format!("http://{}", listener.local_addr().unwrap());
    let router = hk8s_twin_factory::router(factory.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let disk = BlockDevice::create(dir.path().join("sda"), disk_size).unwrap();
    let (key, public) = client::generate_key();
    let rescue = RescueServer::start(RescueOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        authorized_keys: vec![public],
        hostname: "rescue".into(),
        uname_machine: "x86_64".into(),
        disk: disk.clone(),
        power: None,
    })
    .await
    .unwrap();
    Bench {
        _dir: dir,
        factory_url,
        factory,
        rescue,
        key,
        disk,
    }
}

impl Bench {
    fn image_url(&self, version: &str, arch: &str) -> String {
        format!(
            "{}/image/{}/{version}/hcloud-{arch}.raw.xz",
            self.factory_url,
            schematic::VANILLA_ID
        )
    }

    async fn run(&self, command: &str) -> client::ExecOutput {
        client::exec(self.rescue.addr(), "root", &self.key, command, b"")
            .await
            .unwrap()
    }

    fn disk(&self) -> Inspection {
        image::inspect(
            &self
                .disk
                .read_prefix(image::IMAGE_SIZE as u64 + 4096)
                .unwrap(),
        )
    }
}

#[tokio::test]
async fn the_image_write_pipeline_writes_a_bootable_disk() {
    let b = bench(40 * 1024 * 1024).await;
    let cmd = format!(
        "set -o pipefail; wget -qO- '{}' | xz -d | dd of=/dev/sda bs=4M conv=fsync",
        b.image_url("v1.11.6", "amd64")
    );
    let out = b.run(&cmd).await;
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    assert!(out.stdout.is_empty());
    let stderr = out.stderr_text();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].ends_with(" records in") && lines[1].ends_with(" records out"));
    assert!(
        lines[2].starts_with("2097152 bytes (2.1 MB, 2.0 MiB) copied, "),
        "{stderr}"
    );
    match b.disk() {
        Inspection::Talos(info) => {
            assert_eq!(info.arch, Arch::Amd64);
            assert_eq!(info.talos_version, "v1.11.6");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.factory.downloads(), 1);
    // hk8s's own command line (activities/ssh), byte for byte in its shape.
    let out = b
        .run(&format!(
            "set -o pipefail; blkdiscard --force /dev/sda 2>/dev/null || true; wget -q -O - '{}' | xz -d | dd of=/dev/sda bs=4M iflag=fullblock conv=fsync && sync",
            b.image_url("v1.11.6", "amd64")
        ))
        .await;
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    assert!(
        out.stderr_text().starts_with(
            "0+1 records in\n0+1 records out\n2097152 bytes (2.1 MB, 2.0 MiB) copied, "
        ),
        "{}",
        out.stderr_text()
    );
    assert!(matches!(b.disk(), Inspection::Talos(_)));
    // The follow-up checks a client makes.
    let out = b
        .run("sync && uname -m && blockdev --getsize64 /dev/sda")
        .await;
    assert_eq!(out.stdout_text(), format!("x86_64\n{}\n", 40 * 1024 * 1024));
    // curl works the same way.
    let out = b
        .run(&format!(
            "blkdiscard /dev/sda && curl -fsSL {} | xzcat > /dev/sda",
            b.image_url("v1.11.6", "arm64")
        ))
        .await;
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    assert!(matches!(b.disk(), Inspection::Talos(i) if i.arch == Arch::Arm64));
    let log = b.rescue.exec_log();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0].command, cmd);
    assert_eq!(log[0].status, 0);
}

#[tokio::test]
async fn failures_propagate_through_pipefail_and_leave_no_image() {
    let b = bench(8 * 1024 * 1024).await;
    let missing = b.image_url("v1.99.0", "amd64");
    // Without pipefail the pipeline's status is dd's (0: it copied nothing).
    let out = b
        .run(&format!(
            "wget -qO- {missing} | xz -d | dd of=/dev/sda status=none"
        ))
        .await;
    assert_eq!(out.status, Some(0));
    // With pipefail the rightmost failure wins: xz on empty input (wget's 8 is further left).
    let out = b
        .run(&format!(
            "set -o pipefail; wget -qO- {missing} | xz -d | dd of=/dev/sda status=none"
        ))
        .await;
    assert_eq!(out.status, Some(1));
    assert_eq!(out.stderr_text(), "xz: (stdin): Unexpected end of input\n");
    assert_eq!(
        b.run(&format!("wget -qO- {missing} > /dev/null"))
            .await
            .status,
        Some(8)
    );
    let out = b.run(&format!("curl -fsS {missing}")).await;
    assert_eq!(out.status, Some(22));
    assert_eq!(
        out.stderr_text(),
        "curl: (22) The requested URL returned error: 404\n"
    );
    // Truncated download: xz notices, the disk holds no valid image.
    let out = b
        .run(&format!(
            "set -o pipefail; wget -qO- {} | head -c 100000 | xz -d | dd of=/dev/sda bs=4M",
            b.image_url("v1.11.6", "amd64")
        ))
        .await;
    assert_eq!(out.status, Some(1));
    assert!(
        out.stderr_text()
            .starts_with("xz: (stdin): Unexpected end of input\n")
    );
    assert!(matches!(
        b.disk(),
        Inspection::Corrupt(_) | Inspection::NotAnImage
    ));
    // Unreachable hosts: nothing leaves loopback.
    let out = b
        .run("wget -q -O /tmp/x https://factory.talos.dev/image/x/v1.11.6/hcloud-amd64.raw.xz")
        .await;
    assert_eq!(out.status, Some(4));
    assert!(out.stderr_text().contains("unable to resolve host address"));
    let out = b.run("curl -fsS http://127.0.0.1:1/x").await;
    assert_eq!(out.status, Some(7));
    let out = b.run("frobnicate /dev/sda").await;
    assert_eq!(out.status, Some(127));
    assert_eq!(
        out.stderr_text(),
        "bash: line 1: frobnicate: command not found\n"
    );
}

#[tokio::test]
async fn only_root_with_an_authorized_key_gets_in_and_the_host_key_is_per_boot() {
    let b = bench(1024 * 1024).await;
    let (stranger, _) = client::generate_key();
    let addr: SocketAddr = b.rescue.addr();
    assert!(matches!(
        client::exec(addr, "root", &stranger, "true", b"").await,
        Err(ClientError::Denied)
    ));
    assert!(matches!(
        client::exec(addr, "admin", &b.key, "true", b"").await,
        Err(ClientError::Denied)
    ));
    assert_eq!(b.rescue.logins(), 0);
    let out = b.run("true").await;
    assert_eq!(out.status, Some(0));
    assert_eq!(&out.host_key, b.rescue.host_key());
    assert!(b.rescue.host_key_openssh().starts_with("ssh-ed25519 "));
    assert_eq!(b.rescue.logins(), 1);
    // Another boot, another host key.
    let other = bench(1024 * 1024).await;
    assert_ne!(other.rescue.host_key(), b.rescue.host_key());
    // After stop, nothing listens.
    let addr = other.rescue.addr();
    other.rescue.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn stdin_carries_an_image_too() {
    let b = bench(4 * 1024 * 1024).await;
    let xz = b
        .factory
        .image_xz(&hk8s_twin_factory::ImageInfo {
            talos_version: "v1.11.6".into(),
            arch: Arch::Amd64,
            schematic: schematic::VANILLA_ID.into(),
        })
        .await
        .unwrap()
        .unwrap();
    let out = client::exec(
        b.rescue.addr(),
        "root",
        &b.key,
        "xz -d | dd of=/dev/sda bs=4M iflag=fullblock",
        &xz,
    )
    .await
    .unwrap();
    assert_eq!(out.status, Some(0), "{}", out.stderr_text());
    assert!(
        out.stderr_text()
            .starts_with("0+1 records in\n0+1 records out\n2097152 bytes"),
        "{}",
        out.stderr_text()
    );
    assert!(matches!(b.disk(), Inspection::Talos(_)));
}
