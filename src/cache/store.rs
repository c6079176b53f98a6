//! The cache folder's layout and the reads and writes on it.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::atomic::write_atomic;
use super::blob::{BlobWriter, Descriptor};
use super::verified_reader::VerifiedReader;
use std::io::Write as _;

use crate::digest::HashingWriter;

use super::{io_err, CacheError};

/// What a step produced, stored under its key, and as the step's last record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActionRecord {
    /// The step id it was produced for (the same key may serve several steps).
    pub step: String,
    /// The key's inputs as JSON, so a later miss can say what changed.
    pub inputs: serde_json::Value,
    /// The key (blake3 of the canonical inputs).
    pub key: String,
    /// The step's outputs (typed per step kind).
    pub outputs: serde_json::Value,
    /// Blobs the outputs name; the entry is only valid while they are all present.
    #[serde(default)]
    pub blobs: Vec<String>,
}

/// An action entry's file and what it holds (or why it could not be read).
pub type ActionFile = (PathBuf, Result<ActionRecord, CacheError>);

/// An open cache folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) a cache folder.
    pub fn open(root: &Path) -> Result<Store, CacheError> {
        for sub in ["blobs/sha256", "actions", "steps", "tmp", "state", "logs"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|source| match super::is_read_only(&source) {
                true => CacheError::ReadOnly {
                    path: root.to_path_buf(),
                    source,
                },
                false => io_err("creating", &dir)(source),
            })?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// Opens a cache folder for reading only: nothing is created (for `plan`).
    pub fn open_read_only(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the cache's exclusive lock, waiting for another imgraph to finish.
    ///
    /// A wait longer than a second is announced on stderr with the holder's pid (as
    /// cargo does), so a second build does not look hung; the holder writes its pid
    /// into the lock file once it has the lock.
    pub fn lock(&self) -> Result<File, CacheError> {
        use std::fs::TryLockError;
        use std::time::{Duration, Instant};

        let path = self.root.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| match super::is_read_only(&source) {
                true => CacheError::ReadOnly {
                    path: self.root.clone(),
                    source,
                },
                false => io_err("opening", &path)(source),
            })?;
        let lock_err = |source| CacheError::Lock {
            path: path.clone(),
            source,
        };
        let announce_at = Instant::now() + Duration::from_secs(1);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::Error(source)) => return Err(lock_err(source)),
                Err(TryLockError::WouldBlock) if Instant::now() < announce_at => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok())
                        .map_or_else(|| "another imgraph".to_string(), |pid| format!("pid {pid}"));
                    crate::notice::notice(&format!(
                        "waiting for the cache lock held by {holder} ({})",
                        path.display()
                    ));
                    file.lock().map_err(lock_err)?;
                    break;
                }
            }
        }
        // Best effort: the pid only feeds the message above.
        let _ = file.set_len(0).and_then(|()| {
            io::Write::write_all(&mut &file, format!("{}\n", std::process::id()).as_bytes())
        });
        Ok(file)
    }

    /// For readers of a cache they cannot write (`export`, `cache verify`'s
    /// check): a shared lock on `cache/lock`, so no build writes while they read.
    /// `None` when there is no lock file to hold (a cache never built, or one
    /// copied without it), which leaves nothing to wait for.
    pub fn lock_shared(&self) -> Result<Option<File>, CacheError> {
        let path = self.root.join("lock");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("opening", &path)(e)),
        };
        file.lock_shared().map_err(|source| CacheError::Lock {
            path: path.clone(),
            source,
        })?;
        Ok(Some(file))
    }

    /// A writer that lands in `blobs/sha256/` when finished.
    pub fn blob_writer(&self) -> Result<BlobWriter, CacheError> {
        BlobWriter::new(&self.root.join("tmp"), &self.root.join("blobs/sha256"))
    }

    /// Stores a small blob (JSON documents).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Descriptor, CacheError> {
        let mut w = self.blob_writer()?;
        io::Write::write_all(&mut w, bytes).map_err(io_err("writing", self.root.join("tmp")))?;
        w.finish()
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Whether a blob is present (not verified).
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Reads a whole (small) blob, checking its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, CacheError> {
        let path = self.blob_path(digest);
        let bytes = std::fs::read(&path).map_err(|e| missing_or_io(e, digest, &path))?;
        super::read_log::note(digest);
        self.check(digest, crate::digest::sha256(&bytes), &path)?;
        Ok(bytes)
    }

    /// Opens a blob to read it once, hashed as it is read: call
    /// [`VerifiedReader::finish`] before trusting what was read.
    pub fn open_verified(&self, digest: &str) -> Result<VerifiedReader, CacheError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| missing_or_io(e, digest, &path))?;
        super::read_log::note(digest);
        Ok(VerifiedReader::new(file, path, digest))
    }

    /// Streams a blob through sha256 to check it, without holding it in memory.
    pub fn verify_blob(&self, digest: &str) -> Result<u64, CacheError> {
        self.stream_verified(digest, &mut io::sink(), Path::new("/dev/null"))
    }

    /// Copies a blob's bytes to `out` while hashing them; fails (and drops the blob)
    /// when they do not match its digest.
    fn stream_verified(
        &self,
        digest: &str,
        out: &mut dyn io::Write,
        out_path: &Path,
    ) -> Result<u64, CacheError> {
        let path = self.blob_path(digest);
        let mut file = File::open(&path).map_err(|e| missing_or_io(e, digest, &path))?;
        super::read_log::note(digest);
        let mut out = HashingWriter::new(out);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(io_err("reading", &path))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(io_err("writing", out_path))?;
        }
        let (_, found, size) = out.finish();
        self.check(digest, found, &path)?;
        Ok(size)
    }

    /// Copies a blob to `dest` (atomically), checking its digest on the way:
    /// a corrupt cache blob is never exported.
    pub fn copy_blob_to(&self, digest: &str, dest: &Path) -> Result<u64, CacheError> {
        let dir = crate::atomic_file::parent_dir(dest);
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let mut tmp = crate::atomic_file::AtomicFile::create(dest)
            .map_err(io_err("creating a temp file in", dir))?;
        let size = self.stream_verified(digest, &mut tmp, dest)?;
        tmp.commit(false).map_err(io_err("renaming into", dest))?;
        Ok(size)
    }

    fn check(&self, expected: &str, found: String, path: &Path) -> Result<(), CacheError> {
        if found == expected {
            return Ok(());
        }
        let removed = std::fs::remove_file(path).is_ok();
        Err(CacheError::DigestMismatch {
            expected: expected.to_string(),
            found,
            path: path.to_path_buf(),
            removed,
        })
    }

    /// Looks up an action entry; one whose blobs are gone counts as absent.
    pub fn action(&self, key: &str) -> Result<Option<ActionRecord>, CacheError> {
        let record: Option<ActionRecord> = self.read_json(&self.action_path(key))?;
        Ok(record.filter(|r| r.blobs.iter().all(|b| self.has_blob(b))))
    }

    /// Records an action entry. Call only after its blobs are finished.
    pub fn put_action(&self, record: &ActionRecord) -> Result<(), CacheError> {
        self.write_json(&self.action_path(&record.key), record)?;
        self.write_json(&self.step_path(&record.step), record)
    }

    /// Records `record` as its step's latest, without touching the action cache
    /// (a fresh step whose key was built before under other inputs).
    pub fn put_last(&self, record: &ActionRecord) -> Result<(), CacheError> {
        self.write_json(&self.step_path(&record.step), record)
    }

    /// Whether a state file exists.
    pub fn has_state(&self, name: &str) -> bool {
        self.root.join("state").join(name).is_file()
    }

    /// The last record written for a step id, whatever its key: what "changed" is measured against.
    pub fn last_record(&self, step: &str) -> Result<Option<ActionRecord>, CacheError> {
        self.read_json(&self.step_path(step))
    }

    /// The key of a step's last record, parsing nothing else: a no-op build asks this
    /// of every fresh step, and the inputs and outputs are most of each record.
    pub fn last_key(&self, step: &str) -> Option<String> {
        #[derive(Deserialize)]
        struct KeyOnly {
            key: String,
        }
        let record: Option<KeyOnly> = self.read_json(&self.step_path(step)).ok()?;
        record.map(|r| r.key)
    }

    /// Reads a JSON file under `state/`.
    pub fn state<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, CacheError> {
        self.read_json(&self.root.join("state").join(name))
    }

    /// The raw bytes of a state file, if it exists.
    pub fn state_bytes(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join("state").join(name)).ok()
    }

    /// Writes raw bytes as a state file (atomically).
    pub fn put_state_bytes(&self, name: &str, bytes: &[u8]) -> Result<(), CacheError> {
        write_atomic(&self.root.join("state").join(name), bytes, &self.tmp_dir())
    }

    /// Writes a JSON file under `state/`.
    pub fn put_state<T: Serialize>(&self, name: &str, value: &T) -> Result<(), CacheError> {
        self.write_json(&self.root.join("state").join(name), value)
    }

    /// A file for step logs: the step id made a file name, plus a short hash of the
    /// id, because flattening `/` and `:` alone maps `rootfs:a/b:one/amd64` and
    /// `rootfs:a_b:one/amd64` (two images) to the same name.
    pub fn log_path(&self, step: &str) -> PathBuf {
        self.root.join("logs").join(format!(
            "{}-{}.log",
            step.replace(['/', ':', '@'], "_"),
            &blake3::hash(step.as_bytes()).to_hex()[..8]
        ))
    }

    /// A scratch folder inside the cache (same filesystem as the blobs).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Every blob in the store: (digest, size).
    pub fn blobs(&self) -> Result<Vec<(String, u64)>, CacheError> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in read_dir(&dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((format!("sha256:{name}"), size));
        }
        out.sort();
        Ok(out)
    }

    /// Every action entry file, parsed where it parses.
    pub fn actions(&self) -> Result<Vec<ActionFile>, CacheError> {
        let mut out = Vec::new();
        for shard in read_dir(&self.root.join("actions"))? {
            for entry in read_dir(&shard.path())? {
                let path = entry.path();
                // Entries are `<key>.json`; anything else (a stray dotfile) is not one.
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let record = self.read_json::<ActionRecord>(&path).and_then(|r| {
                    r.ok_or_else(|| CacheError::Corrupt {
                        path: path.clone(),
                        message: "vanished".into(),
                    })
                });
                out.push((path, record));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Files under `steps/`, `state/`, `logs/` and `rootfs/` (for gc): path and size.
    pub fn side_files(&self) -> Vec<PathBuf> {
        ["steps", "state", "logs", "rootfs"]
            .iter()
            .flat_map(|d| read_dir(&self.root.join(d)).unwrap_or_default())
            .map(|e| e.path())
            .collect()
    }

    /// The file a step's last record lives in.
    pub fn step_record_path(&self, step: &str) -> PathBuf {
        self.step_path(step)
    }

    /// The file a state entry lives in.
    pub fn state_path(&self, name: &str) -> PathBuf {
        self.root.join("state").join(name)
    }

    /// The action entry file of a key.
    pub fn action_file(&self, key: &str) -> PathBuf {
        self.action_path(key)
    }

    /// Removes temp files left by killed builds. Call with the lock held.
    pub fn clear_tmp(&self) {
        for entry in read_dir(&self.tmp_dir()).unwrap_or_default() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }

    fn action_path(&self, key: &str) -> PathBuf {
        self.root
            .join("actions")
            .join(&key[..2.min(key.len())])
            .join(format!("{key}.json"))
    }

    fn step_path(&self, step: &str) -> PathBuf {
        let name = blake3::hash(step.as_bytes()).to_hex();
        self.root
            .join("steps")
            .join(format!("{}.json", &name[..32]))
    }

    fn read_json<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, CacheError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| CacheError::Corrupt {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading", path)(e)),
        }
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(value).map_err(|e| CacheError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        write_atomic(path, &bytes, &self.tmp_dir())
    }
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, CacheError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd.filter_map(Result::ok).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("listing", dir)(e)),
    }
}

fn missing_or_io(e: io::Error, digest: &str, path: &Path) -> CacheError {
    if e.kind() == io::ErrorKind::NotFound {
        CacheError::Missing {
            digest: digest.to_string(),
            path: path.to_path_buf(),
        }
    } else {
        io_err("reading", path)(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_of_an_image_path_and_a_flat_name_differ() {
        let store = Store::open_read_only(Path::new("/cache"));
        let path = store.log_path("rootfs:a/b:one/amd64");
        assert_ne!(path, store.log_path("rootfs:a_b:one/amd64"));
        assert_ne!(path, store.log_path("rootfs:a:b_one/amd64"));
        let shown = path.to_string_lossy();
        assert!(
            shown.starts_with("/cache/logs/rootfs_a_b_one_amd64-"),
            "{shown}"
        );
    }

    #[test]
    fn blobs_are_named_by_digest_and_checked_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let desc = store.put_bytes(b"hello").unwrap();
        assert_eq!(
            desc.digest,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(store.read_blob(&desc.digest).unwrap(), b"hello");
        std::fs::write(store.blob_path(&desc.digest), b"jello").unwrap();
        let err = store.read_blob(&desc.digest).unwrap_err();
        assert!(matches!(err, CacheError::DigestMismatch { .. }), "{err}");
        assert!(!store.has_blob(&desc.digest), "a corrupt blob is dropped");
        assert_eq!(
            std::fs::read_dir(store.tmp_dir()).unwrap().count(),
            0,
            "no temp files left"
        );
    }

    #[test]
    fn an_action_whose_blob_is_gone_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let desc = store.put_bytes(b"x").unwrap();
        let record = ActionRecord {
            step: "config:a:b/amd64".into(),
            inputs: serde_json::json!({}),
            key: "ab12".into(),
            outputs: serde_json::json!({}),
            blobs: vec![desc.digest.clone()],
        };
        store.put_action(&record).unwrap();
        assert_eq!(store.action("ab12").unwrap(), Some(record.clone()));
        std::fs::remove_file(store.blob_path(&desc.digest)).unwrap();
        assert_eq!(store.action("ab12").unwrap(), None);
        assert_eq!(store.last_record("config:a:b/amd64").unwrap(), Some(record));
    }
}
