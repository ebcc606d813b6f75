//! Writing a compressed raw disk image from the rescue system: [`write_command`] and
//! [`write_image`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{SshError, SshErrorKind};
use crate::key::BuilderKey;
use crate::session::{Endpoint, Session};

/// Where and how long [`write_image`] writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOptions {
    /// The block device (or file) to write: `/dev/sda` on Hetzner Cloud servers.
    pub disk: String,
    /// How long the whole pipeline may take.
    pub timeout: Duration,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            disk: "/dev/sda".into(),
            timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// What [`write_image`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageWrite {
    /// Bytes `dd` wrote (the decompressed image size).
    pub bytes: u64,
    /// The disk written.
    pub disk: String,
}

/// The shell command that writes the `.raw.xz` image at `url` onto `disk`:
///
/// ```text
/// set -o pipefail; blkdiscard --force /dev/sda 2>/dev/null || true; wget -q -O - 'URL' | xz -d | dd of=/dev/sda bs=4M iflag=fullblock conv=fsync && sync
/// ```
///
/// `pipefail` makes a failed download or decompression fail the whole command (without it
/// only `dd`'s status counts, and a truncated image looks written). `blkdiscard` first keeps the
/// snapshot small (its failure, e.g. on a file, is ignored). `dd` prints its byte count on
/// stderr, which [`write_image`] checks.
pub fn write_command(url: &str, disk: &str) -> Result<String, SshError> {
    let safe = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| {
                b.is_ascii_graphic() && !matches!(b, b'\'' | b'"' | b'\\' | b'`' | b'$' | b';')
            })
    };
    if !safe(url) || !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(SshError::new(
            SshErrorKind::Config,
            "build the image write command",
            format!("{url:?} is not an http(s) URL without quotes, spaces or shell characters"),
        ));
    }
    if !safe(disk) || !disk.starts_with('/') {
        return Err(SshError::new(
            SshErrorKind::Config,
            "build the image write command",
            format!("{disk:?} is not an absolute device path"),
        ));
    }
    Ok(format!(
        "set -o pipefail; blkdiscard --force {disk} 2>/dev/null || true; \
         wget -q -O - '{url}' | xz -d | dd of={disk} bs=4M iflag=fullblock conv=fsync && sync"
    ))
}

/// The byte count from `dd`'s summary on stderr (`123456 bytes (123 kB, 121 KiB) copied, …`,
/// GNU and BusyBox alike): the last line that starts with a number followed by ` bytes`.
pub fn parse_dd_bytes(stderr: &str) -> Option<u64> {
    stderr.lines().rev().find_map(|line| {
        let (number, rest) = line.trim().split_once(' ')?;
        if !rest.starts_with("bytes") {
            return None;
        }
        number.parse().ok()
    })
}

/// Writes the image at `url` onto the rescue system's disk through [`write_command`].
///
/// Connects as root with `key`, refusing any host key but `host_key` (pinned by
/// [`crate::probe`] earlier in the run). Fails when the pipeline exits non-zero (any stage:
/// download, `xz`, `dd`), when `dd` reports no byte count, or when it wrote nothing.
/// Writing again is safe: the whole disk is rewritten.
pub async fn write_image(
    endpoint: Endpoint,
    key: &BuilderKey,
    host_key: &str,
    url: &str,
    opts: &WriteOptions,
) -> Result<ImageWrite, SshError> {
    let command = write_command(url, &opts.disk)?;
    let session = Session::connect(endpoint, key, Some(host_key)).await?;
    let out = session.exec(&command, opts.timeout).await?;
    session.close().await;
    let op = format!("write {url} to {}", opts.disk);
    out.check_success(&op)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let bytes = parse_dd_bytes(&stderr).ok_or_else(|| {
        SshError::new(
            SshErrorKind::Check,
            &op,
            format!("dd reported no byte count: {}", out.stderr_tail()),
        )
    })?;
    if bytes == 0 {
        return Err(SshError::new(
            SshErrorKind::Check,
            &op,
            "dd wrote 0 bytes: the image is empty",
        ));
    }
    Ok(ImageWrite {
        bytes,
        disk: opts.disk.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dd_summaries_parse() {
        let gnu = "some warning\n4194304 bytes (4.2 MB, 4.0 MiB) copied, 0.0123 s, 341 MB/s\n";
        assert_eq!(parse_dd_bytes(gnu), Some(4_194_304));
        let busybox =
            "1+0 records in\n1+0 records out\n512 bytes (512B) copied, 0.000 seconds, 1MB/s";
        assert_eq!(parse_dd_bytes(busybox), Some(512));
        assert_eq!(parse_dd_bytes("dd: error writing\n"), None);
    }

    #[test]
    fn command_refuses_shell_characters() {
        let cmd =
            write_command("http://h/image/x/v1.11.6/hcloud-amd64.raw.xz", "/dev/sda").unwrap();
        assert!(cmd.starts_with("set -o pipefail;"), "{cmd}");
        assert!(cmd.contains("conv=fsync"), "{cmd}");
        assert!(write_command("http://h/x';rm -rf /", "/dev/sda").is_err());
        assert!(write_command("ftp://h/x", "/dev/sda").is_err());
        assert!(write_command("http://h/x", "sda").is_err());
    }
}
