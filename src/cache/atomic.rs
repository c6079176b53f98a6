//! Atomic small-file writes: temp file beside the target, fsync, rename, fsync dir.

use std::io::Write;
use std::path::Path;

use super::{io_err, CacheError};

/// Replaces `path` with `bytes` so that readers see the old or the new file, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err("creating a temp file in", dir))?;
    tmp.write_all(bytes)
        .map_err(io_err("writing", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err("syncing", tmp.path()))?;
    tmp.persist(path).map_err(|e| CacheError::Io {
        action: "renaming into",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(dir);
    Ok(())
}

/// Makes a rename durable; best effort (not every filesystem allows opening a dir).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
