//! Deterministic walk of a rootfs directory.
//!
//! The layer digest must not depend on `readdir` order, on the filesystem, or on how the
//! tree was copied, so every entry is collected and sorted by its path bytes. Parents sort
//! before their children because a parent's path is a prefix of theirs.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use crate::rootfs::{Entry, EntryKind};

/// Errors of the directory walk; each names the path it failed on.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The root given is missing or not a directory.
    #[error("rootfs {path} is not a directory")]
    NotADirectory {
        /// The root that was given.
        path: PathBuf,
    },
    /// `lstat` failed.
    #[error("cannot stat {path}")]
    Stat {
        /// The path that could not be stat'ed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Listing a directory failed.
    #[error("cannot read directory {path}")]
    ReadDir {
        /// The directory that could not be listed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// What `lstat` said about a file, beyond what goes into the tar header.
///
/// The stat cache of the fingerprint compares these to decide that a file's content is
/// unchanged without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatInfo {
    /// Device of the filesystem holding the file.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time in nanoseconds since the epoch.
    pub ctime_ns: i128,
    /// Number of hard links.
    pub nlink: u64,
}

/// One entry found by [`walk`]: the layer entry plus its stat data.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    /// The entry as the layer writer sees it.
    pub entry: Entry,
    /// Stat data for the stat cache and for detecting files that change mid-build.
    pub stat: StatInfo,
}

impl WalkEntry {
    /// Absolute (root-joined) path of the entry on disk.
    pub fn disk_path(&self, root: &Path) -> PathBuf {
        root.join(std::ffi::OsStr::from_bytes(&self.entry.path))
    }
}

/// Lists every entry below `root` (the root itself excluded), sorted by path bytes.
///
/// Symlinks are recorded with their target and never followed, so the walk cannot leave
/// the root. Sockets are skipped: they cannot be stored in a tar and are runtime state.
/// The second and later names (in sorted order) of a regular file with several links
/// become [`EntryKind::Hardlink`] entries pointing at the first, which is what `tar`
/// extraction needs (the target must already exist).
pub fn walk(root: &Path) -> Result<Vec<WalkEntry>, WalkError> {
    let meta = fs::metadata(root).map_err(|source| WalkError::Stat {
        path: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(WalkError::NotADirectory {
            path: root.to_path_buf(),
        });
    }

    // Directories still to list, as paths relative to the root, shared by the workers.
    let queue = WorkQueue {
        state: Mutex::new(QueueState {
            dirs: vec![Vec::new()],
            busy: 0,
            failed: false,
        }),
        ready: Condvar::new(),
    };
    let results: Vec<Result<Vec<WalkEntry>, WalkError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WALK_THREADS)
            .map(|_| s.spawn(|| walk_worker(root, &queue)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut entries = Vec::new();
    for r in results {
        entries.append(&mut r?);
    }

    entries.sort_unstable_by(|a, b| a.entry.path.cmp(&b.entry.path));
    mark_hardlinks(&mut entries);
    Ok(entries)
}

/// Threads listing directories: two hide most of the `getdents`/`statx` latency; more
/// contend on the directory inodes' locks without helping.
const WALK_THREADS: usize = 2;

struct QueueState {
    dirs: Vec<Vec<u8>>,
    /// Directories taken from `dirs` and still being listed (they may push more).
    busy: usize,
    /// A worker failed: the others stop.
    failed: bool,
}

struct WorkQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

impl WorkQueue {
    /// The next directory to list, or `None` once every directory has been listed.
    fn next(&self) -> Option<Vec<u8>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if st.failed {
                return None;
            }
            if let Some(d) = st.dirs.pop() {
                st.busy += 1;
                return Some(d);
            }
            if st.busy == 0 {
                return None;
            }
            st = self.ready.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Hands over the subdirectories found in one directory and marks it done.
    fn finish(&self, found: &mut Vec<Vec<u8>>, failed: bool) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.dirs.append(found);
        st.busy -= 1;
        st.failed |= failed;
        drop(st);
        self.ready.notify_all();
    }
}

fn walk_worker(root: &Path, queue: &WorkQueue) -> Result<Vec<WalkEntry>, WalkError> {
    let mut entries = Vec::new();
    let mut found = Vec::new();
    while let Some(rel_dir) = queue.next() {
        let res = list_dir(root, &rel_dir, &mut entries, &mut found);
        queue.finish(&mut found, res.is_err());
        res?;
    }
    Ok(entries)
}

/// Lists one directory into `entries`, pushing its subdirectories onto `subdirs`.
fn list_dir(
    root: &Path,
    rel_dir: &[u8],
    entries: &mut Vec<WalkEntry>,
    subdirs: &mut Vec<Vec<u8>>,
) -> Result<(), WalkError> {
    let dir = root.join(std::ffi::OsStr::from_bytes(rel_dir));
    let read = fs::read_dir(&dir).map_err(|source| WalkError::ReadDir {
        path: dir.clone(),
        source,
    })?;
    for child in read {
        let child = child.map_err(|source| WalkError::ReadDir {
            path: dir.clone(),
            source,
        })?;
        let name = child.file_name();
        let mut rel = Vec::with_capacity(rel_dir.len() + 1 + name.len());
        rel.extend_from_slice(rel_dir);
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        // `DirEntry::metadata` is an `lstat` relative to the open directory (fstatat), so
        // the kernel does not resolve the whole path again for every entry.
        let meta = child.metadata().map_err(|source| WalkError::Stat {
            path: child.path(),
            source,
        })?;
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            EntryKind::File
        } else if ft.is_dir() {
            subdirs.push(rel.clone());
            EntryKind::Dir
        } else if ft.is_symlink() {
            let disk = child.path();
            let target = fs::read_link(&disk).map_err(|source| WalkError::Stat {
                path: disk.clone(),
                source,
            })?;
            EntryKind::Symlink {
                target: target.into_os_string().into_vec(),
            }
        } else if ft.is_char_device() {
            let (major, minor) = split_dev(meta.rdev());
            EntryKind::CharDevice { major, minor }
        } else if ft.is_block_device() {
            let (major, minor) = split_dev(meta.rdev());
            EntryKind::BlockDevice { major, minor }
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            // Sockets (and anything unknown) are not part of an image.
            warn_skipped(child.path(), ft.is_socket());
            continue;
        };
        let size = if kind == EntryKind::File {
            meta.size()
        } else {
            0
        };
        entries.push(WalkEntry {
            entry: Entry {
                path: rel,
                kind,
                mode: meta.mode() & 0o7777,
                uid: u64::from(meta.uid()),
                gid: u64::from(meta.gid()),
                size,
                mtime: meta.mtime(),
            },
            stat: StatInfo {
                dev: meta.dev(),
                ino: meta.ino(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
                nlink: meta.nlink(),
            },
        });
    }
    Ok(())
}

/// Paths already warned about: a rootfs is walked for its fingerprint and again for
/// its layer, and one warning per path is enough.
static SKIPPED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Says (once per path) that an entry is left out of the image, so a socket a service
/// left behind does not vanish silently.
fn warn_skipped(path: PathBuf, socket: bool) {
    let mut seen = SKIPPED.lock().unwrap_or_else(|p| p.into_inner());
    if seen.insert(path.clone()) {
        let what = if socket {
            "socket"
        } else {
            "file of unknown type"
        };
        crate::notice::notice(&format!(
            "warning: skipping {what} {}: it cannot be stored in an image layer",
            path.display()
        ));
    }
}

/// Turns later names of multiply-linked regular files into hardlink entries.
fn mark_hardlinks(entries: &mut [WalkEntry]) {
    let mut first: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for e in entries.iter_mut() {
        if e.entry.kind != EntryKind::File || e.stat.nlink <= 1 {
            continue;
        }
        match first.get(&(e.stat.dev, e.stat.ino)) {
            Some(target) => {
                e.entry.kind = EntryKind::Hardlink {
                    target: target.clone(),
                };
                e.entry.size = 0;
            }
            None => {
                first.insert((e.stat.dev, e.stat.ino), e.entry.path.clone());
            }
        }
    }
}

/// Splits a Linux `dev_t` into major and minor numbers (glibc's encoding).
fn split_dev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff);
    // Both masks keep at most 32 bits.
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::test_fixture::make_rootfs;
    use std::os::unix::fs::symlink;

    #[test]
    fn walk_is_sorted_and_typed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        make_rootfs(&root, 1_600_000_000);
        // A symlink to a directory outside the root, and a loop: neither is followed.
        symlink(dir.path(), root.join("outside")).unwrap();
        symlink(".", root.join("usr/loop")).unwrap();
        // Sockets are skipped; `a-b` sorts between `a` and `a/x` by bytes.
        let _sock = std::os::unix::net::UnixListener::bind(root.join("var/sock")).unwrap();
        std::fs::create_dir(root.join("a")).unwrap();
        std::fs::write(root.join("a/x"), "").unwrap();
        std::fs::write(root.join("a-b"), "").unwrap();

        let entries = walk(&root).unwrap();
        let paths: Vec<String> = entries.iter().map(|e| e.entry.display_path()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert_eq!(&paths[..3], ["a", "a-b", "a/x"]);
        assert!(!paths.iter().any(|p| p == "var/sock"));
        assert!(!paths
            .iter()
            .any(|p| p.starts_with("outside/") || p.starts_with("usr/loop/")));
        let get = |p: &str| {
            &entries
                .iter()
                .find(|e| e.entry.path == p.as_bytes())
                .unwrap()
                .entry
        };
        assert_eq!(get("usr/bin/tool").kind, EntryKind::File);
        assert_eq!(get("usr/bin/tool").size, 4096);
        assert_eq!(
            get("usr/bin/tool-alias").kind,
            EntryKind::Hardlink {
                target: b"usr/bin/tool".to_vec()
            }
        );
        assert_eq!(get("usr/bin/tool-alias").size, 0);
        assert_eq!(get("usr/bin/su").mode, 0o4755);
        assert_eq!(get("var/empty").mode, 0o1777);
        assert_eq!(get("var/fifo").kind, EntryKind::Fifo);
        assert_eq!(
            get("outside").kind,
            EntryKind::Symlink {
                target: dir.path().as_os_str().as_bytes().to_vec()
            }
        );
    }

    #[test]
    fn root_must_be_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("file");
        std::fs::write(&f, "").unwrap();
        assert!(matches!(walk(&f), Err(WalkError::NotADirectory { .. })));
        let err = walk(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
