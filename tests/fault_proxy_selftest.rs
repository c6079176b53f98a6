//! The test fault proxy itself, in front of a real `docker-registry`: requests
//! and bodies (Content-Length, chunked, `Expect: 100-continue`) pass through,
//! and each fault does what it says, the number of times it was injected.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::fault_proxy::{Fault, FaultProxy};
use crate::support::registry::{Auth, RegistryGuard};
use crate::support::{sha256, tool};

/// A parsed answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Bytes announced by Content-Length, if any.
    announced: Option<usize>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Body<'a> {
    None,
    Length(&'a [u8]),
    /// Sent in chunks of this many bytes.
    Chunked(&'a [u8], usize),
}

/// One raw HTTP/1.1 exchange on a fresh connection. `Err` when the connection
/// ended before a status line arrived.
fn raw(addr: &str, method: &str, path: &str, body: Body<'_>) -> Result<Answer, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: fault-proxy-selftest\r\n");
    match body {
        Body::None => {}
        Body::Length(b) => head.push_str(&format!(
            "Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
            b.len()
        )),
        Body::Chunked(..) => head
            .push_str("Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    match body {
        Body::None => {}
        Body::Length(b) => s.write_all(b).map_err(|e| e.to_string())?,
        Body::Chunked(b, n) => {
            for c in b.chunks(n) {
                write!(s, "{:x};ext=1\r\n", c.len()).unwrap();
                s.write_all(c).unwrap();
                s.write_all(b"\r\n").unwrap();
            }
            s.write_all(b"0\r\nX-Trailer: t\r\n\r\n").unwrap();
        }
    }
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.is_empty() {
        return Err("connection closed without an answer".into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).map_err(|e| e.to_string())?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
        announced: None,
    };
    answer.announced = answer.header("content-length").map(|v| v.parse().unwrap());
    if method != "HEAD" {
        // Every answer through the proxy says `Connection: close`: read to EOF.
        let _ = r.read_to_end(&mut answer.body);
    }
    Ok(answer)
}

fn get(addr: &str, path: &str) -> Answer {
    raw(addr, "GET", path, Body::None).unwrap()
}

/// The path part of a `Location` header (absolute or not).
fn location_path(a: &Answer) -> String {
    let loc = a.header("location").expect("Location header");
    match loc.find("://") {
        Some(i) => {
            let rest = &loc[i + 3..];
            rest[rest.find('/').unwrap()..].to_owned()
        }
        None => loc.to_owned(),
    }
}

fn with_param(path: &str, kv: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{kv}")
}

/// Starts an upload session; the path (with query) to PATCH or PUT next.
fn start_upload(addr: &str, repo: &str) -> String {
    let a = raw(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        Body::None,
    )
    .unwrap();
    assert_eq!(a.status, 202, "{a:?}");
    let loc = a.header("location").unwrap();
    assert!(
        loc.starts_with('/') || loc.contains(addr),
        "Location does not go through the proxy: {a:?}"
    );
    location_path(&a)
}

/// Uploads a blob: POST, then a monolithic PUT with a Content-Length body.
fn upload(addr: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let put = with_param(&start_upload(addr, repo), &format!("digest={digest}"));
    let a = raw(addr, "PUT", &put, Body::Length(data)).unwrap();
    assert_eq!(a.status, 201, "{a:?}");
    digest
}

fn blob(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 253) as u8).collect()
}

#[test]
fn fault_proxy_passes_requests_and_injects_a_503_once() {
    let reg = RegistryGuard::start(Auth::None);
    let proxy = FaultProxy::start(&reg.url());
    let addr = proxy.url();

    assert_eq!(get(&addr, "/v2/").status, 200);

    proxy.inject("GET", "/v2/", Fault::Status(503, Some(1)), 1);
    let a = get(&addr, "/v2/");
    assert_eq!(a.status, 503);
    assert_eq!(a.header("retry-after"), Some("1"));
    assert_eq!(a.header("connection"), Some("close"));
    assert!(String::from_utf8_lossy(&a.body).contains("UNAVAILABLE"));
    assert_eq!(proxy.pending_faults(), 0);

    let a = get(&addr, "/v2/");
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    // curl (keep-alive by default) sees the same.
    proxy.inject("*", "/v2/", Fault::Status(500, None), 1);
    let code = |_: ()| {
        tool(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{}/v2/", proxy.http_url()),
            ],
        )
    };
    assert_eq!(code(()), "500");
    assert_eq!(code(()), "200");

    let log: Vec<(String, String, u16)> = proxy.log();
    let want: Vec<(String, String, u16)> = [200, 503, 200, 500, 200]
        .iter()
        .map(|s| ("GET".to_owned(), "/v2/".to_owned(), *s))
        .collect();
    assert_eq!(log, want);

    // Only the requests that were not faulted reached the registry.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let upstream = reg
            .request_log()
            .iter()
            .filter(|e| e.method == "GET" && e.path == "/v2/")
            .count();
        // +1: RegistryGuard's own readiness probe.
        if upstream == 4 || Instant::now() > deadline {
            assert_eq!(upstream, 4, "registry log:\n{}", reg.raw_log());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fault_proxy_forwards_request_bodies_and_upload_sessions() {
    let reg = RegistryGuard::start(Auth::None);
    let proxy = FaultProxy::start(&reg.url());
    let addr = proxy.url();

    // Monolithic PUT, Content-Length body.
    let small = blob(100_000);
    let digest = upload(&addr, "selftest/one", &small);
    let back = get(&addr, &format!("/v2/selftest/one/blobs/{digest}"));
    assert_eq!(back.status, 200);
    assert_eq!(back.body, small);

    // Session upload: POST, chunked PATCH, PUT; the registry's Location
    // headers must keep pointing at the proxy.
    let big = blob(3 * 1024 * 1024 + 17);
    let digest = sha256(&big);
    let session = start_upload(&addr, "selftest/two");
    let a = raw(&addr, "PATCH", &session, Body::Chunked(&big, 65_521)).unwrap();
    assert_eq!(a.status, 202, "{a:?}");
    proxy.inject("PUT", "/blobs/uploads/", Fault::Status(429, Some(1)), 1);
    let put = with_param(&location_path(&a), &format!("digest={digest}"));
    assert_eq!(raw(&addr, "PUT", &put, Body::None).unwrap().status, 429);
    assert_eq!(raw(&addr, "PUT", &put, Body::None).unwrap().status, 201);
    let back = get(&addr, &format!("/v2/selftest/two/blobs/{digest}"));
    assert_eq!(back.body.len(), big.len());
    assert!(back.body == big);

    // curl sends `Expect: 100-continue` for bodies over 1 MiB: a fault answers
    // before the body, a pass-through gets its 100 from the proxy.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    let third = blob(2 * 1024 * 1024 + 5);
    std::fs::write(&file, &third).unwrap();
    let digest = sha256(&third);
    let session = start_upload(&addr, "selftest/three");
    let url = format!(
        "{}{}",
        proxy.http_url(),
        with_param(&session, &format!("digest={digest}"))
    );
    let curl_put = || {
        tool(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                "Expect: 100-continue",
                "--data-binary",
                &format!("@{}", file.display()),
                &url,
            ],
        )
    };
    proxy.inject("PUT", "/selftest/three/", Fault::Status(503, None), 1);
    assert_eq!(curl_put(), "503");
    assert_eq!(curl_put(), "201");
    let back = get(&addr, &format!("/v2/selftest/three/blobs/{digest}"));
    assert!(back.body == third);
}

#[test]
fn fault_proxy_drops_delays_and_truncates() {
    let reg = RegistryGuard::start(Auth::None);
    let proxy = FaultProxy::start(&reg.url());
    let addr = proxy.url();
    let data = blob(50_001);
    let digest = upload(&addr, "selftest/f", &data);
    let path = format!("/v2/selftest/f/blobs/{digest}");

    // A rule for another method or path does not fire.
    proxy.inject(
        "PUT",
        "/manifests/",
        Fault::Delay(Duration::from_millis(200)),
        1,
    );
    proxy.inject("GET", "/no-such-path/", Fault::DropConnection, 1);
    assert_eq!(get(&addr, &path).status, 200);
    assert_eq!(proxy.pending_faults(), 2);
    proxy.clear_faults();

    proxy.inject("GET", "/blobs/", Fault::DropConnection, 1);
    assert!(raw(&addr, "GET", &path, Body::None).is_err());
    assert_eq!(get(&addr, &path).body, data);

    proxy.inject("GET", "/blobs/", Fault::TruncateBody, 1);
    let a = get(&addr, &path);
    assert_eq!(a.status, 200);
    assert_eq!(a.announced, Some(data.len()));
    assert_eq!(a.body.len(), data.len() / 2);
    assert_eq!(a.body[..], data[..data.len() / 2]);

    proxy.inject(
        "HEAD",
        "/blobs/",
        Fault::Delay(Duration::from_millis(400)),
        1,
    );
    let t = Instant::now();
    let a = raw(&addr, "HEAD", &path, Body::None).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert_eq!(a.status, 200);
    assert_eq!(a.announced, Some(data.len()));

    let statuses: Vec<u16> = proxy.log().iter().map(|e| e.2).collect();
    assert_eq!(statuses, vec![202, 201, 200, 0, 200, 200, 200]);
}

#[test]
fn fault_proxy_stops_on_drop() {
    let reg = RegistryGuard::start(Auth::None);
    let proxy = FaultProxy::start(&reg.url());
    let addr = proxy.addr();
    // An idle connection and a request stuck in a long delay.
    let _idle = TcpStream::connect(addr).unwrap();
    proxy.inject("GET", "/v2/", Fault::Delay(Duration::from_secs(600)), 1);
    let stuck = std::thread::spawn(move || raw(&addr.to_string(), "GET", "/v2/", Body::None));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    drop(proxy);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "drop took {:?}",
        t.elapsed()
    );
    assert!(stuck.join().unwrap().is_err());
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

/// Only loopback upstreams.
#[test]
#[should_panic(expected = "only forwards to loopback")]
fn fault_proxy_refuses_non_loopback_upstreams() {
    let _ = FaultProxy::start("192.0.2.1:5000");
}

/// A Go client (skopeo: keep-alive, chunked PATCH uploads) pushes through the
/// proxy, delayed, and then a 503 on the manifest makes it fail.
#[test]
fn fault_proxy_carries_a_skopeo_push() {
    let reg = RegistryGuard::start(Auth::None);
    let proxy = FaultProxy::start(&reg.url());
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout").display().to_string();
    let image = format!("{layout}:t");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/data"), blob(3_000_000)).unwrap();
    tool("umoci", &["init", "--layout", &layout]);
    tool("umoci", &["new", "--image", &image]);
    tool(
        "umoci",
        &[
            "insert",
            "--image",
            &image,
            &rootfs.display().to_string(),
            "/",
        ],
    );

    proxy.inject(
        "PATCH",
        "/blobs/uploads/",
        Fault::Delay(Duration::from_millis(200)),
        1,
    );
    proxy.inject(
        "PUT",
        "/manifests/",
        Fault::Delay(Duration::from_millis(200)),
        1,
    );
    let dest = format!("docker://{}/selftest/skopeo:t", proxy.url());
    tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{image}"),
            &dest,
        ],
    );
    assert_eq!(proxy.pending_faults(), 0);
    let log = proxy.log();
    assert!(
        log.iter().any(|(m, _, s)| m == "PATCH" && *s == 202),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|(m, p, s)| m == "PUT" && p.ends_with("/manifests/t") && *s == 201),
        "{log:#?}"
    );
    let inspect = tool("skopeo", &["inspect", "--raw", "--tls-verify=false", &dest]);
    assert!(inspect.contains("\"layers\""), "{inspect}");

    proxy.inject("PUT", "/manifests/", Fault::Status(503, None), 1);
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{image}"),
            &dest,
        ])
        .output()
        .expect("run skopeo");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("503"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
