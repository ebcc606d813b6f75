//! The create-cluster benchmark (`cargo run -p hk8s-tests --example create_bench`): the real
//! `hk8s` binary creates a cluster of a given size against a fresh `hk8s-twin serve` with seeded
//! latency jitter, and the run is measured from outside:
//!
//! - **wall**: from spawning `hk8s run create-cluster` until it exits;
//! - **critical path**: the twin's `GET /twin/critical-path` for that run, the longest chain of
//!   durations the twin actually applied to one server (create → start → boot → install →
//!   configured boot → Kubernetes Ready), not a constant of this module;
//! - **requests**: every Hetzner API request the twin logged (total, mutating, `429`s), and
//!   total ÷ nodes;
//! - **peak RSS** of the `hk8s` process: `VmHWM` of `/proc/<pid>/status`, sampled every 20 ms
//!   (the kernel's high-water mark, so only growth in the last 20 ms before exit can be missed);
//! - **CPU** seconds (user + system) of `hk8s` and of the twin during the create, from
//!   `/proc/<pid>/stat` sampled alike: at a high speed the machine's CPU, not the protocol, can
//!   be what the wall time measures (the secrets bundle's RSA key is CPU work the speed does
//!   not compress).
//!
//! The product runs with `HK8S_TIME_SCALE` set to the twin's speed and nothing else changed, so
//! its polls and retries keep the rhythm they have against the real cloud; the twin's rate
//! limit is Hetzner's default bucket (3600, +1/s, in real time).

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{TALOS_VERSION, bin, example_spec};

/// A cluster size: control planes + workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Control planes (odd).
    pub control_planes: u32,
    /// Workers.
    pub workers: u32,
}

impl Size {
    /// All nodes.
    pub fn nodes(&self) -> u32 {
        self.control_planes + self.workers
    }
}

impl FromStr for Size {
    type Err = String;

    /// `3+100`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (cp, w) = s
            .split_once('+')
            .ok_or_else(|| format!("size {s:?}: expected CONTROL_PLANES+WORKERS, e.g. 3+100"))?;
        let num = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|e| format!("size {s:?}: {e}"))
        };
        Ok(Size {
            control_planes: num(cp)?,
            workers: num(w)?,
        })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.control_planes, self.workers)
    }
}

/// How to run the twin.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// The twin's speed factor (and the product's `HK8S_TIME_SCALE`).
    pub speed: f64,
    /// The twin's latency jitter fraction.
    pub jitter: f64,
    /// The jitter's seed.
    pub seed: u64,
    /// Give up on a create after this long (wall).
    pub timeout: Duration,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            speed: 20.0,
            jitter: 0.2,
            seed: 7,
            timeout: Duration::from_secs(1800),
        }
    }
}

/// What one create measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// The cluster size.
    pub size: Size,
    /// Wall seconds of the create.
    pub wall_secs: f64,
    /// The twin's critical path in wall seconds.
    pub critical_secs: f64,
    /// Hetzner API requests.
    pub requests: u64,
    /// Of which mutating.
    pub mutating: u64,
    /// Of which answered `429`.
    pub rate_limited: u64,
    /// Peak resident set of `hk8s`, KiB.
    pub peak_rss_kib: u64,
    /// CPU seconds (user + system) `hk8s` used.
    pub cpu_secs: f64,
    /// CPU seconds the twin used during the create.
    pub twin_cpu_secs: f64,
    /// The requests per endpoint.
    pub counts: Value,
}

impl Figures {
    /// Wall ÷ critical path.
    pub fn ratio(&self) -> f64 {
        if self.critical_secs > 0.0 {
            self.wall_secs / self.critical_secs
        } else {
            f64::INFINITY
        }
    }

    /// Requests ÷ nodes.
    pub fn requests_per_node(&self) -> f64 {
        self.requests as f64 / f64::from(self.size.nodes().max(1))
    }

    /// One table row (see [`Figures::HEADER`]).
    pub fn row(&self) -> String {
        format!(
            "{:>7} {:>9.1} {:>9.1} {:>6.2} {:>9} {:>8} {:>9.2} {:>5} {:>9.1} {:>7.1} {:>7.1}",
            self.size.to_string(),
            self.wall_secs,
            self.critical_secs,
            self.ratio(),
            self.requests,
            self.mutating,
            self.requests_per_node(),
            self.rate_limited,
            self.peak_rss_kib as f64 / 1024.0,
            self.cpu_secs,
            self.twin_cpu_secs,
        )
    }

    /// The header of [`Figures::row`].
    pub const HEADER: &'static str = "   size    wall s   crit. s  ratio  requests mutating  req/node   429  peak MiB  CPU s  twin CPU s";
}

/// The example spec resized to `size`.
pub fn spec_for(size: Size) -> String {
    let example = example_spec();
    let mut out = String::new();
    let mut section = "";
    for line in example.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("controlPlane:") {
            section = "cp";
        } else if trimmed.starts_with("workers:") {
            section = "w";
        }
        if trimmed.starts_with("count:") && !section.is_empty() {
            let indent = &line[..line.len() - trimmed.len()];
            let n = if section == "cp" {
                size.control_planes
            } else {
                size.workers
            };
            out.push_str(&format!("{indent}count: {n}\n"));
            section = "";
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// User + system CPU seconds of process `pid` so far (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second();
    Some((utime + stime) as f64 / ticks as f64)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Twin {
    child: std::process::Child,
    api_url: String,
    control_url: String,
    factory_url: String,
    token: String,
    http: reqwest::Client,
}

impl Drop for Twin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Twin {
    fn start(opts: &BenchOptions) -> Result<Twin, String> {
        use std::io::BufRead as _;
        let token = format!("bench-token-{}", rand::random::<u32>());
        let mut child = Command::new(bin("hk8s-twin"))
            .args(["serve", "--listen", "127.0.0.1:0", "--rescue-ssh-port", "0"])
            .args(["--speed", &opts.speed.to_string()])
            .args(["--jitter", &opts.jitter.to_string()])
            .args(["--seed", &opts.seed.to_string()])
            .args(["--token", &token])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn hk8s-twin: {e}"))?;
        let stdout = child.stdout.take().ok_or("no twin stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines
            .next()
            .ok_or("the twin printed nothing")?
            .map_err(|e| e.to_string())?;
        let api_url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .ok_or_else(|| format!("no URL in the twin's output: {first}"))?
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        Ok(Twin {
            child,
            control_url: api_url.replace("/v1", "/twin"),
            factory_url: api_url.trim_end_matches("/v1").to_string(),
            api_url,
            token,
            http: reqwest::Client::new(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.control_url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Creates a cluster of `size` against a fresh twin and measures it; `log` receives hk8s's
/// progress output (stderr).
///
/// # Errors
/// The twin or hk8s could not be started, or the create did not succeed.
pub async fn measure(size: Size, opts: &BenchOptions, log: &Path) -> Result<Figures, String> {
    let twin = Twin::start(opts)?;
    for arch in ["amd64", "arm64"] {
        twin.call(
            reqwest::Method::POST,
            "/images/talos",
            Some(json!({"arch": arch, "version": TALOS_VERSION, "labels": {"managed-by": "hk8s"}})),
        )
        .await?;
    }
    twin.call(reqwest::Method::POST, "/reset-requests", None)
        .await?;
    twin.call(reqwest::Method::POST, "/critical-path/reset", None)
        .await?;
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let spec = home.path().join("cluster.yaml");
    std::fs::write(&spec, spec_for(size)).map_err(|e| e.to_string())?;
    let stderr = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let started = Instant::now();
    let mut child = Command::new(bin("hk8s"))
        .args([
            "-o",
            "json",
            "--log-format",
            "text",
            "run",
            "create-cluster",
            "-f",
        ])
        .arg(&spec)
        .env("HK8S_HOME", home.path())
        .env_remove("HK8S_JOURNAL")
        .env_remove("HK8S_ACTION_POLL_MS")
        .env_remove("HK8S_RETRY_INITIAL_MS")
        .env("HK8S_TIME_SCALE", opts.speed.to_string())
        .env("HCLOUD_ENDPOINT", &twin.api_url)
        .env("HCLOUD_TOKEN", &twin.token)
        .env("HK8S_IMAGE_FACTORY", &twin.factory_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("spawn hk8s: {e}"))?;
    let pid = child.id();
    let twin_pid = twin.child.id();
    let twin_cpu_before = cpu_secs(twin_pid).unwrap_or(0.0);
    let (mut peak, mut cpu) = (0, 0.0_f64);
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(secs) = cpu_secs(pid) {
            cpu = cpu.max(secs);
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("wait for hk8s: {e}")),
        }
        if started.elapsed() > opts.timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "create {size} did not finish within {:?}; see {}",
                opts.timeout,
                log.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall_secs = started.elapsed().as_secs_f64();
    let twin_cpu_secs = cpu_secs(twin_pid).unwrap_or(0.0) - twin_cpu_before;
    if !status.success() {
        return Err(format!(
            "create {size} failed ({status}); see {}",
            log.display()
        ));
    }
    let requests = twin.call(reqwest::Method::GET, "/requests", None).await?;
    let critical = twin
        .call(reqwest::Method::GET, "/critical-path", None)
        .await?;
    let entries = requests["requests"].as_array().cloned().unwrap_or_default();
    Ok(Figures {
        size,
        wall_secs,
        critical_secs: critical["secs"].as_f64().unwrap_or(0.0),
        requests: requests["total"].as_u64().unwrap_or(0),
        mutating: requests["mutating"].as_u64().unwrap_or(0),
        rate_limited: entries.iter().filter(|r| r["status"] == 429).count() as u64,
        peak_rss_kib: peak,
        cpu_secs: cpu,
        twin_cpu_secs,
        counts: requests["counts"].clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_specs_resize() {
        let size: Size = "3+100".parse().unwrap();
        assert_eq!(size.nodes(), 103);
        assert!("3".parse::<Size>().is_err());
        let spec = spec_for(Size {
            control_planes: 1,
            workers: 7,
        });
        assert!(spec.contains("count: 1\n"), "{spec}");
        assert!(spec.contains("count: 7\n"), "{spec}");
        assert!(!spec.contains("count: 3\n"), "{spec}");
    }
}
