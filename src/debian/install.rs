//! Installing locked `.deb`s into a root filesystem without dpkg, root or
//! emulation: every package's data merged into one tree, plus what dpkg and the
//! maintainer scripts would have left (see the README's list), written as one
//! deterministic tarball that the layer step reads like any tarball source.

use std::path::{Path, PathBuf};

use crate::manifest::lock::LockedPackage;

/// What [`install`] built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Entries in the tarball.
    pub entries: u64,
    /// Packages installed.
    pub packages: usize,
}

/// Installing failed; nothing is left at the output path.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Not implemented yet.
    #[error("building a debian rootfs from images.lock is not implemented yet")]
    NotYet,
    /// Reading a `.deb`.
    #[error(transparent)]
    Deb(#[from] super::deb::DebError),
    /// Two packages ship the same path and neither Replaces the other.
    #[error("{path} is shipped by both {first} and {second}, and neither declares Replaces on the other")]
    Conflict {
        /// The path.
        path: String,
        /// The package installed first.
        first: String,
        /// The other.
        second: String,
    },
    /// Writing the tarball.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Installs `debs` (each locked package with its verified `.deb` file) for
/// `debian_arch` into the tarball `out` (written atomically), with every mtime
/// clamped to `created`. `temp_dir` is scratch space on the cache's filesystem.
pub fn install(
    debs: &[(LockedPackage, PathBuf)],
    debian_arch: &str,
    created: u64,
    temp_dir: &Path,
    out: &Path,
) -> Result<Installed, InstallError> {
    let _ = (debs, debian_arch, created, temp_dir, out);
    Err(InstallError::NotYet)
}
