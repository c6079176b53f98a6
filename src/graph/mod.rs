//! The step graph: one node per step, edges from each step to the steps that
//! consume its output. Ids follow the contract (`layer:minideb:bookworm/arm64v8`).

mod id;
mod render;

use std::collections::{HashMap, HashSet};
use std::fmt;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use serde::Serialize;

use crate::manifest::{Manifest, Selector};

pub use id::{Role, StepId, StepIdError};
pub use render::{to_dot, to_json};

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Fingerprint (or produce) a platform's root filesystem.
    Rootfs,
    /// Pack the rootfs into a compressed, reproducible tar layer.
    Layer,
    /// Write the image config.
    Config,
    /// Write the platform image manifest.
    Manifest,
    /// Write the SBOM documents of a platform image, as artifacts attached to it.
    Sbom,
    /// Write the provenance statement of a platform image, attached to it.
    Provenance,
    /// Write the multi-platform index of one dist.
    Index,
    /// Name the index for one registry (or locally).
    Tag,
    /// Upload to one registry.
    Push,
}

impl StepKind {
    /// Every kind, in pipeline order.
    pub const ALL: [StepKind; 9] = [
        StepKind::Rootfs,
        StepKind::Layer,
        StepKind::Config,
        StepKind::Manifest,
        StepKind::Sbom,
        StepKind::Provenance,
        StepKind::Index,
        StepKind::Tag,
        StepKind::Push,
    ];

    /// Whether steps of this kind work on one platform (and their ids name an arch).
    pub fn is_platform(self) -> bool {
        matches!(
            self,
            StepKind::Rootfs
                | StepKind::Layer
                | StepKind::Config
                | StepKind::Manifest
                | StepKind::Sbom
                | StepKind::Provenance
        )
    }

    /// The id prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Rootfs => "rootfs",
            StepKind::Layer => "layer",
            StepKind::Config => "config",
            StepKind::Manifest => "manifest",
            StepKind::Sbom => "sbom",
            StepKind::Provenance => "provenance",
            StepKind::Index => "index",
            StepKind::Tag => "tag",
            StepKind::Push => "push",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What part of the manifest a step works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Index into [`Manifest::platforms`].
    Platform(usize),
    /// Index into [`Manifest::dists`].
    Dist(usize),
}

/// One node.
#[derive(Debug, Clone)]
pub struct Step {
    /// Which step: kind, image, dist, arch, registry.
    pub id: StepId,
    /// The manifest entry it works on.
    pub target: Target,
}

impl Step {
    /// What it does.
    pub fn kind(&self) -> StepKind {
        self.id.kind
    }
}

/// The selected part of the manifest as a DAG.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Nodes are steps; an edge `a -> b` means b consumes a's output.
    pub dag: DiGraph<Step, ()>,
    by_id: HashMap<StepId, NodeIndex>,
}

impl Graph {
    /// Builds the graph for the platforms and dists the selectors name (all when none).
    pub fn build(manifest: &Manifest, selectors: &[Selector]) -> Graph {
        let mut g = Graph::default();
        let selected_platform = |i: usize| {
            selectors.is_empty()
                || selectors
                    .iter()
                    .any(|s| s.matches_platform(&manifest.platforms[i]))
        };
        let selected_dist = |i: usize| {
            selectors.is_empty() || selectors.iter().any(|s| s.matches_dist(&manifest.dists[i]))
        };

        // A set, not a scan of the dists per platform: that was quadratic in the
        // size of the matrix.
        let selected_dists: HashSet<(&str, &str)> = manifest
            .dists
            .iter()
            .enumerate()
            .filter(|(i, _)| selected_dist(*i))
            .map(|(_, d)| (d.image.as_str(), d.dist.as_str()))
            .collect();
        let mut manifest_nodes: HashMap<(&str, &str), Vec<NodeIndex>> = HashMap::new();
        // The SBOM and provenance steps of each dist's platforms: every push of
        // the dist reads their outputs (it attaches them as referrers).
        let mut attachment_nodes: HashMap<(&str, &str), Vec<NodeIndex>> = HashMap::new();
        for (i, p) in manifest.platforms.iter().enumerate() {
            let dist_selected = selected_dists.contains(&(p.image.as_str(), p.dist.as_str()));
            if !selected_platform(i) && !dist_selected {
                continue;
            }
            let mut prev = None;
            let mut layer = None;
            let mut rootfs = None;
            for kind in [
                StepKind::Rootfs,
                StepKind::Layer,
                StepKind::Config,
                StepKind::Manifest,
            ] {
                let node = g.add(Step {
                    id: StepId::platform(kind, &p.image, &p.dist, p.arch),
                    target: Target::Platform(i),
                });
                if let Some(prev) = prev {
                    g.dag.add_edge(prev, node, ());
                }
                match kind {
                    StepKind::Rootfs => rootfs = Some(node),
                    StepKind::Layer => layer = Some(node),
                    // The manifest names the layer's digest and size as well as the config's.
                    StepKind::Manifest => {
                        if let Some(layer) = layer {
                            g.dag.add_edge(layer, node, ());
                        }
                    }
                    _ => {}
                }
                prev = Some(node);
            }
            if let Some(last) = prev {
                manifest_nodes
                    .entry((p.image.as_str(), p.dist.as_str()))
                    .or_default()
                    .push(last);
                // Attachments describe the manifest (their subject) and read the
                // layer (the SBOM's packages) or the rootfs (provenance inputs).
                let attach = [
                    (StepKind::Sbom, !p.sbom.is_empty(), layer),
                    (StepKind::Provenance, p.provenance, rootfs),
                ];
                for (kind, wanted, content) in attach {
                    if !wanted {
                        continue;
                    }
                    let node = g.add(Step {
                        id: StepId::platform(kind, &p.image, &p.dist, p.arch),
                        target: Target::Platform(i),
                    });
                    if let Some(content) = content {
                        g.dag.add_edge(content, node, ());
                    }
                    g.dag.add_edge(last, node, ());
                    attachment_nodes
                        .entry((p.image.as_str(), p.dist.as_str()))
                        .or_default()
                        .push(node);
                }
            }
        }
        for (i, d) in manifest.dists.iter().enumerate() {
            if !selected_dist(i) {
                continue;
            }
            let index = g.add(Step {
                id: StepId::dist(StepKind::Index, &d.image, &d.dist, None),
                target: Target::Dist(i),
            });
            for m in manifest_nodes
                .get(&(d.image.as_str(), d.dist.as_str()))
                .into_iter()
                .flatten()
            {
                g.dag.add_edge(*m, index, ());
            }
            let registries: Vec<Option<&String>> = if d.registries.is_empty() {
                vec![None]
            } else {
                d.registries.iter().map(Some).collect()
            };
            for reg in registries {
                let step = |kind: StepKind| Step {
                    id: StepId::dist(kind, &d.image, &d.dist, reg.map(String::as_str)),
                    target: Target::Dist(i),
                };
                let tag = g.add(step(StepKind::Tag));
                g.dag.add_edge(index, tag, ());
                if reg.is_some() {
                    let push = g.add(step(StepKind::Push));
                    g.dag.add_edge(tag, push, ());
                    for a in attachment_nodes
                        .get(&(d.image.as_str(), d.dist.as_str()))
                        .into_iter()
                        .flatten()
                    {
                        g.dag.add_edge(*a, push, ());
                    }
                }
            }
        }
        g
    }

    fn add(&mut self, step: Step) -> NodeIndex {
        let id = step.id.clone();
        let node = self.dag.add_node(step);
        self.by_id.insert(id, node);
        node
    }

    /// The node of a step id.
    pub fn node(&self, id: &str) -> Option<NodeIndex> {
        self.by_id.get(id).copied()
    }

    /// A step.
    pub fn step(&self, node: NodeIndex) -> &Step {
        &self.dag[node]
    }

    /// The steps whose outputs this one reads, in a stable order.
    pub fn deps(&self, node: NodeIndex) -> Vec<NodeIndex> {
        let mut deps: Vec<NodeIndex> = self
            .dag
            .neighbors_directed(node, Direction::Incoming)
            .collect();
        deps.sort();
        deps
    }

    /// The steps that read this one's output.
    pub fn dependents(&self, node: NodeIndex) -> Vec<NodeIndex> {
        self.dag
            .neighbors_directed(node, Direction::Outgoing)
            .collect()
    }

    /// Steps in an order where every step comes after its deps: insertion order
    /// is one (edges only point at later nodes), and it reads platform by platform.
    pub fn order(&self) -> Vec<NodeIndex> {
        debug_assert!(self.dag.edge_indices().all(|e| {
            let (a, b) = self.dag.edge_endpoints(e).unwrap_or_default();
            a < b
        }));
        self.dag.node_indices().collect()
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.dag.node_count()
    }

    /// Whether nothing was selected.
    pub fn is_empty(&self) -> bool {
        self.dag.node_count() == 0
    }
}
