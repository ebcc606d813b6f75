//! Kill the CLI with SIGKILL at every step boundary and at seeded random instants, resume, and
//! compare the cloud with an uninterrupted run's: no duplicate, no leaked resource.

use std::time::{Duration, Instant};

use hk8s_tests::{Hk8s, TwinProcess, example_spec, killed, sigkill, wait_timeout};
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;

use crate::SPEED;

/// Resumes the only unfinished run until it succeeds (each resume may itself be killed).
fn resume_to_success(hk8s: &Hk8s) -> String {
    let runs = hk8s.runs();
    assert_eq!(runs.len(), 1, "expected one run: {runs:?}");
    let id = runs[0]["run_id"].as_str().unwrap().to_string();
    let out = hk8s.run(&["resume", &id[..8]]);
    assert!(
        out.status.success(),
        "resume of {id} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    id
}

fn step_keys(detail: &Value) -> Vec<String> {
    let mut keys: Vec<String> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

struct Reference {
    state: Value,
    steps: Vec<String>,
    commits: u64,
    wall: Duration,
}

async fn reference_run(spec_yaml: &str) -> Reference {
    let twin = TwinProcess::start(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", spec_yaml);
    let started = Instant::now();
    let out = hk8s.run(&["run", "create-cluster", "-f", spec.to_str().unwrap()]);
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = hk8s.runs()[0]["run_id"].as_str().unwrap().to_string();
    let detail = hk8s.run_detail(&id);
    // Commits of an uninterrupted run: one per attempt start, one per attempt end.
    let commits = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| 2 * s["attempts"].as_array().unwrap().len() as u64)
        .sum();
    Reference {
        state: twin.normalized().await,
        steps: step_keys(&detail),
        commits,
        wall,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_every_step_boundary_then_resume() {
    let spec_yaml = example_spec();
    let reference = reference_run(&spec_yaml).await;
    assert!(
        reference.commits >= 20,
        "too few boundaries: {}",
        reference.commits
    );
    for boundary in 1..reference.commits {
        let twin = TwinProcess::start(SPEED).await;
        let hk8s = Hk8s::new(&twin);
        let spec = hk8s.write_spec("cluster.yaml", &spec_yaml);
        let out = hk8s
            .command(&["run", "create-cluster", "-f", spec.to_str().unwrap()])
            .env("HK8S_DEBUG_KILL_AFTER_COMMIT", boundary.to_string())
            .output()
            .unwrap();
        assert!(
            killed(out.status),
            "boundary {boundary}: not killed ({:?})",
            out.status
        );
        let id = resume_to_success(&hk8s);
        assert_eq!(
            twin.normalized().await,
            reference.state,
            "boundary {boundary}: cloud differs"
        );
        assert_eq!(
            step_keys(&hk8s.run_detail(&id)),
            reference.steps,
            "boundary {boundary}: steps differ"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_instants_then_resume() {
    let spec_yaml = example_spec();
    let reference = reference_run(&spec_yaml).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x68_6b_38_73);
    let window = reference.wall.as_millis().max(50) as u64;
    for round in 0..20 {
        let twin = TwinProcess::start(SPEED).await;
        let hk8s = Hk8s::new(&twin);
        let spec = hk8s.write_spec("cluster.yaml", &spec_yaml);
        // Up to two kills per round: one during the first run, one during the first resume.
        let mut child = hk8s
            .command(&["run", "create-cluster", "-f", spec.to_str().unwrap()])
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(rng.random_range(0..window));
        if wait_timeout(&mut child, delay).is_none() {
            sigkill(&mut child);
        }
        let runs = hk8s.runs();
        if runs.is_empty() {
            // Killed before the run was journaled: a fresh start is the resume.
            let out = hk8s.run(&["run", "create-cluster", "-f", spec.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else if runs[0]["status"] != "succeeded" {
            let id = runs[0]["run_id"].as_str().unwrap().to_string();
            let mut child = hk8s.command(&["resume", &id]).spawn().unwrap();
            let delay = Duration::from_millis(rng.random_range(0..window));
            if wait_timeout(&mut child, delay).is_none() {
                sigkill(&mut child);
            }
            if hk8s.runs()[0]["status"] != "succeeded" {
                resume_to_success(&hk8s);
            }
        }
        assert_eq!(
            twin.normalized().await,
            reference.state,
            "round {round}: cloud differs"
        );
        let id = hk8s.runs()[0]["run_id"].as_str().unwrap().to_string();
        assert_eq!(
            step_keys(&hk8s.run_detail(&id)),
            reference.steps,
            "round {round}: steps differ"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_resumes_at_once_one_proceeds() {
    let twin = TwinProcess::start(SPEED / 20.0).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let out = hk8s
        .command(&["run", "create-cluster", "-f", spec.to_str().unwrap()])
        .env("HK8S_DEBUG_KILL_AFTER_COMMIT", "3")
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
    let second = hk8s.run(&["resume", &id]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.id())),
        "holder not named: {stderr}"
    );
    let status = wait_timeout(&mut first, Duration::from_secs(60)).expect("first resume hangs");
    assert!(status.success());
}

/// A resource deleted by hand while the run was stopped is made again on resume, even though
/// its step had finished: labels, not the journal, are the truth.
#[tokio::test(flavor = "multi_thread")]
async fn resources_deleted_while_stopped_are_recreated_on_resume() {
    let spec_yaml = example_spec();
    let reference = reference_run(&spec_yaml).await;
    let twin = TwinProcess::start(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &spec_yaml);
    let out = hk8s
        .command(&["run", "create-cluster", "-f", spec.to_str().unwrap()])
        .env(
            "HK8S_DEBUG_KILL_AFTER_COMMIT",
            (reference.commits - 1).to_string(),
        )
        .output()
        .unwrap();
    assert!(killed(out.status));
    let id = hk8s.runs()[0]["run_id"].as_str().unwrap().to_string();
    let detail = hk8s.run_detail(&id);
    let done_server = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"] == "succeeded" && s["key"].as_str().unwrap().starts_with("server/"))
        .map(|s| {
            s["key"]
                .as_str()
                .unwrap()
                .trim_start_matches("server/")
                .to_string()
        })
        .expect("a finished server step");
    // Delete, by hand, a server whose step finished and the load balancer.
    let state = twin.state().await;
    let server_id = state["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == done_server.as_str())
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let lb_id = state["load_balancers"][0]["id"].as_i64().unwrap();
    twin.api(reqwest::Method::DELETE, &format!("/servers/{server_id}"))
        .await;
    twin.api(reqwest::Method::DELETE, &format!("/load_balancers/{lb_id}"))
        .await;
    // Let the delete action finish, then resume.
    let deadline = Instant::now() + Duration::from_secs(20);
    while twin.state().await["servers"].as_array().unwrap().len() == 5 {
        assert!(Instant::now() < deadline, "server never deleted");
        std::thread::sleep(Duration::from_millis(20));
    }
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
