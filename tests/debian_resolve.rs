//! The Debian resolver core against the real thing: version order against
//! `dpkg --compare-versions`, and the `minbase` set of bookworm against what
//! `mmdebstrap` installs from the live mirror (deb.debian.org, reached in CI).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use imgraph::debian::deb822;
use imgraph::debian::resolve::{resolve, Index, Request, Universe, Variant};
use imgraph::debian::version::Version;

use crate::support::live_debian::{bookworm_records, MIRROR};
use crate::support::tool;

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick(&mut self, chars: &[u8]) -> char {
        chars[self.below(chars.len())] as char
    }
}

/// A valid version exercising what dpkg's order depends on: epochs, `~`,
/// letters against other characters, digit runs with leading zeros, revisions.
fn gen_version(rng: &mut Rng) -> String {
    const UP: &[u8] = b"0123456789001.~~+aAzZ.";
    const REV: &[u8] = b"0123456789.~+bu";
    let mut s = String::new();
    if rng.below(4) == 0 {
        s.push_str(&format!("{}:", rng.below(3)));
    }
    s.push(rng.pick(b"0123456789"));
    for _ in 0..rng.below(7) {
        s.push(rng.pick(UP));
    }
    if rng.below(2) == 0 {
        s.push('-');
        s.push(rng.pick(b"0123456789"));
        for _ in 0..rng.below(5) {
            s.push(rng.pick(REV));
        }
    }
    s
}

/// A version close to `v`: one edit, so that pairs are often equal or differ
/// in a single place (where ordering bugs hide).
fn near(rng: &mut Rng, v: &str) -> String {
    let mut s = v.to_string();
    match rng.below(6) {
        0 => s.push('~'),
        1 => s.push_str(if s.contains('-') { ".0" } else { "-0" }),
        2 => s.push('a'),
        3 => {
            s = format!(
                "0:{}",
                s.trim_start_matches(|c: char| c != ':')
                    .trim_start_matches(':')
            )
        }
        4 => {
            // Swap one digit for a leading-zero form of itself or its successor.
            if let Some(i) = s.rfind(|c: char| c.is_ascii_digit()) {
                let d = s.as_bytes()[i] - b'0';
                let r = if rng.below(2) == 0 {
                    format!("0{d}")
                } else {
                    format!("{}", d + 1)
                };
                s.replace_range(i..=i, &r);
            }
        }
        _ => s.push('+'),
    }
    if s.parse::<Version>().is_ok() {
        s
    } else {
        v.to_string()
    }
}

fn dpkg_holds(a: &str, op: &str, b: &str) -> bool {
    let status = Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .status()
        .expect("dpkg (install it: scripts/test does)");
    status.success()
}

#[test]
fn version_order_matches_dpkg_compare_versions() {
    let mut rng = Rng(0x1d2b_3c4d_5e6f_7081);
    let mut pairs = Vec::new();
    for _ in 0..200 {
        let a = gen_version(&mut rng);
        let b = gen_version(&mut rng);
        let c = near(&mut rng, &a);
        pairs.push((a.clone(), b));
        pairs.push((a, c));
    }
    let mut seen = [0usize; 3];
    let mut wrong = Vec::new();
    for (a, b) in &pairs {
        let ours = a
            .parse::<Version>()
            .unwrap()
            .cmp(&b.parse::<Version>().unwrap());
        let dpkg = if dpkg_holds(a, "lt", b) {
            Ordering::Less
        } else if dpkg_holds(a, "eq", b) {
            Ordering::Equal
        } else {
            Ordering::Greater
        };
        seen[(dpkg as i8 + 1) as usize] += 1;
        if ours != dpkg {
            wrong.push(format!("{a} vs {b}: ours {ours:?}, dpkg {dpkg:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} pairs ordered unlike dpkg:\n{}",
        wrong.len(),
        pairs.len(),
        wrong.join("\n")
    );
    // The generator must have produced every outcome, equal ones included.
    assert!(
        seen.iter().all(|&n| n >= 20),
        "outcomes (lt, eq, gt): {seen:?}"
    );
}

/// Downloads, decompresses and parses bookworm main's Packages index for `arch`.
fn bookworm_universe(arch: &str, dir: &Path) -> Universe {
    let records = bookworm_records(arch, dir);
    assert!(records.len() > 50_000, "{} records", records.len());
    Universe::new(
        arch,
        vec![Index {
            suite: "bookworm".into(),
            records,
        }],
    )
}

fn minbase() -> Request {
    Request {
        variant: Variant::Minbase,
        include: Vec::new(),
        exclude: Vec::new(),
    }
}

#[test]
fn minbase_bookworm_amd64_equals_what_mmdebstrap_installs() {
    let dir = tempfile::tempdir().unwrap();
    let universe = bookworm_universe("amd64", dir.path());
    let started = std::time::Instant::now();
    let resolution = resolve(&universe, &minbase()).expect("bookworm minbase resolves");
    eprintln!(
        "resolved {} packages of {} in {:?}",
        resolution.packages.len(),
        universe.len(),
        started.elapsed()
    );
    let ours: BTreeMap<String, String> = resolution
        .packages
        .iter()
        .map(|s| (s.record.name.clone(), s.record.version.to_string()))
        .collect();

    // mmdebstrap's own answer, from the same single suite of the same mirror.
    let tarball = dir.path().join("minbase.tar");
    tool(
        "mmdebstrap",
        &[
            "--quiet",
            "--variant=minbase",
            "--arch=amd64",
            "bookworm",
            tarball.to_str().unwrap(),
            MIRROR,
        ],
    );
    let status = tool(
        "tar",
        &["-xOf", tarball.to_str().unwrap(), "./var/lib/dpkg/status"],
    );
    let theirs: BTreeMap<String, String> = deb822::parse(&status)
        .unwrap()
        .iter()
        .map(|p| {
            (
                p.get("Package").unwrap().to_string(),
                p.get("Version").unwrap().to_string(),
            )
        })
        .collect();

    let only_ours: Vec<_> = ours
        .iter()
        .filter(|(k, _)| !theirs.contains_key(*k))
        .collect();
    let only_theirs: Vec<_> = theirs
        .iter()
        .filter(|(k, _)| !ours.contains_key(*k))
        .collect();
    let versions: Vec<_> = ours
        .iter()
        .filter_map(|(k, v)| theirs.get(k).filter(|t| *t != v).map(|t| (k, v, t)))
        .collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty() && versions.is_empty(),
        "resolver vs mmdebstrap: only ours {only_ours:?}, only mmdebstrap's {only_theirs:?}, versions differ {versions:?}"
    );
    assert!(
        ours.contains_key("usrmerge"),
        "bookworm minbase has usrmerge"
    );

    // `imgraph lock` end to end (InRelease verified with Debian's keyring, indexes
    // checked against Release) pins exactly mmdebstrap's set, and again the same bytes.
    let p = crate::support::Project::new();
    p.manifest(
        r#"[images.minideb]
dists = ["bookworm"]
arches = ["amd64", "arm64v8"]
rootfs = { debian = { variant = "minbase" } }
"#,
    );
    p.imgraph(&["lock"]).success();
    let first = std::fs::read_to_string(p.path("images.lock")).unwrap();
    let mut locked: BTreeMap<String, String> = BTreeMap::new();
    let mut in_amd64 = false;
    for line in first.lines() {
        if line.starts_with("[platforms.") {
            in_amd64 = line.contains("minideb:bookworm/amd64");
        } else if in_amd64 {
            if let Some(entry) = line
                .trim()
                .strip_prefix('"')
                .and_then(|l| l.strip_suffix("\","))
            {
                let mut parts = entry.split(' ');
                locked.insert(parts.next().unwrap().into(), parts.next().unwrap().into());
            }
        }
    }
    assert_eq!(locked, theirs, "images.lock vs mmdebstrap");
    std::fs::remove_file(p.path("images.lock")).unwrap();
    p.imgraph(&["lock"]).success();
    assert_eq!(
        std::fs::read_to_string(p.path("images.lock")).unwrap(),
        first,
        "locking the same archive twice gives the same bytes"
    );
    p.imgraph(&["lock", "--check"]).success();
    // Every selected package says why it is there.
    let apt = resolution
        .packages
        .iter()
        .find(|s| s.record.name == "apt")
        .unwrap();
    assert_eq!(apt.reason.to_string(), "priority required");
}

#[test]
fn minbase_bookworm_arm64_resolves_to_the_same_names_as_amd64() {
    let dir = tempfile::tempdir().unwrap();
    let names = |arch: &str| -> BTreeSet<String> {
        let u = bookworm_universe(arch, dir.path());
        let r = resolve(&u, &minbase()).unwrap_or_else(|e| panic!("{arch}: {e}"));
        for s in &r.packages {
            assert!(
                s.record.architecture == arch || s.record.architecture == "all",
                "{} is {}",
                s.record.name,
                s.record.architecture
            );
        }
        r.packages.into_iter().map(|s| s.record.name).collect()
    };
    let amd64 = names("amd64");
    let arm64 = names("arm64");
    assert_eq!(
        amd64.symmetric_difference(&arm64).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "bookworm minbase differs between amd64 and arm64"
    );
}
