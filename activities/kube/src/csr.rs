//! The decision whether a kubelet-serving certificate signing request may be approved.
//!
//! Kubernetes does not approve kubelet serving certificates by itself (only client ones), and
//! the signer does not check that the requested names belong to the node. An approver that
//! approves everything lets any node obtain a serving certificate for another node's address.
//! [`decide`] approves a request only when all of this holds:
//!
//! - signer `kubernetes.io/kubelet-serving`, not yet approved or denied;
//! - requested by `system:node:<name>` for a node the caller knows, in group `system:nodes`;
//! - usages within `digital signature`, `key encipherment`, `server auth`, including `server auth`;
//! - the PEM request's subject is `CN=system:node:<name>, O=system:nodes`;
//! - it has at least one SAN, and every SAN is that node's name or one of its addresses
//!   (no e-mail, URI or other names).

use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// Signer of kubelet serving certificates.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// A node as the provisioner knows it (from Hetzner, not from the node's own report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Kubernetes node name (the server name).
    pub name: String,
    /// Every address the node may put into its serving certificate: the addresses the CCM
    /// reports for it — private IP, public IPv4 and, when the server has one, its IPv6
    /// (`<prefix>::1`). A SAN outside this list keeps the request pending.
    pub addresses: Vec<IpAddr>,
}

/// The parts of a CertificateSigningRequest the decision looks at.
#[derive(Debug, Clone, Default)]
pub struct CsrFacts {
    /// `metadata.name`.
    pub name: String,
    /// `spec.signerName`.
    pub signer_name: String,
    /// `spec.username`.
    pub username: String,
    /// `spec.groups`.
    pub groups: Vec<String>,
    /// `spec.usages`.
    pub usages: Vec<String>,
    /// `spec.request` (PEM bytes, already base64-decoded).
    pub request: Vec<u8>,
    /// Whether `status.conditions` holds `Approved`, `Denied` or `Failed`.
    pub decided: bool,
}

/// Outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approve it.
    Approve,
    /// Not a kubelet-serving request, or already decided: not ours to judge, not reported.
    Ignore,
    /// A pending kubelet-serving request that fails a check: left pending, reported with the reason.
    Refuse(String),
}

const ALLOWED_USAGES: [&str; 3] = ["digital signature", "key encipherment", "server auth"];

/// Decides about one CSR against the known nodes.
pub fn decide(csr: &CsrFacts, nodes: &[NodeIdentity]) -> Decision {
    if csr.signer_name != KUBELET_SERVING_SIGNER || csr.decided {
        return Decision::Ignore;
    }
    match check(csr, nodes) {
        Ok(()) => Decision::Approve,
        Err(reason) => Decision::Refuse(reason),
    }
}

fn check(csr: &CsrFacts, nodes: &[NodeIdentity]) -> Result<(), String> {
    let node_name = csr
        .username
        .strip_prefix("system:node:")
        .ok_or_else(|| format!("requested by {:?}, not a node", csr.username))?;
    let node = nodes
        .iter()
        .find(|n| n.name == node_name)
        .ok_or_else(|| format!("node {node_name:?} is not part of this cluster"))?;
    if !csr.groups.iter().any(|g| g == "system:nodes") {
        return Err("requester is not in group system:nodes".to_owned());
    }
    if let Some(u) = csr
        .usages
        .iter()
        .find(|u| !ALLOWED_USAGES.contains(&u.as_str()))
    {
        return Err(format!(
            "usage {u:?} is not allowed for a serving certificate"
        ));
    }
    if !csr.usages.iter().any(|u| u == "server auth") {
        return Err("usage \"server auth\" missing".to_owned());
    }

    let pem = x509_parser::pem::parse_x509_pem(&csr.request)
        .map_err(|e| format!("request is not PEM: {e}"))?
        .1;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(format!("request PEM block is {:?}", pem.label));
    }
    let (_, req) = X509CertificationRequest::from_der(&pem.contents)
        .map_err(|e| format!("request is not a CSR: {e}"))?;
    let subject = &req.certification_request_info.subject;
    let cns: Vec<&str> = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    if cns != [csr.username.as_str()] {
        return Err(format!("subject CN {cns:?} is not {:?}", csr.username));
    }
    let orgs: Vec<&str> = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect();
    if orgs != ["system:nodes"] {
        return Err(format!("subject O {orgs:?} is not [\"system:nodes\"]"));
    }

    let mut sans = 0usize;
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                sans += 1;
                match name {
                    GeneralName::DNSName(dns) => {
                        if *dns != node.name {
                            return Err(format!(
                                "DNS name {dns:?} does not belong to node {}",
                                node.name
                            ));
                        }
                    }
                    GeneralName::IPAddress(raw) => {
                        let ip = ip_from_bytes(raw)
                            .ok_or_else(|| format!("malformed IP SAN of {} bytes", raw.len()))?;
                        if !node.addresses.contains(&ip) {
                            return Err(format!("IP {ip} does not belong to node {}", node.name));
                        }
                    }
                    other => return Err(format!("SAN {other} is not allowed")),
                }
            }
        }
    }
    if sans == 0 {
        return Err("no subject alternative names".to_owned());
    }
    Ok(())
}

fn ip_from_bytes(raw: &[u8]) -> Option<IpAddr> {
    match raw.len() {
        4 => <[u8; 4]>::try_from(raw).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(raw).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    /// A PEM CSR with the given CN, O and SANs.
    pub(crate) fn csr_pem(cn: &str, org: &str, sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, org);
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let csr = params
            .serialize_request(&key)
            .unwrap_or_else(|e| panic!("{e}"));
        csr.pem().unwrap_or_else(|e| panic!("{e}")).into_bytes()
    }

    pub(crate) fn node() -> NodeIdentity {
        NodeIdentity {
            name: "demo-worker-1".into(),
            addresses: vec![
                "10.0.1.3".parse().unwrap_or(IpAddr::from([0; 4])),
                "127.5.0.7".parse().unwrap_or(IpAddr::from([0; 4])),
            ],
        }
    }

    pub(crate) fn facts(request: Vec<u8>) -> CsrFacts {
        CsrFacts {
            name: "csr-1".into(),
            signer_name: KUBELET_SERVING_SIGNER.into(),
            username: "system:node:demo-worker-1".into(),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            usages: vec!["digital signature".into(), "server auth".into()],
            request,
            decided: false,
        }
    }

    fn ip(s: &str) -> SanType {
        SanType::IpAddress(s.parse().unwrap_or(IpAddr::from([0; 4])))
    }

    fn dns(s: &str) -> SanType {
        SanType::DnsName(s.try_into().unwrap_or_else(|e| panic!("{e}")))
    }

    fn good_request() -> Vec<u8> {
        csr_pem(
            "system:node:demo-worker-1",
            "system:nodes",
            vec![dns("demo-worker-1"), ip("10.0.1.3"), ip("127.5.0.7")],
        )
    }

    #[test]
    fn matching_request_is_approved() {
        assert_eq!(decide(&facts(good_request()), &[node()]), Decision::Approve);
    }

    #[test]
    fn ip_of_another_machine_is_refused() {
        let req = csr_pem(
            "system:node:demo-worker-1",
            "system:nodes",
            vec![dns("demo-worker-1"), ip("10.0.1.3"), ip("10.0.1.9")],
        );
        match decide(&facts(req), &[node()]) {
            Decision::Refuse(r) => assert!(r.contains("10.0.1.9"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreign_dns_name_is_refused() {
        let req = csr_pem(
            "system:node:demo-worker-1",
            "system:nodes",
            vec![dns("kubernetes.default"), ip("10.0.1.3")],
        );
        assert!(
            matches!(decide(&facts(req), &[node()]), Decision::Refuse(r) if r.contains("kubernetes.default"))
        );
    }

    #[test]
    fn unknown_node_and_wrong_requester_are_refused() {
        let mut f = facts(good_request());
        f.username = "system:node:demo-worker-9".into();
        assert!(
            matches!(decide(&f, &[node()]), Decision::Refuse(r) if r.contains("not part of this cluster"))
        );
        let mut f = facts(good_request());
        f.username = "admin".into();
        assert!(matches!(decide(&f, &[node()]), Decision::Refuse(r) if r.contains("not a node")));
        let mut f = facts(good_request());
        f.groups = vec!["system:authenticated".into()];
        assert!(matches!(decide(&f, &[node()]), Decision::Refuse(_)));
    }

    #[test]
    fn subject_must_name_the_requesting_node() {
        // Node 1 asks for a certificate whose CN names node 2.
        let req = csr_pem(
            "system:node:demo-worker-2",
            "system:nodes",
            vec![ip("10.0.1.3")],
        );
        assert!(matches!(decide(&facts(req), &[node()]), Decision::Refuse(r) if r.contains("CN")));
        let req = csr_pem(
            "system:node:demo-worker-1",
            "system:masters",
            vec![ip("10.0.1.3")],
        );
        assert!(matches!(decide(&facts(req), &[node()]), Decision::Refuse(r) if r.contains("O ")));
    }

    #[test]
    fn client_usages_email_sans_and_empty_sans_are_refused() {
        let mut f = facts(good_request());
        f.usages.push("client auth".into());
        assert!(matches!(decide(&f, &[node()]), Decision::Refuse(r) if r.contains("client auth")));
        let mut f = facts(good_request());
        f.usages = vec!["digital signature".into()];
        assert!(matches!(decide(&f, &[node()]), Decision::Refuse(r) if r.contains("server auth")));
        let req = csr_pem(
            "system:node:demo-worker-1",
            "system:nodes",
            vec![
                ip("10.0.1.3"),
                SanType::Rfc822Name("a@b.c".try_into().unwrap_or_else(|e| panic!("{e}"))),
            ],
        );
        assert!(matches!(
            decide(&facts(req), &[node()]),
            Decision::Refuse(_)
        ));
        let req = csr_pem("system:node:demo-worker-1", "system:nodes", vec![]);
        assert!(
            matches!(decide(&facts(req), &[node()]), Decision::Refuse(r) if r.contains("no subject alternative names"))
        );
    }

    #[test]
    fn other_signers_and_decided_requests_are_ignored() {
        let mut f = facts(good_request());
        f.signer_name = "kubernetes.io/kube-apiserver-client-kubelet".into();
        assert_eq!(decide(&f, &[node()]), Decision::Ignore);
        let mut f = facts(good_request());
        f.decided = true;
        assert_eq!(decide(&f, &[node()]), Decision::Ignore);
    }

    #[test]
    fn garbage_request_is_refused_not_panicking() {
        for bytes in [
            b"not pem".to_vec(),
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                .to_vec(),
        ] {
            assert!(matches!(
                decide(&facts(bytes), &[node()]),
                Decision::Refuse(_)
            ));
        }
    }
}
