//! OCI image layouts on disk: the readable per-platform and per-dist layouts under
//! `out/`, and portable ones for `imgraph export --format oci`.
//!
//! A per-platform layout holds exactly one image and nothing else (docker-library's
//! `Builder: oci-import` and `oci-image-tool` require it, and a folder committed to
//! git must change only when its image does); what is attached to the image lives
//! in a layout of its own beside it (`attestations.rs`).
//!
//! A layout is assembled in a temp folder beside its target and swapped in, so a
//! reader never sees a layout whose `index.json` names a blob that is not there.

use std::path::{Path, PathBuf};

use oci_spec::image::MediaType;

use super::image::{layout_index, DocumentError};
use crate::cache::{CacheError, Descriptor, Store};
use crate::manifest::{Arch, Compression};

pub(super) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

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
    /// `export -o DIR` where DIR holds something other than an OCI layout.
    #[error("{} is not empty and is not an OCI layout (no oci-layout file): refusing to write into it; choose a new or empty folder", path.display())]
    NotALayout {
        /// The folder.
        path: PathBuf,
    },
    /// `export -o PATH` where PATH exists and is not a folder.
    #[error("{} is {kind}, not a folder: an OCI layout is a folder; choose another path or --format docker-archive", path.display())]
    NotAFolder {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The existing layout's `index.json` cannot be merged into.
    #[error("{} is not a valid OCI index ({reason}): fix or remove it, or export to a new folder", path.display())]
    BadIndex {
        /// The `index.json`.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading from the cache.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Building `index.json`.
    #[error(transparent)]
    Document(#[from] DocumentError),
}

impl LayoutError {
    /// The user pointed the export at a path it must not write: bad input (exit 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            LayoutError::NotALayout { .. }
                | LayoutError::NotAFolder { .. }
                | LayoutError::BadIndex { .. }
        )
    }
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError + '_ {
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
    /// Artifacts attached to it (SBOMs, provenance), written to the
    /// attestations layout beside the image's (see [`attestations_dir`]).
    pub attached: Vec<Attached>,
}

/// An OCI 1.1 artifact whose `subject` is the platform manifest.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The readable file stem: `sbom.spdx`, `provenance.intoto`.
    pub stem: &'static str,
    /// Its `artifactType`.
    pub artifact_type: String,
    /// The artifact manifest.
    pub manifest: Descriptor,
    /// Its blobs (the empty config, the document), as the manifest lists them.
    pub blobs: Vec<Descriptor>,
}

/// The empty descriptor's blob (`{}`), shared by every artifact manifest.
pub(super) const EMPTY_CONFIG_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

impl PlatformBlobs {
    /// The files of the readable image layout: (name, blob).
    pub(super) fn image_files(&self) -> Vec<(String, &Descriptor)> {
        vec![
            (layer_file_name(self.compression, 0, 1), &self.layer),
            ("image-config.json".to_string(), &self.config),
            ("image-manifest.json".to_string(), &self.manifest),
        ]
    }

    /// The files of the attestations layout: (name, blob). Each attachment is
    /// `<stem>.json` (the document) and `<stem>.manifest.json`, with the
    /// shared `artifact-config.json` (`{}`).
    pub(super) fn attachment_files(&self) -> Vec<(String, &Descriptor)> {
        let mut files: Vec<(String, &Descriptor)> = Vec::new();
        for a in &self.attached {
            files.push((format!("{}.manifest.json", a.stem), &a.manifest));
            for b in &a.blobs {
                let name = if b.digest == EMPTY_CONFIG_DIGEST {
                    "artifact-config.json".to_string()
                } else {
                    format!("{}.json", a.stem)
                };
                if !files.iter().any(|(n, _)| *n == name) {
                    files.push((name, b));
                }
            }
        }
        files
    }

    /// The image layout's `index.json`: exactly one entry, the image manifest
    /// under its ref name, with its platform.
    fn image_index(&self, ref_name: &str) -> Result<Vec<u8>, LayoutError> {
        Ok(layout_index(
            MediaType::ImageManifest,
            &self.manifest,
            Some(self.arch),
            &[ref_name.to_string()],
        )?)
    }
}

/// The readable name of an image's layer `index` (0 = the bottom one) of
/// `count`: `rootfs.tar.gz` when it is the only one, else `layer-1.tar.gz`,
/// `layer-2.tar.gz`, ... from the bottom up (`.tar.zst` for zstd).
pub fn layer_file_name(compression: Compression, index: usize, count: usize) -> String {
    let single = compression.file_name();
    if count <= 1 {
        return single.to_string();
    }
    let ext = single.trim_start_matches("rootfs");
    format!("layer-{}{ext}", index + 1)
}

/// The attestations layout of the platform layout `dir`: its sibling
/// `<arch>.attestations/` (`out/hello/one/amd64.attestations/`).
pub fn attestations_dir(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!("{name}{ATTESTATIONS_SUFFIX}"))
}

/// What [`attestations_dir`] appends to the arch's folder name.
pub const ATTESTATIONS_SUFFIX: &str = ".attestations";

/// Writes `out/<image>/<dist>/<arch>/` unless it already holds exactly this image:
/// the image's files, `blobs/sha256/` symlinks to them, and an `index.json` with
/// that one image. Returns whether anything was written.
pub fn export_platform(
    store: &Store,
    dir: &Path,
    p: &PlatformBlobs,
    ref_name: &str,
) -> Result<bool, LayoutError> {
    let index = p.image_index(ref_name)?;
    let files = p.image_files();
    if is_current(dir, &index, &files) {
        return Ok(false);
    }
    replace_dir(dir, |tmp| {
        for (name, blob) in &files {
            store.copy_blob_to(&blob.digest, &tmp.join(name))?;
            link_blob(tmp, blob, &format!("../../{name}"))?;
        }
        finish_layout(tmp, &index)
    })?;
    Ok(true)
}

/// Writes `out/<image>/<dist>/index/`: the index, tagged with every tag, with its
/// blobs as symlinks into the sibling platform layouts (nothing is stored twice).
/// Attachments are not linked: nothing in the index reaches them, and the folder
/// then changes only when an image does.
pub fn export_index(
    store: &Store,
    dir: &Path,
    index: &Descriptor,
    platforms: &[PlatformBlobs],
    tags: &[String],
) -> Result<bool, LayoutError> {
    let layout = layout_index(MediaType::ImageIndex, index, None, tags)?;
    let index_file = [("image-index.json", index)];
    // Exactly the links it needs: a layout written when attachments were linked
    // here too is rewritten (their targets moved to `<arch>.attestations/`).
    let needed: std::collections::HashSet<&str> = platforms
        .iter()
        .flat_map(|p| p.image_files().into_iter().map(|(_, b)| hex_of(b)))
        .chain([hex_of(index)])
        .collect();
    let links = std::fs::read_dir(dir.join("blobs/sha256")).map_or(0, |d| d.count());
    if is_current(dir, &layout, &index_file)
        && platforms.iter().all(|p| blobs_resolve(dir, p))
        && links == needed.len()
    {
        return Ok(false);
    }
    replace_dir(dir, |tmp| {
        store.copy_blob_to(&index.digest, &tmp.join("image-index.json"))?;
        link_blob(tmp, index, "../../image-index.json")?;
        for p in platforms {
            for (name, blob) in p.image_files() {
                link_blob(tmp, blob, &format!("../../../{}/{name}", p.arch.name))?;
            }
        }
        finish_layout(tmp, &layout)
    })?;
    Ok(true)
}

/// Removes an index layout `export_index` wrote once it no longer holds what it
/// names; returns whether it did. Its blobs are symlinks into the platform
/// layouts, so when a build that could not write a new index (a platform failed)
/// rewrote one of those, the old index would name bytes that are not there. One
/// that still holds its images is kept. A folder without an `oci-layout` file is
/// not ours and is left alone. It is renamed aside first, so a reader never sees
/// half of it (`replace_dir` clears a leftover of a killed build).
pub fn remove_broken_index(dir: &Path) -> Result<bool, LayoutError> {
    if !dir.join("oci-layout").is_file() || index_intact(dir) {
        return Ok(false);
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let old =
        crate::atomic_file::parent_dir(dir).join(format!(".{name}.old-{}", std::process::id()));
    std::fs::rename(dir, &old).map_err(io(dir))?;
    std::fs::remove_dir_all(&old).map_err(io(&old))?;
    Ok(true)
}

/// Whether the index in an index layout, and every platform manifest it lists,
/// read through the layout's links, still hash to their digests. A platform layout
/// is written whole, so the manifest being there means its config, layer and
/// attachments are too. Reads only the small JSON documents.
fn index_intact(dir: &Path) -> bool {
    let json = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).ok();
    let blob = |digest: &str| -> Option<Vec<u8>> {
        let hex = digest.strip_prefix("sha256:")?;
        let bytes = std::fs::read(dir.join("blobs/sha256").join(hex)).ok()?;
        (crate::digest::sha256(&bytes) == digest).then_some(bytes)
    };
    let digests = |doc: &serde_json::Value| -> Option<Vec<String>> {
        doc["manifests"]
            .as_array()?
            .iter()
            .map(|m| m["digest"].as_str().map(String::from))
            .collect()
    };
    let Some(indexes) = std::fs::read(dir.join("index.json"))
        .ok()
        .and_then(|b| json(&b))
        .and_then(|v| digests(&v))
    else {
        return false;
    };
    indexes.iter().all(|digest| {
        blob(digest)
            .and_then(|b| json(&b))
            .and_then(|v| digests(&v))
            .is_some_and(|platforms| platforms.iter().all(|p| blob(p).is_some()))
    })
}

/// Whether `dir` is the index layout [`export_index`] writes for `index` and
/// `tags`, as it stands (a build that skips an unchanged index names it only then).
pub fn index_is_current(dir: &Path, index: &Descriptor, tags: &[String]) -> bool {
    layout_index(MediaType::ImageIndex, index, None, tags)
        .is_ok_and(|layout| is_current(dir, &layout, &[("image-index.json", index)]))
}

/// A self-contained layout with real blob files, for `imgraph export --format oci`.
///
/// Like `skopeo copy` to `oci:DIR:REF`, it adds to what is there and never
/// removes a file it did not write: a missing or empty folder becomes a new layout;
/// an existing layout gets the blobs it lacks, then an `index.json` in which this
/// image's ref names replace entries of the same name and every other entry stays.
/// A folder that holds anything but an OCI layout is refused, untouched. Blobs land
/// before `index.json` is swapped in, so a reader never sees a dangling entry.
pub fn export_portable(
    store: &Store,
    dir: &Path,
    root: (&MediaType, &Descriptor, Option<&Arch>),
    blobs: &[&Descriptor],
    ref_names: &[String],
) -> Result<(), LayoutError> {
    let ours = layout_index(root.0.clone(), root.1, root.2, ref_names)?;
    let existing = existing_layout(dir)?;
    let index = match &existing {
        Some(old) => merge_index(dir, old, &ours, ref_names)?,
        None => ours,
    };
    std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(io(dir))?;
    for blob in blobs.iter().copied().chain([root.1]) {
        let dest = dir.join("blobs/sha256").join(hex_of(blob));
        // Content-addressed: a file of the right size under this name is this blob.
        if std::fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == blob.size) {
            continue;
        }
        store.copy_blob_to(&blob.digest, &dest)?;
    }
    if existing.is_none() {
        write_file_atomic(&dir.join("oci-layout"), OCI_LAYOUT)?;
    }
    write_file_atomic(&dir.join("index.json"), &index)
}

/// What `dir` holds now: `None` when it is missing or empty (a new layout), the
/// bytes of its `index.json` when it is an OCI layout, an error otherwise.
fn existing_layout(dir: &Path) -> Result<Option<Vec<u8>>, LayoutError> {
    let meta = match dir.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(dir)(e)),
        Ok(m) => m,
    };
    if !dir.is_dir() {
        return Err(LayoutError::NotAFolder {
            path: dir.to_path_buf(),
            kind: file_kind(&meta),
        });
    }
    let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
    if entries.next().is_none() {
        return Ok(None);
    }
    if !dir.join("oci-layout").is_file() {
        return Err(LayoutError::NotALayout {
            path: dir.to_path_buf(),
        });
    }
    let index = dir.join("index.json");
    std::fs::read(&index).map(Some).map_err(io(&index))
}

/// `old`'s entries, less those named like one of ours, followed by ours.
fn merge_index(
    dir: &Path,
    old: &[u8],
    ours: &[u8],
    ref_names: &[String],
) -> Result<Vec<u8>, LayoutError> {
    let bad = |reason: String| LayoutError::BadIndex {
        path: dir.join("index.json"),
        reason,
    };
    let mut old: serde_json::Value = serde_json::from_slice(old).map_err(|e| bad(e.to_string()))?;
    let ours: serde_json::Value =
        serde_json::from_slice(ours).expect("layout_index writes valid JSON");
    let Some(entries) = old.get_mut("manifests").and_then(|m| m.as_array_mut()) else {
        return Err(bad("it has no \"manifests\" list".into()));
    };
    entries.retain(|e| {
        let name = e
            .pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(|n| n.as_str());
        !name.is_some_and(|n| ref_names.iter().any(|r| r == n))
    });
    entries.extend(ours["manifests"].as_array().into_iter().flatten().cloned());
    Ok(super::image::canonical_json(&old))
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        "a file"
    } else if t.is_symlink() {
        "a symlink"
    } else if t.is_fifo() || t.is_char_device() || t.is_block_device() || t.is_socket() {
        "a special file"
    } else {
        "not a folder"
    }
}

/// Replaces `path` atomically, mode 0644.
fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    crate::atomic_file::write_file(path, bytes).map_err(io(path))
}

pub(super) fn hex_of(blob: &Descriptor) -> &str {
    blob.digest.trim_start_matches("sha256:")
}

pub(super) fn link_blob(layout: &Path, blob: &Descriptor, target: &str) -> Result<(), LayoutError> {
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let link = dir.join(hex_of(blob));
    if link.symlink_metadata().is_ok() {
        return Ok(());
    }
    std::os::unix::fs::symlink(target, &link).map_err(io(&link))
}

pub(super) fn finish_layout(tmp: &Path, index: &[u8]) -> Result<(), LayoutError> {
    let p = tmp.join("oci-layout");
    std::fs::write(&p, OCI_LAYOUT).map_err(io(&p))?;
    let p = tmp.join("index.json");
    std::fs::write(&p, index).map_err(io(&p))
}

/// The layout already has this index.json and files of the right sizes.
pub(super) fn is_current<N: AsRef<Path>>(
    dir: &Path,
    index: &[u8],
    files: &[(N, &Descriptor)],
) -> bool {
    std::fs::read(dir.join("index.json")).is_ok_and(|b| b == index)
        && files.iter().all(|(name, blob)| {
            std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == blob.size)
                && dir.join("blobs/sha256").join(hex_of(blob)).exists()
        })
}

fn blobs_resolve(dir: &Path, p: &PlatformBlobs) -> bool {
    p.image_files()
        .iter()
        .all(|(_, b)| dir.join("blobs/sha256").join(hex_of(b)).exists())
}

/// Builds a folder in a temp sibling, then swaps it in place of `dir`.
pub(super) fn replace_dir(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), LayoutError>,
) -> Result<(), LayoutError> {
    let parent = crate::atomic_file::parent_dir(dir);
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
