//! Writes every addon object as one YAML file into a directory, for `kubernetes-validate`.
//!
//! ```text
//! cargo run -p hk8s-kube --example dump-manifests -- <dir> [kubernetes-version]
//! ```
//!
//! The `hcloud` Secret is written too, with the placeholder token `placeholder-not-a-token`.

use std::path::PathBuf;

use hk8s_kube::{AddonInputs, HcloudToken, PodRouting, manifests};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: dump-manifests <dir> [kubernetes-version]")?,
    );
    let version = args.next().unwrap_or_else(|| "1.34.1".to_owned());
    std::fs::create_dir_all(&dir)?;

    let tunnel = AddonInputs::new(version.clone(), "demo", "10.244.0.0/16".parse()?);
    let mut native = tunnel.clone();
    native.routing = PodRouting::Native;
    native.cluster_name = "demo-native".to_owned();

    let mut written = 0usize;
    let sets = [
        ("native", manifests::all(&native)),
        ("tunnel", manifests::all(&tunnel)),
        (
            "secret",
            vec![manifests::hcloud_secret(
                &HcloudToken::new("placeholder-not-a-token"),
                4711,
            )],
        ),
    ];
    for (set, objects) in sets {
        for (i, object) in objects.iter().enumerate() {
            let kind = object["kind"].as_str().unwrap_or("Unknown").to_lowercase();
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or("unnamed")
                .replace(':', "-");
            let path = dir.join(format!("{set}-{i:02}-{kind}-{name}.yaml"));
            std::fs::write(&path, serde_saphyr::to_string(object)?)?;
            written += 1;
        }
    }
    println!("wrote {written} manifests to {}", dir.display());
    Ok(())
}
