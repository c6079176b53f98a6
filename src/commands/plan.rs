//! `imgraph plan`: every step with fresh/dirty and why. Writes nothing.

use serde_json::json;

use crate::cache::Store;
use crate::cli::PlanArgs;
use crate::error::Error;
use crate::exec::Status;
use crate::graph::Graph;
use crate::stdout;
use std::fmt::Write as _;

use super::{Globals, Project};

pub(super) fn run(project: &Project, args: &PlanArgs, globals: &Globals) -> Result<(), Error> {
    let graph = Graph::build(&project.manifest, &project.selectors);
    let store = Store::open_read_only(&project.cache_dir);
    let remote = match &project.cache_registry {
        Some(config) => Some(
            crate::exec::remote_cache::RemoteCache::new(config, &project.manifest)
                .map_err(|e| Error::Remote(e.to_string()))?,
        ),
        None => None,
    };
    let result = crate::exec::plan_with_remote(&project.manifest, &graph, &store, remote.as_ref());
    if !result.failures.is_empty() {
        return Err(Error::Steps(result.failures));
    }
    if args.matrix {
        let matrix = crate::exec::matrix::matrix(&project.manifest, &graph, &result);
        stdout::println(&serde_json::to_string(&matrix).unwrap_or_default())?;
        return Ok(());
    }
    let mut steps = Vec::new();
    let (mut fresh, mut dirty) = (0, 0);
    for node in graph.order() {
        let step = graph.step(node);
        let Some(outcome) = &result.outcomes[node.index()] else {
            continue;
        };
        let status = if outcome.status == Status::Fresh {
            "fresh"
        } else {
            "dirty"
        };
        if status == "fresh" {
            fresh += 1;
        } else {
            dirty += 1;
        }
        if args.changed && status == "fresh" {
            continue;
        }
        let reason = outcome.reason.as_ref().map(ToString::to_string);
        {
            steps.push(json!({
                "id": step.id,
                "kind": step.id.kind,
                "image": step.id.image,
                "dist": step.id.dist,
                "arch": step.id.arch.map(|a| a.name),
                "registry": step.id.registry,
                "key": outcome.key,
                "status": status,
                "reason": reason,
                "deps": graph.deps(node).into_iter().map(|d| graph.step(d).id.clone()).collect::<Vec<_>>(),
            }));
        }
    }
    if args.json {
        stdout::println(
            &serde_json::to_string_pretty(&json!({ "steps": steps })).unwrap_or_default(),
        )?;
        return Ok(());
    }
    if globals.quiet {
        return Ok(());
    }
    let width = steps
        .iter()
        .filter_map(|s| s["id"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0);
    // One write: a reader that stops early (`| head`) stops it once.
    let mut text = String::new();
    for s in &steps {
        let status = s["status"].as_str().unwrap_or("");
        let shown = if globals.color {
            if status == "fresh" {
                "\x1b[32mfresh\x1b[0m"
            } else {
                "\x1b[33mdirty\x1b[0m"
            }
        } else {
            status
        };
        let id = s["id"].as_str().unwrap_or("");
        match s["reason"].as_str() {
            Some(reason) => writeln!(text, "{shown}  {id:<width$}  {reason}"),
            None => writeln!(text, "{shown}  {id}"),
        }
        .expect("writing to a String");
        if globals.verbose {
            if let Some(key) = s["key"].as_str() {
                writeln!(text, "       key {key}").expect("writing to a String");
            }
        }
    }
    writeln!(
        text,
        "{} steps: {dirty} dirty, {fresh} fresh",
        fresh + dirty
    )
    .expect("writing to a String");
    stdout::print(&text)?;
    Ok(())
}
