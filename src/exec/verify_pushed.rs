//! `verify --pushed`: read every pushed index back from its registries by digest,
//! check its platforms and the machine of the binaries in each layer, and resolve
//! every tag, which must point at that index. Each platform's referrers must
//! list every artifact the build attached to it (same digest, naming it as
//! subject), and with a key every platform manifest and the index must carry a
//! signature by that key over a payload naming them. The key is public: whoever
//! checks an image someone else built has `cosign.pub`, not the private key
//! ([`verifying_key`]).

use oci_spec::image::{ImageIndex, ImageManifest, Platform};

use super::build::{build, BuildError, BuildOptions};
use super::push::client;
use super::{AttachmentOut, Progress, StepOutput};
use crate::cache::{CacheError, Store};
use crate::graph::{StepKind, Target};
use crate::manifest::{DistSpec, Manifest, Registry, Selector};
use crate::oci::elf::PlatformMismatch;
use crate::registry::{CredentialError, RegistryError};
use crate::sign::{KeyError, KeyFile, PublicKey};

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
    /// An attachment of the build is not among its subject's referrers.
    #[error("{artifact_type} {digest} is not among the referrers of {subject} (an attachment of the build is missing, or the registry holds another one)")]
    ReferrerMissing {
        /// The platform manifest.
        subject: String,
        /// The attachment's manifest.
        digest: String,
        /// Its artifactType.
        artifact_type: String,
    },
    /// A listed referrer names another subject.
    #[error("referrer {digest} names subject {found}, expected {subject}")]
    ReferrerWrongSubject {
        /// The platform manifest.
        subject: String,
        /// The referrer.
        digest: String,
        /// What its `subject` says.
        found: String,
    },
    /// No valid signature by the key.
    #[error("{what} {reference} has no valid signature by key {key}: {reason}")]
    Unsigned {
        /// `platform linux/arm64/v8` or `index`.
        what: String,
        /// `host/repository@digest`.
        reference: String,
        /// The public key's fingerprint.
        key: String,
        /// What was found instead.
        reason: String,
    },
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
    /// Attachments found among the platforms' referrers.
    pub referrers: usize,
    /// Signatures by the key checked (0 without `sign`).
    pub signatures: usize,
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

/// The key `verify --pushed` checks signatures with: `--key` (`flag`: a
/// `PUBLIC KEY` such as cosign.pub, or a private key), else the key of
/// `[settings] sign` (a public key there means verify-only), else none (no
/// signatures are checked). Only the public half is kept, and a public key
/// needs no password.
pub fn verifying_key(
    manifest: &Manifest,
    flag: Option<&std::path::Path>,
) -> Result<Option<PublicKey>, KeyError> {
    let key = match (flag, &manifest.settings.sign) {
        (Some(path), _) => KeyFile::load(path, "verify --key")?,
        (None, Some(spec)) => {
            KeyFile::load(&spec.key, &manifest.source.location(Some(&spec.span)))?
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(key.public_key()))
}

/// Reads every selected, pushed index back from each of its registries by digest,
/// checks its platforms and the machine of the binaries in each layer, and
/// resolves every tag, which must point at that index.
pub fn verify_pushed(
    manifest: &Manifest,
    selectors: &[Selector],
    store: &Store,
    key: Option<&PublicKey>,
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
    let attached: Vec<&AttachmentOut> = report
        .graph
        .order()
        .into_iter()
        .filter_map(
            |n| match report.outcomes[n.index()].as_ref()?.output.as_ref()? {
                StepOutput::Attachments(list) => Some(list),
                _ => None,
            },
        )
        .flatten()
        .collect();
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
            let attached_check = verify_attached(store, reg, d, &index.digest, &attached, key);
            found.extend(attached_check.problems);
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
                    referrers: attached_check.referrers,
                    signatures: attached_check.signatures,
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

/// The referrers and signatures of one registry's copy: every attachment the
/// build made for a platform manifest is listed among its referrers and names
/// it as subject; with a key, the index and each platform manifest carry a
/// signature by it over a payload naming `host/repository` and the digest.
fn verify_attached(
    store: &Store,
    reg: &Registry,
    d: &DistSpec,
    index_digest: &str,
    attached: &[&AttachmentOut],
    key: Option<&PublicKey>,
) -> AttachedCheck {
    let mut check = AttachedCheck::default();
    let found = &mut check.problems;
    let client = match client(reg) {
        Ok(c) => c,
        Err(e) => {
            found.push(e.into());
            return check;
        }
    };
    let repo = reg.repository(&d.image);
    let local: ImageIndex = match store
        .read_blob(index_digest)
        .map_err(PushedProblem::from)
        .and_then(|b| parse("index", index_digest, &b))
    {
        Ok(i) => i,
        Err(p) => {
            found.push(p);
            return check;
        }
    };
    let platform_digests: Vec<String> = local
        .manifests()
        .iter()
        .map(|m| m.digest().to_string())
        .collect();
    // What each signed digest is, for the message: `platform linux/arm64/v8`.
    let labels = local.manifests().iter().map(|m| match m.platform() {
        Some(p) => format!(
            "platform {}/{}{}",
            p.os(),
            p.architecture(),
            p.variant()
                .as_ref()
                .map(|v| format!("/{v}"))
                .unwrap_or_default()
        ),
        None => "manifest".to_owned(),
    });
    let signed: Vec<(String, String)> = labels
        .zip(platform_digests.iter().cloned())
        .chain([("index".to_owned(), index_digest.to_owned())])
        .collect();
    for subject in &platform_digests {
        let (problems, ok) = check_referrers(&client, &repo, subject, attached);
        found.extend(problems);
        check.referrers += ok;
    }
    let Some(key) = key else {
        return check;
    };
    let reference = format!("{}/{repo}", reg.host);
    for (what, digest) in &signed {
        let digest = digest.as_str();
        let sigs = match client.signatures(&repo, digest) {
            Ok(s) => s,
            Err(e) => {
                found.push(e.into());
                continue;
            }
        };
        let good = sigs.iter().any(|s| {
            key.verify(&s.payload, &s.signature)
                && crate::sign::read_payload(&s.payload)
                    == Some((reference.clone(), digest.to_owned()))
        });
        if good {
            check.signatures += 1;
        } else {
            found.push(PushedProblem::Unsigned {
                what: what.clone(),
                reference: format!("{reference}@{digest}"),
                key: key.fingerprint(),
                reason: match sigs.len() {
                    0 => format!(
                        "no signature at tag {}",
                        crate::registry::signatures::signature_tag(digest)
                    ),
                    n => format!("{n} signature(s), none by this key over a payload naming it"),
                },
            });
        }
    }
    check
}

/// Checks that every attachment in `attached` whose subject is `subject` is
/// listed among `subject`'s referrers in `repo` (the API or the fallback tag),
/// by its digest, and that the manifest stored under that digest names
/// `subject`. An attachment whose content differs from what the registry
/// holds (an SBOM listing other packages) has another digest: missing.
/// Returns the problems and how many attachments passed.
pub fn check_referrers(
    client: &crate::registry::Client,
    repo: &str,
    subject: &str,
    attached: &[&AttachmentOut],
) -> (Vec<PushedProblem>, usize) {
    let mut found = Vec::new();
    let mut ok = 0;
    let mine: Vec<&&AttachmentOut> = attached
        .iter()
        .filter(|a| a.subject.digest == subject)
        .collect();
    if mine.is_empty() {
        return (found, ok);
    }
    let listed = match client.referrers(repo, subject) {
        Ok(l) => l,
        Err(e) => return (vec![e.into()], 0),
    };
    for a in mine {
        let digest = &a.manifest.digest;
        if !listed.iter().any(|l| &l.digest == digest) {
            found.push(PushedProblem::ReferrerMissing {
                subject: subject.to_owned(),
                digest: digest.clone(),
                artifact_type: a.artifact_type.clone(),
            });
            continue;
        }
        let named = client
            .get_manifest(repo, digest)
            .map_err(PushedProblem::from)
            .and_then(|(_, bytes)| parse::<serde_json::Value>("manifest", digest, &bytes));
        match named {
            Ok(doc) => {
                let s = doc
                    .pointer("/subject/digest")
                    .and_then(|v| v.as_str())
                    .unwrap_or("(none)");
                if s == subject {
                    ok += 1;
                } else {
                    found.push(PushedProblem::ReferrerWrongSubject {
                        subject: subject.to_owned(),
                        digest: digest.clone(),
                        found: s.to_owned(),
                    });
                }
            }
            Err(p) => found.push(p),
        }
    }
    (found, ok)
}

/// What [`verify_attached`] found.
#[derive(Default)]
struct AttachedCheck {
    problems: Vec<PushedProblem>,
    /// Attachments listed and naming their subject.
    referrers: usize,
    /// Manifests with a good signature.
    signatures: usize,
}
