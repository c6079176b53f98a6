//! The cache folder: content-addressed blobs, the action cache (step key ->
//! outputs), the last record of every step (for "why is it dirty") and build state.
//!
//! Every write is a temp file in the same filesystem, fsynced, then renamed, so
//! a killed build never leaves a half-written blob or entry behind, and action
//! entries are written only after the blobs they name.

mod atomic;
mod blob;
pub mod read_log;
mod store;
mod verified_reader;

pub use atomic::write_atomic;
pub use blob::{BlobWriter, Descriptor};
pub use store::{ActionFile, ActionRecord, Store};
pub use verified_reader::VerifiedReader;

use std::path::PathBuf;

/// A cache operation that failed; every variant names the path or digest.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading or writing a cache file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`writing`, `reading`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A blob's content does not match its name: disk corruption or tampering.
    #[error("cache blob {expected} is corrupt (its content hashes to {found}); {}: {}", if *.removed { "it was removed and will be rebuilt" } else { "it could not be removed (a read-only cache?)" }, path.display())]
    DigestMismatch {
        /// The digest the blob is stored under.
        expected: String,
        /// What its bytes hash to.
        found: String,
        /// Where it was.
        path: PathBuf,
        /// Whether it is gone now (not on a cache this user cannot write).
        removed: bool,
    },
    /// A blob the cache should have is missing.
    #[error("cache blob {digest} is missing ({})", path.display())]
    Missing {
        /// The digest.
        digest: String,
        /// Where it should be.
        path: PathBuf,
    },
    /// A JSON entry could not be decoded.
    #[error("cache entry {} is unreadable: {message}", path.display())]
    Corrupt {
        /// The entry.
        path: PathBuf,
        /// The decoder's complaint.
        message: String,
    },
    /// The cache cannot be written (its folder is read-only for this user, or on
    /// a read-only filesystem) and the command needs to write it.
    #[error("the cache {} is read-only here ({source}); this command writes to it\n  = help: point --cache (or IMGRAPH_CACHE) at a folder you can write (a copy of this one keeps its work); plan, explain, graph, check, export of what is built and the check of `cache verify` read a read-only cache", path.display())]
    ReadOnly {
        /// The cache folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another imgraph holds the cache lock and we could not wait for it.
    #[error("cannot lock the cache {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Whether an OS error means "you may not write here".
pub fn is_read_only(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.into();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}
