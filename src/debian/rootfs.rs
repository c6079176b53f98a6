//! A `debian` root filesystem from the lock: the locked `.deb`s fetched into the
//! cache, each checked against the lock as the installer reads it, and installed
//! into one tarball.
//!
//! `fetch_debs` trusts a `.deb` already in the cache as present (it was verified
//! when it was fetched); the check that matters is the one made on the bytes
//! installed, so [`install::open_locked`] hashes each `.deb` as it parses it. A
//! cached `.deb` that no longer matches the lock (changed on disk, by accident or
//! not) is dropped from the cache, fetched again from the mirror (verified as it
//! streams), named in a notice, and the good one installed.

use std::path::Path;

use crate::cache::Store;
use crate::debian::deb::DebError;
use crate::debian::debs::{fetch_debs, DebFetchError, MirrorSet};
use crate::debian::install::{self, InstallError, Installed};
use crate::debian::scripts::{self, NotReproduced, StrictError};
use crate::manifest::lock::LockedPackage;

/// Why a `debian` rootfs could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// Fetching a locked `.deb`.
    #[error(transparent)]
    Fetch(Box<DebFetchError>),
    /// Reading or installing the `.deb`s.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// `scripts = "strict"`, and a maintainer-script command is not reproduced.
    #[error(transparent)]
    Scripts(StrictError),
}

/// A built `debian` rootfs: the tarball, and the maintainer-script commands
/// whose effect it lacks.
#[derive(Debug)]
pub struct Built {
    /// The tarball.
    pub installed: Installed,
    /// Every command not reproduced, in the lock's order.
    pub scripts: Vec<NotReproduced>,
}

impl From<DebFetchError> for RootfsError {
    fn from(e: DebFetchError) -> Self {
        RootfsError::Fetch(Box::new(e))
    }
}

/// What a rootfs is installed as, and where.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The Debian architecture (`arm64`).
    pub debian_arch: &'a str,
    /// Every mtime is clamped to this (seconds since the epoch).
    pub created: u64,
    /// The tarball to write.
    pub out: &'a Path,
    /// `scripts = "strict"`: a maintainer-script command not reproduced fails the build.
    pub strict: bool,
}

/// Fetches `packages` into `store` (from the mirrors each one's `archive` names)
/// and installs them for `debian_arch` into the tarball `out`, mtimes clamped to
/// `created`; `fetched_all` runs once the download ends (it closes a progress
/// bar). A cached `.deb` that is not the locked file is replaced by a fresh,
/// verified download before it is installed (and said so on stderr). The
/// maintainer scripts are read first ([`scripts::report`], findings cached per
/// `.deb` in `cache/scripts/`); with `strict`, any command not reproduced fails
/// the build before the tarball is written.
pub fn build(
    packages: &[LockedPackage],
    target: &Target<'_>,
    store: &Store,
    mirrors: &MirrorSet,
    fetched_all: impl FnOnce(),
) -> Result<Built, RootfsError> {
    let Target {
        debian_arch,
        created,
        out,
        strict,
    } = *target;
    let fetched = fetch_debs(packages, mirrors, store, 4);
    fetched_all();
    let fetched = fetched?;
    let temp_dir = store.tmp_dir();
    let mut opened = Vec::with_capacity(packages.len());
    for (package, blob) in packages.iter().zip(&fetched.blobs) {
        let path = store.blob_path(&blob.digest);
        let deb = match install::open_locked(package, &path, &temp_dir) {
            Err(InstallError::Deb(DebError::NotLocked {
                found, found_size, ..
            })) => {
                crate::notice::notice(&format!(
                    "warning: {} in the cache is not the .deb images.lock pins for {} (it has sha256:{found}, {found_size} bytes): dropped, fetching it again",
                    path.display(),
                    package.id()
                ));
                let _ = std::fs::remove_file(&path);
                fetch_debs(std::slice::from_ref(package), mirrors, store, 1)?;
                install::open_locked(package, &path, &temp_dir)?
            }
            other => other?,
        };
        opened.push(deb);
    }
    let with_sha: Vec<_> = opened
        .iter()
        .zip(packages)
        .map(|(deb, p)| (deb, p.sha256.as_str()))
        .collect();
    let found = scripts::report(&with_sha, Some(&store.root().join("scripts")));
    if strict && !found.is_empty() {
        return Err(RootfsError::Scripts(StrictError { found }));
    }
    let installed = install::install_opened(&opened, debian_arch, created, out)?;
    Ok(Built {
        installed,
        scripts: found,
    })
}
