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
    let mut progress = Progress::new(globals.quiet, globals.verbose, globals.color);
    if args.json {
        progress = progress.without_transfers();
    }
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
            keep_going: args.keep_going,
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
            "skipped": report.skipped,
            "not_started": report.not_started,
            "removed": report.removed,
            "scripts_not_reproduced": report.scripts_not_reproduced().into_iter().map(|(id, found)| json!({
                "step": id,
                "platform": platform_label(id),
                "commands": found,
            })).collect::<Vec<_>>(),
        });
        // A reader that closed stdout early ends nothing here: the summary and a
        // failure still reach stderr and the exit status.
        match crate::stdout::println(&serde_json::to_string_pretty(&doc).unwrap_or_default()) {
            Ok(()) | Err(crate::stdout::StdoutError::Closed) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !globals.quiet {
        summary(project, &report, started);
    }
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Build {
            failures: std::mem::take(&mut report.failures),
            skipped: report.skipped.len(),
            not_started: report.not_started,
        })
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

/// The human summary on stderr. `failed:` and `skipped` lines name what did not
/// happen; the reasons follow once, in the error that ends the run.
fn summary(project: &Project, report: &BuildReport, started: Instant) {
    let total = report.executed.len() + report.cached.len();
    let out = project.manifest.settings.out.display();
    // "0 layouts written" alone reads as "out/ is fine"; say what is up to date.
    let up_to_date = match report.up_to_date {
        0 => String::new(),
        n => format!(" ({n} already up to date)"),
    };
    crate::stderr::say!(
        "{total} steps in {:.2}s: {} executed, {} cached, {} cut off (output unchanged); {} layouts written to {out}{up_to_date}",
        started.elapsed().as_secs_f64(),
        report.executed.len(),
        report.cached.len(),
        report.cut_off,
        report.exported.len(),
    );
    not_built(project, report);
    if !report.remote_only.is_empty() {
        crate::stderr::say!(
            "{} platforms are only in the cache registry and were not exported to {} (pushed by mount; `imgraph build` without --push fetches them): {}",
            report.remote_only.len(),
            project.manifest.settings.out.display(),
            report.remote_only.join(" ")
        );
    }
    // After a failure, what did not build may well have changed.
    if report.changed.is_empty() && report.failures.is_empty() {
        crate::stderr::say!("no image changed since the last build");
    }
    for c in &report.changed {
        crate::stderr::say!(
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
                // Only a layout that is there is named: an assembler that pushed
                // by mount wrote none.
                let place = match report.index_layouts.get(&step.id) {
                    Some(dir) => format!("(oci:{})", dir.display()),
                    None if !report.remote_only.is_empty() => {
                        "(not in out/: its platforms are only in the cache registry)".into()
                    }
                    None => "(not in out/)".into(),
                };
                crate::stderr::say!(
                    "index {}:{} {} {place}",
                    step.id.image,
                    step.id.dist,
                    index.digest,
                );
            }
        }
    }
    // Never silent: a rootfs whose maintainer scripts did more than imgraph
    // reproduces says so, built now or cached.
    for (id, found) in report.scripts_not_reproduced() {
        crate::stderr::say!(
            "{}: {} maintainer-script command{} not reproduced; imgraph explain {id}",
            platform_label(id),
            found.len(),
            if found.len() == 1 { "" } else { "s" },
        );
    }
    for p in &report.pushed {
        crate::stderr::say!(
            "pushed: {} {}",
            p["reference"].as_str().unwrap_or(""),
            p["digest"].as_str().unwrap_or("")
        );
    }
    for f in report.failed_json() {
        match (f["reference"].as_str(), f["registry"].as_str()) {
            (Some(reference), Some(registry)) => {
                crate::stderr::say!("failed: {reference} (registry {registry})")
            }
            _ => crate::stderr::say!("failed: {}", f["step"].as_str().unwrap_or("")),
        }
    }
}

/// What a failed build left out of `out/`, and why: the steps skipped below each
/// failure, the platforms and indexes not exported, stale indexes removed.
fn not_built(project: &Project, report: &BuildReport) {
    if report.failures.is_empty() {
        return;
    }
    let out = project.manifest.settings.out.display();
    for f in &report.failures {
        let below: Vec<&str> = report
            .skipped
            .iter()
            .filter(|s| s.failed == f.step)
            .map(|s| s.step.as_str())
            .collect();
        if !below.is_empty() {
            crate::stderr::say!(
                "skipped {} that depend on {}: {}",
                count(below.len(), "step"),
                f.step,
                below.join(" ")
            );
        }
    }
    if !report.unbuilt_platforms.is_empty() {
        crate::stderr::say!(
            "not exported to {out} ({} not built): {}",
            count(report.unbuilt_platforms.len(), "platform"),
            report.unbuilt_platforms.join(" ")
        );
    }
    if !report.unbuilt_indexes.is_empty() {
        crate::stderr::say!(
            "not every platform built: no index written or pushed for {}",
            report.unbuilt_indexes.join(" ")
        );
    }
    for dir in &report.removed {
        crate::stderr::say!(
            "removed {}: an index of an earlier build whose platform layouts were rewritten since",
            dir.display()
        );
    }
}

fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}
