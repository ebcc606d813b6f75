//! Running parsed command lines: [`Shell::run_script`].
//!
//! Error texts follow bash (the rescue system's login shell): `bash: line 1: foo: command not
//! found` (127), `bash: -c: line 1: syntax error ...` (2). Pipeline elements run concurrently,
//! each in a subshell (a copy of the variables), connected by 64 KiB pipes; the pipeline's
//! status is the last element's, or with `pipefail` the rightmost non-zero one.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};

use tokio_util::sync::CancellationToken;

use super::parse::{self, AndOr, Command, Connector, List, Part, Pipeline, Redir, RedirOp, Word};
use crate::commands;
use crate::io::{self, BlockDevice, In, Out, Sink, Source, Stdio, Vfs};

/// What a `poweroff`/`reboot` typed in the rescue system asks of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// `poweroff`, `halt`, `shutdown -h now`, `shutdown now`.
    Off,
    /// `reboot`, `shutdown -r now`.
    Reboot,
}

/// The machine a rescue shell runs on.
pub struct Machine {
    /// `hostname` (Hetzner's rescue says `rescue`).
    pub hostname: String,
    /// `uname -m`: `x86_64` or `aarch64`.
    pub uname_machine: String,
    /// `/dev/sda`.
    pub disk: BlockDevice,
    /// The RAM file system.
    pub vfs: Vfs,
    /// Called by `poweroff`/`reboot`; `None`: those commands fail.
    pub power: Option<Arc<dyn Fn(Power) + Send + Sync>>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("hostname", &self.hostname)
            .field("uname_machine", &self.uname_machine)
            .field("disk", &self.disk)
            .finish_non_exhaustive()
    }
}

/// How a piece of a script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Normally, with a status.
    Status(i32),
    /// `exit` (or `set -e`): the shell (or subshell) ends with this status.
    Exit(i32),
}

impl Flow {
    fn code(self) -> i32 {
        match self {
            Flow::Status(c) | Flow::Exit(c) => c,
        }
    }
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A shell: variables, options, the last status, the working directory.
#[derive(Clone)]
pub struct Shell {
    machine: Arc<Machine>,
    vars: BTreeMap<String, String>,
    errexit: bool,
    pipefail: bool,
    /// Depth of contexts where `set -e` does not apply (conditions, `&&`/`||` left sides, `!`).
    no_errexit: u32,
    last: i32,
    cwd: String,
    cancel: CancellationToken,
}

impl Shell {
    /// A login shell of root on `machine`; `cancel` ends everything it runs (power-off).
    pub fn new(machine: Arc<Machine>, cancel: CancellationToken) -> Shell {
        let mut vars = BTreeMap::new();
        for (k, v) in [
            ("HOME", "/root"),
            ("USER", "root"),
            ("LOGNAME", "root"),
            ("SHELL", "/bin/bash"),
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("PWD", "/root"),
            ("IFS", " \t\n"),
        ] {
            vars.insert(k.to_string(), v.to_string());
        }
        vars.insert("HOSTNAME".into(), machine.hostname.clone());
        Shell {
            machine,
            vars,
            errexit: false,
            pipefail: false,
            no_errexit: 0,
            last: 0,
            cwd: "/root".into(),
            cancel,
        }
    }

    /// Runs a command line (what `bash -c` gets) and returns its exit status.
    pub async fn run_script(&mut self, src: &str, stdio: Stdio) -> i32 {
        let list = match parse::parse(src) {
            Ok(l) => l,
            Err(e) => {
                let _ = stdio
                    .stderr
                    .print(&format!("bash: -c: line 1: {e}\n"))
                    .await;
                return 2;
            }
        };
        let cancel = self.cancel.clone();
        tokio::select! {
            flow = self.run_list(&list, &stdio) => flow.code(),
            _ = cancel.cancelled() => 143,
        }
    }

    fn run_list<'a>(&'a mut self, list: &'a List, io: &'a Stdio) -> BoxFut<'a, Flow> {
        Box::pin(async move {
            let mut status = Flow::Status(0);
            for (ao, background) in &list.0 {
                if *background {
                    let mut sub = self.clone();
                    let ao = ao.clone();
                    let io = io.clone();
                    let cancel = self.cancel.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = sub.run_and_or(&ao, &io) => {}
                            _ = cancel.cancelled() => {}
                        }
                    });
                    status = Flow::Status(0);
                    self.last = 0;
                    continue;
                }
                status = self.run_and_or(ao, io).await;
                if let Flow::Exit(_) = status {
                    return status;
                }
            }
            status
        })
    }

    fn run_and_or<'a>(&'a mut self, ao: &'a AndOr, io: &'a Stdio) -> BoxFut<'a, Flow> {
        Box::pin(async move {
            // `set -e` applies only when the failing pipeline is the last of the chain.
            let n = ao.rest.len();
            if n > 0 {
                self.no_errexit += 1;
            }
            let mut flow = self.run_pipeline(&ao.first, io).await;
            if n > 0 {
                self.no_errexit -= 1;
            }
            let mut final_ran = n == 0;
            let mut negated = ao.first.negate;
            for (i, (conn, p)) in ao.rest.iter().enumerate() {
                if let Flow::Exit(_) = flow {
                    return flow;
                }
                let ok = flow.code() == 0;
                let run = match conn {
                    Connector::And => ok,
                    Connector::Or => !ok,
                };
                if !run {
                    continue;
                }
                let is_final = i + 1 == n;
                if !is_final {
                    self.no_errexit += 1;
                }
                flow = self.run_pipeline(p, io).await;
                if !is_final {
                    self.no_errexit -= 1;
                }
                final_ran = is_final;
                negated = p.negate;
            }
            if let Flow::Exit(_) = flow {
                return flow;
            }
            let code = flow.code();
            if code != 0 && self.errexit && self.no_errexit == 0 && final_ran && !negated {
                return Flow::Exit(code);
            }
            flow
        })
    }

    fn run_pipeline<'a>(&'a mut self, p: &'a Pipeline, io: &'a Stdio) -> BoxFut<'a, Flow> {
        Box::pin(async move {
            if p.negate {
                self.no_errexit += 1;
            }
            let flow = if p.cmds.len() == 1 {
                self.run_command(&p.cmds[0], io).await
            } else {
                let mut tasks = Vec::new();
                let mut next_in = io.stdin.clone();
                for (i, cmd) in p.cmds.iter().enumerate() {
                    let (stdout, following) = if i + 1 < p.cmds.len() {
                        let (w, r) = io::pipe();
                        (w, Some(r))
                    } else {
                        (io.stdout.clone(), None)
                    };
                    let stdio = Stdio {
                        stdin: next_in.clone(),
                        stdout,
                        stderr: io.stderr.clone(),
                    };
                    if let Some(r) = following {
                        next_in = r;
                    }
                    let mut sub = self.clone();
                    let cmd = cmd.clone();
                    let cancel = self.cancel.clone();
                    tasks.push(tokio::spawn(async move {
                        let code = tokio::select! {
                            flow = sub.run_command(&cmd, &stdio) => flow.code(),
                            _ = cancel.cancelled() => 143,
                        };
                        drop(stdio);
                        code
                    }));
                }
                drop(next_in);
                let mut codes = Vec::new();
                for t in tasks {
                    codes.push(t.await.unwrap_or(1));
                }
                let last = codes.last().copied().unwrap_or(0);
                let code = if self.pipefail {
                    codes.iter().rev().find(|c| **c != 0).copied().unwrap_or(0)
                } else {
                    last
                };
                Flow::Status(code)
            };
            let flow = if p.negate {
                self.no_errexit -= 1;
                match flow {
                    Flow::Status(c) => Flow::Status(i32::from(c == 0)),
                    exit => exit,
                }
            } else {
                flow
            };
            self.last = flow.code();
            flow
        })
    }

    fn run_command<'a>(&'a mut self, cmd: &'a Command, io: &'a Stdio) -> BoxFut<'a, Flow> {
        Box::pin(async move {
            match cmd {
                Command::Simple(s) => self.run_simple(s, io).await,
                Command::Subshell(list, redirs) => {
                    let Some(io) = self.redirect(redirs, io).await else {
                        return Flow::Status(1);
                    };
                    let mut sub = self.clone();
                    Flow::Status(sub.run_list(list, &io).await.code())
                }
                Command::Group(list, redirs) => {
                    let Some(io) = self.redirect(redirs, io).await else {
                        return Flow::Status(1);
                    };
                    self.run_list(list, &io).await
                }
                Command::If {
                    branches,
                    otherwise,
                    redirs,
                } => {
                    let Some(io) = self.redirect(redirs, io).await else {
                        return Flow::Status(1);
                    };
                    for (cond, body) in branches {
                        self.no_errexit += 1;
                        let c = self.run_list(cond, &io).await;
                        self.no_errexit -= 1;
                        if let Flow::Exit(_) = c {
                            return c;
                        }
                        if c.code() == 0 {
                            return self.run_list(body, &io).await;
                        }
                    }
                    match otherwise {
                        Some(body) => self.run_list(body, &io).await,
                        None => Flow::Status(0),
                    }
                }
                Command::While {
                    cond,
                    body,
                    until,
                    redirs,
                } => {
                    let Some(io) = self.redirect(redirs, io).await else {
                        return Flow::Status(1);
                    };
                    let mut status = Flow::Status(0);
                    loop {
                        self.no_errexit += 1;
                        let c = self.run_list(cond, &io).await;
                        self.no_errexit -= 1;
                        if let Flow::Exit(_) = c {
                            return c;
                        }
                        if (c.code() == 0) == *until {
                            break;
                        }
                        status = self.run_list(body, &io).await;
                        if let Flow::Exit(_) = status {
                            return status;
                        }
                        tokio::task::yield_now().await;
                    }
                    status
                }
                Command::For {
                    var,
                    words,
                    body,
                    redirs,
                } => {
                    let Some(io) = self.redirect(redirs, io).await else {
                        return Flow::Status(1);
                    };
                    let mut items = Vec::new();
                    for w in words.iter().flatten() {
                        items.extend(self.expand(w, &io).await);
                    }
                    let mut status = Flow::Status(0);
                    for item in items {
                        self.vars.insert(var.clone(), item);
                        status = self.run_list(body, &io).await;
                        if let Flow::Exit(_) = status {
                            return status;
                        }
                    }
                    status
                }
            }
        })
    }

    async fn run_simple(&mut self, s: &parse::Simple, io: &Stdio) -> Flow {
        let mut argv = Vec::new();
        for w in &s.words {
            argv.extend(self.expand(w, io).await);
        }
        let mut assigns = Vec::new();
        for (name, value) in &s.assigns {
            assigns.push((name.clone(), self.expand_one(value, io).await));
        }
        let Some(io) = self.redirect(&s.redirs, io).await else {
            return Flow::Status(1);
        };
        if argv.is_empty() {
            for (k, v) in assigns {
                self.vars.insert(k, v);
            }
            // The status of an assignment-only command is that of its last substitution.
            return Flow::Status(self.last);
        }
        let code = match argv[0].as_str() {
            "exit" => {
                let code = match argv.get(1) {
                    None => self.last,
                    Some(a) => match a.parse::<i64>() {
                        Ok(n) => (n & 0xff) as i32,
                        Err(_) => {
                            let _ = io
                                .stderr
                                .print(&format!(
                                    "bash: line 1: exit: {a}: numeric argument required\n"
                                ))
                                .await;
                            2
                        }
                    },
                };
                return Flow::Exit(code);
            }
            "set" => self.builtin_set(&argv[1..], &io).await,
            "export" | "readonly" | "local" => {
                for a in &argv[1..] {
                    if let Some((k, v)) = a.split_once('=') {
                        self.vars.insert(k.to_string(), v.to_string());
                    }
                }
                0
            }
            "unset" => {
                for a in &argv[1..] {
                    self.vars.remove(a);
                }
                0
            }
            "cd" => {
                let target = argv.get(1).cloned().unwrap_or_else(|| "/root".into());
                let path = commands::resolve(&self.cwd, &target);
                if commands::is_dir(&path) {
                    self.cwd = path.clone();
                    self.vars.insert("PWD".into(), path);
                    0
                } else {
                    let _ = io
                        .stderr
                        .print(&format!(
                            "bash: line 1: cd: {target}: No such file or directory\n"
                        ))
                        .await;
                    1
                }
            }
            _ => {
                let ctx = commands::Ctx {
                    machine: self.machine.clone(),
                    cwd: self.cwd.clone(),
                };
                commands::run(&ctx, &argv, io).await
            }
        };
        self.last = code;
        Flow::Status(code)
    }

    async fn builtin_set(&mut self, args: &[String], io: &Stdio) -> i32 {
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            let (on, flags) = if let Some(f) = a.strip_prefix('-') {
                (true, f)
            } else if let Some(f) = a.strip_prefix('+') {
                (false, f)
            } else {
                i += 1;
                continue;
            };
            for f in flags.chars() {
                match f {
                    'e' => self.errexit = on,
                    'o' => {
                        i += 1;
                        match args.get(i).map(String::as_str) {
                            Some("pipefail") => self.pipefail = on,
                            Some("errexit") => self.errexit = on,
                            Some("nounset" | "xtrace" | "noglob" | "noclobber") => {}
                            Some(other) => {
                                let _ = io
                                    .stderr
                                    .print(&format!(
                                        "bash: line 1: set: {other}: invalid option name\n"
                                    ))
                                    .await;
                                return 2;
                            }
                            None => {}
                        }
                    }
                    'u' | 'x' | 'f' | 'C' | 'v' | 'h' | 'b' | 'm' => {}
                    other => {
                        let _ = io
                            .stderr
                            .print(&format!("bash: line 1: set: -{other}: invalid option\n"))
                            .await;
                        return 2;
                    }
                }
            }
            i += 1;
        }
        0
    }

    /// Applies redirections to a copy of `io`; `None` (after an error message) when a file
    /// cannot be opened.
    async fn redirect(&mut self, redirs: &[Redir], io: &Stdio) -> Option<Stdio> {
        let mut io = io.clone();
        for r in redirs {
            let target = self.expand_one(&r.target, &io).await;
            let result = match r.op {
                RedirOp::Out | RedirOp::Append | RedirOp::OutErr => {
                    match self.open_out(&target, r.op == RedirOp::Append, &io).await {
                        Ok(out) => {
                            if r.op == RedirOp::OutErr {
                                io.stdout = out.clone();
                                io.stderr = out;
                            } else {
                                set_out(&mut io, r.fd, out);
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                RedirOp::In => match self.open_in(&target, &io).await {
                    Ok(i) => {
                        if r.fd == 0 {
                            io.stdin = i;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                RedirOp::DupOut | RedirOp::DupIn => match target.as_str() {
                    "1" => {
                        let o = io.stdout.clone();
                        set_out(&mut io, r.fd, o);
                        Ok(())
                    }
                    "2" => {
                        let o = io.stderr.clone();
                        set_out(&mut io, r.fd, o);
                        Ok(())
                    }
                    "0" => Ok(()),
                    "-" => {
                        match r.fd {
                            0 => io.stdin = In::new(Source::Empty),
                            fd => set_out(&mut io, fd, Out::null()),
                        }
                        Ok(())
                    }
                    other
                        if r.op == RedirOp::DupOut
                            && r.fd == 1
                            && !other.is_empty()
                            && !other.chars().all(|c| c.is_ascii_digit()) =>
                    {
                        // `>&file` is bash for `&>file`.
                        match self.open_out(other, false, &io).await {
                            Ok(out) => {
                                io.stdout = out.clone();
                                io.stderr = out;
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                    other => Err(format!("{other}: Bad file descriptor")),
                },
            };
            if let Err(msg) = result {
                let _ = io.stderr.print(&format!("bash: line 1: {msg}\n")).await;
                self.last = 1;
                return None;
            }
        }
        Some(io)
    }

    async fn open_out(&self, target: &str, append: bool, io: &Stdio) -> Result<Out, String> {
        let path = commands::resolve(&self.cwd, target);
        match path.as_str() {
            "/dev/null" | "/dev/zero" => Ok(Out::null()),
            "/dev/stdout" => Ok(io.stdout.clone()),
            "/dev/stderr" => Ok(io.stderr.clone()),
            "/dev/full" => Ok(Out::new(Sink::Full)),
            "/dev/sda" => io::disk_writer(&self.machine.disk, 0)
                .await
                .map_err(|e| format!("{target}: {}", io::strerror(&e))),
            p if commands::is_dir(p) => Err(format!("{target}: Is a directory")),
            p if !commands::writable(p) => Err(format!("{target}: No such file or directory")),
            p => {
                if !append {
                    self.machine.vfs.create(p);
                }
                Ok(Out::new(Sink::File(
                    self.machine.vfs.clone(),
                    p.to_string(),
                )))
            }
        }
    }

    async fn open_in(&self, target: &str, io: &Stdio) -> Result<In, String> {
        commands::open_in(&self.machine, &self.cwd, target, io)
            .await
            .map_err(|e| format!("{target}: {e}"))
    }

    /// Expands a word into fields: parameters and substitutions, split on IFS when unquoted.
    async fn expand(&mut self, w: &Word, io: &Stdio) -> Vec<String> {
        let mut fields: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut have = false;
        for part in &w.0 {
            let (text, quoted) = match part {
                Part::Lit { text, quoted } => {
                    if *quoted {
                        have = true;
                    }
                    let text = if !quoted && text.starts_with('~') && current.is_empty() && !have {
                        text.replacen('~', "/root", 1)
                    } else {
                        text.clone()
                    };
                    current.push_str(&text);
                    if !text.is_empty() {
                        have = true;
                    }
                    continue;
                }
                Part::Param { name, quoted } => (self.param(name), *quoted),
                Part::Subst { script, quoted } => (self.substitute(script, io).await, *quoted),
            };
            if quoted {
                current.push_str(&text);
                have = true;
                continue;
            }
            let ifs = self
                .vars
                .get("IFS")
                .cloned()
                .unwrap_or_else(|| " \t\n".into());
            let mut pieces = text.split(|c| ifs.contains(c)).peekable();
            let starts_split = text.starts_with(|c| ifs.contains(c));
            if starts_split && have {
                fields.push(std::mem::take(&mut current));
                have = false;
            }
            let mut first = true;
            while let Some(piece) = pieces.next() {
                if piece.is_empty() {
                    first = false;
                    continue;
                }
                if !first && have {
                    fields.push(std::mem::take(&mut current));
                }
                current.push_str(piece);
                have = true;
                first = false;
                if pieces.peek().is_some() {
                    fields.push(std::mem::take(&mut current));
                    have = false;
                }
            }
        }
        if have {
            fields.push(current);
        }
        fields
    }

    /// Expands a word without splitting (assignment values, redirection targets).
    async fn expand_one(&mut self, w: &Word, io: &Stdio) -> String {
        let mut out = String::new();
        for part in &w.0 {
            match part {
                Part::Lit { text, .. } => out.push_str(text),
                Part::Param { name, .. } => out.push_str(&self.param(name)),
                Part::Subst { script, .. } => {
                    let s = self.substitute(script, io).await;
                    out.push_str(&s);
                }
            }
        }
        out
    }

    fn param(&self, name: &str) -> String {
        match name {
            "?" => self.last.to_string(),
            "$" => "1".into(),
            "#" => "0".into(),
            "0" => "bash".into(),
            "-" => {
                let mut f = String::from("hB");
                if self.errexit {
                    f.push('e');
                }
                f.push('c');
                f
            }
            n if n.chars().all(|c| c.is_ascii_digit()) || n == "@" || n == "*" || n == "!" => {
                String::new()
            }
            n => self.vars.get(n).cloned().unwrap_or_default(),
        }
    }

    fn substitute<'a>(&'a mut self, script: &'a str, io: &'a Stdio) -> BoxFut<'a, String> {
        Box::pin(async move {
            let captured = Arc::new(StdMutex::new(Vec::new()));
            let sub_io = Stdio {
                stdin: io.stdin.clone(),
                stdout: Out::new(Sink::Capture(captured.clone())),
                stderr: io.stderr.clone(),
            };
            let mut sub = self.clone();
            let code = match parse::parse(script) {
                Ok(list) => sub.run_list(&list, &sub_io).await.code(),
                Err(e) => {
                    let _ = io
                        .stderr
                        .print(&format!("bash: command substitution: line 1: {e}\n"))
                        .await;
                    2
                }
            };
            drop(sub_io);
            self.last = code;
            let bytes = captured
                .lock()
                .map(|b| b.clone())
                .unwrap_or_else(|p| p.into_inner().clone());
            let mut s = String::from_utf8_lossy(&bytes).into_owned();
            while s.ends_with('\n') {
                s.pop();
            }
            s
        })
    }
}

fn set_out(io: &mut Stdio, fd: u32, out: Out) {
    match fd {
        1 => io.stdout = out,
        2 => io.stderr = out,
        _ => {}
    }
}
