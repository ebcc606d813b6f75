//! `build-image` against a twin that starts with no snapshot: the snapshots it leaves, the
//! temporary resources it does not leave, the boot check, crashes at every step boundary and at
//! seeded random instants, dead runs' leftovers, and create-cluster building what is missing.

use std::time::{Duration, Instant};

use hk8s_tests::{
    Hk8s, TwinProcess, assert_only_the_lock_mutated, example_spec, killed, sigkill, wait_timeout,
};
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::Value;

use crate::SPEED;

/// The example cluster with both architectures (an arm worker pool), so both are built.
fn two_arch_spec() -> String {
    format!(
        "{}\nworkerPools:\n  - {{ name: arm, count: 1, type: cax21, arch: arm }}\n",
        example_spec()
    )
}

/// The snapshots, and the temporary servers and keys, as the Hetzner API lists them.
struct Leftovers {
    snapshots: Vec<Value>,
    temp_servers: usize,
    temp_keys: usize,
    temp_images: usize,
}

async fn observe(twin: &TwinProcess) -> Leftovers {
    let sel = "component%3Dimage-builder";
    let list = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    let snapshots = list(
        &twin.api(Method::GET, "/images?type=snapshot").await,
        "images",
    );
    Leftovers {
        temp_servers: list(
            &twin
                .api(Method::GET, &format!("/servers?label_selector={sel}"))
                .await,
            "servers",
        )
        .len(),
        temp_keys: list(
            &twin
                .api(Method::GET, &format!("/ssh_keys?label_selector={sel}"))
                .await,
            "ssh_keys",
        )
        .len(),
        temp_images: snapshots
            .iter()
            .filter(|i| i["labels"]["component"] == "image-builder")
            .count(),
        snapshots,
    }
}

/// Exactly one published snapshot per architecture in `arches`, with the labels; nothing
/// temporary left.
async fn assert_end_state(twin: &TwinProcess, arches: &[&str], what: &str) {
    let seen = observe(twin).await;
    assert_eq!(seen.temp_servers, 0, "{what}: temporary servers left");
    assert_eq!(seen.temp_keys, 0, "{what}: temporary SSH keys left");
    assert_eq!(seen.temp_images, 0, "{what}: unpublished snapshots left");
    let mut got: Vec<String> = seen
        .snapshots
        .iter()
        .map(|i| i["labels"]["arch"].as_str().unwrap_or("?").to_string())
        .collect();
    got.sort();
    assert_eq!(got, arches, "{what}: snapshots {:?}", seen.snapshots);
    for image in &seen.snapshots {
        let labels = &image["labels"];
        assert_eq!(labels["os"], "talos", "{what}: {image}");
        assert_eq!(
            labels["version"],
            hk8s_tests::TALOS_VERSION,
            "{what}: {image}"
        );
        assert_eq!(labels["managed-by"], "hk8s", "{what}: {image}");
        assert_eq!(
            labels["schematic"].as_str().map(str::len),
            Some(32),
            "{what}: {image}"
        );
        assert_eq!(image["status"], "available", "{what}: {image}");
    }
}

fn only_run(hk8s: &Hk8s) -> Value {
    let runs = hk8s.runs();
    assert_eq!(runs.len(), 1, "expected one run: {runs:?}");
    runs[0].clone()
}

/// Resumes the only run until it succeeds (one resume is enough: nothing is killed then).
fn resume_to_success(hk8s: &Hk8s) {
    let run = only_run(hk8s);
    if run["status"] != "succeeded" {
        let id = run["run_id"].as_str().unwrap();
        hk8s.run_ok(&["resume", id]);
    }
}

fn outcomes(hk8s: &Hk8s) -> u64 {
    let id = only_run(hk8s)["run_id"].as_str().unwrap().to_string();
    hk8s.run_detail(&id)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["attempts"].as_array().unwrap().len() as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn build_image_on_an_empty_twin_leaves_one_snapshot_per_arch_and_nothing_else() {
    let twin = TwinProcess::start_empty(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let spec = spec.to_str().unwrap();

    let started = Instant::now();
    hk8s.run_ok(&["run", "build-image", "-f", spec, "--arch", "all"]);
    let wall = started.elapsed();
    let requests = twin.requests().await;
    println!(
        "build-image (amd64 + arm64) on the twin at speed {SPEED}: {:.2} s wall, {} API requests ({} mutating): {}",
        wall.as_secs_f64(),
        requests["total"],
        requests["mutating"],
        requests["counts"]
    );
    assert_end_state(&twin, &["amd64", "arm64"], "first build").await;

    // Again: the snapshots are found by their labels; nothing is made or deleted but the
    // cluster lock.
    twin.reset_requests().await;
    hk8s.run_ok(&["run", "build-image", "-f", spec, "--arch", "all"]);
    let requests = twin.requests().await;
    assert_only_the_lock_mutated(&requests, "second build");
    assert_end_state(&twin, &["amd64", "arm64"], "second build").await;
}

/// A customized schematic exists at the factory only once registered: the build registers it
/// (step `build/<a>/schematic`) before the rescue system downloads the image, and the snapshot
/// carries its ID. Without the registration the download is a 404 after a server was paid for.
#[tokio::test(flavor = "multi_thread")]
async fn build_image_registers_a_customized_schematic_before_the_download() {
    let twin = TwinProcess::start_empty(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = example_spec().replace(
        "  version: v1.11.6\n",
        "  version: v1.11.6\n  schematic:\n    extraKernelArgs: [net.ifnames=0]\n",
    );
    assert!(spec.contains("net.ifnames=0"), "{spec}");
    let spec = hk8s.write_spec("cluster.yaml", &spec);
    let spec = spec.to_str().unwrap();
    hk8s.run_ok(&["run", "build-image", "-f", spec]);
    assert_end_state(&twin, &["amd64"], "customized schematic").await;
    let label = observe(&twin).await.snapshots[0]["labels"]["schematic"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The vanilla schematic's ID (factory.talos.dev, no customization) is not what was built.
    assert!(
        !"376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba".starts_with(&label),
        "{label}"
    );
    let id = only_run(&hk8s)["run_id"].as_str().unwrap().to_string();
    let keys: Vec<String> = hk8s.run_detail(&id)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap_or_default().to_string())
        .collect();
    let at = |k: &str| keys.iter().position(|s| s.starts_with(k));
    assert!(
        at("build/amd64/schematic") < at("build/amd64/server/")
            && at("build/amd64/schematic").is_some(),
        "{keys:?}"
    );
}

/// Serves a valid xz stream of bytes that are no Talos image (the factory's layout).
async fn serve_garbage_factory() -> String {
    let garbage: Vec<u8> = (0..(1024 * 1024u32)).map(|i| (i % 251) as u8).collect();
    let mut child = std::process::Command::new("xz")
        .args(["-c", "-1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("xz runs");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &garbage));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let body = out.stdout;
    let app = axum::Router::new().fallback(axum::routing::get(move || {
        let body = body.clone();
        async move { body }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_boot_check_catches_a_corrupted_image() {
    let twin = TwinProcess::start_empty(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let factory = serve_garbage_factory().await;
    let mut command = hk8s.command(&["run", "build-image", "-f", spec.to_str().unwrap()]);
    command.env("HK8S_IMAGE_FACTORY", &factory);
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed its boot check"), "{stderr}");
    let seen = observe(&twin).await;
    assert!(seen.snapshots.is_empty(), "{:?}", seen.snapshots);
    assert_eq!((seen.temp_servers, seen.temp_keys), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn create_cluster_on_an_empty_twin_builds_its_images() {
    let twin = TwinProcess::start_empty(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &two_arch_spec());
    let out = hk8s.run_ok(&["run", "create-cluster", "-f", spec.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("nodes Ready: 6 of 6"), "{stdout}");
    assert_end_state(&twin, &["amd64", "arm64"], "create-cluster").await;
    let id = only_run(&hk8s)["run_id"].as_str().unwrap().to_string();
    let detail = hk8s.run_detail(&id);
    let keys: Vec<&str> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    for key in [
        "build/amd64/write@",
        "build/arm64/publish",
        "server/demo-cp-1",
    ] {
        assert!(
            keys.iter().any(|k| k.starts_with(key)),
            "no step {key}: {keys:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_runs_leftovers_go_with_a_later_build_and_with_destroy() {
    let twin = TwinProcess::start_empty(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let spec = spec.to_str().unwrap();
    let killed_build = |hk8s: &Hk8s| {
        let out = hk8s
            .command(&["run", "build-image", "-f", spec, "--force"])
            .env("HK8S_DEBUG_KILL_AFTER_STEP", "build/amd64/rescue")
            .output()
            .unwrap();
        assert!(killed(out.status), "{out:?}");
    };

    // A build killed with its server in rescue: a later build removes the server and key.
    killed_build(&hk8s);
    let seen = observe(&twin).await;
    assert_eq!((seen.temp_servers, seen.temp_keys), (1, 1));
    hk8s.run_ok(&["run", "build-image", "-f", spec]);
    assert_end_state(&twin, &["amd64"], "later build").await;

    // Again, and destroy-cluster removes them.
    killed_build(&hk8s);
    assert_eq!(observe(&twin).await.temp_servers, 1);
    hk8s.run_ok(&["run", "destroy-cluster", "-f", spec]);
    let seen = observe(&twin).await;
    assert_eq!((seen.temp_servers, seen.temp_keys), (0, 0));
}

/// The crash suite's reference: an uninterrupted build's outcome count and request count.
async fn reference(arch: &str) -> (u64, u64) {
    let twin = TwinProcess::start_empty(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    hk8s.run_ok(&[
        "run",
        "build-image",
        "-f",
        spec.to_str().unwrap(),
        "--arch",
        arch,
    ]);
    let requests = twin.requests().await["total"].as_u64().unwrap();
    (outcomes(&hk8s), requests)
}

fn arches_of(arch: &str) -> &'static [&'static str] {
    match arch {
        "x86" => &["amd64"],
        _ => &["amd64", "arm64"],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_every_step_boundary_of_build_image_then_resume() {
    let arch = "all";
    let (boundaries, _) = reference(arch).await;
    assert!(boundaries >= 14, "too few boundaries: {boundaries}");
    let mut hit = 0;
    for boundary in 1..boundaries {
        let twin = TwinProcess::start_empty(SPEED).await;
        let hk8s = Hk8s::new(&twin);
        let spec = hk8s.write_spec("cluster.yaml", &example_spec());
        let out = hk8s
            .command(&[
                "run",
                "build-image",
                "-f",
                spec.to_str().unwrap(),
                "--arch",
                arch,
            ])
            .env("HK8S_DEBUG_KILL_AFTER_OUTCOME", boundary.to_string())
            .output()
            .unwrap();
        if killed(out.status) {
            hit += 1;
        } else {
            assert!(out.status.success(), "boundary {boundary}: {out:?}");
        }
        resume_to_success(&hk8s);
        assert_end_state(&twin, arches_of(arch), &format!("boundary {boundary}")).await;
    }
    println!("build-image boundaries: {boundaries} in the reference run, {hit} hit");
    assert!(
        hit + 2 >= boundaries,
        "only {hit} of {boundaries} boundaries hit"
    );
}

/// Killed after an activity acted and before its result was journaled ("did it, not
/// recorded"): the resume adopts the servers and the snapshot by their labels instead
/// of making a second one (one `create_image` per architecture).
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_after_create_image_before_journal_finds_it_again() {
    let keys: Vec<String> = {
        let twin = TwinProcess::start_empty(SPEED).await;
        let hk8s = Hk8s::new(&twin);
        let spec = hk8s.write_spec("cluster.yaml", &example_spec());
        hk8s.run_ok(&["run", "build-image", "-f", spec.to_str().unwrap()]);
        let id = only_run(&hk8s)["run_id"].as_str().unwrap().to_string();
        hk8s.run_detail(&id)["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["key"].as_str().unwrap().to_string())
            .filter(|k| {
                // (`ssh-key@<k>` names the run's key, which differs per run: the boundary and
                // random suites cover it.)
                ["server/", "snapshot", "publish"]
                    .iter()
                    .any(|p| k.contains(p))
            })
            .collect()
    };
    assert!(keys.len() >= 3, "{keys:?}");
    for key in keys {
        let twin = TwinProcess::start_empty(SPEED).await;
        let hk8s = Hk8s::new(&twin);
        let spec = hk8s.write_spec("cluster.yaml", &example_spec());
        let out = hk8s
            .command(&["run", "build-image", "-f", spec.to_str().unwrap()])
            .env("HK8S_DEBUG_KILL_AFTER_ACTIVITY", &key)
            .output()
            .unwrap();
        assert!(killed(out.status), "{key}: not killed: {out:?}");
        resume_to_success(&hk8s);
        assert_end_state(&twin, &["amd64"], &key).await;
        let counts = &twin.requests().await["counts"];
        assert_eq!(
            counts["POST /v1/servers/{id}/actions/create_image"], 1,
            "{key}: {counts}"
        );
        assert_eq!(counts["POST /v1/ssh_keys"], 1, "{key}: {counts}");
    }
}

/// Kills at a seeded random number of Hetzner API requests (counted by the twin), so the
/// instant falls inside steps (between a create and its journal record) without guessing
/// durations: the test waits for progress, not for time.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_seeded_random_instants_of_build_image_then_resume() {
    let arch = "all";
    let (_, total) = reference(arch).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0062_7569_6c64);
    for round in 0..20 {
        let twin = TwinProcess::start_empty(SPEED).await;
        let hk8s = Hk8s::new(&twin);
        let spec = hk8s.write_spec("cluster.yaml", &example_spec());
        let spec = spec.to_str().unwrap();
        let at = rng.random_range(1..total.max(2));
        let mut child = hk8s
            .command(&["run", "build-image", "-f", spec, "--arch", arch])
            .spawn()
            .unwrap();
        loop {
            if wait_timeout(&mut child, Duration::from_millis(2)).is_some() {
                break;
            }
            if twin.requests().await["total"].as_u64().unwrap_or(0) >= at {
                sigkill(&mut child);
                break;
            }
        }
        if hk8s.runs().is_empty() {
            hk8s.run_ok(&["run", "build-image", "-f", spec, "--arch", arch]);
        } else {
            resume_to_success(&hk8s);
        }
        assert_end_state(
            &twin,
            arches_of(arch),
            &format!("round {round} (killed at request {at} of {total})"),
        )
        .await;
    }
}

/// Hetzner has no capacity for the first candidate: the build falls back to the next location
/// of the network zone, and both choices are journaled as steps.
#[tokio::test(flavor = "multi_thread")]
async fn resource_unavailable_falls_back_to_the_next_location() {
    let twin = TwinProcess::start_empty(SPEED).await;
    twin.add_fault(serde_json::json!({
        "match": {"method": "POST", "path_prefix": "/servers"},
        "error": {"status": 412, "code": "resource_unavailable"},
        "at_call": 1, "count": 1,
    }))
    .await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    hk8s.run_ok(&["run", "build-image", "-f", spec.to_str().unwrap()]);
    assert_end_state(&twin, &["amd64"], "fallback").await;
    let id = only_run(&hk8s)["run_id"].as_str().unwrap().to_string();
    let detail = hk8s.run_detail(&id);
    let keys: Vec<&str> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&"build/amd64/server/cx23@fsn1")
            && keys.contains(&"build/amd64/server/cx23@nbg1"),
        "{keys:?}"
    );
}
