//! The admin kubeconfig a control plane returns from the `Kubeconfig` RPC.

use std::io::Write;

use base64::Engine;

use crate::pki::{PkiError, admin_client_cert};

/// Renders the admin kubeconfig (Talos `pkg/kubeconfig/generate.go` layout): cluster
/// `<clusterName>` at `endpoint`, user and context `admin@<clusterName>`, namespace `default`.
pub fn render(
    cluster_name: &str,
    endpoint: &str,
    k8s_ca_crt_pem: &str,
    k8s_ca_key_pem: &str,
) -> Result<String, PkiError> {
    let (cert_pem, key_pem) = admin_client_cert(k8s_ca_crt_pem, k8s_ca_key_pem)?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = format!("admin@{cluster_name}");
    Ok(format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {cluster_name}\n\
         \x20 cluster:\n\
         \x20   server: {endpoint}\n\
         \x20   certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n\
         \x20 user:\n\
         \x20   client-certificate-data: {crt}\n\
         \x20   client-key-data: {key}\n\
         contexts:\n\
         - context:\n\
         \x20   cluster: {cluster_name}\n\
         \x20   namespace: default\n\
         \x20   user: {user}\n\
         \x20 name: {user}\n\
         current-context: {user}\n",
        ca = b64(k8s_ca_crt_pem),
        crt = b64(&cert_pem),
        key = b64(&key_pem),
    ))
}

/// Packs `kubeconfig` (mode 0600) into a gzip'd tar **without** the end-of-archive trailer, as
/// Talos sends it.
pub fn targz(kubeconfig: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    header.set_path("kubeconfig")?;
    header.set_size(kubeconfig.len() as u64);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.extend_from_slice(kubeconfig);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn targz_round_trips_without_trailer() {
        let bytes = targz(b"hello").unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), 1024, "header + one data block, no trailer");
        let mut archive = tar::Archive::new(raw.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("kubeconfig"));
        assert_eq!(entry.header().mode().unwrap(), 0o600);
        let mut body = String::new();
        entry.read_to_string(&mut body).unwrap();
        assert_eq!(body, "hello");
    }
}
