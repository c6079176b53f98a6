//! Value completers for the argument grammar: selectors and step ids, read from
//! the manifest named on the command line being completed. Here, beside the
//! grammar, so that `cli` needs nothing from `commands`.

use std::ffi::OsStr;
use std::path::PathBuf;

use clap_complete::CompletionCandidate;

use crate::graph::Graph;
use crate::manifest::{self, LoadOptions, Manifest};

/// Completes `IMAGE[:DIST[/ARCH]]` from the manifest.
pub fn complete_selector(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(manifest) = manifest_being_completed() else {
        return Vec::new();
    };
    let mut all: Vec<String> = Vec::new();
    for d in &manifest.dists {
        for candidate in [d.image.clone(), format!("{}:{}", d.image, d.dist)] {
            if !all.contains(&candidate) {
                all.push(candidate);
            }
        }
        for arch in &d.arches {
            all.push(format!("{}:{}/{}", d.image, d.dist, arch.name));
        }
    }
    candidates(current, all)
}

/// Completes step ids (`layer:minideb:bookworm/amd64`) from the manifest's graph.
pub fn complete_step(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(manifest) = manifest_being_completed() else {
        return Vec::new();
    };
    let graph = Graph::build(&manifest, &[]);
    let ids = graph
        .order()
        .into_iter()
        .map(|n| graph.step(n).id.to_string())
        .collect();
    candidates(current, ids)
}

fn candidates(current: &OsStr, all: Vec<String>) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    all.into_iter()
        .filter(|c| c.starts_with(current.as_ref()))
        .map(CompletionCandidate::new)
        .collect()
}

/// The manifest named by `-f`/`--file` on the command line being completed (the
/// shell passes it after `--`), else `./images.toml`. `None` when it does not load.
fn manifest_being_completed() -> Option<Manifest> {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let words = args
        .iter()
        .position(|a| a == "--")
        .map_or(&args[..], |i| &args[i + 1..]);
    let mut file = PathBuf::from("images.toml");
    let mut it = words.iter();
    while let Some(word) = it.next() {
        if word == "-f" || word == "--file" {
            if let Some(next) = it.next() {
                file = PathBuf::from(next);
            }
        } else if let Some(v) = word.strip_prefix("--file=") {
            file = PathBuf::from(v);
        } else if let Some(v) = word.strip_prefix("-f").filter(|v| !v.is_empty()) {
            file = PathBuf::from(v);
        }
    }
    // No dates: a completion needs names, not git history.
    let opts = LoadOptions {
        allow_dirty: true,
        skip_git_dates: true,
    };
    manifest::load(&file, &opts).ok()
}
