//! A newcomer's first hour (issue 10): what a bad token, an unreachable endpoint, a type Hetzner
//! no longer sells, a read-only token, a stale cluster lock, another machine's secrets bundle and
//! two operators creating the same cluster at the same instant look like from the real binary.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hk8s_tests::{CLUSTER_KINDS, Hk8s, TwinProcess, example_spec, wait_timeout};
use serde_json::{Value, json};

use crate::SPEED;

/// stderr as text.
fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The non-empty lines of `text`.
fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Asserts that `out` failed with `code` and printed exactly one line (one sentence) on stderr
/// containing every needle; returns that line.
fn one_sentence(out: &Output, code: i32, needles: &[&str], what: &str) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: {}\n{err}",
        out.status
    );
    let l = lines(&err);
    assert_eq!(l.len(), 1, "{what}: more than one line on stderr:\n{err}");
    for n in needles {
        assert!(l[0].contains(n), "{what}: {n:?} not named: {err}");
    }
    println!("{what}: {}", l[0]);
    l[0].to_string()
}

/// Asserts that the twin saw no mutating request and holds nothing.
async fn assert_untouched(twin: &TwinProcess, what: &str) {
    let requests = twin.requests().await;
    assert_eq!(requests["mutating"], 0, "{what}: {}", requests["counts"]);
    twin.assert_none_left(&CLUSTER_KINDS).await;
}

/// (a) bad token, (b) unreachable endpoint, (c) a deprecated type, (d) every problem at once,
/// (e) a read-only token: one clear message each, the right exit code, nothing created.
#[tokio::test(flavor = "multi_thread")]
async fn first_mistakes_get_one_clear_message_and_create_nothing() {
    let twin = TwinProcess::start(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let good = example_spec();
    let spec = hk8s.write_spec("cluster.yaml", &good);
    let spec = spec.to_str().unwrap();

    // (a) A wrong token: exit 2 within 5 s, one sentence naming HCLOUD_TOKEN.
    let started = Instant::now();
    let out = hk8s
        .command(&["run", "create-cluster", "-f", spec])
        .env("HCLOUD_TOKEN", "not-the-token")
        .output()
        .unwrap();
    let took = started.elapsed();
    one_sentence(
        &out,
        2,
        &["HCLOUD_TOKEN was rejected by the Hetzner API"],
        "bad token",
    );
    println!("bad token: exit 2 after {took:?}");
    assert!(took < Duration::from_secs(5), "bad token took {took:?}");
    assert_untouched(&twin, "bad token").await;
    assert!(hk8s.runs().is_empty(), "a bad token journaled a run");

    // (b) An endpoint nobody listens on: non-zero within --api-timeout (3 s, plus process
    // start-up), naming the address and the cause.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = format!("http://127.0.0.1:{port}/v1");
    let started = Instant::now();
    let out = hk8s
        .command(&["run", "create-cluster", "-f", spec, "--api-timeout", "3"])
        .env("HCLOUD_ENDPOINT", &dead)
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "unreachable endpoint succeeded: {err}"
    );
    assert!(
        err.contains(&format!("cannot reach the Hetzner API at {dead}")),
        "{err}"
    );
    assert!(err.contains("connection refused"), "{err}");
    println!(
        "unreachable: exit {:?} after {took:?}: {err}",
        out.status.code()
    );
    assert!(
        took < Duration::from_secs(3 + 5),
        "unreachable took {took:?}"
    );

    // (c) A type Hetzner no longer sells: the field named, exit 2, nothing created.
    let deprecated = good.replacen("type: cx23", "type: cx22", 1);
    assert_ne!(deprecated, good);
    let path = hk8s.write_spec("deprecated.yaml", &deprecated);
    let out = hk8s.run_err(&["run", "create-cluster", "-f", path.to_str().unwrap()], 2);
    let err = stderr(&out);
    println!("deprecated type: {err}");
    assert!(err.contains("nodes.controlPlane.type"), "{err}");
    assert!(err.contains("cx22"), "{err}");
    assert!(err.contains("nothing was created"), "{err}");
    assert_untouched(&twin, "deprecated type").await;

    // (d) Several problems: all of them listed in one run.
    let several =
        good.replacen("type: cx23", "type: cx22", 1)
            .replacen("type: cx33", "type: cax11", 1);
    let path = hk8s.write_spec("several.yaml", &several);
    let out = hk8s.run_err(&["run", "create-cluster", "-f", path.to_str().unwrap()], 2);
    let err = stderr(&out);
    println!("several problems: {err}");
    assert!(err.contains("nodes.controlPlane.type"), "{err}");
    assert!(err.contains("nodes.workers"), "{err}");
    let listed = lines(&err)
        .iter()
        .filter(|l| l.trim_start().starts_with("- "))
        .count();
    assert!(listed >= 2, "problems not listed one per line: {err}");
    assert_untouched(&twin, "several problems").await;
    assert!(hk8s.runs().is_empty(), "a spec problem journaled a run");

    // (e) A read-only token: exit 2, one sentence, nothing created.
    let read_only = format!("read-only-{}", rand::random::<u32>());
    reqwest::Client::new()
        .post(format!("{}/tokens/read-only", twin.control_url))
        .json(&json!({"token": read_only}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let out = hk8s
        .command(&["run", "create-cluster", "-f", spec])
        .env("HCLOUD_TOKEN", &read_only)
        .output()
        .unwrap();
    one_sentence(
        &out,
        2,
        &["HCLOUD_TOKEN may read but not change", "Read & Write"],
        "read-only token",
    );
    twin.assert_none_left(&CLUSTER_KINDS).await;
    let state = twin.state().await;
    assert_eq!(state["placement_groups"], json!([]), "the lock was created");
    assert!(hk8s.runs().is_empty(), "a read-only token journaled a run");
}

/// The example spec for cluster `name`.
fn spec_named(name: &str) -> String {
    let spec = example_spec().replace("clusterName: demo", &format!("clusterName: {name}"));
    assert!(spec.contains(&format!("clusterName: {name}")));
    spec
}

/// `hk8s run create-cluster` for `hk8s` on the host `host`, stdout and stderr piped.
fn create_on_host(hk8s: &Hk8s, spec: &str, host: &str) -> Command {
    let mut cmd = hk8s.command(&["run", "create-cluster", "-f", spec]);
    cmd.env("HK8S_HOST_ID", host)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Seconds since the Unix epoch (the lock's `lock-expires` label is in these).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The lock placement group of `cluster` in `state`, if any.
fn lock_of<'a>(state: &'a Value, cluster: &str) -> Option<&'a Value> {
    state["placement_groups"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == format!("hk8s-lock-{cluster}"))
}

/// (f) A run killed while it holds the lock (another host, short TTL) blocks others until the
/// lock expires, naming the holder; then the next run takes it over and `history` says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_lock_of_a_dead_run_is_taken_over_after_it_expires() {
    let twin = TwinProcess::start(SPEED).await;
    let a = Hk8s::new(&twin);
    let b = Hk8s::new(&twin);
    let spec = a.write_spec("cluster.yaml", &example_spec());
    let spec = spec.to_str().unwrap();

    // Host A takes the lock and dies with it (SIGKILL right after its first journaled outcome).
    let out = create_on_host(&a, spec, "host-a")
        .env("HK8S_LOCK_TTL_SECS", "5")
        .env("HK8S_DEBUG_KILL_AFTER_OUTCOME", "1")
        .output()
        .unwrap();
    assert!(
        hk8s_tests::killed(out.status),
        "A was not killed: {}",
        stderr(&out)
    );
    let state = twin.state().await;
    let lock = lock_of(&state, "demo").expect("A left its lock").clone();
    assert_eq!(lock["labels"]["lock-host"], "host-a", "{lock}");
    let expires: i64 = lock["labels"]["lock-expires"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let run_a = lock["labels"]["lock-run"].as_str().unwrap().to_string();

    // Host B while the lock is valid: exit 75 naming A's run and host.
    let asked = unix_now();
    let out = create_on_host(&b, spec, "host-b").output().unwrap();
    if asked < expires {
        // (If the machine was so slow that the lock expired meanwhile, B took it over: the
        // assertions after the wait cover that run.)
        if out.status.code() == Some(75) {
            one_sentence(
                &out,
                75,
                &["cluster demo is locked by run", &run_a, "on host host-a"],
                "held lock",
            );
        }
    }
    // Wait for the lock's own deadline (its label, not a guess), then B takes it over.
    let _ = hk8s_testkit::eventually("the lock's expiry passed", || async {
        (unix_now() > expires).then_some(())
    })
    .await;
    let runs_before = b.runs().len();
    let out = create_on_host(&b, spec, "host-b").output().unwrap();
    assert!(out.status.success(), "B after expiry: {}", stderr(&out));
    let runs = b.runs();
    assert_eq!(runs.len(), runs_before + 1);
    let run_b = runs[0]["run_id"].as_str().unwrap();
    let detail = b.run_detail(run_b).to_string();
    assert!(
        detail.contains("cloud-lock/"),
        "no lock step in history: {detail}"
    );
    let text = String::from_utf8_lossy(&b.run_ok(&["history", run_b]).stdout).into_owned();
    println!("history of the run that took over:\n{text}");
    assert!(
        text.contains(&format!("held by run {run_b} on host host-b"))
            && text.contains(&format!("taken over from run {run_a} on host host-a")),
        "history does not name the stale lock taken over: {text}"
    );
    // B released its lock at the end.
    assert!(lock_of(&twin.state().await, "demo").is_none());
}

/// (h) Two operators with separate journals and state folders on two hosts create the same
/// cluster at the same instant, ten times: exactly one proceeds, the other stops with exit 75
/// naming the holder (or exit 2 when it came after the winner had labelled the cluster), and
/// the nodes only ever get one secrets bundle. (g) A third machine holding another bundle is
/// told so.
#[tokio::test(flavor = "multi_thread")]
async fn two_journals_racing_for_one_cluster_one_proceeds_one_bundle() {
    let twin = TwinProcess::start(SPEED).await;
    let mut held = 0;
    let mut later = 0;
    let mut bundles = Vec::new();
    for i in 0..10 {
        let name = format!("race{i}");
        let a = Hk8s::new(&twin);
        let b = Hk8s::new(&twin);
        let spec_a = a.write_spec("cluster.yaml", &spec_named(&name));
        let spec_b = b.write_spec("cluster.yaml", &spec_named(&name));
        let mut pa = create_on_host(&a, spec_a.to_str().unwrap(), "host-a")
            .spawn()
            .unwrap();
        let mut pb = create_on_host(&b, spec_b.to_str().unwrap(), "host-b")
            .spawn()
            .unwrap();
        let limit = Duration::from_secs(600);
        assert!(wait_timeout(&mut pa, limit).is_some(), "{name}: A hangs");
        assert!(wait_timeout(&mut pb, limit).is_some(), "{name}: B hangs");
        let oa = pa.wait_with_output().unwrap();
        let ob = pb.wait_with_output().unwrap();
        let (winner, w_out, loser, l_out, w_host) = match (oa.status.success(), ob.status.success())
        {
            (true, false) => (&a, &oa, &b, &ob, "host-a"),
            (false, true) => (&b, &ob, &a, &oa, "host-b"),
            _ => panic!(
                "{name}: exactly one run must proceed: A {} / B {}\n--- A\n{}\n--- B\n{}",
                oa.status,
                ob.status,
                stderr(&oa),
                stderr(&ob)
            ),
        };
        let _ = w_out;
        let err = stderr(l_out);
        match l_out.status.code() {
            Some(75) => {
                let run = winner.runs()[0].clone();
                let run_id = run["run_id"].as_str().unwrap().to_string();
                assert!(
                    err.contains(&format!(
                        "cluster {name} is locked by run {run_id} on host {w_host}"
                    )),
                    "{name}: the holder is not named: {err}"
                );
                held += 1;
            }
            Some(2) => {
                assert!(
                    err.contains(&format!("cluster {name} exists (secrets fingerprint")),
                    "{name}: {err}"
                );
                later += 1;
            }
            other => panic!("{name}: the loser exited {other:?}: {err}"),
        }
        assert!(loser.runs().is_empty(), "{name}: the loser journaled a run");
        let loser_dir = loser.home().join("clusters").join(&name);
        assert!(
            !loser_dir.join("secrets.yaml").exists(),
            "{name}: the loser generated a secrets bundle"
        );
        // One bundle on the nodes: every node of the cluster carries the same OS CA, and the
        // Talos twin saw one cluster of that name.
        let talos = twin.talos().await;
        let keys: std::collections::BTreeSet<String> = talos["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["cluster_name"] == name.as_str())
            .map(|n| n["cluster_key"].as_str().expect("cluster_key").to_string())
            .collect();
        let nodes = talos["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["cluster_name"] == name.as_str())
            .count();
        assert_eq!(nodes, 5, "{name}: {talos}");
        assert_eq!(keys.len(), 1, "{name}: more than one CA applied: {keys:?}");
        let clusters = talos["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["cluster_name"] == name.as_str())
            .count();
        assert_eq!(clusters, 1, "{name}: {talos}");
        // (Read now: the winner's state folder goes away with it at the end of the iteration.)
        let bundle = winner
            .home()
            .join("clusters")
            .join(&name)
            .join("secrets.yaml");
        bundles.push(
            std::fs::read_to_string(&bundle)
                .unwrap_or_else(|e| panic!("{}: {e}", bundle.display())),
        );
        println!(
            "{name}: winner {w_host}, loser exit {:?}",
            l_out.status.code()
        );
    }
    println!(
        "race: 10 of 10 had exactly one run proceed; loser held off by the lock {held}, by the cluster's fingerprint {later}"
    );

    // (g) A machine holding another cluster's bundle, for race1: told so, exit 2, nothing done.
    let c = Hk8s::new(&twin);
    let spec = c.write_spec("cluster.yaml", &spec_named("race1"));
    let other = c.write_spec("race0-secrets.yaml", &bundles[0]);
    twin.reset_requests().await;
    let out = c.run_err(
        &[
            "run",
            "create-cluster",
            "-f",
            spec.to_str().unwrap(),
            "--secrets",
            other.to_str().unwrap(),
        ],
        2,
    );
    one_sentence(
        &out,
        2,
        &[
            "cluster race1 was created with another secrets bundle (fingerprint",
            "import it with --secrets",
        ],
        "fingerprint mismatch",
    );
    assert_eq!(twin.requests().await["mutating"], 0);
}
