//! `dd` as GNU coreutils 9 has it: operands `if=`, `of=`, `bs=`, `ibs=`, `obs=`, `count=`,
//! `skip=`, `seek=`, `conv=` (`fsync`, `fdatasync`, `notrunc`, `sync`), `iflag=fullblock`,
//! `oflag=` (accepted), `status=` (`none`, `noxfer`, `progress`); its statistics on stderr:
//!
//! ```text
//! 0+33 records in
//! 0+33 records out
//! 2097152 bytes (2.1 MB, 2.0 MiB) copied, 0.0123 s, 170 MB/s
//! ```
//!
//! A read from a pipe returns what the pipe holds (at most 64 KiB), so without
//! `iflag=fullblock` most records are partial, as on Linux. Writing past the end of `/dev/sda`
//! fails with `No space left on device` after filling it.

use std::time::Instant;

use super::{Ctx, open_in, resolve, say};
use crate::io::{self, In, Out, Sink, Stdio};

/// Parses a dd/head size: a number with an optional multiplier suffix (`c`, `w`, `b`, `kB`,
/// `K`, `KiB`, `MB`, `M`, `MiB`, `GB`, `G`, `GiB`, `TB`, `T`, `TiB`), or `NxM`.
pub fn parse_size(s: &str) -> Option<u64> {
    if let Some((a, b)) = s.split_once('x') {
        return parse_size(a)?.checked_mul(parse_size(b)?);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match suffix {
        "" | "c" => 1,
        "w" => 2,
        "b" => 512,
        "kB" | "KB" => 1000,
        "K" | "k" | "KiB" => 1024,
        "MB" => 1000 * 1000,
        "M" | "MiB" => 1024 * 1024,
        "GB" => 1000 * 1000 * 1000,
        "G" | "GiB" => 1024 * 1024 * 1024,
        "TB" => 1000u64.pow(4),
        "T" | "TiB" => 1024u64.pow(4),
        _ => return None,
    };
    n.checked_mul(mult)
}

/// coreutils' `human_readable` with autoscale and one decimal below 10: `2.1 MB`, `40 GB`.
fn human(v: f64, base: f64, units: &[&str]) -> String {
    let mut v = v;
    let mut u = 0;
    while v >= base && u < units.len() - 1 {
        v /= base;
        u += 1;
    }
    if u == 0 {
        return format!("{} {}", v.round(), units[0]);
    }
    if v < 10.0 {
        // Rounded to one decimal; 9.96 becomes 10, printed without a decimal.
        let r = (v * 10.0).round() / 10.0;
        if r < 10.0 {
            return format!("{r:.1} {}", units[u]);
        }
        return format!("{r:.0} {}", units[u]);
    }
    format!("{:.0} {}", v.round(), units[u])
}

/// `%g`-style seconds with 6 significant digits, as dd prints them.
fn seconds(s: f64) -> String {
    if s <= 0.0 {
        return "0 s".into();
    }
    let digits = 6 - 1 - s.log10().floor() as i32;
    let text = if digits > 0 {
        format!("{s:.*}", digits as usize)
    } else {
        format!("{s:.0}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text} s")
}

/// The transfer line of dd's statistics.
pub fn transfer_line(bytes: u64, secs: f64) -> String {
    let si_units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let iec_units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let rate = if secs > 0.0 {
        format!("{}/s", human(bytes as f64 / secs, 1000.0, &si_units))
    } else {
        "Infinity B/s".into()
    };
    if bytes < 1000 {
        let noun = if bytes == 1 { "byte" } else { "bytes" };
        return format!("{bytes} {noun} copied, {}, {rate}\n", seconds(secs));
    }
    let si = human(bytes as f64, 1000.0, &si_units);
    let iec = human(bytes as f64, 1024.0, &iec_units);
    if si == iec {
        return format!("{bytes} bytes ({si}) copied, {}, {rate}\n", seconds(secs));
    }
    format!(
        "{bytes} bytes ({si}, {iec}) copied, {}, {rate}\n",
        seconds(secs)
    )
}

#[derive(Default)]
struct Opts {
    input: Option<String>,
    output: Option<String>,
    ibs: u64,
    obs: u64,
    count: Option<u64>,
    skip: u64,
    seek: u64,
    fsync: bool,
    notrunc: bool,
    pad: bool,
    fullblock: bool,
    status: String,
}

/// Runs `dd`.
pub async fn dd(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let mut o = Opts {
        ibs: 512,
        obs: 512,
        ..Opts::default()
    };
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            say(
                io,
                &format!("dd: unrecognized operand '{a}'\nTry 'dd --help' for more information.\n"),
            )
            .await;
            return 1;
        };
        let size = |v: &str| parse_size(v);
        let bad = |what: &str| format!("dd: invalid number: '{what}'\n");
        match k {
            "if" => o.input = Some(v.to_string()),
            "of" => o.output = Some(v.to_string()),
            "bs" | "ibs" | "obs" => match size(v) {
                Some(n) if n > 0 => match k {
                    "bs" => {
                        o.ibs = n;
                        o.obs = n;
                    }
                    "ibs" => o.ibs = n,
                    _ => o.obs = n,
                },
                _ => {
                    say(io, &bad(v)).await;
                    return 1;
                }
            },
            "count" | "skip" | "seek" | "iseek" | "oseek" => match size(v) {
                Some(n) => match k {
                    "count" => o.count = Some(n),
                    "skip" | "iseek" => o.skip = n,
                    _ => o.seek = n,
                },
                None => {
                    say(io, &bad(v)).await;
                    return 1;
                }
            },
            "conv" => {
                for c in v.split(',') {
                    match c {
                        "fsync" | "fdatasync" => o.fsync = true,
                        "notrunc" => o.notrunc = true,
                        "sync" => o.pad = true,
                        "noerror" | "sparse" | "excl" | "nocreat" => {}
                        other => {
                            say(io, &format!("dd: invalid conversion: '{other}'\nTry 'dd --help' for more information.\n")).await;
                            return 1;
                        }
                    }
                }
            }
            "iflag" => {
                for f in v.split(',') {
                    match f {
                        "fullblock" => o.fullblock = true,
                        "direct" | "dsync" | "sync" | "nonblock" | "noatime" | "nocache"
                        | "binary" | "text" | "count_bytes" | "skip_bytes" => {}
                        other => {
                            say(io, &format!("dd: invalid input flag: '{other}'\nTry 'dd --help' for more information.\n")).await;
                            return 1;
                        }
                    }
                }
            }
            "oflag" => {}
            "status" => match v {
                "none" | "noxfer" | "progress" => o.status = v.to_string(),
                other => {
                    say(io, &format!("dd: invalid status level: '{other}'\nTry 'dd --help' for more information.\n")).await;
                    return 1;
                }
            },
            _ => {
                say(
                    io,
                    &format!(
                        "dd: unrecognized operand '{a}'\nTry 'dd --help' for more information.\n"
                    ),
                )
                .await;
                return 1;
            }
        }
    }
    let input: In = match &o.input {
        None => io.stdin.clone(),
        Some(f) => match open_in(&ctx.machine, &ctx.cwd, f, io).await {
            Ok(i) => i,
            Err(e) => {
                say(io, &format!("dd: failed to open '{f}': {e}\n")).await;
                return 1;
            }
        },
    };
    let out_name = o.output.clone().unwrap_or_else(|| "standard output".into());
    let output: Out = match &o.output {
        None => io.stdout.clone(),
        Some(f) => {
            let path = resolve(&ctx.cwd, f);
            match path.as_str() {
                "/dev/null" => Out::null(),
                "/dev/stdout" => io.stdout.clone(),
                "/dev/stderr" => io.stderr.clone(),
                "/dev/full" => Out::new(Sink::Full),
                "/dev/sda" => match io::disk_writer(&ctx.machine.disk, o.seek * o.obs).await {
                    Ok(w) => w,
                    Err(e) => {
                        say(
                            io,
                            &format!("dd: failed to open '{f}': {}\n", io::strerror(&e)),
                        )
                        .await;
                        return 1;
                    }
                },
                p if super::writable(p) => {
                    let vfs = ctx.machine.vfs.clone();
                    if !o.notrunc || !vfs.exists(p) {
                        if o.seek > 0 {
                            // Seeking into a fresh file: the gap reads as zeros.
                            let _ = vfs.put(p, vec![0u8; (o.seek * o.obs) as usize]);
                        } else {
                            vfs.create(p);
                        }
                    }
                    Out::new(Sink::File(vfs, p.to_string()))
                }
                _ => {
                    say(
                        io,
                        &format!("dd: failed to open '{f}': No such file or directory\n"),
                    )
                    .await;
                    return 1;
                }
            }
        }
    };
    let start = Instant::now();
    // Skip input blocks.
    let mut buf = vec![0u8; o.ibs.min(64 * 1024 * 1024) as usize];
    let mut to_skip = o.skip * o.ibs;
    while to_skip > 0 {
        let want = to_skip.min(buf.len() as u64) as usize;
        match input.read(&mut buf[..want]).await {
            Ok(0) => break,
            Ok(n) => to_skip -= n as u64,
            Err(e) => {
                say(
                    io,
                    &format!(
                        "dd: error reading '{}': {}\n",
                        o.input.as_deref().unwrap_or("standard input"),
                        io::strerror(&e)
                    ),
                )
                .await;
                return 1;
            }
        }
    }
    let (mut full_in, mut part_in, mut full_out, mut part_out, mut bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut code = 0;
    let mut failure = None;
    loop {
        if o.count.is_some_and(|c| full_in + part_in >= c) {
            break;
        }
        // One read (or, with iflag=fullblock, reads until the block is full).
        let mut n = 0;
        loop {
            match input.read(&mut buf[n..]).await {
                Ok(0) => break,
                Ok(k) => {
                    n += k;
                    if !o.fullblock || n == buf.len() {
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(format!(
                        "dd: error reading '{}': {}\n",
                        o.input.as_deref().unwrap_or("standard input"),
                        io::strerror(&e)
                    ));
                    break;
                }
            }
        }
        if n == 0 {
            break;
        }
        if n as u64 == o.ibs {
            full_in += 1;
        } else {
            part_in += 1;
            if o.pad {
                buf[n..].fill(0);
                n = buf.len();
            }
        }
        match output.write_all(&buf[..n]).await {
            Ok(()) => {
                bytes += n as u64;
                if n as u64 == o.obs {
                    full_out += 1;
                } else {
                    part_out += 1;
                }
            }
            Err(e) => {
                if io::is_broken_pipe(&e) {
                    return 141;
                }
                failure = Some(format!(
                    "dd: error writing '{out_name}': {}\n",
                    io::strerror(&e)
                ));
                if e.kind() == std::io::ErrorKind::StorageFull {
                    // What fit was written.
                    let room = ctx.machine.disk.size.saturating_sub(o.seek * o.obs + bytes);
                    let wrote = room.min(n as u64);
                    if wrote > 0 {
                        bytes += wrote;
                        part_out += 1;
                    }
                }
                break;
            }
        }
        if failure.is_some() {
            break;
        }
    }
    let synced = if o.fsync {
        output.sync().await
    } else {
        output.flush().await
    };
    if let Err(e) = synced
        && failure.is_none()
    {
        failure = Some(format!(
            "dd: fsync failed for '{out_name}': {}\n",
            io::strerror(&e)
        ));
    }
    let mut report = String::new();
    if let Some(f) = failure {
        report.push_str(&f);
        code = 1;
    }
    if o.status != "none" {
        report.push_str(&format!(
            "{full_in}+{part_in} records in\n{full_out}+{part_out} records out\n"
        ));
        if o.status != "noxfer" {
            report.push_str(&transfer_line(bytes, start.elapsed().as_secs_f64()));
        }
    }
    say(io, &report).await;
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4M"), Some(4 * 1024 * 1024));
        assert_eq!(parse_size("1MB"), Some(1_000_000));
        assert_eq!(parse_size("2x512"), Some(1024));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1b"), Some(512));
        assert_eq!(parse_size("4Q"), None);
    }

    #[test]
    fn statistics_read_like_coreutils() {
        assert_eq!(
            transfer_line(2_097_152, 0.0123),
            "2097152 bytes (2.1 MB, 2.0 MiB) copied, 0.0123 s, 171 MB/s\n"
        );
        assert_eq!(
            transfer_line(512, 0.5),
            "512 bytes copied, 0.5 s, 1.0 kB/s\n"
        );
        assert_eq!(transfer_line(1, 1.0), "1 byte copied, 1 s, 1 B/s\n");
        assert_eq!(
            transfer_line(40_000_000_000, 100.0),
            "40000000000 bytes (40 GB, 37 GiB) copied, 100 s, 400 MB/s\n"
        );
    }
}
