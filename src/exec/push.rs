//! The push step: one dist's index to one registry.
//!
//! A push sends every blob, then each platform manifest and the index by digest,
//! and only then moves the tags (the registry client guarantees that order), so a
//! tag never points at content that is not fully there. The artifacts attached
//! to the platform manifests (the `Attachments` outputs among the push step's
//! dependencies) go up as their referrers, and with `[settings] sign` every
//! platform manifest and the index get a cosign signature, both before the tags.

use std::sync::Arc;

use oci_spec::image::{ImageIndex, ImageManifest};

use super::{AttachmentOut, Ctx, Mode, StepError, StepOutput};
use crate::cache::{Descriptor, Store};
use crate::graph::Step;
use crate::manifest::{DistSpec, Manifest, Registry};
use crate::registry::{
    BlobSource, Client, CredentialSource, ManifestBlob, PushEvent, PushPlan, Referrer,
    Registry as Endpoint, SignatureLayer,
};
use crate::sign::{KeyError, Signer};

const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The signing key of `[settings] sign`, if any: loaded (and its password
/// tried) before anything runs, so a bad key is bad input, not a failed push.
pub fn signer(manifest: &Manifest) -> Result<Option<Arc<Signer>>, KeyError> {
    let Some(spec) = &manifest.settings.sign else {
        return Ok(None);
    };
    let at = manifest.source.location(Some(&spec.span));
    Signer::load(&spec.key, &at).map(|s| Some(Arc::new(s)))
}

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
/// every tag already pointing at this index and every referrer and signature
/// already there (nothing was written).
pub(crate) fn push(
    ctx: &Ctx<'_>,
    step: &Step,
    d: &DistSpec,
    index: &Descriptor,
    deps: &[(&Step, &StepOutput)],
) -> Result<bool, StepError> {
    let reg = registry_of(ctx.manifest, step);
    let repository = reg.repository(&d.image);
    let _repository_lock = repository_lock(&reg.host, &repository);
    let client = client(reg)?;
    let mut plan = plan(ctx.store, ctx.manifest, reg, d, index, repository)?;
    super::remote_cache::prepare_push(ctx, reg, &mut plan)?;
    plan.referrers = referrers(ctx.store, &plan, attachments(deps))?;
    if let Some(signer) = &ctx.signer {
        plan.signatures = signatures(signer, &format!("{}/{}", reg.host, plan.repository), &plan);
    }
    if let Mode::Build { changed: true, .. } = ctx.mode {
        if up_to_date(&client, &plan)? {
            return Ok(false);
        }
    }
    let progress = ctx.progress;
    let id = step.id.as_str();
    // On a terminal, a byte bar per layer upload, then its size and rate.
    let uploads: std::sync::Mutex<std::collections::HashMap<String, super::progress::Transfer>> =
        std::sync::Mutex::default();
    let pushed = client.push(&plan, &|event| {
        let mut uploads = uploads.lock().unwrap_or_else(|p| p.into_inner());
        match &event {
            PushEvent::BlobStarted { digest, size } if *size >= super::progress::TRANSFER_MIN => {
                let t = progress.transfer();
                let short = &digest[..digest.len().min("sha256:".len() + 12)];
                t.start("pushing", format!("layer {short} for {id}"), *size);
                uploads.insert(digest.clone(), t);
            }
            PushEvent::BlobProgress { digest, sent, .. }
            | PushEvent::BlobSending { digest, sent, .. } => {
                if let Some(t) = uploads.get(digest) {
                    t.set(*sent);
                }
            }
            PushEvent::BlobUploaded { digest, size } => {
                if let Some(t) = uploads.remove(digest) {
                    t.set(*size);
                    t.finish("pushed");
                }
            }
            PushEvent::Retrying { digest, .. } => {
                if let Some(t) = uploads.get(digest) {
                    t.set(0);
                }
            }
            _ => {}
        }
        drop(uploads);
        if progress.verbose() {
            match event {
                PushEvent::BlobUploaded { digest, size } => {
                    progress.println(&format!("  {id}: uploaded {digest} ({size} bytes)"))
                }
                PushEvent::BlobMounted { digest, from } => {
                    progress.println(&format!("  {id}: mounted {digest} from {from}"))
                }
                PushEvent::ReferrerPut { digest, subject } => {
                    progress.println(&format!("  {id}: referrer {digest} of {subject}"))
                }
                PushEvent::SignaturePut { subject } => {
                    progress.println(&format!("  {id}: signed {subject}"))
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
            let removed = std::fs::remove_file(&path).is_ok();
            Err(StepError::Cache(crate::cache::CacheError::DigestMismatch {
                expected: digest,
                found,
                path,
                removed,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// One push at a time into a repository. Two dists with the same content share
/// their platform manifests, and a registry storing on a filesystem rewrites a
/// manifest's link file in place: one push's PUT truncates it while the other's
/// index PUT checks that manifest exists, and the registry answers
/// `MANIFEST_BLOB_UNKNOWN`. Pushes into one repository share their blobs, so
/// running them one after the other costs little: the second finds them there.
fn repository_lock(host: &str, repository: &str) -> std::sync::MutexGuard<'static, ()> {
    static LOCKS: std::sync::Mutex<Vec<(String, &'static std::sync::Mutex<()>)>> =
        std::sync::Mutex::new(Vec::new());
    let key = format!("{host}/{repository}");
    let lock = {
        let mut locks = LOCKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match locks.iter().find(|(k, _)| *k == key) {
            Some((_, l)) => *l,
            None => {
                // One small allocation per repository for the life of the process.
                let l: &'static std::sync::Mutex<()> =
                    Box::leak(Box::new(std::sync::Mutex::new(())));
                locks.push((key, l));
                l
            }
        }
    };
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `--changed`: every tag points at the index, and every referrer and signature
/// is there (HEADs and GETs only).
fn up_to_date(client: &Client, plan: &PushPlan) -> Result<bool, StepError> {
    let repo = plan.repository.as_str();
    for tag in &plan.tags {
        if client.head_manifest(repo, tag)?.as_deref() != Some(plan.index.digest.as_str()) {
            return Ok(false);
        }
    }
    for r in &plan.referrers {
        if !client.has_referrer(repo, r)? {
            return Ok(false);
        }
    }
    for s in &plan.signatures {
        if !client.has_signature(repo, s)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The artifacts the push step's dependencies attached to platform manifests.
fn attachments<'o>(deps: &[(&Step, &'o StepOutput)]) -> Vec<&'o AttachmentOut> {
    deps.iter()
        .filter_map(|(_, out)| match out {
            StepOutput::Attachments(list) => Some(list),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Referrers for the attachments whose subject is one of this index's
/// manifests, read back from the cache (each blob checked).
pub(crate) fn referrers(
    store: &Store,
    plan: &PushPlan,
    attachments: Vec<&AttachmentOut>,
) -> Result<Vec<Referrer>, StepError> {
    let mut out: Vec<Referrer> = Vec::new();
    for a in attachments {
        if !plan.manifests.iter().any(|m| m.digest == a.subject.digest)
            || out.iter().any(|r| r.manifest.digest == a.manifest.digest)
        {
            continue;
        }
        let bytes = store.read_blob(&a.manifest.digest)?;
        let mut blobs = Vec::new();
        for b in &a.blobs {
            store.verify_blob(&b.digest)?;
            blobs.push(BlobSource {
                path: store.blob_path(&b.digest),
                digest: b.digest.clone(),
                size: b.size,
            });
        }
        out.push(Referrer {
            manifest: ManifestBlob {
                digest: a.manifest.digest.clone(),
                media_type: MANIFEST_MEDIA_TYPE.into(),
                bytes,
            },
            blobs,
            subject: a.subject.digest.clone(),
        });
    }
    Ok(out)
}

/// A cosign signature of each platform manifest and of the index, for
/// `reference` (`host/namespace/image`).
fn signatures(
    signer: &crate::sign::Signer,
    reference: &str,
    plan: &PushPlan,
) -> Vec<SignatureLayer> {
    plan.manifests
        .iter()
        .chain(std::iter::once(&plan.index))
        .map(|m| {
            let payload = crate::sign::payload(reference, &m.digest);
            SignatureLayer {
                subject: m.digest.clone(),
                signature: signer.sign(&payload),
                payload,
            }
        })
        .collect()
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
        referrers: Vec::new(),
        signatures: Vec::new(),
        tags: d.tags.clone(),
        mount_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_with(subject: &str) -> PushPlan {
        let m = |d: &str| ManifestBlob {
            digest: d.into(),
            media_type: MANIFEST_MEDIA_TYPE.into(),
            bytes: Vec::new(),
        };
        PushPlan {
            repository: "r".into(),
            blobs: Vec::new(),
            manifests: vec![m(subject)],
            index: m("sha256:index"),
            referrers: Vec::new(),
            signatures: Vec::new(),
            tags: Vec::new(),
            mount_from: Vec::new(),
        }
    }

    /// Attachments of this index's platforms become referrers with their bytes
    /// and blobs from the cache; others' and duplicates are left out.
    #[test]
    fn attachments_of_the_index_platforms_become_referrers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = store.put_bytes(br#"{"spdxVersion":"SPDX-2.3"}"#).unwrap();
        let manifest = store
            .put_bytes(br#"{"artifactType":"application/spdx+json"}"#)
            .unwrap();
        let subject = Descriptor {
            digest: "sha256:platform".into(),
            size: 1,
        };
        let a = AttachmentOut {
            manifest: manifest.clone(),
            artifact_type: "application/spdx+json".into(),
            blobs: vec![layer.clone()],
            subject: subject.clone(),
        };
        let elsewhere = AttachmentOut {
            subject: Descriptor {
                digest: "sha256:other".into(),
                size: 1,
            },
            ..a.clone()
        };
        let deps_out = StepOutput::Attachments(vec![a.clone(), a.clone(), elsewhere]);
        let step = Step {
            id: crate::graph::StepId::dist(crate::graph::StepKind::Index, "hello", "one", None),
            target: crate::graph::Target::Dist(0),
        };
        let found = attachments(&[(&step, &deps_out), (&step, &StepOutput::Skipped)]);
        assert_eq!(found.len(), 3);
        let r = referrers(&store, &plan_with("sha256:platform"), found).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].subject, "sha256:platform");
        assert_eq!(r[0].manifest.digest, manifest.digest);
        assert_eq!(
            r[0].manifest.bytes,
            br#"{"artifactType":"application/spdx+json"}"#
        );
        assert_eq!(r[0].blobs[0].digest, layer.digest);
        assert_eq!(r[0].blobs[0].path, store.blob_path(&layer.digest));
    }
}
