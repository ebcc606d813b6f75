//! The binary's command line: usage errors, exit codes, the empty journal, shell completions,
//! the progress lines of a sandbox run without a terminal (plain and JSON), and a sandbox
//! kept serving with `--keep` that real kubectl reaches and Ctrl-C stops.
//!
//! (Having an integration test also makes `cargo test --workspace` build the `hk8s` binary,
//! which the end-to-end suite in `tests/` drives.)

use std::process::Command;

fn hk8s(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hk8s"))
        .args(args)
        .env("HK8S_HOME", home)
        .env_remove("HK8S_JOURNAL")
        .env_remove("HCLOUD_TOKEN")
        .env_remove("HCLOUD_ENDPOINT")
        .output()
        .expect("run hk8s")
}

#[test]
fn help_lists_the_commands_and_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let out = hk8s(home.path(), &["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "resume", "history", "sandbox", "130 interrupted"] {
        assert!(text.contains(word), "help lacks {word:?}: {text}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let out = hk8s(home.path(), &["run", "create-cluster"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config FILE is required"));
    let out = hk8s(home.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = hk8s(home.path(), &["resume", "0000"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn empty_history() {
    let home = tempfile::tempdir().unwrap();
    let out = hk8s(home.path(), &["history"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no runs");
    let out = hk8s(home.path(), &["-o", "json", "history"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    assert!(
        home.path().join("journal.db").exists(),
        "the journal lives in HK8S_HOME"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = hk8s(home.path(), &["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("hk8s") && script.contains("create-cluster"),
            "{shell}: {script}"
        );
        if shell == "bash" {
            let file = home.path().join("hk8s.bash");
            std::fs::write(&file, script.as_bytes()).unwrap();
            let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
            assert!(check.status.success(), "bash -n: {check:?}");
        }
    }
    let out = hk8s(home.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The sandbox speed of the progress tests: fast, and still every node waits well over 30 s of
/// sandbox time for its install and reboot.
const SPEED: &str = "200";

fn sandbox_run(home: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend([
        "run",
        "create-cluster",
        "--sandbox",
        "--sandbox-speed",
        SPEED,
    ]);
    let out = hk8s(home, &args);
    assert!(
        out.status.success(),
        "sandbox run failed\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The step of a plain progress line (`<ts> <mark> <step>: …`).
fn step_of(line: &str) -> Option<&str> {
    let rest = line.splitn(3, ' ').nth(2)?;
    rest.split_once(": ").map(|(step, _)| step)
}

#[test]
fn sandbox_progress_without_a_terminal_is_plain_timestamped_lines() {
    let home = tempfile::tempdir().unwrap();
    let out = sandbox_run(home.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    for line in &lines {
        let ts = line.split(' ').next().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "line without a timestamp: {line:?}\n{stderr}"
        );
    }
    for needle in [
        " → server/demo-cp-1: started",
        " ✓ server/demo-cp-1: done in ",
        " ● demo-cp-1: booting",
        " ● demo-cp-1: config applied",
        " ● demo-cp-1: installing and rebooting",
        " ● demo-cp-1: etcd member",
        " ● demo-cp-1: Ready",
        " ● demo-worker-1: Ready",
        " ✓ kube/nodes-ready: done in ",
        " succeeded",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in\n{stderr}");
    }
    assert!(
        !stderr.contains(" ● demo-worker-1: etcd member"),
        "a worker is no etcd member:\n{stderr}"
    );
    // Expected waits are never warnings; this clean run has no warning at all.
    let warnings: Vec<&&str> = lines.iter().filter(|l| l.contains(" ! ")).collect();
    assert!(warnings.is_empty(), "warnings: {warnings:#?}");
    // Still-waiting lines: at least one (the nodes install and reboot for minutes of sandbox
    // time), and per step at most one per 30 s of sandbox time.
    let mut waits: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for line in &lines {
        if let Some(i) = line.find("still waiting for ") {
            let secs: u64 = line[i..]
                .split(" (")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no duration in {line:?}"));
            assert!(line.contains("s sandbox time)"), "{line}");
            waits.entry(step_of(line).unwrap()).or_default().push(secs);
        }
    }
    assert!(
        waits.keys().any(|k| k.starts_with("talos/ready/")),
        "no still-waiting line for a node's install:\n{stderr}"
    );
    for (step, secs) in &waits {
        assert!(secs[0] >= 30, "{step}: first wait line after {} s", secs[0]);
        for pair in secs.windows(2) {
            assert!(pair[1] >= pair[0] + 30, "{step}: wait lines at {secs:?} s");
        }
    }
}

#[test]
fn log_format_json_gives_one_object_per_line() {
    let home = tempfile::tempdir().unwrap();
    let out = sandbox_run(home.path(), &["--log-format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut events = std::collections::BTreeSet::new();
    let mut ready = std::collections::BTreeSet::new();
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{stderr}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        let event = v["event"].as_str().unwrap_or_default().to_string();
        for key in ["step", "node", "phase", "attempt", "message"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
        if event == "phase" && v["phase"] == "ready" {
            ready.insert(v["node"].as_str().unwrap().to_string());
        }
        assert_ne!(v["level"], "warn", "{line}");
        events.insert(event);
    }
    for e in [
        "step-started",
        "step-completed",
        "still-waiting",
        "phase",
        "note",
    ] {
        assert!(events.contains(e), "no {e} event: {events:?}");
    }
    assert_eq!(ready.len(), 5, "{ready:?}");
}

#[test]
fn keep_leaves_the_sandbox_serving_until_ctrl_c() {
    use std::io::BufRead as _;
    let Some(kubectl) = hk8s_testkit::tool("kubectl", "KUBECTL", "--help") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hk8s"))
        .args([
            "run",
            "create-cluster",
            "--sandbox",
            "--sandbox-speed",
            SPEED,
            "--keep",
        ])
        .env("HK8S_HOME", home.path())
        .env_remove("HK8S_JOURNAL")
        .env_remove("HCLOUD_TOKEN")
        .env_remove("HCLOUD_ENDPOINT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut text);
        text
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let (api, command) = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(600))
            .unwrap_or_else(|_| panic!("no kubectl line; stdout so far: {seen:#?}"));
        seen.push(line.clone());
        if line.trim_start().starts_with("kubectl --kubeconfig ") {
            let api = seen
                .iter()
                .find_map(|l| l.split("Hetzner API ").nth(1))
                .and_then(|rest| rest.split(' ').next())
                .expect("the Hetzner API endpoint is printed")
                .to_string();
            break (api, line.trim().to_string());
        }
    };
    assert!(
        seen.iter().any(|l| l.contains("talosconfig: ")),
        "{seen:#?}"
    );
    // The pasted line, as printed, with real kubectl.
    let words: Vec<&str> = command.split_whitespace().collect();
    let kubeconfig = words[2].to_string();
    let out = Command::new(&kubectl)
        .args(&words[1..])
        .env("HOME", home.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{command}: {out:?}");
    assert_eq!(text.matches(" Ready ").count(), 5, "{text}");
    let server = std::fs::read_to_string(&kubeconfig)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("server: https://")
                .map(str::to_string)
        })
        .expect("kubeconfig names its server");
    let api_addr = api
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    for addr in [&server, &api_addr] {
        assert!(
            std::net::TcpStream::connect(addr.as_str()).is_ok(),
            "{addr} is not serving while kept"
        );
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let stderr = stderr_reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopping the sandbox"), "{stderr}");
    for addr in [&server, &api_addr] {
        assert!(
            std::net::TcpStream::connect(addr.as_str()).is_err(),
            "{addr} still serves after Ctrl-C"
        );
    }
}
