//! A real, signed apt repository for the Debian tests, built with Debian's own
//! tools and served on 127.0.0.1.
//!
//! Packages are made with `dpkg-deb --build`, indexes and Release with
//! `apt-ftparchive`, and `InRelease` is signed with `gpg --clearsign` by a
//! throw-away key whose public half is the test keyring. A small std::net HTTP/1.1
//! server (keep-alive) serves the folder, logs every request, and can be told to
//! 404 a path or to die in the middle of a body.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A throw-away OpenPGP key in its own `GNUPGHOME`.
pub struct Gpg {
    home: tempfile::TempDir,
    /// gpg's `--faked-system-time`, for a key that has already expired.
    faked_time: Option<&'static str>,
    /// Primary-key fingerprint, 40 uppercase hex digits.
    pub fingerprint: String,
}

impl Gpg {
    /// Generates an ed25519 signing key named `name`.
    pub fn new(name: &str) -> Gpg {
        Self::generate(name, None, "never")
    }

    /// A key made on 2020-01-01 that expired a day later; it signs as of
    /// 2020-01-01 12:00 UTC (gpg refuses to sign with an expired key otherwise).
    pub fn expired(name: &str) -> Gpg {
        Self::generate(name, Some("20200101T120000!"), "1d")
    }

    fn generate(name: &str, faked_time: Option<&'static str>, expire: &str) -> Gpg {
        // gpg-agent's socket path must stay short: a temp dir under /tmp.
        let home = tempfile::Builder::new()
            .prefix("gpg-")
            .tempdir_in("/tmp")
            .expect("gpg home");
        let mut g = Gpg {
            home,
            faked_time,
            fingerprint: String::new(),
        };
        g.run(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("{name} <{name}@imgraph.invalid>"),
            "ed25519",
            "sign",
            expire,
        ]);
        let listing = g.run(&["--with-colons", "--list-keys"]);
        let fingerprint = String::from_utf8_lossy(&listing)
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| f.len() == 40))
            .expect("gpg lists the new key's fingerprint")
            .to_string();
        g.fingerprint = fingerprint;
        g
    }

    /// The long key id (last 16 hex digits of the fingerprint), as signatures name it.
    pub fn key_id(&self) -> &str {
        &self.fingerprint[24..]
    }

    /// Writes the public key to `path`: binary, or ASCII-armored when `armor`.
    pub fn export(&self, path: &Path, armor: bool) {
        let mut args = vec!["--export"];
        if armor {
            args.push("--armor");
        }
        let bytes = self.run(&args);
        assert!(!bytes.is_empty(), "gpg exported nothing");
        std::fs::write(path, bytes).unwrap();
    }

    /// `gpg --clearsign` of `input` into `output`.
    pub fn clearsign(&self, input: &Path, output: &Path) {
        let _ = std::fs::remove_file(output);
        self.run(&[
            "--digest-algo",
            "SHA512",
            "--clearsign",
            "--output",
            output.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .arg("--batch")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--pinentry-mode", "loopback"])
            .args(
                self.faked_time
                    .map(|t| ["--faked-system-time", t])
                    .iter()
                    .flatten(),
            )
            .args(args)
            .output()
            .expect("gpg (apt-get install gnupg)");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// What the server does wrong for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers 404 Not Found.
    NotFound,
    /// Sends the headers (with the full Content-Length) and half the body, then
    /// closes the connection.
    DieMidBody,
}

/// How the repository's Release is written.
#[derive(Debug, Clone)]
pub struct ReleaseOptions {
    /// `Valid-Until` this many seconds from now (apt-ftparchive's `ValidTime`,
    /// which counts from the clock, not from `Date`); none by default.
    pub valid_for: Option<u64>,
    /// `Acquire-By-Hash: yes`, with the `by-hash/SHA256/` copies made.
    pub by_hash: bool,
}

impl Default for ReleaseOptions {
    fn default() -> Self {
        ReleaseOptions {
            valid_for: None,
            by_hash: true,
        }
    }
}

/// The repository: a suite `imtest` (Suite `testing`), component `main`, arches
/// amd64 and arm64 plus arch:all packages, signed by [`AptRepo::key`].
pub struct AptRepo {
    root: tempfile::TempDir,
    /// The key that signs `InRelease`.
    pub key: Gpg,
    /// Its public key, binary (`keyring.gpg`).
    pub keyring: PathBuf,
    /// Its public key, ASCII-armored (`keyring.asc`).
    pub keyring_asc: PathBuf,
    server: Server,
}

/// The suite's codename.
pub const SUITE: &str = "imtest";
/// The arches it publishes (plus `all`).
pub const ARCHES: [&str; 2] = ["amd64", "arm64"];

/// (name, version, arch or "any" for both arches, extra control fields)
const PACKAGES: &[(&str, &str, &str, &str)] = &[
    (
        "libc-tiny",
        "2.36-9+deb12u1",
        "any",
        "Priority: required\nMulti-Arch: same\nSource: glibc-tiny\n",
    ),
    (
        "base-tiny",
        "12.4",
        "any",
        "Essential: yes\nPriority: required\nPre-Depends: libc-tiny (>= 2.36)\n",
    ),
    (
        "mawk-tiny",
        "1.3.4-1",
        "any",
        "Priority: required\nProvides: awk\nDepends: libc-tiny (>= 2.30)\nMulti-Arch: foreign\n",
    ),
    (
        "gawk-tiny",
        "5.2.1-2",
        "any",
        "Priority: optional\nProvides: awk (= 5.2.1)\nDepends: libc-tiny\n",
    ),
    (
        "tools-all",
        "1.0-1",
        "all",
        "Priority: optional\nDepends: awk | gawk-tiny, base-tiny (>= 12)\n",
    ),
    (
        "sh-tiny",
        "5.2-1",
        "any",
        "Essential: yes\nPriority: required\nDepends: libc-tiny (>= 2.36), tools-all\n",
    ),
];

impl AptRepo {
    /// A project with one image, `tiny`, of `dist` for amd64, whose rootfs is a
    /// `debian` source from this repository; `settings` is added under `[settings]`.
    pub fn project(&self, dist: &str, settings: &str) -> super::Project {
        let p = super::Project::new();
        p.manifest(&format!(
            r#"[settings]
created = "2024-06-01T00:00:00Z"
{settings}
[images.tiny]
dists = ["{dist}"]
arches = ["amd64"]
rootfs = {{ debian = {{ mirror = "{}", keyring = "{}" }} }}
"#,
            self.url(),
            self.keyring.display()
        ));
        p
    }

    /// Builds and serves the repository with the default Release options.
    pub fn start() -> AptRepo {
        Self::start_with(&ReleaseOptions::default())
    }

    /// Builds and serves the repository.
    pub fn start_with(options: &ReleaseOptions) -> AptRepo {
        let root = tempfile::Builder::new()
            .prefix("apt-repo-")
            .tempdir()
            .unwrap();
        let key = Gpg::new("imgraph-test-archive");
        let keyring = root.path().join("keyring.gpg");
        let keyring_asc = root.path().join("keyring.asc");
        key.export(&keyring, false);
        key.export(&keyring_asc, true);
        let www = root.path().join("www");
        build_pool(&www);
        let server = Server::start(&www);
        let repo = AptRepo {
            root,
            key,
            keyring,
            keyring_asc,
            server,
        };
        repo.write_indexes();
        repo.write_release(options);
        repo
    }

    /// The mirror URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// A file of the served tree (`dists/imtest/InRelease`).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join("www").join(rel)
    }

    /// A scratch path beside the served tree (not served).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Rewrites `Release` with these options and signs `InRelease` with the repo's key.
    pub fn write_release(&self, options: &ReleaseOptions) {
        self.write_release_signed_by(options, &self.key);
    }

    /// Rewrites `Release` and signs `InRelease` with `key`.
    pub fn write_release_signed_by(&self, options: &ReleaseOptions, key: &Gpg) {
        let dists = self.path(&format!("dists/{SUITE}"));
        let _ = std::fs::remove_dir_all(dists.join("main/binary-amd64/by-hash"));
        let _ = std::fs::remove_dir_all(dists.join("main/binary-arm64/by-hash"));
        for f in ["Release", "InRelease"] {
            let _ = std::fs::remove_file(dists.join(f));
        }
        let mut cmd = Command::new("apt-ftparchive");
        cmd.current_dir(&dists);
        for (k, v) in [
            ("Origin", "imgraph-test"),
            ("Label", "imgraph-test"),
            ("Suite", "testing"),
            ("Codename", SUITE),
            ("Architectures", "amd64 arm64"),
            ("Components", "main"),
            ("Description", "imgraph test archive"),
        ] {
            cmd.arg("-o")
                .arg(format!("APT::FTPArchive::Release::{k}={v}"));
        }
        if let Some(secs) = options.valid_for {
            cmd.arg("-o")
                .arg(format!("APT::FTPArchive::Release::ValidTime={secs}"));
        }
        if options.by_hash {
            cmd.arg("-o")
                .arg("APT::FTPArchive::Release::Acquire-By-Hash=yes");
        }
        let release = run(cmd.args(["release", "."]));
        std::fs::write(dists.join("Release"), &release).unwrap();
        if options.by_hash {
            // apt-ftparchive writes the field; the by-hash copies are made here, as
            // dak does on the real archive.
            for arch in ARCHES {
                let dir = dists.join(format!("main/binary-{arch}"));
                let by_hash = dir.join("by-hash/SHA256");
                std::fs::create_dir_all(&by_hash).unwrap();
                for f in ["Packages", "Packages.gz", "Packages.xz"] {
                    let bytes = std::fs::read(dir.join(f)).unwrap();
                    let hex = sha256_hex(&bytes);
                    std::fs::write(by_hash.join(hex), bytes).unwrap();
                }
            }
        }
        key.clearsign(&dists.join("Release"), &dists.join("InRelease"));
    }

    /// Regenerates `Packages{,.gz,.xz}` for each arch from the pool.
    fn write_indexes(&self) {
        let www = self.path("");
        for arch in ARCHES {
            let dir = self.path(&format!("dists/{SUITE}/main/binary-{arch}"));
            std::fs::create_dir_all(&dir).unwrap();
            let packages = run(Command::new("apt-ftparchive").current_dir(&www).args([
                "--arch",
                arch,
                "packages",
                "pool/main",
            ]));
            assert!(!packages.is_empty(), "apt-ftparchive found no packages");
            std::fs::write(dir.join("Packages"), &packages).unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(&packages).unwrap();
            std::fs::write(dir.join("Packages.gz"), gz.finish().unwrap()).unwrap();
            run(Command::new("xz")
                .args(["-k", "-f", "-9"])
                .arg(dir.join("Packages")));
        }
    }

    /// Publishes a new version of a package (replacing the old `.deb` of that
    /// arch), regenerates the indexes and re-signs: what a point release or a
    /// security update does to an archive. `arch`: "any", "all" or one arch.
    pub fn publish(&self, name: &str, version: &str, arch: &str) {
        let (_, _, _, extra) = PACKAGES
            .iter()
            .find(|p| p.0 == name)
            .expect("a package of the test repository");
        let www = self.path("");
        let pool = www.join(format!("pool/main/{}/{name}", &name[..1]));
        let arches: Vec<&str> = match arch {
            "any" => ARCHES.to_vec(),
            other => vec![other],
        };
        for entry in std::fs::read_dir(&pool).unwrap().flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if arches.iter().any(|a| file.ends_with(&format!("_{a}.deb"))) {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        let _ = std::fs::remove_dir_all(www.join("../build"));
        build_debs(&www, name, version, arch, extra);
        self.write_indexes();
        // A new Date: Release dates have one-second resolution.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        self.write_release(&ReleaseOptions::default());
    }

    /// Adds a package for every arch of the suite (Priority: optional, so only an
    /// `include` installs it) with `files` (path, content, mode) and control
    /// members `scripts` (`postinst`, `preinst`, `triggers`: name, content),
    /// then regenerates the indexes and re-signs.
    pub fn add_package(
        &self,
        name: &str,
        version: &str,
        extra: &str,
        files: &[(&str, &str, u32)],
        scripts: &[(&str, &str)],
    ) {
        let www = self.path("");
        let _ = std::fs::remove_dir_all(www.join("../build"));
        build_debs_with(
            &www,
            name,
            version,
            "any",
            &format!("Priority: optional\n{extra}"),
            files,
            scripts,
        );
        self.write_indexes();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        self.write_release(&ReleaseOptions::default());
    }

    /// Makes the server answer requests whose path contains `path_contains` with `fault`.
    pub fn fault(&self, path_contains: &str, fault: Fault) {
        self.server
            .state()
            .faults
            .insert(path_contains.to_string(), fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.server.state().faults.clear();
    }

    /// Paths requested so far, in order (`/dists/imtest/InRelease`).
    pub fn requests(&self) -> Vec<String> {
        self.server.state().log.clone()
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        self.server.state().log.clear();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `dpkg-deb --build`s every package into `www/pool/main/`.
fn build_pool(www: &Path) {
    for (name, version, arch, extra) in PACKAGES {
        build_debs(www, name, version, arch, extra);
    }
}

/// Builds `name_version_ARCH.deb` into the pool for `arch` ("any": every arch of
/// the suite, "all": one arch:all package, or one arch).
fn build_debs(www: &Path, name: &str, version: &str, arch: &str, extra: &str) {
    build_debs_with(www, name, version, arch, extra, &[], &[]);
}

/// [`build_debs`] with extra files (path, content, mode) and control members.
fn build_debs_with(
    www: &Path,
    name: &str,
    version: &str,
    arch: &str,
    extra: &str,
    files: &[(&str, &str, u32)],
    scripts: &[(&str, &str)],
) {
    use std::os::unix::fs::PermissionsExt;
    let work = www.join("../build");
    {
        let arches: Vec<&str> = match arch {
            "any" => ARCHES.to_vec(),
            other => vec![other],
        };
        for arch in arches {
            let dir = work.join(format!("{name}_{arch}"));
            std::fs::create_dir_all(dir.join("DEBIAN")).unwrap();
            std::fs::create_dir_all(dir.join(format!("usr/share/doc/{name}"))).unwrap();
            std::fs::write(
                dir.join(format!("usr/share/doc/{name}/README")),
                format!("{name} {version} for {arch}\n"),
            )
            .unwrap();
            // Machine-readable (DEP-5) for all but mawk-tiny: the SBOM tests
            // read a license from one and NOASSERTION from the other.
            let copyright = match name {
                "mawk-tiny" => "mawk-tiny is free software, see the GPL.\n".to_string(),
                _ => {
                    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
                      Files: *\nCopyright: imgraph tests\nLicense: GPL-2+\n"
                        .to_string()
                }
            };
            std::fs::write(
                dir.join(format!("usr/share/doc/{name}/copyright")),
                copyright,
            )
            .unwrap();
            std::fs::write(
                dir.join("DEBIAN/control"),
                format!(
                    "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n\
                     Maintainer: imgraph tests <tests@imgraph.invalid>\n{extra}\
                     Section: misc\nDescription: tiny {name} for the imgraph tests\n"
                ),
            )
            .unwrap();
            for (path, content, mode) in files {
                let at = dir.join(path.trim_start_matches('/'));
                std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                std::fs::write(&at, content).unwrap();
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            for (member, content) in scripts {
                let at = dir.join("DEBIAN").join(member);
                std::fs::write(&at, content).unwrap();
                let mode = if *member == "triggers" { 0o644 } else { 0o755 };
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            let pool = www.join(format!("pool/main/{}/{name}", &name[..1]));
            std::fs::create_dir_all(&pool).unwrap();
            run(Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zxz", "--build"])
                .arg(&dir)
                .arg(pool.join(format!("{name}_{version}_{arch}.deb"))));
        }
    }
}

#[derive(Default)]
struct State {
    log: Vec<String>,
    faults: HashMap<String, Fault>,
}

/// The HTTP/1.1 server thread, stopped on drop.
struct Server {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop, root) = (state.clone(), stop.clone(), root.to_path_buf());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, root) = (state.clone(), root.clone());
                    std::thread::spawn(move || {
                        let _ = serve(conn, &root, &state);
                    });
                }
            })
        };
        Server {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves GET/HEAD requests on one connection until the client closes it.
fn serve(conn: TcpStream, root: &Path, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut close = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let path = target.split('?').next().unwrap_or("/").to_string();
        let fault = {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.log.push(path.clone());
            s.faults
                .iter()
                .find(|(p, _)| path.contains(p.as_str()))
                .map(|(_, f)| *f)
        };
        let file = root.join(path.trim_start_matches('/'));
        let body = if path.split('/').any(|c| c == "..") || fault == Some(Fault::NotFound) {
            None
        } else {
            std::fs::read(&file).ok().filter(|_| file.is_file())
        };
        match body {
            None => {
                out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            }
            Some(body) => {
                write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )?;
                if method != "HEAD" {
                    if fault == Some(Fault::DieMidBody) {
                        out.write_all(&body[..body.len() / 2])?;
                        out.flush()?;
                        let _ = out.shutdown(Shutdown::Both);
                        return Ok(());
                    }
                    out.write_all(&body)?;
                }
            }
        }
        out.flush()?;
        if close {
            return Ok(());
        }
    }
}
