//! A build as a library call: run the dirty steps, export `out/`, remember what
//! was built. `build`, `export`, `verify` and `verify --pushed` all start here.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::remote_cache::RemoteCache;
use super::{
    default_jobs, Ctx, Mode, Outcome, Progress, RunResult, Skipped, Status, StepFailure, StepOutput,
};
use crate::cache::{CacheError, Store};
use crate::graph::{Graph, StepId, StepKind, Target};
use crate::manifest::{Arch, Manifest, Selector};
use crate::oci::attestations::export_attestations;
use crate::oci::layout::{
    attestations_dir, export_index, export_platform, index_is_current, remove_broken_index,
    Attached, LayoutError, PlatformBlobs,
};

/// What stops a build as a whole (a failed step is in [`BuildReport::failures`]).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The cache: its lock, its state.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Writing `out/`.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The cache registry's credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] crate::registry::CredentialError),
    /// A blob could not be brought from the cache registry for export.
    #[error(transparent)]
    Remote(#[from] super::remote_cache::RemoteCacheError),
    /// Steps failed, where the caller needs every step (verify, export).
    #[error("{}", render_failures(.0))]
    Steps(Vec<StepFailure>),
    /// Reading a cache this user cannot write ([`built`]): a step is not in it.
    #[error("{step} is not built in the cache {}, which is read-only here, so it cannot be built now\n  = help: build it with a cache you can write (--cache DIR or IMGRAPH_CACHE), or have `imgraph build` run by whoever owns {}", cache.display(), cache.display())]
    NotBuilt {
        /// The first step missing.
        step: String,
        /// The cache folder.
        cache: PathBuf,
    },
}

impl BuildError {
    /// Whether a cache blob failed its digest check (and was dropped).
    pub fn is_corrupt_blob(&self) -> bool {
        let corrupt = |e: &CacheError| matches!(e, CacheError::DigestMismatch { .. });
        match self {
            BuildError::Cache(e) | BuildError::Layout(LayoutError::Cache(e)) => corrupt(e),
            BuildError::Steps(failures) => failures.iter().any(StepFailure::is_corrupt_blob),
            BuildError::Layout(_)
            | BuildError::Credentials(_)
            | BuildError::Remote(_)
            | BuildError::NotBuilt { .. } => false,
        }
    }
}

/// `3 steps failed:` and one line per step (the command's error renders them
/// with their causes).
fn render_failures(failures: &[StepFailure]) -> String {
    let mut out = match failures.len() {
        1 => String::from("1 step failed:"),
        n => format!("{n} steps failed:"),
    };
    for f in failures {
        out.push_str(&format!("\n  {}: {}", f.step, f.error));
    }
    out
}

/// Knobs of one build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub jobs: usize,
    pub push: bool,
    pub changed_only: bool,
    pub export: bool,
    /// The key pushes sign with (`[settings] sign`), loaded by the caller
    /// before anything runs (a bad key is bad input).
    pub signer: Option<std::sync::Arc<crate::sign::Signer>>,
    /// The shared step cache in a registry (`cache_registry`, `--cache-registry`).
    pub remote: Option<crate::manifest::CacheRegistry>,
    /// Fail a platform step that neither cache has instead of running it.
    pub require_cache: bool,
    /// `--keep-going`: a failed step stops only the steps that depend on it;
    /// every other platform is built, cached and exported.
    pub keep_going: bool,
    /// Bring the blobs of every built platform into the local cache (from the
    /// cache registry, verified), for `out/` or an export. Without it a platform
    /// whose layer is only in the cache registry is pushed by mount and not
    /// exported to `out/`.
    pub fetch_remote: bool,
}

impl BuildOptions {
    /// Bring the cache up to date and nothing else: what `verify`, `export` and
    /// `verify --pushed` need before they read the outputs.
    pub fn cache_only() -> Self {
        BuildOptions {
            jobs: default_jobs(),
            push: false,
            changed_only: false,
            export: false,
            signer: None,
            remote: None,
            require_cache: false,
            keep_going: false,
            fetch_remote: false,
        }
    }
}

/// A platform image or index whose digest differs from the last successful build.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    pub image: String,
    pub dist: String,
    pub arch: Option<String>,
    pub digest: String,
}

/// What a build did, including the steps that failed: a build that fails part
/// way still exports and reports everything that did not depend on the failure.
pub struct BuildReport {
    pub graph: Graph,
    pub outcomes: Vec<Option<Outcome>>,
    pub executed: Vec<StepId>,
    pub cached: Vec<StepId>,
    pub cut_off: usize,
    pub changed: Vec<Changed>,
    /// Layout folders written (an unchanged layout is left alone and not listed).
    pub exported: Vec<PathBuf>,
    pub pushed: Vec<serde_json::Value>,
    /// Platforms not exported to `out/` because their layer is only in the cache
    /// registry (`build --push` mounts it from there and downloads nothing).
    pub remote_only: Vec<String>,
    /// Each index step (by id) whose layout in `out/` holds this build's index,
    /// written now or found current: the only `out/` paths the summary may name.
    pub index_layouts: HashMap<StepId, PathBuf>,
    /// Every step that failed (steps downstream of one never ran: see `skipped`).
    pub failures: Vec<StepFailure>,
    /// Every step that did not run because a step it depends on failed.
    pub skipped: Vec<Skipped>,
    /// Steps that depend on no failure but never started: the build stopped at
    /// the first failure (without `--keep-going`).
    pub not_started: usize,
    /// Layouts in `out/` that already held exactly what was built (left alone).
    pub up_to_date: usize,
    /// Selected platforms (labels) with no manifest this build: failed, skipped
    /// or never started, so not exported.
    pub unbuilt_platforms: Vec<String>,
    /// Selected dists (labels) whose index was not built (not every platform
    /// of the dist was), so not exported and not pushed.
    pub unbuilt_indexes: Vec<String>,
    /// Index layouts of an earlier build removed from `out/` because a platform
    /// layout they link into was rewritten (they would name bytes no longer there).
    pub removed: Vec<PathBuf>,
}

impl BuildReport {
    /// A report of `graph` whose steps ended as `outcomes`, with nothing yet
    /// sorted, exported, pushed or failed.
    fn new(graph: Graph, outcomes: Vec<Option<Outcome>>) -> BuildReport {
        BuildReport {
            graph,
            outcomes,
            executed: Vec::new(),
            cached: Vec::new(),
            cut_off: 0,
            changed: Vec::new(),
            exported: Vec::new(),
            pushed: Vec::new(),
            remote_only: Vec::new(),
            index_layouts: HashMap::new(),
            failures: Vec::new(),
            skipped: Vec::new(),
            not_started: 0,
            up_to_date: 0,
            unbuilt_platforms: Vec::new(),
            unbuilt_indexes: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// Each `debian` rootfs step (built now or cached) whose maintainer scripts
    /// run commands the image lacks the effect of, with those commands.
    pub fn scripts_not_reproduced(
        &self,
    ) -> Vec<(&StepId, &[crate::debian::scripts::NotReproduced])> {
        self.graph
            .order()
            .into_iter()
            .filter_map(|node| {
                let step = self.graph.step(node);
                match self.outcomes[node.index()].as_ref()?.output.as_ref()? {
                    StepOutput::Rootfs { scripts, .. } if !scripts.is_empty() => {
                        Some((&step.id, scripts.as_slice()))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// The output of a step, by id.
    pub fn output(&self, id: &StepId) -> Option<&StepOutput> {
        let node = self.graph.node(id)?;
        self.outcomes[node.index()].as_ref()?.output.as_ref()
    }

    /// The blobs of one built platform. Looked up by step id (a hash lookup), never by
    /// scanning the manifest: this runs once per platform, so a scan would make a
    /// no-op build quadratic in the number of platforms.
    pub fn platform_blobs(
        &self,
        manifest: &Manifest,
        image: &str,
        dist: &str,
        arch: &'static Arch,
    ) -> Option<PlatformBlobs> {
        let id = |kind| StepId::platform(kind, image, dist, arch);
        let layer = match self.output(&id(StepKind::Layer))? {
            StepOutput::Layer(l) => l.blob.clone(),
            _ => return None,
        };
        Some(PlatformBlobs {
            arch,
            layer,
            compression: manifest.settings.compression,
            config: self.output(&id(StepKind::Config))?.blob()?.clone(),
            manifest: self.output(&id(StepKind::Manifest))?.blob()?.clone(),
            attached: [StepKind::Sbom, StepKind::Provenance]
                .into_iter()
                .filter_map(|kind| match self.output(&id(kind)) {
                    Some(StepOutput::Attachments(a)) => Some(a),
                    _ => None,
                })
                .flatten()
                .map(|a| Attached {
                    stem: super::attach::file_stem(&a.artifact_type),
                    artifact_type: a.artifact_type.clone(),
                    manifest: a.manifest.clone(),
                    blobs: a.blobs.clone(),
                })
                .collect(),
        })
    }

    /// The `failed` entries of `--json`: one per reference for a failed push (the
    /// registry's name, the reference and the error), one per step otherwise.
    pub fn failed_json(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for f in &self.failures {
            let error = f.error.to_string();
            let push = self
                .graph
                .node(&f.step)
                .map(|n| (n, self.graph.step(n)))
                .filter(|(_, s)| s.id.kind == StepKind::Push);
            let Some((node, step)) = push else {
                out.push(json!({ "step": f.step, "error": error }));
                continue;
            };
            // The references are what the push's tag step computed.
            let refs = self
                .graph
                .deps(node)
                .into_iter()
                .find_map(
                    |d| match self.outcomes[d.index()].as_ref()?.output.as_ref()? {
                        StepOutput::Tag { refs, .. } => Some(refs.clone()),
                        _ => None,
                    },
                )
                .unwrap_or_default();
            if refs.is_empty() {
                out.push(json!({ "step": f.step, "registry": step.id.registry, "error": error }));
            }
            for r in refs {
                out.push(json!({
                    "step": f.step,
                    "registry": step.id.registry,
                    "reference": r,
                    "error": error,
                }));
            }
        }
        out
    }
}

/// Digests of what the last builds produced, per platform label and per dist label
/// (a partly failed build records the platforms and indexes it did produce).
#[derive(Debug, Default, Serialize, Deserialize)]
struct LastBuild {
    platforms: BTreeMap<String, String>,
    indexes: BTreeMap<String, String>,
}

const LAST_BUILD: &str = "last-build.json";

/// Builds the selection into `store`; shared by `verify` and `export`, which need
/// every step to succeed: any failed step is an error.
pub fn build(
    manifest: &Manifest,
    selectors: &[Selector],
    store: &Store,
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<BuildReport, BuildError> {
    let mut report = build_report(manifest, selectors, store, opts, progress)?;
    if report.failures.is_empty() {
        Ok(report)
    } else {
        Err(BuildError::Steps(std::mem::take(&mut report.failures)))
    }
}

/// What is built of the selection, read from a cache this user cannot write
/// (`export` of a read-only cache): the steps are evaluated as `plan` does, running
/// and recording nothing, under a shared lock so that no build writes meanwhile.
/// Every step but a push must be in the cache; the first that is not is named.
pub fn built(
    manifest: &Manifest,
    selectors: &[Selector],
    store: &Store,
) -> Result<BuildReport, BuildError> {
    let _lock = store.lock_shared()?;
    let graph = Graph::build(manifest, selectors);
    let result = super::plan(manifest, &graph, store);
    if !result.failures.is_empty() {
        return Err(BuildError::Steps(result.failures));
    }
    let mut cached = Vec::new();
    for node in graph.order() {
        let step = graph.step(node);
        let fresh = result.outcomes[node.index()]
            .as_ref()
            .is_some_and(|o| o.status == Status::Fresh);
        match (fresh, step.id.kind) {
            (true, _) => cached.push(step.id.clone()),
            (false, StepKind::Push) => {}
            (false, _) => {
                return Err(BuildError::NotBuilt {
                    step: step.id.to_string(),
                    cache: store.root().to_path_buf(),
                })
            }
        }
    }
    Ok(BuildReport {
        cached,
        ..BuildReport::new(graph, result.outcomes)
    })
}

/// Builds the selection into `store` and exports what was built, keeping failed
/// steps in the report: `imgraph build` still prints and exports what succeeded
/// when a push (or a platform) fails. `Err` only for what stops the whole build
/// (the cache lock, writing `out/`).
pub fn build_report(
    manifest: &Manifest,
    selectors: &[Selector],
    store: &Store,
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<BuildReport, BuildError> {
    let _lock = store.lock()?;
    // Holding the lock, any temp file is a leftover of a killed build.
    store.clear_tmp();
    let remote = match &opts.remote {
        Some(config) => Some(RemoteCache::new(config, manifest)?),
        None => None,
    };
    let remote = remote.as_ref();
    match build_locked(manifest, selectors, store, opts, progress, remote) {
        // A blob that failed its digest check when exported was dropped, so its
        // entry is now a miss: one more pass rebuilds it.
        Err(e) if e.is_corrupt_blob() => {
            progress.println(&format!("warning: {e}"));
            build_locked(manifest, selectors, store, opts, progress, remote)
        }
        other => other,
    }
}

fn run_steps(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    opts: &BuildOptions,
    progress: &Progress,
    remote: Option<&RemoteCache>,
) -> RunResult {
    Ctx::new(
        manifest,
        graph,
        store,
        Mode::Build {
            push: opts.push,
            changed: opts.changed_only,
        },
        progress,
    )
    .with_signer(opts.signer.clone())
    .with_remote(remote, opts.require_cache)
    .with_keep_going(opts.keep_going)
    .run(opts.jobs)
}

/// Fetches (verified) every blob of a built platform that is only in the cache
/// registry. A blob that fails its check poisons its records, so the caller
/// runs the steps again and they rebuild it; returns whether one did.
fn fetch_remote_blobs(
    graph: &Graph,
    result: &RunResult,
    store: &Store,
    remote: &RemoteCache,
    progress: &Progress,
) -> Result<bool, BuildError> {
    let mut corrupt = false;
    for node in graph.order() {
        let Some(StepOutput::Layer(l)) = result.outcomes[node.index()]
            .as_ref()
            .and_then(|o| o.output.as_ref())
        else {
            continue;
        };
        if store.has_blob(&l.blob.digest) {
            continue;
        }
        match remote.fetch_blob(store, &l.blob.digest, l.blob.size, progress) {
            Ok(()) => {}
            Err(e @ super::remote_cache::RemoteCacheError::Corrupt { .. }) => {
                progress.println(&format!("warning: {}: {e}", graph.step(node).id));
                corrupt = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(corrupt)
}

fn build_locked(
    manifest: &Manifest,
    selectors: &[Selector],
    store: &Store,
    opts: &BuildOptions,
    progress: &Progress,
    remote: Option<&RemoteCache>,
) -> Result<BuildReport, BuildError> {
    let graph = Graph::build(manifest, selectors);
    let mut result = run_steps(manifest, &graph, store, opts, progress, remote);
    // A blob that failed its digest check when read was dropped, so its entry is
    // now a miss: one more pass rebuilds it (before anything is exported from it).
    if result.failures.iter().any(StepFailure::is_corrupt_blob) {
        for f in result.failures.iter().filter(|f| f.is_corrupt_blob()) {
            progress.println(&format!("warning: {}: {}", f.step, f.error));
        }
        result = run_steps(manifest, &graph, store, opts, progress, remote);
    }
    // Layers that are only in the cache registry come down now, when out/ or an
    // export needs their bytes; a corrupt one makes its steps run here instead.
    if let Some(remote) = remote.filter(|_| opts.fetch_remote) {
        if fetch_remote_blobs(&graph, &result, store, remote, progress)? {
            result = run_steps(manifest, &graph, store, opts, progress, Some(remote));
            fetch_remote_blobs(&graph, &result, store, remote, progress)?;
        }
    }
    let mut report = BuildReport {
        failures: result.failures,
        skipped: result.skipped,
        not_started: result.not_started,
        ..BuildReport::new(graph, result.outcomes)
    };
    for node in report.graph.order() {
        let step = report.graph.step(node);
        if let Some(o) = &report.outcomes[node.index()] {
            match o.status {
                Status::Executed => report.executed.push(step.id.clone()),
                Status::Fresh => report.cached.push(step.id.clone()),
                _ => {}
            }
            if o.cut_off {
                report.cut_off += 1;
            }
            if let (
                StepKind::Push,
                Some(StepOutput::Push {
                    index,
                    refs,
                    unchanged: false,
                }),
                Status::Executed,
            ) = (step.id.kind, &o.output, o.status)
            {
                for r in refs {
                    report.pushed.push(json!({
                        "registry": step.id.registry,
                        "reference": r,
                        "digest": index.digest,
                    }));
                }
            }
        }
    }

    // The tag a platform layout is named by: its dist's first tag. A map, not a
    // scan of the dists per platform (that made no-op builds quadratic).
    let first_tag: HashMap<(&str, &str), &str> = manifest
        .dists
        .iter()
        .filter_map(|d| {
            Some((
                (d.image.as_str(), d.dist.as_str()),
                d.tags.first()?.as_str(),
            ))
        })
        .collect();

    // A torn or unreadable record only means every image counts as changed.
    // Steps that failed (or never ran) have no outcome: their last digests stay.
    let mut last: LastBuild = store.state(LAST_BUILD).ok().flatten().unwrap_or_default();
    let before = serde_json::to_vec(&last).unwrap_or_default();
    let mut unbuilt_dists = Vec::new();
    for node in report.graph.order() {
        let step = report.graph.step(node);
        let Some(digest) = report.outcomes[node.index()]
            .as_ref()
            .and_then(|o| o.output.as_ref())
            .and_then(|o| o.blob())
            .map(|b| b.digest.clone())
        else {
            match (step.id.kind, step.target) {
                (StepKind::Manifest, Target::Platform(i)) => {
                    report.unbuilt_platforms.push(manifest.platforms[i].label());
                }
                (StepKind::Index, Target::Dist(i)) => {
                    report.unbuilt_indexes.push(manifest.dists[i].label());
                    unbuilt_dists.push(i);
                }
                _ => {}
            }
            continue;
        };
        match (step.id.kind, step.target) {
            (StepKind::Manifest, Target::Platform(i)) => {
                let p = &manifest.platforms[i];
                let label = p.label();
                let is_new = last.platforms.get(&label) != Some(&digest);
                if is_new {
                    report.changed.push(Changed {
                        image: p.image.clone(),
                        dist: p.dist.clone(),
                        arch: Some(p.arch.name.to_string()),
                        digest: digest.clone(),
                    });
                }
                // An SBOM or provenance written anew (a format added, an input
                // of the provenance changed) is exported even when the image is not.
                let attached_new = [StepKind::Sbom, StepKind::Provenance].iter().any(|k| {
                    report
                        .graph
                        .node(&StepId::platform(*k, &p.image, &p.dist, p.arch))
                        .and_then(|n| report.outcomes[n.index()].as_ref())
                        .is_some_and(|o| o.status == Status::Executed && !o.cut_off)
                });
                let blobs = report
                    .platform_blobs(manifest, &p.image, &p.dist, p.arch)
                    .expect("a built manifest has its layer and config");
                // Only in the cache registry (an assembler's push mounts it): no out/.
                let remote_only = !store.has_blob(&blobs.layer.digest);
                if remote_only && opts.export {
                    report.remote_only.push(label.clone());
                }
                if opts.export && !remote_only && (is_new || attached_new || !opts.changed_only) {
                    let tag = first_tag
                        .get(&(p.image.as_str(), p.dist.as_str()))
                        .map_or_else(|| p.dist.clone(), |t| (*t).to_string());
                    let dir = manifest
                        .settings
                        .out
                        .join(&p.image)
                        .join(&p.dist)
                        .join(p.arch.name);
                    // The image alone in its folder; its attachments beside it.
                    if export_platform(store, &dir, &blobs, &tag)? {
                        report.exported.push(dir.clone());
                    } else {
                        report.up_to_date += 1;
                    }
                    if export_attestations(store, &dir, &blobs, &tag)? {
                        report.exported.push(attestations_dir(&dir));
                    }
                }
                last.platforms.insert(label, digest);
            }
            (StepKind::Index, Target::Dist(i)) => {
                let d = &manifest.dists[i];
                let label = d.label();
                let is_new = last.indexes.get(&label) != Some(&digest);
                let remote_only = d
                    .arches
                    .iter()
                    .filter_map(|a| report.platform_blobs(manifest, &d.image, &d.dist, a))
                    .any(|b| !store.has_blob(&b.layer.digest));
                let index = report
                    .output(&step.id)
                    .and_then(StepOutput::blob)
                    .cloned()
                    .expect("index built");
                let dir = manifest
                    .settings
                    .out
                    .join(&d.image)
                    .join(&d.dist)
                    .join("index");
                if opts.export && !remote_only && (is_new || !opts.changed_only) {
                    let platforms: Vec<PlatformBlobs> = d
                        .arches
                        .iter()
                        .filter_map(|a| report.platform_blobs(manifest, &d.image, &d.dist, a))
                        .collect();
                    if export_index(store, &dir, &index, &platforms, &d.tags)? {
                        report.exported.push(dir.clone());
                    } else {
                        report.up_to_date += 1;
                    }
                    report.index_layouts.insert(step.id.clone(), dir);
                } else if opts.export && index_is_current(&dir, &index, &d.tags) {
                    // `--changed` left an unchanged index alone: named if it is there.
                    report.index_layouts.insert(step.id.clone(), dir);
                }
                last.indexes.insert(label, digest);
            }
            _ => {}
        }
    }
    if opts.export {
        remove_stale_indexes(manifest, &unbuilt_dists, &mut report)?;
    }
    if serde_json::to_vec(&last).unwrap_or_default() != before {
        store.put_state(LAST_BUILD, &last)?;
    }
    Ok(report)
}

/// A dist whose index was not built this time keeps the index layout of an
/// earlier build in `out/` only while that still holds what it names: its blobs are
/// symlinks into the platform layouts, so once one of those is rewritten the old
/// index would name bytes that are no longer there. It is removed then (and the
/// next build in which every platform of the dist builds writes it again).
fn remove_stale_indexes(
    manifest: &Manifest,
    unbuilt_dists: &[usize],
    report: &mut BuildReport,
) -> Result<(), BuildError> {
    for d in unbuilt_dists.iter().map(|i| &manifest.dists[*i]) {
        let dir = manifest
            .settings
            .out
            .join(&d.image)
            .join(&d.dist)
            .join("index");
        if remove_broken_index(&dir)? {
            report.removed.push(dir);
        }
    }
    Ok(())
}
