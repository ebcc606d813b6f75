//! Unpacking the `Kubeconfig` RPC's gzip'd tar.

use std::io::Read;

use crate::error::TalosError;

/// Returns the bytes of the `kubeconfig` file in a gzip'd tar.
///
/// Talos does not write the tar end-of-archive trailer, so end of input after the last entry is
/// accepted.
pub fn extract_kubeconfig(targz: &[u8]) -> Result<Vec<u8>, TalosError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(targz));
    let entries = archive
        .entries()
        .map_err(|source| TalosError::UnpackKubeconfig { source })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| TalosError::UnpackKubeconfig { source })?;
        let is_kubeconfig = entry
            .path()
            .map_err(|source| TalosError::UnpackKubeconfig { source })?
            .as_os_str()
            == "kubeconfig";
        if is_kubeconfig {
            let mut out = Vec::new();
            entry
                .read_to_end(&mut out)
                .map_err(|source| TalosError::UnpackKubeconfig { source })?;
            return Ok(out);
        }
    }
    Err(TalosError::KubeconfigMissing)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn targz(name: &str, body: &[u8], trailer: bool) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.set_path(name).unwrap();
        header.set_size(body.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.extend_from_slice(body);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
        if trailer {
            tar.extend_from_slice(&[0; 1024]);
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn extracts_with_and_without_trailer() {
        for trailer in [true, false] {
            let bytes = targz("kubeconfig", b"apiVersion: v1\n", trailer);
            assert_eq!(extract_kubeconfig(&bytes).unwrap(), b"apiVersion: v1\n");
        }
    }

    #[test]
    fn missing_file_and_garbage_are_errors() {
        let bytes = targz("other", b"x", false);
        assert!(matches!(
            extract_kubeconfig(&bytes),
            Err(TalosError::KubeconfigMissing)
        ));
        assert!(matches!(
            extract_kubeconfig(b"not gzip"),
            Err(TalosError::UnpackKubeconfig { .. })
        ));
    }
}
