//! `imgraph explain STEP`: one step's inputs (as they go into its key), its key,
//! its cached outputs, and why it is dirty, compared input by input with what the
//! last build recorded. Runs the plan machinery, so it writes nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::cache::Store;
use crate::cli::ExplainArgs;
use crate::error::Error;
use crate::exec::{Ctx, Mode, Outcome, Progress, Status, StepOutput};
use crate::graph::{Graph, Role};
use crate::key::{DirtyReason, StepInputs};
use crate::manifest::diagnostic::did_you_mean;
use crate::manifest::{Arch, Selector};

use super::{default_jobs, Globals, Project};

/// One input of a key, compared with the last build's.
struct Row {
    /// `manifest`, `upstream` or `content`.
    group: &'static str,
    /// Dotted manifest path, upstream role or content path.
    name: String,
    /// Today's value.
    now: Option<String>,
    /// The last build's value, where it differs.
    was: Option<Option<String>>,
}

pub(super) fn run(project: &Project, args: &ExplainArgs, globals: &Globals) -> Result<(), Error> {
    let full = Graph::build(&project.manifest, &[]);
    let Some(node) = full.node(&args.step) else {
        return Err(unknown_step(&full, &args.step));
    };
    // Plan only the step's image and dist: everything it depends on, nothing else.
    let step = full.step(node);
    let selector = Selector::parse(&format!("{}:{}", step.id.image, step.id.dist))?;
    let graph = Graph::build(&project.manifest, &[selector]);
    let Some(node) = graph.node(&args.step) else {
        return Err(unknown_step(&full, &args.step));
    };
    let store = Store::open_read_only(&project.cache_dir);
    let progress = Progress::quiet();
    // Fresh in the cache registry is fresh here too, as `plan` says.
    let remote = match &project.cache_registry {
        Some(config) => Some(
            crate::exec::remote_cache::RemoteCache::new(config, &project.manifest)
                .map_err(|e| Error::Remote(e.to_string()))?,
        ),
        None => None,
    };
    let ctx = Ctx::new(&project.manifest, &graph, &store, Mode::Plan, &progress)
        .with_remote(remote.as_ref(), false);
    let result = ctx.run(default_jobs());
    if !result.failures.is_empty() {
        return Err(Error::Steps(result.failures));
    }
    let outcome_of = |id: &str| {
        graph
            .node(id)
            .and_then(|n| result.outcomes[n.index()].as_ref())
    };
    let Some(outcome) = outcome_of(&args.step) else {
        return Err(Error::Usage(format!(
            "step {} could not be planned",
            args.step
        )));
    };
    let step = graph.step(node);
    let last = store.last_record(&step.id)?;
    let old: Option<StepInputs> = last
        .as_ref()
        .and_then(|r| serde_json::from_value(r.inputs.clone()).ok());
    // A step whose upstream is dirty has no key yet; compare what it can know (the
    // manifest values it reads), taking the upstream outputs as they were last built.
    let assumed = match &outcome.inputs {
        Some(_) => None,
        None => ctx.inputs_with_last_upstream(node),
    };
    let inputs = outcome.inputs.as_ref().or(assumed.as_ref());
    let rows = inputs
        .map(|new| rows(new, old.as_ref()))
        .unwrap_or_default();
    // Why, following "upstream dirty" to the step that is the cause.
    let mut chain = Vec::new();
    let mut cursor = outcome.reason.clone();
    while let Some(DirtyReason::UpstreamDirty { step: up }) = &cursor {
        let next = outcome_of(up).and_then(|o| o.reason.clone());
        chain.push((up.clone(), next.clone()));
        cursor = next;
    }
    let upstream_ids: BTreeMap<String, String> = graph
        .deps(node)
        .into_iter()
        .map(|d| graph.step(d))
        .map(|s| (Role::of(&s.id, &step.id).to_string(), s.id.to_string()))
        .collect();

    if args.json {
        let doc = json!({
            "id": step.id,
            "kind": step.id.kind,
            "status": status_word(outcome),
            "reason": outcome.reason.as_ref().map(ToString::to_string),
            "because": chain.iter().map(|(id, r)| json!({
                "step": id,
                "reason": r.as_ref().map(ToString::to_string),
            })).collect::<Vec<_>>(),
            "key": outcome.key,
            "last_key": last.as_ref().map(|r| r.key.clone()),
            "inputs": outcome.inputs,
            "inputs_with_last_upstream": assumed,
            "last_inputs": old,
            "changed": rows.iter().filter(|r| r.was.is_some()).map(|r| json!({
                "input": format!("{}.{}", r.group, r.name),
                "was": r.was.clone().flatten(),
                "now": r.now,
            })).collect::<Vec<_>>(),
            "outputs": if outcome.status == Status::Fresh { outcome.output.as_ref() } else { None },
            "upstream": upstream_ids,
        });
        crate::stdout::println(&serde_json::to_string_pretty(&doc).unwrap_or_default())?;
        return Ok(());
    }
    if globals.quiet {
        return Ok(());
    }
    let mut out = String::new();
    let _ = writeln!(out, "step     {}", step.id);
    let why = match (&outcome.status, &outcome.reason) {
        (Status::Fresh, _) => "fresh: its key is in the cache, nothing to do".to_string(),
        (_, Some(reason)) => format!("dirty: {reason}"),
        (_, None) => "dirty".to_string(),
    };
    let _ = writeln!(out, "status   {why}");
    for (id, reason) in &chain {
        let reason = reason
            .as_ref()
            .map_or_else(|| "fresh".to_string(), ToString::to_string);
        let _ = writeln!(out, "         because {id} is dirty: {reason}");
    }
    // What the step's own inputs say changed, beyond its dirty upstream.
    if let (Some(new), Some(old)) = (&assumed, &old) {
        let own = crate::key::explain(
            old,
            new,
            &|r| r.parse::<Role>().ok().map(|r| r.step_of(&step.id)),
            &|_| None,
        );
        if matches!(
            own,
            DirtyReason::ManifestChanged { .. } | DirtyReason::InputChanged { .. }
        ) {
            let _ = writeln!(out, "         and its own inputs changed: {own}");
        }
    }
    match &outcome.key {
        Some(key) => {
            let _ = writeln!(out, "key      {key}");
        }
        None => {
            let _ = writeln!(
                out,
                "key      not known yet: it is built from upstream outputs that do not exist yet"
            );
        }
    }
    if let Some(record) = &last {
        if Some(&record.key) != outcome.key.as_ref() {
            let _ = writeln!(out, "last     {} (the last build)", record.key);
        }
    }
    match inputs {
        None => {
            let _ = writeln!(out, "inputs   not known until the upstream steps run:");
            for id in upstream_ids.values() {
                let _ = writeln!(out, "           {id}");
            }
        }
        Some(inputs) => {
            if assumed.is_some() {
                let _ = writeln!(
                    out,
                    "inputs   (upstream outputs as last built: they are rebuilt first, and may change)"
                );
            } else {
                let _ = writeln!(
                    out,
                    "inputs   (format {}, kind {}; hashed as canonical JSON with blake3)",
                    inputs.format, inputs.kind
                );
            }
            let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
            let mut group = "";
            for r in &rows {
                if r.group != group {
                    group = r.group;
                    let title = match group {
                        "manifest" => "manifest values (images.toml)",
                        "upstream" => "upstream outputs (digests, not keys)",
                        _ => "content hashes (files and folders read)",
                    };
                    let _ = writeln!(out, "  {title}");
                }
                let shown_name = match (r.group, upstream_ids.get(&r.name)) {
                    ("upstream", Some(id)) => format!("{:<width$}", id, width = width),
                    _ => format!("{:<width$}", r.name, width = width),
                };
                let now = r.now.as_deref().unwrap_or("(gone)");
                let _ = writeln!(out, "    {shown_name}  {now}");
                if let Some(was) = &r.was {
                    let was = was.as_deref().unwrap_or("(not an input then)");
                    let _ = writeln!(
                        out,
                        "    {:width$}  changed since the last build; was {was}",
                        "",
                        width = width
                    );
                }
            }
        }
    }
    match (&outcome.status, &outcome.output) {
        (Status::Fresh, Some(output)) => {
            let _ = writeln!(out, "outputs  (cached)");
            describe_output(&mut out, output);
        }
        (_, Some(output)) if !matches!(output, StepOutput::Skipped) => {
            let _ = writeln!(
                out,
                "outputs  (known without running; not cached under this key yet)"
            );
            describe_output(&mut out, output);
        }
        _ => {
            let _ = writeln!(
                out,
                "outputs  none cached for this key: `imgraph build` makes them"
            );
        }
    }
    crate::stdout::print(&out)?;
    Ok(())
}

fn status_word(outcome: &Outcome) -> &'static str {
    if outcome.status == Status::Fresh {
        "fresh"
    } else {
        "dirty"
    }
}

/// Input name -> value as shown.
type Values = BTreeMap<String, String>;

/// Every input of the new key, with the old value where it differs; inputs that
/// were there last time and are gone now come last in their group.
fn rows(new: &StepInputs, old: Option<&StepInputs>) -> Vec<Row> {
    let mut rows = Vec::new();
    let groups: [(&'static str, Values, Option<Values>); 3] = [
        (
            "manifest",
            compact(&new.manifest),
            old.map(|o| compact(&o.manifest)),
        ),
        (
            "upstream",
            new.upstream.clone(),
            old.map(|o| o.upstream.clone()),
        ),
        (
            "content",
            new.content.clone(),
            old.map(|o| o.content.clone()),
        ),
    ];
    for (group, now, then) in groups {
        for (name, value) in &now {
            let was = match &then {
                Some(then) if then.get(name) != Some(value) => Some(then.get(name).cloned()),
                _ => None,
            };
            rows.push(Row {
                group,
                name: name.clone(),
                now: Some(value.clone()),
                was,
            });
        }
        if let Some(then) = &then {
            for (name, value) in then.iter().filter(|(k, _)| !now.contains_key(*k)) {
                rows.push(Row {
                    group,
                    name: name.clone(),
                    now: None,
                    was: Some(Some(value.clone())),
                });
            }
        }
    }
    rows
}

fn compact(values: &BTreeMap<String, Value>) -> Values {
    values
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_string(v).unwrap_or_default()))
        .collect()
}

fn describe_output(out: &mut String, output: &StepOutput) {
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "    {k:<10} {v}");
    };
    match output {
        StepOutput::Rootfs {
            tree,
            files,
            kept,
            scripts,
        } => {
            line("tree", tree.clone());
            line("entries", files.to_string());
            if !scripts.is_empty() {
                line(
                    "scripts",
                    format!(
                        "{} maintainer-script commands not reproduced (the image lacks their effect):",
                        scripts.len()
                    ),
                );
                for s in scripts {
                    line("", s.to_string());
                }
            }
            if let Some(kept) = kept {
                // The record outlives the folder or tarball (deleted, `cache gc`,
                // `cache verify`, or recorded on another machine).
                if std::path::Path::new(kept).exists() {
                    line("kept", kept.clone());
                } else {
                    line(
                        "kept",
                        format!("{kept} (gone: made again when a layer step needs it)"),
                    );
                }
            }
        }
        StepOutput::Layer(l) => {
            line("blob", format!("{} ({} bytes)", l.blob.digest, l.blob.size));
            line("diff_id", l.diff_id.clone());
            line("tar size", l.uncompressed_size.to_string());
        }
        StepOutput::Blob(d) => line("blob", format!("{} ({} bytes)", d.digest, d.size)),
        StepOutput::Tag { index, refs } | StepOutput::Push { index, refs, .. } => {
            line("index", index.digest.clone());
            line("refs", refs.join(", "));
        }
        StepOutput::Skipped => line("skipped", "not pushed (no --push)".into()),
        StepOutput::Attachments(attached) => {
            for a in attached {
                line(
                    "artifact",
                    format!(
                        "{} {} ({} bytes) attached to {}",
                        a.artifact_type, a.manifest.digest, a.manifest.size, a.subject.digest
                    ),
                );
            }
        }
    }
}

/// An id that names no step: suggest the closest one, or the steps of a selector.
fn unknown_step(graph: &Graph, id: &str) -> Error {
    let ids: Vec<String> = graph
        .order()
        .into_iter()
        .map(|n| graph.step(n).id.to_string())
        .collect();
    // A selector (`hello:one/amd64`) instead of a step id: list its steps.
    let matching: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|s| {
            s.split_once(':')
                .is_some_and(|(_, rest)| rest == id || rest.starts_with(&format!("{id}@")))
        })
        .collect();
    // An arch in another naming scheme (`arm64` for arm64v8): by spelling alone
    // `layer:hello:one/amd64` would look as close.
    let by_arch_alias = id.rsplit_once('/').and_then(|(head, arch)| {
        let candidate = format!("{head}/{}", Arch::by_alias(arch)?.name);
        ids.contains(&candidate).then_some(candidate)
    });
    let hint = if !matching.is_empty() {
        format!("that is a selector; its steps are: {}", matching.join(", "))
    } else if let Some(best) = by_arch_alias {
        format!("did you mean {best}? (step ids name arches as images.toml does)")
    } else if let Some(best) = did_you_mean(id, ids.iter().map(String::as_str)) {
        format!("did you mean {best}?")
    } else {
        "step ids look like KIND:IMAGE:DIST[/ARCH][@REGISTRY], e.g. layer:minideb:bookworm/amd64; `imgraph plan` lists them".to_string()
    };
    Error::Usage(format!("no step {id:?} in the manifest\n  = help: {hint}"))
}
