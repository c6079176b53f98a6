//! Runs a DAG on N threads: a step starts when all its deps are done; the first
//! failure stops new work (unless the caller keeps going), lets running steps
//! finish, and every failure is kept. Afterwards, [`blocked_by`] tells a step that
//! never ran because a dependency failed from one that was never started.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use petgraph::graph::NodeIndex;

use crate::graph::Graph;

/// What happened to one node.
#[derive(Debug)]
pub enum Slot<T, E> {
    /// Never started: a dep failed, or the run stopped first.
    NotRun,
    /// Finished.
    Done(Arc<T>),
    /// Failed.
    Failed(E),
}

struct State<T, E> {
    ready: VecDeque<NodeIndex>,
    waiting_on: Vec<usize>,
    slots: Vec<Slot<T, E>>,
    running: usize,
    stop: bool,
}

/// Whether a node's failure may leave unrelated work running (a push to one
/// registry must not stop the pushes to the others; `build --keep-going` says
/// yes for every node).
pub type KeepGoing<'a> = &'a (dyn Fn(NodeIndex) -> bool + Sync);

/// Runs `work` for every node in dependency order, `jobs` at a time. `work` gets
/// the node and its deps' results (in [`Graph::deps`] order). A failure stops new
/// work unless `keep_going` says otherwise for that node; either way nothing
/// downstream of a failure runs.
pub fn run<T, E, F>(
    graph: &Graph,
    jobs: usize,
    keep_going: KeepGoing<'_>,
    work: F,
) -> Vec<Slot<T, E>>
where
    T: Send + Sync,
    E: Send,
    F: Fn(NodeIndex, &[Arc<T>]) -> Result<T, E> + Sync,
{
    let n = graph.len();
    let waiting_on: Vec<usize> = (0..n)
        .map(|i| graph.deps(NodeIndex::new(i)).len())
        .collect();
    let ready = (0..n)
        .filter(|i| waiting_on[*i] == 0)
        .map(NodeIndex::new)
        .collect();
    let state = Mutex::new(State {
        ready,
        waiting_on,
        slots: (0..n).map(|_| Slot::NotRun).collect(),
        running: 0,
        stop: false,
    });
    let wake = Condvar::new();
    let jobs = jobs.clamp(1, n.max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| worker(graph, &state, &wake, keep_going, &work));
        }
    });
    state.into_inner().unwrap_or_else(|p| p.into_inner()).slots
}

fn worker<T, E, F>(
    graph: &Graph,
    state: &Mutex<State<T, E>>,
    wake: &Condvar,
    keep_going: KeepGoing<'_>,
    work: &F,
) where
    F: Fn(NodeIndex, &[Arc<T>]) -> Result<T, E> + Sync,
{
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let mut guard = lock();
    loop {
        let next = if guard.stop {
            None
        } else {
            guard.ready.pop_front()
        };
        let Some(node) = next else {
            if guard.running == 0 {
                wake.notify_all();
                return;
            }
            guard = wake.wait(guard).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        guard.running += 1;
        let deps: Vec<Arc<T>> = graph
            .deps(node)
            .iter()
            .map(|d| match &guard.slots[d.index()] {
                Slot::Done(v) => Arc::clone(v),
                _ => unreachable!("a step is only ready once its deps are done"),
            })
            .collect();
        drop(guard);
        // The running step occupies a core of the process budget, so a step's own
        // helper threads (compression, hashing) only use cores no step is using.
        let core = crate::budget::global().occupy();
        let result = work(node, &deps);
        drop(core);
        guard = lock();
        guard.running -= 1;
        match result {
            Ok(value) => {
                guard.slots[node.index()] = Slot::Done(Arc::new(value));
                for next in graph.dependents(node) {
                    guard.waiting_on[next.index()] -= 1;
                    if guard.waiting_on[next.index()] == 0 {
                        guard.ready.push_back(next);
                    }
                }
            }
            Err(e) => {
                guard.slots[node.index()] = Slot::Failed(e);
                if !keep_going(node) {
                    guard.stop = true;
                }
            }
        }
        wake.notify_all();
    }
}

/// For each node that did not run, the failed node it depends on (following
/// skipped nodes up to the failure, so a step two hops below a failed rootfs names
/// that rootfs); `None` for a node that ran, failed, or was never started because
/// the run stopped. Relies on [`Graph::order`] being topological.
pub fn blocked_by<T, E>(graph: &Graph, slots: &[Slot<T, E>]) -> Vec<Option<NodeIndex>> {
    let mut blocked: Vec<Option<NodeIndex>> = vec![None; slots.len()];
    for node in graph.order() {
        if !matches!(slots[node.index()], Slot::NotRun) {
            continue;
        }
        blocked[node.index()] = graph
            .deps(node)
            .into_iter()
            .find_map(|d| match slots[d.index()] {
                Slot::Failed(_) => Some(d),
                _ => blocked[d.index()],
            });
    }
    blocked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse, LoadOptions};

    fn graph() -> Graph {
        let dir = tempfile::tempdir().unwrap();
        for a in ["amd64", "arm64v8"] {
            std::fs::create_dir_all(dir.path().join("r").join(a)).unwrap();
        }
        let text = "[images.h]\ndists=[\"one\"]\narches=[\"amd64\",\"arm64v8\"]\nrootfs={dir=\"r/{arch}\"}\n";
        let m = parse(
            "images.toml".as_ref(),
            text,
            dir.path(),
            &LoadOptions::default(),
        )
        .unwrap();
        Graph::build(&m, &[])
    }

    #[test]
    fn runs_every_step_after_its_deps() {
        let g = graph();
        let slots = run(
            &g,
            4,
            &|_| false,
            |_node, deps: &[Arc<usize>]| -> Result<usize, ()> {
                Ok(deps.iter().map(|d| **d).max().unwrap_or(0) + 1)
            },
        );
        let depth: Vec<usize> = slots
            .iter()
            .map(|s| match s {
                Slot::Done(v) => **v,
                _ => panic!("not done"),
            })
            .collect();
        let tag = g.node("tag:h:one").unwrap();
        assert_eq!(
            depth[tag.index()],
            6,
            "rootfs, layer, config, manifest, index, tag"
        );
    }

    #[test]
    fn a_failure_stops_downstream_and_is_kept() {
        let g = graph();
        let failing = g.node("layer:h:one/arm64v8").unwrap();
        let slots = run(&g, 1, &|_| false, |node, _deps: &[Arc<()>]| {
            if node == failing {
                Err("boom")
            } else {
                Ok(())
            }
        });
        assert!(matches!(slots[failing.index()], Slot::Failed("boom")));
        let index = g.node("index:h:one").unwrap();
        assert!(matches!(slots[index.index()], Slot::NotRun));
    }

    #[test]
    fn keeping_going_runs_everything_a_failure_does_not_reach_and_names_it() {
        let g = graph();
        let failing = g.node("rootfs:h:one/arm64v8").unwrap();
        let slots = run(&g, 1, &|_| true, |node, _deps: &[Arc<()>]| {
            if node == failing {
                Err("boom")
            } else {
                Ok(())
            }
        });
        let blocked = blocked_by(&g, &slots);
        for node in g.order() {
            let id = g.step(node).id.as_str();
            let downstream = id.contains("one/arm64v8") || id == "index:h:one" || id == "tag:h:one";
            match &slots[node.index()] {
                Slot::Done(_) => assert!(!downstream, "{id} ran"),
                Slot::Failed(_) => assert_eq!(node, failing),
                Slot::NotRun => {
                    assert!(downstream, "{id} did not run");
                    assert_eq!(blocked[node.index()], Some(failing), "{id}");
                }
            }
        }
        assert!(matches!(
            slots[g.node("manifest:h:one/amd64").unwrap().index()],
            Slot::Done(_)
        ));
    }

    #[test]
    fn a_step_never_started_is_not_blamed_on_a_failure() {
        let g = graph();
        let failing = g.node("rootfs:h:one/amd64").unwrap();
        // One job, stop at the first failure: the other arch's rootfs is queued
        // behind it and never starts.
        let slots = run(&g, 1, &|_| false, |node, _deps: &[Arc<()>]| {
            if node == failing {
                Err("boom")
            } else {
                Ok(())
            }
        });
        let blocked = blocked_by(&g, &slots);
        let layer = g.node("layer:h:one/amd64").unwrap();
        assert_eq!(blocked[layer.index()], Some(failing));
        let other = g.node("layer:h:one/arm64v8").unwrap();
        assert!(matches!(slots[other.index()], Slot::NotRun));
        assert_eq!(blocked[other.index()], None);
    }
}
