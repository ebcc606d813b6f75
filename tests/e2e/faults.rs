//! Injected API faults at 10 % of calls: the run still converges to the same cloud.

use hk8s_tests::{Hk8s, TwinProcess, example_spec};
use serde_json::json;

use crate::SPEED;

#[tokio::test(flavor = "multi_thread")]
async fn faults_at_ten_percent_converge_to_the_same_state() {
    let reference = {
        let twin = TwinProcess::start(SPEED).await;
        let hk8s = Hk8s::new(&twin);
        let spec = hk8s.write_spec("cluster.yaml", &example_spec());
        hk8s.run_ok(&["run", "create-cluster", "-f", spec.to_str().unwrap()]);
        twin.normalized().await
    };
    let faults = [
        (
            "429",
            json!({"error": {"status": 429, "code": "rate_limit_exceeded"}}),
        ),
        (
            "503",
            json!({"error": {"status": 503, "code": "unavailable"}}),
        ),
        (
            "500",
            json!({"error": {"status": 500, "code": "server_error"}}),
        ),
        (
            "locked",
            json!({"error": {"status": 423, "code": "locked"}}),
        ),
        (
            "conflict",
            json!({"error": {"status": 409, "code": "conflict"}}),
        ),
        ("drop", json!({"drop_connection": true})),
        // The request takes effect, then the answer is lost: the retry must adopt, not duplicate.
        (
            "503 after effect",
            json!({"error": {"status": 503, "code": "unavailable"}, "when": "after"}),
        ),
        (
            "drop after effect",
            json!({"drop_connection": true, "when": "after"}),
        ),
    ];
    for (name, mut rule) in faults {
        let twin = TwinProcess::start(SPEED).await;
        rule["rate"] = json!(0.1);
        twin.add_fault(rule).await;
        let hk8s = Hk8s::new(&twin);
        let spec = hk8s.write_spec("cluster.yaml", &example_spec());
        let out = hk8s.run(&["run", "create-cluster", "-f", spec.to_str().unwrap()]);
        if !out.status.success() {
            // A fault may outlast one run's retry budget; a resume must then finish the job.
            println!("fault {name}: the run ended {}, resuming", out.status);
            let id = hk8s.runs()[0]["run_id"].as_str().unwrap().to_string();
            hk8s.run_ok(&["resume", &id]);
        }
        twin.clear_faults().await;
        assert_eq!(twin.normalized().await, reference, "{name}: cloud differs");
        let requests = twin.requests().await;
        println!("fault {name}: {} requests", requests["total"]);
    }
}
