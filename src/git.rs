//! Running git in the project's folder (`created = "git"`, the lock's history,
//! `imgraph library`): one way to spawn it and to read what it said.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `git -C dir ARGS`; `Err` when git cannot be run at all.
pub(crate) fn output(dir: &Path, args: &[&str]) -> Result<Output, String> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))
}

/// What `git -C dir ARGS` printed, trimmed; `Err` naming the command and git's
/// own message when it failed.
pub(crate) fn stdout(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = output(dir, args)?;
    if !out.status.success() {
        return Err(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether the repository around `dir` has a commit yet (`git log` fails in a
/// new one rather than print nothing).
pub(crate) fn has_commits(dir: &Path) -> Result<bool, String> {
    output(dir, &["rev-parse", "--verify", "-q", "HEAD"]).map(|out| out.status.success())
}
