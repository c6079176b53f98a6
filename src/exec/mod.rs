//! Running the graph: for each step compute its inputs and key, look the key up,
//! and (when building) execute the dirty ones, in parallel where the graph allows.

pub mod attach;
pub mod build;
mod layer_contents;
pub mod library;
pub mod lock;
pub mod matrix;
mod outputs;
pub mod progress;
pub mod push;
pub mod remote_cache;
pub mod scheduler;
mod steps;
pub mod verify_pushed;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use serde::Serialize;

pub use outputs::{AttachmentOut, LayerOut, StepOutput};
pub use progress::Progress;
pub use steps::StepError;

use crate::cache::{ActionRecord, Store};
use crate::graph::{Graph, StepId, StepKind};
use crate::key::{explain, DirtyReason, StepInputs};
use crate::manifest::Manifest;
use crate::rootfs::StatCache;
use scheduler::Slot;

/// Plan (look, write nothing) or build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Compute keys and reasons only.
    Plan,
    /// Execute dirty steps.
    Build {
        /// Run push steps too.
        push: bool,
        /// Push only where the registry's tags do not already point at the index.
        changed: bool,
    },
}

/// Where a step ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Its key was in the cache.
    Fresh,
    /// It must run (plan).
    Dirty,
    /// It ran.
    Executed,
    /// It was not run in this mode (push without `--push`).
    Skipped,
}

/// The result of evaluating one step.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Fresh, dirty, executed or skipped.
    pub status: Status,
    /// The key, when it could be computed.
    pub key: Option<String>,
    /// Why it is (or was) dirty.
    pub reason: Option<DirtyReason>,
    /// Outputs, when known.
    pub output: Option<StepOutput>,
    /// Ran but produced the same output as last time: everything below stays fresh.
    pub cut_off: bool,
    /// Time spent executing.
    pub elapsed: Duration,
    /// The key's inputs, when they could be computed (`explain` shows them).
    pub inputs: Option<StepInputs>,
}

impl Outcome {
    /// A step whose key already has an output (in the local cache or the cache
    /// registry): nothing runs.
    fn fresh(key: String, output: StepOutput, inputs: &StepInputs) -> Outcome {
        Outcome {
            status: Status::Fresh,
            key: Some(key),
            reason: None,
            output: Some(output),
            cut_off: false,
            elapsed: Duration::ZERO,
            inputs: Some(inputs.clone()),
        }
    }
}

/// Everything steps share during one run.
pub struct Ctx<'a> {
    /// The manifest.
    pub manifest: &'a Manifest,
    /// The selected graph.
    pub graph: &'a Graph,
    /// The cache.
    pub store: &'a Store,
    /// Plan or build.
    pub mode: Mode,
    /// Progress display.
    pub progress: &'a Progress,
    /// The key push steps sign with (`[settings] sign`), loaded before the run.
    pub signer: Option<Arc<crate::sign::Signer>>,
    /// Per source folder: the stat cache, and the hash of what was loaded (to skip
    /// rewriting an unchanged one: a no-op build writes nothing it does not need to).
    stat_caches: Mutex<HashMap<PathBuf, LoadedStatCache>>,
    key_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    trees: Mutex<HashMap<String, crate::rootfs::TreeFingerprint>>,
    fingerprints: Mutex<HashMap<FingerprintMemoKey, crate::rootfs::TreeFingerprint>>,
    /// Kept rootfs folders and tarballs this run made or checked: not checked again.
    kept_checked: Mutex<HashSet<PathBuf>>,
    /// The shared step cache in a registry, looked in after the local one.
    remote: Option<&'a remote_cache::RemoteCache>,
    /// `--require-cache`: a platform step neither cache has fails instead of running.
    require_cache: bool,
    /// `--keep-going`: a failure stops only the steps that depend on it.
    keep_going: bool,
}

/// A stat cache shared by the steps reading one folder, and the hash of the bytes it
/// was loaded from.
type LoadedStatCache = (Arc<Mutex<StatCache>>, Option<blake3::Hash>);

/// A folder fingerprinted with given owners and mtime clamp.
pub(crate) type FingerprintMemoKey = (PathBuf, crate::rootfs::Owners, u64);

/// A failed step.
#[derive(Debug)]
pub struct StepFailure {
    /// The step id.
    pub step: StepId,
    /// What went wrong.
    pub error: StepError,
}

impl StepFailure {
    /// Whether a cache blob failed its digest check (and was dropped, so that a
    /// second pass rebuilds it).
    pub fn is_corrupt_blob(&self) -> bool {
        matches!(
            &self.error,
            StepError::Cache(crate::cache::CacheError::DigestMismatch { .. })
        )
    }
}

/// A step that did not run because a step it depends on failed.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The step id.
    pub step: StepId,
    /// The failed step it depends on (directly or through other skipped steps).
    pub failed: StepId,
}

/// The outcome of every step of a run, by node.
pub struct RunResult {
    /// One per node.
    pub outcomes: Vec<Option<Outcome>>,
    /// Every failure.
    pub failures: Vec<StepFailure>,
    /// Every step downstream of a failure, in graph order.
    pub skipped: Vec<Skipped>,
    /// Steps that depend on no failure but were never started, because the run
    /// stopped at the first failure (without `--keep-going`).
    pub not_started: usize,
}

/// Evaluates every step without executing any: what `plan`, `explain` and `cache gc`
/// read. Writes nothing.
pub fn plan(manifest: &Manifest, graph: &Graph, store: &Store) -> RunResult {
    plan_with_remote(manifest, graph, store, None)
}

/// [`plan`], also looking in the cache registry: a step it has is fresh. Its
/// lookups are network round trips, not CPU work, so more of them run at once.
pub fn plan_with_remote(
    manifest: &Manifest,
    graph: &Graph,
    store: &Store,
    remote: Option<&remote_cache::RemoteCache>,
) -> RunResult {
    let progress = Progress::quiet();
    let jobs = if remote.is_some() {
        default_jobs().max(16)
    } else {
        default_jobs()
    };
    Ctx::new(manifest, graph, store, Mode::Plan, &progress)
        .with_remote(remote, false)
        .run(jobs)
}

/// Default parallelism: the machine's cores.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl<'a> Ctx<'a> {
    /// Prepares a run.
    pub fn new(
        manifest: &'a Manifest,
        graph: &'a Graph,
        store: &'a Store,
        mode: Mode,
        progress: &'a Progress,
    ) -> Self {
        Ctx {
            manifest,
            graph,
            store,
            mode,
            progress,
            signer: None,
            stat_caches: Mutex::default(),
            key_locks: Mutex::default(),
            trees: Mutex::default(),
            fingerprints: Mutex::default(),
            kept_checked: Mutex::default(),
            remote: None,
            require_cache: false,
            keep_going: false,
        }
    }

    /// Push steps sign what they push with `signer`.
    pub fn with_signer(mut self, signer: Option<Arc<crate::sign::Signer>>) -> Self {
        self.signer = signer;
        self
    }

    /// Looks steps up in `remote` after the local cache (and, when building,
    /// writes each executed step's record there); with `require_cache`, a
    /// platform step found in neither fails instead of running.
    pub fn with_remote(
        mut self,
        remote: Option<&'a remote_cache::RemoteCache>,
        require_cache: bool,
    ) -> Self {
        self.remote = remote;
        self.require_cache = require_cache;
        self
    }

    /// `build --keep-going`: a failed step stops only what depends on it.
    pub fn with_keep_going(mut self, keep_going: bool) -> Self {
        self.keep_going = keep_going;
        self
    }

    /// Evaluates every step, `jobs` at a time. A failure stops new work, except
    /// that a failed push leaves the other registries' pushes going, `plan`
    /// evaluates everything it can, and `--keep-going` runs every step that
    /// does not depend on a failure.
    pub fn run(&self, jobs: usize) -> RunResult {
        self.progress.begin(self.graph.len());
        let keep_going = |node: NodeIndex| {
            self.keep_going
                || self.mode == Mode::Plan
                || self.graph.step(node).kind() == StepKind::Push
        };
        let slots = scheduler::run(
            self.graph,
            jobs,
            &keep_going,
            |node, deps: &[Arc<Outcome>]| {
                let step = self.graph.step(node);
                self.progress.start(&step.id);
                let result = self.evaluate(node, deps);
                self.progress.finish(&step.id, result.as_ref().ok());
                result
            },
        );
        if let Mode::Build { .. } = self.mode {
            self.save_stat_caches();
        }
        let blocked = scheduler::blocked_by(self.graph, &slots);
        let mut failures = Vec::new();
        let mut skipped = Vec::new();
        let mut not_started = 0;
        let outcomes = slots
            .into_iter()
            .enumerate()
            .map(|(i, slot)| match slot {
                Slot::Done(o) => Some(Arc::unwrap_or_clone(o)),
                Slot::Failed(error) => {
                    failures.push(StepFailure {
                        step: self.graph.step(NodeIndex::new(i)).id.clone(),
                        error,
                    });
                    None
                }
                Slot::NotRun => {
                    match blocked[i] {
                        Some(failed) => skipped.push(Skipped {
                            step: self.graph.step(NodeIndex::new(i)).id.clone(),
                            failed: self.graph.step(failed).id.clone(),
                        }),
                        None => not_started += 1,
                    }
                    None
                }
            })
            .collect();
        self.progress.end();
        RunResult {
            outcomes,
            failures,
            skipped,
            not_started,
        }
    }

    /// A step's key inputs as if its upstream steps produced what they produced
    /// last time: `explain` uses it for a step whose upstream is dirty, to still
    /// name the manifest values that changed. `None` when an upstream never ran.
    pub fn inputs_with_last_upstream(&self, node: NodeIndex) -> Option<StepInputs> {
        let deps = self
            .graph
            .deps(node)
            .into_iter()
            .map(|d| {
                let step = self.graph.step(d);
                let record = self.store.last_record(&step.id).ok().flatten()?;
                let output: StepOutput = serde_json::from_value(record.outputs).ok()?;
                Some((step, output))
            })
            .collect::<Option<Vec<_>>>()?;
        let deps: Vec<(&crate::graph::Step, &StepOutput)> =
            deps.iter().map(|(s, o)| (*s, o)).collect();
        steps::prepare(self, self.graph.step(node), &deps)
            .ok()
            .map(|p| p.inputs)
    }

    fn evaluate(&self, node: NodeIndex, deps: &[Arc<Outcome>]) -> Result<Outcome, StepError> {
        let step = self.graph.step(node);
        let dep_nodes = self.graph.deps(node);
        if let Some((i, _)) = deps.iter().enumerate().find(|(_, d)| d.output.is_none()) {
            return Ok(Outcome {
                status: Status::Dirty,
                key: None,
                reason: Some(DirtyReason::UpstreamDirty {
                    step: self.graph.step(dep_nodes[i]).id.clone(),
                }),
                output: None,
                cut_off: false,
                elapsed: Duration::ZERO,
                inputs: None,
            });
        }
        let dep_outputs: Vec<(&crate::graph::Step, &StepOutput)> = dep_nodes
            .iter()
            .zip(deps)
            .filter_map(|(n, o)| o.output.as_ref().map(|out| (self.graph.step(*n), out)))
            .collect();
        let prepared = steps::prepare(self, step, &dep_outputs)?;
        let key = prepared.inputs.key();
        // Steps that share a key (one rootfs used by several arches) run once.
        let key_lock = self.key_lock(&key);
        let _held = key_lock.lock().unwrap_or_else(|p| p.into_inner());

        // Read lazily: a fresh step in `plan` never needs it.
        let last_cell = std::cell::OnceCell::new();
        let last = || last_cell.get_or_init(|| self.store.last_record(&step.id).ok().flatten());
        // `build --push` always talks to the registries: the cache cannot know
        // what happened to them since the last push.
        let must_push =
            step.id.kind == StepKind::Push && matches!(self.mode, Mode::Build { push: true, .. });
        if let Some(record) = self
            .store
            .action(&key)
            .ok()
            .flatten()
            .filter(|_| !must_push)
        {
            if let Ok(output) = serde_json::from_value::<StepOutput>(record.outputs.clone()) {
                steps::check_cached(self, step, &output)?;
                if let Mode::Build { .. } = self.mode {
                    if self.store.last_key(&step.id).as_deref() != Some(key.as_str()) {
                        let mine = ActionRecord {
                            step: step.id.to_string(),
                            ..record
                        };
                        self.store.put_last(&mine).map_err(StepError::Cache)?;
                        self.remember_tree(step, true);
                    } else {
                        self.remember_tree(step, false);
                    }
                }
                return Ok(Outcome::fresh(key, output, &prepared.inputs));
            }
        }
        let cacheable = remote_cache::cacheable(step.id.kind, prepared.known_output.is_some());
        if let Some(remote) = self.remote.filter(|_| cacheable) {
            let building = self.mode != Mode::Plan;
            if let Some((record, output)) =
                remote.lookup(self.store, step, &key, building, self.progress)
            {
                steps::check_cached(self, step, &output)?;
                if building {
                    // Kept locally too: the JSON blobs are here now, and a layer
                    // entry becomes usable once its blob is fetched.
                    let mine = ActionRecord {
                        step: step.id.to_string(),
                        ..record
                    };
                    self.store.put_action(&mine).map_err(StepError::Cache)?;
                }
                return Ok(Outcome::fresh(key, output, &prepared.inputs));
            }
        }
        let reason = match last() {
            None => DirtyReason::NotBuiltYet,
            Some(record) => match serde_json::from_value::<StepInputs>(record.inputs.clone()) {
                Ok(old) => explain(
                    &old,
                    &prepared.inputs,
                    &|role| steps::role_step(step, role),
                    &|path| self.content_detail(step, path),
                ),
                Err(_) => DirtyReason::FormatChanged,
            },
        };
        let reason = match (step.id.kind, &reason) {
            (StepKind::Push, DirtyReason::NotBuiltYet) => DirtyReason::NotPushed,
            _ => reason,
        };
        match self.mode {
            Mode::Plan => Ok(Outcome {
                status: Status::Dirty,
                key: Some(key),
                reason: Some(reason),
                output: prepared.known_output,
                cut_off: false,
                elapsed: Duration::ZERO,
                inputs: Some(prepared.inputs.clone()),
            }),
            Mode::Build { push, .. } => {
                if step.id.kind == StepKind::Push && !push {
                    return Ok(Outcome {
                        status: Status::Skipped,
                        key: Some(key),
                        reason: Some(reason),
                        output: Some(StepOutput::Skipped),
                        cut_off: false,
                        elapsed: Duration::ZERO,
                        inputs: Some(prepared.inputs.clone()),
                    });
                }
                if self.require_cache && step.id.kind.is_platform() && cacheable {
                    return Err(StepError::NotInCache {
                        step: step.id.to_string(),
                    });
                }
                let started = Instant::now();
                let output = match prepared.known_output.clone() {
                    Some(out) => out,
                    None => crate::cache::read_log::in_step(&step.id.to_string(), || {
                        steps::execute(self, step, &dep_outputs)
                    })?,
                };
                let record = ActionRecord {
                    step: step.id.to_string(),
                    inputs: serde_json::to_value(&prepared.inputs).unwrap_or_default(),
                    key: key.clone(),
                    outputs: serde_json::to_value(&output).unwrap_or_default(),
                    blobs: output.blobs(),
                };
                self.store.put_action(&record).map_err(StepError::Cache)?;
                if let Some(remote) = self.remote.filter(|r| cacheable && r.writes()) {
                    // A failed write costs another runner the work, not this build.
                    if let Err(e) = remote.record(self.store, self.manifest, step, &record, &output)
                    {
                        self.progress.println(&format!(
                            "warning: {}: record not written to the cache registry {}: {e}",
                            step.id,
                            remote.name()
                        ));
                    }
                }
                self.remember_tree(step, true);
                let cut_off = last()
                    .clone()
                    .and_then(|r| serde_json::from_value::<StepOutput>(r.outputs).ok())
                    .is_some_and(|old| old.digest() == output.digest());
                Ok(Outcome {
                    status: Status::Executed,
                    key: Some(key),
                    reason: Some(reason),
                    output: Some(output),
                    cut_off,
                    elapsed: started.elapsed(),
                    inputs: Some(prepared.inputs.clone()),
                })
            }
        }
    }

    fn key_lock(&self, key: &str) -> Arc<Mutex<()>> {
        let mut locks = self.key_locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(key.to_string()).or_default())
    }

    /// Keeps a rootfs step's file list, so the next miss can name the file that changed.
    fn remember_tree(&self, step: &crate::graph::Step, changed: bool) {
        if step.id.kind != StepKind::Rootfs {
            return;
        }
        let name = tree_record_name(&step.id);
        if !changed && self.store.has_state(&name) {
            return;
        }
        let trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tree) = trees.get(step.id.as_str()) {
            let _ = self.store.put_state(&name, tree);
        }
    }

    fn content_detail(&self, step: &crate::graph::Step, shown: &str) -> Option<String> {
        let trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        let new = trees.get(step.id.as_str())?;
        let old: crate::rootfs::TreeFingerprint = self
            .store
            .state(&tree_record_name(&step.id))
            .ok()
            .flatten()?;
        let change = crate::rootfs::diff(&old, new).into_iter().next()?;
        Some(format!("{}/{}", shown.trim_end_matches('/'), change.path))
    }

    pub(crate) fn stat_cache(&self, root: &std::path::Path) -> Arc<Mutex<StatCache>> {
        let mut caches = self.stat_caches.lock().unwrap_or_else(|p| p.into_inner());
        let entry = caches.entry(root.to_path_buf()).or_insert_with(|| {
            let bytes = self.store.state_bytes(&stat_cache_name(root));
            let loaded = bytes
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok());
            let hash = bytes
                .as_deref()
                .filter(|_| loaded.is_some())
                .map(blake3::hash);
            (Arc::new(Mutex::new(loaded.unwrap_or_default())), hash)
        });
        Arc::clone(&entry.0)
    }

    pub(crate) fn memo_fingerprint(
        &self,
        key: &FingerprintMemoKey,
    ) -> Option<crate::rootfs::TreeFingerprint> {
        self.fingerprints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    pub(crate) fn remember_fingerprint(
        &self,
        key: FingerprintMemoKey,
        tree: &crate::rootfs::TreeFingerprint,
    ) {
        self.fingerprints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, tree.clone());
    }

    /// Notes that a kept rootfs was made by this run (or checked against its record).
    pub(crate) fn made_kept(&self, path: &std::path::Path) {
        self.kept_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_path_buf());
    }

    /// Whether this run made or checked the kept rootfs at `path`.
    pub(crate) fn is_made_kept(&self, path: &std::path::Path) -> bool {
        self.kept_checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(path)
    }

    pub(crate) fn keep_tree(&self, step: &str, tree: crate::rootfs::TreeFingerprint) {
        self.trees
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(step.to_string(), tree);
    }

    fn save_stat_caches(&self) {
        let caches = self.stat_caches.lock().unwrap_or_else(|p| p.into_inner());
        for (root, (cache, loaded)) in caches.iter() {
            let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.prune_unused();
            let Ok(bytes) = serde_json::to_vec(&*cache) else {
                continue;
            };
            if *loaded != Some(blake3::hash(&bytes)) {
                let _ = self.store.put_state_bytes(&stat_cache_name(root), &bytes);
            }
        }
    }
}

/// Side files under the cache's `state/` that a step's next run reads (its rootfs
/// file list, the stat caches of its source): what `cache gc` keeps.
pub fn side_state_files(
    store: &Store,
    step: &crate::graph::Step,
    manifest: &Manifest,
) -> Vec<PathBuf> {
    let mut files = vec![store.state_path(&tree_record_name(&step.id))];
    if let (StepKind::Rootfs, crate::graph::Target::Platform(i)) = (step.id.kind, step.target) {
        match &manifest.platforms[i].rootfs {
            crate::manifest::RootfsSource::Dir { path, .. } => {
                files.push(store.state_path(&stat_cache_name(path)))
            }
            crate::manifest::RootfsSource::Tar { path, .. } => {
                files.push(store.state_path(&stat_cache_name(path.parent().unwrap_or(path))))
            }
            crate::manifest::RootfsSource::Command { inputs, .. } => files.extend(
                inputs
                    .iter()
                    .map(|(p, _)| store.state_path(&stat_cache_name(p))),
            ),
            crate::manifest::RootfsSource::Debian(_) => {}
        }
    }
    files
}

fn tree_record_name(step: &str) -> String {
    format!(
        "tree-{}.json",
        &blake3::hash(step.as_bytes()).to_hex()[..32]
    )
}

fn stat_cache_name(root: &std::path::Path) -> String {
    format!(
        "stat-{}.json",
        &blake3::hash(root.as_os_str().as_encoded_bytes()).to_hex()[..32]
    )
}
