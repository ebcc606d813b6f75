//! The create-cluster benchmark: wall time against the twin's critical path, Hetzner requests
//! per node, 429s and peak RSS, for each size (see `hk8s_tests::bench`).
//!
//! ```sh
//! cargo build -p hk8s -p hk8s-twin
//! cargo run -p hk8s-tests --example create_bench -- [--sizes 3+3,3+30,3+97] [--speed 20]
//!     [--jitter 0.2] [--seed 7]
//! ```
//!
//! It is an example rather than a `cargo bench` target on purpose: the driver only spawns the
//! binaries and reads the twin, so it runs in the dev profile next to the binaries already
//! built (no second, release build of the test crate's dependencies), and it is not part of
//! `cargo test`.

use std::time::Duration;

use hk8s_tests::bench::{BenchOptions, Figures, Size, measure};

fn usage() -> ! {
    eprintln!(
        "usage: create_bench [--sizes 3+3,3+30,3+97] [--speed 20] [--jitter 0.2] [--seed 7] [--timeout-secs 1800]"
    );
    std::process::exit(2)
}

fn parse_args() -> (Vec<Size>, BenchOptions) {
    let mut sizes: Vec<Size> = ["3+3", "3+30", "3+97"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let mut opts = BenchOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else { usage() };
        let bad = |e: &dyn std::fmt::Display| -> ! {
            eprintln!("{flag} {value}: {e}");
            usage()
        };
        match flag.as_str() {
            "--sizes" => {
                sizes = value
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|e| bad(&e))
            }
            "--speed" => opts.speed = value.parse().unwrap_or_else(|e| bad(&e)),
            "--jitter" => opts.jitter = value.parse().unwrap_or_else(|e| bad(&e)),
            "--seed" => opts.seed = value.parse().unwrap_or_else(|e| bad(&e)),
            "--timeout-secs" => {
                opts.timeout = Duration::from_secs(value.parse().unwrap_or_else(|e| bad(&e)))
            }
            _ => usage(),
        }
    }
    (sizes, opts)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let (sizes, opts) = parse_args();
    println!(
        "create-cluster against hk8s-twin serve: speed {}, jitter {}, seed {}, HK8S_TIME_SCALE={}",
        opts.speed, opts.jitter, opts.seed, opts.speed
    );
    println!("{}", Figures::HEADER);
    let logs = std::env::temp_dir();
    let mut failed = false;
    for size in sizes {
        let log = logs.join(format!("hk8s-create-bench-{size}.log"));
        match measure(size, &opts, &log).await {
            Ok(f) => {
                println!("{}", f.row());
                if std::env::var_os("BENCH_COUNTS").is_some() {
                    println!("        {}", f.counts);
                }
            }
            Err(e) => {
                println!("{size:>7} failed: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
