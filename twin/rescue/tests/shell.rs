//! The rescue shell without SSH: exit statuses, `set -e`, `pipefail`, quoting, expansions,
//! compound commands, and the programs' messages.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use hk8s_twin_rescue::io::{In, Out, Sink, Source, Stdio};
use hk8s_twin_rescue::shell::Shell;
use hk8s_twin_rescue::{BlockDevice, Machine, Vfs};
use tokio_util::sync::CancellationToken;

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn machine(dir: &tempfile::TempDir, size: u64) -> Arc<Machine> {
    Arc::new(Machine {
        hostname: "rescue".into(),
        uname_machine: "aarch64".into(),
        disk: BlockDevice::create(dir.path().join("sda"), size).unwrap(),
        vfs: Vfs::default(),
        power: None,
    })
}

async fn run_on(m: &Arc<Machine>, script: &str) -> Run {
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let stdio = Stdio {
        stdin: In::new(Source::Empty),
        stdout: Out::new(Sink::Capture(out.clone())),
        stderr: Out::new(Sink::Capture(err.clone())),
    };
    let status = Shell::new(m.clone(), CancellationToken::new())
        .run_script(script, stdio)
        .await;
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    Run {
        status,
        stdout: text(&out),
        stderr: text(&err),
    }
}

async fn run(script: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    run_on(&machine(&dir, 1 << 20), script).await
}

#[tokio::test]
async fn statuses_and_lists() {
    assert_eq!(run("true").await.status, 0);
    assert_eq!(run("false").await.status, 1);
    assert_eq!(run("false; true").await.status, 0);
    assert_eq!(run("true && false").await.status, 1);
    assert_eq!(run("false || true").await.status, 0);
    assert_eq!(run("! true").await.status, 1);
    assert_eq!(run("exit 3; true").await.status, 3);
    assert_eq!(run("(exit 4); echo $?").await.stdout, "4\n");
    let r = run("nosuchthing --x").await;
    assert_eq!(r.status, 127);
    assert_eq!(r.stderr, "bash: line 1: nosuchthing: command not found\n");
    let r = run("echo 'open").await;
    assert_eq!(r.status, 2);
    assert!(r.stderr.starts_with("bash: -c: line 1: "), "{}", r.stderr);
}

#[tokio::test]
async fn errexit_and_pipefail() {
    let r = run("set -e; false; echo no").await;
    assert_eq!((r.status, r.stdout.as_str()), (1, ""));
    // Exempt: the left side of && / ||, conditions, negations.
    let r = run("set -e; false && true; ! true; if false; then :; fi; echo yes").await;
    assert_eq!((r.status, r.stdout.as_str()), (0, "yes\n"));
    assert_eq!(run("false | true").await.status, 0);
    assert_eq!(run("set -o pipefail; false | true").await.status, 1);
    assert_eq!(
        run("set -o pipefail; (exit 3) | (exit 5) | true")
            .await
            .status,
        5
    );
    assert_eq!(
        run("set -eo pipefail; false | true; echo no").await.stdout,
        ""
    );
    let r = run("set -euo pipefail; echo ok").await;
    assert_eq!((r.status, r.stdout.as_str()), (0, "ok\n"));
    assert_eq!(run("set -o nosuch").await.status, 2);
}

#[tokio::test]
async fn quoting_expansion_and_compound_commands() {
    let r = run("A='a b'; echo \"$A\" $A \"${A}c\" '$A' \\$A").await;
    assert_eq!(r.stdout, "a b a b a bc $A $A\n");
    assert_eq!(
        run("echo $(uname -m)-$(echo x)").await.stdout,
        "aarch64-x\n"
    );
    assert_eq!(
        run("for f in 1 2 3; do echo -n $f; done").await.stdout,
        "123"
    );
    let r = run("if [ \"$(uname -m)\" = aarch64 ]; then echo arm64; else echo amd64; fi").await;
    assert_eq!(r.stdout, "arm64\n");
    assert_eq!(run("{ echo a; echo b; } | wc -l").await.stdout, "2\n");
    assert_eq!(run("X=1; false; echo $? $X").await.stdout, "1 1\n");
    assert_eq!(run("echo a >/dev/null; echo b 1>&2").await.stderr, "b\n");
    let r = run("echo hi > /tmp/f; cat /tmp/f; cat /tmp/nope").await;
    assert_eq!(r.stdout, "hi\n");
    assert_eq!(r.stderr, "cat: /tmp/nope: No such file or directory\n");
    assert_eq!(r.status, 1);
    assert_eq!(run("printf '%s-%s\\n' a b c").await.stdout, "a-b\nc-\n");
}

#[tokio::test]
async fn machine_programs() {
    let dir = tempfile::tempdir().unwrap();
    let m = machine(&dir, 3 << 20);
    assert_eq!(run_on(&m, "uname -m").await.stdout, "aarch64\n");
    assert_eq!(
        run_on(&m, "blockdev --getsize64 /dev/sda").await.stdout,
        "3145728\n"
    );
    assert_eq!(
        run_on(&m, "lsblk -bdno SIZE /dev/sda").await.stdout,
        "3145728\n"
    );
    // dd from /dev/zero: counts and the coreutils transfer line.
    let r = run_on(
        &m,
        "dd if=/dev/urandom of=/dev/sda bs=1M count=2 conv=fsync",
    )
    .await;
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(
            "2+0 records in\n2+0 records out\n2097152 bytes (2.1 MB, 2.0 MiB) copied, "
        ),
        "{}",
        r.stderr
    );
    assert_ne!(m.disk.read_prefix(16).unwrap(), vec![0u8; 16]);
    assert_eq!(run_on(&m, "blkdiscard /dev/sda").await.status, 0);
    assert_eq!(m.disk.read_prefix(1 << 20).unwrap(), vec![0u8; 1 << 20]);
    // Past the end of the disk.
    let r = run_on(&m, "dd if=/dev/zero of=/dev/sda bs=1M count=4").await;
    assert_eq!(r.status, 1);
    assert!(
        r.stderr.starts_with("dd: error writing '/dev/sda': No space left on device\n4+0 records in\n3+0 records out\n3145728 bytes"),
        "{}",
        r.stderr
    );
    let r = run_on(&m, "blkdiscard /dev/sdb").await;
    assert_eq!(r.status, 1);
    // A reader that goes away: the writer dies of SIGPIPE.
    assert_eq!(
        run_on(
            &m,
            "set -o pipefail; cat /dev/zero | head -c 10 > /dev/null"
        )
        .await
        .status,
        141
    );
    // xz round trip through the RAM disk.
    let r = run_on(
        &m,
        "echo hello > /tmp/a; xz /tmp/a; ls /tmp; xz -dc /tmp/a.xz; xz -d /tmp/a.xz; cat /tmp/a",
    )
    .await;
    assert_eq!(r.stdout, "a.xz\nhello\nhello\n", "{}", r.stderr);
    let r = run_on(&m, "echo garbage | xz -d").await;
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (1, "xz: (stdin): File format not recognized\n")
    );
    assert_eq!(run_on(&m, "sync && echo $?").await.stdout, "0\n");
    // Checks a client may make after writing: sizes and checksums, streamed.
    let r = run_on(&m, "printf abc > /tmp/f; stat -c %s /tmp/f; wc -c /tmp/f; wc -c < /tmp/f; stat -c '%s %F' /dev/sda; sha256sum /tmp/f").await;
    assert_eq!(
        r.stdout,
        "3\n3 /tmp/f\n3\n0 block special file\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  /tmp/f\n",
        "{}",
        r.stderr
    );
    let r = run_on(
        &m,
        "blkdiscard /dev/sda; head -c 1048576 /dev/sda | sha256sum",
    )
    .await;
    assert_eq!(
        r.stdout,
        "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58  -\n"
    );
}
