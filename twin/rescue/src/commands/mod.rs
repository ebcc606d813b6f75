//! The programs of the rescue system, as built-ins of the twin: `wget`, `curl` ([`http`]), `xz`,
//! `xzcat`, `unxz` ([`xz`]), `dd` ([`dd`]), and the small ones here: `blkdiscard`, `blockdev`,
//! `lsblk`, `sync`, `uname`, `cat`, `echo`, `printf`, `true`, `false`, `test`/`[`, `sleep`,
//! `sha256sum`, `wc`, `stat`, `head`, `rm`, `mkdir`, `ls`, `pwd`, `hostname`, `whoami`, `id`,
//! `command -v`/`which`, `partprobe`, `udevadm`, `poweroff`/`halt`/`shutdown`/`reboot`.
//!
//! Messages and exit statuses are those of the GNU/util-linux tools a Debian rescue system has;
//! a program killed by a closed pipe ends with 141 (SIGPIPE) as under bash.

pub mod dd;
pub mod http;
pub mod xz;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::io::{self, In, Source, Stdio};
use crate::shell::{Machine, Power};

/// What a program sees of the shell that runs it.
pub struct Ctx {
    /// The machine.
    pub machine: Arc<Machine>,
    /// The working directory.
    pub cwd: String,
}

/// The programs on the `PATH`.
pub const PROGRAMS: &[&str] = &[
    "wget",
    "curl",
    "xz",
    "xzcat",
    "unxz",
    "dd",
    "blkdiscard",
    "blockdev",
    "lsblk",
    "sync",
    "uname",
    "cat",
    "echo",
    "printf",
    "true",
    "false",
    ":",
    "test",
    "[",
    "sleep",
    "sha256sum",
    "wc",
    "stat",
    "head",
    "rm",
    "mkdir",
    "ls",
    "pwd",
    "hostname",
    "whoami",
    "id",
    "command",
    "which",
    "partprobe",
    "udevadm",
    "poweroff",
    "halt",
    "shutdown",
    "reboot",
    "exit",
    "set",
    "export",
    "unset",
    "cd",
];

/// An absolute path for `p` relative to `cwd`, with `.` and `..` resolved.
pub fn resolve(cwd: &str, p: &str) -> String {
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{cwd}/{p}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for seg in joined.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The directories of the rescue system.
pub fn is_dir(p: &str) -> bool {
    matches!(
        p,
        "/" | "/root"
            | "/tmp"
            | "/dev"
            | "/proc"
            | "/sys"
            | "/mnt"
            | "/var"
            | "/var/tmp"
            | "/run"
            | "/etc"
            | "/usr"
            | "/bin"
    )
}

/// Whether a regular file may be created at `p` (in a writable directory of the RAM disk).
pub fn writable(p: &str) -> bool {
    let parent = p
        .rsplit_once('/')
        .map(|(d, _)| if d.is_empty() { "/" } else { d });
    matches!(
        parent,
        Some("/" | "/root" | "/tmp" | "/mnt" | "/var/tmp" | "/run")
    )
}

/// Opens `target` for reading as a program or a `<` redirection would.
pub async fn open_in(m: &Machine, cwd: &str, target: &str, io: &Stdio) -> Result<In, String> {
    let path = resolve(cwd, target);
    match path.as_str() {
        "/dev/null" => Ok(In::new(Source::Empty)),
        "/dev/zero" => Ok(In::new(Source::Zero)),
        "/dev/urandom" | "/dev/random" => Ok(In::new(Source::Random(0x9e37_79b9_7f4a_7c15))),
        "/dev/stdin" => Ok(io.stdin.clone()),
        "/dev/sda" => io::disk_reader(&m.disk, 0)
            .await
            .map_err(|e| io::strerror(&e)),
        p if is_dir(p) => Err("Is a directory".into()),
        p => m
            .vfs
            .read(p)
            .map(|d| In::new(Source::Bytes(d, 0)))
            .ok_or_else(|| "No such file or directory".into()),
    }
}

/// Prints to stderr, ignoring a failure (as programs do when stderr is gone).
pub async fn say(io: &Stdio, msg: &str) {
    let _ = io.stderr.print(msg).await;
}

/// The status of a program whose write failed: 141 for a closed pipe, else 1 after a message.
pub async fn write_failed(io: &Stdio, prog: &str, e: &std::io::Error) -> i32 {
    if io::is_broken_pipe(e) {
        return 141;
    }
    say(io, &format!("{prog}: write error: {}\n", io::strerror(e))).await;
    1
}

/// Runs program `argv[0]`.
pub async fn run(ctx: &Ctx, argv: &[String], io: Stdio) -> i32 {
    let name = argv[0]
        .strip_prefix("/usr/local/sbin/")
        .or_else(|| argv[0].strip_prefix("/usr/local/bin/"))
        .or_else(|| argv[0].strip_prefix("/usr/sbin/"))
        .or_else(|| argv[0].strip_prefix("/usr/bin/"))
        .or_else(|| argv[0].strip_prefix("/sbin/"))
        .or_else(|| argv[0].strip_prefix("/bin/"))
        .unwrap_or(&argv[0]);
    let args = &argv[1..];
    let code = match name {
        "true" | ":" | "partprobe" | "udevadm" => 0,
        "false" => 1,
        "wget" => http::wget(ctx, args, &io).await,
        "curl" => http::curl(ctx, args, &io).await,
        "xz" => xz::xz(ctx, "xz", args, &io).await,
        "unxz" => xz::xz(ctx, "unxz", args, &io).await,
        "xzcat" => xz::xz(ctx, "xzcat", args, &io).await,
        "dd" => dd::dd(ctx, args, &io).await,
        "sync" => 0,
        "echo" => echo(args, &io).await,
        "printf" => printf(args, &io).await,
        "cat" => cat(ctx, args, &io).await,
        "uname" => uname(ctx, args, &io).await,
        "hostname" => out(&io, &format!("{}\n", ctx.machine.hostname)).await,
        "whoami" => out(&io, "root\n").await,
        "id" => {
            if args.iter().any(|a| a == "-u" || a == "-g") {
                out(&io, "0\n").await
            } else {
                out(&io, "uid=0(root) gid=0(root) groups=0(root)\n").await
            }
        }
        "pwd" => out(&io, &format!("{}\n", ctx.cwd)).await,
        "test" => test(args, &io).await,
        "[" => {
            if args.last().map(String::as_str) != Some("]") {
                say(&io, "bash: line 1: [: missing `]'\n").await;
                2
            } else {
                test(&args[..args.len() - 1], &io).await
            }
        }
        "blkdiscard" => blkdiscard(ctx, args, &io).await,
        "blockdev" => blockdev(ctx, args, &io).await,
        "lsblk" => lsblk(ctx, args, &io).await,
        "sleep" => sleep(args, &io).await,
        "sha256sum" => sha256sum(ctx, args, &io).await,
        "wc" => wc(ctx, args, &io).await,
        "stat" => stat(ctx, args, &io).await,
        "head" => head(ctx, args, &io).await,
        "rm" => {
            let force = args.iter().any(|a| a.starts_with('-') && a.contains('f'));
            let mut code = 0;
            for a in args.iter().filter(|a| !a.starts_with('-')) {
                let p = resolve(&ctx.cwd, a);
                if !ctx.machine.vfs.remove(&p) && !force {
                    say(
                        &io,
                        &format!("rm: cannot remove '{a}': No such file or directory\n"),
                    )
                    .await;
                    code = 1;
                }
            }
            code
        }
        "mkdir" => 0,
        "ls" => ls(ctx, args, &io).await,
        "command" | "which" | "type" => {
            let names: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
            let mut code = 0;
            for n in names {
                if PROGRAMS.contains(&n.as_str()) {
                    let _ = io.stdout.print(&format!("/usr/bin/{n}\n")).await;
                } else {
                    code = 1;
                }
            }
            code
        }
        "poweroff" | "halt" | "shutdown" | "reboot" => {
            let power =
                if name == "reboot" || (name == "shutdown" && args.iter().any(|a| a == "-r")) {
                    Power::Reboot
                } else {
                    Power::Off
                };
            match &ctx.machine.power {
                Some(p) => {
                    p(power);
                    0
                }
                None => {
                    say(&io, &format!("{name}: the twin's rescue system cannot power this server off; use the API\n")).await;
                    1
                }
            }
        }
        other => {
            say(&io, &format!("bash: line 1: {other}: command not found\n")).await;
            127
        }
    };
    let _ = io.stdout.flush().await;
    code
}

async fn out(io: &Stdio, s: &str) -> i32 {
    match io.stdout.print(s).await {
        Ok(()) => 0,
        Err(e) => write_failed(io, "echo", &e).await,
    }
}

fn unescape(s: &str) -> (String, bool) {
    let mut out = String::new();
    let mut cs = s.chars();
    while let Some(c) = cs.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match cs.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('c') => return (out, true),
            Some('0') => out.push('\0'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    (out, false)
}

async fn echo(args: &[String], io: &Stdio) -> i32 {
    let mut newline = true;
    let mut escapes = false;
    let mut rest = args;
    while let Some(first) = rest.first() {
        if first.len() > 1
            && first.starts_with('-')
            && first[1..].chars().all(|c| "neE".contains(c))
        {
            newline &= !first.contains('n');
            escapes = first.contains('e');
            rest = &rest[1..];
        } else {
            break;
        }
    }
    let mut s = rest.join(" ");
    if escapes {
        let (t, stop) = unescape(&s);
        s = t;
        if stop {
            newline = false;
        }
    }
    if newline {
        s.push('\n');
    }
    out(io, &s).await
}

async fn printf(args: &[String], io: &Stdio) -> i32 {
    let Some(fmt) = args.first() else {
        say(io, "printf: usage: printf [-v var] format [arguments]\n").await;
        return 2;
    };
    let (fmt, _) = unescape(fmt);
    let mut values = args[1..].iter();
    let mut s = String::new();
    loop {
        let mut consumed = false;
        let mut cs = fmt.chars().peekable();
        while let Some(c) = cs.next() {
            if c != '%' {
                s.push(c);
                continue;
            }
            match cs.next() {
                Some('%') => s.push('%'),
                Some('s') | Some('b') => {
                    consumed = true;
                    s.push_str(values.next().map(String::as_str).unwrap_or(""));
                }
                Some('d') | Some('i') | Some('u') => {
                    consumed = true;
                    let v = values.next().map(String::as_str).unwrap_or("0");
                    s.push_str(&v.trim().parse::<i64>().unwrap_or(0).to_string());
                }
                Some(o) => {
                    s.push('%');
                    s.push(o);
                }
                None => s.push('%'),
            }
        }
        if !consumed || values.len() == 0 {
            break;
        }
    }
    out(io, &s).await
}

async fn cat(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let files: Vec<&String> = args
        .iter()
        .filter(|a| *a == "-" || !a.starts_with('-'))
        .collect();
    let inputs: Vec<String> = if files.is_empty() {
        vec!["-".into()]
    } else {
        files.into_iter().cloned().collect()
    };
    let mut code = 0;
    for f in inputs {
        let input = if f == "-" {
            io.stdin.clone()
        } else {
            match open_in(&ctx.machine, &ctx.cwd, &f, io).await {
                Ok(i) => i,
                Err(e) => {
                    say(io, &format!("cat: {f}: {e}\n")).await;
                    code = 1;
                    continue;
                }
            }
        };
        if let Err(c) = copy(&input, io, "cat", None).await {
            return c;
        }
    }
    code
}

/// Copies `input` to stdout (at most `limit` bytes); `Err(status)` when writing fails.
pub async fn copy(input: &In, io: &Stdio, prog: &str, limit: Option<u64>) -> Result<u64, i32> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let want = match limit {
            Some(l) => (l - total).min(buf.len() as u64) as usize,
            None => buf.len(),
        };
        if want == 0 {
            return Ok(total);
        }
        let n = match input.read(&mut buf[..want]).await {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) => {
                say(io, &format!("{prog}: read error: {}\n", io::strerror(&e))).await;
                return Err(1);
            }
        };
        if let Err(e) = io.stdout.write_all(&buf[..n]).await {
            return Err(write_failed(io, prog, &e).await);
        }
        total += n as u64;
    }
}

async fn uname(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let m = &ctx.machine;
    let release = "6.12.38+deb13-amd64".replace(
        "amd64",
        if m.uname_machine == "aarch64" {
            "arm64"
        } else {
            "amd64"
        },
    );
    let fields = [
        ('s', "Linux".to_string()),
        ('n', m.hostname.clone()),
        ('r', release),
        (
            'v',
            "#1 SMP PREEMPT_DYNAMIC Debian 6.12.38-1 (2025-07-16)".to_string(),
        ),
        ('m', m.uname_machine.clone()),
        ('o', "GNU/Linux".to_string()),
    ];
    let mut want: Vec<char> = Vec::new();
    for a in args {
        match a.as_str() {
            "-a" | "--all" => want = fields.iter().map(|f| f.0).collect(),
            "--machine" => want.push('m'),
            "--kernel-name" => want.push('s'),
            "--kernel-release" => want.push('r'),
            "--nodename" => want.push('n'),
            s if s.starts_with('-') && s.len() > 1 && !s.starts_with("--") => {
                for c in s[1..].chars() {
                    match c {
                        'p' | 'i' => want.push('m'),
                        c if fields.iter().any(|f| f.0 == c) => want.push(c),
                        c => {
                            say(io, &format!("uname: invalid option -- '{c}'\nTry 'uname --help' for more information.\n")).await;
                            return 1;
                        }
                    }
                }
            }
            other => {
                say(
                    io,
                    &format!(
                        "uname: extra operand '{other}'\nTry 'uname --help' for more information.\n"
                    ),
                )
                .await;
                return 1;
            }
        }
    }
    if want.is_empty() {
        want.push('s');
    }
    let line: Vec<String> = fields
        .iter()
        .filter(|f| want.contains(&f.0))
        .map(|f| f.1.clone())
        .collect();
    out(io, &format!("{}\n", line.join(" "))).await
}

async fn test(args: &[String], io: &Stdio) -> i32 {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match eval_test(&a) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(msg) => {
            say(io, &format!("bash: line 1: test: {msg}\n")).await;
            2
        }
    }
}

fn eval_test(a: &[&str]) -> Result<bool, String> {
    if a.len() > 3 {
        for (op, is_and) in [("-o", false), ("-a", true)] {
            if let Some(p) = a.iter().position(|x| *x == op)
                && p > 0
                && p + 1 < a.len()
            {
                let (l, r) = (eval_test(&a[..p])?, eval_test(&a[p + 1..])?);
                return Ok(if is_and { l && r } else { l || r });
            }
        }
    }
    match a {
        [] => Ok(false),
        ["!", rest @ ..] => eval_test(rest).map(|b| !b),
        [s] => Ok(!s.is_empty()),
        [op, x] => {
            let exists = |p: &str| p == "/dev/sda" || is_dir(p) || p.starts_with("/dev/");
            match *op {
                "-z" => Ok(x.is_empty()),
                "-n" => Ok(!x.is_empty()),
                "-b" => Ok(*x == "/dev/sda"),
                "-d" => Ok(is_dir(x)),
                "-e" | "-r" | "-w" | "-f" | "-s" | "-c" | "-x" => Ok(exists(x)),
                _ => Err(format!("{op}: unary operator expected")),
            }
        }
        [x, op, y] => {
            let num = |s: &str| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{s}: integer expression expected"))
            };
            match *op {
                "=" | "==" => Ok(x == y),
                "!=" => Ok(x != y),
                "-eq" => Ok(num(x)? == num(y)?),
                "-ne" => Ok(num(x)? != num(y)?),
                "-lt" => Ok(num(x)? < num(y)?),
                "-le" => Ok(num(x)? <= num(y)?),
                "-gt" => Ok(num(x)? > num(y)?),
                "-ge" => Ok(num(x)? >= num(y)?),
                _ => Err(format!("{op}: binary operator expected")),
            }
        }
        _ => Err("too many arguments".into()),
    }
}

fn is_disk(ctx: &Ctx, p: &str) -> bool {
    resolve(&ctx.cwd, p) == "/dev/sda"
}

async fn blkdiscard(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let verbose = args.iter().any(|a| a == "-v" || a == "--verbose");
    let devs: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let [dev] = devs.as_slice() else {
        say(
            io,
            "blkdiscard: no device specified\nTry 'blkdiscard --help' for more information.\n",
        )
        .await;
        return 1;
    };
    if !is_disk(ctx, dev) {
        say(
            io,
            &format!("blkdiscard: cannot open {dev}: No such file or directory\n"),
        )
        .await;
        return 1;
    }
    match ctx.machine.disk.discard().await {
        Ok(()) => {
            if verbose {
                let _ = io
                    .stdout
                    .print(&format!(
                        "{dev}: Discarded {} bytes from the offset 0\n",
                        ctx.machine.disk.size
                    ))
                    .await;
            }
            0
        }
        Err(e) => {
            say(
                io,
                &format!(
                    "blkdiscard: {dev}: BLKDISCARD ioctl failed: {}\n",
                    io::strerror(&e)
                ),
            )
            .await;
            1
        }
    }
}

async fn blockdev(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let Some(dev) = args.iter().rfind(|a| !a.starts_with('-')) else {
        say(io, "blockdev: no device specified\n").await;
        return 1;
    };
    if !is_disk(ctx, dev) {
        say(
            io,
            &format!("blockdev: cannot open {dev}: No such file or directory\n"),
        )
        .await;
        return 1;
    }
    let size = ctx.machine.disk.size;
    let mut s = String::new();
    for a in args.iter().filter(|a| a.starts_with('-')) {
        match a.as_str() {
            "--getsize64" => s.push_str(&format!("{size}\n")),
            "--getsz" | "--getsize" => s.push_str(&format!("{}\n", size / 512)),
            "--getss" | "--getpbsz" | "--getiomin" => s.push_str("512\n"),
            "--getbsz" => s.push_str("4096\n"),
            "--getro" => s.push_str("0\n"),
            "--flushbufs" | "--rereadpt" | "-q" | "-v" => {}
            other => {
                say(io, &format!("blockdev: Unknown command: {other}\n")).await;
                return 1;
            }
        }
    }
    out(io, &s).await
}

/// `38.1G`-style sizes as lsblk prints them.
fn lsblk_size(bytes: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else if v.fract() == 0.0 {
        format!("{v:.0}{}", units[u])
    } else {
        format!("{v:.1}{}", units[u])
    }
}

async fn lsblk(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let mut bytes = false;
    let mut header = true;
    let mut full_path = false;
    let mut cols: Vec<String> = ["NAME", "MAJ:MIN", "RM", "SIZE", "RO", "TYPE", "MOUNTPOINTS"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some(list) = a.strip_prefix("--output=") {
            cols = list.split(',').map(str::to_uppercase).collect();
        } else if a == "-o" || a == "--output" {
            i += 1;
            if let Some(list) = args.get(i) {
                cols = list.split(',').map(str::to_uppercase).collect();
            }
        } else if a.starts_with('-') && !a.starts_with("--") {
            for c in a[1..].chars() {
                match c {
                    'b' => bytes = true,
                    'n' => header = false,
                    'p' => full_path = true,
                    'd' | 'a' | 'l' | 'r' => {}
                    'o' => {
                        i += 1;
                        if let Some(list) = args.get(i) {
                            cols = list.split(',').map(str::to_uppercase).collect();
                        }
                    }
                    _ => {}
                }
            }
        } else if a == "--bytes" {
            bytes = true;
        } else if a == "--noheadings" {
            header = false;
        } else if !a.starts_with('-') && !is_disk(ctx, a) {
            say(io, &format!("lsblk: {a}: not a block device\n")).await;
            return 32;
        }
        i += 1;
    }
    let size = ctx.machine.disk.size;
    let value = |c: &str| -> String {
        match c {
            "NAME" | "KNAME" => if full_path { "/dev/sda" } else { "sda" }.to_string(),
            "PATH" => "/dev/sda".into(),
            "MAJ:MIN" => "8:0".into(),
            "RM" | "RO" => "0".into(),
            "SIZE" => {
                if bytes {
                    size.to_string()
                } else {
                    lsblk_size(size)
                }
            }
            "TYPE" => "disk".into(),
            "MODEL" => "QEMU HARDDISK".into(),
            _ => String::new(),
        }
    };
    let mut s = String::new();
    if header {
        s.push_str(&cols.join(" "));
        s.push('\n');
    }
    let row: Vec<String> = cols.iter().map(|c| value(c)).collect();
    s.push_str(row.join(" ").trim_end());
    s.push('\n');
    out(io, &s).await
}

async fn sleep(args: &[String], io: &Stdio) -> i32 {
    let mut total = 0.0;
    for a in args {
        let (num, mult) = match a.chars().last() {
            Some('s') => (&a[..a.len() - 1], 1.0),
            Some('m') => (&a[..a.len() - 1], 60.0),
            Some('h') => (&a[..a.len() - 1], 3600.0),
            _ => (a.as_str(), 1.0),
        };
        match num.parse::<f64>() {
            Ok(n) if n >= 0.0 && n.is_finite() => total += n * mult,
            _ => {
                say(io, &format!("sleep: invalid time interval '{a}'\nTry 'sleep --help' for more information.\n")).await;
                return 1;
            }
        }
    }
    tokio::time::sleep(std::time::Duration::from_secs_f64(total.min(3600.0))).await;
    0
}

/// Reads `f` (or stdin for `-`) to the end in chunks, feeding `each`.
async fn read_input(
    ctx: &Ctx,
    prog: &str,
    f: &str,
    io: &Stdio,
    mut each: impl FnMut(&[u8]),
) -> Result<(), i32> {
    let input = if f == "-" {
        io.stdin.clone()
    } else {
        match open_in(&ctx.machine, &ctx.cwd, f, io).await {
            Ok(i) => i,
            Err(e) => {
                say(io, &format!("{prog}: {f}: {e}\n")).await;
                return Err(1);
            }
        }
    };
    if matches!(
        resolve(&ctx.cwd, f).as_str(),
        "/dev/zero" | "/dev/urandom" | "/dev/random"
    ) {
        say(
            io,
            &format!("{prog}: {f}: the twin does not read endless devices to the end\n"),
        )
        .await;
        return Err(1);
    }
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match input.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) => each(&buf[..n]),
            Err(e) => {
                say(io, &format!("{prog}: {f}: {}\n", io::strerror(&e))).await;
                return Err(1);
            }
        }
    }
}

async fn sha256sum(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let files: Vec<String> = {
        let f: Vec<String> = args
            .iter()
            .filter(|a| !a.starts_with('-') || *a == "-")
            .cloned()
            .collect();
        if f.is_empty() { vec!["-".into()] } else { f }
    };
    let mut code = 0;
    for f in files {
        let mut h = Sha256::new();
        match read_input(ctx, "sha256sum", &f, io, |b| h.update(b)).await {
            Ok(()) => {
                let line = format!("{}  {f}\n", hex(&h.finalize()));
                if let Err(e) = io.stdout.print(&line).await {
                    return write_failed(io, "sha256sum", &e).await;
                }
            }
            Err(c) => code = c,
        }
    }
    code
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn wc(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let files: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let lines_only = args.iter().any(|a| a == "-l");
    let count = |f: &str| {
        let f = f.to_string();
        async move {
            let mut n = 0u64;
            read_input(ctx, "wc", &f, io, |b| {
                n += if lines_only {
                    b.iter().filter(|c| **c == b'\n').count() as u64
                } else {
                    b.len() as u64
                };
            })
            .await
            .map(|()| n)
        }
    };
    if files.is_empty() {
        return match count("-").await {
            Ok(n) => out(io, &format!("{n}\n")).await,
            Err(c) => c,
        };
    }
    let mut s = String::new();
    for f in files {
        match count(f).await {
            Ok(n) => s.push_str(&format!("{n} {f}\n")),
            Err(c) => return c,
        }
    }
    out(io, &s).await
}

/// `stat -c/--format/--printf FORMAT FILE...` (`%s` size, `%n` name, `%F` type) and plain
/// `stat FILE` (size and type lines).
async fn stat(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let mut format: Option<(String, bool)> = None;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "-c" || a == "--format" || a == "--printf" {
            i += 1;
            format = args.get(i).map(|f| (f.clone(), a != "--printf"));
        } else if let Some(f) = a.strip_prefix("--format=") {
            format = Some((f.to_string(), true));
        } else if let Some(f) = a.strip_prefix("--printf=") {
            format = Some((f.to_string(), false));
        } else if !a.starts_with('-') {
            files.push(a.clone());
        }
        i += 1;
    }
    if files.is_empty() {
        say(
            io,
            "stat: missing operand\nTry 'stat --help' for more information.\n",
        )
        .await;
        return 1;
    }
    let mut s = String::new();
    let mut code = 0;
    for f in files {
        let p = resolve(&ctx.cwd, &f);
        // A block device's st_size is 0, as on Linux.
        let (size, kind) = if p.starts_with("/dev/")
            && matches!(
                p.as_str(),
                "/dev/sda" | "/dev/null" | "/dev/zero" | "/dev/urandom" | "/dev/random"
            ) {
            (
                0,
                if p == "/dev/sda" {
                    "block special file"
                } else {
                    "character special file"
                },
            )
        } else if is_dir(&p) {
            (4096, "directory")
        } else if let Some(d) = ctx.machine.vfs.read(&p) {
            (
                d.len(),
                if d.is_empty() {
                    "regular empty file"
                } else {
                    "regular file"
                },
            )
        } else {
            say(
                io,
                &format!("stat: cannot statx '{f}': No such file or directory\n"),
            )
            .await;
            code = 1;
            continue;
        };
        match &format {
            Some((fmt, newline)) => {
                let (fmt, _) = unescape(fmt);
                let text = fmt
                    .replace("%s", &size.to_string())
                    .replace("%n", &f)
                    .replace("%F", kind);
                s.push_str(&text);
                if *newline {
                    s.push('\n');
                }
            }
            None => s.push_str(&format!("  File: {f}\n  Size: {size}\t{kind}\n")),
        }
    }
    match io.stdout.print(&s).await {
        Ok(()) => code,
        Err(e) => write_failed(io, "stat", &e).await,
    }
}

async fn head(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let mut bytes: Option<u64> = None;
    let mut lines: usize = 10;
    let mut file = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "-c" || a == "-n" {
            i += 1;
            let v = args.get(i).and_then(|v| dd::parse_size(v));
            match (a.as_str(), v) {
                ("-c", Some(v)) => bytes = Some(v),
                ("-n", Some(v)) => lines = v as usize,
                _ => {
                    say(io, "head: invalid number\n").await;
                    return 1;
                }
            }
        } else if let Some(v) = a.strip_prefix("-c") {
            bytes = dd::parse_size(v);
        } else if let Some(v) = a.strip_prefix("-n") {
            lines = v.parse().unwrap_or(10);
        } else {
            file = Some(a.clone());
        }
        i += 1;
    }
    let input = match file.as_deref() {
        None | Some("-") => io.stdin.clone(),
        Some(f) => match open_in(&ctx.machine, &ctx.cwd, f, io).await {
            Ok(i) => i,
            Err(e) => {
                say(io, &format!("head: cannot open '{f}' for reading: {e}\n")).await;
                return 1;
            }
        },
    };
    if let Some(n) = bytes {
        return match copy(&input, io, "head", Some(n)).await {
            Ok(_) => 0,
            Err(c) => c,
        };
    }
    let mut seen = 0;
    let mut buf = [0u8; 1];
    let mut line = Vec::new();
    while seen < lines {
        match input.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                line.push(buf[0]);
                if buf[0] == b'\n' {
                    seen += 1;
                }
            }
        }
    }
    match io.stdout.write_all(&line).await {
        Ok(()) => 0,
        Err(e) => write_failed(io, "head", &e).await,
    }
}

async fn ls(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let dir = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(|a| resolve(&ctx.cwd, a))
        .unwrap_or_else(|| ctx.cwd.clone());
    if dir == "/dev/sda" {
        return out(io, "/dev/sda\n").await;
    }
    let names: Vec<String> = if dir == "/dev" {
        vec!["null".into(), "sda".into(), "urandom".into(), "zero".into()]
    } else {
        ctx.machine
            .vfs
            .list()
            .into_iter()
            .filter_map(|(p, _)| {
                let (d, n) = p.rsplit_once('/')?;
                let d = if d.is_empty() { "/" } else { d };
                (d == dir).then(|| n.to_string())
            })
            .collect()
    };
    if names.is_empty() && !is_dir(&dir) {
        if let Some(f) = ctx.machine.vfs.read(&dir).map(|_| dir.clone()) {
            return out(io, &format!("{f}\n")).await;
        }
        say(
            io,
            &format!("ls: cannot access '{dir}': No such file or directory\n"),
        )
        .await;
        return 2;
    }
    let mut s = names.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    out(io, &s).await
}
