//! `imgraph build`: run the dirty steps, export `out/`, remember what was built,
//! and (with `--push`) push.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cache::Store;
use crate::cli::BuildArgs;
use crate::error::Error;
use crate::exec::{Ctx, Mode, Outcome, Progress, Status, StepOutput};
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

/// What a build did.
pub(crate) struct BuildReport {
    pub(crate) graph: Graph,
    pub(crate) outcomes: Vec<Option<Outcome>>,
    pub(crate) executed: Vec<String>,
    pub(crate) cached: Vec<String>,
    pub(crate) cut_off: usize,
    pub(crate) changed: Vec<Changed>,
    pub(crate) exported: usize,
    pub(crate) pushed: Vec<serde_json::Value>,
}

impl BuildReport {
    /// The output of a step, by id.
    pub(crate) fn output(&self, id: &str) -> Option<&StepOutput> {
        let node = self.graph.node(id)?;
        self.outcomes[node.index()].as_ref()?.output.as_ref()
    }

    /// The blobs of one built platform.
    pub(crate) fn platform_blobs(&self, manifest: &Manifest, label: &str) -> Option<PlatformBlobs> {
        let layer = match self.output(&format!("layer:{label}"))? {
            StepOutput::Layer(l) => l.blob.clone(),
            _ => return None,
        };
        let arch = manifest.platforms.iter().find(|p| p.label() == label)?.arch;
        Some(PlatformBlobs {
            arch,
            layer,
            compression: manifest.settings.compression,
            config: self.output(&format!("config:{label}"))?.blob()?.clone(),
            manifest: self.output(&format!("manifest:{label}"))?.blob()?.clone(),
        })
    }
}

/// Digests of the last successful build, per platform label and per dist label.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LastBuild {
    platforms: BTreeMap<String, String>,
    indexes: BTreeMap<String, String>,
}

const LAST_BUILD: &str = "last-build.json";

/// Builds the selection into `store`; shared by `build`, `verify` and `export`.
pub(crate) fn build(
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
        // A blob that failed its digest check when read was dropped, so its entry
        // is now a miss: one more pass rebuilds it.
        Err(e) if e.is_corrupt_blob() => {
            progress.println(&format!("warning: {e}"));
            build_locked(manifest, selectors, store, opts, progress)
        }
        other => other,
    }
}

fn build_locked(
    manifest: &Manifest,
    selectors: &[Selector],
    store: &Store,
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<BuildReport, Error> {
    let graph = Graph::build(manifest, selectors);
    let ctx = Ctx::new(
        manifest,
        &graph,
        store,
        Mode::Build {
            push: opts.push,
            changed: opts.changed_only,
        },
        opts.jobs,
        progress,
    );
    let result = ctx.run(opts.jobs);
    if !result.failures.is_empty() {
        return Err(Error::Steps(result.failures));
    }
    let mut report = BuildReport {
        executed: Vec::new(),
        cached: Vec::new(),
        cut_off: 0,
        changed: Vec::new(),
        exported: 0,
        pushed: Vec::new(),
        outcomes: result.outcomes,
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

    // A torn or unreadable record only means every image counts as changed.
    let mut last: LastBuild = store.state(LAST_BUILD).ok().flatten().unwrap_or_default();
    let before = serde_json::to_vec(&last).unwrap_or_default();
    for node in report.graph.order() {
        let step = report.graph.step(node).clone();
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
                    let tag = dist_tags(manifest, &p.image, &p.dist)
                        .first()
                        .cloned()
                        .unwrap_or_else(|| p.dist.clone());
                    let dir = manifest
                        .settings
                        .out
                        .join(&p.image)
                        .join(&p.dist)
                        .join(p.arch.name);
                    if export_platform(store, &dir, &blobs, &tag)? {
                        report.exported += 1;
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
                        report.exported += 1;
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

fn dist_tags<'m>(manifest: &'m Manifest, image: &str, dist: &str) -> &'m [String] {
    manifest
        .dists
        .iter()
        .find(|d| d.image == image && d.dist == dist)
        .map_or(&[], |d| d.tags.as_slice())
}

pub(super) fn run(project: &Project, args: &BuildArgs, globals: &Globals) -> Result<(), Error> {
    let started = Instant::now();
    let jobs = args.jobs.map_or_else(default_jobs, usize::from);
    let store = Store::open(&project.cache_dir)?;
    let progress = Progress::new(globals.quiet, globals.verbose, globals.color);
    let report = build(
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
    if args.json {
        let doc = json!({
            "executed": report.executed,
            "cached": report.cached,
            "changed": report.changed,
            "pushed": report.pushed,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    if !globals.quiet {
        let total = report.executed.len() + report.cached.len();
        eprintln!(
            "{total} steps in {:.2}s: {} executed, {} cached, {} cut off (output unchanged); {} layouts written to {}",
            started.elapsed().as_secs_f64(),
            report.executed.len(),
            report.cached.len(),
            report.cut_off,
            report.exported,
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
                if let Some(index) = report.output(&step.id).and_then(StepOutput::blob) {
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
    }
    Ok(())
}
