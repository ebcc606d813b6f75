//! The unattended-upgrade units in `contrib/`: the systemd service and timer pass
//! `systemd-analyze verify`, the CronJob passes `kubernetes-validate --strict`, and the command
//! lines both run are accepted by the real `hk8s` binary.
//!
//! `scripts/test` installs both tools; without them the test says it was skipped, except under
//! CI, where a missing tool fails it (`hk8s_testkit::tool`).

use std::path::{Path, PathBuf};
use std::process::Command;

use hk8s_tests::bin;

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(path)
}

/// Runs `hk8s` with `args` (the unit's command line, the spec swapped for a missing file): an
/// accepted command line fails on the file, never on the arguments.
fn assert_hk8s_accepts(args: &[&str]) {
    let args: Vec<&str> = args
        .iter()
        .map(|a| {
            if a.ends_with("cluster.yaml") {
                "/nonexistent/cluster.yaml"
            } else {
                a
            }
        })
        .collect();
    let out = Command::new(bin("hk8s"))
        .args(&args)
        .env("HK8S_HOME", std::env::temp_dir())
        .env("HCLOUD_TOKEN", "unused")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains("/nonexistent/cluster.yaml") && !stderr.contains("unexpected argument"),
        "{args:?}: {stderr}"
    );
}

#[test]
fn systemd_units_verify_and_run_a_valid_command() {
    let service = std::fs::read_to_string(contrib("systemd/hk8s-upgrade.service")).unwrap();
    let timer = std::fs::read_to_string(contrib("systemd/hk8s-upgrade.timer")).unwrap();
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(words[0], "/usr/local/bin/hk8s");
    assert!(words.contains(&"--unattended"), "{exec}");
    assert!(
        service.contains("SuccessExitStatus=75"),
        "a busy cluster is not a failure"
    );
    assert!(timer.contains("Persistent=true"));
    assert_hk8s_accepts(&words[1..]);

    let Some(analyze) = hk8s_testkit::tool("systemd-analyze", "SYSTEMD_ANALYZE", "--version")
    else {
        return;
    };
    // verify checks that ExecStart's program exists: point it at the built binary.
    let dir = tempfile::tempdir().unwrap();
    let hk8s = bin("hk8s");
    let units = |service_text: &str| {
        std::fs::write(dir.path().join("hk8s-upgrade.service"), service_text).unwrap();
        std::fs::write(dir.path().join("hk8s-upgrade.timer"), &timer).unwrap();
        Command::new(&analyze)
            .arg("verify")
            .arg(dir.path().join("hk8s-upgrade.service"))
            .arg(dir.path().join("hk8s-upgrade.timer"))
            .output()
            .unwrap()
    };
    let out = units(&service.replace("/usr/local/bin/hk8s", hk8s.to_str().unwrap()));
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The verifier can fail: a program that does not exist is an error.
    let out = units(&service.replace("/usr/local/bin/hk8s", "/nonexistent/hk8s"));
    assert!(
        !out.status.success(),
        "systemd-analyze accepted a missing program"
    );
}

#[test]
fn upgrade_cronjob_validates_and_runs_a_valid_command() {
    let path = contrib("kubernetes/upgrade-cronjob.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("concurrencyPolicy: Forbid"));
    assert!(
        text.contains("claimName: hk8s-state"),
        "journal on a volume"
    );
    assert!(text.contains("value: /state") && text.contains("mountPath: /state"));
    assert!(
        !text.contains("node.kubernetes.io/unschedulable\n") && text.contains("tolerations: []"),
        "the pod must not tolerate cordoned nodes"
    );
    let args: Vec<String> = text
        .split("args:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .map_while(|l| {
            l.trim()
                .strip_prefix("- ")
                .map(|a| a.trim_matches('"').to_string())
        })
        .collect();
    assert!(args.contains(&"--unattended".to_string()), "{args:?}");
    assert_hk8s_accepts(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let Some(validator) = hk8s_testkit::KubernetesValidate::find() else {
        return;
    };
    if let Err(out) = validator.check(&[&path]) {
        panic!("kubernetes-validate: {out}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        text.replace("concurrencyPolicy: Forbid", "concurrencyPolicyy: Forbid"),
    )
    .unwrap();
    assert!(
        validator.check(&[&bad]).is_err(),
        "kubernetes-validate accepted a misspelt field"
    );
}
