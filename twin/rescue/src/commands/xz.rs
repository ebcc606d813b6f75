//! `xz`, `unxz`, `xzcat` (XZ Utils 5.x): `-d`/`--decompress`, `-z`/`--compress`,
//! `-c`/`--stdout`, `-k`/`--keep`, `-f`, `-t`/`--test`, `-q`, `-v`, `-T N`/`--threads=N`,
//! `-0`..`-9`; stdin to stdout when no file is named (or `-`). Decompression streams (the image
//! is never held whole) and accepts concatenated streams; errors are xz's: `xz: (stdin): File
//! format not recognized`, `Unexpected end of input`, `Compressed data is corrupt` (status 1).

use std::io::{Read, Write};

use tokio::runtime::Handle;

use super::{Ctx, open_in, resolve, say};
use crate::io::{self, In, Out, Sink, Stdio};

const MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];

struct SyncIn {
    input: In,
    rt: Handle,
    head: Vec<u8>,
    pos: usize,
}

impl Read for SyncIn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.rt.block_on(self.input.read(buf))
    }
}

struct SyncOut {
    out: Out,
    rt: Handle,
}

impl Write for SyncOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.rt
            .block_on(self.out.write_all(buf))
            .map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.rt.block_on(self.out.flush())
    }
}

enum Failure {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Decompresses `input` into `out`, streaming; `name` is how xz names the input in errors.
async fn decompress(input: In, out: Out, name: &str, io: &Stdio) -> i32 {
    let mut head = Vec::new();
    let mut buf = [0u8; 64];
    while head.len() < MAGIC.len() {
        match input.read(&mut buf[..MAGIC.len() - head.len()]).await {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => {
                say(
                    io,
                    &format!("xz: {name}: Read error: {}\n", io::strerror(&e)),
                )
                .await;
                return 1;
            }
        }
    }
    if head.is_empty() {
        say(io, &format!("xz: {name}: Unexpected end of input\n")).await;
        return 1;
    }
    if head != MAGIC {
        say(io, &format!("xz: {name}: File format not recognized\n")).await;
        return 1;
    }
    let rt = Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let src = SyncIn {
            input,
            rt: rt.clone(),
            head,
            pos: 0,
        };
        let mut reader = lzma_rust2::XzReader::new(src, true);
        let mut sink = SyncOut { out, rt };
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut chunk).map_err(Failure::Read)?;
            if n == 0 {
                break;
            }
            sink.write_all(&chunk[..n]).map_err(Failure::Write)?;
        }
        sink.flush().map_err(Failure::Write)
    })
    .await;
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(Failure::Write(e))) => {
            if io::is_broken_pipe(&e) {
                return 141;
            }
            say(
                io,
                &format!("xz: (stdout): Write error: {}\n", io::strerror(&e)),
            )
            .await;
            1
        }
        Ok(Err(Failure::Read(e))) => {
            let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "Unexpected end of input".to_string()
            } else if e.kind() == std::io::ErrorKind::InvalidData {
                "Compressed data is corrupt".to_string()
            } else {
                format!("Read error: {}", io::strerror(&e))
            };
            say(io, &format!("xz: {name}: {what}\n")).await;
            1
        }
        Err(_) => 1,
    }
}

/// Compresses `input` into `out`.
async fn compress(input: In, out: Out, preset: u32, io: &Stdio) -> i32 {
    let rt = Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let mut src = SyncIn {
            input,
            rt: rt.clone(),
            head: Vec::new(),
            pos: 0,
        };
        let sink = SyncOut { out, rt };
        let mut w = lzma_rust2::XzWriter::new(sink, lzma_rust2::XzOptions::with_preset(preset))
            .map_err(Failure::Write)?;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = src.read(&mut chunk).map_err(Failure::Read)?;
            if n == 0 {
                break;
            }
            w.write_all(&chunk[..n]).map_err(Failure::Write)?;
        }
        let mut sink = w.finish().map_err(Failure::Write)?;
        sink.flush().map_err(Failure::Write)
    })
    .await;
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(Failure::Write(e))) if io::is_broken_pipe(&e) => 141,
        Ok(Err(Failure::Write(e) | Failure::Read(e))) => {
            say(io, &format!("xz: {}\n", io::strerror(&e))).await;
            1
        }
        Err(_) => 1,
    }
}

/// Runs `xz` under the name it was called by (`xz`, `unxz`, `xzcat`).
pub async fn xz(ctx: &Ctx, prog: &str, args: &[String], io: &Stdio) -> i32 {
    let mut decompress_mode = prog != "xz";
    let mut to_stdout = prog == "xzcat";
    let mut keep = false;
    let mut test = false;
    let mut preset = 6;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "--decompress" | "--uncompress" => decompress_mode = true,
            "--compress" => decompress_mode = false,
            "--stdout" | "--to-stdout" => to_stdout = true,
            "--keep" => keep = true,
            "--test" => {
                test = true;
                decompress_mode = true;
            }
            "--force" | "--quiet" | "--verbose" | "--no-warn" | "--single-stream" => {}
            "-" => files.push(a.clone()),
            "-T" | "-M" | "-F" | "-C" => i += 1,
            s if s.starts_with("--threads=")
                || s.starts_with("--memlimit")
                || s.starts_with("--format=")
                || s.starts_with("--check=") => {}
            s if s.starts_with("--") => {
                say(
                    io,
                    &format!(
                        "xz: unrecognized option '{s}'\nxz: Try 'xz --help' for more information.\n"
                    ),
                )
                .await;
                return 1;
            }
            s if s.starts_with('-') => {
                let cs: Vec<char> = s[1..].chars().collect();
                let mut j = 0;
                while j < cs.len() {
                    match cs[j] {
                        'd' => decompress_mode = true,
                        'z' => decompress_mode = false,
                        'c' => to_stdout = true,
                        'k' => keep = true,
                        't' => {
                            test = true;
                            decompress_mode = true;
                        }
                        'f' | 'q' | 'v' | 'e' | 'Q' => {}
                        'T' | 'M' | 'F' | 'C' => {
                            if j + 1 == cs.len() {
                                i += 1;
                            }
                            break;
                        }
                        d if d.is_ascii_digit() => preset = d.to_digit(10).unwrap_or(6),
                        other => {
                            say(io, &format!("xz: invalid option -- '{other}'\nxz: Try 'xz --help' for more information.\n")).await;
                            return 1;
                        }
                    }
                    j += 1;
                }
            }
            _ => files.push(a.clone()),
        }
        i += 1;
    }
    if files.is_empty() {
        files.push("-".into());
    }
    let mut code = 0;
    for f in files {
        let (input, name) = if f == "-" {
            (io.stdin.clone(), "(stdin)".to_string())
        } else {
            match open_in(&ctx.machine, &ctx.cwd, &f, io).await {
                Ok(i) => (i, f.clone()),
                Err(e) => {
                    say(io, &format!("xz: {f}: {e}\n")).await;
                    code = 1;
                    continue;
                }
            }
        };
        let (out, dest) = if test {
            (Out::null(), None)
        } else if f == "-" || to_stdout {
            (io.stdout.clone(), None)
        } else {
            let path = resolve(&ctx.cwd, &f);
            let dest = if decompress_mode {
                match path
                    .strip_suffix(".xz")
                    .or_else(|| path.strip_suffix(".txz"))
                {
                    Some(d) => d.to_string(),
                    None => {
                        say(
                            io,
                            &format!("xz: {f}: Filename has an unknown suffix, skipping\n"),
                        )
                        .await;
                        code = 1;
                        continue;
                    }
                }
            } else {
                format!("{path}.xz")
            };
            ctx.machine.vfs.create(&dest);
            (
                Out::new(Sink::File(ctx.machine.vfs.clone(), dest.clone())),
                Some((path, dest)),
            )
        };
        let c = if decompress_mode {
            decompress(input, out, &name, io).await
        } else {
            compress(input, out, preset, io).await
        };
        if c == 141 {
            return 141;
        }
        if let Some((src, dest)) = dest {
            if c == 0 {
                if !keep {
                    ctx.machine.vfs.remove(&src);
                }
            } else {
                ctx.machine.vfs.remove(&dest);
            }
        }
        if c != 0 {
            code = c;
        }
    }
    code
}
