//! Kill the CLI with SIGKILL at every step boundary and at seeded random instants, resume, and
//! compare the cloud and the Talos nodes with an uninterrupted run's: no duplicate, no leaked
//! resource, exactly one etcd bootstrap. The same for `upgrade-cluster`: every step boundary,
//! right after an accepted Upgrade RPC and at seeded random instants, with exactly one accepted
//! Upgrade RPC per node in the end.

use std::time::{Duration, Instant};

use hk8s_tests::{Hk8s, TwinProcess, example_spec, killed, sigkill, wait_timeout};
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;

use crate::SPEED;

/// Resumes the only run until it succeeds.
fn resume_to_success(hk8s: &Hk8s) -> String {
    let runs = hk8s.runs();
    assert_eq!(runs.len(), 1, "expected one run: {runs:?}");
    let id = runs[0]["run_id"].as_str().unwrap().to_string();
    if runs[0]["status"] == "succeeded" {
        return id;
    }
    hk8s.run_ok(&["resume", &id[..8]]);
    id
}

/// The run's step keys, sorted, without the lock records (`cloud-lock/<id>@<host>`): those
/// are per execution. A run killed after its lock was released and before its success was
/// journaled is resumed under a new lock, with a new ID, and journals a second record (a
/// random kill can land in that window). Each run has at least one.
fn step_keys(detail: &Value) -> Vec<String> {
    let all: Vec<String> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_string())
        .collect();
    assert!(
        all.iter().any(|k| k.starts_with("cloud-lock/")),
        "no lock record: {all:?}"
    );
    let mut keys: Vec<String> = all
        .into_iter()
        .filter(|k| !k.starts_with("cloud-lock/"))
        .collect();
    keys.sort();
    keys
}

struct Reference {
    state: Value,
    talos: Value,
    steps: Vec<String>,
    boundaries: u64,
    wall: Duration,
    /// The reference run's secrets bundle, imported by the other runs (`--secrets`) so that
    /// each does not spend seconds on an RSA-4096 key.
    secrets: tempfile::NamedTempFile,
    /// The spec every run of the test uses.
    spec_yaml: String,
}

impl Reference {
    async fn new(spec_yaml: &str) -> Reference {
        let twin = TwinProcess::start(SPEED).await;
        let hk8s = Hk8s::new(&twin);
        let spec = hk8s.write_spec("cluster.yaml", spec_yaml);
        let started = Instant::now();
        hk8s.run_ok(&["run", "create-cluster", "-f", spec.to_str().unwrap()]);
        let wall = started.elapsed();
        let id = hk8s.runs()[0]["run_id"].as_str().unwrap().to_string();
        let detail = hk8s.run_detail(&id);
        // Step boundaries of an uninterrupted run: one outcome commit per attempt.
        let boundaries = detail["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["attempts"].as_array().unwrap().len() as u64)
            .sum();
        let secrets = tempfile::NamedTempFile::new().unwrap();
        std::fs::copy(hk8s.cluster_dir().join("secrets.yaml"), secrets.path()).unwrap();
        Reference {
            state: twin.normalized().await,
            talos: twin.talos_normalized().await,
            steps: step_keys(&detail),
            boundaries,
            wall,
            secrets,
            spec_yaml: spec_yaml.to_string(),
        }
    }

    /// A fresh twin and hk8s, and a create run importing the reference's secrets with one
    /// extra environment variable (a crash hook).
    async fn fresh_run(&self, var: &str, value: &str) -> (TwinProcess, Hk8s, std::process::Output) {
        let twin = TwinProcess::start(SPEED).await;
        let hk8s = Hk8s::new(&twin);
        let spec = hk8s.write_spec("cluster.yaml", &self.spec_yaml);
        let out = hk8s
            .command(&[
                "run",
                "create-cluster",
                "-f",
                spec.to_str().unwrap(),
                "--secrets",
                self.secrets(),
            ])
            .env(var, value)
            .output()
            .unwrap();
        (twin, hk8s, out)
    }

    fn secrets(&self) -> &str {
        self.secrets.path().to_str().unwrap()
    }

    /// Asserts that `twin` and `hk8s`'s run ended like the reference.
    async fn check(&self, twin: &TwinProcess, hk8s: &Hk8s, what: &str) {
        assert_eq!(twin.normalized().await, self.state, "{what}: cloud differs");
        assert_eq!(
            twin.talos_normalized().await,
            self.talos,
            "{what}: Talos nodes differ"
        );
        let id = hk8s.runs()[0]["run_id"].as_str().unwrap().to_string();
        assert_eq!(
            step_keys(&hk8s.run_detail(&id)),
            self.steps,
            "{what}: steps differ"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_every_step_boundary_then_resume() {
    let spec_yaml = example_spec();
    let reference = Reference::new(&spec_yaml).await;
    assert!(
        reference.boundaries >= 30,
        "too few boundaries: {}",
        reference.boundaries
    );
    let mut killed_at = 0;
    for boundary in 1..reference.boundaries {
        let (twin, hk8s, out) = reference
            .fresh_run("HK8S_DEBUG_KILL_AFTER_OUTCOME", &boundary.to_string())
            .await;
        // Wait steps retry a varying number of times, so a run may have fewer boundaries than the
        // reference: a boundary past its end lets it finish.
        if killed(out.status) {
            killed_at += 1;
        } else {
            assert!(
                out.status.success(),
                "boundary {boundary}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        resume_to_success(&hk8s);
        reference
            .check(&twin, &hk8s, &format!("boundary {boundary}"))
            .await;
    }
    // Every step has at least one outcome; each boundary up to that floor must have been hit.
    let floor = reference.steps.len() as u64;
    println!(
        "boundaries: {} in the reference run, {killed_at} hit",
        reference.boundaries
    );
    assert!(
        killed_at >= floor - 1,
        "only {killed_at} of {} boundaries were hit",
        reference.boundaries
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_instants_then_resume() {
    let spec_yaml = example_spec();
    let reference = Reference::new(&spec_yaml).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x68_6b_38_73);
    let window = reference.wall.as_millis().max(50) as u64;
    for round in 0..20 {
        let twin = TwinProcess::start(SPEED).await;
        let hk8s = Hk8s::new(&twin);
        let spec = hk8s.write_spec("cluster.yaml", &spec_yaml);
        let spec = spec.to_str().unwrap();
        let create = [
            "run",
            "create-cluster",
            "-f",
            spec,
            "--secrets",
            reference.secrets(),
        ];
        // Up to two kills per round: one during the first run, one during the first resume.
        let mut child = hk8s.command(&create).spawn().unwrap();
        if wait_timeout(
            &mut child,
            Duration::from_millis(rng.random_range(0..window)),
        )
        .is_none()
        {
            sigkill(&mut child);
        }
        let runs = hk8s.runs();
        if runs.is_empty() {
            // Killed before the run was journaled: starting again is the resume.
            println!("round {round}: killed before the run was journaled");
            hk8s.run_ok(&create);
        } else if runs[0]["status"] != "succeeded" {
            let id = runs[0]["run_id"].as_str().unwrap().to_string();
            let mut child = hk8s.command(&["resume", &id]).spawn().unwrap();
            if wait_timeout(
                &mut child,
                Duration::from_millis(rng.random_range(0..window)),
            )
            .is_none()
            {
                sigkill(&mut child);
            }
            resume_to_success(&hk8s);
        }
        reference
            .check(&twin, &hk8s, &format!("round {round}"))
            .await;
    }
}

/// Killed right after etcd was bootstrapped and before that was journaled: the resume calls
/// Bootstrap again, gets `AlreadyExists`, and carries on; the twin saw one successful bootstrap.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_after_bootstrap_before_journal_then_resume() {
    let spec_yaml = example_spec();
    let reference = Reference::new(&spec_yaml).await;
    for activity in [
        "talos/apply/demo-cp-1",
        "talos/bootstrap",
        "talos/kubeconfig",
    ] {
        let (twin, hk8s, out) = reference
            .fresh_run("HK8S_DEBUG_KILL_AFTER_ACTIVITY", activity)
            .await;
        assert!(
            killed(out.status),
            "{activity}: not killed ({:?})",
            out.status
        );
        resume_to_success(&hk8s);
        reference.check(&twin, &hk8s, activity).await;
        if activity == "talos/bootstrap" {
            let calls = twin.talos().await["calls"].clone();
            let bootstrap_calls: u64 = calls
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["method"] == "Bootstrap")
                .map(|c| c["count"].as_u64().unwrap())
                .sum();
            assert_eq!(
                bootstrap_calls, 2,
                "one bootstrap, one AlreadyExists after the resume: {calls}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_resumes_at_once_one_proceeds() {
    let twin = TwinProcess::start(SPEED / 20.0).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let out = hk8s
        .command(&["run", "create-cluster", "-f", spec.to_str().unwrap()])
        .env("HK8S_DEBUG_KILL_AFTER_OUTCOME", "3")
        .output()
        .unwrap();
    assert!(killed(out.status));
    let id = hk8s.runs()[0]["run_id"].as_str().unwrap().to_string();
    let mut first = hk8s.command(&["resume", &id]).spawn().unwrap();
    // Wait until the first resume holds the lease (the run shows its pid), then start another.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = hk8s.run(&["history"]);
        if String::from_utf8_lossy(&out.stdout).contains(&format!("pid {}", first.id())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "first resume never took the lease"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = hk8s.run_err(&["resume", &id], 75);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("pid {}", first.id())),
        "holder not named: {stderr}"
    );
    let status = wait_timeout(&mut first, Duration::from_secs(120)).expect("first resume hangs");
    assert!(status.success());
}

/// A resource deleted by hand while the run was stopped is made again on resume, even though
/// its step had finished: labels, not the journal, are the truth.
#[tokio::test(flavor = "multi_thread")]
async fn resources_deleted_while_stopped_are_recreated_on_resume() {
    let spec_yaml = example_spec();
    let reference = Reference::new(&spec_yaml).await;
    // Stop as soon as the load balancer's and a server's step are journaled as finished,
    // whichever came last: before a node had both published, so no config was applied yet
    // (a config names the load balancer's address, which the resume changes).
    let (twin, hk8s, out) = reference
        .fresh_run("HK8S_DEBUG_KILL_AFTER_STEP", "load-balancer,server/")
        .await;
    assert!(killed(out.status), "not killed: {:?}", out.status);
    let id = hk8s.runs()[0]["run_id"].as_str().unwrap().to_string();
    let detail = hk8s.run_detail(&id);
    let succeeded = |key: &str| {
        detail["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["status"] == "succeeded" && s["key"] == key)
    };
    assert!(succeeded("load-balancer"), "{detail}");
    assert!(
        !detail["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["key"].as_str().unwrap().starts_with("talos/apply/")),
        "{detail}"
    );
    let done_server = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "succeeded")
        .filter_map(|s| s["key"].as_str().unwrap().strip_prefix("server/"))
        // `server/<name>`, not `server/<name>/started`.
        .find(|name| !name.contains('/'))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no finished server step in the journal: {detail}"));
    // Delete, by hand, a server whose step finished and the load balancer.
    let state = twin.state().await;
    let server_id = state["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == done_server.as_str())
        .unwrap_or_else(|| panic!("{done_server} not in the twin: {}", state["servers"]))["id"]
        .as_i64()
        .unwrap();
    let lb_id = state["load_balancers"][0]["id"].as_i64().unwrap();
    twin.api(reqwest::Method::DELETE, &format!("/servers/{server_id}"))
        .await;
    twin.api(reqwest::Method::DELETE, &format!("/load_balancers/{lb_id}"))
        .await;
    hk8s_testkit::eventually("the deleted server to be gone", || async {
        let servers = twin.state().await["servers"].clone();
        servers
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"].as_i64() != Some(server_id))
            .then_some(())
    })
    .await;
    resume_to_success(&hk8s);
    let after = twin.state().await;
    assert!(
        after["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"].as_i64() != Some(server_id))
    );
    assert_eq!(
        twin.normalized().await,
        reference.state,
        "deleted resources were not re-created"
    );
}

/// SIGTERM (or Ctrl-C) interrupts a run: exit 130, the run is `interrupted` (never `failed`),
/// the exact resume command is printed, and resuming finishes it.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_interrupts_and_prints_the_resume_command() {
    let twin = TwinProcess::start(SPEED / 20.0).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let child = hk8s
        .command(&["run", "create-cluster", "-f", spec.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the run is journaled and has finished a step (so it is working, with its
    // signal handler installed), then ask it to stop.
    let id = hk8s_testkit::eventually("the run to start", || async {
        let runs = hk8s.runs();
        let run = runs.first()?;
        (run["status"] == "running").then(|| run["run_id"].as_str().unwrap().to_string())
    })
    .await;
    hk8s_testkit::eventually("the run to finish a step", || async {
        let detail = hk8s.run_detail(&id);
        detail["steps"]
            .as_array()?
            .iter()
            .any(|s| s["status"] == "succeeded")
            .then_some(())
    })
    .await;
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let run = hk8s.runs()[0].clone();
    let id = run["run_id"].as_str().unwrap();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert_eq!(run["status"], "interrupted", "{run}");
    assert!(stderr.contains(&format!("hk8s resume {id}")), "{stderr}");
    hk8s.run_ok(&["resume", id]);
}

/// The upgrade run of `hk8s`'s journal.
fn upgrade_run(hk8s: &Hk8s) -> Option<Value> {
    hk8s.runs()
        .into_iter()
        .find(|r| r["workflow"] == "upgrade-cluster")
}

/// Resumes the upgrade run (or starts it when it was never journaled) until it succeeds.
fn finish_upgrade(hk8s: &Hk8s, spec: &str) {
    match upgrade_run(hk8s) {
        None => {
            hk8s.run_ok(&["run", "upgrade-cluster", "-f", spec, "--pause", "0"]);
        }
        Some(run) if run["status"] == "succeeded" => {}
        Some(run) => {
            hk8s.run_ok(&["resume", run["run_id"].as_str().unwrap()]);
        }
    }
}

/// Every upgrade step boundary in turn: each execution is killed right after its first attempt
/// outcome was committed, and the next one resumes, until the run succeeds. Exactly one
/// Upgrade RPC is accepted per node and etcd keeps quorum.
#[tokio::test(flavor = "multi_thread")]
async fn upgrade_sigkill_at_every_step_boundary_then_resume() {
    let (twin, hk8s, spec) = crate::upgrade::old_cluster(SPEED).await;
    let mut kills = 0;
    loop {
        let mut cmd = match upgrade_run(&hk8s) {
            None => hk8s.command(&["run", "upgrade-cluster", "-f", &spec, "--pause", "0"]),
            Some(run) if run["status"] == "succeeded" => break,
            Some(run) => hk8s.command(&["resume", run["run_id"].as_str().unwrap()]),
        };
        let out = cmd
            .env("HK8S_DEBUG_KILL_AFTER_OUTCOME", "1")
            .output()
            .unwrap();
        if killed(out.status) {
            kills += 1;
        } else {
            assert!(
                out.status.success(),
                "after {kills} kills: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(kills < 500, "the upgrade never finishes");
    }
    println!("upgrade: killed at {kills} step boundaries");
    let steps = hk8s.run_detail(upgrade_run(&hk8s).unwrap()["run_id"].as_str().unwrap())["steps"]
        .as_array()
        .unwrap()
        .len();
    assert!(kills >= steps, "only {kills} kills for {steps} steps");
    crate::upgrade::assert_upgraded(&twin, "every step boundary").await;
}

/// Killed right after a node accepted the Upgrade RPC and before the step was journaled: the
/// resume decides from the node (boot ID, events) and never sends a second one.
#[tokio::test(flavor = "multi_thread")]
async fn upgrade_sigkill_after_an_accepted_upgrade_rpc_then_resume() {
    let (twin, hk8s, spec) = crate::upgrade::old_cluster(SPEED).await;
    for node in ["demo-cp-1", "demo-cp-3", "demo-worker-2"] {
        let activity = format!("upgrade/1-talos-v1.11.6/{node}/upgrade");
        let mut cmd = match upgrade_run(&hk8s) {
            None => hk8s.command(&["run", "upgrade-cluster", "-f", &spec, "--pause", "0"]),
            Some(run) => hk8s.command(&["resume", run["run_id"].as_str().unwrap()]),
        };
        let out = cmd
            .env("HK8S_DEBUG_KILL_AFTER_ACTIVITY", &activity)
            .output()
            .unwrap();
        assert!(
            killed(out.status),
            "{activity}: not killed ({:?})",
            out.status
        );
        let talos = twin.talos().await;
        let accepted = crate::upgrade::nodes(&talos)
            .into_iter()
            .find(|n| n["hostname"] == node)
            .unwrap()["upgrade_rpcs_accepted"]
            .clone();
        assert_eq!(accepted, 1, "{node} accepted the RPC before the kill");
    }
    finish_upgrade(&hk8s, &spec);
    crate::upgrade::assert_upgraded(&twin, "after accepted RPCs").await;
}

/// 24 SIGKILLs at seeded random instants of the upgrade (each resume killed again), then a
/// resume to the end: the same end state and one accepted Upgrade RPC per node.
#[tokio::test(flavor = "multi_thread")]
async fn upgrade_sigkill_at_random_instants_then_resume() {
    let (twin, hk8s, spec) = crate::upgrade::old_cluster(SPEED).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x75_70_67_72);
    let mut kills = 0;
    // Short instants (the whole upgrade runs about 17 s here): 24 of them end well before the
    // run does on a fast machine too, and a slow one only makes each instant earlier in it.
    for _ in 0..48 {
        if kills == 24 {
            break;
        }
        let mut child = match upgrade_run(&hk8s) {
            None => hk8s
                .command(&["run", "upgrade-cluster", "-f", &spec, "--pause", "0"])
                .spawn()
                .unwrap(),
            Some(run) if run["status"] == "succeeded" => break,
            Some(run) => hk8s
                .command(&["resume", run["run_id"].as_str().unwrap()])
                .spawn()
                .unwrap(),
        };
        match wait_timeout(
            &mut child,
            Duration::from_millis(rng.random_range(150..800)),
        ) {
            None => {
                sigkill(&mut child);
                kills += 1;
            }
            Some(status) => assert!(
                status.success() || status.code() == Some(1),
                "exit {status}"
            ),
        }
    }
    println!("upgrade: {kills} random kills");
    assert!(kills >= 20, "only {kills} kills landed inside the run");
    finish_upgrade(&hk8s, &spec);
    crate::upgrade::assert_upgraded(&twin, "random instants").await;
}
