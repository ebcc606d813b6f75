//! No secret reaches the journal file, its WAL, or the CLI's output.

use base64::Engine as _;
use hk8s_tests::{Hk8s, TwinProcess, example_spec};

use crate::SPEED;

/// Secret values of a `talosctl gen secrets` bundle: keys (base64 of PEM, and a piece of the
/// PEM body), tokens and cluster secrets.
pub(crate) fn sentinels(bundle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in bundle.lines() {
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        if value.len() < 16 {
            continue;
        }
        match name {
            "key" => {
                out.push(value.to_string());
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .unwrap();
                let pem = String::from_utf8(pem).unwrap();
                let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
                out.push(body[..40.min(body.len())].to_string());
            }
            "secret"
            | "bootstraptoken"
            | "secretboxencryptionsecret"
            | "token"
            | "aescbcencryptionsecret" => out.push(value.to_string()),
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_journal_wal_or_output() {
    let twin = TwinProcess::start(SPEED).await;
    let hk8s = Hk8s::new(&twin);
    let spec = hk8s.write_spec("cluster.yaml", &example_spec());
    let spec = spec.to_str().unwrap();
    // A run killed just before its end leaves the WAL behind (a clean exit checkpoints it into
    // the main file): check both, then resume and check again.
    let killed = hk8s
        .command(&["run", "create-cluster", "-f", spec])
        .env("HK8S_DEBUG_KILL_AFTER_ACTIVITY", "talos/kubeconfig")
        .output()
        .unwrap();
    assert!(hk8s_tests::killed(killed.status));
    let wal = std::fs::read(hk8s.home().join("journal.db-wal")).expect("the killed run left a WAL");
    assert!(wal.len() > 4096, "WAL is empty");
    let bundle = std::fs::read_to_string(hk8s.cluster_dir().join("secrets.yaml")).unwrap();
    check(
        &hk8s,
        &sentinels(&bundle),
        &[&killed.stdout, &killed.stderr],
    );
    let id = hk8s.runs()[0]["run_id"].as_str().unwrap().to_string();
    let create = hk8s.run_ok(&["resume", &id]);
    let history = hk8s.run(&["-o", "json", "history", &id]);
    let bundle = std::fs::read_to_string(hk8s.cluster_dir().join("secrets.yaml")).unwrap();
    let secrets = sentinels(&bundle);
    assert!(
        secrets.len() >= 10,
        "found only {} secret values in the bundle",
        secrets.len()
    );
    // The kubeconfig's and talosconfig's client keys are secrets too.
    for file in ["kubeconfig", "talosconfig"] {
        let text = std::fs::read_to_string(hk8s.cluster_dir().join(file)).unwrap();
        for line in text.lines() {
            if let Some((name, value)) = line.trim().split_once(':')
                && (name == "client-key-data" || name == "key")
            {
                let v = value.trim().to_string();
                assert!(v.len() > 16);
                let mut all = secrets.clone();
                all.push(v);
                check(
                    &hk8s,
                    &all,
                    &[&create.stdout, &create.stderr, &history.stdout],
                );
            }
        }
    }
    check(
        &hk8s,
        &secrets,
        &[&create.stdout, &create.stderr, &history.stdout],
    );
    // The API token never reaches the journal either.
    check(
        &hk8s,
        std::slice::from_ref(&twin.token),
        &[&create.stdout, &create.stderr],
    );
}

fn check(hk8s: &Hk8s, secrets: &[String], outputs: &[&Vec<u8>]) {
    let mut haystacks: Vec<(String, Vec<u8>)> = Vec::new();
    for file in ["journal.db", "journal.db-wal"] {
        if let Ok(bytes) = std::fs::read(hk8s.home().join(file)) {
            haystacks.push((file.to_string(), bytes));
        }
    }
    assert!(!haystacks.is_empty(), "no journal file found");
    for (i, out) in outputs.iter().enumerate() {
        haystacks.push((format!("output #{i}"), out.to_vec()));
    }
    for (name, bytes) in &haystacks {
        for secret in secrets {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "a secret value ({}…) is in {name}", &secret[..8]);
        }
    }
}
