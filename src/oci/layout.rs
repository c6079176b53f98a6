//! OCI image layouts on disk: the readable per-platform and per-dist layouts under
//! `out/`, and portable ones for `imgraph export --format oci`.
//!
//! A layout is assembled in a temp folder beside its target and swapped in, so a
//! reader never sees a layout whose `index.json` names a blob that is not there.

use std::path::{Path, PathBuf};

use oci_spec::image::MediaType;

use super::image::{layout_index, DocumentError};
use crate::cache::{CacheError, Descriptor, Store};
use crate::manifest::{Arch, Compression};

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writing a layout failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file or folder of the layout.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading from the cache.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Building `index.json`.
    #[error(transparent)]
    Document(#[from] DocumentError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The blobs of one built platform image.
#[derive(Debug, Clone)]
pub struct PlatformBlobs {
    /// The arch.
    pub arch: &'static Arch,
    /// The compressed layer.
    pub layer: Descriptor,
    /// Its compression.
    pub compression: Compression,
    /// The image config.
    pub config: Descriptor,
    /// The image manifest.
    pub manifest: Descriptor,
}

impl PlatformBlobs {
    /// The files of the readable layout: (name, blob).
    fn files(&self) -> [(&'static str, &Descriptor); 3] {
        [
            (self.compression.file_name(), &self.layer),
            ("image-config.json", &self.config),
            ("image-manifest.json", &self.manifest),
        ]
    }
}

/// Writes `out/<image>/<dist>/<arch>/` unless it already holds exactly this image.
/// Returns whether anything was written.
pub fn export_platform(
    store: &Store,
    dir: &Path,
    p: &PlatformBlobs,
    ref_name: &str,
) -> Result<bool, LayoutError> {
    let index = layout_index(
        MediaType::ImageManifest,
        &p.manifest,
        Some(p.arch),
        &[ref_name.to_string()],
    )?;
    if is_current(dir, &index, &p.files()) {
        return Ok(false);
    }
    replace_dir(dir, |tmp| {
        for (name, blob) in p.files() {
            store.copy_blob_to(&blob.digest, &tmp.join(name))?;
            link_blob(tmp, blob, &format!("../../{name}"))?;
        }
        finish_layout(tmp, &index)
    })?;
    Ok(true)
}

/// Writes `out/<image>/<dist>/index/`: the index, tagged with every tag, with its
/// blobs as symlinks into the sibling platform layouts (nothing is stored twice).
pub fn export_index(
    store: &Store,
    dir: &Path,
    index: &Descriptor,
    platforms: &[PlatformBlobs],
    tags: &[String],
) -> Result<bool, LayoutError> {
    let layout = layout_index(MediaType::ImageIndex, index, None, tags)?;
    let index_file = [("image-index.json", index)];
    if is_current(dir, &layout, &index_file) && platforms.iter().all(|p| blobs_resolve(dir, p)) {
        return Ok(false);
    }
    replace_dir(dir, |tmp| {
        store.copy_blob_to(&index.digest, &tmp.join("image-index.json"))?;
        link_blob(tmp, index, "../../image-index.json")?;
        for p in platforms {
            for (name, blob) in p.files() {
                link_blob(tmp, blob, &format!("../../../{}/{name}", p.arch.name))?;
            }
        }
        finish_layout(tmp, &layout)
    })?;
    Ok(true)
}

/// A self-contained layout with real blob files, for `imgraph export --format oci`.
pub fn export_portable(
    store: &Store,
    dir: &Path,
    root: (&MediaType, &Descriptor, Option<&Arch>),
    blobs: &[&Descriptor],
    ref_names: &[String],
) -> Result<(), LayoutError> {
    let index = layout_index(root.0.clone(), root.1, root.2, ref_names)?;
    replace_dir(dir, |tmp| {
        for blob in blobs.iter().copied().chain([root.1]) {
            let dest = tmp.join("blobs/sha256").join(hex_of(blob));
            if !dest.exists() {
                store.copy_blob_to(&blob.digest, &dest)?;
            }
        }
        finish_layout(tmp, &index)
    })
}

fn hex_of(blob: &Descriptor) -> &str {
    blob.digest.trim_start_matches("sha256:")
}

fn link_blob(layout: &Path, blob: &Descriptor, target: &str) -> Result<(), LayoutError> {
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let link = dir.join(hex_of(blob));
    if link.symlink_metadata().is_ok() {
        return Ok(());
    }
    std::os::unix::fs::symlink(target, &link).map_err(io(&link))
}

fn finish_layout(tmp: &Path, index: &[u8]) -> Result<(), LayoutError> {
    let p = tmp.join("oci-layout");
    std::fs::write(&p, OCI_LAYOUT).map_err(io(&p))?;
    let p = tmp.join("index.json");
    std::fs::write(&p, index).map_err(io(&p))
}

/// The layout already has this index.json and files of the right sizes.
fn is_current(dir: &Path, index: &[u8], files: &[(&str, &Descriptor)]) -> bool {
    std::fs::read(dir.join("index.json")).is_ok_and(|b| b == index)
        && files.iter().all(|(name, blob)| {
            std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == blob.size)
                && dir.join("blobs/sha256").join(hex_of(blob)).exists()
        })
}

fn blobs_resolve(dir: &Path, p: &PlatformBlobs) -> bool {
    p.files()
        .iter()
        .all(|(_, b)| dir.join("blobs/sha256").join(hex_of(b)).exists())
}

/// Builds a folder in a temp sibling, then swaps it in place of `dir`.
fn replace_dir(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), LayoutError>,
) -> Result<(), LayoutError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Leftovers of a build killed half-way through a swap.
    for entry in std::fs::read_dir(parent).map_err(io(parent))?.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with(&format!(".{name}.new-")) || n.starts_with(&format!(".{name}.old-")) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .tempdir_in(parent)
        .map_err(io(parent))?;
    fill(tmp.path())?;
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = dir.symlink_metadata().is_ok();
    if had_old {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    let tmp = tmp.keep();
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    if had_old {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}
