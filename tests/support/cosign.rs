//! Debian trixie's real `cosign` (a static Go binary), to check imgraph's
//! signatures with the tool people verify images with.
//!
//! Fetched from the live mirror the way apt trusts it: trixie's `InRelease`,
//! checked by `gpgv` against Debian's archive keyring (debian-archive-keyring)
//! and read from gpgv's output (only the signed text); the `Packages.xz` it
//! lists, checked by its sha256 there; the `cosign` record's `.deb`, checked by
//! the record's sha256; `usr/bin/cosign` extracted with `dpkg-deb -x` into
//! `target/cosign/<sha256 of the .deb>/`, which later runs reuse (the indexes are
//! fetched again each run, so a new trixie point release is picked up).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use imgraph::debian::packages::parse_index;

use super::live_debian::{download, MIRROR};
use super::{sha256, tool};

/// The suite whose cosign the tests run.
pub const SUITE: &str = "trixie";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The cosign binary and its Debian version (`2.5.0-2+b5`).
pub struct Cosign {
    pub bin: PathBuf,
    pub version: String,
}

/// trixie's cosign, fetched and checked once per test process.
pub fn cosign() -> &'static Cosign {
    static COSIGN: OnceLock<Cosign> = OnceLock::new();
    COSIGN.get_or_init(fetch)
}

/// `target/` (or `$CARGO_TARGET_DIR`), where the extracted binary is kept.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The `SHA256:` entry of `path` in a Release file.
fn release_sha256(release: &str, path: &str) -> Option<String> {
    release
        .lines()
        .skip_while(|l| l.trim_end() != "SHA256:")
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .find_map(|l| {
            let mut fields = l.split_whitespace();
            let (hash, _size, name) = (fields.next()?, fields.next()?, fields.next()?);
            (name == path).then(|| hash.to_owned())
        })
}

fn fetch() -> Cosign {
    let arch = tool("dpkg", &["--print-architecture"]).trim().to_owned();
    let cache = target_dir().join("cosign");
    std::fs::create_dir_all(&cache).unwrap();
    let tmp = tempfile::tempdir_in(&cache).unwrap();

    let inrelease = tmp.path().join("InRelease");
    download(&format!("{MIRROR}/dists/{SUITE}/InRelease"), &inrelease);
    let release = tmp.path().join("Release");
    tool(
        "gpgv",
        &[
            "--keyring",
            KEYRING,
            "--output",
            release.to_str().unwrap(),
            inrelease.to_str().unwrap(),
        ],
    );
    let release = std::fs::read_to_string(&release).unwrap();
    let index_path = format!("main/binary-{arch}/Packages.xz");
    let index_sha = release_sha256(&release, &index_path)
        .unwrap_or_else(|| panic!("{SUITE}'s InRelease lists no {index_path}"));

    let xz = tmp.path().join("Packages.xz");
    download(&format!("{MIRROR}/dists/{SUITE}/{index_path}"), &xz);
    assert_eq!(
        sha256(&std::fs::read(&xz).unwrap()),
        format!("sha256:{index_sha}"),
        "{SUITE}'s {index_path} does not match its InRelease"
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut imgraph::decompress::open(&xz).unwrap(), &mut text).unwrap();
    let records = parse_index(&text).expect("trixie's Packages parses");
    let record = records
        .iter()
        .find(|r| r.name == "cosign")
        .unwrap_or_else(|| panic!("{SUITE} main/{arch} has no cosign package"));
    let version = record.version.to_string();

    let dir = cache.join(record.sha256.to_ascii_lowercase());
    let bin = dir.join("usr/bin/cosign");
    if !bin.exists() {
        let deb = tmp.path().join("cosign.deb");
        download(&format!("{MIRROR}/{}", record.filename), &deb);
        assert_eq!(
            sha256(&std::fs::read(&deb).unwrap()),
            format!("sha256:{}", record.sha256.to_ascii_lowercase()),
            "{} does not match its Packages record",
            record.filename
        );
        let extracted = tmp.path().join("x");
        tool(
            "dpkg-deb",
            &["-x", deb.to_str().unwrap(), extracted.to_str().unwrap()],
        );
        assert!(
            extracted.join("usr/bin/cosign").exists(),
            "no usr/bin/cosign"
        );
        // Atomic: a concurrent run that got there first leaves the same bytes.
        if std::fs::rename(&extracted, &dir).is_err() {
            assert!(bin.exists(), "cannot put cosign in {}", dir.display());
        }
    }
    Cosign { bin, version }
}

impl Cosign {
    /// `cosign verify --key KEY` of `reference` (`host/repo@sha256:...`) on a
    /// plain-HTTP loopback registry, with no transparency log (imgraph's
    /// signatures are key-only) and a scratch HOME (cosign keeps a TUF cache
    /// there). Returns the output, whether it passed or not.
    pub fn verify(&self, key: &Path, reference: &str) -> Output {
        let home = tempfile::tempdir().unwrap();
        std::process::Command::new(&self.bin)
            .args(["verify", "--key"])
            .arg(key)
            .args([
                "--insecure-ignore-tlog=true",
                "--allow-insecure-registry",
                "--allow-http-registry",
                "--output",
                "json",
                reference,
            ])
            .env("HOME", home.path())
            .env("TUF_ROOT", home.path().join(".sigstore"))
            .env_remove("DOCKER_CONFIG")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} ({e})", self.bin.display()))
    }
}
