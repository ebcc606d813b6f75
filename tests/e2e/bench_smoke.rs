//! A smoke run of the create-cluster benchmark (`hk8s_tests::bench`): a 1 + 1 cluster at a high
//! speed, checking that its figures are measurements: the twin reports a critical path built
//! from the durations it applied (jittered around the base chain), the wall time is not
//! below it, requests, the peak RSS and both processes' CPU were counted, and nothing was rate
//! limited.

use hk8s_tests::bench::{BenchOptions, Size, measure};

#[tokio::test(flavor = "multi_thread")]
async fn benchmark_smoke_measures_a_small_create() {
    let opts = BenchOptions {
        speed: 200.0,
        ..BenchOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let size = Size {
        control_planes: 1,
        workers: 1,
    };
    let f = measure(size, &opts, &dir.path().join("create.log"))
        .await
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(dir.path().join("create.log")).unwrap_or_default();
            panic!("{e}\n{log}")
        });
    println!("{}\n{}", hk8s_tests::bench::Figures::HEADER, f.row());
    // Base chain at speed 1 is about 60 + 10 + 30 + 60 + 30 + 13 s; ±20 % jitter.
    assert!(
        f.critical_secs > 0.6 && f.critical_secs < 1.4,
        "critical path {} s at speed 200",
        f.critical_secs
    );
    assert!(
        f.wall_secs >= f.critical_secs,
        "wall {} s below the critical path {} s",
        f.wall_secs,
        f.critical_secs
    );
    assert!(f.requests > 0 && f.mutating > 0, "{:?}", f.counts);
    assert_eq!(f.rate_limited, 0, "{:?}", f.counts);
    assert!(f.peak_rss_kib > 1024, "peak RSS {} KiB", f.peak_rss_kib);
    assert!(f.cpu_secs > 0.0, "hk8s CPU {} s", f.cpu_secs);
    assert!(f.twin_cpu_secs > 0.0, "twin CPU {} s", f.twin_cpu_secs);
}
