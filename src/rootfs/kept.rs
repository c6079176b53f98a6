//! Root filesystems kept in the cache (`cache/rootfs/`): a `command` source's output
//! (a folder or a tarball) and a `debian` source's installed tarball, which a later
//! layer step reads again.
//!
//! A kept rootfs is recorded by its content fingerprint (the rootfs step's `tree`
//! output), so it is checked against that fingerprint before it is used again, as
//! blobs are checked against their digest: a kept rootfs changed on disk never
//! reaches a layer; the caller makes it again.

use std::path::Path;

use super::{fingerprint_dir, fingerprint_file, FingerprintError, FingerprintOptions, Owners};

/// What a kept rootfs is, next to what its record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Its content is what was recorded.
    Intact,
    /// It is not there (deleted, or recorded on another machine).
    Missing,
    /// It is there with other content.
    Changed {
        /// Its fingerprint now.
        found: String,
    },
}

/// Fingerprints the kept rootfs at `path` afresh (no stat cache: a changed file with
/// its old size and mtime is still caught) and compares it with `tree`, the rootfs
/// step's recorded output. A folder is fingerprinted as the `command` source made
/// it (owners preserved, mtimes clamped to `created`); a tarball by its bytes.
pub fn check(path: &Path, tree: &str, created: u64) -> Result<Kept, FingerprintError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(Kept::Missing);
    };
    let found = if meta.is_dir() {
        let opts = FingerprintOptions {
            owners: Owners::Preserve,
            clamp_mtime: Some(created),
        };
        fingerprint_dir(path, &opts, &mut super::StatCache::default())?
            .0
            .digest
    } else {
        fingerprint_file(path, &mut super::StatCache::default())?.0
    };
    Ok(if found == tree {
        Kept::Intact
    } else {
        Kept::Changed { found }
    })
}

/// Removes a kept rootfs (a folder or a file); one already gone is not an error.
pub fn remove(path: &Path) -> std::io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_folder_or_tarball_is_intact_missing_or_changed() {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("x.tar");
        std::fs::write(&tar, b"tar bytes").unwrap();
        let tree = fingerprint_file(&tar, &mut super::super::StatCache::default())
            .unwrap()
            .0;
        assert_eq!(check(&tar, &tree, 0).unwrap(), Kept::Intact);
        std::fs::write(&tar, b"tar bytez").unwrap();
        assert!(matches!(
            check(&tar, &tree, 0).unwrap(),
            Kept::Changed { .. }
        ));

        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/a"), b"a").unwrap();
        let opts = FingerprintOptions {
            owners: Owners::Preserve,
            clamp_mtime: Some(1_700_000_000),
        };
        let tree = fingerprint_dir(&root, &opts, &mut super::super::StatCache::default())
            .unwrap()
            .0
            .digest;
        assert_eq!(check(&root, &tree, 1_700_000_000).unwrap(), Kept::Intact);
        std::fs::write(root.join("etc/a"), b"b").unwrap();
        assert!(matches!(
            check(&root, &tree, 1_700_000_000).unwrap(),
            Kept::Changed { .. }
        ));
        remove(&root).unwrap();
        remove(&tar).unwrap();
        assert_eq!(check(&root, &tree, 0).unwrap(), Kept::Missing);
        assert_eq!(check(&tar, &tree, 0).unwrap(), Kept::Missing);
        remove(&tar).unwrap();
    }
}
