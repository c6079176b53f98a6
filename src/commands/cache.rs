//! `imgraph cache verify` and `imgraph cache gc`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::cache::{CacheError, Store};
use crate::cli::CacheCommand;
use crate::error::Error;
use crate::exec::StepOutput;
use crate::graph::Graph;

use super::{Globals, Project};

pub(super) fn run(project: &Project, cmd: &CacheCommand, globals: &Globals) -> Result<(), Error> {
    let locked = Store::open(&project.cache_dir).and_then(|s| s.lock().map(|l| (s, l)));
    match (cmd, locked) {
        (CacheCommand::Verify, Ok((store, _lock))) => verify(&store, globals, true),
        // A cache this user cannot write is checked, not repaired.
        (CacheCommand::Verify, Err(CacheError::ReadOnly { .. })) => {
            let store = Store::open_read_only(&project.cache_dir);
            let _shared = store.lock_shared()?;
            verify(&store, globals, false)
        }
        (CacheCommand::Gc, Ok((store, _lock))) => gc(project, &store, globals),
        (_, Err(e)) => Err(e.into()),
    }
}

/// Checks every blob by digest and every entry against its blobs; drops what is
/// bad when it may `repair` (a blob that fails its check is dropped on the way
/// when the cache lets it, see `Store::verify_blob`).
fn verify(store: &Store, globals: &Globals, repair: bool) -> Result<(), Error> {
    let mut problems = Vec::new();
    let blobs = store.blobs()?;
    for (digest, _) in &blobs {
        if let Err(e) = store.verify_blob(digest) {
            problems.push(e.to_string());
        }
    }
    let actions = store.actions()?;
    let kept = verify_kept(&actions, &mut problems);
    for (path, record) in &actions {
        match record {
            Ok(r) => {
                if let Some(missing) = r.blobs.iter().find(|b| !store.has_blob(b)) {
                    let done = if repair {
                        "; removed, the step will rebuild"
                    } else {
                        ""
                    };
                    problems.push(format!(
                        "cache entry {} ({}) names blob {missing}, which is missing{done}",
                        path.display(),
                        r.step
                    ));
                    if repair {
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
            Err(e) if repair => {
                problems.push(format!("{e}; removed"));
                let _ = std::fs::remove_file(path);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    match (problems.is_empty(), repair) {
        (true, _) => {}
        (false, true) => return Err(Error::CacheRepaired { problems }),
        (false, false) => return Err(Error::CacheProblems { problems }),
    }
    if !globals.quiet {
        crate::stderr::say!(
            "cache ok: {} blobs, {} entries and {kept} kept root filesystems verified",
            blobs.len(),
            actions.len()
        );
    }
    Ok(())
}

/// Checks every kept rootfs (folder or tarball under `rootfs/`) an action entry
/// names against the fingerprint the entry recorded; removes one that differs (the
/// next layer step that needs it makes it again). Returns how many were checked.
fn verify_kept(actions: &[crate::cache::ActionFile], problems: &mut Vec<String>) -> usize {
    use crate::rootfs::kept::{check, remove, Kept};
    let mut seen = HashSet::new();
    let mut checked = 0;
    for (_, record) in actions {
        let Ok(r) = record else { continue };
        let Ok(StepOutput::Rootfs {
            tree,
            kept: Some(kept),
            ..
        }) = serde_json::from_value(r.outputs.clone())
        else {
            continue;
        };
        if !seen.insert(kept.clone()) {
            continue;
        }
        // A folder's fingerprint clamps mtimes to the `created` it was made with.
        let created = r.inputs["manifest"]["settings.created"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let path = Path::new(&kept);
        let problem = match check(path, &tree, created) {
            Ok(Kept::Missing) => continue,
            Ok(Kept::Intact) => {
                checked += 1;
                continue;
            }
            Ok(Kept::Changed { found }) => format!(
                "kept rootfs {kept} ({}) has fingerprint {found}, not the recorded {tree}",
                r.step
            ),
            Err(e) => format!("kept rootfs {kept} ({}): {e}", r.step),
        };
        let removed = match remove(path) {
            Ok(()) => "removed, it will be made again when a layer needs it".to_string(),
            Err(e) => format!("could not remove it: {e}"),
        };
        checked += 1;
        problems.push(format!("{problem}; {removed}"));
    }
    checked
}

/// Deletes blobs, entries and side files that neither the current manifest's steps
/// nor the last successful build need.
fn gc(project: &Project, store: &Store, globals: &Globals) -> Result<(), Error> {
    let graph = Graph::build(&project.manifest, &[]);
    let result = crate::exec::plan(&project.manifest, &graph, store);

    let mut keys = HashSet::new();
    let mut keep_files: HashSet<PathBuf> = HashSet::new();
    let mut keep_blobs: HashSet<String> = HashSet::new();
    let mut keep_record = |record: &crate::cache::ActionRecord,
                           keep_files: &mut HashSet<PathBuf>| {
        keys.insert(record.key.clone());
        keep_blobs.extend(record.blobs.iter().cloned());
        if let Ok(StepOutput::Rootfs {
            kept: Some(kept), ..
        }) = serde_json::from_value(record.outputs.clone())
        {
            keep_files.insert(PathBuf::from(kept));
        }
    };
    for node in graph.order() {
        let step = graph.step(node);
        keep_files.insert(store.step_record_path(&step.id));
        if let Some(record) = store.last_record(&step.id)? {
            keep_record(&record, &mut keep_files);
        }
        if let Some(key) = result.outcomes[node.index()]
            .as_ref()
            .and_then(|o| o.key.clone())
        {
            if let Some(record) = store.action(&key)? {
                keep_record(&record, &mut keep_files);
            }
        }
        keep_files.insert(store.log_path(&step.id));
        keep_files.extend(crate::exec::side_state_files(
            store,
            step,
            &project.manifest,
        ));
    }
    keep_files.insert(store.state_path("last-build.json"));

    let mut freed = 0u64;
    let mut removed = 0usize;
    let mut remove = |path: &Path| {
        let size = tree_size(path);
        let ok = if path.is_dir() {
            std::fs::remove_dir_all(path).is_ok()
        } else {
            std::fs::remove_file(path).is_ok()
        };
        if ok {
            freed += size;
            removed += 1;
        }
    };
    for (path, record) in store.actions()? {
        let needed = record.as_ref().is_ok_and(|r| keys.contains(&r.key));
        if !needed {
            remove(&path);
        }
    }
    for (digest, _) in store.blobs()? {
        if !keep_blobs.contains(&digest) {
            remove(&store.blob_path(&digest));
        }
    }
    for path in store.side_files() {
        if !keep_files.contains(&path) {
            remove(&path);
        }
    }
    store.clear_tmp();
    if !globals.quiet {
        crate::stderr::say!(
            "cache gc: removed {removed} files, freed {}",
            human_bytes(freed)
        );
    }
    Ok(())
}

fn tree_size(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| tree_size(&e.path()))
                    .sum()
            })
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
