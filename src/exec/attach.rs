//! The `sbom` and `provenance` steps: what they read (their key inputs) and the
//! artifacts they write, attached to the platform manifest (see `crate::attest`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::outputs::AttachmentOut;
use super::steps::{blob_of, layer_of, locked_platform, platform, prepare_rootfs, StepError};
use super::{Ctx, StepOutput};
use crate::attest::provenance::{Dependency, Provenance};
use crate::attest::{self, Sbom, Subject};
use crate::cache::Descriptor;
use crate::graph::{Step, StepKind};
use crate::key::StepInputs;
use crate::manifest::{rfc3339, PlatformSpec, RootfsSource, SbomFormat};

/// `artifactType` of an SPDX document.
pub const SPDX_TYPE: &str = "application/spdx+json";
/// `artifactType` of a CycloneDX BOM.
pub const CYCLONEDX_TYPE: &str = "application/vnd.cyclonedx+json";
/// `artifactType` of an in-toto statement.
pub const INTOTO_TYPE: &str = "application/vnd.in-toto+json";

/// The artifact type and the readable file stem (`sbom.spdx`) of a format.
pub fn sbom_kind(f: SbomFormat) -> (&'static str, &'static str) {
    match f {
        SbomFormat::Spdx => (SPDX_TYPE, "sbom.spdx"),
        SbomFormat::Cyclonedx => (CYCLONEDX_TYPE, "sbom.cyclonedx"),
    }
}

/// The readable file stem of an attachment in `out/` (`sbom.spdx`,
/// `provenance.intoto`), by its artifact type.
pub fn file_stem(artifact_type: &str) -> &'static str {
    match artifact_type {
        SPDX_TYPE => "sbom.spdx",
        CYCLONEDX_TYPE => "sbom.cyclonedx",
        INTOTO_TYPE => "provenance.intoto",
        _ => "attachment",
    }
}

/// The `.deb`s of a `debian` platform by `name version arch`: (sha256, url).
fn locked_debs(
    ctx: &Ctx<'_>,
    p: &PlatformSpec,
) -> Result<BTreeMap<String, (String, String)>, StepError> {
    let RootfsSource::Debian(d) = &p.rootfs else {
        return Ok(BTreeMap::new());
    };
    let locked = locked_platform(ctx, p, d)?;
    Ok(locked
        .packages
        .iter()
        .map(|pkg| {
            let mirror = pkg.archive.split_once(' ').map_or("", |(m, _)| m);
            let url = format!("{}/{}", mirror.trim_end_matches('/'), pkg.filename);
            (pkg.id(), (pkg.sha256.clone(), url))
        })
        .collect())
}

/// The SBOM step's key: the manifest (subject) and layer (content) digests, the
/// formats, `created`, and for a `debian` source the locked `.deb`s whose
/// checksums and urls it writes.
pub(super) fn prepare_sbom(
    ctx: &Ctx<'_>,
    step: &Step,
    deps: &[(&Step, &StepOutput)],
) -> Result<StepInputs, StepError> {
    let p = platform(ctx, step);
    let formats: Vec<&str> = p.sbom.iter().map(|f| f.name()).collect();
    let mut i = StepInputs::new("sbom")
        .manifest(format!("images.{}.sbom", p.image), formats)
        .manifest("settings.created", rfc3339(p.created))
        .manifest("imgraph.version", env!("CARGO_PKG_VERSION"))
        .upstream(
            "manifest",
            blob_of(deps, StepKind::Manifest, &step.id)?.digest.clone(),
        )
        .upstream("layer", layer_of(deps, &step.id)?.blob.digest.clone());
    if matches!(p.rootfs, RootfsSource::Debian(_)) {
        let debs = locked_debs(ctx, p)?;
        i = i.packages(
            debs.into_iter()
                .map(|(id, (sha, url))| (id, format!("{sha} {url}")))
                .collect(),
        );
    }
    Ok(i)
}

fn subject<'m>(p: &'m PlatformSpec, manifest: &'m Descriptor) -> Subject<'m> {
    Subject {
        image: &p.image,
        dist: &p.dist,
        arch: p.arch.name,
        oci_arch: p.arch.architecture,
        digest: &manifest.digest,
        created: rfc3339(p.created),
    }
}

/// Puts one document and its artifact manifest into the store.
fn attach(
    ctx: &Ctx<'_>,
    artifact_type: &str,
    title: &str,
    document: &[u8],
    subject: &Descriptor,
    created: &str,
) -> Result<AttachmentOut, StepError> {
    let doc = ctx.store.put_bytes(document)?;
    let empty = ctx.store.put_bytes(attest::EMPTY_CONFIG)?;
    let manifest = attest::artifact_manifest(artifact_type, title, &doc, &empty, subject, created);
    Ok(AttachmentOut {
        manifest: ctx.store.put_bytes(&manifest)?,
        artifact_type: artifact_type.to_string(),
        blobs: vec![empty, doc],
        subject: subject.clone(),
    })
}

/// Writes one SBOM per format, from what the layer step found in the layer.
pub(super) fn execute_sbom(
    ctx: &Ctx<'_>,
    step: &Step,
    deps: &[(&Step, &StepOutput)],
) -> Result<StepOutput, StepError> {
    let p = platform(ctx, step);
    let manifest = blob_of(deps, StepKind::Manifest, &step.id)?;
    let contents = super::layer_contents::layer_contents(ctx, layer_of(deps, &step.id)?)?;
    let sbom = Sbom {
        subject: subject(p, manifest),
        contents: &contents,
        debs: locked_debs(ctx, p)?,
        distro_fallback: match &p.rootfs {
            RootfsSource::Debian(_) => Some(("debian".to_string(), p.dist.clone())),
            _ => None,
        },
    };
    let created = rfc3339(p.created);
    let mut out = Vec::new();
    for f in &p.sbom {
        let bytes = match f {
            SbomFormat::Spdx => attest::spdx::document(&sbom),
            SbomFormat::Cyclonedx => attest::cyclonedx::document(&sbom),
        };
        let (artifact_type, stem) = sbom_kind(*f);
        out.push(attach(
            ctx,
            artifact_type,
            &format!("{stem}.json"),
            &bytes,
            manifest,
            &created,
        )?);
    }
    Ok(StepOutput::Attachments(out))
}

/// The git repository holding `images.toml`: (uri, commit), asked once per
/// folder. The uri is `git+<origin's url>` when there is an `origin` remote,
/// else `git+file:images.toml` (a local path would differ between machines).
fn git_commit(root: &std::path::Path) -> Option<(String, String)> {
    type Seen = HashMap<PathBuf, Option<(String, String)>>;
    static SEEN: Mutex<Option<Seen>> = Mutex::new(None);
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    seen.get_or_insert_with(HashMap::new)
        .entry(root.to_path_buf())
        .or_insert_with(|| {
            let commit = git(&["rev-parse", "--verify", "-q", "HEAD"])?;
            let uri = git(&["remote", "get-url", "origin"])
                .filter(|u| !u.contains('@') || u.starts_with("git@"))
                .map_or_else(
                    || "git+file:images.toml".to_string(),
                    |u| format!("git+{u}"),
                );
            Some((uri, commit))
        })
        .clone()
}

/// The image's `[images.NAME]` table as written, as JSON, less its `dists`
/// and `arches` lists: the statement names its own dist and arch, and adding an
/// arch does not change what built the others.
fn image_section(ctx: &Ctx<'_>, image: &str) -> Value {
    let mut section = toml::from_str::<toml::Value>(&ctx.manifest.source.text)
        .ok()
        .and_then(|v| v.get("images")?.get(image).cloned())
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or(Value::Null);
    if let Some(table) = section.as_object_mut() {
        table.remove("dists");
        table.remove("arches");
    }
    section
}

/// `algo:hex` (or a bare blake3 hex, as rootfs fingerprints are) as a digest set entry.
fn digest_entry(hash: &str) -> (String, String) {
    match hash.split_once(':') {
        Some((algo, hex)) => (algo.to_string(), hex.to_string()),
        None => ("blake3".to_string(), hash.to_string()),
    }
}

/// Everything the provenance statement lists, besides the subject.
struct ProvenanceInputs {
    section: Value,
    internal: Value,
    dependencies: Vec<Dependency>,
    rootfs: StepInputs,
    git: Option<(String, String)>,
}

fn provenance_inputs(ctx: &Ctx<'_>, step: &Step) -> Result<ProvenanceInputs, StepError> {
    let p = platform(ctx, step);
    // The rootfs step's own inputs: the source's content hashes (stat-cached).
    let (rootfs, _) = prepare_rootfs(ctx, step, p)?;
    let mut dependencies: Vec<Dependency> = rootfs
        .content
        .iter()
        .map(|(path, hash)| Dependency {
            uri: path.clone(),
            digest: vec![digest_entry(hash)],
        })
        .collect();
    if let RootfsSource::Debian(d) = &p.rootfs {
        let locked = locked_platform(ctx, p, d)?;
        for (_, (sha, url)) in locked_debs(ctx, p)? {
            dependencies.push(Dependency {
                uri: url,
                digest: vec![("sha256".into(), sha)],
            });
        }
        for archive in &locked.archives {
            let Some(state) = ctx.manifest.lock.archives.get(archive) else {
                continue;
            };
            // `MIRROR SUITE INRELEASE-PREFIX`.
            let mut parts = archive.split(' ');
            let (mirror, suite) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            dependencies.push(Dependency {
                uri: format!("{}/dists/{suite}/InRelease", mirror.trim_end_matches('/')),
                digest: vec![digest_entry(&state.inrelease)],
            });
        }
    }
    let git = git_commit(&ctx.manifest.root);
    if let Some((uri, commit)) = &git {
        dependencies.push(Dependency {
            uri: uri.clone(),
            digest: vec![("gitCommit".into(), commit.clone())],
        });
    }
    Ok(ProvenanceInputs {
        section: image_section(ctx, &p.image),
        internal: json!({
            "compression": ctx.manifest.settings.compression,
            "created": rfc3339(p.created),
        }),
        dependencies,
        rootfs,
        git,
    })
}

/// The provenance step's key: the subject, the image's manifest section, the
/// rootfs inputs, the lock's packages and InRelease files, the git commit.
pub(super) fn prepare_provenance(
    ctx: &Ctx<'_>,
    step: &Step,
    deps: &[(&Step, &StepOutput)],
) -> Result<StepInputs, StepError> {
    let pi = provenance_inputs(ctx, step)?;
    let mut i = StepInputs::new("provenance")
        .manifest(format!("images.{}", step.id.image), &pi.section)
        .manifest("settings", &pi.internal)
        .manifest("imgraph.version", env!("CARGO_PKG_VERSION"))
        .manifest("git.commit", &pi.git)
        .upstream(
            "manifest",
            blob_of(deps, StepKind::Manifest, &step.id)?.digest.clone(),
        )
        .packages(pi.rootfs.packages.clone());
    for (path, hash) in &pi.rootfs.content {
        i = i.content(path.clone(), hash.clone());
    }
    let archives: BTreeMap<&str, &str> = pi
        .dependencies
        .iter()
        .filter(|d| d.uri.ends_with("/InRelease"))
        .map(|d| (d.uri.as_str(), d.digest[0].1.as_str()))
        .collect();
    if !archives.is_empty() {
        i = i.manifest("lock.archives", archives);
    }
    Ok(i)
}

/// Writes the provenance statement.
pub(super) fn execute_provenance(
    ctx: &Ctx<'_>,
    step: &Step,
    deps: &[(&Step, &StepOutput)],
) -> Result<StepOutput, StepError> {
    let p = platform(ctx, step);
    let manifest = blob_of(deps, StepKind::Manifest, &step.id)?;
    let pi = provenance_inputs(ctx, step)?;
    let bytes = attest::provenance::statement(&Provenance {
        subject: subject(p, manifest),
        image_section: pi.section,
        internal: pi.internal,
        dependencies: pi.dependencies,
    });
    let created = rfc3339(p.created);
    Ok(StepOutput::Attachments(vec![attach(
        ctx,
        INTOTO_TYPE,
        "provenance.intoto.json",
        &bytes,
        manifest,
        &created,
    )?]))
}
