//! The one error type the commands return, rendered once at the top with its exit
//! status: 2 for bad input (manifest, selector, flags), 1 for a failed build or push.

use std::path::PathBuf;

use crate::cache::CacheError;
use crate::exec::StepFailure;
use crate::manifest::{ManifestError, SelectorError};
use crate::oci::docker_archive::ArchiveError;
use crate::oci::layout::LayoutError;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `images.toml` is unreadable or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A selector names nothing.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// Flags that do not fit together.
    #[error("{0}")]
    Usage(String),
    /// The cache folder.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Steps failed; each is named.
    #[error("{}", render_failures(.0))]
    Steps(Vec<StepFailure>),
    /// Writing an OCI layout.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Writing a docker archive.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// `verify` found a difference.
    #[error("{0}")]
    Verify(String),
    /// A file outside the cache.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether a cache blob failed its digest check (and was dropped).
    pub fn is_corrupt_blob(&self) -> bool {
        let corrupt = |e: &CacheError| matches!(e, CacheError::DigestMismatch { .. });
        match self {
            Error::Cache(e)
            | Error::Layout(LayoutError::Cache(e))
            | Error::Archive(ArchiveError::Cache(e)) => corrupt(e),
            Error::Steps(failures) => failures.iter().any(StepFailure::is_corrupt_blob),
            _ => false,
        }
    }

    /// 2 for bad input, 1 for everything that went wrong while working.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Manifest(_) | Error::Selector(_) | Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

fn render_failures(failures: &[StepFailure]) -> String {
    let mut out = match failures.len() {
        1 => String::from("1 step failed:"),
        n => format!("{n} steps failed:"),
    };
    for f in failures {
        out.push_str(&format!("\n  {}: {}", f.step, f.error));
    }
    out
}
