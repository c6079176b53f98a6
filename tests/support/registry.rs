//! A real Debian `docker-registry` for tests, on a free loopback port, with
//! its access log captured so tests can count requests. Optional htpasswd
//! basic auth, or token auth backed by a tiny in-process token issuer that
//! signs ES256 JWTs with a throwaway key (its certificate is the registry's
//! `rootcertbundle`, and goes in the JWT header's `x5c`).
//!
//! Only 127.0.0.1 is ever used. The registry process is killed on drop.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const TOKEN_SERVICE: &str = "imgraph-test-registry";
pub const TOKEN_ISSUER: &str = "imgraph-test-issuer";

/// How the registry authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// HTTP basic, checked against an `htpasswd -Bbn` file.
    Htpasswd {
        user: String,
        pass: String,
    },
    /// Bearer tokens from the test issuer, which wants these basic credentials
    /// (or `pass` as an OAuth2 refresh token).
    Token {
        user: String,
        pass: String,
    },
}

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub method: String,
    /// Path and query, as the client sent it.
    pub path: String,
    pub status: u16,
}

impl LogEntry {
    /// A request that writes blob data (upload start, chunk, finish or mount).
    pub fn is_blob_write(&self) -> bool {
        self.path.contains("/blobs/") && matches!(self.method.as_str(), "POST" | "PATCH" | "PUT")
    }
}

pub struct RegistryGuard {
    dir: tempfile::TempDir,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Mutex<Option<Child>>,
    issuer: Option<TokenIssuer>,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

impl RegistryGuard {
    /// Start a registry and wait (up to 20 s) until `GET /v2/` answers.
    pub fn start(auth: Auth) -> Self {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: apt-get install docker-registry"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).unwrap();
        let mut auth_yaml = String::new();
        let mut issuer = None;
        match &auth {
            Auth::None => {}
            Auth::Htpasswd { user, pass } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .expect("htpasswd (apt-get install apache2-utils)");
                assert!(out.status.success(), "htpasswd failed");
                let file = dir.path().join("htpasswd");
                fs::write(&file, &out.stdout).unwrap();
                auth_yaml = format!(
                    "auth:\n  htpasswd:\n    realm: imgraph-test\n    path: {}\n",
                    file.display()
                );
            }
            Auth::Token { user, pass } => {
                let t = TokenIssuer::start(user.clone(), pass.clone());
                let bundle = dir.path().join("token-ca.pem");
                fs::write(&bundle, &t.cert_pem).unwrap();
                auth_yaml = format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    t.port,
                    bundle.display()
                );
                issuer = Some(t);
            }
        }
        let config = dir.path().join("config.yml");
        let yaml = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: imgraph-test-secret\n\
             {auth_yaml}",
            storage.display()
        );
        fs::write(&config, yaml).unwrap();
        let log = dir.path().join("registry.log");
        let guard = RegistryGuard {
            dir,
            port,
            config,
            log,
            child: Mutex::new(None),
            issuer,
        };
        guard.spawn();
        guard
    }

    fn spawn(&self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = http_status(self.port, "GET", "/v2/") {
                assert!(status == 200 || status == 401, "GET /v2/ answered {status}");
                return;
            }
            if let Some(exit) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
            {
                panic!(
                    "docker-registry exited with {exit} before serving; log:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on 127.0.0.1:{} within 20 s; log:\n{}",
                self.port,
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's storage root (to inspect or corrupt).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The requests that wrote something (POST, PUT, PATCH, DELETE), as
    /// `METHOD path`, in order.
    pub fn writes(&self) -> Vec<String> {
        self.request_log()
            .into_iter()
            .filter(|e| matches!(e.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
            .map(|e| format!("{} {}", e.method, e.path))
            .collect()
    }

    /// Every request the registry logged so far (all runs of it), in order.
    pub fn request_log(&self) -> Vec<LogEntry> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter_map(parse_access_line).collect()
    }

    /// Clear what [`Self::request_log`] returns.
    pub fn clear_log(&self) {
        fs::write(&self.log, "").unwrap();
    }

    /// The raw registry output, for failure messages.
    pub fn raw_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL the registry (storage stays).
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill if running, then start again on the same port and storage.
    pub fn restart(&self) {
        self.kill();
        self.spawn();
    }

    /// Requests the token issuer answered (0 without token auth).
    pub fn token_requests(&self) -> usize {
        self.issuer
            .as_ref()
            .map_or(0, |t| t.hits.load(Ordering::SeqCst))
    }

    /// The token issuer's address, with token auth.
    pub fn token_url(&self) -> Option<String> {
        self.issuer
            .as_ref()
            .map(|t| format!("127.0.0.1:{}", t.port))
    }
}

impl Drop for RegistryGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 401 87 "" "agent"` -> entry.
fn parse_access_line(line: &str) -> Option<LogEntry> {
    let start = line.find("] \"")? + 3;
    let rest = &line[start..];
    let end = rest.find('"')?;
    let mut request = rest[..end].split(' ');
    let method = request.next()?.to_owned();
    let path = request.next()?.to_owned();
    if !request.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
    Some(LogEntry {
        method,
        path,
        status,
    })
}

/// Status of a plain HTTP/1.0 request to 127.0.0.1:port, or None if nothing answers.
fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A token server on 127.0.0.1: `GET /token?service=&scope=` with basic auth,
/// or `POST /token` with `grant_type=refresh_token`.
struct TokenIssuer {
    port: u16,
    cert_pem: String,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Signer {
    key: ring::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
    user: String,
    pass: String,
    serial: AtomicUsize,
}

impl TokenIssuer {
    fn start(user: String, pass: String) -> Self {
        let certified =
            rcgen::generate_simple_self_signed(vec!["imgraph-test-token-issuer".to_owned()])
                .unwrap();
        let cert_der = certified.cert.der().to_vec();
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &certified.signing_key.serialize_der(),
            &rng,
        )
        .unwrap();
        let b64 = STANDARD.encode(&cert_der);
        let mut cert_pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            cert_pem.push_str(std::str::from_utf8(chunk).unwrap());
            cert_pem.push('\n');
        }
        cert_pem.push_str("-----END CERTIFICATE-----\n");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let signer = Signer {
            key,
            cert_der,
            user,
            pass,
            serial: AtomicUsize::new(0),
        };
        let (h, st) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                h.fetch_add(1, Ordering::SeqCst);
                let _ = serve_token(conn, &signer);
            }
        });
        TokenIssuer {
            port,
            cert_pem,
            hits,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                let h = u8::from_str_radix(hex, 16).unwrap_or(b'?');
                out.push(h);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn serve_token(conn: TcpStream, signer: &Signer) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params = parse_form(query);
    if method == "POST" {
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        params.extend(parse_form(&String::from_utf8_lossy(&body)));
    }
    let param = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.clone())
    };
    let expected_basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", signer.user, signer.pass))
    );
    let authorized = match method {
        "GET" => headers.get("authorization") == Some(&expected_basic),
        "POST" => {
            param("grant_type").as_deref() == Some("refresh_token")
                && param("refresh_token").as_deref() == Some(signer.pass.as_str())
        }
        _ => false,
    };
    let mut conn = conn;
    if path != "/token" || !authorized {
        let body = r#"{"details":"incorrect username or password"}"#;
        write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let _ = conn.shutdown(Shutdown::Both);
        return Ok(());
    }
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let token = signer.sign(
        &scopes,
        param("service").as_deref().unwrap_or(TOKEN_SERVICE),
    );
    let body = format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#);
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let _ = conn.shutdown(Shutdown::Both);
    Ok(())
}

impl Signer {
    /// An ES256 JWT granting every requested action.
    fn sign(&self, scopes: &[String], service: &str) -> String {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                let (rest, actions) = s.rsplit_once(':')?;
                let (kind, name) = rest.split_once(':')?;
                Some(serde_json::json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER,
            "sub": self.user,
            "aud": service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("imgraph-test-{}", self.serial.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let sig = self.key.sign(&rng, signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_access_lines() {
        let l = r#"127.0.0.1 - - [30/Nov/2025:19:25:00 +0000] "PATCH /v2/a/blobs/uploads/x?_state=y HTTP/1.1" 202 0 "" "imgraph/0.1""#;
        assert_eq!(
            parse_access_line(l),
            Some(LogEntry {
                method: "PATCH".into(),
                path: "/v2/a/blobs/uploads/x?_state=y".into(),
                status: 202
            })
        );
        assert_eq!(parse_access_line(r#"time="x" level=info msg="y""#), None);
    }

    #[test]
    fn decodes_forms() {
        assert_eq!(
            parse_form("scope=repository%3Aa%3Apull%2Cpush&x=a+b"),
            vec![
                ("scope".into(), "repository:a:pull,push".into()),
                ("x".into(), "a b".into())
            ]
        );
    }
}
