//! A fault-injecting HTTP/1.1 proxy for registry tests: sits on a free
//! 127.0.0.1 port in front of a [`super::registry::RegistryGuard`] (or any
//! loopback HTTP server) and forwards requests, except those matched by an
//! injected rule, which get a canned status, a dropped connection, a delay or
//! a truncated response body.
//!
//! Design: one request per connection. The proxy reads the request head,
//! forwards it upstream with `Connection: close`, forwards the body with its
//! own framing (`Content-Length` or chunked), and answers the client with
//! `Connection: close` too, so every client (ureq, curl, ...) opens a fresh
//! connection per request and nothing has to track keep-alive state.
//! `Expect: 100-continue` is answered by the proxy itself (upstream never sees
//! it), and not at all when a status fault answers instead, as a real server
//! that rejects a request early would.
//!
//! `Host` is forwarded unchanged, so the registry's absolute `Location`
//! headers point back at the proxy and upload sessions keep going through it.
//!
//! Only loopback addresses are used. Everything stops on drop: the accept loop
//! exits, open sockets are shut down, delays are cut short, and worker threads
//! are joined (with a bound: a worker that still hangs after 5 s is detached).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connecting to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence on a socket before the exchange is abandoned.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How long drop waits for worker threads before detaching them.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What happens to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and `Retry-After: secs` when given) and a small
    /// registry-style JSON error body; upstream never sees the request.
    Status(u16, Option<u64>),
    /// Read the request, then close the connection without answering.
    DropConnection,
    /// Wait this long, then forward as usual.
    Delay(Duration),
    /// Forward, but send the client only the response head and the first half
    /// of the body bytes (as they were on the wire), then close.
    TruncateBody,
}

/// One line of the proxy's log: method, path (with query) and the status the
/// client got; 0 when it got no answer (a dropped connection). An entry is
/// logged before its answer is sent, so it is there once the client has it.
pub type ProxyLogEntry = (String, String, u16);

struct Rule {
    method: String,
    path: String,
    fault: Fault,
    remaining: usize,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<ProxyLogEntry>,
    /// Open sockets per connection, to shut down on drop.
    sockets: HashMap<u64, Vec<TcpStream>>,
}

struct Shared {
    upstream: SocketAddr,
    stop: AtomicBool,
    next_id: AtomicU64,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first rule with uses left that matches, used once.
    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut st = self.state();
        let rule = st.rules.iter_mut().find(|r| {
            r.remaining > 0
                && (r.method.is_empty() || r.method == "*" || r.method.eq_ignore_ascii_case(method))
                && path.contains(&r.path)
        })?;
        rule.remaining -= 1;
        Some(rule.fault.clone())
    }

    fn log(&self, method: &str, path: &str, status: u16) {
        self.state()
            .log
            .push((method.to_owned(), path.to_owned(), status));
    }

    fn register(&self, id: u64, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            self.state().sockets.entry(id).or_default().push(c);
        }
    }

    /// Sleeps up to `d`, returning early when the proxy stops.
    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        }
    }
}

/// The proxy. See the module docs.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream`
    /// (`"127.0.0.1:PORT"`, as [`super::registry::RegistryGuard::url`] gives).
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("upstream {upstream:?} is not IP:PORT ({e})"));
        assert!(
            upstream.ip().is_loopback(),
            "the fault proxy only forwards to loopback, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        });
        let workers: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (sh, ws) = (shared.clone(), workers.clone());
        let accept = std::thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn(move || accept_loop(listener, sh, ws))
            .expect("spawn accept thread");
        FaultProxy {
            addr,
            shared,
            accept: Some(accept),
            workers,
        }
    }

    /// `127.0.0.1:PORT`, like `RegistryGuard::url`: use it as a registry url.
    pub fn url(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next `times` requests whose method is `method` (`"*"` or `""`: any)
    /// and whose path (with query) contains `path_contains` get `fault`.
    /// Rules are tried in the order they were added; the first one with uses
    /// left wins.
    pub fn inject(&self, method: &str, path_contains: &str, fault: Fault, times: usize) {
        self.shared.state().rules.push(Rule {
            method: method.to_owned(),
            path: path_contains.to_owned(),
            fault,
            remaining: times,
        });
    }

    /// Uses left over all rules (0 once every injected fault has fired).
    pub fn pending_faults(&self) -> usize {
        self.shared.state().rules.iter().map(|r| r.remaining).sum()
    }

    /// Removes every rule.
    pub fn clear_faults(&self) {
        self.shared.state().rules.clear();
    }

    /// Every request so far, in the order they were answered: (method, path
    /// with query, status the client got; 0 = no answer, 502 = upstream down).
    /// Requests still waiting (a delay, a slow upstream) are not in it yet.
    pub fn log(&self) -> Vec<ProxyLogEntry> {
        self.shared.state().log.clone()
    }

    /// Empties [`Self::log`].
    pub fn clear_log(&self) {
        self.shared.state().log.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        // Unblock workers stuck in reads or writes.
        for sockets in self.shared.state().sockets.values() {
            for s in sockets {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        let deadline = Instant::now() + JOIN_TIMEOUT;
        for w in workers {
            while !w.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if w.is_finished() {
                let _ = w.join();
            } // else: detached; its sockets are shut down, so it ends soon.
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        // Registered before the worker starts, so drop (which joins this loop
        // first) always finds it.
        shared.register(id, &conn);
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fault-proxy-conn-{id}"))
            .spawn(move || {
                let _ = handle(&sh, id, conn);
                sh.state().sockets.remove(&id);
            });
        if let Ok(h) = spawned {
            let mut ws = workers.lock().unwrap_or_else(|p| p.into_inner());
            ws.retain(|w| !w.is_finished());
            ws.push(h);
        } else {
            shared.state().sockets.remove(&id);
        }
    }
}

/// A request or response head.
struct Head {
    /// Request line or status line, without CRLF.
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_chunked(&self) -> bool {
        self.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    }

    fn content_length(&self) -> io::Result<Option<u64>> {
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("bad Content-Length {v:?}"))),
        }
    }

    /// The head as sent on, hop-by-hop connection headers replaced by
    /// `Connection: close`, and `drop` headers left out.
    fn encode(&self, drop: &[&str]) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            let hop = ["connection", "keep-alive", "proxy-connection"]
                .iter()
                .chain(drop)
                .any(|h| k.eq_ignore_ascii_case(h));
            if !hop {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads a head; `None` when the peer closed before sending anything.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut start = None;
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = r
            .by_ref()
            .take(MAX_HEAD as u64)
            .read_until(b'\n', &mut line)?;
        total += n;
        if n == 0 {
            return if start.is_none() && headers.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if total > MAX_HEAD {
            return Err(bad("head too large".into()));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        match &start {
            None if line.is_empty() => continue, // stray CRLF before a request
            None => start = Some(line.to_owned()),
            Some(_) if line.is_empty() => break,
            Some(_) => {
                let (k, v) = line
                    .split_once(':')
                    .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
    }
    Ok(Some(Head {
        start: start.unwrap_or_default(),
        headers,
    }))
}

/// How a body is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilEof,
}

/// Copies one body with its framing (chunk lines and trailers included) from
/// `r` to `w`.
fn copy_body(r: &mut impl BufRead, framing: Framing, w: &mut impl Write) -> io::Result<()> {
    match framing {
        Framing::None => Ok(()),
        Framing::Length(n) => {
            let copied = io::copy(&mut r.take(n), w)?;
            if copied == n {
                Ok(())
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            }
        }
        Framing::UntilEof => io::copy(r, w).map(|_| ()),
        Framing::Chunked => loop {
            let line = read_line(r)?;
            w.write_all(&line)?;
            let text = String::from_utf8_lossy(&line);
            let hex = text.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(hex, 16)
                .map_err(|_| bad(format!("bad chunk size line {text:?}")))?;
            if size == 0 {
                // Trailers, up to and including the empty line.
                loop {
                    let t = read_line(r)?;
                    w.write_all(&t)?;
                    if t == b"\r\n" || t == b"\n" {
                        return Ok(());
                    }
                }
            }
            copy_body(r, Framing::Length(size + 2), w)?; // data + CRLF
        },
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.by_ref().take(8192).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

fn request_framing(h: &Head) -> io::Result<Framing> {
    Ok(if h.is_chunked() {
        Framing::Chunked
    } else {
        match h.content_length()? {
            Some(n) => Framing::Length(n),
            None => Framing::None,
        }
    })
}

fn response_framing(method: &str, status: u16, h: &Head) -> io::Result<Framing> {
    Ok(
        if method.eq_ignore_ascii_case("HEAD") || status < 200 || status == 204 || status == 304 {
            Framing::None
        } else if h.is_chunked() {
            Framing::Chunked
        } else {
            match h.content_length()? {
                Some(n) => Framing::Length(n),
                None => Framing::UntilEof,
            }
        },
    )
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

fn write_status(w: &mut TcpStream, code: u16, retry_after: Option<u64>) -> io::Result<()> {
    let error = match code {
        429 => "TOOMANYREQUESTS",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    };
    let body = format!(
        r#"{{"errors":[{{"code":"{error}","message":"injected by the test fault proxy","detail":null}}]}}"#
    );
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        reason(code),
        body.len()
    );
    if let Some(s) = retry_after {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body.as_bytes())?;
    w.flush()
}

/// Half-closes, then briefly drains what the client still sends, so closing
/// does not turn into a reset that could eat the answer.
fn close_gently(s: &TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 8192];
    let mut r = s;
    while Instant::now() < deadline {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = s.shutdown(Shutdown::Both);
}

fn handle(shared: &Shared, id: u64, client: TcpStream) -> io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    client.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = client.set_nodelay(true);
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let Some(req) = read_head(&mut from_client)? else {
        return Ok(());
    };
    if shared.stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let mut parts = req.start.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let expect_continue = req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let framing = request_framing(&req)?;

    let fault = shared.take_fault(&method, &path);
    match &fault {
        Some(Fault::Status(code, retry_after)) => {
            // A client that asked to continue has not sent its body and, seeing
            // a final status, will not.
            if !expect_continue {
                copy_body(&mut from_client, framing, &mut io::sink())?;
            }
            shared.log(&method, &path, *code);
            write_status(&mut to_client, *code, *retry_after)?;
            close_gently(&to_client);
            return Ok(());
        }
        Some(Fault::DropConnection) => {
            if !expect_continue {
                let _ = copy_body(&mut from_client, framing, &mut io::sink());
            }
            shared.log(&method, &path, 0);
            let _ = to_client.shutdown(Shutdown::Both);
            return Ok(());
        }
        Some(Fault::Delay(d)) => {
            shared.sleep(*d);
            if shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
        Some(Fault::TruncateBody) | None => {}
    }

    let upstream = match TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(_) => {
            if !expect_continue {
                let _ = copy_body(&mut from_client, framing, &mut io::sink());
            }
            shared.log(&method, &path, 502);
            write_status(&mut to_client, 502, None)?;
            close_gently(&to_client);
            return Ok(());
        }
    };
    shared.register(id, &upstream);
    // Drop sets `stop` before it shuts registered sockets down: either it saw
    // this one, or we see `stop` here.
    if shared.stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    upstream.set_read_timeout(Some(IO_TIMEOUT))?;
    upstream.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = upstream.set_nodelay(true);
    let mut to_upstream = io::BufWriter::new(upstream.try_clone()?);
    to_upstream.write_all(&req.encode(&["expect"]))?;
    if expect_continue {
        to_client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        to_client.flush()?;
    }
    copy_body(&mut from_client, framing, &mut to_upstream)?;
    to_upstream.flush()?;
    drop(to_upstream);

    let mut from_upstream = BufReader::new(upstream);
    let (resp, status) = loop {
        let Some(resp) = read_head(&mut from_upstream)? else {
            // Upstream closed without answering: tell the client.
            shared.log(&method, &path, 502);
            write_status(&mut to_client, 502, None)?;
            close_gently(&to_client);
            return Ok(());
        };
        let status: u16 = resp
            .start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {:?}", resp.start)))?;
        if (100..200).contains(&status) {
            continue; // interim answers (we never forward Expect)
        }
        break (resp, status);
    };
    let framing = response_framing(&method, status, &resp)?;
    if fault == Some(Fault::TruncateBody) {
        let mut body = Vec::new();
        copy_body(&mut from_upstream, framing, &mut body)?;
        shared.log(&method, &path, status);
        to_client.write_all(&resp.encode(&[]))?;
        to_client.write_all(&body[..body.len() / 2])?;
        to_client.flush()?;
        let _ = to_client.shutdown(Shutdown::Both);
        return Ok(());
    }
    shared.log(&method, &path, status);
    let mut out = io::BufWriter::new(to_client.try_clone()?);
    out.write_all(&resp.encode(&[]))?;
    out.flush()?;
    copy_body(&mut from_upstream, framing, &mut out)?;
    out.flush()?;
    drop(out);
    close_gently(&to_client);
    Ok(())
}
