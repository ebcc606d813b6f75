//! Fixtures for the end-to-end tests: the twin as its own process ([`TwinProcess`]) and the
//! real `hk8s` binary ([`Hk8s`]) with a private journal and state directory.
//!
//! The binaries come from the workspace's target directory: `cargo test --workspace` builds them.

pub mod bench;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// Talos version the fixtures seed snapshots for (the example cluster's).
pub const TALOS_VERSION: &str = "v1.11.6";

/// Path of a workspace binary next to the running test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (which builds every binary)",
        path.display()
    );
    path
}

/// `hk8s-twin serve` in its own process, on a random loopback port.
pub struct TwinProcess {
    child: Child,
    /// `http://127.0.0.1:PORT/v1`.
    pub api_url: String,
    /// `http://127.0.0.1:PORT/twin`.
    pub control_url: String,
    /// The bearer token it accepts.
    pub token: String,
    /// Its image factory's base URL.
    pub factory_url: String,
    http: reqwest::Client,
}

/// The port the test twins' rescue systems serve SSH on (at each server's own IP; 22 needs root).
pub const RESCUE_SSH_PORT: u16 = 22022;

/// The resource kinds (keys of [`TwinProcess::state`]) a cluster's infrastructure consists of.
pub const CLUSTER_KINDS: [&str; 5] = [
    "servers",
    "networks",
    "firewalls",
    "load_balancers",
    "placement_groups",
];

impl TwinProcess {
    /// Starts a twin at `speed` with the example cluster's Talos snapshots seeded, labelled as
    /// hk8s's image builder labels them.
    pub async fn start(speed: f64) -> TwinProcess {
        let twin = Self::start_empty(speed).await;
        for arch in ["amd64", "arm64"] {
            twin.control_post(
                "/images/talos",
                json!({"arch": arch, "version": TALOS_VERSION, "labels": {"managed-by": "hk8s"}}),
            )
            .await;
        }
        twin.reset_requests().await;
        twin
    }

    /// Starts a twin at `speed` with Talos `version` snapshots for both architectures (an
    /// older cluster to upgrade).
    pub async fn start_with_talos(speed: f64, version: &str) -> TwinProcess {
        let twin = Self::start_empty(speed).await;
        for arch in ["amd64", "arm64"] {
            twin.control_post(
                "/images/talos",
                json!({"arch": arch, "version": version, "labels": {"managed-by": "hk8s"}}),
            )
            .await;
        }
        twin.reset_requests().await;
        twin
    }

    /// `POST /twin/talos/faults` (an upgrade fault: `never_returns`, `boot_rollback`,
    /// `installer_refuses`, `locked`, `pdb_never_allows`).
    pub async fn talos_fault(&self, body: Value) -> Value {
        self.control_post("/talos/faults", body).await
    }

    /// `POST /twin/talos/reset-counters`: upgrade counters to 0, etcd minimum to the current.
    pub async fn reset_talos_counters(&self) {
        self.control_post("/talos/reset-counters", json!({})).await;
    }

    /// Starts a twin at `speed` with no snapshot (a new project: build-image makes them through
    /// the twin's rescue systems and image factory).
    pub async fn start_empty(speed: f64) -> TwinProcess {
        let token = format!("test-token-{}", rand::random::<u32>());
        let mut child = Command::new(bin("hk8s-twin"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--speed",
                &speed.to_string(),
                "--token",
                &token,
                "--rescue-ssh-port",
                &RESCUE_SSH_PORT.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hk8s-twin");
        let stdout = child.stdout.take().expect("twin stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .expect("twin printed nothing")
            .expect("read twin stdout");
        let api_url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in twin output: {first}"))
            .to_string();
        // Keep draining stdout so the twin never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let control_url = api_url.replace("/v1", "/twin");
        let factory_url = api_url.trim_end_matches("/v1").to_string();
        TwinProcess {
            child,
            api_url,
            control_url,
            token,
            factory_url,
            http: reqwest::Client::new(),
        }
    }

    async fn control_post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.control_url))
            .json(&body)
            .send()
            .await
            .expect("twin control API");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn control_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.control_url))
            .send()
            .await
            .expect("twin control API")
            .json()
            .await
            .expect("twin control JSON")
    }

    /// `GET /twin/state`.
    pub async fn state(&self) -> Value {
        self.control_get("/state").await
    }

    /// Asserts that the twin holds no resource of any of `kinds` (keys of [`Self::state`]).
    pub async fn assert_none_left(&self, kinds: &[&str]) {
        let state = self.state().await;
        for kind in kinds {
            assert_eq!(
                state[kind].as_array().map(Vec::len),
                Some(0),
                "{kind} left: {}",
                state[kind]
            );
        }
    }

    /// `GET /twin/talos`: the simulated Talos nodes, clusters and call counts.
    pub async fn talos(&self) -> Value {
        self.control_get("/talos").await
    }

    /// The Talos side in a comparable form: nodes (hostname, phase, role) and clusters
    /// (bootstrapped, successful bootstraps, etcd members), sorted.
    pub async fn talos_normalized(&self) -> Value {
        let talos = self.talos().await;
        let mut nodes: Vec<Value> = talos["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| json!([n["hostname"], n["phase"], n["role"], n["etcd_member"]]))
            .collect();
        nodes.sort_by_key(|v| v.to_string());
        let clusters: Vec<Value> = talos["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let mut members: Vec<String> = c["etcd_members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| m[0].as_str().unwrap_or_default().to_string())
                    .collect();
                members.sort();
                json!({"name": c["cluster_name"], "bootstrapped": c["bootstrapped"],
                       "successful_bootstraps": c["successful_bootstraps"], "etcd": members})
            })
            .collect();
        json!({"nodes": nodes, "clusters": clusters})
    }

    /// `GET /twin/requests`: `{requests, counts, total, mutating}`.
    pub async fn requests(&self) -> Value {
        self.control_get("/requests").await
    }

    /// `POST /twin/reset-requests`.
    pub async fn reset_requests(&self) {
        self.control_post("/reset-requests", json!({})).await;
    }

    /// Adds a fault rule (see the twin's README).
    pub async fn add_fault(&self, rule: Value) {
        self.control_post("/faults", rule).await;
    }

    /// Removes every fault rule.
    pub async fn clear_faults(&self) {
        self.http
            .delete(format!("{}/faults", self.control_url))
            .send()
            .await
            .expect("clear faults");
    }

    /// Calls the Hetzner API itself (as a person with the hcloud CLI would).
    pub async fn api(&self, method: reqwest::Method, path: &str) -> Value {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.api_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("twin API");
        resp.json().await.unwrap_or(Value::Null)
    }

    /// Calls the Hetzner API with a JSON body.
    pub async fn api_json(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.api_url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("twin API");
        resp.json().await.unwrap_or(Value::Null)
    }

    /// The cluster-relevant state, with ids, IPs, times and the secrets fingerprint left out,
    /// sorted: what two runs that did the same thing must agree on.
    pub async fn normalized(&self) -> Value {
        normalize(&self.state().await)
    }
}

impl Drop for TwinProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// See [`TwinProcess::normalized`].
pub fn normalize(state: &Value) -> Value {
    let names_by_id = |kind: &str| -> std::collections::BTreeMap<i64, String> {
        state[kind]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["id"].as_i64()?, r["name"].as_str()?.to_string())))
            .collect()
    };
    let networks = names_by_id("networks");
    let firewalls = names_by_id("firewalls");
    let pgs = names_by_id("placement_groups");
    let list = |kind: &str, f: &dyn Fn(&Value) -> Value| -> Value {
        let mut items: Vec<Value> = state[kind]
            .as_array()
            .into_iter()
            .flatten()
            .map(f)
            .collect();
        items.sort_by_key(|v| v.to_string());
        Value::Array(items)
    };
    json!({
        "servers": list("servers", &|s| json!({
            "name": s["name"], "labels": s["labels"], "status": s["status"],
            "server_type": s["server_type"]["name"], "location": s["location"]["name"],
            "networks": s["private_net"].as_array().into_iter().flatten()
                .map(|p| networks.get(&p["network"].as_i64().unwrap_or(-1)).cloned().unwrap_or_default())
                .collect::<Vec<_>>(),
            "firewalls": s["public_net"]["firewalls"].as_array().into_iter().flatten()
                .map(|f| firewalls.get(&f["id"].as_i64().unwrap_or(-1)).cloned().unwrap_or_default())
                .collect::<Vec<_>>(),
            "placement_group": s["placement_group"]["id"].as_i64().and_then(|id| pgs.get(&id).cloned()),
        })),
        "networks": list("networks", &|n| json!({
            "name": n["name"], "labels": without_secrets_fingerprint(&n["labels"]), "ip_range": n["ip_range"],
            "subnets": n["subnets"].as_array().into_iter().flatten().map(|s| s["ip_range"].clone()).collect::<Vec<_>>(),
        })),
        "firewalls": list("firewalls", &|f| {
            let mut rules: Vec<String> = f["rules"].as_array().into_iter().flatten().map(|r| {
                format!("{} {} {} {}", r["direction"], r["protocol"], r["port"], r["source_ips"])
            }).collect();
            rules.sort();
            json!({"name": f["name"], "labels": f["labels"], "rules": rules})
        }),
        "placement_groups": list("placement_groups", &|p| json!({
            "name": p["name"], "labels": p["labels"], "type": p["type"],
            "servers": p["servers"].as_array().map(Vec::len),
        })),
        "load_balancers": list("load_balancers", &|l| json!({
            "name": l["name"], "labels": l["labels"],
            "services": l["services"].as_array().into_iter().flatten()
                .map(|s| json!([s["protocol"], s["listen_port"], s["destination_port"]])).collect::<Vec<_>>(),
            "targets": l["targets"].as_array().into_iter().flatten()
                .map(|t| json!([t["type"], t["label_selector"]["selector"], t["use_private_ip"]])).collect::<Vec<_>>(),
            "networks": l["private_net"].as_array().into_iter().flatten()
                .map(|p| networks.get(&p["network"].as_i64().unwrap_or(-1)).cloned().unwrap_or_default())
                .collect::<Vec<_>>(),
        })),
    })
}

/// `labels` with the `secrets-fingerprint` value replaced by a placeholder: each run generates
/// its own secrets bundle, so two runs agree on the label's presence, not its value.
fn without_secrets_fingerprint(labels: &Value) -> Value {
    let mut labels = labels.clone();
    if let Some(fp) = labels.get_mut("secrets-fingerprint") {
        *fp = json!("<fingerprint>");
    }
    labels
}

/// The `hk8s` binary with a private journal and state directory, pointed at a twin.
pub struct Hk8s {
    home: tempfile::TempDir,
    endpoint: String,
    token: String,
    factory: String,
}

impl Hk8s {
    /// A fresh hk8s "installation" talking to `twin`.
    pub fn new(twin: &TwinProcess) -> Hk8s {
        Hk8s {
            home: tempfile::tempdir().expect("temp dir"),
            endpoint: twin.api_url.clone(),
            token: twin.token.clone(),
            factory: twin.factory_url.clone(),
        }
    }

    /// The example cluster's state folder (secrets, talosconfig, kubeconfig).
    pub fn cluster_dir(&self) -> PathBuf {
        self.home.path().join("clusters").join("demo")
    }

    /// Its state directory (`HK8S_HOME`).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A command for the binary with the environment set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("hk8s"));
        cmd.args(args)
            .env("HK8S_HOME", self.home.path())
            .env_remove("HK8S_JOURNAL")
            .env("HCLOUD_ENDPOINT", &self.endpoint)
            .env("HCLOUD_TOKEN", &self.token)
            .env("HK8S_IMAGE_FACTORY", &self.factory)
            .env("HK8S_SSH_PORT", RESCUE_SSH_PORT.to_string())
            .env("HK8S_ACTION_POLL_MS", "20")
            .env("HK8S_RETRY_INITIAL_MS", "20")
            // A lock renewal (every TTL / 3) would add a PUT to the request counts of a run that a
            // loaded machine slows past 40 s; tests about expiry set their own TTL.
            .env("HK8S_LOCK_TTL_SECS", "3600")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs to completion and returns the output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hk8s")
    }

    /// Runs to completion and returns the output; panics with the command, its exit status,
    /// stdout and stderr unless it succeeded.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        output_ok(&mut self.command(args))
    }

    /// Runs to completion and returns the output; panics with the command, its exit status,
    /// stdout and stderr unless it exited with `code`.
    pub fn run_err(&self, args: &[&str], code: i32) -> Output {
        let mut command = self.command(args);
        let out = command.output().expect("run hk8s");
        if out.status.code() != Some(code) {
            panic!(
                "{}",
                describe(&command, &out, &format!("expected exit {code}"))
            );
        }
        out
    }

    /// Writes a cluster spec into the home and returns its path.
    pub fn write_spec(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.home.path().join(name);
        std::fs::write(&path, yaml).expect("write spec");
        path
    }

    /// The runs in the journal (`hk8s -o json history`).
    pub fn runs(&self) -> Vec<Value> {
        let out = self.run_ok(&["-o", "json", "history"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .expect("history JSON")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// One run's steps (`hk8s -o json history <id>`).
    pub fn run_detail(&self, id: &str) -> Value {
        let out = self.run_ok(&["-o", "json", "history", id]);
        serde_json::from_slice(&out.stdout).expect("history JSON")
    }
}

/// Runs `command` to completion and returns its output; panics with the command, its exit
/// status, stdout and stderr unless it succeeded (for commands with extra environment).
pub fn output_ok(command: &mut Command) -> Output {
    let out = command.output().expect("run hk8s");
    if !out.status.success() {
        panic!("{}", describe(command, &out, "expected success"));
    }
    out
}

/// A failed command's report: what ran, how it ended, and everything it printed.
fn describe(command: &Command, out: &Output, expected: &str) -> String {
    let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy()).collect();
    let env: Vec<String> = command
        .get_envs()
        .filter(|(name, _)| name.to_str().is_some_and(|n| n.starts_with("HK8S_DEBUG")))
        .map(|(name, value)| {
            format!(
                "{}={} ",
                name.to_string_lossy(),
                value.map(|v| v.to_string_lossy()).unwrap_or_default()
            )
        })
        .collect();
    format!(
        "{}{} {} ({expected}): {}\n--- stdout\n{}\n--- stderr\n{}",
        env.concat(),
        command.get_program().to_string_lossy(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The example cluster spec shipped in the repository.
pub fn example_spec() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.yaml"))
        .expect("examples/cluster.yaml")
}

/// Whether a process status means "killed by SIGKILL".
pub fn killed(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt as _;
    status.signal() == Some(9)
}

/// Sends SIGKILL to a child.
pub fn sigkill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits up to `timeout` for a child; `None` if it still runs.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Asserts that the only mutating calls in `requests` (`GET /twin/requests`) are the cluster
/// lock's: one `POST /placement_groups` and one `DELETE /placement_groups/{id}`.
pub fn assert_only_the_lock_mutated(requests: &Value, what: &str) {
    let counts = requests["counts"].as_object().cloned().unwrap_or_default();
    let mutating: std::collections::BTreeMap<&str, u64> = counts
        .iter()
        .filter(|(k, _)| !k.starts_with("GET ") && !k.starts_with("HEAD "))
        .map(|(k, v)| (k.as_str(), v.as_u64().unwrap_or(0)))
        .collect();
    let lock = std::collections::BTreeMap::from([
        ("DELETE /v1/placement_groups/{id}", 1),
        ("POST /v1/placement_groups", 1),
    ]);
    assert_eq!(mutating, lock, "{what}: {}", requests["counts"]);
    assert_eq!(requests["mutating"], 2, "{what}: {}", requests["counts"]);
}
