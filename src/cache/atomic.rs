//! Atomic small-file writes: temp file beside the target, then rename.
//!
//! Small files are not fsynced: a rename is atomic for every reader and survives
//! `kill -9`; after a power loss a torn entry fails to parse and counts as a cache
//! miss (and a torn blob fails its digest check), so the worst case is a rebuild,
//! never a wrong image. Syncing each of the thousands of small entries of a large
//! matrix made cold builds spend most of their time in fsync.

use std::io::Write;
use std::path::Path;

use super::{io_err, CacheError};

/// Replaces `path` with `bytes` so that readers see the old or the new file, never a part.
/// The temp file is made in `tmp_dir` (same filesystem), where a build killed half-way
/// leaves it for the next build to clear, instead of beside the entries.
pub fn write_atomic(path: &Path, bytes: &[u8], tmp_dir: &Path) -> Result<(), CacheError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(tmp_dir)
        .map_err(io_err("creating a temp file in", tmp_dir))?;
    tmp.write_all(bytes)
        .map_err(io_err("writing", tmp.path()))?;
    tmp.persist(path).map_err(|e| CacheError::Io {
        action: "renaming into",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}
