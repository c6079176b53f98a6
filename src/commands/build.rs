//! `imgraph build`: run the dirty steps, export `out/`, remember what was built,
//! and (with `--push`) push.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cache::Store;
use crate::cli::BuildArgs;
use crate::error::Error;
use crate::exec::{Ctx, Mode, Outcome, Progress, RunResult, Status, StepFailure, StepOutput};
use crate::graph::{Graph, StepKind, Target};
use crate::manifest::{Manifest, Selector};
use crate::oci::layout::{export_index, export_platform, PlatformBlobs};

use super::{default_jobs, Globals, Project};

/// Knobs of one build.
#[derive(Debug, Clone)]
pub(crate) struct BuildOptions {
    pub(crate) jobs: usize,
    pub(crate) push: bool,
    pub(crate) changed_only: bool,
    pub(crate) export: bool,
}

impl BuildOptions {
    /// Bring the cache up to date and nothing else: what `verify`, `export` and
    /// `verify --pushed` need before they read the outputs.
    pub(crate) fn cache_only() -> Self {
        BuildOptions {
            jobs: super::default_jobs(),
            push: false,
            changed_only: false,
            export: false,
        }
    }
}

/// A platform image or index whose digest differs from the last successful build.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Changed {
    pub(crate) image: String,
    pub(crate) dist: String,
    pub(crate) arch: Option<String>,
    pub(crate) digest: String,
}

/// What a build did, including the steps that failed: a build that fails part
/// way still exports and reports everything that did not depend on the failure.
pub(crate) struct BuildReport {
    pub(crate) graph: Graph,
    pub(crate) outcomes: Vec<Option<Outcome>>,
    pub(crate) executed: Vec<String>,
    pub(crate) cached: Vec<String>,
    pub(crate) cut_off: usize,
    pub(crate) changed: Vec<Changed>,
    /// Layout folders written (an unchanged layout is left alone and not listed).
    pub(crate) exported: Vec<PathBuf>,
    pub(crate) pushed: Vec<serde_json::Value>,
    /// Every step that failed (steps downstream of one never ran and are not listed).
    pub(crate) failures: Vec<StepFailure>,
}

impl BuildReport {
    /// The output of a step, by id.
    pub(crate) fn output(&self, id: &str) -> Option<&StepOutput> {
        let node = self.graph.node(id)?;
        self.outcomes[node.index()].as_ref()?.output.as_ref()
    }

    /// The blobs of one built platform. Looked up by step id (a hash lookup), never by
    /// scanning the manifest: this runs once per platform, so a scan would make a
    /// no-op build quadratic in the number of platforms.
    pub(crate) fn platform_blobs(&self, manifest: &Manifest, label: &str) -> Option<PlatformBlobs> {
        let layer = match self.output(&format!("layer:{label}"))? {
            StepOutput::Layer(l) => l.blob.clone(),
            _ => return None,
        };
        let node = self.graph.node(&format!("manifest:{label}"))?;
        let arch = self.graph.step(node).arch?;
        Some(PlatformBlobs {
            arch,
            layer,
            compression: manifest.settings.compression,
            config: self.output(&format!("config:{label}"))?.blob()?.clone(),
            manifest: self.outcomes[node.index()]
                .as_ref()?
                .output
                .as_ref()?
                .blob()?
                .clone(),
        })
    }

    /// The `failed` entries of `--json`: one per reference for a failed push (the
    /// registry's name, the reference and the error), one per step otherwise.
    pub(crate) fn failed_json(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for f in &self.failures {
            let error = f.error.to_string();
            let push = self
                .graph
                .node(&f.step)
                .map(|n| (n, self.graph.step(n)))
                .filter(|(_, s)| s.kind == StepKind::Push);
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
                out.push(json!({ "step": f.step, "registry": step.registry, "error": error }));
            }
            for r in refs {
                out.push(json!({
                    "step": f.step,
                    "registry": step.registry,
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
pub(crate) fn build(
    manifest: &Manifest,
    selectors: &[Selector],
    store: &Store,
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<BuildReport, Error> {
    let mut report = build_report(manifest, selectors, store, opts, progress)?;
    if report.failures.is_empty() {
        Ok(report)
    } else {
        Err(Error::Steps(std::mem::take(&mut report.failures)))
    }
}

/// Builds the selection into `store` and exports what was built, keeping failed
/// steps in the report: `imgraph build` still prints and exports what succeeded
/// when a push (or a platform) fails. `Err` only for what stops the whole build
/// (the cache lock, writing `out/`).
pub(crate) fn build_report(
    manifest: &Manifest,
    selectors: &[Selector],
    store: &Store,
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<BuildReport, Error> {
    let _lock = store.lock()?;
    // Holding the lock, any temp file is a leftover of a killed build.
    store.clear_tmp();
    match build_locked(manifest, selectors, store, opts, progress) {
        // A blob that failed its digest check when exported was dropped, so its
        // entry is now a miss: one more pass rebuilds it.
        Err(e) if e.is_corrupt_blob() => {
            progress.println(&format!("warning: {e}"));
            build_locked(manifest, selectors, store, opts, progress)
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
) -> RunResult {
    Ctx::new(
        manifest,
        graph,
        store,
        Mode::Build {
            push: opts.push,
            changed: opts.changed_only,
        },
        opts.jobs,
        progress,
    )
    .run(opts.jobs)
}

fn build_locked(
    manifest: &Manifest,
    selectors: &[Selector],
    store: &Store,
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<BuildReport, Error> {
    let graph = Graph::build(manifest, selectors);
    let mut result = run_steps(manifest, &graph, store, opts, progress);
    // A blob that failed its digest check when read was dropped, so its entry is
    // now a miss: one more pass rebuilds it (before anything is exported from it).
    if result.failures.iter().any(StepFailure::is_corrupt_blob) {
        for f in result.failures.iter().filter(|f| f.is_corrupt_blob()) {
            progress.println(&format!("warning: {}: {}", f.step, f.error));
        }
        result = run_steps(manifest, &graph, store, opts, progress);
    }
    let mut report = BuildReport {
        executed: Vec::new(),
        cached: Vec::new(),
        cut_off: 0,
        changed: Vec::new(),
        exported: Vec::new(),
        pushed: Vec::new(),
        outcomes: result.outcomes,
        failures: result.failures,
        graph,
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
            ) = (step.kind, &o.output, o.status)
            {
                for r in refs {
                    report.pushed.push(json!({
                        "registry": step.registry,
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
    for node in report.graph.order() {
        let step = report.graph.step(node);
        let Some(digest) = report.outcomes[node.index()]
            .as_ref()
            .and_then(|o| o.output.as_ref())
            .and_then(|o| o.blob())
            .map(|b| b.digest.clone())
        else {
            continue;
        };
        match (step.kind, step.target) {
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
                if opts.export && (is_new || !opts.changed_only) {
                    let blobs = report
                        .platform_blobs(manifest, &label)
                        .expect("a built manifest has its layer and config");
                    let tag = first_tag
                        .get(&(p.image.as_str(), p.dist.as_str()))
                        .map_or_else(|| p.dist.clone(), |t| (*t).to_string());
                    let dir = manifest
                        .settings
                        .out
                        .join(&p.image)
                        .join(&p.dist)
                        .join(p.arch.name);
                    if export_platform(store, &dir, &blobs, &tag)? {
                        report.exported.push(dir);
                    }
                }
                last.platforms.insert(label, digest);
            }
            (StepKind::Index, Target::Dist(i)) => {
                let d = &manifest.dists[i];
                let label = d.label();
                let is_new = last.indexes.get(&label) != Some(&digest);
                if opts.export && (is_new || !opts.changed_only) {
                    let platforms: Vec<PlatformBlobs> = d
                        .arches
                        .iter()
                        .filter_map(|a| {
                            report.platform_blobs(manifest, &format!("{label}/{}", a.name))
                        })
                        .collect();
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
                    if export_index(store, &dir, &index, &platforms, &d.tags)? {
                        report.exported.push(dir);
                    }
                }
                last.indexes.insert(label, digest);
            }
            _ => {}
        }
    }
    if serde_json::to_vec(&last).unwrap_or_default() != before {
        store.put_state(LAST_BUILD, &last)?;
    }
    Ok(report)
}

pub(super) fn run(project: &Project, args: &BuildArgs, globals: &Globals) -> Result<(), Error> {
    let started = Instant::now();
    let jobs = args.jobs.map_or_else(default_jobs, usize::from);
    let store = Store::open(&project.cache_dir)?;
    let progress = Progress::new(globals.quiet, globals.verbose, globals.color);
    let mut report = build_report(
        &project.manifest,
        &project.selectors,
        &store,
        &BuildOptions {
            jobs,
            push: args.push,
            changed_only: args.changed,
            export: true,
        },
        &progress,
    )?;
    // Printed whether or not a step failed: after a partial push the user must see
    // what reached which registry, what did not, and what is in out/.
    if args.json {
        let doc = json!({
            "executed": report.executed,
            "cached": report.cached,
            "changed": report.changed,
            "exported": report.exported,
            "pushed": report.pushed,
            "failed": report.failed_json(),
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    if !globals.quiet {
        summary(project, &report, started);
    }
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Steps(std::mem::take(&mut report.failures)))
    }
}

/// The human summary on stderr. `failed:` lines name what did not happen; the
/// reasons follow once, in the error that ends the run.
fn summary(project: &Project, report: &BuildReport, started: Instant) {
    let total = report.executed.len() + report.cached.len();
    eprintln!(
        "{total} steps in {:.2}s: {} executed, {} cached, {} cut off (output unchanged); {} layouts written to {}",
        started.elapsed().as_secs_f64(),
        report.executed.len(),
        report.cached.len(),
        report.cut_off,
        report.exported.len(),
        project.manifest.settings.out.display(),
    );
    if report.changed.is_empty() {
        eprintln!("no image changed since the last build");
    }
    for c in &report.changed {
        eprintln!(
            "changed: {}:{}/{} {}",
            c.image,
            c.dist,
            c.arch.as_deref().unwrap_or(""),
            c.digest
        );
    }
    for node in report.graph.order() {
        let step = report.graph.step(node);
        if step.kind == StepKind::Index {
            if let Some(index) = report.outcomes[node.index()]
                .as_ref()
                .and_then(|o| o.output.as_ref())
                .and_then(StepOutput::blob)
            {
                let dir = project
                    .manifest
                    .settings
                    .out
                    .join(&step.image)
                    .join(&step.dist)
                    .join("index");
                eprintln!(
                    "index {}:{} {} (oci:{})",
                    step.image,
                    step.dist,
                    index.digest,
                    dir.display()
                );
            }
        }
    }
    for p in &report.pushed {
        eprintln!(
            "pushed: {} {}",
            p["reference"].as_str().unwrap_or(""),
            p["digest"].as_str().unwrap_or("")
        );
    }
    for f in report.failed_json() {
        match (f["reference"].as_str(), f["registry"].as_str()) {
            (Some(reference), Some(registry)) => {
                eprintln!("failed: {reference} (registry {registry})")
            }
            _ => eprintln!("failed: {}", f["step"].as_str().unwrap_or("")),
        }
    }
}
