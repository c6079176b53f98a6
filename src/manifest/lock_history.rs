//! `created = "git"` for a `debian` platform: the time of the last commit that
//! changed what the platform is made of, read from the history of `images.lock`.
//!
//! One lock holds every platform, so the last commit touching the file would
//! re-stamp (and re-digest) every arch when one arch's packages move. Instead the
//! platform's entry is compared across the commits that touched the file, newest
//! first, by [`LockedPlatform::made_of`] (its request, which covers its
//! `debian` options in images.toml, and its packages with their sha256): the date
//! is that of the oldest commit of the newest run with the same value. A new
//! InRelease with the same packages, or another platform's update, keeps it.
//!
//! Per run: one `git log`, then one `git show` per commit actually reached, each
//! parsed once and shared by every platform.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::created::{has_commits, Undated};
use super::lock::{Lock, LOCK_FILE};

/// The history of `images.lock`, read lazily and kept for the run.
pub(crate) struct LockHistory {
    root: PathBuf,
    /// The lock in the work tree.
    work: Option<Result<Lock, String>>,
    /// Commits that touched the lock, newest first: (hash, commit time).
    commits: Option<Result<Vec<(String, u64)>, String>>,
    /// The lock at each commit reached (none: absent or unreadable there, which
    /// counts as a different entry).
    at: HashMap<String, Option<Lock>>,
}

impl LockHistory {
    /// Nothing is read until a platform is dated.
    pub(crate) fn new(root: &Path) -> LockHistory {
        LockHistory {
            root: root.to_path_buf(),
            work: None,
            commits: None,
            at: HashMap::new(),
        }
    }

    /// The commit time for `label`. Without `allow_dirty`, an entry that differs
    /// from the one last committed is refused; with it, such an entry is dated
    /// from the newest commit of the lock (as a `dir` source is).
    pub(crate) fn date(&mut self, label: &str, allow_dirty: bool) -> Result<u64, Undated> {
        let root = self.root.clone();
        let work = self
            .work
            .get_or_insert_with(|| Lock::read(&root.join(LOCK_FILE)).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Undated::other(e.clone()))?;
        let Some(current) = work.platforms.get(label).map(|p| p.made_of()) else {
            return Err(Undated {
                message: format!("{LOCK_FILE} has no entry for it"),
                help: format!("run `imgraph lock`, then commit {LOCK_FILE}"),
            });
        };
        let commits = self
            .commits
            .get_or_insert_with(|| lock_commits(&root))
            .clone()
            .map_err(Undated::other)?;
        let Some(newest) = commits.first() else {
            let message = match has_commits(&root)? {
                false => "the git repository has no commits yet".to_string(),
                true => format!("{LOCK_FILE} was never committed"),
            };
            return Err(Undated::never_committed(message, LOCK_FILE));
        };
        let mut date = None;
        for (commit, time) in &commits {
            let lock = self
                .at
                .entry(commit.clone())
                .or_insert_with(|| lock_at(&root, commit));
            let then = lock
                .as_ref()
                .and_then(|l| l.platforms.get(label))
                .map(|p| p.made_of());
            if then.as_ref() != Some(&current) {
                break;
            }
            date = Some(*time);
        }
        match date {
            Some(t) => Ok(t),
            None if allow_dirty => Ok(newest.1),
            None => Err(Undated::dirty(
                format!("uncommitted changes to its entry in {LOCK_FILE}"),
                LOCK_FILE,
            )),
        }
    }
}

/// `git log` of the lock: (hash, commit time), newest first; none in a
/// repository without commits yet.
fn lock_commits(root: &Path) -> Result<Vec<(String, u64)>, String> {
    // A new repository has no HEAD, and `git log` fails rather than print nothing.
    if !crate::git::has_commits(root)? {
        return Ok(Vec::new());
    }
    let log = crate::git::stdout(root, &["log", "--format=%H %ct", "--", LOCK_FILE])?;
    log.lines()
        .map(|line| {
            let (hash, time) = line.split_once(' ').unwrap_or((line, ""));
            time.parse()
                .map(|t| (hash.to_string(), t))
                .map_err(|_| format!("git printed {time:?} as a commit time"))
        })
        .collect()
}

/// The lock as `commit` has it (`./` makes the path relative to the project
/// folder, wherever the repository's top is).
fn lock_at(root: &Path, commit: &str) -> Option<Lock> {
    let out = crate::git::output(root, &["show", &format!("{commit}:./{LOCK_FILE}")])
        .ok()
        .filter(|o| o.status.success())?;
    Lock::parse(&String::from_utf8_lossy(&out.stdout), Path::new(LOCK_FILE)).ok()
}
