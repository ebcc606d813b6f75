//! kubectl against the twin (skipped locally when `kubectl` is not installed, a failure under
//! CI: `hk8s_testkit::tool`, `$KUBECTL` overrides the program): discovery, get,
//! server-side and client-side apply with kubectl's default validation (no
//! `--validate=false`: kubectl reads `/openapi/v3` and lets the server validate fields),
//! `--validate=strict` rejecting an unknown field, `explain`, cordon, drain, certificate
//! approve, wait, delete.

use std::process::Command;

use crate::common::Twin;
use base64::Engine;
use hk8s_testkit::eventually;
use hk8s_twin_kube::NodeRole;

struct Kubectl {
    /// The kubectl program `hk8s_testkit::tool` found.
    program: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Kubectl {
    fn new(twin: &Twin, program: std::path::PathBuf) -> Kubectl {
        let dir = std::env::temp_dir().join(format!("hk8s-twin-kube-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let (crt, key) = twin.admin();
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: https://{}\n    certificate-authority-data: {}\nusers:\n- name: a\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: a@t\n  context:\n    cluster: t\n    user: a\ncurrent-context: a@t\n",
            twin.server.local_addr(),
            b64(&twin.ca.0),
            b64(&crt),
            b64(&key)
        );
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, yaml).unwrap();
        Kubectl {
            program,
            kubeconfig,
            _dir: TempDir(dir),
        }
    }

    /// A handle on the same program and kubeconfig (this owner removes the directory).
    fn handle(&self) -> Kubectl {
        Kubectl {
            program: self.program.clone(),
            kubeconfig: self.kubeconfig.clone(),
            _dir: TempDir(std::path::PathBuf::new()),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        use std::io::Write;
        let mut cmd = Command::new(&self.program);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.env("HOME", self.kubeconfig.parent().unwrap());
        cmd.stdin(std::process::Stdio::piped());
        cmd.stdout(std::process::Stdio::piped());
        cmd.stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, text) = self.run(args, stdin);
        assert!(ok, "kubectl {args:?} failed: {text}");
        text
    }
}

const ADDONS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: hcloud, namespace: kube-system}
stringData: {token: t, network: "1"}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cilium, namespace: kube-system}
spec:
  selector: {matchLabels: {k8s-app: cilium}}
  template:
    metadata: {labels: {k8s-app: cilium}}
    spec:
      hostNetwork: true
      tolerations: [{operator: Exists}]
      containers: [{name: agent, image: cilium}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: hcloud-cloud-controller-manager, namespace: kube-system}
spec:
  selector: {matchLabels: {app: hccm}}
  template:
    metadata: {labels: {app: hccm}}
    spec:
      hostNetwork: true
      tolerations:
      - {key: node.cloudprovider.kubernetes.io/uninitialized, value: "true", effect: NoSchedule}
      - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
      containers: [{name: ccm, image: hccm}]
"#;

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_the_twin() {
    let Some(kubectl) = hk8s_testkit::tool("kubectl", "KUBECTL", "--help") else {
        return;
    };
    let twin = Twin::start(vec![]).await;
    twin.cloud.add_server("cp-1", 1);
    twin.cloud.add_server("w-1", 2);
    twin.cluster.kubelet_started(
        "cp-1",
        "127.0.0.11".parse().unwrap(),
        NodeRole::ControlPlane,
    );
    twin.cluster
        .kubelet_started("w-1", "127.0.0.12".parse().unwrap(), NodeRole::Worker);
    let k = Kubectl::new(&twin, kubectl);
    let kc = k.handle();
    let waited = tokio::task::spawn_blocking(move || {
        let k = kc;
        let out = k.ok(&["get", "nodes"], None);
        assert!(
            out.contains("cp-1") && out.contains("NotReady") && out.contains("control-plane"),
            "{out}"
        );
        let out = k.ok(&["api-resources"], None);
        assert!(out.contains("certificatesigningrequests"), "{out}");
        k.ok(
            &["apply", "--server-side", "--field-manager=hk8s", "-f", "-"],
            Some(ADDONS),
        );
        k.ok(
            &[
                "wait",
                "--for=condition=Ready",
                "node",
                "--all",
                "--timeout=30s",
            ],
            None,
        )
    })
    .await
    .unwrap();
    assert!(waited.contains("condition met"), "{waited}");
    eventually("nodes initialized", || async {
        twin.cluster
            .objects("", "nodes")
            .iter()
            .all(|n| n["spec"]["providerID"].is_string())
            .then_some(())
    })
    .await;
    let kc = k.handle();
    tokio::task::spawn_blocking(move || {
        let k = kc;
        // Client-side apply with kubectl's default validation (create, then a strategic
        // merge patch).
        k.ok(&["apply", "-f", "-"], Some(WEB));
        k.ok(
            &["apply", "-f", "-"],
            Some(&WEB.replace("replicas: 2", "replicas: 3")),
        );
        k.ok(
            &["rollout", "status", "deployment/web", "--timeout=30s"],
            None,
        );
        let out = k.ok(&["get", "pods", "-l", "app=web", "-o", "name"], None);
        assert_eq!(out.lines().count(), 3, "{out}");
        // CSR approval through the approval subresource (PUT).
        let csrs = k.ok(&["get", "csr", "-o", "name"], None);
        let first = csrs
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("certificatesigningrequest.certificates.k8s.io/")
            .to_string();
        k.ok(&["certificate", "approve", &first], None);
        // Drain uses cordon and evictions.
        k.ok(
            &[
                "drain",
                "w-1",
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=30s",
            ],
            None,
        );
        let out = k.ok(&["get", "node", "w-1"], None);
        assert!(out.contains("SchedulingDisabled"), "{out}");
        k.ok(&["uncordon", "w-1"], None);
        k.ok(&["delete", "deployment", "web"], None);
        let out = k.ok(&["get", "pods", "-l", "app=web", "-o", "name"], None);
        assert!(
            out.trim().is_empty() || out.contains("No resources"),
            "{out}"
        );
    })
    .await
    .unwrap();
    eventually("signed csr", || async {
        twin.cluster
            .objects("certificates.k8s.io", "certificatesigningrequests")
            .iter()
            .any(|c| c["status"]["certificate"].is_string())
            .then_some(())
    })
    .await;
}

const SETTINGS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {colour: blue}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_validates_and_explains_with_the_twins_openapi() {
    let Some(kubectl) = hk8s_testkit::tool("kubectl", "KUBECTL", "--help") else {
        return;
    };
    let twin = Twin::start(vec![]).await;
    let k = Kubectl::new(&twin, kubectl);
    let kc = k.handle();
    tokio::task::spawn_blocking(move || {
        let k = kc;
        // `apply -f` as people type it: default validation (strict), client-side apply.
        let out = k.ok(&["apply", "-f", "-"], Some(&format!("{SETTINGS}---{WEB}")));
        assert!(
            out.contains("configmap/settings created")
                && out.contains("deployment.apps/web created"),
            "{out}"
        );
        let out = k.ok(&["apply", "-f", "-"], Some(SETTINGS));
        assert!(out.contains("configmap/settings unchanged"), "{out}");
        let out = k.ok(
            &["apply", "-f", "-"],
            Some(&SETTINGS.replace("blue", "green")),
        );
        assert!(out.contains("configmap/settings configured"), "{out}");
        let out = k.ok(
            &[
                "get",
                "configmap",
                "settings",
                "-o",
                "jsonpath={.data.colour}",
            ],
            None,
        );
        assert_eq!(out.trim(), "green");
        // An unknown field fails strict validation with kube-apiserver's message, for a
        // create, for a patch of an existing object, and for a server-side apply.
        let typo = WEB
            .replace("name: web,", "name: typo,")
            .replace("replicas: 2", "replicaz: 2");
        for args in [
            &["apply", "--validate=strict", "-f", "-"][..],
            &["apply", "-f", "-"][..],
            &["create", "-f", "-"][..],
        ] {
            let (ok, out) = k.run(args, Some(&typo));
            assert!(!ok, "kubectl {args:?} accepted spec.replicaz: {out}");
            assert!(
                out.contains("Error from server (BadRequest)")
                    && out.contains("strict decoding error: unknown field \"spec.replicaz\""),
                "kubectl {args:?}: {out}"
            );
        }
        let (ok, out) = k.run(
            &["apply", "-f", "-"],
            Some(&WEB.replace("replicas: 2", "replicaz: 2")),
        );
        assert!(
            !ok && out.contains("unknown field \"spec.replicaz\""),
            "{out}"
        );
        let (ok, out) = k.run(&["apply", "--server-side", "-f", "-"], Some(&typo));
        assert!(
            !ok && out.contains(".spec.replicaz: field not declared in schema"),
            "{out}"
        );
        let (ok, out) = k.run(&["get", "deployment", "typo"], None);
        assert!(!ok && out.contains("NotFound"), "{out}");
        // Warn reports the field and goes ahead; Ignore is silent.
        let out = k.ok(&["apply", "--validate=warn", "-f", "-"], Some(&typo));
        assert!(
            out.contains("Warning: unknown field \"spec.replicaz\""),
            "{out}"
        );
        // kubectl explain reads the schemas (OpenAPI v3).
        let out = k.ok(&["explain", "deployment.spec.replicas"], None);
        assert!(
            out.contains("KIND:       Deployment")
                && out.contains("FIELD: replicas <integer>")
                && out.contains("Number of desired pods"),
            "{out}"
        );
        let out = k.ok(&["explain", "pods.spec.containers"], None);
        assert!(
            out.contains("image\t<string>") || out.contains("image"),
            "{out}"
        );
        let out = k.ok(&["explain", "configmap", "--recursive"], None);
        assert!(out.contains("binaryData"), "{out}");
    })
    .await
    .unwrap();
}
