//! `plan --json --matrix`: the dirty work as a CI matrix. One entry per group of
//! platforms that share dirty rootfs work (the same arch, or the same rootfs
//! key: one runner does it once), each with a selector `imgraph build` takes, the
//! arch and the runner label from `[settings] runners`. The shape is what GitHub
//! Actions' `strategy.matrix` takes through `fromJSON`: `{"include":[...]}`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{RunResult, Status};
use crate::graph::{Graph, StepKind, Target};
use crate::manifest::Manifest;

/// One matrix entry: one runner's share of the work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Space-separated platform selectors (`hello:one/arm64v8 busybox:one/arm64v8`).
    pub selector: String,
    /// The arch the entry builds (the first, when a shared rootfs joins arches).
    pub arch: String,
    /// Every arch in the entry.
    pub arches: Vec<String>,
    /// The runner label: `runners[arch]`, else `runners.default`; absent when neither is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
}

/// The matrix `{"include":[...]}`: empty when nothing is dirty.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    /// The entries, by arch.
    pub include: Vec<Entry>,
}

/// Groups the dirty platforms of a plan. A platform is dirty when one of its
/// platform steps must run (the index, tags and pushes are the assembler's work).
pub fn matrix(manifest: &Manifest, graph: &Graph, plan: &RunResult) -> Matrix {
    // platform index -> (dirty, rootfs key)
    let mut dirty: BTreeMap<usize, Option<String>> = BTreeMap::new();
    let mut rootfs_key: BTreeMap<usize, String> = BTreeMap::new();
    for node in graph.order() {
        let step = graph.step(node);
        let Target::Platform(i) = step.target else {
            continue;
        };
        let outcome = plan.outcomes[node.index()].as_ref();
        if step.id.kind == StepKind::Rootfs {
            if let Some(key) = outcome.and_then(|o| o.key.clone()) {
                rootfs_key.insert(i, key);
            }
        }
        // A step whose output plan already knows (a `dir` rootfs's fingerprint)
        // is no work for a runner.
        if outcome.is_none_or(|o| o.status != Status::Fresh && o.output.is_none()) {
            dirty.insert(i, None);
        }
    }
    // Group by arch; platforms sharing a rootfs key join the first group that has it.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    for &i in dirty.keys() {
        let arch = manifest.platforms[i].arch.name.to_string();
        let shared = rootfs_key.get(&i).and_then(|k| by_key.get(k)).copied();
        let g = match shared.or_else(|| groups.iter().position(|(a, _)| *a == arch)) {
            Some(g) => g,
            None => {
                groups.push((arch, Vec::new()));
                groups.len() - 1
            }
        };
        groups[g].1.push(i);
        if let Some(k) = rootfs_key.get(&i) {
            by_key.entry(k.clone()).or_insert(g);
        }
    }
    let runners = &manifest.settings.runners;
    let include = groups
        .into_iter()
        .map(|(arch, platforms)| {
            let mut arches: Vec<String> = platforms
                .iter()
                .map(|i| manifest.platforms[*i].arch.name.to_string())
                .collect();
            arches.sort();
            arches.dedup();
            Entry {
                selector: platforms
                    .iter()
                    .map(|i| manifest.platforms[*i].label())
                    .collect::<Vec<_>>()
                    .join(" "),
                runner: runners
                    .get(&arch)
                    .or_else(|| runners.get("default"))
                    .cloned(),
                arch,
                arches,
            }
        })
        .collect();
    Matrix { include }
}
