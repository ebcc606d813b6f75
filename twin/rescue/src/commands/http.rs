//! `wget` (GNU Wget 1.21) and `curl` (7.88) over plain HTTP/1.1, streaming the body.
//!
//! The twin's network is loopback only: a URL whose host is not a `127.0.0.0/8` address or
//! `localhost` fails as a DNS failure would (`wget: unable to resolve host address`, status 4;
//! `curl: (6) Could not resolve host`), so nothing ever leaves the machine; `https://` fails the
//! TLS handshake (the twin's services speak plain HTTP). Connection refused, HTTP errors and a
//! body cut short fail with the tools' own messages and statuses (wget 4 and 8; curl 7, 22 with
//! `-f`, 18). Redirects are followed by wget always and by curl with `-L`, up to 20.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{Ctx, resolve, say};
use crate::io::{self, Out, Sink, Stdio};

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(s: &str) -> Option<Url> {
    let (scheme, rest) = match s.split_once("://") {
        Some((sc, r)) => (sc.to_ascii_lowercase(), r),
        None => ("http".to_string(), s),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let authority = authority
        .rsplit_once('@')
        .map(|(_, a)| a)
        .unwrap_or(authority);
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h.to_string(), p.parse().ok()?),
        _ => (authority.to_string(), default_port),
    };
    if host.is_empty() {
        return None;
    }
    Some(Url {
        scheme,
        host,
        port,
        path,
    })
}

enum FetchError {
    /// The host is not on the twin's loopback network.
    Resolve(String),
    /// TCP connect failed.
    Connect(std::io::Error),
    /// `https://` to a plain-HTTP service.
    Tls,
    /// Protocol error or a connection closed mid-response.
    Protocol(String),
}

fn loopback_addr(url: &Url) -> Result<SocketAddr, FetchError> {
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        match host.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => ip,
            _ => return Err(FetchError::Resolve(url.host.clone())),
        }
    };
    Ok(SocketAddr::new(ip, url.port))
}

async fn request(
    method: &str,
    url: &Url,
    agent: &str,
) -> Result<http::Response<Incoming>, FetchError> {
    let addr = loopback_addr(url)?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(FetchError::Connect)?;
    if url.scheme == "https" {
        return Err(FetchError::Tls);
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| FetchError::Protocol(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let host = if url.port == 80 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let req = http::Request::builder()
        .method(method)
        .uri(&url.path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, agent)
        .header(http::header::ACCEPT, "*/*")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| FetchError::Protocol(e.to_string()))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| FetchError::Protocol(e.to_string()))
}

fn join_location(base: &Url, loc: &str) -> Option<Url> {
    if loc.contains("://") {
        return parse_url(loc);
    }
    let mut u = base.clone();
    if loc.starts_with('/') {
        u.path = loc.to_string();
    } else {
        let dir = base.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        u.path = format!("{dir}/{loc}");
    }
    Some(u)
}

enum BodyError {
    Read(String),
    Write(std::io::Error),
}

/// Streams a response body to `out`; the number of bytes written.
async fn stream_body(resp: http::Response<Incoming>, out: &Out) -> Result<u64, (u64, BodyError)> {
    let mut body = resp.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| (total, BodyError::Read(e.to_string())))?;
        if let Ok(data) = frame.into_data() {
            out.write_all(&data)
                .await
                .map_err(|e| (total, BodyError::Write(e)))?;
            total += data.len() as u64;
        }
    }
    out.flush()
        .await
        .map_err(|e| (total, BodyError::Write(e)))?;
    Ok(total)
}

fn reason(status: http::StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("")
}

/// Runs `wget`.
pub async fn wget(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let mut quiet = false;
    let mut output: Option<String> = None;
    let mut spider = false;
    let mut urls = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some(v) = a.strip_prefix("--output-document=") {
            output = Some(v.to_string());
        } else if a == "--output-document" {
            i += 1;
            output = args.get(i).cloned();
        } else if a == "--quiet" {
            quiet = true;
        } else if a == "--spider" {
            spider = true;
        } else if a.starts_with("--") {
            // --no-verbose, --tries=N, --timeout=N, --progress=..., --no-check-certificate, ...
        } else if a.starts_with('-') && a.len() > 1 {
            let cs: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < cs.len() {
                match cs[j] {
                    'q' => quiet = true,
                    'O' | 'o' | 't' | 'T' | 'U' | 'P' | 'w' | 'a' => {
                        let rest: String = cs[j + 1..].iter().collect();
                        let value = if rest.is_empty() {
                            i += 1;
                            args.get(i).cloned()
                        } else {
                            Some(rest)
                        };
                        if cs[j] == 'O' {
                            output = value;
                        }
                        break;
                    }
                    'n' if cs.get(j + 1) == Some(&'v') => j += 1,
                    'c' | 'N' | 'S' | 'v' | '4' | 'r' | 'k' | 'x' => {}
                    other => {
                        say(io, &format!("wget: invalid option -- '{other}'\nUsage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n")).await;
                        return 2;
                    }
                }
                j += 1;
            }
        } else {
            urls.push(a.clone());
        }
        i += 1;
    }
    if urls.is_empty() {
        say(io, "wget: missing URL\nUsage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n").await;
        return 1;
    }
    let mut code = 0;
    for raw in urls {
        let c = wget_one(ctx, &raw, quiet, spider, output.as_deref(), io).await;
        if c != 0 {
            code = c;
        }
    }
    code
}

async fn wget_one(
    ctx: &Ctx,
    raw: &str,
    quiet: bool,
    spider: bool,
    output: Option<&str>,
    io: &Stdio,
) -> i32 {
    let note = |m: String| async move {
        if !quiet {
            say(io, &m).await;
        }
    };
    let Some(mut url) = parse_url(raw) else {
        say(
            io,
            &format!("{raw}: Invalid URL {raw}: Unsupported scheme\n"),
        )
        .await;
        return 1;
    };
    let mut redirects = 0;
    let resp = loop {
        note(format!("Connecting to {}:{}... ", url.host, url.port)).await;
        let method = if spider { "HEAD" } else { "GET" };
        match request(method, &url, "Wget/1.21.3").await {
            Err(FetchError::Resolve(h)) => {
                note(String::new()).await;
                say(io, &format!("wget: unable to resolve host address ‘{h}’\n")).await;
                return 4;
            }
            Err(FetchError::Connect(e)) => {
                note(format!("failed: {}.\n", connect_text(&e))).await;
                return 4;
            }
            Err(FetchError::Tls) => {
                note("connected.\n".into()).await;
                say(io, "Unable to establish SSL connection.\n").await;
                return 4;
            }
            Err(FetchError::Protocol(e)) => {
                note(format!("connected.\nRead error ({e}) in headers.\n")).await;
                return 4;
            }
            Ok(resp) => {
                let status = resp.status();
                note(format!(
                    "connected.\nHTTP request sent, awaiting response... {} {}\n",
                    status.as_u16(),
                    reason(status)
                ))
                .await;
                if status.is_redirection()
                    && let Some(loc) = resp
                        .headers()
                        .get(http::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                {
                    redirects += 1;
                    if redirects > 20 {
                        say(io, "20 redirections exceeded.\n").await;
                        return 8;
                    }
                    match join_location(&url, loc) {
                        Some(u) => {
                            note(format!("Location: {loc} [following]\n")).await;
                            url = u;
                            continue;
                        }
                        None => return 8,
                    }
                }
                if !status.is_success() {
                    note(format!(
                        "{} ERROR {}: {}.\n\n",
                        "",
                        status.as_u16(),
                        reason(status)
                    ))
                    .await;
                    return 8;
                }
                break resp;
            }
        }
    };
    if spider {
        return 0;
    }
    let expected = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let target = match output {
        Some(o) => o.to_string(),
        None => {
            let base = url.path.rsplit('/').next().unwrap_or("");
            let base = base.split('?').next().unwrap_or("");
            if base.is_empty() {
                "index.html".to_string()
            } else {
                base.to_string()
            }
        }
    };
    let out = if target == "-" {
        io.stdout.clone()
    } else {
        let p = resolve(&ctx.cwd, &target);
        if p == "/dev/null" {
            Out::null()
        } else if p == "/dev/sda" {
            match io::disk_writer(&ctx.machine.disk, 0).await {
                Ok(o) => o,
                Err(e) => {
                    say(io, &format!("{target}: {}\n", io::strerror(&e))).await;
                    return 3;
                }
            }
        } else if super::writable(&p) {
            ctx.machine.vfs.create(&p);
            Out::new(Sink::File(ctx.machine.vfs.clone(), p))
        } else {
            say(io, &format!("{target}: No such file or directory\n")).await;
            return 3;
        }
    };
    match stream_body(resp, &out).await {
        Ok(n) => {
            if let Some(len) = expected
                && n < len
            {
                note(format!(
                    "Read error at byte {n}/{len} (Connection reset by peer).\n"
                ))
                .await;
                return 4;
            }
            note(format!(
                "Saving to: ‘{target}’\n\n‘{target}’ saved [{n}]\n\n"
            ))
            .await;
            0
        }
        Err((n, BodyError::Read(e))) => {
            note(format!("Read error at byte {n} ({e}).\n")).await;
            4
        }
        Err((_, BodyError::Write(e))) => {
            if io::is_broken_pipe(&e) {
                return 141;
            }
            say(
                io,
                &format!("Cannot write to ‘{target}’ ({}).\n", io::strerror(&e)),
            )
            .await;
            3
        }
    }
}

fn connect_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "Connection refused".into(),
        std::io::ErrorKind::TimedOut => "Connection timed out".into(),
        _ => e.to_string(),
    }
}

/// Runs `curl`.
pub async fn curl(ctx: &Ctx, args: &[String], io: &Stdio) -> i32 {
    let mut fail = false;
    let mut silent = false;
    let mut show_error = false;
    let mut follow = false;
    let mut head = false;
    let mut output: Option<String> = None;
    let mut remote_name = false;
    let mut urls = Vec::new();
    let mut i = 0;
    let takes_value = |c: char| "oHwXdeAruTmCy".contains(c);
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "--fail" | "--fail-with-body" => fail = true,
            "--silent" => silent = true,
            "--show-error" => show_error = true,
            "--location" => follow = true,
            "--head" => head = true,
            "--remote-name" => remote_name = true,
            "--output" => {
                i += 1;
                output = args.get(i).cloned();
            }
            "--retry" | "--retry-delay" | "--retry-max-time" | "--connect-timeout"
            | "--max-time" | "--header" | "--user-agent" | "--write-out" | "--request" => i += 1,
            s if s.starts_with("--") => {}
            s if s.starts_with('-') && s.len() > 1 => {
                let cs: Vec<char> = s[1..].chars().collect();
                let mut j = 0;
                while j < cs.len() {
                    match cs[j] {
                        'f' => fail = true,
                        's' => silent = true,
                        'S' => show_error = true,
                        'L' => follow = true,
                        'I' => head = true,
                        'O' => remote_name = true,
                        'k' | 'v' | '#' | 'g' | 'N' | '4' | 'q' => {}
                        c if takes_value(c) => {
                            let rest: String = cs[j + 1..].iter().collect();
                            let value = if rest.is_empty() {
                                i += 1;
                                args.get(i).cloned()
                            } else {
                                Some(rest)
                            };
                            if c == 'o' {
                                output = value;
                            }
                            break;
                        }
                        other => {
                            say(io, &format!("curl: option -{other}: is unknown\ncurl: try 'curl --help' or 'curl --manual' for more information\n")).await;
                            return 2;
                        }
                    }
                    j += 1;
                }
            }
            _ => urls.push(a.clone()),
        }
        i += 1;
    }
    let errors = !silent || show_error;
    let complain = |code: i32, msg: String| async move {
        if errors {
            say(io, &format!("curl: ({code}) {msg}\n")).await;
        }
        code
    };
    let Some(raw) = urls.first() else {
        say(io, "curl: no URL specified!\ncurl: try 'curl --help' or 'curl --manual' for more information\n").await;
        return 2;
    };
    let Some(mut url) = parse_url(raw) else {
        return complain(3, "URL using bad/illegal format or missing URL".to_string()).await;
    };
    if url.scheme != "http" && url.scheme != "https" {
        return complain(
            1,
            format!(
                "Protocol \"{}\" not supported or disabled in libcurl",
                url.scheme
            ),
        )
        .await;
    }
    let mut redirects = 0;
    let resp = loop {
        let method = if head { "HEAD" } else { "GET" };
        match request(method, &url, "curl/7.88.1").await {
            Err(FetchError::Resolve(h)) => {
                return complain(6, format!("Could not resolve host: {h}")).await;
            }
            Err(FetchError::Connect(e)) => {
                return complain(
                    7,
                    format!(
                        "Failed to connect to {} port {} after 0 ms: {}",
                        url.host,
                        url.port,
                        if e.kind() == std::io::ErrorKind::ConnectionRefused {
                            "Couldn't connect to server".to_string()
                        } else {
                            e.to_string()
                        }
                    ),
                )
                .await;
            }
            Err(FetchError::Tls) => {
                return complain(
                    35,
                    "OpenSSL/3.0.17: error:0A00010B:SSL routines::wrong version number".into(),
                )
                .await;
            }
            Err(FetchError::Protocol(e)) => {
                return complain(56, format!("Recv failure: {e}")).await;
            }
            Ok(resp) => {
                let status = resp.status();
                if follow
                    && status.is_redirection()
                    && let Some(loc) = resp
                        .headers()
                        .get(http::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                {
                    redirects += 1;
                    if redirects > 20 {
                        return complain(47, "Maximum (20) redirects followed".into()).await;
                    }
                    match join_location(&url, loc) {
                        Some(u) => {
                            url = u;
                            continue;
                        }
                        None => {
                            return complain(
                                3,
                                "URL using bad/illegal format or missing URL".into(),
                            )
                            .await;
                        }
                    }
                }
                if fail && status.as_u16() >= 400 {
                    return complain(
                        22,
                        format!("The requested URL returned error: {}", status.as_u16()),
                    )
                    .await;
                }
                break resp;
            }
        }
    };
    let expected = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if head {
        let mut s = format!(
            "HTTP/1.1 {} {}\r\n",
            resp.status().as_u16(),
            reason(resp.status())
        );
        for (k, v) in resp.headers() {
            s.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
        }
        s.push_str("\r\n");
        return match io.stdout.print(&s).await {
            Ok(()) => 0,
            Err(e) => super::write_failed(io, "curl", &e).await,
        };
    }
    let target = match (&output, remote_name) {
        (Some(o), _) => Some(o.clone()),
        (None, true) => Some(url.path.rsplit('/').next().unwrap_or("").to_string()),
        (None, false) => None,
    };
    let out = match target.as_deref() {
        None | Some("-") => io.stdout.clone(),
        Some(t) => {
            let p = resolve(&ctx.cwd, t);
            if p == "/dev/null" {
                Out::null()
            } else if p == "/dev/sda" {
                match io::disk_writer(&ctx.machine.disk, 0).await {
                    Ok(o) => o,
                    Err(e) => {
                        return complain(
                            23,
                            format!(
                                "Failure writing output to destination: {}",
                                io::strerror(&e)
                            ),
                        )
                        .await;
                    }
                }
            } else if super::writable(&p) {
                ctx.machine.vfs.create(&p);
                Out::new(Sink::File(ctx.machine.vfs.clone(), p))
            } else {
                return complain(
                    23,
                    "Failure writing output to destination, passed 0 returned 4294967295"
                        .to_string(),
                )
                .await;
            }
        }
    };
    match stream_body(resp, &out).await {
        Ok(n) => match expected {
            Some(len) if n < len => {
                complain(
                    18,
                    format!("transfer closed with {} bytes remaining to read", len - n),
                )
                .await
            }
            _ => 0,
        },
        Err((n, BodyError::Read(_))) => match expected {
            Some(len) => {
                complain(
                    18,
                    format!(
                        "transfer closed with {} bytes remaining to read",
                        len.saturating_sub(n)
                    ),
                )
                .await
            }
            None => complain(56, "Recv failure: Connection reset by peer".into()).await,
        },
        Err((_, BodyError::Write(e))) => {
            if io::is_broken_pipe(&e) {
                return complain(23, "Failure writing output to destination".into()).await;
            }
            complain(
                23,
                format!(
                    "Failure writing output to destination: {}",
                    io::strerror(&e)
                ),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/image/a/v1/hcloud-amd64.raw.xz"),
            Some(Url {
                scheme: "http".into(),
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/image/a/v1/hcloud-amd64.raw.xz".into()
            })
        );
        let u = parse_url("https://factory.talos.dev/image/x").unwrap();
        assert_eq!(u.port, 443);
        assert!(matches!(loopback_addr(&u), Err(FetchError::Resolve(_))));
        assert!(loopback_addr(&parse_url("http://localhost/").unwrap()).is_ok());
        assert!(matches!(
            loopback_addr(&parse_url("http://10.0.0.1/").unwrap()),
            Err(FetchError::Resolve(_))
        ));
    }
}
