//! `images.lock`: every package of every `debian` platform, pinned, beside
//! `images.toml`. Written by `imgraph lock`, read by `plan` and `build` (which
//! never resolve against the network), committed by the user.
//!
//! The format is TOML laid out for diffs, as Cargo.lock is: one line per package
//! of a platform (`"libc6 2.36-9+deb12u9 arm64"`), and one line per `.deb` in the
//! `[pool]` (sha256, size, path), so an arch:all package shared by six arches, or a
//! `.deb` shared by two images, is written once. A one-package update changes a
//! platform line and a pool line per platform it is in. Everything is sorted and
//! written by hand, so the same lock is always the same bytes.
//!
//! Each platform entry carries a `digest` of everything it pins (its request,
//! its archives and their states, every package line and its `.deb`): an
//! entry edited by hand no longer matches it and is refused like a stale one, so
//! a dropped dependency never reaches an image. Format 1 (no digest) is read, and
//! refused until `imgraph lock` binds it (offline, from its own lines).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::model::DebianSource;

/// The file name, beside `images.toml`.
pub const LOCK_FILE: &str = "images.lock";

/// The format version this imgraph writes; it reads this one and
/// [`UNBOUND_VERSION`].
pub const LOCK_VERSION: u32 = 2;

/// The format before entries carried a `digest`: read, never trusted as current.
pub const UNBOUND_VERSION: u32 = 1;

/// A whole lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    /// The archive state each platform was resolved from, by `"MIRROR SUITE"`.
    pub archives: BTreeMap<String, ArchiveState>,
    /// Per platform label (`minideb:bookworm/arm64v8`).
    pub platforms: BTreeMap<String, LockedPlatform>,
}

/// One suite of one mirror as it was when resolved.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveState {
    /// The Release `Date`, as Debian wrote it.
    pub date: String,
    /// sha256 of the InRelease file (`sha256:<hex>`).
    pub inrelease: String,
    /// Fingerprint of the key that signed it.
    pub key: String,
}

/// One platform's pinned packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedPlatform {
    /// Hash of the `debian` options it was resolved for: a different hash is stale.
    pub request: String,
    /// The `"MIRROR SUITE"` keys of [`Lock::archives`] it was resolved from.
    pub archives: Vec<String>,
    /// [`Lock::entry_digest`] as `imgraph lock` wrote it (none: format 1).
    pub digest: Option<String>,
    /// Every package, sorted by name.
    pub packages: Vec<LockedPackage>,
}

/// How an entry of the lock stands against the manifest's platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Resolved for the platform's options and unedited: what `build` uses.
    Current,
    /// No entry for the platform.
    Missing,
    /// Resolved for other `debian` options.
    Stale,
    /// Written in format 1, without a digest: `imgraph lock` binds it.
    Unbound,
    /// Its lines no longer match its digest: edited by hand.
    Edited,
}

impl EntryState {
    /// What is wrong with the entry, for a message that names the platform
    /// before it and says `run imgraph lock` after it.
    pub fn problem(self) -> &'static str {
        match self {
            EntryState::Current => "is current in images.lock",
            EntryState::Missing => "has no entry in images.lock",
            EntryState::Stale => "has an entry in images.lock resolved for other `debian` options",
            EntryState::Unbound => {
                "has an entry in images.lock written by an older imgraph (lock format 1, no digest)"
            }
            EntryState::Edited => {
                "has an entry in images.lock whose packages or pool lines no longer match its digest (edited by hand?)"
            }
        }
    }
}

/// One pinned `.deb`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Version, as the archive writes it.
    pub version: String,
    /// `amd64`, `arm64`, ... or `all`.
    pub arch: String,
    /// sha256 of the `.deb` (bare hex, as Packages files write it).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Path in the pool, relative to the mirror.
    pub filename: String,
    /// The `"MIRROR SUITE"` it comes from.
    pub archive: String,
}

impl LockedPackage {
    /// `name version arch`: the platform line and pool key.
    pub fn id(&self) -> String {
        format!("{} {} {}", self.name, self.version, self.arch)
    }
}

/// `images.lock` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Reading it.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A newer imgraph wrote it, in a format this one does not know. Rewriting it
    /// with this imgraph would throw away what the newer one recorded.
    #[error(
        "{} was written by a newer imgraph (lock format version {version}; this imgraph reads versions {UNBOUND_VERSION} and {LOCK_VERSION}): upgrade imgraph to use it",
        path.display()
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// The format version it declares.
        version: i64,
    },
    /// It is not a lock this imgraph wrote.
    #[error("{}: {problem}; delete it and run `imgraph lock` to write it anew", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Just the `version` of a lock, whatever else it holds.
#[derive(Deserialize)]
struct VersionOnly {
    version: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    version: u32,
    #[serde(default)]
    archives: BTreeMap<String, ArchiveState>,
    #[serde(default)]
    platforms: BTreeMap<String, RawPlatform>,
    #[serde(default)]
    pool: BTreeMap<String, RawPoolEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlatform {
    request: String,
    archives: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
    packages: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoolEntry {
    sha256: String,
    size: u64,
    filename: String,
    archive: String,
}

/// The hash of the options that decide which packages a platform gets. The
/// keyring is left out: it decides what is trusted, not what is selected.
pub fn request_hash(source: &DebianSource) -> String {
    let value = serde_json::json!({
        "variant": source.variant,
        "include": source.include,
        "exclude": source.exclude,
        "archives": source.archives(),
        "components": source.components,
        "arch": source.debian_arch,
    });
    let bytes = serde_json::to_vec(&value).expect("JSON values serialise");
    format!("blake3:{}", blake3::hash(&bytes).to_hex())
}

impl Lock {
    /// Reads `path`; a missing file is an empty lock.
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Lock::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lock::default()),
            Err(source) => Err(LockError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses lock text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Lock, LockError> {
        let invalid = |problem: String| LockError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        // The version first: a newer format may have fields this one refuses.
        if let Ok(VersionOnly {
            version: Some(toml::Value::Integer(version)),
        }) = toml::from_str(text)
        {
            if version > i64::from(LOCK_VERSION) {
                return Err(LockError::Newer {
                    path: path.to_path_buf(),
                    version,
                });
            }
        }
        let raw: RawLock = toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        if raw.version != LOCK_VERSION && raw.version != UNBOUND_VERSION {
            return Err(invalid(format!(
                "lock format version {} (this imgraph writes {LOCK_VERSION})",
                raw.version
            )));
        }
        let mut platforms = BTreeMap::new();
        for (label, p) in raw.platforms {
            let mut packages = Vec::new();
            for line in &p.packages {
                let entry = raw.pool.get(line).ok_or_else(|| {
                    invalid(format!("{label} lists {line:?}, which is not in [pool]"))
                })?;
                let mut parts = line.split(' ');
                let (Some(name), Some(version), Some(arch), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(invalid(format!(
                        "{label}: {line:?} is not \"name version arch\""
                    )));
                };
                packages.push(LockedPackage {
                    name: name.into(),
                    version: version.into(),
                    arch: arch.into(),
                    sha256: entry.sha256.clone(),
                    size: entry.size,
                    filename: entry.filename.clone(),
                    archive: entry.archive.clone(),
                });
            }
            packages.sort();
            platforms.insert(
                label,
                LockedPlatform {
                    request: p.request,
                    archives: p.archives,
                    // A format-1 lock has none; one there anyway binds nothing.
                    digest: p.digest.filter(|_| raw.version == LOCK_VERSION),
                    packages,
                },
            );
        }
        Ok(Lock {
            archives: raw.archives,
            platforms,
        })
    }

    /// The lock as its file's bytes: sorted, one package per line.
    pub fn render(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut out = String::new();
        out.push_str(
            "# images.lock: every package of every debian rootfs, pinned by `imgraph lock`.\n\
             # Commit it. `imgraph lock --update` moves it to the archive's current state;\n\
             # `imgraph lock --check` says whether it covers images.toml. Do not edit by hand.\n",
        );
        let _ = writeln!(out, "version = {LOCK_VERSION}");
        // Only the archives some platform still uses.
        let used: BTreeSet<&String> = self.platforms.values().flat_map(|p| &p.archives).collect();
        for (key, a) in &self.archives {
            if !used.contains(key) {
                continue;
            }
            let _ = write!(
                out,
                "\n[archives.{}]\ndate = {}\ninrelease = {}\nkey = {}\n",
                q(key),
                q(&a.date),
                q(&a.inrelease),
                q(&a.key)
            );
        }
        let mut pool: BTreeMap<String, &LockedPackage> = BTreeMap::new();
        for (label, p) in &self.platforms {
            let _ = write!(
                out,
                "\n[platforms.{}]\nrequest = {}\narchives = [{}]\n",
                q(label),
                q(&p.request),
                p.archives
                    .iter()
                    .map(|a| q(a))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some(digest) = &p.digest {
                let _ = writeln!(out, "digest = {}", q(digest));
            }
            out.push_str("packages = [\n");
            for pkg in &p.packages {
                let _ = writeln!(out, "  {},", q(&pkg.id()));
                pool.insert(pkg.id(), pkg);
            }
            out.push_str("]\n");
        }
        if !pool.is_empty() {
            out.push_str("\n[pool]\n");
            for (id, pkg) in pool {
                let _ = writeln!(
                    out,
                    "{} = {{ sha256 = {}, size = {}, filename = {}, archive = {} }}",
                    q(&id),
                    q(&pkg.sha256),
                    pkg.size,
                    q(&pkg.filename),
                    q(&pkg.archive)
                );
            }
        }
        out
    }

    /// Whether `label` has an unedited entry resolved for exactly `source`'s options.
    pub fn is_current(&self, label: &str, source: &DebianSource) -> bool {
        self.state(label, source) == EntryState::Current
    }

    /// How `label`'s entry stands: the options first (a stale entry is stale
    /// whatever its digest), then the digest.
    pub fn state(&self, label: &str, source: &DebianSource) -> EntryState {
        let Some(p) = self.platforms.get(label) else {
            return EntryState::Missing;
        };
        if p.request != request_hash(source) {
            return EntryState::Stale;
        }
        match &p.digest {
            None => EntryState::Unbound,
            Some(d) if *d == self.entry_digest(p) => EntryState::Current,
            Some(_) => EntryState::Edited,
        }
    }

    /// The digest that binds an entry to what resolved it: blake3 over its
    /// request, its archives with their states (date, InRelease, key), and every
    /// package line with its pool entry's sha256, size and path. Not the pool
    /// entry's `archive`: the pool holds one line per `.deb`, shared by every
    /// platform that has it, and another platform resolved later from a newer
    /// state of the suite rewrites it (where to fetch from; the sha256 is what is
    /// checked). Computed from the lines, so a lock can be bound and checked offline.
    pub fn entry_digest(&self, p: &LockedPlatform) -> String {
        let archives: Vec<serde_json::Value> = p
            .archives
            .iter()
            .map(|key| {
                let state = self.archives.get(key);
                serde_json::json!([
                    key,
                    state.map(|a| &a.date),
                    state.map(|a| &a.inrelease),
                    state.map(|a| &a.key),
                ])
            })
            .collect();
        let mut packages: Vec<&LockedPackage> = p.packages.iter().collect();
        packages.sort();
        let packages: Vec<serde_json::Value> = packages
            .iter()
            .map(|k| serde_json::json!([k.id(), k.sha256, k.size, k.filename]))
            .collect();
        let value = serde_json::json!({
            "request": p.request,
            "archives": archives,
            "packages": packages,
        });
        let bytes = serde_json::to_vec(&value).expect("JSON values serialise");
        format!("blake3:{}", blake3::hash(&bytes).to_hex())
    }

    /// Gives `label`'s entry the digest of its current lines: for entries that
    /// `imgraph lock` resolved now, or format-1 entries it binds as they are.
    pub fn bind(&mut self, label: &str) {
        if let Some(p) = self.platforms.get(label) {
            let digest = self.entry_digest(p);
            if let Some(p) = self.platforms.get_mut(label) {
                p.digest = Some(digest);
            }
        }
    }
}

/// What changed for one platform between two locks, package by package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageChange {
    /// Package name.
    pub package: String,
    /// Old version (none: added).
    pub old: Option<String>,
    /// New version (none: removed).
    pub new: Option<String>,
}

impl std::fmt::Display for PackageChange {
    /// `libc6 2.36-9+deb12u8 -> 2.36-9+deb12u9`, `+ newpkg 1.0-1`, `- oldpkg`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.old, &self.new) {
            (Some(o), Some(n)) => write!(f, "{} {o} -> {n}", self.package),
            (None, Some(n)) => write!(f, "+ {} {n}", self.package),
            (Some(_), None) => write!(f, "- {}", self.package),
            (None, None) => write!(f, "{}", self.package),
        }
    }
}

/// The changes from `old` to `new` (name -> "version arch sha256" maps or
/// package lists alike), sorted by package name. A rebuilt `.deb` of the same
/// version (a binNMU keeps it, a re-upload does not) shows as `v -> v`.
pub fn diff_packages(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<PackageChange> {
    let version = |v: &str| v.split(' ').next().unwrap_or(v).to_string();
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|n| old.get(*n) != new.get(*n))
        .map(|n| PackageChange {
            package: n.clone(),
            old: old.get(n).map(|v| version(v)),
            new: new.get(n).map(|v| version(v)),
        })
        .collect()
}

impl LockedPlatform {
    /// What the platform is made of, as `created = "git"` compares it across
    /// commits: its request and its packages (name, version, arch, sha256), not the
    /// archive states, so a new InRelease with the same packages keeps its date.
    pub fn made_of(&self) -> String {
        let value = serde_json::json!({
            "request": self.request,
            "packages": self.package_map(),
        });
        let bytes = serde_json::to_vec(&value).expect("JSON values serialise");
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// name -> `version arch sha256`: what a rootfs key holds of the lock.
    pub fn package_map(&self) -> BTreeMap<String, String> {
        self.packages
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    format!("{} {} {}", p.version, p.arch, p.sha256),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, arch: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            sha256: format!("{:0>64}", name.len()),
            size: 10,
            filename: format!("pool/main/{name}_{version}_{arch}.deb"),
            archive: "http://m/debian bookworm".into(),
        }
    }

    fn lock() -> Lock {
        let mut l = Lock::default();
        l.archives.insert(
            "http://m/debian bookworm".into(),
            ArchiveState {
                date: "Sat, 10 Aug 2024 09:11:12 UTC".into(),
                inrelease: "sha256:ab".into(),
                key: "B8B8".into(),
            },
        );
        for arch in ["amd64", "arm64"] {
            l.platforms.insert(
                format!("m:bookworm/{arch}"),
                LockedPlatform {
                    request: request_hash(&source(arch)),
                    archives: vec!["http://m/debian bookworm".into()],
                    digest: None,
                    packages: vec![
                        pkg("base-files", "12.4", arch),
                        pkg("debconf", "1.5", "all"),
                    ],
                },
            );
            l.bind(&format!("m:bookworm/{arch}"));
        }
        l
    }

    fn source(arch: &str) -> DebianSource {
        DebianSource {
            variant: "minbase".into(),
            include: vec![],
            exclude: vec![],
            mirror: "http://m/debian".into(),
            suites: vec!["bookworm".into()],
            security: None,
            components: vec!["main".into()],
            keyring: "/k.gpg".into(),
            debian_arch: arch.into(),
            dist: "bookworm".into(),
            scripts_strict: false,
        }
    }

    fn state_after(edit: impl Fn(&str) -> String) -> EntryState {
        let text = edit(&lock().render());
        Lock::parse(&text, Path::new("images.lock"))
            .unwrap()
            .state("m:bookworm/amd64", &source("amd64"))
    }

    #[test]
    fn an_entry_is_bound_to_its_lines_and_an_edit_is_caught() {
        assert_eq!(state_after(|t| t.to_string()), EntryState::Current);
        // A package line dropped, or its version changed (line and pool key alike).
        assert_eq!(
            state_after(|t| t.replace("  \"base-files 12.4 amd64\",\n", "")),
            EntryState::Edited
        );
        assert_eq!(
            state_after(|t| t.replace("base-files 12.4 amd64", "base-files 12.3 amd64")),
            EntryState::Edited
        );
        // A pool entry's sha256, an archive's state.
        assert_eq!(
            state_after(|t| t.replacen("sha256 = \"0000", "sha256 = \"1000", 1)),
            EntryState::Edited
        );
        assert_eq!(
            state_after(|t| t.replace("inrelease = \"sha256:ab\"", "inrelease = \"sha256:cd\"")),
            EntryState::Edited
        );
        // Another platform's entry edited leaves this one current.
        assert_eq!(
            state_after(|t| t.replace("  \"base-files 12.4 arm64\",\n", "")),
            EntryState::Current
        );
        // Other options: stale before anything else; no entry; format 1.
        let l = lock();
        let mut other = source("amd64");
        other.include.push("curl".into());
        assert_eq!(l.state("m:bookworm/amd64", &other), EntryState::Stale);
        assert_eq!(l.state("m:sid/amd64", &other), EntryState::Missing);
        let v1: String = l
            .render()
            .replace("version = 2", "version = 1")
            .lines()
            .filter(|line| !line.starts_with("digest = "))
            .map(|line| format!("{line}\n"))
            .collect();
        let mut old = Lock::parse(&v1, Path::new("images.lock")).unwrap();
        assert_eq!(
            old.state("m:bookworm/amd64", &source("amd64")),
            EntryState::Unbound
        );
        // Binding it from its own lines gives back the lock `imgraph lock` writes.
        old.bind("m:bookworm/amd64");
        old.bind("m:bookworm/arm64");
        assert_eq!(old.render(), l.render());
    }

    #[test]
    fn made_of_ignores_the_archive_state_but_not_the_packages() {
        let l = lock();
        let p = &l.platforms["m:bookworm/amd64"];
        let mut moved = p.clone();
        moved.archives = vec!["http://m/debian bookworm 0123".into()];
        for k in &mut moved.packages {
            k.archive = "http://m/debian bookworm 0123".into();
        }
        assert_eq!(moved.made_of(), p.made_of());
        moved.packages[0].version = "12.5".into();
        assert_ne!(moved.made_of(), p.made_of());
    }

    #[test]
    fn renders_sorted_compact_and_parses_back() {
        let l = lock();
        let text = l.render();
        assert_eq!(Lock::parse(&text, Path::new("images.lock")).unwrap(), l);
        assert_eq!(Lock::parse(&text, Path::new("x")).unwrap().render(), text);
        // The arch:all package is written once in the pool.
        assert_eq!(text.matches("debconf_1.5_all.deb").count(), 1, "{text}");
        assert!(text.contains("  \"base-files 12.4 arm64\",\n"), "{text}");
    }

    #[test]
    fn a_bad_lock_says_how_to_recover() {
        let text = lock().render().replace("version = 2", "version = 0");
        let e = Lock::parse(&text, Path::new("images.lock")).unwrap_err();
        assert!(e.to_string().contains("run `imgraph lock`"), "{e}");
        let text = lock().render().replace("[pool]\n", "[pool]\n\"x 1 all\" = { sha256 = \"1\", size = 1, filename = \"f\", archive = \"a\" }\n").replace("\"debconf 1.5 all\" = ", "\"gone 1 all\" = ");
        assert!(Lock::parse(&text, Path::new("images.lock")).is_err());
    }

    /// A lock from a newer imgraph, even with fields this one does not know, says
    /// so and says to upgrade, not to rewrite it.
    #[test]
    fn a_lock_from_a_newer_imgraph_says_so() {
        let text = lock()
            .render()
            .replace("version = 2", "version = 3\nsigned-by = \"someone\"");
        let e = Lock::parse(&text, Path::new("images.lock")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("written by a newer imgraph"), "{msg}");
        assert!(
            msg.contains("version 3") && msg.contains("upgrade imgraph"),
            "{msg}"
        );
        assert!(!msg.contains("imgraph lock`"), "{msg}");
    }

    #[test]
    fn diffs_name_versions_additions_and_removals() {
        let old = BTreeMap::from([
            ("libc6".to_string(), "2.36-9+deb12u8 arm64 aa".to_string()),
            ("old".to_string(), "1 all bb".to_string()),
        ]);
        let new = BTreeMap::from([
            ("libc6".to_string(), "2.36-9+deb12u9 arm64 cc".to_string()),
            ("newpkg".to_string(), "1.0-1 all dd".to_string()),
        ]);
        let lines: Vec<String> = diff_packages(&old, &new)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "libc6 2.36-9+deb12u8 -> 2.36-9+deb12u9",
                "+ newpkg 1.0-1",
                "- old"
            ]
        );
    }
}
