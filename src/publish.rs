//! Pushing built indexes to registries, and reading them back by digest.
//!
//! A push sends every blob, then each platform manifest and the index by digest,
//! and only then moves the tags (the registry client guarantees that order), so a
//! tag never points at content that is not fully there.

use serde::Deserialize;

use crate::cache::{Descriptor, Store};
use crate::commands::{build, BuildOptions, Globals, Project};
use crate::error::Error;
use crate::exec::{Ctx, Mode, Progress, StepError, StepOutput};
use crate::graph::{Step, StepKind, Target};
use crate::manifest::{DistSpec, Manifest, Registry};
use crate::registry::{
    BlobSource, Client, CredentialSource, ManifestBlob, PushEvent, PushPlan, Registry as Endpoint,
};

const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Deserialize)]
struct DescriptorJson {
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<PlatformJson>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct PlatformJson {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct IndexJson {
    manifests: Vec<DescriptorJson>,
}

#[derive(Deserialize)]
struct ManifestJson {
    config: DescriptorJson,
    layers: Vec<DescriptorJson>,
}

fn client(reg: &Registry) -> Result<Client, crate::registry::CredentialError> {
    Ok(Client::new(
        Endpoint {
            host: reg.host.clone(),
            insecure: reg.insecure,
        },
        CredentialSource::from_env()?,
    ))
}

fn registry_of<'m>(manifest: &'m Manifest, step: &Step) -> &'m Registry {
    let name = step.registry.as_ref().expect("push steps have a registry");
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
    let plan = plan(ctx.store, ctx.manifest, reg, d, index, repository)?;
    let progress = ctx.progress;
    let id = step.id.as_str();
    client.push(&plan, &|event| {
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
    })?;
    Ok(true)
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
    let parsed: IndexJson = serde_json::from_slice(&index_bytes)
        .map_err(|_| StepError::BadUpstream(index.digest.clone()))?;
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    for m in parsed.manifests {
        let bytes = store.read_blob(&m.digest)?;
        let image: ManifestJson =
            serde_json::from_slice(&bytes).map_err(|_| StepError::BadUpstream(m.digest.clone()))?;
        for blob in std::iter::once(image.config).chain(image.layers) {
            store.verify_blob(&blob.digest)?;
            blobs.push(BlobSource {
                path: store.blob_path(&blob.digest),
                digest: blob.digest,
                size: blob.size,
            });
        }
        manifests.push(ManifestBlob {
            digest: m.digest,
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

/// `imgraph verify --pushed`: fetch every pushed index by digest and check its
/// platforms and the machine of the binaries in each layer, and resolve every
/// tag, which must point at that index.
pub(crate) fn verify_pushed(project: &Project, globals: &Globals) -> Result<(), Error> {
    let store = Store::open(&project.cache_dir)?;
    let progress = Progress::new(globals.quiet, globals.verbose, globals.color);
    let opts = BuildOptions::cache_only();
    let report = build(
        &project.manifest,
        &project.selectors,
        &store,
        &opts,
        &progress,
    )?;
    let mut problems = Vec::new();
    let mut checked = 0;
    for node in report.graph.order() {
        let step = report.graph.step(node);
        let (StepKind::Index, Target::Dist(i)) = (step.kind, step.target) else {
            continue;
        };
        let d = &project.manifest.dists[i];
        let Some(index) = report.output(&step.id).and_then(StepOutput::blob) else {
            continue;
        };
        for reg_name in &d.registries {
            let reg = &project.manifest.registries[reg_name];
            let mut found = Vec::new();
            let mut platforms = 0;
            match verify_one(&store, reg, d, &index.digest) {
                Ok(n) => {
                    checked += n;
                    platforms = n;
                }
                Err(p) => found.push(p),
            }
            found.extend(verify_tags(reg, d, &index.digest));
            if found.is_empty() {
                if !globals.quiet {
                    eprintln!(
                        "verified {}/{}@{} on {}: {} platforms, tags {}",
                        reg.host,
                        reg.repository(&d.image),
                        index.digest,
                        reg.name,
                        platforms,
                        d.tags.join(", ")
                    );
                }
            } else {
                problems.extend(
                    found
                        .into_iter()
                        .map(|p| format!("{} ({}): {p}", reg.name, reg.host)),
                );
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::Verify(format!(
            "pushed images do not match the build:\n  {}",
            problems.join("\n  ")
        )));
    }
    if checked == 0 {
        return Err(Error::Usage(
            "nothing to verify: no selected image has registries".into(),
        ));
    }
    Ok(())
}

/// Every tag of `d` on `reg` must point at the built index: reading by digest
/// alone would miss a tag that another push moved. One line per wrong tag.
fn verify_tags(reg: &Registry, d: &DistSpec, index_digest: &str) -> Vec<String> {
    let client = match client(reg) {
        Ok(c) => c,
        Err(e) => return vec![e.to_string()],
    };
    let repo = reg.repository(&d.image);
    d.tags
        .iter()
        .filter_map(|tag| {
            let reference = format!("{}/{repo}:{tag}", reg.host);
            match client.head_manifest(&repo, tag) {
                Ok(Some(digest)) if digest == index_digest => None,
                Ok(Some(digest)) => Some(format!(
                    "{reference} points at {digest}, expected {index_digest}"
                )),
                Ok(None) => Some(format!("{reference} is missing, expected {index_digest}")),
                Err(e) => Some(format!("{reference}: {e}")),
            }
        })
        .collect()
}

fn verify_one(
    store: &Store,
    reg: &Registry,
    d: &DistSpec,
    index_digest: &str,
) -> Result<usize, String> {
    let client = client(reg).map_err(|e| e.to_string())?;
    let repo = reg.repository(&d.image);
    let (_, bytes) = client
        .get_manifest(&repo, index_digest)
        .map_err(|e| e.to_string())?;
    let remote: IndexJson = serde_json::from_slice(&bytes)
        .map_err(|e| format!("index {index_digest} is not JSON: {e}"))?;
    let local: IndexJson =
        serde_json::from_slice(&store.read_blob(index_digest).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let listed: Vec<(&str, Option<&PlatformJson>)> = remote
        .manifests
        .iter()
        .map(|m| (m.digest.as_str(), m.platform.as_ref()))
        .collect();
    let built: Vec<(&str, Option<&PlatformJson>)> = local
        .manifests
        .iter()
        .map(|m| (m.digest.as_str(), m.platform.as_ref()))
        .collect();
    if listed != built {
        return Err(format!(
            "index {index_digest} lists {listed:?}, built {built:?}"
        ));
    }
    for (arch, m) in d.arches.iter().zip(&remote.manifests) {
        let platform = arch.platform();
        let (_, bytes) = client
            .get_manifest(&repo, &m.digest)
            .map_err(|e| format!("{platform}: {e}"))?;
        let image: ManifestJson = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{platform}: manifest is not JSON: {e}"))?;
        let machine = arch.elf;
        for layer in &image.layers {
            let tmp =
                tempfile::NamedTempFile::new_in(store.tmp_dir()).map_err(|e| e.to_string())?;
            let mut file = tmp.reopen().map_err(|e| e.to_string())?;
            client
                .get_blob(&repo, &layer.digest, &mut file)
                .map_err(|e| format!("{platform}: {e}"))?;
            let census = crate::oci::elf::census_of_layer(tmp.path())
                .map_err(|e| format!("{platform}: layer {}: {e}", layer.digest))?;
            census.check(machine).map_err(|e| {
                format!(
                    "{}",
                    e.for_platform(&format!("{}:{}/{}", d.image, d.dist, arch.name), &platform)
                )
            })?;
        }
    }
    Ok(remote.manifests.len())
}
