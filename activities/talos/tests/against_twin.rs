//! The client against simulated Talos nodes (hk8s-twin-talos). Every node listens on its own
//! 127.77.x.y address; delays run at speed 1000.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use common::{Cluster, addr, spawn, wait_phase, within};
use hk8s_talos::{
    ApplyMode, BootstrapOutcome, ClientOptions, ErrorClass, TalosClient, TalosError, UpgradeOptions,
};
use hk8s_twin_talos::{MachineRole, NodePhase, TalosFleet};
use tonic::Code;

fn ip(c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 77, c, d)
}

fn fast() -> ClientOptions {
    ClientOptions {
        connect_timeout: std::time::Duration::from_secs(5),
        call_timeout: std::time::Duration::from_secs(20),
    }
}

async fn maintenance(addr: SocketAddr) -> TalosClient {
    TalosClient::maintenance_with(addr, fast(), None)
        .await
        .unwrap()
}

/// Applies `config` in maintenance mode and waits until the node serves mTLS.
async fn configure(node: &hk8s_twin_talos::NodeHandle, config: &[u8]) {
    wait_phase(node, NodePhase::Maintenance).await;
    let client = maintenance(addr(node)).await;
    client
        .apply_configuration(config, ApplyMode::Auto)
        .await
        .unwrap();
    wait_phase(node, NodePhase::Running).await;
}

#[tokio::test]
async fn maintenance_apply_then_secure_bootstrap_and_kubeconfig() {
    let fleet = TalosFleet::new();
    let cluster = Cluster::new("alpha");
    let cp = spawn(&fleet, ip(1, 1), "alpha-cp-1");
    wait_phase(&cp, NodePhase::Maintenance).await;

    let client = maintenance(addr(&cp)).await;
    let disks = client.disks().await.unwrap();
    assert_eq!(disks[0].device_name, "/dev/sda");

    let err = client.version().await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unimplemented));
    assert!(
        err.to_string()
            .contains("API is not implemented in maintenance mode"),
        "{err}"
    );

    let config = cluster.config("controlplane", "alpha-cp-1");
    let err = client
        .apply_configuration(&config, ApplyMode::NoReboot)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::Unimplemented));
    assert!(
        err.to_string()
            .contains("--mode='no-reboot' is not supported in maintenance mode")
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    let err = client
        .apply_configuration(&config, ApplyMode::Staged)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::Unimplemented));

    let dry = client
        .apply_configuration_dry_run(&config, ApplyMode::Auto)
        .await
        .unwrap();
    assert!(dry.mode_details.starts_with("Dry run summary:"));
    assert_eq!(cp.status().phase, NodePhase::Maintenance);

    let applied = client
        .apply_configuration(&config, ApplyMode::Auto)
        .await
        .unwrap();
    assert!(applied.warnings.is_empty());
    assert_eq!(applied.mode_details, "");
    wait_phase(&cp, NodePhase::Running).await;
    assert_eq!(cp.status().role, Some(MachineRole::ControlPlane));

    let admin = TalosClient::secure_with(addr(&cp), &cluster.admin(), fast())
        .await
        .unwrap();
    let version = admin.version().await.unwrap();
    assert_eq!(version.tag, "v1.11.6");
    assert_eq!(version.platform_name, "hcloud");

    assert_eq!(
        admin.bootstrap().await.unwrap(),
        BootstrapOutcome::Bootstrapped
    );
    assert_eq!(
        admin.bootstrap().await.unwrap(),
        BootstrapOutcome::AlreadyBootstrapped
    );
    assert!(cp.status().cluster_bootstrapped);

    let services = admin.service_list().await.unwrap();
    for id in ["etcd", "kubelet", "apid", "trustd"] {
        let s = services.iter().find(|s| s.id == id).unwrap();
        assert!(s.is_healthy(), "{s:?}");
    }
    let members = admin.etcd_member_list().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].hostname, "alpha-cp-1");
    assert_eq!(members[0].peer_urls, vec!["https://127.77.1.1:2380"]);
    assert_eq!(members[0].client_urls, vec!["https://127.77.1.1:2379"]);

    let kubeconfig = admin.kubeconfig().await.unwrap();
    check_kubeconfig(&kubeconfig, &cluster);

    // The maintenance client cannot talk to the configured node (it demands a client cert).
    let err = client.disks().await.unwrap_err();
    assert!(err.needs_client_certificate(), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    cp.stop();
}

fn check_kubeconfig(bytes: &[u8], cluster: &Cluster) {
    let doc: serde_json::Value = serde_saphyr::from_slice(bytes).unwrap();
    assert_eq!(doc["kind"], "Config");
    assert_eq!(doc["current-context"], "admin@alpha");
    assert_eq!(doc["clusters"][0]["name"], "alpha");
    assert_eq!(
        doc["clusters"][0]["cluster"]["server"],
        cluster.endpoint.as_str()
    );
    assert_eq!(doc["users"][0]["name"], "admin@alpha");
    assert_eq!(doc["contexts"][0]["context"]["namespace"], "default");
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let ca_pem = b64(&doc["clusters"][0]["cluster"]["certificate-authority-data"]);
    assert_eq!(String::from_utf8(ca_pem).unwrap(), cluster.k8s.crt_pem);
    let cert_pem = b64(&doc["users"][0]["user"]["client-certificate-data"]);
    let key_pem = b64(&doc["users"][0]["user"]["client-key-data"]);
    assert!(String::from_utf8(key_pem).unwrap().contains("PRIVATE KEY"));

    use rustls::pki_types::pem::PemObject;
    let cert = rustls::pki_types::CertificateDer::from_pem_slice(&cert_pem).unwrap();
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    let cn: Vec<_> = x509
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    let org: Vec<_> = x509
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cn, vec!["admin"]);
    assert_eq!(org, vec!["system:masters"]);

    // Chains to the config's Kubernetes CA as a client certificate (webpki: signature, validity,
    // EKU clientAuth).
    let ca =
        rustls::pki_types::CertificateDer::from_pem_slice(cluster.k8s.crt_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    verifier
        .verify_client_cert(&cert, &[], rustls::pki_types::UnixTime::now())
        .unwrap();
    // …and not to another CA.
    let other = Cluster::new("other");
    let other_ca =
        rustls::pki_types::CertificateDer::from_pem_slice(other.k8s.crt_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(other_ca).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    assert!(
        verifier
            .verify_client_cert(&cert, &[], rustls::pki_types::UnixTime::now())
            .is_err()
    );
}

#[tokio::test]
async fn validation_errors_are_invalid_argument_with_talos_messages() {
    let fleet = TalosFleet::new();
    let cluster = Cluster::new("beta");
    let node = spawn(&fleet, ip(2, 1), "beta-w-1");
    wait_phase(&node, NodePhase::Maintenance).await;
    let client = maintenance(addr(&node)).await;

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            cluster.config_with("worker", "w", &cluster.os.key_pem, "", &cluster.endpoint),
            "issuing Talos API CA key is not allowed on non-controlplane nodes (.machine.ca)",
        ),
        (
            cluster.config_with("worker", "w", "", &cluster.k8s.key_pem, &cluster.endpoint),
            "issuing Kubernetes API CA key is not allowed on non-controlplane nodes (.cluster.ca)",
        ),
        (
            cluster.config_with(
                "controlplane",
                "w",
                "",
                &cluster.k8s.key_pem,
                &cluster.endpoint,
            ),
            "issuing CA key is required for controlplane nodes (.machine.ca.key)",
        ),
        (
            cluster.config_with("worker", "w", "", "", ""),
            "cluster controlplane endpoint is required",
        ),
        (
            cluster.config_with("router", "w", "", "", &cluster.endpoint),
            "unknown machine type",
        ),
        (
            b"version: v1alpha1\nmachine: [unclosed\n  token: SUPERSECRETTOKEN\n".to_vec(),
            "failed to load config",
        ),
    ];
    for (config, want) in cases {
        let err = client
            .apply_configuration(&config, ApplyMode::Auto)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
        assert_eq!(err.class(), ErrorClass::Permanent);
        let text = format!("{err} {err:?}");
        assert!(text.contains(want), "{text} lacks {want}");
        assert!(!text.contains("SUPERSECRETTOKEN"));
        assert!(!text.contains("PRIVATE KEY"));
    }
    // Still in maintenance: nothing was accepted.
    assert_eq!(node.status().phase, NodePhase::Maintenance);
    node.stop();
}

#[tokio::test]
async fn etcd_grows_with_control_planes_and_workers_refuse_bootstrap() {
    let fleet = TalosFleet::new();
    let cluster = Cluster::new("gamma");
    let cps: Vec<_> = (1..=3)
        .map(|i| spawn(&fleet, ip(3, i), &format!("gamma-cp-{i}")))
        .collect();
    let worker = spawn(&fleet, ip(3, 10), "gamma-w-1");

    // The worker waits for a control plane to issue its apid certificate.
    wait_phase(&worker, NodePhase::Maintenance).await;
    maintenance(addr(&worker))
        .await
        .apply_configuration(&cluster.config("worker", "gamma-w-1"), ApplyMode::Auto)
        .await
        .unwrap();
    wait_phase(&worker, NodePhase::WaitingForCertificates).await;
    configure(&cps[0], &cluster.config("controlplane", "gamma-cp-1")).await;
    configure(&cps[1], &cluster.config("controlplane", "gamma-cp-2")).await;
    wait_phase(&worker, NodePhase::Running).await;

    let admin = cluster.admin();
    let cp1 = TalosClient::secure_with(addr(&cps[0]), &admin, fast())
        .await
        .unwrap();
    let err = cp1.etcd_member_list().await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(Code::Unavailable),
        "etcd not running before bootstrap"
    );

    let w = TalosClient::secure_with(addr(&worker), &admin, fast())
        .await
        .unwrap();
    let err = w.bootstrap().await.unwrap_err();
    assert_eq!(err.code(), Some(Code::FailedPrecondition));
    assert!(
        err.to_string()
            .contains("bootstrap can only be performed on a control plane node")
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    let err = w.kubeconfig().await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unimplemented));
    assert!(
        w.service_list()
            .await
            .unwrap()
            .iter()
            .all(|s| s.id != "etcd")
    );

    assert_eq!(
        cp1.bootstrap().await.unwrap(),
        BootstrapOutcome::Bootstrapped
    );
    assert_eq!(cp1.etcd_member_list().await.unwrap().len(), 2);

    configure(&cps[2], &cluster.config("controlplane", "gamma-cp-3")).await;
    within("etcd member 3", cps[2].wait_until(|s| s.etcd_member)).await;
    let members = cp1.etcd_member_list().await.unwrap();
    let mut names: Vec<_> = members.iter().map(|m| m.hostname.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["gamma-cp-1", "gamma-cp-2", "gamma-cp-3"]);

    // A second control plane refuses a second bootstrap.
    let cp2 = TalosClient::secure_with(addr(&cps[1]), &admin, fast())
        .await
        .unwrap();
    assert_eq!(
        cp2.bootstrap().await.unwrap(),
        BootstrapOutcome::AlreadyBootstrapped
    );

    // `node` metadata: cp-1 answers for cp-3 and for the worker.
    let via = cp1.clone().with_node(ip(3, 3));
    let members_via = via.etcd_member_list().await.unwrap();
    assert_eq!(members_via.len(), 3);
    let err = cp1
        .clone()
        .with_node(ip(3, 10))
        .bootstrap()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::FailedPrecondition));
    let err = cp1
        .clone()
        .with_node(ip(3, 99))
        .version()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::Unavailable));
    assert_eq!(err.class(), ErrorClass::Retryable);

    for n in cps.iter().chain([&worker]) {
        n.stop();
    }
}

#[tokio::test]
async fn wrong_ca_and_reader_are_refused() {
    let fleet = TalosFleet::new();
    let cluster = Cluster::new("delta");
    let cp = spawn(&fleet, ip(4, 1), "delta-cp-1");
    configure(&cp, &cluster.config("controlplane", "delta-cp-1")).await;

    // A client certificate from another CA (trusting the right server CA) is refused.
    let stranger = Cluster::new("stranger");
    let mut creds = stranger.admin();
    creds.ca_pem = cluster.os.crt_pem.clone();
    let result = match TalosClient::secure_with(addr(&cp), &creds, fast()).await {
        Ok(client) => client.version().await.map(|_| ()),
        Err(e) => Err(e),
    };
    let err = result.unwrap_err();
    // Refused at the TLS handshake: the node sends a fatal alert.
    assert!(err.tls_alert().is_some(), "{err:?}");
    assert!(!err.needs_client_certificate());
    assert_eq!(err.class(), ErrorClass::Permanent);

    // A client that trusts another OS CA refuses the server.
    let err = TalosClient::secure_with(addr(&cp), &stranger.admin(), fast())
        .await
        .unwrap_err();
    assert!(matches!(err, TalosError::Connect { .. }), "{err:?}");

    // A certificate whose EKU is not exactly ClientAuth is refused.
    let bad_eku = cluster.os.client_with_eku(
        "os:admin",
        vec![
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        ],
    );
    let result = match TalosClient::secure_with(addr(&cp), &bad_eku, fast()).await {
        Ok(client) => client.version().await.map(|_| ()),
        Err(e) => Err(e),
    };
    let err = result.unwrap_err();
    assert!(err.tls_alert().is_some(), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);

    // os:reader reads but cannot bootstrap; os:operator can reboot but not upgrade.
    let reader = TalosClient::secure_with(addr(&cp), &cluster.os.client("os:reader"), fast())
        .await
        .unwrap();
    assert_eq!(reader.version().await.unwrap().tag, "v1.11.6");
    let err = reader.bootstrap().await.unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied));
    assert!(err.to_string().contains("not authorized"));
    assert_eq!(err.class(), ErrorClass::Permanent);
    let operator = TalosClient::secure_with(addr(&cp), &cluster.os.client("os:operator"), fast())
        .await
        .unwrap();
    let err = operator
        .upgrade(&UpgradeOptions {
            image: "ghcr.io/siderolabs/installer:v1.11.7".into(),
            preserve: false,
            stage: false,
            force: false,
            powercycle: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied));

    // The admin still works.
    let admin = TalosClient::secure_with(addr(&cp), &cluster.admin(), fast())
        .await
        .unwrap();
    assert_eq!(
        admin.bootstrap().await.unwrap(),
        BootstrapOutcome::Bootstrapped
    );
    cp.stop();
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let fleet = TalosFleet::new();
    // Nothing listens here yet: the node is still booting (boot delay 5 s / 1000 would pass
    // quickly, so use an IP with no node at all).
    let err = TalosClient::maintenance_with(SocketAddr::from((ip(5, 1), 50000)), fast(), None)
        .await
        .unwrap_err();
    assert!(err.is_connection_refused(), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(err.code(), Some(Code::Unavailable));

    // A powered-off node refuses connections too, and comes back after power on.
    let node = spawn(&fleet, ip(5, 2), "eps-1");
    wait_phase(&node, NodePhase::Maintenance).await;
    node.power_off();
    wait_phase(&node, NodePhase::Off).await;
    let err = TalosClient::maintenance_with(addr(&node), fast(), None)
        .await
        .unwrap_err();
    assert!(err.is_connection_refused());
    assert_eq!(err.class(), ErrorClass::Retryable);
    node.power_on();
    wait_phase(&node, NodePhase::Maintenance).await;
    maintenance(addr(&node)).await.disks().await.unwrap();
    node.stop();
}

#[tokio::test]
async fn upgrade_and_reboot_cycle_the_node() {
    let fleet = TalosFleet::new();
    let cluster = Cluster::new("zeta");
    let cp = spawn(&fleet, ip(6, 1), "zeta-cp-1");
    configure(&cp, &cluster.config("controlplane", "zeta-cp-1")).await;
    let admin = cluster.admin();
    let client = TalosClient::secure_with(addr(&cp), &admin, fast())
        .await
        .unwrap();
    client.bootstrap().await.unwrap();

    let boots = cp.status().boots;
    let boot_before = client.boot_id().await.unwrap();
    // The schematic it booted, read through COSI: the Image Factory's virtual extension.
    let extensions = client.extensions().await.unwrap();
    assert_eq!(extensions.len(), 1, "{extensions:?}");
    assert_eq!(extensions[0].name, hk8s_talos::SCHEMATIC_EXTENSION);
    assert_eq!(
        client.schematic().await.unwrap().as_deref(),
        // The Image Factory's ID of the schematic without customization.
        Some("376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba")
    );
    assert_eq!(boot_before.len(), 36, "{boot_before:?}");
    // Nothing upgraded yet: this boot's events hold no upgrade sequence.
    let events = client
        .events_since_boot(std::time::Duration::from_millis(200))
        .await
        .unwrap();
    assert!(!events.iter().any(|e| matches!(&e.kind,
        hk8s_talos::NodeEventKind::Sequence { sequence, .. } if sequence == "upgrade")));
    let ack = client
        .upgrade(&UpgradeOptions {
            image: "factory.talos.dev/hcloud-installer/376567988ad3:v1.11.7".into(),
            preserve: false,
            stage: false,
            force: false,
            powercycle: false,
        })
        .await
        .unwrap();
    assert_eq!(ack.ack, "Upgrade request received");
    assert!(!ack.actor_id.is_empty());
    // The upgrade sequence shows in the events of the old boot, with the RPC's actor ID
    // (unless the node already went down for its reboot).
    if let Ok(events) = client
        .events_since_boot(std::time::Duration::from_millis(200))
        .await
        && !events.is_empty()
    {
        assert!(
            events.iter().any(|e| e.actor_id == ack.actor_id
                && matches!(&e.kind, hk8s_talos::NodeEventKind::Sequence { sequence, action: 1, .. }
                    if sequence == "upgrade")),
            "{events:?}"
        );
    }
    within(
        "upgrade",
        cp.wait_until(|s| s.boots > boots && s.phase == NodePhase::Running),
    )
    .await;
    let client = TalosClient::secure_with(addr(&cp), &admin, fast())
        .await
        .unwrap();
    assert_eq!(client.version().await.unwrap().tag, "v1.11.7");
    assert_eq!(
        client.schematic().await.unwrap().as_deref(),
        Some("376567988ad3"),
        "the installer's schematic after the upgrade"
    );
    assert_ne!(
        client.boot_id().await.unwrap(),
        boot_before,
        "a new boot ID"
    );

    let boots = cp.status().boots;
    let actor = client.reboot().await.unwrap();
    assert!(!actor.is_empty());
    within(
        "reboot",
        cp.wait_until(|s| s.boots > boots && s.phase == NodePhase::Running),
    )
    .await;
    let client = TalosClient::secure_with(addr(&cp), &admin, fast())
        .await
        .unwrap();
    // Still bootstrapped and a member after the reboot.
    assert_eq!(client.etcd_member_list().await.unwrap().len(), 1);
    assert_eq!(
        client.bootstrap().await.unwrap(),
        BootstrapOutcome::AlreadyBootstrapped
    );
    cp.stop();
}

#[tokio::test]
async fn spki_pin_mismatch_is_refused() {
    let fleet = TalosFleet::new();
    let node = spawn(&fleet, ip(7, 1), "pin-1");
    wait_phase(&node, NodePhase::Maintenance).await;
    let err = TalosClient::maintenance_with(addr(&node), fast(), Some([0u8; 32]))
        .await
        .unwrap_err();
    assert!(matches!(err, TalosError::Connect { .. }));
    node.stop();
}

/// The Talos golden configs (Go-generated keys: `ED25519 PRIVATE KEY`, SEC1 `EC PRIVATE KEY`)
/// applied to a twin node; the client signs its admin cert with the fixture OS CA.
#[tokio::test]
async fn talos_golden_configs_work_end_to_end() {
    let Some(spec) = hk8s_testkit::spec_dir() else {
        return;
    };
    let cp_config = hk8s_testkit::spec_file(&spec, "talos-fixtures/v1.11/base-controlplane.yaml");
    let worker_config = hk8s_testkit::spec_file(&spec, "talos-fixtures/v1.11/base-worker.yaml");
    let doc: serde_json::Value = serde_saphyr::from_str(&cp_config).unwrap();
    let b64 = |v: &serde_json::Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    let os_crt = b64(&doc["machine"]["ca"]["crt"]);
    let os_key = b64(&doc["machine"]["ca"]["key"]).replace("ED25519 PRIVATE KEY", "PRIVATE KEY");
    let key = rcgen::KeyPair::from_pem(&os_key).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&os_crt, key).unwrap();
    let client_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "os:admin");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&client_key, &issuer).unwrap();
    let creds = hk8s_talos::TalosCredentials {
        ca_pem: os_crt,
        cert_pem: cert.pem(),
        key_pem: client_key
            .serialize_pem()
            .replace("PRIVATE KEY", "ED25519 PRIVATE KEY"),
    };

    let fleet = TalosFleet::new();
    let cp = spawn(&fleet, ip(8, 1), "base-cp-1");
    let worker = spawn(&fleet, ip(8, 2), "base-w-1");
    configure(&cp, cp_config.as_bytes()).await;
    configure(&worker, worker_config.as_bytes()).await;
    let client = TalosClient::secure_with(addr(&cp), &creds, fast())
        .await
        .unwrap();
    assert_eq!(
        client.bootstrap().await.unwrap(),
        BootstrapOutcome::Bootstrapped
    );
    let kubeconfig = String::from_utf8(client.kubeconfig().await.unwrap()).unwrap();
    assert!(kubeconfig.contains("server: https://base:6443"));
    assert!(kubeconfig.contains("current-context: admin@base"));
    let w = client.clone().with_node(ip(8, 2));
    assert_eq!(w.version().await.unwrap().tag, "v1.11.6");
    cp.stop();
    worker.stop();
}

#[tokio::test]
async fn injected_faults_classify_and_calls_are_counted() {
    let fleet = TalosFleet::new();
    let cluster = Cluster::new("eta");
    let cp = spawn(&fleet, ip(9, 1), "eta-cp-1");
    configure(&cp, &cluster.config("controlplane", "eta-cp-1")).await;
    fleet.set_speed(2000.0);
    fleet.inject_fault(hk8s_twin_talos::Fault {
        ip: Some(ip(9, 1)),
        method: "Bootstrap".into(),
        code: Code::Unavailable as i32,
        message: "etcd is starting".into(),
        skip: 0,
        times: 1,
    });
    let client = TalosClient::secure_with(addr(&cp), &cluster.admin(), fast())
        .await
        .unwrap();
    let err = client.bootstrap().await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Unavailable));
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(
        client.bootstrap().await.unwrap(),
        BootstrapOutcome::Bootstrapped
    );
    let counts = fleet.call_counts();
    let bootstrap = counts
        .iter()
        .find(|c| c.ip == ip(9, 1) && c.method == "Bootstrap")
        .unwrap();
    assert_eq!(bootstrap.count, 2);
    assert!(counts.iter().any(|c| c.method == "ApplyConfiguration"));
    cp.stop();
}
