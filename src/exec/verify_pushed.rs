//! `verify --pushed`: read every pushed index back from its registries by digest,
//! check its platforms and the machine of the binaries in each layer, and resolve
//! every tag, which must point at that index.

use oci_spec::image::{ImageIndex, ImageManifest, Platform};

use super::build::{build, BuildError, BuildOptions};
use super::push::client;
use super::{Progress, StepOutput};
use crate::cache::{CacheError, Store};
use crate::graph::{StepKind, Target};
use crate::manifest::{DistSpec, Manifest, Registry, Selector};
use crate::oci::elf::PlatformMismatch;
use crate::registry::{CredentialError, RegistryError};

/// One thing wrong with one registry's copy of one dist.
#[derive(Debug, thiserror::Error)]
pub enum PushedProblem {
    /// A tag points at another index.
    #[error("{reference} points at {found}, expected {expected}")]
    TagMoved {
        /// `host/repository:tag`.
        reference: String,
        /// What it points at.
        found: String,
        /// The built index.
        expected: String,
    },
    /// A tag is not there.
    #[error("{reference} is missing, expected {expected}")]
    TagMissing {
        /// `host/repository:tag`.
        reference: String,
        /// The built index.
        expected: String,
    },
    /// The pushed index lists other platforms than the built one.
    #[error("index {digest} lists {listed}, built {built}")]
    PlatformsDiffer {
        /// The index.
        digest: String,
        /// What the registry's copy lists.
        listed: String,
        /// What was built.
        built: String,
    },
    /// A document the registry served does not parse.
    #[error("{what} {digest} is not a valid OCI document: {reason}")]
    BadDocument {
        /// `index` or `manifest`.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// The parser's words.
        reason: String,
    },
    /// Reading a fetched layer.
    #[error("layer {digest} of {platform}: {source}")]
    Layer {
        /// `linux/arm64/v8`.
        platform: String,
        /// The layer.
        digest: String,
        /// What failed.
        source: std::io::Error,
    },
    /// Binaries for another machine.
    #[error(transparent)]
    WrongMachine(#[from] PlatformMismatch),
    /// Talking to the registry.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Reading the docker config.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// Reading the built index from the cache.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// What `verify --pushed` found, per registry.
#[derive(Debug, thiserror::Error)]
#[error("pushed images do not match the build:{}", render(.0))]
pub struct PushedMismatch(pub Vec<(String, String, PushedProblem)>);

fn render(problems: &[(String, String, PushedProblem)]) -> String {
    problems
        .iter()
        .map(|(name, host, p)| format!("\n  {name} ({host}): {p}"))
        .collect()
}

/// One registry's copy of one dist that matched the build.
#[derive(Debug)]
pub struct Verified {
    /// The registry's name in the manifest.
    pub registry: String,
    /// `host/repository@digest`.
    pub reference: String,
    /// Platforms checked.
    pub platforms: usize,
    /// Tags that point at it.
    pub tags: Vec<String>,
}

/// Why `verify --pushed` could not say yes.
#[derive(Debug, thiserror::Error)]
pub enum VerifyPushedError {
    /// Bringing the cache up to date failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// What the registries serve differs from the build.
    #[error(transparent)]
    Mismatch(#[from] PushedMismatch),
    /// No selected image is pushed anywhere.
    #[error("nothing to verify: no selected image has registries")]
    NothingToVerify,
}

/// Reads every selected, pushed index back from each of its registries by digest,
/// checks its platforms and the machine of the binaries in each layer, and
/// resolves every tag, which must point at that index.
pub fn verify_pushed(
    manifest: &Manifest,
    selectors: &[Selector],
    store: &Store,
    remote: Option<crate::manifest::CacheRegistry>,
    progress: &Progress,
) -> Result<Vec<Verified>, VerifyPushedError> {
    // Only digests are needed: an assembler checks what it pushed from the cache
    // registry's records, without building or downloading a layer.
    let opts = BuildOptions {
        remote,
        ..BuildOptions::cache_only()
    };
    let report = build(manifest, selectors, store, &opts, progress)?;
    let mut problems = Vec::new();
    let mut verified = Vec::new();
    for node in report.graph.order() {
        let step = report.graph.step(node);
        let (StepKind::Index, Target::Dist(i)) = (step.id.kind, step.target) else {
            continue;
        };
        let d = &manifest.dists[i];
        let Some(index) = report.output(&step.id).and_then(StepOutput::blob) else {
            continue;
        };
        for reg_name in &d.registries {
            let reg = &manifest.registries[reg_name];
            let mut found = Vec::new();
            let mut platforms = 0;
            match verify_index(store, reg, d, &index.digest) {
                Ok(n) => platforms = n,
                Err(p) => found.push(p),
            }
            found.extend(verify_tags(reg, d, &index.digest));
            if found.is_empty() {
                verified.push(Verified {
                    registry: reg.name.clone(),
                    reference: format!(
                        "{}/{}@{}",
                        reg.host,
                        reg.repository(&d.image),
                        index.digest
                    ),
                    platforms,
                    tags: d.tags.clone(),
                });
            } else {
                problems.extend(
                    found
                        .into_iter()
                        .map(|p| (reg.name.clone(), reg.host.clone(), p)),
                );
            }
        }
    }
    if !problems.is_empty() {
        return Err(PushedMismatch(problems).into());
    }
    if verified.is_empty() {
        return Err(VerifyPushedError::NothingToVerify);
    }
    Ok(verified)
}

/// Every tag of `d` on `reg` must point at the built index: reading by digest
/// alone would miss a tag that another push moved. One problem per wrong tag.
fn verify_tags(reg: &Registry, d: &DistSpec, index_digest: &str) -> Vec<PushedProblem> {
    let client = match client(reg) {
        Ok(c) => c,
        Err(e) => return vec![e.into()],
    };
    let repo = reg.repository(&d.image);
    d.tags
        .iter()
        .filter_map(|tag| {
            let reference = format!("{}/{repo}:{tag}", reg.host);
            let expected = index_digest.to_string();
            match client.head_manifest(&repo, tag) {
                Ok(Some(digest)) if digest == index_digest => None,
                Ok(Some(found)) => Some(PushedProblem::TagMoved {
                    reference,
                    found,
                    expected,
                }),
                Ok(None) => Some(PushedProblem::TagMissing {
                    reference,
                    expected,
                }),
                Err(e) => Some(e.into()),
            }
        })
        .collect()
}

fn platforms(index: &ImageIndex) -> Vec<(String, Option<Platform>)> {
    index
        .manifests()
        .iter()
        .map(|m| (m.digest().to_string(), m.platform().clone()))
        .collect()
}

fn parse<T: serde::de::DeserializeOwned>(
    what: &'static str,
    digest: &str,
    bytes: &[u8],
) -> Result<T, PushedProblem> {
    serde_json::from_slice(bytes).map_err(|e| PushedProblem::BadDocument {
        what,
        digest: digest.to_string(),
        reason: e.to_string(),
    })
}

/// Reads the index back by digest: the same platforms as built, and each
/// platform's layers hold binaries for its machine. Returns the platform count.
fn verify_index(
    store: &Store,
    reg: &Registry,
    d: &DistSpec,
    index_digest: &str,
) -> Result<usize, PushedProblem> {
    let client = client(reg)?;
    let repo = reg.repository(&d.image);
    let (_, bytes) = client.get_manifest(&repo, index_digest)?;
    let remote: ImageIndex = parse("index", index_digest, &bytes)?;
    let local: ImageIndex = parse("index", index_digest, &store.read_blob(index_digest)?)?;
    if platforms(&remote) != platforms(&local) {
        return Err(PushedProblem::PlatformsDiffer {
            digest: index_digest.to_string(),
            listed: format!("{:?}", platforms(&remote)),
            built: format!("{:?}", platforms(&local)),
        });
    }
    for (arch, m) in d.arches.iter().zip(remote.manifests()) {
        let platform = arch.platform();
        let digest = m.digest().to_string();
        let (_, bytes) = client.get_manifest(&repo, &digest)?;
        let image: ImageManifest = parse("manifest", &digest, &bytes)?;
        for layer in image.layers() {
            let layer_digest = layer.digest().to_string();
            let layer_err = |source| PushedProblem::Layer {
                platform: platform.clone(),
                digest: layer_digest.clone(),
                source,
            };
            let tmp = tempfile::NamedTempFile::new_in(store.tmp_dir()).map_err(layer_err)?;
            let mut file = tmp.reopen().map_err(layer_err)?;
            client.get_blob(&repo, &layer_digest, &mut file)?;
            let census = crate::oci::elf::census_of_layer(tmp.path()).map_err(layer_err)?;
            census.check(arch.elf).map_err(|e| {
                e.for_platform(&format!("{}:{}/{}", d.image, d.dist, arch.name), &platform)
            })?;
        }
    }
    Ok(remote.manifests().len())
}
