//! Files written whole or not at all: a temp file beside the target, renamed over
//! it once complete, so a reader (or a build killed half-way) never sees part of
//! one. Exports, docker archives, `images.lock` and kept root filesystems are
//! written this way; their mode is 0644, for people and other tools, not the temp
//! file's 0600.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// The folder a path lives in (`.` for a bare name, whose `parent()` is empty).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A file being written; it replaces its target on [`AtomicFile::commit`] and
/// vanishes if dropped before.
pub struct AtomicFile {
    tmp: NamedTempFile,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts writing `path` (its folder must exist).
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent_dir(path))?;
        Ok(AtomicFile {
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// The open temp file.
    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    /// Makes it the target: mode 0644, synced first when `sync` (large files a
    /// later step relies on), then renamed over the target.
    pub fn commit(self, sync: bool) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let file = self.tmp.as_file();
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        if sync {
            file.sync_all()?;
        }
        self.tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// Replaces `path` with `bytes`, atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_file_leaves_nothing_and_a_committed_one_replaces_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"old").unwrap();
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(dir.path().read_dir().unwrap().count(), 1, "temp file left");
        write_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(parent_dir(Path::new("bare")), Path::new("."));
    }
}
