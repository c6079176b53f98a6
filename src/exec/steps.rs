//! What each kind of step reads (its key inputs) and does.

use crate::cache::{CacheError, Descriptor};
use crate::graph::{Role, Step, StepId, StepKind, Target};
use crate::key::StepInputs;
use crate::manifest::{rfc3339, DistSpec, Owners, PlatformSpec, RootfsSource};
use crate::oci::elf::PlatformMismatch;
use crate::oci::image::{self, DocumentError};
use crate::oci::layer::{self, LayerError, LayerOptions, LayerSource};
use crate::rootfs::{FingerprintError, FingerprintOptions};

use super::{Ctx, LayerOut, StepOutput};

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The cache.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Reading a rootfs.
    #[error(transparent)]
    Rootfs(#[from] FingerprintError),
    /// Writing a layer.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Building a JSON document.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The layer's binaries are for another machine than the platform says.
    #[error(transparent)]
    Platform(#[from] PlatformMismatch),
    /// A `command` rootfs.
    #[error(transparent)]
    Command(#[from] crate::rootfs::CommandError),
    /// Pushing.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// Reading docker credentials.
    #[error(transparent)]
    Credentials(#[from] crate::registry::CredentialError),
    /// A `debian` rootfs with no current entry in `images.lock`.
    #[error("{platform} has no current entry in images.lock: run `imgraph lock`")]
    DebianNotLocked {
        /// `image:dist/arch`.
        platform: String,
    },
    /// Fetching a locked `.deb`.
    #[error(transparent)]
    DebFetch(Box<crate::debian::debs::DebFetchError>),
    /// Installing the `.deb`s into a root filesystem.
    #[error(transparent)]
    Install(#[from] crate::debian::install::InstallError),
    /// `scripts = "strict"` and a maintainer-script command is not reproduced.
    #[error(transparent)]
    Scripts(crate::debian::scripts::StrictError),
    /// Reading the image's layer for its SBOM.
    #[error(transparent)]
    Attest(#[from] crate::attest::AttestError),
    /// The cache registry.
    #[error(transparent)]
    RemoteCache(Box<super::remote_cache::RemoteCacheError>),
    /// `--require-cache`, and neither the local cache nor the cache registry has it.
    #[error("{step} is in neither the local cache nor the cache registry, and --require-cache forbids building it here")]
    NotInCache {
        /// The step id.
        step: String,
    },
    /// An upstream output of an unexpected shape (a corrupt cache entry).
    #[error("cache entry for {0} has outputs of the wrong kind; delete the cache folder's actions/ to rebuild")]
    BadUpstream(String),
}

/// A step's inputs, and its output when computing the inputs already produced it.
pub(super) struct Prepared {
    pub(super) inputs: StepInputs,
    pub(super) known_output: Option<StepOutput>,
}

pub(super) fn platform<'m>(ctx: &Ctx<'m>, step: &Step) -> &'m PlatformSpec {
    match step.target {
        Target::Platform(i) => &ctx.manifest.platforms[i],
        Target::Dist(_) => unreachable!("platform steps target platforms"),
    }
}

fn dist<'m>(ctx: &Ctx<'m>, step: &Step) -> &'m DistSpec {
    match step.target {
        Target::Dist(i) => &ctx.manifest.dists[i],
        Target::Platform(_) => unreachable!("dist steps target dists"),
    }
}

fn upstream<'o>(deps: &[(&Step, &'o StepOutput)], kind: StepKind) -> Option<&'o StepOutput> {
    deps.iter()
        .find(|(s, _)| s.id.kind == kind)
        .map(|(_, o)| *o)
}

pub(super) fn layer_of<'o>(
    deps: &[(&Step, &'o StepOutput)],
    id: &str,
) -> Result<&'o LayerOut, StepError> {
    match upstream(deps, StepKind::Layer) {
        Some(StepOutput::Layer(l)) => Ok(l),
        _ => Err(StepError::BadUpstream(id.to_string())),
    }
}

pub(super) fn blob_of<'o>(
    deps: &[(&Step, &'o StepOutput)],
    kind: StepKind,
    id: &str,
) -> Result<&'o Descriptor, StepError> {
    match upstream(deps, kind) {
        Some(StepOutput::Blob(d)) => Ok(d),
        _ => Err(StepError::BadUpstream(id.to_string())),
    }
}

/// The step an upstream role of `step` names (`None` for a role this version
/// does not know, from a record of another format).
pub(super) fn role_step(step: &Step, role: &str) -> Option<StepId> {
    role.parse::<Role>().ok().map(|r| r.step_of(&step.id))
}

/// Computes a step's key inputs (for a rootfs step this fingerprints the source).
pub(super) fn prepare(
    ctx: &Ctx<'_>,
    step: &Step,
    deps: &[(&Step, &StepOutput)],
) -> Result<Prepared, StepError> {
    let prefix = format!("images.{}", step.id.image);
    let mut known_output = None;
    let inputs = match step.id.kind {
        StepKind::Rootfs => {
            let p = platform(ctx, step);
            let (inputs, out) = prepare_rootfs(ctx, step, p)?;
            known_output = out;
            inputs
        }
        StepKind::Layer => {
            let p = platform(ctx, step);
            let mut i = StepInputs::new("layer")
                .manifest("settings.compression", ctx.manifest.settings.compression)
                .manifest("settings.created", rfc3339(p.created))
                .upstream(
                    "rootfs",
                    upstream(deps, StepKind::Rootfs)
                        .map(StepOutput::digest)
                        .unwrap_or_default(),
                );
            if let RootfsSource::Dir { owners, .. } = &p.rootfs {
                i = i.manifest(format!("{prefix}.rootfs.owners"), owners);
            }
            i
        }
        StepKind::Config => {
            let p = platform(ctx, step);
            StepInputs::new("config")
                .manifest(format!("{prefix}.config"), &p.config)
                .manifest("settings.created", rfc3339(p.created))
                .manifest("arch", p.arch.name)
                .upstream("layer", layer_of(deps, &step.id)?.diff_id.clone())
        }
        StepKind::Manifest => {
            let p = platform(ctx, step);
            StepInputs::new("manifest")
                .manifest(format!("{prefix}.annotations"), &p.annotations)
                .manifest("settings.compression", ctx.manifest.settings.compression)
                .upstream(
                    "config",
                    blob_of(deps, StepKind::Config, &step.id)?.digest.clone(),
                )
                .upstream("layer", layer_of(deps, &step.id)?.blob.digest.clone())
        }
        StepKind::Sbom => super::attach::prepare_sbom(ctx, step, deps)?,
        StepKind::Provenance => super::attach::prepare_provenance(ctx, step, deps)?,
        StepKind::Index => {
            let d = dist(ctx, step);
            let mut i = StepInputs::new("index")
                .manifest(format!("{prefix}.annotations"), &d.annotations)
                .manifest(
                    format!("{prefix}.arches"),
                    d.arches.iter().map(|a| a.name).collect::<Vec<_>>(),
                );
            for (s, out) in deps {
                if let Some(arch) = s.id.arch {
                    i = i.upstream(format!("manifest:{}", arch.name), out.digest());
                }
            }
            i
        }
        StepKind::Tag | StepKind::Push => {
            let d = dist(ctx, step);
            let index = blob_of(deps, StepKind::Index, &step.id)
                .or_else(|_| match upstream(deps, StepKind::Tag) {
                    Some(StepOutput::Tag { index, .. }) => Ok(index),
                    _ => Err(StepError::BadUpstream(step.id.to_string())),
                })?
                .digest
                .clone();
            let mut i = StepInputs::new(step.id.kind.as_str())
                .manifest(format!("{prefix}.tags"), &d.tags)
                .upstream("index", index);
            // A push attaches its platforms' SBOMs and provenance: a changed one
            // is something to push.
            for (s, out) in deps {
                if matches!(s.id.kind, StepKind::Sbom | StepKind::Provenance) {
                    i = i.upstream(Role::of(&s.id, &step.id).to_string(), out.digest());
                }
            }
            if let Some(reg) = step
                .id
                .registry
                .as_ref()
                .and_then(|r| ctx.manifest.registries.get(r))
            {
                i = i.manifest(format!("registries.{}.url", reg.name), &reg.url);
            }
            i
        }
    };
    Ok(Prepared {
        inputs,
        known_output,
    })
}

pub(super) fn prepare_rootfs(
    ctx: &Ctx<'_>,
    step: &Step,
    p: &PlatformSpec,
) -> Result<(StepInputs, Option<StepOutput>), StepError> {
    let field = format!("images.{}.rootfs", p.image);
    match &p.rootfs {
        RootfsSource::Dir {
            path,
            shown,
            owners,
        } => {
            let cache = ctx.stat_cache(path);
            let tree = {
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                let opts = FingerprintOptions {
                    owners: *owners,
                    clamp_mtime: Some(p.created),
                };
                // All arches of a dist often share one folder: walk it once per run.
                let memo_key = (path.clone(), *owners, p.created);
                match ctx.memo_fingerprint(&memo_key) {
                    Some(tree) => tree,
                    None => {
                        let tree = crate::rootfs::fingerprint_dir(path, &opts, &mut cache)?.0;
                        ctx.remember_fingerprint(memo_key, &tree);
                        tree
                    }
                }
            };
            let inputs = StepInputs::new("rootfs")
                .manifest(field, serde_json::json!({ "dir": shown, "owners": owners }))
                .content(shown.clone(), tree.digest.clone());
            let out = StepOutput::Rootfs {
                tree: tree.digest.clone(),
                files: tree.entries.len() as u64,
                kept: None,
                scripts: Vec::new(),
            };
            ctx.keep_tree(&step.id, tree);
            Ok((inputs, Some(out)))
        }
        RootfsSource::Tar { path, shown } => {
            let cache = ctx.stat_cache(path.parent().unwrap_or(path));
            let hash = {
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                crate::rootfs::fingerprint_file(path, &mut cache)?.0
            };
            let inputs = StepInputs::new("rootfs")
                .manifest(field, serde_json::json!({ "tar": shown }))
                .content(shown.clone(), hash.clone());
            Ok((
                inputs,
                Some(StepOutput::Rootfs {
                    tree: hash,
                    files: 1,
                    kept: None,
                    scripts: Vec::new(),
                }),
            ))
        }
        RootfsSource::Command {
            command,
            inputs,
            out_is_tar,
            timeout,
        } => {
            // `created` reaches the command as SOURCE_DATE_EPOCH (and clamps the
            // fingerprint of a folder it makes).
            let mut i = StepInputs::new("rootfs")
                .manifest(
                    field,
                    serde_json::json!({ "command": command, "out_is_tar": out_is_tar, "timeout": timeout.map(|t| t.as_secs()) }),
                )
                .manifest("settings.created", rfc3339(p.created));
            for (path, shown) in inputs {
                let cache = ctx.stat_cache(path);
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                let hash = if path.is_dir() {
                    let opts = FingerprintOptions {
                        owners: Owners::Preserve,
                        clamp_mtime: None,
                    };
                    crate::rootfs::fingerprint_dir(path, &opts, &mut cache)?
                        .0
                        .digest
                } else {
                    crate::rootfs::fingerprint_file(path, &mut cache)?.0
                };
                i = i.content(shown.clone(), hash);
            }
            Ok((i, None))
        }
        RootfsSource::Debian(d) => {
            // plan and build read only the lock: never the network.
            let locked = locked_platform(ctx, p, d)?;
            let packages = locked.package_map();
            let inputs = StepInputs::new("rootfs")
                .manifest(
                    field,
                    serde_json::json!({ "debian": {
                        "variant": d.variant,
                        "include": d.include,
                        "exclude": d.exclude,
                        "archives": d.archives(),
                        "components": d.components,
                    }}),
                )
                .manifest("debian installer format", crate::debian::install::FORMAT)
                // The report of maintainer-script commands not reproduced is part
                // of the output, and strict mode decides whether the step fails.
                .manifest(
                    "debian scripts",
                    serde_json::json!({
                        "format": crate::debian::scripts::FORMAT,
                        "mode": if d.scripts_strict { "strict" } else { "report" },
                    }),
                )
                // What install() reads besides the packages: mtimes and
                // /etc/shadow's last-change day come from `created`.
                .manifest("settings.created", rfc3339(p.created))
                .manifest("debian arch", &d.debian_arch)
                .packages(packages);
            // Fetching and unpacking run when the step does (build), not in plan.
            Ok((inputs, None))
        }
    }
}

/// The platform's entry in `images.lock`, resolved for its current options and
/// matching its digest (an entry edited by hand is refused, as a stale one is).
pub(super) fn locked_platform<'m>(
    ctx: &Ctx<'m>,
    p: &PlatformSpec,
    d: &crate::manifest::DebianSource,
) -> Result<&'m crate::manifest::lock::LockedPlatform, StepError> {
    let label = p.label();
    ctx.manifest
        .lock
        .platforms
        .get(&label)
        .filter(|_| ctx.manifest.lock.is_current(&label, d))
        .ok_or(StepError::DebianNotLocked { platform: label })
}

/// Builds a `debian` rootfs from the lock: every `.deb` fetched into the cache
/// (verified against the locked sha256 as it streams, and again as it is installed)
/// and installed into one tarball in `cache/rootfs/`, named by everything the
/// installer reads (its format, `created`, the arch, the package set) so that no
/// two builds with different inputs share it. The output's `tree` is the
/// tarball's blake3, hashed as it was written: a layer step that reads it again
/// later checks it first ([`kept_rootfs`]).
fn build_debian_rootfs(
    ctx: &Ctx<'_>,
    p: &PlatformSpec,
    d: &crate::manifest::DebianSource,
) -> Result<StepOutput, StepError> {
    let locked = locked_platform(ctx, p, d)?;
    let name = blake3::hash(
        &serde_json::to_vec(&(
            crate::debian::install::FORMAT,
            p.created,
            &d.debian_arch,
            locked.package_map(),
        ))
        .unwrap_or_default(),
    )
    .to_hex()
    .to_string();
    let keep_dir = ctx.store.root().join("rootfs");
    let kept = keep_dir.join(format!("debian-{name}.tar"));
    std::fs::create_dir_all(&keep_dir).map_err(|source| {
        StepError::Install(crate::debian::install::InstallError::Write {
            path: keep_dir.clone(),
            source,
        })
    })?;
    let (mirrors, transfer) = super::progress::deb_mirrors(ctx.progress, &p.label());
    let built = crate::debian::rootfs::build(
        &locked.packages,
        &crate::debian::rootfs::Target {
            debian_arch: &d.debian_arch,
            created: p.created,
            out: &kept,
            strict: d.scripts_strict,
        },
        ctx.store,
        &mirrors,
        || transfer.finish("fetched"),
    )
    .map_err(|e| match e {
        crate::debian::rootfs::RootfsError::Fetch(e) => StepError::DebFetch(e),
        crate::debian::rootfs::RootfsError::Install(e) => StepError::Install(e),
        crate::debian::rootfs::RootfsError::Scripts(e) => StepError::Scripts(e),
    })?;
    ctx.made_kept(&kept);
    Ok(StepOutput::Rootfs {
        tree: built.installed.blake3,
        files: locked.packages.len() as u64,
        kept: Some(kept.display().to_string()),
        scripts: built.scripts,
    })
}

/// The rootfs a layer step reads when its source is kept in the cache (`command`,
/// `debian`): `rootfs` itself when its kept folder or tarball is what it recorded
/// (made by this run, or checked now), else the rootfs step run again here (a
/// rootfs from the cache registry names a path on the machine that made it; one
/// deleted or changed in the cache is made again, with a notice for a changed one).
fn kept_rootfs(
    ctx: &Ctx<'_>,
    step: &Step,
    p: &PlatformSpec,
    rootfs: &StepOutput,
) -> Result<Option<StepOutput>, StepError> {
    let StepOutput::Rootfs {
        tree,
        kept: Some(kept),
        ..
    } = rootfs
    else {
        return Ok(None);
    };
    let path = std::path::Path::new(kept);
    if ctx.is_made_kept(path) {
        return Ok(None);
    }
    match crate::rootfs::kept::check(path, tree, p.created)? {
        crate::rootfs::kept::Kept::Intact => {
            ctx.made_kept(path);
            return Ok(None);
        }
        crate::rootfs::kept::Kept::Missing => {}
        crate::rootfs::kept::Kept::Changed { found } => {
            crate::notice::notice(&format!(
                "warning: the kept rootfs {kept} has changed in the cache (fingerprint {found}, recorded {tree}): removed, making it again"
            ));
            crate::rootfs::kept::remove(path).map_err(|source| {
                StepError::Rootfs(crate::rootfs::FingerprintError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            })?;
        }
    }
    let rootfs_step = Step {
        id: StepId::platform(StepKind::Rootfs, &p.image, &p.dist, p.arch),
        target: step.target,
    };
    execute(ctx, &rootfs_step, &[]).map(Some)
}

/// Checks that must hold even when the output came from the cache.
pub(super) fn check_cached(
    ctx: &Ctx<'_>,
    step: &Step,
    output: &StepOutput,
) -> Result<(), StepError> {
    if let (StepKind::Layer, StepOutput::Layer(l)) = (step.id.kind, output) {
        let p = platform(ctx, step);
        if p.platform_check && ctx.mode != super::Mode::Plan {
            l.elf
                .check(p.arch.elf)
                .map_err(|e| e.for_platform(&p.label(), &p.arch.platform()))?;
        }
    }
    Ok(())
}

/// Runs a dirty step.
pub(super) fn execute(
    ctx: &Ctx<'_>,
    step: &Step,
    deps: &[(&Step, &StepOutput)],
) -> Result<StepOutput, StepError> {
    let store = ctx.store;
    let out = match step.id.kind {
        StepKind::Rootfs => {
            let p = platform(ctx, step);
            if let RootfsSource::Debian(d) = &p.rootfs {
                return build_debian_rootfs(ctx, p, d);
            }
            let RootfsSource::Command {
                command,
                out_is_tar,
                timeout,
                ..
            } = &p.rootfs
            else {
                unreachable!("dir and tar rootfs outputs are known when prepared")
            };
            let run = crate::rootfs::command::run(&crate::rootfs::command::CommandSpec {
                command,
                out_is_tar: *out_is_tar,
                timeout: *timeout,
                created: p.created,
                cwd: &ctx.manifest.root,
                keep_dir: &store.root().join("rootfs"),
                log: &store.log_path(&step.id),
                stream: ctx.progress.verbose(),
            })?;
            ctx.made_kept(&run.kept);
            StepOutput::Rootfs {
                tree: run.tree,
                files: run.files,
                kept: Some(run.kept.display().to_string()),
                scripts: Vec::new(),
            }
        }
        StepKind::Layer => {
            let p = platform(ctx, step);
            let rebuilt;
            let mut rootfs = upstream(deps, StepKind::Rootfs);
            if let Some(made) = rootfs.map(|r| kept_rootfs(ctx, step, p, r)).transpose()? {
                rebuilt = made;
                rootfs = rebuilt.as_ref().or(rootfs);
            }
            let source = match (&p.rootfs, rootfs) {
                (RootfsSource::Dir { path, owners, .. }, _) => LayerSource::Dir {
                    root: path.clone(),
                    owners: *owners,
                },
                (RootfsSource::Tar { path, .. }, _) => LayerSource::Tar { path: path.clone() },
                (
                    RootfsSource::Command { .. },
                    Some(StepOutput::Rootfs {
                        kept: Some(kept), ..
                    }),
                ) => {
                    let kept = std::path::PathBuf::from(kept);
                    if kept.is_dir() {
                        LayerSource::Dir {
                            root: kept,
                            owners: Owners::Preserve,
                        }
                    } else {
                        LayerSource::Tar { path: kept }
                    }
                }
                (
                    RootfsSource::Debian(_),
                    Some(StepOutput::Rootfs {
                        kept: Some(kept), ..
                    }),
                ) => LayerSource::Tar {
                    path: std::path::PathBuf::from(kept),
                },
                _ => return Err(StepError::BadUpstream(step.id.to_string())),
            };
            let opts = LayerOptions {
                mtime: p.created,
                compression: ctx.manifest.settings.compression,
                // The caller's thread plus whatever cores the budget has free.
                threads: 0,
                temp_dir: store.tmp_dir(),
            };
            let mut writer = store.blob_writer()?;
            let written = layer::write_layer(&source, &opts, &mut writer)?;
            let blob = writer.finish()?;
            debug_assert_eq!(blob.digest, written.digest);
            let contents = match &written.contents {
                Some(c) => Some(store.put_bytes(&serde_json::to_vec(c).unwrap_or_default())?),
                None => None,
            };
            let out = LayerOut {
                blob,
                diff_id: written.diff_id,
                uncompressed_size: written.uncompressed_size,
                elf: written.elf,
                contents,
            };
            let output = StepOutput::Layer(out);
            check_cached(ctx, step, &output)?;
            output
        }
        StepKind::Config => {
            let p = platform(ctx, step);
            let bytes = image::config(p, &layer_of(deps, &step.id)?.diff_id)?;
            StepOutput::Blob(store.put_bytes(&bytes)?)
        }
        StepKind::Manifest => {
            let p = platform(ctx, step);
            let config = blob_of(deps, StepKind::Config, &step.id)?;
            let layer = layer_of(deps, &step.id)?;
            let bytes = image::manifest(
                config,
                &layer.blob,
                ctx.manifest.settings.compression,
                &p.annotations,
            )?;
            StepOutput::Blob(store.put_bytes(&bytes)?)
        }
        StepKind::Sbom => super::attach::execute_sbom(ctx, step, deps)?,
        StepKind::Provenance => super::attach::execute_provenance(ctx, step, deps)?,
        StepKind::Index => {
            let d = dist(ctx, step);
            let mut entries = Vec::new();
            for arch in &d.arches {
                if let Some((_, out)) = deps.iter().find(|(s, _)| s.id.arch == Some(*arch)) {
                    let blob = out
                        .blob()
                        .ok_or_else(|| StepError::BadUpstream(step.id.to_string()))?;
                    entries.push((blob.clone(), *arch));
                }
            }
            let bytes = image::index(&entries, &d.annotations)?;
            StepOutput::Blob(store.put_bytes(&bytes)?)
        }
        StepKind::Tag => {
            let d = dist(ctx, step);
            let index = blob_of(deps, StepKind::Index, &step.id)?.clone();
            let refs = match step
                .id
                .registry
                .as_ref()
                .and_then(|r| ctx.manifest.registries.get(r))
            {
                Some(reg) => d
                    .tags
                    .iter()
                    .map(|t| format!("{}/{}:{t}", reg.host, reg.repository(&d.image)))
                    .collect(),
                None => d.tags.iter().map(|t| format!("{}:{t}", d.image)).collect(),
            };
            StepOutput::Tag { index, refs }
        }
        StepKind::Push => {
            let d = dist(ctx, step);
            let Some(StepOutput::Tag { index, refs }) = upstream(deps, StepKind::Tag) else {
                return Err(StepError::BadUpstream(step.id.to_string()));
            };
            let written = super::push::push(ctx, step, d, index, deps)?;
            StepOutput::Push {
                index: index.clone(),
                refs: refs.clone(),
                unchanged: !written,
            }
        }
    };
    Ok(out)
}
