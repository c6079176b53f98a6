//! `imgraph lock`: resolve every `debian` platform against its archive and pin
//! each package in `images.lock`.
//!
//! Each (mirror, suite) is fetched once: its InRelease is verified against the
//! keyring, and a suite whose InRelease is the one already locked needs nothing
//! else (`lock --update` with nothing new downloads a few KB). Otherwise the
//! Packages indexes are fetched (each checked against the Release's sha256 before
//! it is parsed, cached by that sha256), parsed once per (archives, components,
//! arch) and every platform of that group is resolved from them. Each index is
//! also kept pre-parsed under its sha256 (`debian::preparsed`), so the next lock
//! reads neither the index nor most of its records.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::cache::{CacheError, Store};
use crate::debian::fetch::{FetchError, Mirror, SuiteRelease};
use crate::debian::packages::PackagesError;
use crate::debian::preparsed::{self, prune, ParsedIndex, Source};
use crate::debian::release::{parse_date, ReleaseError};
use crate::debian::resolve::{resolve, Request, ResolveError, Universe, Variant};
use crate::debian::signature::{Keyring, SignatureError};
use crate::manifest::lock::{
    diff_packages, request_hash, ArchiveState, EntryState, Lock, LockedPackage, LockedPlatform,
};
use crate::manifest::{DebianSource, Manifest, PlatformSpec, RootfsSource, Selector};

/// How to lock.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockOptions {
    /// Re-resolve the selected platforms even when their entry is current.
    pub update: bool,
    /// Accept a Release past its Valid-Until.
    pub allow_expired: bool,
    /// Accept a Release older than the one locked.
    pub allow_downgrade: bool,
}

/// One package of one platform that moved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Changed {
    /// Image.
    pub image: String,
    /// Dist.
    pub dist: String,
    /// Arch (bashbrew name).
    pub arch: String,
    /// Package.
    pub package: String,
    /// Version before (none: added).
    pub old: Option<String>,
    /// Version now (none: removed).
    pub new: Option<String>,
}

/// What `lock` did.
#[derive(Debug)]
pub struct LockReport {
    /// Platforms resolved now, with their package count.
    pub resolved: Vec<(String, usize)>,
    /// Package changes of platforms that had an entry.
    pub changed: Vec<Changed>,
    /// Whether `images.lock` was written (false: same bytes, left untouched).
    pub written: bool,
    /// Format-1 entries given their digest from their own lines (no network).
    pub bound: Vec<String>,
    /// Entries edited by hand (their lines did not match their digest), resolved again.
    pub repaired: Vec<String>,
}

/// Why `lock` failed. Nothing is written then.
#[derive(Debug, thiserror::Error)]
pub enum LockFailure {
    /// Loading a keyring.
    #[error(transparent)]
    Keyring(#[from] SignatureError),
    /// Fetching or verifying an archive file.
    #[error("{archive}: {source}")]
    Fetch {
        /// `MIRROR SUITE`.
        archive: String,
        /// What failed.
        source: Box<FetchError>,
    },
    /// A suite that does not publish the platform's arch or component.
    #[error("{platform}: {source}")]
    Unpublished {
        /// `image:dist/arch`.
        platform: String,
        /// The suite's own lists.
        source: ReleaseError,
    },
    /// An archive older than the state already locked.
    #[error("{archive}: the archive's Release is dated {found}, older than the {locked} already locked (a stale mirror or a replayed InRelease); pass --allow-downgrade to accept it")]
    Downgrade {
        /// `MIRROR SUITE`.
        archive: String,
        /// Locked Date.
        locked: String,
        /// Fetched Date.
        found: String,
    },
    /// A Packages index that does not parse.
    #[error("{index}: {source}")]
    Packages {
        /// Its URL.
        index: String,
        /// What is wrong.
        source: PackagesError,
    },
    /// Nothing satisfies a dependency.
    #[error("{platform}: {source}")]
    Resolve {
        /// `image:dist/arch`.
        platform: String,
        /// The chain.
        source: Box<ResolveError>,
    },
    /// The cache.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Writing `images.lock`.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LockFailure {
    /// A platform its suite does not publish, or a suite the mirror does not have,
    /// is the manifest's mistake: exit 2.
    pub fn is_bad_input(&self) -> bool {
        match self {
            LockFailure::Unpublished { .. } => true,
            LockFailure::Fetch { source, .. } => {
                matches!(**source, FetchError::UnknownSuite { .. })
            }
            _ => false,
        }
    }
}

/// Platforms that read the same indexes: (archives, components, Debian arch).
type GroupKey = (Vec<(String, String)>, Vec<String>, String);
/// A platform and its `debian` options.
type Platform<'m> = (&'m PlatformSpec, &'m DebianSource);
/// The lock entries of one group, by label.
type GroupResult = Result<Vec<(String, LockedPlatform)>, LockFailure>;

/// One (mirror, suite) as fetched now.
struct Fetched {
    release: SuiteRelease,
    key: String,
}

/// The `[archives]` key of one state of one suite: the same suite at two dates
/// (one platform updated, another not) gets two entries.
fn archive_key(mirror: &str, suite: &str, inrelease: &str) -> String {
    let short = inrelease.trim_start_matches("sha256:");
    format!("{mirror} {suite} {}", &short[..short.len().min(12)])
}

/// Called with the number of body bytes each time some arrive.
pub type OnBytes = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// Resolves what needs resolving and writes `images.lock` when it changed.
/// `on_bytes` sees every downloaded byte (for a progress display).
pub fn lock(
    manifest: &Manifest,
    selectors: &[Selector],
    store: &Store,
    opts: &LockOptions,
    say: &(dyn Fn(&str) + Sync),
    on_bytes: Option<OnBytes>,
) -> Result<LockReport, LockFailure> {
    let selected =
        |p: &PlatformSpec| selectors.is_empty() || selectors.iter().any(|s| s.matches_platform(p));
    let debian: Vec<(&PlatformSpec, &DebianSource)> = manifest
        .platforms
        .iter()
        .filter_map(|p| match &p.rootfs {
            RootfsSource::Debian(d) => Some((p, d)),
            _ => None,
        })
        .collect();
    // A format-1 entry resolved for the platform's options is bound as it is,
    // offline: its packages were resolved by an imgraph, only the digest is new.
    let mut unbound_bound = manifest.lock.clone();
    let mut bound = Vec::new();
    for (p, d) in &debian {
        if unbound_bound.state(&p.label(), d) == EntryState::Unbound {
            unbound_bound.bind(&p.label());
            bound.push(p.label());
        }
    }
    let old = &unbound_bound;
    let repaired: Vec<String> = debian
        .iter()
        .filter(|(p, d)| selected(p) && old.state(&p.label(), d) == EntryState::Edited)
        .map(|(p, _)| p.label())
        .collect();
    let todo: Vec<(&PlatformSpec, &DebianSource)> = debian
        .iter()
        .copied()
        .filter(|(p, d)| selected(p) && (opts.update || !old.is_current(&p.label(), d)))
        .collect();

    // 1. Every (mirror, suite) once, verified.
    let mut keyrings: HashMap<PathBuf, Keyring> = HashMap::new();
    let mut wanted: Vec<(String, String, PathBuf)> = Vec::new();
    for (_, d) in &todo {
        if !keyrings.contains_key(&d.keyring) {
            keyrings.insert(d.keyring.clone(), Keyring::load(&d.keyring)?);
        }
        for (mirror, suite) in d.archives() {
            if !wanted.iter().any(|w| w.0 == mirror && w.1 == suite) {
                wanted.push((mirror, suite, d.keyring.clone()));
            }
        }
    }
    let mirrors: Mutex<HashMap<String, Mirror>> = Mutex::default();
    let mirror_of = |url: &str| -> Result<Mirror, FetchError> {
        let mut m = mirrors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(x) = m.get(url) {
            return Ok(x.clone());
        }
        let mut x = Mirror::new(url)?;
        if let Some(cb) = &on_bytes {
            let cb = cb.clone();
            x = x.with_progress(move |n| cb(n));
        }
        m.insert(url.to_string(), x.clone());
        Ok(x)
    };
    let now = SystemTime::now();
    let fetched: Vec<Result<Fetched, LockFailure>> = std::thread::scope(|s| {
        let handles: Vec<_> = wanted
            .iter()
            .map(|(mirror, suite, keyring)| {
                let keyring = &keyrings[keyring];
                let mirror_of = &mirror_of;
                s.spawn(move || {
                    let archive = format!("{mirror} {suite}");
                    let fail = |source| LockFailure::Fetch {
                        archive: archive.clone(),
                        source: Box::new(source),
                    };
                    let m = mirror_of(mirror).map_err(fail)?;
                    let release = m
                        .release(suite, keyring, now, opts.allow_expired)
                        .map_err(fail)?;
                    say(&format!(
                        "  {archive}: {} (signed by {})",
                        release.release.date_text, release.fingerprint
                    ));
                    let key = archive_key(mirror, suite, &release.inrelease_sha256);
                    Ok(Fetched { release, key })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut releases: HashMap<(String, String), Fetched> = HashMap::new();
    for ((mirror, suite, _), f) in wanted.iter().zip(fetched) {
        let f = f?;
        check_not_older(old, mirror, suite, &f.release, opts.allow_downgrade)?;
        releases.insert((mirror.clone(), suite.clone()), f);
    }

    // 2. Group the platforms that read the same indexes; keep those whose every
    //    archive is the state already locked.
    let mut new = old.clone();
    new.platforms
        .retain(|label, _| debian.iter().any(|(p, _)| p.label() == *label));
    let mut groups: BTreeMap<GroupKey, Vec<Platform<'_>>> = BTreeMap::new();
    for (p, d) in &todo {
        // The first suite must publish the arch; an -updates or -security suite
        // that does not is skipped for it, as apt skips it.
        let mut archives = Vec::new();
        for (i, a) in d.archives().into_iter().enumerate() {
            match releases[&a].release.release.check_arch(&d.debian_arch) {
                Ok(()) => archives.push(a),
                Err(source) if i == 0 => {
                    return Err(LockFailure::Unpublished {
                        platform: p.label(),
                        source,
                    })
                }
                Err(_) => say(&format!(
                    "  {}: {} {} has no {}; skipped for it",
                    p.label(),
                    a.0,
                    a.1,
                    d.debian_arch
                )),
            }
        }
        let keys: Vec<String> = archives.iter().map(|a| releases[a].key.clone()).collect();
        // An entry edited by hand is resolved again whatever its archives say.
        let unchanged = old.state(&p.label(), d) == EntryState::Current
            && old
                .platforms
                .get(&p.label())
                .is_some_and(|e| e.archives == keys);
        if unchanged {
            continue;
        }
        groups
            .entry((archives, d.components.clone(), d.debian_arch.clone()))
            .or_default()
            .push((p, d));
    }

    // 3. Fetch, parse and resolve each group (two at a time: parsing is the cost).
    let mut resolved = Vec::new();
    let results: Mutex<Vec<GroupResult>> = Mutex::default();
    let queue: Mutex<Vec<_>> = Mutex::new(groups.into_iter().collect());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(((archives, components, arch), platforms)) = next else {
                    break;
                };
                let r = resolve_group(Group {
                    archives: &archives,
                    components: &components,
                    arch: &arch,
                    platforms: &platforms,
                    releases: &releases,
                    mirror_of: &mirror_of,
                    store,
                    say,
                });
                results.lock().unwrap_or_else(|p| p.into_inner()).push(r);
            });
        }
    });
    for r in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        for (label, entry) in r? {
            resolved.push((label.clone(), entry.packages.len()));
            new.platforms.insert(label, entry);
        }
    }
    resolved.sort();
    for f in releases.values() {
        let r = &f.release;
        new.archives.insert(
            f.key.clone(),
            ArchiveState {
                date: r.release.date_text.clone(),
                inrelease: r.inrelease_sha256.clone(),
                key: r.fingerprint.clone(),
            },
        );
    }
    let used: std::collections::BTreeSet<String> = new
        .platforms
        .values()
        .flat_map(|p| p.archives.iter().cloned())
        .collect();
    new.archives.retain(|k, _| used.contains(k));
    // Bound last: the digest covers the archive states just recorded.
    for (label, _) in &resolved {
        new.bind(label);
    }

    // 4. What moved, per platform that had an entry.
    let mut changed = Vec::new();
    for (p, _) in &todo {
        let label = p.label();
        let (Some(before), Some(after)) = (old.platforms.get(&label), new.platforms.get(&label))
        else {
            continue;
        };
        for c in diff_packages(&before.package_map(), &after.package_map()) {
            changed.push(Changed {
                image: p.image.clone(),
                dist: p.dist.clone(),
                arch: p.arch.name.to_string(),
                package: c.package,
                old: c.old,
                new: c.new,
            });
        }
    }

    let written = write_if_changed(&manifest.lock_path(), &new)?;
    Ok(LockReport {
        resolved,
        changed,
        written,
        bound,
        repaired,
    })
}

/// Refuses a Release older than the newest state of that suite already locked:
/// a mirror that went back in time, or an InRelease replayed to hold back a fix.
fn check_not_older(
    old: &Lock,
    mirror: &str,
    suite: &str,
    release: &SuiteRelease,
    allow: bool,
) -> Result<(), LockFailure> {
    let prefix = format!("{mirror} {suite} ");
    let newest = old
        .archives
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(_, a)| parse_date(&a.date).map(|t| (t, a.date.clone())))
        .max();
    match newest {
        Some((locked, text)) if release.release.date < locked && !allow => {
            Err(LockFailure::Downgrade {
                archive: format!("{mirror} {suite}"),
                locked: text,
                found: release.release.date_text.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// One resolution group (platforms sharing archives, components and arch) and
/// what resolving it reads: the verified Release files, the mirrors, the cache.
#[derive(Clone, Copy)]
struct Group<'a> {
    archives: &'a [(String, String)],
    components: &'a [String],
    arch: &'a str,
    platforms: &'a [(&'a PlatformSpec, &'a DebianSource)],
    releases: &'a HashMap<(String, String), Fetched>,
    mirror_of: &'a (dyn Fn(&str) -> Result<Mirror, FetchError> + Sync),
    store: &'a Store,
    say: &'a (dyn Fn(&str) + Sync),
}

fn resolve_group(g: Group<'_>) -> Result<Vec<(String, LockedPlatform)>, LockFailure> {
    let Group {
        archives,
        arch,
        platforms,
        releases,
        say,
        ..
    } = g;
    let mut suite_key: HashMap<String, String> = HashMap::new();
    for (mirror, suite) in archives {
        let f = &releases[&(mirror.clone(), suite.clone())];
        suite_key.insert(suite.clone(), f.key.clone());
    }
    // Every name a request of the group can start from, for `prune`.
    let requested: Vec<String> = platforms
        .iter()
        .flat_map(|(_, d)| d.include.iter().chain(&d.exclude).cloned())
        .collect();
    let load = |trust_cache: bool| {
        let parsed = group_indexes(g, trust_cache)?;
        let sources: Vec<Source<'_>> = parsed
            .iter()
            .map(|(suite, index, _)| Source { suite, index })
            .collect();
        let pruned = prune(&sources, arch, &requested);
        if let Ok(indexes) = &pruned {
            let reached: usize = indexes.iter().map(|i| i.records.len()).sum();
            let total: usize = sources.iter().map(|s| s.index.len()).sum();
            say(&format!(
                "  {arch}: {reached} of {total} records can be reached"
            ));
        }
        Ok::<_, LockFailure>((pruned, parsed.iter().any(|(_, _, cached)| *cached)))
    };
    let indexes = match load(true)? {
        (Ok(indexes), _) => indexes,
        // A pre-parsed file with a record that no longer parses (it passed its
        // digest check, so a bug or a changed parser): parse the text again.
        (Err(_), true) => load(false)?.0.map_err(|e| LockFailure::Packages {
            index: format!("{} {arch}", archives_label(archives)),
            source: e.into(),
        })?,
        (Err(e), false) => {
            return Err(LockFailure::Packages {
                index: format!("{} {arch}", archives_label(archives)),
                source: e.into(),
            })
        }
    };
    let universe = Universe::new(arch, indexes);
    let keys: Vec<String> = archives.iter().map(|a| releases[a].key.clone()).collect();
    let mut out = Vec::new();
    for (p, d) in platforms {
        let request = Request {
            variant: d.variant.parse::<Variant>().unwrap_or(Variant::Minbase),
            include: d.include.clone(),
            exclude: d.exclude.clone(),
        };
        let resolution = resolve(&universe, &request).map_err(|source| LockFailure::Resolve {
            platform: p.label(),
            source: Box::new(source),
        })?;
        let mut packages: Vec<LockedPackage> = resolution
            .packages
            .iter()
            .map(|s| LockedPackage {
                name: s.record.name.clone(),
                version: s.record.version.as_str().to_string(),
                arch: s.record.architecture.clone(),
                sha256: s.record.sha256.clone(),
                size: s.record.size,
                filename: s.record.filename.clone(),
                archive: suite_key.get(&s.suite).cloned().unwrap_or_default(),
            })
            .collect();
        packages.sort();
        say(&format!("  {}: {} packages", p.label(), packages.len()));
        out.push((
            p.label(),
            LockedPlatform {
                request: request_hash(d),
                archives: keys.clone(),
                // Bound once the lock's archive states are all in place.
                digest: None,
                packages,
            },
        ));
    }
    Ok(out)
}

/// `MIRROR SUITE, ...` for messages about a group's indexes.
fn archives_label(archives: &[(String, String)]) -> String {
    archives
        .iter()
        .map(|(m, s)| format!("{m} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pre-parsed indexes of a group: (suite, index, whether it came from the
/// pre-parsed cache), per suite then component. With `trust_cache`, an index
/// whose pre-parsed file loads is neither read nor decompressed; otherwise (or
/// when the file is missing or fails its checks) the index is fetched (from the
/// blob cache when there), parsed and checked whole, and its pre-parsed form
/// written for next time.
fn group_indexes(
    g: Group<'_>,
    trust_cache: bool,
) -> Result<Vec<(String, ParsedIndex, bool)>, LockFailure> {
    let Group {
        archives,
        components,
        arch,
        platforms,
        releases,
        mirror_of,
        store,
        say,
    } = g;
    let mut out = Vec::new();
    for (mirror, suite) in archives {
        let f = &releases[&(mirror.clone(), suite.clone())];
        let archive = format!("{mirror} {suite}");
        let fail = |source| LockFailure::Fetch {
            archive: archive.clone(),
            source: Box::new(source),
        };
        for component in components {
            let (path, entry) =
                f.release
                    .release
                    .packages_index(component, arch)
                    .map_err(|source| LockFailure::Unpublished {
                        platform: platforms[0].0.label(),
                        source,
                    })?;
            let url = format!("{mirror}/dists/{suite}/{path}");
            let digest = format!("sha256:{}", entry.sha256);
            let name = preparsed::state_name(&digest);
            let cached = if trust_cache {
                ParsedIndex::open(&store.state_path(&name)).ok()
            } else {
                None
            };
            if let Some(index) = cached {
                say(&format!("  {url}: {digest}, pre-parsed"));
                out.push((suite.clone(), index, true));
                continue;
            }
            let m = mirror_of(mirror).map_err(fail)?;
            let index = m
                .packages(&f.release, component, arch, store)
                .map_err(fail)?;
            say(&format!(
                "  {url}: {} ({} bytes){}",
                index.sha256,
                index.data.len(),
                if index.downloaded { "" } else { ", cached" }
            ));
            let text = String::from_utf8_lossy(&index.data);
            let parsed = preparsed::encode_text(&text).map_err(|source| LockFailure::Packages {
                index: url.clone(),
                source,
            })?;
            // Only time is lost when it cannot be written (a read-only cache).
            if let Err(e) = store.put_state_bytes(&name, parsed.file_bytes().unwrap_or_default()) {
                say(&format!("  {url}: not pre-parsed for next time: {e}"));
            }
            out.push((suite.clone(), parsed, false));
        }
    }
    Ok(out)
}

/// Writes the lock atomically, only when its bytes change (a lock with nothing
/// new stays byte for byte, timestamps included).
fn write_if_changed(path: &Path, lock: &Lock) -> Result<bool, LockFailure> {
    let text = lock.render();
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(false);
    }
    crate::atomic_file::write_file(path, text.as_bytes()).map_err(|source| LockFailure::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(true)
}
