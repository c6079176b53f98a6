//! The step cache in an OCI registry (`[settings] cache_registry`): what lets CI
//! runners share work. Each executed step leaves a *record*: an OCI artifact
//! (`artifactType` [`STEP_ARTIFACT_TYPE`]) whose config is the step's action
//! record (its canonical key inputs, the key, the outputs) and whose layers are
//! the output blobs themselves, by digest, so no byte is stored twice.
//!
//! A record is found by a **tag derived from the key** (`<kind>-<key>`), not as
//! a referrer: a lookup is then one manifest GET that needs no subject to exist
//! first and no referrers API (which many registries still lack); a key names
//! one output whatever platform or machine computed it, so two runners writing
//! different arches write different tags and can never overwrite each other's.
//!
//! Reads are lazy: a hit fetches the record and the small JSON blobs (configs,
//! manifests, indexes, a layer's contents for the sbom step) a later step reads;
//! layer bytes stay in the registry until
//! something local needs them ([`RemoteCache::fetch_blob`]: export to `out/`),
//! and a push mounts them from the cache repository instead. Every byte fetched
//! is checked against its digest; a record naming a blob that is missing or
//! fails the check is a miss, reported, and never cached.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde_json::json;

use crate::cache::{ActionRecord, CacheError, Descriptor, Store};
use crate::graph::{Step, StepKind};
use crate::manifest::{CacheMode, CacheRegistry, Manifest};
use crate::registry::{
    BlobSource, Client, CredentialError, CredentialSource, ManifestBlob, Registry as Endpoint,
    RegistryError,
};

use super::{Progress, StepOutput};

/// The `artifactType` of a step record, and its config's media type.
pub const STEP_ARTIFACT_TYPE: &str = "application/vnd.imgraph.step.v1+json";

/// The media type of a layer record's second blob: what the SBOM needs of the
/// layer, gathered while writing it.
pub const LAYER_CONTENTS_TYPE: &str = "application/vnd.imgraph.layer-contents.v1+json";

/// Why a blob could not be brought from the cache registry.
#[derive(Debug, thiserror::Error)]
pub enum RemoteCacheError {
    /// Talking to the cache registry.
    #[error("cache registry: {0}")]
    Registry(#[from] RegistryError),
    /// Writing the local cache.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The bytes the registry sent are not the blob they are stored as.
    #[error("cache registry {host}/{repository} sent other bytes for blob {digest} (they hash to {found}); the record is ignored and the step rebuilt")]
    Corrupt {
        host: String,
        repository: String,
        digest: String,
        found: String,
    },
}

/// One run's view of the cache registry.
pub struct RemoteCache {
    client: Client,
    config: CacheRegistry,
    /// Image repositories on the same registry host, to mount blobs from.
    siblings: Vec<String>,
    /// Blobs that failed their digest check this run: a record naming one is a miss.
    poisoned: Mutex<HashSet<String>>,
    /// Blobs records say the cache repository holds: digest -> size.
    known: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether a step kind's outputs go to the cache registry. A `rootfs` step whose
/// output is known before it runs (a `dir` or `tar` fingerprint) has nothing to
/// share; tags are computed from the index in no time; pushes always run.
pub fn cacheable(kind: StepKind, known_output: bool) -> bool {
    match kind {
        StepKind::Rootfs => !known_output,
        // SBOMs and provenance too: an assembler would otherwise read every
        // layer to describe it.
        StepKind::Layer
        | StepKind::Config
        | StepKind::Manifest
        | StepKind::Index
        | StepKind::Sbom
        | StepKind::Provenance => true,
        StepKind::Tag | StepKind::Push => false,
    }
}

/// The tag a step's record is stored under: its kind and its key (64 hex
/// digits of blake3: the tag grammar allows 128 characters).
pub fn record_tag(kind: StepKind, key: &str) -> String {
    format!("{}-{key}", kind.as_str())
}

/// The media type of a step's output blob, as the record's layer descriptor says.
fn blob_media_type(kind: StepKind, manifest: &Manifest) -> &'static str {
    match kind {
        StepKind::Layer => manifest.settings.compression.media_type(),
        StepKind::Config => "application/vnd.oci.image.config.v1+json",
        StepKind::Manifest => "application/vnd.oci.image.manifest.v1+json",
        StepKind::Index => "application/vnd.oci.image.index.v1+json",
        _ => "application/octet-stream",
    }
}

impl RemoteCache {
    /// Opens the cache registry of `config`, with credentials from the docker
    /// config (as for pushing).
    pub fn new(config: &CacheRegistry, manifest: &Manifest) -> Result<Self, CredentialError> {
        let client = Client::new(
            Endpoint {
                host: config.host.clone(),
                insecure: config.insecure,
            },
            CredentialSource::from_env()?,
        );
        let mut siblings: Vec<String> = manifest
            .dists
            .iter()
            .flat_map(|d| {
                d.registries
                    .iter()
                    .filter_map(|r| manifest.registries.get(r))
                    .filter(|r| r.host == config.host)
                    .map(|r| r.repository(&d.image))
            })
            .filter(|r| *r != config.repository)
            .collect();
        siblings.sort();
        siblings.dedup();
        Ok(RemoteCache {
            client,
            config: config.clone(),
            siblings,
            poisoned: Mutex::default(),
            known: Mutex::default(),
        })
    }

    /// `host/repository`, for messages.
    pub fn name(&self) -> String {
        format!("{}/{}", self.config.host, self.config.repository)
    }

    /// The registry host.
    pub fn host(&self) -> &str {
        &self.config.host
    }

    /// The cache repository.
    pub fn repository(&self) -> &str {
        &self.config.repository
    }

    /// Whether records of this run's steps are written.
    pub fn writes(&self) -> bool {
        self.config.mode == CacheMode::ReadWrite
    }

    /// Whether a record named `digest` as one of its blobs this run (so the cache
    /// repository has it: the registry refuses a record naming a missing blob).
    pub fn knows(&self, digest: &str) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(digest)
    }

    fn poison(&self, digest: &str) {
        self.poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.to_owned());
    }

    fn is_poisoned(&self, digest: &str) -> bool {
        self.poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(digest)
    }

    /// Looks `key` up. A hit returns the record (its outputs parsed) after
    /// fetching the small JSON blobs it names into `store`; layer blobs stay
    /// remote. `building`: HEAD the layers (a record whose layer is gone is a
    /// miss) and fetch the JSON blobs; without it (`plan`) the record is enough. Problems are reported on `progress` and make a miss, never an error:
    /// the step then simply runs.
    pub fn lookup(
        &self,
        store: &Store,
        step: &Step,
        key: &str,
        building: bool,
        progress: &Progress,
    ) -> Option<(ActionRecord, StepOutput)> {
        match self.try_lookup(store, step, key, building) {
            Ok(hit) => hit,
            Err(e) => {
                progress.println(&format!(
                    "warning: {}: cache registry record ignored: {e}",
                    step.id
                ));
                None
            }
        }
    }

    fn try_lookup(
        &self,
        store: &Store,
        step: &Step,
        key: &str,
        building: bool,
    ) -> Result<Option<(ActionRecord, StepOutput)>, RemoteCacheError> {
        let repo = self.config.repository.as_str();
        let tag = record_tag(step.id.kind, key);
        let Some((_, bytes)) = self.client.get_tagged(repo, &tag)? else {
            return Ok(None);
        };
        let Ok(manifest) = serde_json::from_slice::<RecordManifest>(&bytes) else {
            return Ok(None);
        };
        if manifest.artifact_type.as_deref() != Some(STEP_ARTIFACT_TYPE) {
            return Ok(None);
        }
        if std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .any(|d| self.is_poisoned(&d.digest))
        {
            return Ok(None);
        }
        let config = self.get_small(repo, &manifest.config.digest)?;
        let Ok(record) = serde_json::from_slice::<ActionRecord>(&config) else {
            return Ok(None);
        };
        if record.key != key {
            return Ok(None);
        }
        let Ok(output) = serde_json::from_value::<StepOutput>(record.outputs.clone()) else {
            return Ok(None);
        };
        for layer in &manifest.layers {
            if store.has_blob(&layer.digest) {
                continue;
            }
            if output.stays_remote(&layer.digest) {
                if building && !self.client.has_blob(repo, &layer.digest)? {
                    return Ok(None);
                }
            } else if building && step.id.kind == StepKind::Layer {
                // The layer's contents, for the sbom step: streamed and verified
                // (a big rootfs without a package database lists many files).
                self.fetch_blob(store, &layer.digest, layer.size, &Progress::quiet())?;
            } else if building {
                // Configs, manifests, indexes: small, and read by later steps and
                // the push (`plan`, which writes nothing, needs only the digests).
                let bytes = self.get_small(repo, &layer.digest)?;
                store.put_bytes(&bytes)?;
            }
        }
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for layer in &manifest.layers {
            known.insert(layer.digest.clone(), layer.size);
        }
        Ok(Some((record, output)))
    }

    /// A small blob, verified; a mismatch poisons the digest for this run.
    fn get_small(&self, repo: &str, digest: &str) -> Result<Vec<u8>, RemoteCacheError> {
        self.client
            .get_small_blob(repo, digest)
            .map_err(|e| self.corrupt_or(e, digest))
    }

    fn corrupt_or(&self, e: RegistryError, digest: &str) -> RemoteCacheError {
        match e {
            RegistryError::DigestMismatch { actual, .. } => {
                self.poison(digest);
                RemoteCacheError::Corrupt {
                    host: self.config.host.clone(),
                    repository: self.config.repository.clone(),
                    digest: digest.to_owned(),
                    found: actual,
                }
            }
            other => RemoteCacheError::Registry(other),
        }
    }

    /// Brings blob `digest` (of `size` bytes) from the cache repository into
    /// `store`, checked as it streams: bytes that do not match never land in the
    /// store, and poison every record naming them for the rest of the run.
    /// A layer shows a byte bar on a terminal (`progress`).
    pub fn fetch_blob(
        &self,
        store: &Store,
        digest: &str,
        size: u64,
        progress: &Progress,
    ) -> Result<(), RemoteCacheError> {
        let mut writer = store.blob_writer()?;
        let transfer = progress.transfer();
        if size >= super::progress::TRANSFER_MIN {
            let short = &digest[..digest.len().min("sha256:".len() + 12)];
            transfer.start(
                "fetching",
                format!("layer {short} from {}", self.name()),
                size,
            );
        }
        let mut counting = super::progress::Counting {
            inner: &mut writer,
            transfer: &transfer,
        };
        self.client
            .get_blob(&self.config.repository, digest, &mut counting)
            .map_err(|e| self.corrupt_or(e, digest))?;
        transfer.finish("fetched");
        let expected = Descriptor {
            digest: digest.to_owned(),
            size,
        };
        match writer.finish_verified(&expected)? {
            Ok(_) => Ok(()),
            Err(found) => {
                self.poison(digest);
                Err(RemoteCacheError::Corrupt {
                    host: self.config.host.clone(),
                    repository: self.config.repository.clone(),
                    digest: digest.to_owned(),
                    found: found.digest,
                })
            }
        }
    }

    /// Writes the record of an executed step: its output blobs first (skipped when
    /// the cache has them, mounted from an image repository of the same registry
    /// when one has them), then the record's config, then the manifest by digest
    /// and its tag last. Does nothing in `mode = "read"`.
    pub fn record(
        &self,
        store: &Store,
        manifest: &Manifest,
        step: &Step,
        record: &ActionRecord,
        output: &StepOutput,
    ) -> Result<(), RemoteCacheError> {
        if !self.writes() {
            return Ok(());
        }
        let media_type = blob_media_type(step.id.kind, manifest);
        let mut blobs = Vec::new();
        let mut layers = Vec::new();
        for digest in output.blobs() {
            let path = store.blob_path(&digest);
            let size = std::fs::metadata(&path)
                .map_err(crate::cache::io_err("reading", &path))?
                .len();
            let media_type = match step.id.kind {
                StepKind::Layer if !output.stays_remote(&digest) => LAYER_CONTENTS_TYPE,
                _ => media_type,
            };
            layers.push(json!({ "mediaType": media_type, "digest": digest, "size": size }));
            blobs.push(BlobSource { digest, size, path });
        }
        let config = store.put_bytes(&serde_json::to_vec(record).unwrap_or_default())?;
        blobs.push(BlobSource {
            digest: config.digest.clone(),
            size: config.size,
            path: store.blob_path(&config.digest),
        });
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": crate::registry::artifact::ARTIFACT_MANIFEST_MEDIA_TYPE,
            "artifactType": STEP_ARTIFACT_TYPE,
            "config": { "mediaType": STEP_ARTIFACT_TYPE, "digest": config.digest, "size": config.size },
            "layers": layers,
            "annotations": {
                "dev.imgraph.step": step.id.to_string(),
                "dev.imgraph.key": record.key,
            },
        });
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let manifest_blob = ManifestBlob {
            digest: crate::digest::sha256(&bytes),
            media_type: crate::registry::artifact::ARTIFACT_MANIFEST_MEDIA_TYPE.into(),
            bytes,
        };
        self.client.put_artifact(
            &self.config.repository,
            blobs,
            manifest_blob,
            &record_tag(step.id.kind, &record.key),
            self.siblings.clone(),
        )?;
        Ok(())
    }
}

/// Makes a push plan work with blobs that are only in the cache registry: on the
/// same registry host they are mounted from the cache repository (no byte moves);
/// on another host they are fetched into the local cache first (verified), then
/// uploaded as usual. A blob in neither place fails the push, naming it.
pub(crate) fn prepare_push(
    ctx: &super::Ctx<'_>,
    reg: &crate::manifest::Registry,
    plan: &mut crate::registry::PushPlan,
) -> Result<(), super::StepError> {
    // On the cache's own host, mount whatever the cache has, also blobs that are
    // local by now (another registry's push may have fetched them): no upload.
    if let Some(remote) = ctx.remote.filter(|r| r.host() == reg.host) {
        if plan.blobs.iter().any(|b| remote.knows(&b.digest)) {
            let repo = remote.repository().to_owned();
            if !plan.mount_from.contains(&repo) {
                plan.mount_from.insert(0, repo);
            }
        }
    }
    let missing: Vec<(String, u64)> = plan
        .blobs
        .iter()
        .filter(|b| !ctx.store.has_blob(&b.digest))
        .map(|b| (b.digest.clone(), b.size))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let Some(remote) = ctx.remote else {
        let (digest, _) = &missing[0];
        return Err(super::StepError::Cache(CacheError::Missing {
            digest: digest.clone(),
            path: ctx.store.blob_path(digest),
        }));
    };
    if remote.host() == reg.host {
        let repo = remote.repository().to_owned();
        if !plan.mount_from.contains(&repo) {
            plan.mount_from.insert(0, repo);
        }
        return Ok(());
    }
    for (digest, size) in missing {
        remote
            .fetch_blob(ctx.store, &digest, size, ctx.progress)
            .map_err(|e| super::StepError::RemoteCache(Box::new(e)))?;
    }
    Ok(())
}

/// The parts of a record's manifest a lookup reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordManifest {
    artifact_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_tags_fit_the_tag_grammar() {
        let key = "a".repeat(64);
        for kind in crate::graph::StepKind::ALL {
            let tag = record_tag(kind, &key);
            crate::manifest::reference::validate_tag(&tag).unwrap();
        }
    }
}
