//! The attestations layout beside each platform layout:
//! `out/<image>/<dist>/<arch>.attestations/`.
//!
//! What is attached to a platform image (SBOMs, provenance) changes when the
//! image does not (the provenance names the git commit), so it cannot live in the
//! image's own layout: docker-library commits that folder and rebuilds whatever
//! it hashes differently. This layout holds the attachments' files, their
//! referrers index, and an `index.json` naming the image (its blobs symlinked
//! into the image's folder, so nothing is stored twice) by its tag and the
//! referrers index by `sha256-<hex of the image manifest>`, the distribution
//! spec's fallback tag: skopeo and oras read the attachments as the image's
//! OCI 1.1 referrers.

use std::path::Path;

use oci_spec::image::MediaType;

use super::image::{canonical_json, layout_index, REF_NAME};
use super::layout::{
    attestations_dir, finish_layout, hex_of, io, is_current, link_blob, replace_dir, LayoutError,
    PlatformBlobs,
};
use crate::cache::{Descriptor, Store};

/// The readable name of the referrers index in an attestations layout.
pub const REFERRERS_FILE: &str = "referrers.index.json";

/// The index of a platform image's attachments.
#[derive(Debug, Clone)]
pub struct Referrers {
    /// Its canonical JSON.
    pub bytes: Vec<u8>,
    /// Its digest and size.
    pub blob: Descriptor,
    /// `sha256-<hex of the image manifest>`.
    pub ref_name: String,
}

impl PlatformBlobs {
    /// The referrers of the image, as the distribution spec's fallback tag
    /// holds them: an image index of the artifact manifests (each with its
    /// `artifactType`), under the ref name `sha256-<hex of the subject>`.
    /// `None` when nothing is attached.
    pub fn referrers(&self) -> Option<Referrers> {
        if self.attached.is_empty() {
            return None;
        }
        let manifests: Vec<serde_json::Value> = self
            .attached
            .iter()
            .map(|a| {
                serde_json::json!({
                    "mediaType": MediaType::ImageManifest.to_string(),
                    "artifactType": a.artifact_type,
                    "digest": a.manifest.digest,
                    "size": a.manifest.size,
                })
            })
            .collect();
        let bytes = canonical_json(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MediaType::ImageIndex.to_string(),
            "manifests": manifests,
        }));
        Some(Referrers {
            blob: Descriptor {
                digest: crate::digest::sha256(&bytes),
                size: bytes.len() as u64,
            },
            bytes,
            ref_name: format!("sha256-{}", hex_of(&self.manifest)),
        })
    }
}

/// The attestations layout's `index.json`: the image under its ref name (so a
/// referrers lookup can resolve its subject) and the referrers index under
/// `sha256-<hex>`. A nested index rather than the artifact manifests at the
/// top, so that OCI 1.0 tools still read the image from this layout.
fn attestations_index(
    p: &PlatformBlobs,
    referrers: &Referrers,
    ref_name: &str,
) -> Result<Vec<u8>, LayoutError> {
    let index = layout_index(
        MediaType::ImageManifest,
        &p.manifest,
        Some(p.arch),
        &[ref_name.to_string()],
    )?;
    let mut value: serde_json::Value =
        serde_json::from_slice(&index).expect("layout_index writes valid JSON");
    if let Some(entries) = value["manifests"].as_array_mut() {
        entries.push(serde_json::json!({
            "mediaType": MediaType::ImageIndex.to_string(),
            "digest": referrers.blob.digest,
            "size": referrers.blob.size,
            "annotations": { REF_NAME: referrers.ref_name },
        }));
    }
    Ok(canonical_json(&value))
}

/// Writes the attestations layout beside the platform layout `image_dir`
/// unless it is current; removes it when nothing is attached any more. Returns
/// whether anything was written.
pub fn export_attestations(
    store: &Store,
    image_dir: &Path,
    p: &PlatformBlobs,
    ref_name: &str,
) -> Result<bool, LayoutError> {
    let dir = attestations_dir(image_dir);
    let Some(referrers) = p.referrers() else {
        // Ours (an OCI layout at our own sibling name): stale once nothing is attached.
        if dir.join("oci-layout").is_file() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        return Ok(false);
    };
    let index = attestations_index(p, &referrers, ref_name)?;
    let mut files = p.attachment_files();
    files.push((REFERRERS_FILE.to_string(), &referrers.blob));
    let arch = p.arch.name;
    // The image's blobs are links into its own folder: `exists()` follows them.
    let image_linked = p
        .image_files()
        .iter()
        .all(|(_, b)| dir.join("blobs/sha256").join(hex_of(b)).exists());
    if image_linked && is_current(&dir, &index, &files) {
        return Ok(false);
    }
    replace_dir(&dir, |tmp| {
        for (name, blob) in &files {
            let path = tmp.join(name);
            if *blob == &referrers.blob {
                std::fs::write(&path, &referrers.bytes).map_err(io(&path))?;
            } else {
                store.copy_blob_to(&blob.digest, &path)?;
            }
            link_blob(tmp, blob, &format!("../../{name}"))?;
        }
        for (name, blob) in p.image_files() {
            link_blob(tmp, blob, &format!("../../../{arch}/{name}"))?;
        }
        finish_layout(tmp, &index)
    })?;
    Ok(true)
}
