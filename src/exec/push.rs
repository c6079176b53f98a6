//! The push step: one dist's index to one registry.
//!
//! A push sends every blob, then each platform manifest and the index by digest,
//! and only then moves the tags (the registry client guarantees that order), so a
//! tag never points at content that is not fully there.

use oci_spec::image::{ImageIndex, ImageManifest};

use super::{Ctx, Mode, StepError};
use crate::cache::{Descriptor, Store};
use crate::graph::Step;
use crate::manifest::{DistSpec, Manifest, Registry};
use crate::registry::{
    BlobSource, Client, CredentialSource, ManifestBlob, PushEvent, PushPlan, Registry as Endpoint,
};

const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A client for a manifest registry, with credentials from the docker config.
pub(crate) fn client(reg: &Registry) -> Result<Client, crate::registry::CredentialError> {
    Ok(Client::new(
        Endpoint {
            host: reg.host.clone(),
            insecure: reg.insecure,
        },
        CredentialSource::from_env()?,
    ))
}

fn registry_of<'m>(manifest: &'m Manifest, step: &Step) -> &'m Registry {
    let name = step
        .id
        .registry
        .as_ref()
        .expect("push steps have a registry");
    &manifest.registries[name]
}

/// Pushes one dist's index to one registry. Returns false when `--changed` found
/// every tag already pointing at this index (nothing was written).
pub(crate) fn push(
    ctx: &Ctx<'_>,
    step: &Step,
    d: &DistSpec,
    index: &Descriptor,
) -> Result<bool, StepError> {
    let reg = registry_of(ctx.manifest, step);
    let repository = reg.repository(&d.image);
    let client = client(reg)?;
    if let Mode::Build { changed: true, .. } = ctx.mode {
        let mut all_there = true;
        for tag in &d.tags {
            if client.head_manifest(&repository, tag)?.as_deref() != Some(index.digest.as_str()) {
                all_there = false;
                break;
            }
        }
        if all_there {
            return Ok(false);
        }
    }
    let mut plan = plan(ctx.store, ctx.manifest, reg, d, index, repository)?;
    super::remote_cache::prepare_push(ctx, reg, &mut plan)?;
    let progress = ctx.progress;
    let id = step.id.as_str();
    let pushed = client.push(&plan, &|event| {
        if progress.verbose() {
            match event {
                PushEvent::BlobUploaded { digest, size } => {
                    progress.println(&format!("  {id}: uploaded {digest} ({size} bytes)"))
                }
                PushEvent::BlobMounted { digest, from } => {
                    progress.println(&format!("  {id}: mounted {digest} from {from}"))
                }
                PushEvent::TagPut { tag, digest } => {
                    progress.println(&format!("  {id}: tagged {tag} -> {digest}"))
                }
                PushEvent::Retrying { attempt, error, .. } => {
                    progress.println(&format!("  {id}: retry {attempt}: {error}"))
                }
                _ => {}
            }
        }
    });
    match pushed {
        Ok(_) => Ok(true),
        // Caught as it streamed: dropped, so the build's second pass rebuilds it.
        Err(crate::registry::RegistryError::LocalBlobCorrupt {
            digest,
            path,
            found,
        }) => {
            let _ = std::fs::remove_file(&path);
            Err(StepError::Cache(crate::cache::CacheError::DigestMismatch {
                expected: digest,
                found,
                path,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Everything the index needs, read back from the cache (each blob checked).
fn plan(
    store: &Store,
    manifest: &Manifest,
    reg: &Registry,
    d: &DistSpec,
    index: &Descriptor,
    repository: String,
) -> Result<PushPlan, StepError> {
    let index_bytes = store.read_blob(&index.digest)?;
    let parsed: ImageIndex = serde_json::from_slice(&index_bytes)
        .map_err(|_| StepError::BadUpstream(index.digest.clone()))?;
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    for m in parsed.manifests() {
        let digest = m.digest().to_string();
        let bytes = store.read_blob(&digest)?;
        let image: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|_| StepError::BadUpstream(digest.clone()))?;
        for blob in std::iter::once(image.config()).chain(image.layers()) {
            let digest = blob.digest().to_string();
            // Not hashed here: a blob the registry has is never read, and one that
            // is uploaded is checked as it streams (a blob only in the cache
            // registry is mounted or fetched from there: `remote_cache::prepare_push`).
            blobs.push(BlobSource {
                path: store.blob_path(&digest),
                digest,
                size: blob.size(),
            });
        }
        manifests.push(ManifestBlob {
            digest,
            media_type: MANIFEST_MEDIA_TYPE.into(),
            bytes,
        });
    }
    // Other images going to the same registry may already hold shared layers.
    let mut mount_from: Vec<String> = manifest
        .dists
        .iter()
        .filter(|o| o.image != d.image && o.registries.contains(&reg.name))
        .map(|o| reg.repository(&o.image))
        .collect();
    mount_from.sort();
    mount_from.dedup();
    Ok(PushPlan {
        repository,
        blobs,
        manifests,
        index: ManifestBlob {
            digest: index.digest.clone(),
            media_type: INDEX_MEDIA_TYPE.into(),
            bytes: index_bytes,
        },
        tags: d.tags.clone(),
        mount_from,
    })
}
