//! The twin's Talos disk images: what the factory serves (decompressed) and what a server's disk
//! must hold to boot Talos.
//!
//! A real `hcloud-<arch>.raw.xz` is a GPT disk of ≈ 1 GiB; the twin's is [`IMAGE_SIZE`] bytes
//! (2 MiB) laid out so a truncated, garbage or wrong-arch write can be told from a good one:
//!
//! - bytes `0..4096`: a text header, zero padded: [`MAGIC`] then `key: value` lines
//!   `talos-version`, `arch` (`amd64`/`arm64`), `platform` (`hcloud`), `schematic` (64 hex),
//!   `size` (the image length in bytes) and `payload-sha256`, then an empty line;
//! - bytes `4096..4096+256 KiB`: a deterministic pseudo-random stream (SHA-256 in counter mode
//!   over the header fields), so the image does not compress to nothing;
//! - zeros, then the last 512 bytes end with [`END_MARKER`];
//! - `payload-sha256` is the SHA-256 of bytes `4096..size`.
//!
//! [`inspect`] reads a disk's first bytes and says whether they hold such an image.

use std::fmt;

use sha2::{Digest, Sha256};

/// The first line of every twin image.
pub const MAGIC: &str = "HK8S-TWIN-TALOS-IMAGE v1\n";
/// The text the last bytes of an image end with.
pub const END_MARKER: &[u8] = b"HK8S-TWIN-TALOS-IMAGE END\n";
/// The length of a raw image in bytes (2 MiB).
pub const IMAGE_SIZE: usize = 2 * 1024 * 1024;
/// The length of the header block.
pub const HEADER_SIZE: usize = 4096;
const NOISE_SIZE: usize = 256 * 1024;

/// A CPU architecture as the image factory names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    /// `amd64` (Hetzner `x86`, `uname -m` `x86_64`).
    Amd64,
    /// `arm64` (Hetzner `arm`, `uname -m` `aarch64`).
    Arm64,
}

impl Arch {
    /// `amd64` or `arm64`, as in `hcloud-<arch>.raw.xz`.
    pub fn factory_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// `x86_64` or `aarch64`, what `uname -m` prints.
    pub fn uname_machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// `x86` or `arm`, the Hetzner API's architecture.
    pub fn hetzner_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86",
            Arch::Arm64 => "arm",
        }
    }

    /// Parses any of the three spellings (`amd64`/`x86`/`x86_64`, `arm64`/`arm`/`aarch64`).
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "amd64" | "x86" | "x86_64" => Some(Arch::Amd64),
            "arm64" | "arm" | "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.factory_name())
    }
}

/// What an image is an image of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageInfo {
    /// Talos version, e.g. `v1.11.6`.
    pub talos_version: String,
    /// Architecture.
    pub arch: Arch,
    /// Schematic ID (64 lower-hex characters).
    pub schematic: String,
}

/// Builds the raw (decompressed) image for `info`; the same input always gives the same bytes.
pub fn generate(info: &ImageInfo) -> Vec<u8> {
    let mut image = vec![0u8; IMAGE_SIZE];
    // Payload: noise after the header, zeros, the end marker.
    let seed = Sha256::digest(
        format!(
            "{}\n{}\n{}\n",
            info.talos_version, info.arch, info.schematic
        )
        .as_bytes(),
    );
    let noise = &mut image[HEADER_SIZE..HEADER_SIZE + NOISE_SIZE];
    for (counter, chunk) in noise.chunks_mut(32).enumerate() {
        let mut h = Sha256::new();
        h.update(seed);
        h.update((counter as u64).to_le_bytes());
        let block = h.finalize();
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    let end = IMAGE_SIZE - END_MARKER.len();
    image[end..].copy_from_slice(END_MARKER);
    let payload_sha = hex::encode(Sha256::digest(&image[HEADER_SIZE..]));
    let header = header_text(info, IMAGE_SIZE, &payload_sha);
    image[..header.len()].copy_from_slice(header.as_bytes());
    image
}

fn header_text(info: &ImageInfo, size: usize, payload_sha: &str) -> String {
    format!(
        "{MAGIC}talos-version: {}\narch: {}\nplatform: hcloud\nschematic: {}\nsize: {size}\npayload-sha256: {payload_sha}\n\n",
        info.talos_version, info.arch, info.schematic
    )
}

/// What a disk's first bytes hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// A complete, intact twin Talos image.
    Talos(ImageInfo),
    /// No image header at offset 0 (an empty disk, another OS, garbage).
    NotAnImage,
    /// A header, but the image is not intact (truncated or overwritten); the reason says how.
    Corrupt(String),
}

impl Inspection {
    /// The Talos image this disk boots on a server of `arch`, if any.
    pub fn boots_on(&self, arch: Arch) -> Option<&ImageInfo> {
        match self {
            Inspection::Talos(info) if info.arch == arch => Some(info),
            _ => None,
        }
    }
}

/// Inspects a disk's first bytes (at least [`IMAGE_SIZE`] of them, or the whole disk if shorter).
pub fn inspect(disk: &[u8]) -> Inspection {
    if !disk.starts_with(MAGIC.as_bytes()) {
        return Inspection::NotAnImage;
    }
    let header_end = disk.len().min(HEADER_SIZE);
    let header = &disk[..header_end];
    let text_end = header
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + 1)
        .unwrap_or(header.len());
    let Ok(text) = std::str::from_utf8(&header[MAGIC.len()..text_end]) else {
        return Inspection::Corrupt("the header is not text".into());
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .map(str::to_string)
    };
    let (Some(version), Some(arch), Some(schematic), Some(size), Some(sha)) = (
        field("talos-version"),
        field("arch"),
        field("schematic"),
        field("size"),
        field("payload-sha256"),
    ) else {
        return Inspection::Corrupt("the header lacks a field".into());
    };
    let Some(arch) = Arch::parse(&arch) else {
        return Inspection::Corrupt(format!("unknown arch {arch}"));
    };
    let Ok(size) = size.parse::<usize>() else {
        return Inspection::Corrupt(format!("bad size {size}"));
    };
    if size < HEADER_SIZE || disk.len() < size {
        return Inspection::Corrupt(format!(
            "the image is {size} bytes but only {} were given",
            disk.len()
        ));
    }
    if hex::encode(Sha256::digest(&disk[HEADER_SIZE..size])) != sha {
        return Inspection::Corrupt("payload checksum mismatch (truncated or overwritten)".into());
    }
    Inspection::Talos(ImageInfo {
        talos_version: version,
        arch,
        schematic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(arch: Arch) -> ImageInfo {
        ImageInfo {
            talos_version: "v1.11.6".into(),
            arch,
            schematic: crate::schematic::VANILLA_ID.into(),
        }
    }

    #[test]
    fn a_generated_image_inspects_as_itself_and_is_deterministic() {
        let image = generate(&info(Arch::Arm64));
        assert_eq!(image.len(), IMAGE_SIZE);
        assert_eq!(image, generate(&info(Arch::Arm64)));
        assert_ne!(image, generate(&info(Arch::Amd64)));
        assert_eq!(inspect(&image), Inspection::Talos(info(Arch::Arm64)));
        assert!(inspect(&image).boots_on(Arch::Arm64).is_some());
        assert!(inspect(&image).boots_on(Arch::Amd64).is_none());
        // Followed by more disk: still the same image.
        let mut disk = image.clone();
        disk.extend_from_slice(&[0u8; 8192]);
        assert_eq!(inspect(&disk), Inspection::Talos(info(Arch::Arm64)));
    }

    #[test]
    fn truncated_overwritten_and_foreign_disks_are_not_images() {
        let image = generate(&info(Arch::Amd64));
        assert!(matches!(
            inspect(&image[..IMAGE_SIZE / 2]),
            Inspection::Corrupt(_)
        ));
        let mut zero_tail = image.clone();
        zero_tail[IMAGE_SIZE - 100..].fill(0);
        assert!(matches!(inspect(&zero_tail), Inspection::Corrupt(_)));
        let mut flipped = image.clone();
        flipped[HEADER_SIZE + 10] ^= 1;
        assert!(matches!(inspect(&flipped), Inspection::Corrupt(_)));
        assert_eq!(inspect(&[0u8; 4096]), Inspection::NotAnImage);
        assert_eq!(inspect(b"garbage"), Inspection::NotAnImage);
        assert_eq!(inspect(&[]), Inspection::NotAnImage);
    }
}
