//! `upgrade-cluster` on the twin: 3 control planes + 2 workers from Talos v1.10.9 /
//! Kubernetes 1.33.6 to v1.11.6 / 1.34.1 in one run with etcd quorum kept (the twin's minimum
//! of healthy members never below 2), exactly one accepted Upgrade RPC per node, `--plan`
//! changing nothing, `--unattended` a no-op once everything is at target, and the twin's
//! upgrade faults ending in clear, resumable failures.

use hk8s_tests::{Hk8s, TwinProcess, example_spec};
use serde_json::{Value, json};

use crate::SPEED;

/// Where the cluster starts.
pub const FROM_TALOS: &str = "v1.10.9";
/// Kubernetes it starts with.
pub const FROM_KUBERNETES: &str = "1.33.6";
/// The targets (the example spec's).
pub const TO_TALOS: &str = "v1.11.6";
/// Kubernetes target.
pub const TO_KUBERNETES: &str = "1.34.1";

/// The example spec at other versions.
pub fn spec_at(talos: &str, kubernetes: &str) -> String {
    let spec = example_spec();
    assert!(spec.contains("version: v1.11.6") && spec.contains("version: 1.34.1"));
    spec.replace("version: v1.11.6", &format!("version: {talos}"))
        .replace("version: 1.34.1", &format!("version: {kubernetes}"))
}

/// A twin with an old cluster created on it, counters reset after the create.
pub async fn old_cluster(speed: f64) -> (TwinProcess, Hk8s, String) {
    let twin = TwinProcess::start_with_talos(speed, FROM_TALOS).await;
    let hk8s = Hk8s::new(&twin);
    let old = hk8s.write_spec("old.yaml", &spec_at(FROM_TALOS, FROM_KUBERNETES));
    hk8s.run_ok(&["run", "create-cluster", "-f", old.to_str().unwrap()]);
    twin.reset_talos_counters().await;
    let new = hk8s.write_spec("cluster.yaml", &spec_at(TO_TALOS, TO_KUBERNETES));
    (twin, hk8s, new.to_str().unwrap().to_string())
}

/// The twin's Talos nodes, by hostname.
pub fn nodes(talos: &Value) -> Vec<Value> {
    let mut nodes: Vec<Value> = talos["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n["phase"] != "Deleted")
        .collect();
    nodes.sort_by_key(|n| n["hostname"].as_str().unwrap_or_default().to_string());
    nodes
}

/// Every node at the target, exactly one accepted Upgrade RPC each, etcd never below 2.
pub async fn assert_upgraded(twin: &TwinProcess, what: &str) {
    assert_upgraded_retrying(twin, what, &[]).await;
}

/// [`assert_upgraded`] where the nodes in `retried` rolled back once and took a second RPC.
pub async fn assert_upgraded_retrying(twin: &TwinProcess, what: &str, retried: &[&str]) {
    let talos = twin.talos().await;
    let nodes = nodes(&talos);
    assert_eq!(nodes.len(), 5, "{what}: {talos}");
    for n in &nodes {
        assert_eq!(n["talos_version"], TO_TALOS, "{what}: {n}");
        let rpcs = if retried.contains(&n["hostname"].as_str().unwrap_or_default()) {
            2
        } else {
            1
        };
        assert_eq!(
            n["upgrade_rpcs_accepted"], rpcs,
            "{what}: exactly {rpcs} accepted Upgrade RPC(s) on this node: {n}"
        );
        assert_eq!(
            n["kubelet_version"],
            format!("v{TO_KUBERNETES}"),
            "{what}: {n}"
        );
        assert_eq!(n["cordoned"], false, "{what}: {n}");
    }
    let cluster = &talos["clusters"][0];
    let min = cluster["min_healthy_etcd_members"].as_u64().unwrap();
    assert!(
        min >= 2,
        "{what}: etcd fell to {min} healthy members: {cluster}"
    );
    println!("{what}: min healthy etcd members during the run: {min}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_upgrade_v1_10_to_v1_11_then_unattended_is_a_no_op() {
    let (twin, hk8s, spec) = old_cluster(SPEED).await;

    // --plan prints the plan and changes nothing.
    let out = hk8s.run_ok(&["run", "upgrade-cluster", "-f", &spec, "--plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("plan:"), "{text}");
    assert!(text.contains("Talos v1.11.6"), "{text}");
    assert!(text.contains("Kubernetes 1.34.1"), "{text}");
    assert!(hk8s.runs().len() == 1, "--plan journaled a run");
    for n in nodes(&twin.talos().await) {
        assert_eq!(n["upgrade_rpcs_accepted"], 0, "{n}");
    }

    // One unattended run does everything; while it holds the cluster another unattended run
    // exits 75 at once and changes nothing.
    let started = std::time::Instant::now();
    let child = hk8s
        .command(&[
            "run",
            "upgrade-cluster",
            "-f",
            &spec,
            "--unattended",
            "--pause",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    hk8s_testkit::eventually("the upgrade run to start", || async {
        let runs = hk8s.runs();
        runs.iter()
            .any(|r| r["workflow"] == "upgrade-cluster" && r["status"] == "running")
            .then_some(())
    })
    .await;
    let busy = hk8s.run_err(&["run", "upgrade-cluster", "-f", &spec, "--unattended"], 75);
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(stderr.contains("is locked by run"), "{stderr}");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    println!(
        "upgrade took {:?}:\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stdout)
    );
    assert_upgraded(&twin, "upgrade").await;
    // New nodes will boot the target version: its snapshot exists now.
    let images = twin
        .api(
            reqwest::Method::GET,
            "/images?type=snapshot&label_selector=os=talos",
        )
        .await;
    let versions: Vec<&str> = images["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["labels"]["version"].as_str())
        .collect();
    assert!(
        versions.contains(&TO_TALOS),
        "no {TO_TALOS} snapshot: {versions:?}"
    );

    // History shows each node's phases.
    let runs = hk8s.runs();
    let upgrade = runs
        .iter()
        .find(|r| r["workflow"] == "upgrade-cluster")
        .expect("an upgrade run");
    assert_eq!(upgrade["status"], "succeeded", "{upgrade}");
    let detail = hk8s.run_detail(upgrade["run_id"].as_str().unwrap());
    let keys: Vec<&str> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    for phase in ["pre", "upgrade", "reboot", "post"] {
        assert!(
            keys.contains(&format!("upgrade/1-talos-v1.11.6/demo-cp-1/{phase}").as_str()),
            "{keys:?}"
        );
    }
    let text = String::from_utf8_lossy(
        &hk8s
            .run_ok(&["history", upgrade["run_id"].as_str().unwrap()])
            .stdout,
    )
    .to_string();
    assert!(text.contains("demo-worker-2/reboot"), "{text}");

    // The second unattended run: nothing to do, no run, no RPC.
    let out = hk8s.run_ok(&["run", "upgrade-cluster", "-f", &spec, "--unattended"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nothing to do"), "{text}");
    assert_eq!(hk8s.runs().len(), 2, "the no-op journaled a run");
    assert_upgraded(&twin, "after the no-op").await;
}

/// A schematic change at the same Talos version: the schematic each node booted is read from
/// it (its `schematic` extension), every node is re-installed once with the new one, and a
/// second unattended run finds nothing to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_schematic_reinstalls_every_node_once_at_the_same_version() {
    let twin = TwinProcess::start_with_talos(SPEED, TO_TALOS).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let spec = spec.to_str().unwrap();
    hk8s.run_ok(&["run", "create-cluster", "-f", spec]);
    twin.reset_talos_counters().await;
    let before: Vec<String> = nodes(&twin.talos().await)
        .iter()
        .map(|n| n["schematic"].as_str().unwrap_or_default().to_string())
        .collect();
    // Nothing changed yet: the running schematic is the spec's.
    let out = hk8s.run_ok(&["run", "upgrade-cluster", "-f", spec, "--unattended"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to do"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let custom = example_spec().replace(
        "  version: v1.11.6\n",
        "  version: v1.11.6\n  schematic:\n    extraKernelArgs: [net.ifnames=0]\n",
    );
    assert_ne!(custom, example_spec());
    let custom = hk8s.write_spec("custom.yaml", &custom);
    let custom = custom.to_str().unwrap();
    let out = hk8s.run_ok(&["run", "upgrade-cluster", "-f", custom, "--plan"]);
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    let steps = plan.split("plan:").nth(1).unwrap_or_default();
    assert!(steps.contains("1. Talos v1.11.6 (schematic"), "{plan}");
    assert!(!steps.contains("2. "), "one step only: {plan}");
    hk8s.run_ok(&["run", "upgrade-cluster", "-f", custom, "--pause", "0"]);
    let talos = twin.talos().await;
    for (n, old) in nodes(&talos).iter().zip(&before) {
        assert_eq!(n["talos_version"], TO_TALOS, "{n}");
        assert_eq!(n["upgrade_rpcs_accepted"], 1, "{n}");
        assert_ne!(n["schematic"].as_str().unwrap_or_default(), old, "{n}");
    }
    let out = hk8s.run_ok(&["run", "upgrade-cluster", "-f", custom, "--unattended"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to do"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for n in nodes(&twin.talos().await) {
        assert_eq!(
            n["upgrade_rpcs_accepted"], 1,
            "a second RPC after the no-op: {n}"
        );
    }
}

/// A target no path reaches is refused before anything is touched, naming the rule.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_target_is_refused_naming_the_rule() {
    let (twin, hk8s, _) = old_cluster(SPEED).await;
    let bad = hk8s.write_spec("bad.yaml", &spec_at("v1.11.6", "1.35.0"));
    let out = hk8s.run_err(&["run", "upgrade-cluster", "-f", bad.to_str().unwrap()], 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kubernetes.version: 1.35.0 is outside Talos v1.11's window"),
        "{stderr}"
    );
    assert_eq!(hk8s.runs().len(), 1);
    for n in nodes(&twin.talos().await) {
        assert_eq!(n["upgrade_rpcs_accepted"], 0, "{n}");
    }
}

/// An Upgrade RPC that is acknowledged but refused by the node's sequence lock (Talos's
/// LOCKED event, no actor ID, nothing else happens): hk8s sees that its upgrade never started
/// and sends it again, once; the run finishes with two accepted RPCs on that node.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_sequence_is_sent_again() {
    let (twin, hk8s, spec) = old_cluster(SPEED).await;
    twin.talos_fault(json!({"kind": "locked", "node": "demo-cp-2"}))
        .await;
    hk8s.run_ok(&["run", "upgrade-cluster", "-f", &spec, "--pause", "0"]);
    assert_upgraded_retrying(&twin, "locked", &["demo-cp-2"]).await;
    let id = upgrade_run_id(&hk8s);
    let detail = hk8s.run_detail(&id);
    let step = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["key"]
                .as_str()
                .is_some_and(|k| k.ends_with("demo-cp-2/upgrade"))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no upgrade step of demo-cp-2: {detail}"));
    let attempts = step["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 2, "{step}");
    assert!(
        attempts[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("LOCKED")),
        "{step}"
    );
}

/// Faults from the twin end in clear failures that a resume finishes (once the fault is gone),
/// and a rolled-back node is never reported as upgraded.
#[tokio::test(flavor = "multi_thread")]
async fn faults_end_in_clear_resumable_failures() {
    // A node that never returns: the run stops naming the node and the gate; power-cycling
    // the server (what a person does) and resuming finishes it.
    {
        let (twin, hk8s, spec) = old_cluster(SPEED).await;
        twin.talos_fault(json!({"kind": "never_returns", "node": "demo-worker-1"}))
            .await;
        let out = hk8s.run_err(
            &[
                "run",
                "upgrade-cluster",
                "-f",
                &spec,
                "--pause",
                "0",
                "--node-timeout",
                "3",
            ],
            1,
        );
        let stdout = both_streams(&out);
        assert!(stdout.contains("demo-worker-1"), "{stdout}");
        assert!(stdout.contains("gate new-boot"), "{stdout}");
        assert!(stdout.contains("hk8s resume"), "{stdout}");
        reset_server(&twin, "demo-worker-1").await;
        let runs = hk8s.runs();
        let run = runs
            .iter()
            .find(|r| r["workflow"] == "upgrade-cluster")
            .unwrap();
        hk8s.run_ok(&["resume", run["run_id"].as_str().unwrap()]);
        assert_upgraded(&twin, "never_returns, then resumed").await;
    }
    // A failed boot that rolls back: reported as such, never as upgraded.
    {
        let (twin, hk8s, spec) = old_cluster(SPEED).await;
        twin.talos_fault(json!({"kind": "boot_rollback", "node": "demo-cp-2"}))
            .await;
        let out = hk8s.run_err(&["run", "upgrade-cluster", "-f", &spec, "--pause", "0"], 1);
        let text = both_streams(&out);
        assert!(
            text.contains("demo-cp-2 rebooted into v1.10.9 instead of v1.11.6"),
            "{text}"
        );
        assert!(text.contains("rolled back"), "{text}");
        assert!(text.contains("NOT upgraded"), "{text}");
        assert!(
            text.contains("resuming the run retries it (attempt 2 of 3)"),
            "{text}"
        );
        assert!(!text.contains("succeeded"), "{text}");
        let talos = twin.talos().await;
        let cp2 = nodes(&talos)
            .into_iter()
            .find(|n| n["hostname"] == "demo-cp-2")
            .unwrap();
        assert_eq!(cp2["talos_version"], FROM_TALOS, "{cp2}");
        assert_eq!(cp2["upgrade_rpcs_accepted"], 1, "{cp2}");
        // The fault fired once: resuming retries the node (a second RPC) and finishes the run.
        let id = upgrade_run_id(&hk8s);
        hk8s.run_ok(&["resume", &id]);
        assert_upgraded_retrying(&twin, "boot_rollback, then resumed", &["demo-cp-2"]).await;
        let history = hk8s.run_ok(&["history", &id]);
        let history = String::from_utf8_lossy(&history.stdout);
        assert!(history.contains("demo-cp-2/attempt-2/upgrade"), "{history}");
    }
    // The installer refuses the host: same outward shape as a rollback.
    {
        let (twin, hk8s, spec) = old_cluster(SPEED).await;
        // For good (count 0): three attempts across two resumes, then a final failure.
        twin.talos_fault(json!({"kind": "installer_refuses", "node": "demo-worker-2", "count": 0}))
            .await;
        let out = hk8s.run_err(&["run", "upgrade-cluster", "-f", &spec, "--pause", "0"], 1);
        let text = both_streams(&out);
        assert!(
            text.contains("demo-worker-2 rebooted into v1.10.9 instead of v1.11.6"),
            "{text}"
        );
        let id = upgrade_run_id(&hk8s);
        let out = hk8s.run_err(&["resume", &id], 1);
        let text = both_streams(&out);
        assert!(text.contains("attempt 2 of 3"), "{text}");
        let out = hk8s.run_err(&["resume", &id], 1);
        let text = both_streams(&out);
        assert!(text.contains("attempt 3 of 3"), "{text}");
        assert!(text.contains("not retrying again"), "{text}");
        let talos = twin.talos().await;
        let w2 = nodes(&talos)
            .into_iter()
            .find(|n| n["hostname"] == "demo-worker-2")
            .unwrap();
        assert_eq!(w2["talos_version"], FROM_TALOS, "{w2}");
        assert_eq!(w2["upgrade_rpcs_accepted"], 3, "{w2}");
    }
    // A PDB that never allows eviction: the pre-gate names it.
    {
        let (twin, hk8s, spec) = old_cluster(SPEED).await;
        twin.talos_fault(json!({"kind": "pdb_never_allows", "namespace": "kube-system"}))
            .await;
        let out = hk8s.run_err(
            &[
                "run",
                "upgrade-cluster",
                "-f",
                &spec,
                "--pause",
                "0",
                "--gate-timeout",
                "2",
            ],
            1,
        );
        let text = both_streams(&out);
        assert!(text.contains("gate pod-disruption-budgets"), "{text}");
        assert!(text.contains("hk8s-twin-fault-pdb"), "{text}");
        // The node the gate stopped at was not upgraded; etcd kept its quorum.
        let blocked = text
            .split("gate pod-disruption-budgets for ")
            .nth(1)
            .and_then(|t| t.split(':').next())
            .unwrap()
            .to_string();
        let talos = twin.talos().await;
        let node = nodes(&talos)
            .into_iter()
            .find(|n| n["hostname"] == blocked.as_str())
            .unwrap_or_else(|| panic!("{blocked} not in {talos}"));
        assert_eq!(node["upgrade_rpcs_accepted"], 0, "{node}");
        assert_eq!(node["talos_version"], FROM_TALOS, "{node}");
    }
}

/// The id of the cluster's one upgrade run.
fn upgrade_run_id(hk8s: &Hk8s) -> String {
    hk8s.runs()
        .iter()
        .find(|r| r["workflow"] == "upgrade-cluster")
        .and_then(|r| r["run_id"].as_str())
        .expect("an upgrade-cluster run")
        .to_string()
}

/// Power-cycles the server `name` through the Hetzner API (what a person does with a node
/// that never came back).
async fn reset_server(twin: &TwinProcess, name: &str) {
    let state = twin.state().await;
    let id = state["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no server {name}: {state}"))["id"]
        .as_i64()
        .unwrap();
    twin.api(
        reqwest::Method::POST,
        &format!("/servers/{id}/actions/reset"),
    )
    .await;
}

/// A command's stdout, then its stderr, as text.
fn both_streams(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// `--concurrency 2`: both workers are upgraded at once; when one never returns, its sibling
/// is still followed through its reboot and post-gates (journaled) before the run stops, and
/// the resume finishes the stuck node alone, with one accepted RPC per node.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_workers_finish_their_siblings_before_a_failure_stops_the_run() {
    let (twin, hk8s, spec) = old_cluster(SPEED).await;
    twin.talos_fault(json!({"kind": "never_returns", "node": "demo-worker-1"}))
        .await;
    let args = [
        "run",
        "upgrade-cluster",
        "-f",
        &spec,
        "--pause",
        "0",
        "--node-timeout",
        "3",
        "--concurrency",
        "2",
    ];
    let text = both_streams(&hk8s.run_err(&args, 1));
    assert!(text.contains("demo-worker-1"), "{text}");
    assert!(text.contains("gate new-boot"), "{text}");

    let id = upgrade_run_id(&hk8s);
    let detail = hk8s.run_detail(&id);
    let post = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["key"]
                .as_str()
                .is_some_and(|k| k.ends_with("demo-worker-2/post"))
        })
        .cloned()
        .unwrap_or_else(|| panic!("demo-worker-2 was abandoned before its post-gates: {detail}"));
    assert_eq!(post["status"], "succeeded", "{post}");
    let talos = twin.talos().await;
    let w2 = nodes(&talos)
        .into_iter()
        .find(|n| n["hostname"] == "demo-worker-2")
        .unwrap();
    assert_eq!(w2["talos_version"], TO_TALOS, "{w2}");
    assert_eq!(w2["cordoned"], false, "{w2}");

    reset_server(&twin, "demo-worker-1").await;
    hk8s.run_ok(&["resume", &id]);
    assert_upgraded(&twin, "concurrency 2, never_returns, then resumed").await;
}
