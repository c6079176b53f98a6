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
    #[error("cache blob {expected} is corrupt (its content hashes to {found}); it was removed and will be rebuilt: {}", path.display())]
    DigestMismatch {
        /// The digest the blob is stored under.
        expected: String,
        /// What its bytes hash to.
        found: String,
        /// Where it was.
        path: PathBuf,
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
    /// Another imgraph holds the cache lock and we could not wait for it.
    #[error("cannot lock the cache {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
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
