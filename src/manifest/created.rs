//! The `created` time: fixed, from `SOURCE_DATE_EPOCH`, or from git history per
//! platform, so that one arch's change does not re-stamp the others.

use std::path::Path;
use std::time::UNIX_EPOCH;

use super::lock_history::LockHistory;
use super::model::{CreatedSpec, RootfsSource};

/// Parses the `created` setting.
pub(crate) fn parse_setting(value: &str) -> Result<CreatedSpec, String> {
    match value {
        "git" => Ok(CreatedSpec::Git),
        "source-date-epoch" => {
            let raw = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| "SOURCE_DATE_EPOCH is not set".to_string())?;
            raw.trim()
                .parse()
                .map(CreatedSpec::Fixed)
                .map_err(|_| format!("SOURCE_DATE_EPOCH={raw:?} is not a whole number of seconds"))
        }
        other => humantime::parse_rfc3339(other)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                t.duration_since(UNIX_EPOCH)
                    .map_err(|_| "before 1970".to_string())
            })
            .map(|d| CreatedSpec::Fixed(d.as_secs())),
    }
}

/// Formats seconds since the epoch as RFC 3339 UTC, the way OCI configs carry it.
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// Whether `root` is outside any git work tree (git runs and says so). `false` when
/// git cannot run: the per-platform `git log` then reports that.
pub(crate) fn outside_git(root: &Path) -> bool {
    crate::git::output(root, &["rev-parse", "--is-inside-work-tree"]).is_ok_and(|out| {
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("not a git repository")
    })
}

/// Why a platform has no git date, and what the user can do about it: the help
/// differs, since `--allow-dirty` fixes uncommitted changes but cannot date a
/// platform when there is no commit to date it from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Undated {
    pub(crate) message: String,
    pub(crate) help: String,
}

/// What else `created` can be, for the helps that cannot say `--allow-dirty`.
const OTHER_CREATED: &str =
    "set `created` to a date (\"2024-06-01T00:00:00Z\") or to \"source-date-epoch\"";

impl Undated {
    /// `what` has changes git has not committed: commit them, or date from the
    /// last commit anyway.
    pub(crate) fn dirty(message: String, what: &str) -> Undated {
        Undated {
            message,
            help: format!("commit {what}, or pass --allow-dirty"),
        }
    }

    /// No commit holds `what` (a new repository, a file never committed):
    /// `--allow-dirty` has nothing to date from.
    pub(crate) fn never_committed(message: String, what: &str) -> Undated {
        Undated {
            message,
            help: format!(
                "commit {what} first (--allow-dirty needs a commit to date from), or {OTHER_CREATED}"
            ),
        }
    }

    /// Git cannot say (not installed, printed nonsense, ...).
    pub(crate) fn other(message: String) -> Undated {
        Undated {
            message,
            help: format!("{OTHER_CREATED} to build without git"),
        }
    }
}

/// Whether the repository around `root` has a commit yet (`git log` fails in a
/// new one rather than print nothing).
pub(crate) fn has_commits(root: &Path) -> Result<bool, Undated> {
    crate::git::has_commits(root).map_err(Undated::other)
}

/// The commit time of the newest commit touching a platform's inputs: its
/// folder, tarball or `inputs`, or for a `debian` platform the last commit that
/// changed its own entry in `images.lock` (`history`, shared by the run's platforms).
pub(crate) fn git_time(
    root: &Path,
    source: &RootfsSource,
    label: &str,
    allow_dirty: bool,
    history: &mut Option<LockHistory>,
) -> Result<u64, Undated> {
    let paths: Vec<String> = match source {
        RootfsSource::Dir { shown, .. } | RootfsSource::Tar { shown, .. } => vec![shown.clone()],
        RootfsSource::Command { inputs, .. } => {
            inputs.iter().map(|(_, shown)| shown.clone()).collect()
        }
        // Not the whole lock: one arch's update would re-stamp every arch.
        RootfsSource::Debian(_) => {
            return history
                .get_or_insert_with(|| LockHistory::new(root))
                .date(label, allow_dirty)
        }
    };
    if paths.is_empty() {
        return Err(Undated {
            message: "a command rootfs needs `inputs` to date it from git".into(),
            help: format!("list the files the command reads in `inputs`, or {OTHER_CREATED}"),
        });
    }
    let what = paths.join(", ");
    if !has_commits(root)? {
        return Err(Undated::never_committed(
            "the git repository has no commits yet".into(),
            &what,
        ));
    }
    let git = |args: &[&str]| -> Result<String, Undated> {
        let mut all = args.to_vec();
        all.push("--");
        all.extend(paths.iter().map(String::as_str));
        crate::git::stdout(root, &all).map_err(Undated::other)
    };
    let time = git(&["log", "-1", "--format=%ct"])?;
    if time.is_empty() {
        return Err(Undated::never_committed(
            format!("no commit touches {what}"),
            &what,
        ));
    }
    if !allow_dirty {
        let status = git(&["status", "--porcelain", "--untracked-files=all"])?;
        if let Some(line) = status.lines().next() {
            return Err(Undated::dirty(
                format!("uncommitted changes: {}", line.trim()),
                &what,
            ));
        }
    }
    time.parse()
        .map_err(|_| Undated::other(format!("git printed {time:?} as a commit time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_formats_back() {
        assert_eq!(
            parse_setting("2024-06-01T00:00:00Z"),
            Ok(CreatedSpec::Fixed(1_717_200_000))
        );
        assert_eq!(rfc3339(1_717_200_000), "2024-06-01T00:00:00Z");
        assert!(parse_setting("yesterday").is_err());
        assert_eq!(parse_setting("git"), Ok(CreatedSpec::Git));
    }
}
