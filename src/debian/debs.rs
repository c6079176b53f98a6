//! Fetching the `.deb`s that `images.lock` pins into the cache's blob store.
//!
//! The lock is the trust anchor here: it recorded each `.deb`'s sha256 and size
//! from a `Packages` index that a signed `InRelease` vouched for, so the bytes a
//! mirror sends now are checked against the lock alone (no index is read again,
//! and a plain `http://` mirror is fine). A `.deb` streams into a temp file in the
//! cache while it is hashed, and is renamed to `blobs/sha256/<hex>` only once its
//! digest and size match the lock: a swapped, truncated or tampered file is
//! refused and never cached. Blobs are named by content, so a `.deb` shared by two
//! dists, two images or the six arches of an `Architecture: all` package is
//! downloaded and stored once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::cache::{CacheError, Descriptor, Store};
use crate::debian::fetch::{FetchError, Mirror};
use crate::debian::missing::ReleaseNow;
use crate::manifest::lock::LockedPackage;
use crate::registry::RetryPolicy;

/// How far past its locked size a `.deb` is read: far enough that a swapped file
/// is usually hashed whole (so the error names its real digest), not so far that
/// a hostile mirror can stream forever into the cache's temp folder.
const SLACK: u64 = 16 << 20;

/// A `.deb` that could not be had as the lock pins it.
#[derive(Debug, thiserror::Error)]
pub enum DebFetchError {
    /// The lock's entry is unusable (bad input: exit 2).
    #[error(
        "images.lock: package {package}: {problem}; fix the entry or run `imgraph lock --update`"
    )]
    BadEntry {
        /// `name version arch`.
        package: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The mirror sent other bytes than the lock pins; nothing was cached.
    #[error("{url}: package {package}: sha256 mismatch: images.lock pins sha256:{expected} ({expected_size} bytes), the mirror sent sha256:{actual} ({actual_size} bytes); refused, nothing was cached")]
    Mismatch {
        /// The `.deb`'s URL.
        url: String,
        /// `name version arch`.
        package: String,
        /// What the lock pins (hex).
        expected: String,
        /// The locked size.
        expected_size: u64,
        /// What arrived (hex; of the first locked size + 16 MiB bytes when more came).
        actual: String,
        /// Bytes received.
        actual_size: u64,
    },
    /// The download failed (404, connection errors and 5xx after retries, a body
    /// cut short after retries); the source names the URL.
    #[error("package {package}: {source}")]
    Fetch {
        /// `name version arch`.
        package: String,
        /// Why (boxed: it is large and this error is returned by value).
        source: Box<FetchError>,
    },
    /// The mirror answered 404 for a locked `.deb`; `now` says whether the suite's
    /// Release has moved on since the lock was made (a stale lock) or not (an
    /// incomplete mirror).
    #[error("package {package}: {url}: HTTP 404: {}", gone_hint(.archive, .now))]
    Gone {
        /// `name version arch`.
        package: String,
        /// The `.deb`'s URL.
        url: String,
        /// The lock's `MIRROR SUITE HASH` of the archive it came from.
        archive: String,
        /// The suite's InRelease now, compared with the locked one.
        now: ReleaseNow,
    },
    /// The cache could not be written.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// What a 404 for a locked `.deb` means, and what to do about it.
fn gone_hint(archive: &str, now: &ReleaseNow) -> String {
    let mut words = archive.split_whitespace();
    let (mirror, suite) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let stale = "images.lock points at a file the mirror no longer has";
    let fix = format!(
        "run `imgraph lock --update` to pin what it serves now, or pin a snapshot mirror \
         instead of {mirror} (mirror = \"https://snapshot.debian.org/archive/debian/YYYYMMDDTHHMMSSZ\", \
         the time of the lock's Release) to keep building these versions"
    );
    match now {
        ReleaseNow::Moved { date } => format!(
            "{stale}: {suite}'s Release has moved on since the lock was made{}; {fix}",
            date.as_ref()
                .map(|d| format!(" (it is now dated {d})"))
                .unwrap_or_default()
        ),
        ReleaseNow::Same => format!(
            "the mirror still serves the {suite} Release the lock was made from, which lists this \
             file: the lock is current and the mirror is incomplete; use another mirror"
        ),
        ReleaseNow::Unknown(why) => {
            format!("{stale} (its Release could not be read to tell why: {why}); {fix}")
        }
    }
}

impl DebFetchError {
    /// Whether this is bad input (exit 2) rather than a failed fetch (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, DebFetchError::BadEntry { .. })
    }
}

/// Keep-alive clients for the mirrors a lock names, made on first use and shared
/// by every thread, with one retry policy and one progress callback.
pub struct MirrorSet {
    retry: RetryPolicy,
    progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    on_start: Option<Box<dyn Fn(usize, u64) + Send + Sync>>,
    mirrors: Mutex<HashMap<String, Mirror>>,
}

impl std::fmt::Debug for MirrorSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorSet")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Default for MirrorSet {
    fn default() -> Self {
        MirrorSet::new()
    }
}

impl MirrorSet {
    /// No mirrors yet, the default retry policy, no progress callback.
    pub fn new() -> MirrorSet {
        MirrorSet {
            retry: RetryPolicy::default(),
            progress: None,
            on_start: None,
            mirrors: Mutex::default(),
        }
    }

    /// Uses this retry policy for every mirror.
    pub fn with_retry(mut self, retry: RetryPolicy) -> MirrorSet {
        self.retry = retry;
        self
    }

    /// Calls `on_bytes` with the size of every chunk of body received, from the
    /// fetching threads (for a byte count on a TTY).
    pub fn with_progress(mut self, on_bytes: impl Fn(u64) + Send + Sync + 'static) -> MirrorSet {
        self.progress = Some(Arc::new(on_bytes));
        self
    }

    /// Calls `on_start` with the number of `.deb`s [`fetch_debs`] is about to
    /// download and their locked bytes (not at all when every one is cached), so a
    /// TTY can show a total and a rate.
    pub fn with_start(
        mut self,
        on_start: impl Fn(usize, u64) + Send + Sync + 'static,
    ) -> MirrorSet {
        self.on_start = Some(Box::new(on_start));
        self
    }

    /// The client for the mirror at `url`, made once per URL.
    pub fn mirror(&self, url: &str) -> Result<Mirror, FetchError> {
        let mut mirrors = self.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = mirrors.get(url) {
            return Ok(m.clone());
        }
        let mut m = Mirror::new(url)?.with_retry(self.retry);
        if let Some(progress) = &self.progress {
            let progress = progress.clone();
            m = m.with_progress(move |n| progress(n));
        }
        mirrors.insert(url.to_string(), m.clone());
        Ok(m)
    }
}

/// What [`fetch_debs`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedDebs {
    /// Each requested package's blob in the store, in the order asked.
    pub blobs: Vec<Descriptor>,
    /// `.deb`s downloaded (each distinct one counts once).
    pub downloaded: usize,
    /// Their bytes.
    pub downloaded_bytes: u64,
}

/// A distinct `.deb` to have in the store.
struct Wanted<'a> {
    package: &'a LockedPackage,
    digest: String,
    mirror: &'a str,
}

/// Puts every `packages` `.deb` into `store`, downloading those whose blob
/// (`sha256:<locked sha256>`) is not there yet, `jobs` at a time (at least one),
/// each from the mirror that its `archive` names first, checked against the
/// locked sha256 and size as it streams. A `.deb` listed several times (an
/// `Architecture: all` package of several arches) is downloaded once.
///
/// A blob already present is trusted as present, not re-hashed here: the
/// installer hashes every `.deb` as it reads it and refuses one that is not the
/// locked file (`install::open_locked`; `debian::rootfs::build` then drops it and
/// calls this again, which downloads it), so hashing every cached `.deb` here
/// too would only repeat that work.
///
/// On the first failure no further downloads start; the error returned is that
/// of the earliest failed package in `packages`' order. `.deb`s that arrived
/// whole before it stay cached (they were verified).
pub fn fetch_debs(
    packages: &[LockedPackage],
    mirrors: &MirrorSet,
    store: &Store,
    jobs: usize,
) -> Result<FetchedDebs, DebFetchError> {
    let mut blobs = Vec::with_capacity(packages.len());
    let mut wanted: Vec<Wanted<'_>> = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for package in packages {
        let (digest, mirror) = check_entry(package)?;
        blobs.push(Descriptor {
            digest: digest.clone(),
            size: package.size,
        });
        match seen.get(&digest) {
            Some(&size) if size != package.size => {
                return Err(DebFetchError::BadEntry {
                    package: package.id(),
                    problem: format!(
                        "sha256 {} is listed with {size} bytes elsewhere but {} here",
                        package.sha256, package.size
                    ),
                })
            }
            Some(_) => continue,
            None => {
                seen.insert(digest.clone(), package.size);
            }
        }
        if !store.has_blob(&digest) {
            wanted.push(Wanted {
                package,
                digest,
                mirror,
            });
        }
    }

    if let (Some(on_start), false) = (&mirrors.on_start, wanted.is_empty()) {
        on_start(wanted.len(), wanted.iter().map(|w| w.package.size).sum());
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let downloaded_bytes = AtomicU64::new(0);
    let errors: Mutex<Vec<(usize, DebFetchError)>> = Mutex::default();
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(wanted.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(w) = wanted.get(i) else { break };
                    match fetch_one(w, mirrors, store) {
                        Ok(size) => {
                            downloaded_bytes.fetch_add(size, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            errors
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((i, e));
                        }
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some((_, e)) = errors.into_iter().min_by_key(|(i, _)| *i) {
        return Err(e);
    }
    Ok(FetchedDebs {
        blobs,
        downloaded: wanted.len(),
        downloaded_bytes: downloaded_bytes.into_inner(),
    })
}

/// Downloads one `.deb` into a temp file of the store, keeping it only when it
/// matches the lock. Returns its size.
fn fetch_one(w: &Wanted<'_>, mirrors: &MirrorSet, store: &Store) -> Result<u64, DebFetchError> {
    let p = w.package;
    let fetch_err = |source| DebFetchError::Fetch {
        package: p.id(),
        source: Box::new(source),
    };
    let mirror = mirrors.mirror(w.mirror).map_err(fetch_err)?;
    let streamed = mirror.stream_file(&p.filename, p.size.saturating_add(SLACK), || {
        Ok(store.blob_writer()?)
    });
    let (writer, _) = match streamed {
        // Gone from the pool: is the lock stale (the suite moved on) or the mirror incomplete?
        Err(FetchError::Status { url, status: 404 }) => {
            let mut words = p.archive.split_whitespace().skip(1);
            let (suite, locked) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            return Err(DebFetchError::Gone {
                package: p.id(),
                url,
                archive: p.archive.clone(),
                now: mirror.release_now(suite, locked),
            });
        }
        other => other.map_err(fetch_err)?,
    };
    // The blob writer hashed it as it arrived; it keeps only the locked bytes.
    let expected = crate::cache::Descriptor {
        digest: w.digest.clone(),
        size: p.size,
    };
    match writer.finish_verified(&expected)? {
        Ok(stored) => Ok(stored.size),
        Err(found) => Err(DebFetchError::Mismatch {
            url: mirror.file_url(&p.filename),
            package: p.id(),
            expected: p.sha256.to_ascii_lowercase(),
            expected_size: p.size,
            actual: found.digest.trim_start_matches("sha256:").to_string(),
            actual_size: found.size,
        }),
    }
}

/// Checks what a lock entry says before it is used for a URL or a cache path (a
/// lock is a file people edit and review): returns the blob digest and the
/// mirror URL.
fn check_entry(p: &LockedPackage) -> Result<(String, &str), DebFetchError> {
    let bad = |problem: String| DebFetchError::BadEntry {
        package: p.id(),
        problem,
    };
    if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!("sha256 {:?} is not 64 hex digits", p.sha256)));
    }
    let f = &p.filename;
    if f.is_empty()
        || f.starts_with('/')
        || f.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        || f.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '\\' | '%'))
    {
        return Err(bad(format!(
            "filename {f:?} is not a relative pool path (like pool/main/b/bash/bash_5.2.15-2+b7_amd64.deb)"
        )));
    }
    let Some(mirror) = p.archive.split_whitespace().next() else {
        return Err(bad(
            "archive is empty: it should be \"MIRROR SUITE ...\"".to_string()
        ));
    };
    Ok((format!("sha256:{}", p.sha256.to_ascii_lowercase()), mirror))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(sha256: &str, filename: &str, archive: &str) -> LockedPackage {
        LockedPackage {
            name: "bash".into(),
            version: "5.2.15-2+b7".into(),
            arch: "amd64".into(),
            sha256: sha256.into(),
            size: 3,
            filename: filename.into(),
            archive: archive.into(),
        }
    }

    const HEX: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    const POOL: &str = "pool/main/b/bash/bash_5.2.15-2+b7_amd64.deb";
    const ARCHIVE: &str = "http://127.0.0.1:9 bookworm 0123456789ab";

    #[test]
    fn entries_that_could_escape_the_cache_or_the_mirror_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mirrors = MirrorSet::new().with_retry(RetryPolicy::none());
        for (p, says) in [
            (package("../../../../etc/passwd", POOL, ARCHIVE), "64 hex"),
            (package(&HEX[1..], POOL, ARCHIVE), "64 hex"),
            (
                package(HEX, "pool/../../x.deb", ARCHIVE),
                "relative pool path",
            ),
            (package(HEX, "/etc/passwd", ARCHIVE), "relative pool path"),
            (package(HEX, "pool/a b.deb", ARCHIVE), "relative pool path"),
            (package(HEX, POOL, " "), "archive is empty"),
        ] {
            let err = fetch_debs(&[p], &mirrors, &store, 2).unwrap_err();
            assert!(err.is_bad_input(), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains("bash 5.2.15-2+b7 amd64") && msg.contains(says),
                "{msg}"
            );
        }
    }

    #[test]
    fn a_deb_already_in_the_store_is_not_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let have = store.put_bytes(b"abc").unwrap();
        let hex = have.digest.trim_start_matches("sha256:");
        // Port 9 on loopback: any attempt to fetch would fail.
        let mirrors = MirrorSet::new().with_retry(RetryPolicy::none());
        let p = package(&hex.to_ascii_uppercase(), POOL, ARCHIVE);
        let got = fetch_debs(&[p.clone(), p], &mirrors, &store, 2).unwrap();
        assert_eq!(got.blobs, vec![have.clone(), have]);
        assert_eq!((got.downloaded, got.downloaded_bytes), (0, 0));
    }
}
