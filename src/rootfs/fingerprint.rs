//! Content fingerprints of rootfs sources, with a stat cache.
//!
//! The rootfs step's output hash is what the layer step is keyed on, so it must change
//! exactly when the layer would: it covers every path, kind, mode, link target, device
//! number and content hash, the owners when they are preserved, and the mtime as the layer
//! will record it. Per-path hashes are kept so that `plan` can name the path that changed.
//!
//! Reading 170 MB on every `plan` would be slow, so file content hashes are cached by
//! `(size, mtime, ctime, inode)`, like git's index: a second fingerprint of an unchanged
//! tree only `lstat`s.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::rootfs::walk::{walk, WalkEntry, WalkError};
use crate::rootfs::{display_bytes, EntryKind, Owners};

/// Errors of fingerprinting; each names the path it failed on.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    /// The directory walk failed.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// A file could not be opened, stat'ed or read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file was replaced while it was being fingerprinted.
    #[error(
        "{path} changed while it was being fingerprinted; is something still writing the rootfs?"
    )]
    Changed {
        /// The file.
        path: PathBuf,
    },
}

/// The fingerprint of a directory tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFingerprint {
    /// Hex blake3 over the options and every `(path, entry hash)` pair in path order.
    pub digest: String,
    /// Hex blake3 of each entry's canonical encoding, keyed by its path relative to the
    /// root (lossy UTF-8 for the rare non-UTF-8 name; `digest` uses the raw bytes).
    pub entries: BTreeMap<String, String>,
}

/// How a path differs between two fingerprints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Only in the new tree.
    Added,
    /// Only in the old tree.
    Removed,
    /// In both, with different content, metadata or kind.
    Modified,
}

/// One path that differs between two fingerprints; what `plan` reports as the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathChange {
    /// Path relative to the root.
    pub path: String,
    /// What happened to it.
    pub change: ChangeKind,
}

/// Lists the paths that differ between `old` and `new`, in path order.
pub fn diff(old: &TreeFingerprint, new: &TreeFingerprint) -> Vec<PathChange> {
    let mut out = Vec::new();
    for (path, hash) in &old.entries {
        match new.entries.get(path) {
            None => out.push(PathChange {
                path: path.clone(),
                change: ChangeKind::Removed,
            }),
            Some(h) if h != hash => out.push(PathChange {
                path: path.clone(),
                change: ChangeKind::Modified,
            }),
            Some(_) => {}
        }
    }
    for path in new.entries.keys() {
        if !old.entries.contains_key(path) {
            out.push(PathChange {
                path: path.clone(),
                change: ChangeKind::Added,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// What goes into a directory fingerprint besides content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FingerprintOptions {
    /// With [`Owners::Preserve`] the uid/gid are part of the layer, so of the fingerprint.
    pub owners: Owners,
    /// The layer's `created` time when the layer records `min(mtime, created)`: the
    /// clamped mtime is then hashed, so touching a file older than `created` changes the
    /// fingerprint (the layer changes) while re-creating a tree of files newer than
    /// `created` does not (early cutoff). `None` leaves mtimes out, for layers whose
    /// entries all carry the same fixed time.
    pub clamp_mtime: Option<u64>,
}

/// Counts that tell how much work a fingerprint did; tests and `-v` output use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct FingerprintStats {
    /// Regular files whose content was read and hashed.
    pub files_read: u64,
    /// Regular files whose hash came from the stat cache.
    pub files_cached: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
}

/// What the stat cache remembers about one file.
///
/// The serialised field names are one letter, since the cache holds one entry per file and
/// is loaded on every run; the long names are still accepted when reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    /// Size in bytes.
    #[serde(rename = "s", alias = "size")]
    pub size: u64,
    /// mtime in nanoseconds since the epoch.
    #[serde(rename = "m", alias = "mtime_ns")]
    pub mtime_ns: i128,
    /// ctime in nanoseconds since the epoch: catches edits that restore the mtime.
    #[serde(rename = "c", alias = "ctime_ns")]
    pub ctime_ns: i128,
    /// Inode number: catches files replaced by rename.
    #[serde(rename = "i", alias = "ino")]
    pub ino: u64,
    /// Hex blake3 of the content.
    #[serde(rename = "h", alias = "blake3")]
    pub blake3: String,
}

/// Content hashes keyed by absolute path, valid while the file's stat is unchanged.
///
/// Serialise it beside the action cache between runs. Entries are only stored for files
/// whose ctime is older than [`RACY_WINDOW_NS`] before they were read, so a write landing
/// in the same timestamp tick as the read can never be missed (git's "racy clean" case).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatCache {
    entries: BTreeMap<String, StatEntry>,
    #[serde(skip)]
    used: HashSet<String>,
}

/// How recent a file's ctime may be for its hash to be cached: one second covers the
/// timestamp granularity of every Linux filesystem a rootfs lives on.
pub const RACY_WINDOW_NS: i128 = 1_000_000_000;

impl StatCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops entries that no lookup used since this cache was created or loaded, so the
    /// cache does not grow forever as files come and go. Call after fingerprinting every
    /// source that shares this cache.
    pub fn prune_unused(&mut self) {
        let used = &self.used;
        self.entries.retain(|k, _| used.contains(k));
    }

    fn lookup(&mut self, key: &str, stat: &StatEntry) -> Option<String> {
        let hit = self.entries.get(key).filter(|e| {
            e.size == stat.size
                && e.mtime_ns == stat.mtime_ns
                && e.ctime_ns == stat.ctime_ns
                && e.ino == stat.ino
        })?;
        self.used.insert(key.to_owned());
        Some(hit.blake3.clone())
    }

    fn store(&mut self, key: String, entry: StatEntry, read_started_ns: i128) {
        if entry.ctime_ns + RACY_WINDOW_NS < read_started_ns
            && entry.mtime_ns + RACY_WINDOW_NS < read_started_ns
        {
            self.used.insert(key.clone());
            self.entries.insert(key, entry);
        } else {
            self.entries.remove(&key);
        }
    }
}

/// Fingerprints the directory tree at `root`.
pub fn fingerprint_dir(
    root: &Path,
    opts: &FingerprintOptions,
    cache: &mut StatCache,
) -> Result<(TreeFingerprint, FingerprintStats), FingerprintError> {
    let entries = walk(root)?;
    let mut stats = FingerprintStats::default();
    let mut total = blake3::Hasher::new();
    total.update(b"imgraph-tree-v1\0");
    total.update(&[u8::from(opts.owners == Owners::Preserve)]);
    match opts.clamp_mtime {
        Some(t) => {
            total.update(&[1]);
            total.update(&t.to_le_bytes());
        }
        None => {
            total.update(&[0]);
        }
    }
    let contents = file_hashes(root, &entries, cache, &mut stats)?;
    let mut map = BTreeMap::new();
    for (we, content) in entries.iter().zip(&contents) {
        let e = &we.entry;
        let mut h = blake3::Hasher::new();
        h.update(&[e.kind.tag()]);
        h.update(&e.mode.to_le_bytes());
        if opts.owners == Owners::Preserve {
            h.update(&e.uid.to_le_bytes());
            h.update(&e.gid.to_le_bytes());
        }
        if let Some(created) = opts.clamp_mtime {
            h.update(&clamp_mtime(e.mtime, created).to_le_bytes());
        }
        match &e.kind {
            EntryKind::File => {
                h.update(&e.size.to_le_bytes());
                h.update(content.as_bytes());
            }
            EntryKind::Symlink { target } | EntryKind::Hardlink { target } => {
                h.update(&(target.len() as u64).to_le_bytes());
                h.update(target);
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                h.update(&major.to_le_bytes());
                h.update(&minor.to_le_bytes());
            }
            EntryKind::Dir | EntryKind::Fifo => {}
        }
        let entry_hash = h.finalize();
        total.update(&(e.path.len() as u64).to_le_bytes());
        total.update(&e.path);
        total.update(entry_hash.as_bytes());
        map.insert(display_bytes(&e.path), entry_hash.to_hex().to_string());
    }
    Ok((
        TreeFingerprint {
            digest: total.finalize().to_hex().to_string(),
            entries: map,
        },
        stats,
    ))
}

/// Content hashes of the regular files among `entries` (empty strings for the rest), in
/// the same order: from the stat cache when the walk's stat matches, otherwise read (on
/// [`HASH_THREADS`] threads when there is enough to read).
fn file_hashes(
    root: &Path,
    entries: &[WalkEntry],
    cache: &mut StatCache,
    stats: &mut FingerprintStats,
) -> Result<Vec<String>, FingerprintError> {
    let mut out = vec![String::new(); entries.len()];
    // (index, disk path, cache key, stat seen by the walk) of the files to read.
    let mut misses: Vec<(usize, PathBuf, Option<String>, StatEntry)> = Vec::new();
    for (i, we) in entries.iter().enumerate() {
        if we.entry.kind != EntryKind::File {
            continue;
        }
        let path = we.disk_path(root);
        let key = path.to_str().map(str::to_owned);
        let stat = StatEntry {
            size: we.entry.size,
            mtime_ns: we.stat.mtime_ns,
            ctime_ns: we.stat.ctime_ns,
            ino: we.stat.ino,
            blake3: String::new(),
        };
        if let Some(hash) = key.as_deref().and_then(|k| cache.lookup(k, &stat)) {
            stats.files_cached += 1;
            out[i] = hash;
        } else {
            misses.push((i, path, key, stat));
        }
    }
    if misses.is_empty() {
        return Ok(out);
    }

    let to_read: u64 = misses.iter().map(|m| m.3.size).sum();
    // Extra readers only from cores no other step is using (see `budget`).
    let extra = if misses.len() > 1 && to_read >= PARALLEL_READ_BYTES {
        crate::budget::global().extra(HASH_THREADS - 1)
    } else {
        crate::budget::global().extra(0)
    };
    let threads = 1 + extra.count();
    let next = AtomicUsize::new(0);
    let read_some = || {
        let mut buf = Vec::new();
        let mut done = Vec::new();
        loop {
            let j = next.fetch_add(1, Ordering::Relaxed);
            let Some((_, path, _, stat)) = misses.get(j) else {
                break;
            };
            let res = read_hash(path, stat, &mut buf);
            let failed = res.is_err();
            done.push((j, res));
            if failed {
                // Later files need not be read: the first error (in path order) wins.
                next.store(misses.len(), Ordering::Relaxed);
                break;
            }
        }
        done
    };
    let mut done = if threads == 1 {
        read_some()
    } else {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads).map(|_| s.spawn(read_some)).collect();
            let mut all = Vec::new();
            for w in workers {
                all.extend(w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            all
        })
    };
    done.sort_unstable_by_key(|d| d.0);
    for (j, res) in done {
        let (hash, n, started) = res?;
        let (i, _, key, stat) = &mut misses[j];
        stats.files_read += 1;
        stats.bytes_read += n;
        if let Some(key) = key.take() {
            let mut entry = stat.clone();
            entry.blake3.clone_from(&hash);
            cache.store(key, entry, started);
        }
        out[*i] = hash;
    }
    Ok(out)
}

/// Threads hashing the files the stat cache cannot vouch for.
const HASH_THREADS: usize = 2;

/// Below this many bytes to read, a second thread costs more than it saves.
const PARALLEL_READ_BYTES: u64 = 4 * 1024 * 1024;

/// Size of the read buffer, allocated only when a file is actually read.
const READ_BUF: usize = 256 * 1024;

/// The mtime a layer records for an entry: never later than `created`, never negative.
pub fn clamp_mtime(mtime: i64, created: u64) -> u64 {
    u64::try_from(mtime).unwrap_or(0).min(created)
}

/// Hex blake3 of a whole file (a tarball source, a command input), through the stat cache.
pub fn fingerprint_file(
    path: &Path,
    cache: &mut StatCache,
) -> Result<(String, FingerprintStats), FingerprintError> {
    let mut stats = FingerprintStats::default();
    let meta = std::fs::metadata(path).map_err(|source| FingerprintError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let stat = stat_entry(&meta, String::new());
    let key = path.to_str().map(str::to_owned);
    if let Some(hash) = key.as_deref().and_then(|k| cache.lookup(k, &stat)) {
        stats.files_cached += 1;
        return Ok((hash, stats));
    }
    let (hash, n, started) = read_hash(path, &stat, &mut Vec::new())?;
    stats.files_read += 1;
    stats.bytes_read += n;
    if let Some(key) = key {
        let mut entry = stat;
        entry.blake3.clone_from(&hash);
        cache.store(key, entry, started);
    }
    Ok((hash, stats))
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Reads and hashes one file that `stat` (from the walk or a `stat`) describes; returns
/// the hex hash, the bytes read and when the read started (for the racy-clean check).
///
/// The file is re-stat'ed after opening and after reading, so that a file swapped in or
/// written meanwhile is an error, not a silently wrong fingerprint. `buf` is grown to the
/// read size on first use and reused.
fn read_hash(
    path: &Path,
    stat: &StatEntry,
    buf: &mut Vec<u8>,
) -> Result<(String, u64, i128), FingerprintError> {
    let read_err = |source| FingerprintError::Read {
        path: path.to_path_buf(),
        source,
    };
    let started = now_ns();
    let mut file = File::open(path).map_err(read_err)?;
    let opened = file.metadata().map_err(read_err)?;
    if opened.ino() != stat.ino {
        return Err(FingerprintError::Changed {
            path: path.to_path_buf(),
        });
    }
    if buf.len() < READ_BUF {
        buf.resize(READ_BUF, 0);
    }
    let mut hasher = blake3::Hasher::new();
    let mut n_total = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        hasher.update(&buf[..n]);
        n_total += n as u64;
    }
    let after = file.metadata().map_err(read_err)?;
    let after = stat_entry(&after, String::new());
    if after.size != stat.size
        || after.mtime_ns != stat.mtime_ns
        || after.ctime_ns != stat.ctime_ns
        || after.ino != stat.ino
        || n_total != stat.size
    {
        return Err(FingerprintError::Changed {
            path: path.to_path_buf(),
        });
    }
    Ok((hasher.finalize().to_hex().to_string(), n_total, started))
}

fn stat_entry(meta: &std::fs::Metadata, blake3: String) -> StatEntry {
    StatEntry {
        size: meta.size(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        ino: meta.ino(),
        blake3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::test_fixture::{make_rootfs, set_all_mtimes};
    use std::time::Duration;

    const OLD: i64 = 1_600_000_000;

    /// Files must be older than the racy window before their hashes are cached.
    fn settle() {
        std::thread::sleep(Duration::from_millis(1100));
    }

    fn fp(
        root: &Path,
        opts: &FingerprintOptions,
        cache: &mut StatCache,
    ) -> (TreeFingerprint, FingerprintStats) {
        fingerprint_dir(root, opts, cache).unwrap()
    }

    #[test]
    fn edit_is_named_and_stat_cache_skips_reads() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        make_rootfs(&root, OLD);
        settle();
        let opts = FingerprintOptions::default();
        let mut cache = StatCache::new();
        let (first, s1) = fp(&root, &opts, &mut cache);
        // tool and tool-alias are one file: hashed once.
        assert_eq!(s1.files_read, 6, "{s1:?}");
        assert_eq!(s1.files_cached, 0);

        // The cache survives a JSON round trip, and a second pass reads nothing.
        let json = serde_json::to_string(&cache).unwrap();
        let mut cache: StatCache = serde_json::from_str(&json).unwrap();
        let (second, s2) = fp(&root, &opts, &mut cache);
        assert_eq!(first, second);
        assert_eq!(s2.files_read, 0, "{s2:?}");
        assert_eq!(s2.files_cached, 6);
        assert_eq!(s2.bytes_read, 0);

        // Same size, same mtime, different bytes: ctime/ino still give it away.
        std::fs::write(root.join("etc/hostname"), "imgrapH\n").unwrap();
        let old = std::time::UNIX_EPOCH + Duration::from_secs(OLD as u64);
        File::options()
            .write(true)
            .open(root.join("etc/hostname"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let (third, s3) = fp(&root, &opts, &mut cache);
        assert_eq!(s3.files_read, 1, "{s3:?}");
        assert_eq!(
            diff(&first, &third),
            vec![PathChange {
                path: "etc/hostname".into(),
                change: ChangeKind::Modified
            }]
        );
        assert_ne!(first.digest, third.digest);

        std::fs::write(root.join("etc/new"), "n").unwrap();
        std::fs::remove_file(root.join("etc/empty")).unwrap();
        let (fourth, _) = fp(&root, &opts, &mut cache);
        let d = diff(&third, &fourth);
        assert_eq!(
            d,
            vec![
                PathChange {
                    path: "etc/empty".into(),
                    change: ChangeKind::Removed
                },
                PathChange {
                    path: "etc/new".into(),
                    change: ChangeKind::Added
                },
            ],
            "`etc` itself is unchanged: mtimes are not hashed without clamp_mtime"
        );
    }

    #[test]
    fn owners_and_mtime_policy() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        make_rootfs(&root, OLD);
        let mut cache = StatCache::new();
        let plain = FingerprintOptions::default();
        let keep = FingerprintOptions {
            owners: Owners::Preserve,
            clamp_mtime: None,
        };
        let (a, _) = fp(&root, &plain, &mut cache);
        let (b, _) = fp(&root, &keep, &mut cache);
        assert_ne!(
            a.digest, b.digest,
            "the owners policy is part of the digest"
        );
        if std::os::unix::fs::chown(root.join("etc/hostname"), Some(42), None).is_ok() {
            let (a2, _) = fp(&root, &plain, &mut cache);
            let (b2, _) = fp(&root, &keep, &mut cache);
            assert_eq!(a.digest, a2.digest, "owners ignored when not preserved");
            assert_eq!(diff(&b, &b2).len(), 1);
        }

        // created earlier than every file: touching files does not matter...
        let early = FingerprintOptions {
            owners: Owners::Root,
            clamp_mtime: Some(1_000_000_000),
        };
        let late = FingerprintOptions {
            owners: Owners::Root,
            clamp_mtime: Some(2_000_000_000),
        };
        let (e1, _) = fp(&root, &early, &mut cache);
        let (l1, _) = fp(&root, &late, &mut cache);
        set_all_mtimes(&root, OLD + 5);
        let (e2, _) = fp(&root, &early, &mut cache);
        let (l2, _) = fp(&root, &late, &mut cache);
        assert_eq!(e1, e2);
        // ...but with a later created time the mtimes reach the layer, so the digest.
        assert_ne!(l1.digest, l2.digest);
    }

    #[test]
    fn file_fingerprint_uses_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rootfs.tar.xz");
        std::fs::write(&path, vec![7u8; 300_000]).unwrap();
        let mut cache = StatCache::new();
        let (h1, s1) = fingerprint_file(&path, &mut cache).unwrap();
        assert_eq!(h1, blake3::hash(&[7u8; 300_000]).to_hex().to_string());
        assert_eq!(s1.files_read, 1);
        // Just written: too recent to trust, so not cached yet.
        let (_, s2) = fingerprint_file(&path, &mut cache).unwrap();
        assert_eq!(s2.files_read, 1);
        settle();
        fingerprint_file(&path, &mut cache).unwrap();
        let (h3, s3) = fingerprint_file(&path, &mut cache).unwrap();
        assert_eq!((h3, s3.files_read, s3.files_cached), (h1, 0, 1));
        assert_eq!(cache.len(), 1);
        let mut fresh: StatCache =
            serde_json::from_str(&serde_json::to_string(&cache).unwrap()).unwrap();
        fresh.prune_unused();
        assert!(fresh.is_empty());

        let err = fingerprint_file(&dir.path().join("missing.tar"), &mut cache).unwrap_err();
        assert!(err.to_string().contains("missing.tar"), "{err}");
    }
}
