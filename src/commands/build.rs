//! `imgraph build`: run the dirty steps, export `out/`, and (with `--push`) push;
//! then say what happened, also when some of it failed.

use std::time::Instant;

use serde_json::json;

use crate::cache::Store;
use crate::cli::BuildArgs;
use crate::error::Error;
use crate::exec::build::{build_report, BuildOptions, BuildReport};
use crate::exec::{default_jobs, Progress, StepOutput};
use crate::graph::StepKind;

use super::{Globals, Project};

pub(super) fn run(project: &Project, args: &BuildArgs, globals: &Globals) -> Result<(), Error> {
    let started = Instant::now();
    // Before the cache is touched: a bad key or password is bad input.
    let signer = if args.push {
        crate::exec::push::signer(&project.manifest)?
    } else {
        None
    };
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
            signer,
            remote: project.cache_registry.clone(),
            require_cache: args.require_cache,
            // An assembler that pushes mounts layers from the cache registry and
            // downloads none; a plain build brings them down for out/.
            fetch_remote: !args.push,
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
            "scripts_not_reproduced": report.scripts_not_reproduced().into_iter().map(|(id, found)| json!({
                "step": id,
                "platform": platform_label(id),
                "commands": found,
            })).collect::<Vec<_>>(),
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

/// `image:dist/arch` of a platform step.
fn platform_label(id: &crate::graph::StepId) -> String {
    format!(
        "{}:{}/{}",
        id.image,
        id.dist,
        id.arch.as_ref().map_or("", |a| a.name)
    )
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
    if !report.remote_only.is_empty() {
        eprintln!(
            "{} platforms are only in the cache registry and were not exported to {} (pushed by mount; `imgraph build` without --push fetches them): {}",
            report.remote_only.len(),
            project.manifest.settings.out.display(),
            report.remote_only.join(" ")
        );
    }
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
        if step.id.kind == StepKind::Index {
            if let Some(index) = report.outcomes[node.index()]
                .as_ref()
                .and_then(|o| o.output.as_ref())
                .and_then(StepOutput::blob)
            {
                let dir = project
                    .manifest
                    .settings
                    .out
                    .join(&step.id.image)
                    .join(&step.id.dist)
                    .join("index");
                eprintln!(
                    "index {}:{} {} (oci:{})",
                    step.id.image,
                    step.id.dist,
                    index.digest,
                    dir.display()
                );
            }
        }
    }
    // Never silent: a rootfs whose maintainer scripts did more than imgraph
    // reproduces says so, built now or cached.
    for (id, found) in report.scripts_not_reproduced() {
        eprintln!(
            "{}: {} maintainer-script command{} not reproduced; imgraph explain {id}",
            platform_label(id),
            found.len(),
            if found.len() == 1 { "" } else { "s" },
        );
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
