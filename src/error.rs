//! The one error type the commands return, rendered once at the top with its exit
//! status: 2 for bad input (manifest, selector, flags), 1 for a failed build or push.

use std::path::PathBuf;

use crate::cache::CacheError;
use crate::exec::StepFailure;
use crate::manifest::{ManifestError, SelectorError};
use crate::oci::docker_archive::ArchiveError;
use crate::oci::layout::LayoutError;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `images.toml` is unreadable or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A selector names nothing.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// Flags that do not fit together.
    #[error("{0}")]
    Usage(String),
    /// The cache folder.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// `[settings] sign`: the key is missing, unreadable, not P-256, or the
    /// password does not open it.
    #[error(transparent)]
    Sign(#[from] crate::sign::KeyError),
    /// Steps failed; each is named.
    #[error("{}", render_failures(.0))]
    Steps(Vec<StepFailure>),
    /// `imgraph build` failed: each failed step, and how much did not run.
    #[error("{}{}", render_failures(failures), render_not_run(failures.len(), *skipped, *not_started))]
    Build {
        /// Every failed step.
        failures: Vec<StepFailure>,
        /// Steps that did not run because a step they depend on failed.
        skipped: usize,
        /// Steps that depend on no failure but never started (no `--keep-going`).
        not_started: usize,
    },
    /// Writing an OCI layout.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Writing a docker archive.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// `verify --pushed`: what the registries serve is not what was built.
    #[error(transparent)]
    Pushed(#[from] crate::exec::verify_pushed::PushedMismatch),
    /// A read-only cache lacks a step the command needs.
    #[error("{0}")]
    NotBuilt(String),
    /// The cache registry (its credentials, or a blob fetched from it).
    #[error("{0}")]
    Remote(String),
    /// `verify --pushed` found nothing to read back.
    #[error("nothing to verify: no selected image has registries")]
    NothingPushed,
    /// `verify --reproducible`: two clean builds differ.
    #[error("not reproducible: {} of {compared} digests differ between two clean builds:{}", differences.len(), render_differences(differences))]
    NotReproducible {
        /// Digests compared.
        compared: usize,
        /// Each step whose output differs.
        differences: Vec<Difference>,
    },
    /// `cache verify` found corrupt blobs or entries in a cache it may not write.
    #[error("the cache had {} problem(s), not repaired: the cache is read-only here; run `imgraph cache verify` as a user who can write it to drop them:\n  {}", problems.len(), problems.join("\n  "))]
    CacheProblems {
        /// One line per blob or entry.
        problems: Vec<String>,
    },
    /// `cache verify` found (and dropped) corrupt blobs or entries.
    #[error("the cache had {} problem(s), now repaired (the next build rebuilds what was dropped):\n  {}", problems.len(), problems.join("\n  "))]
    CacheRepaired {
        /// One line per blob or entry dropped.
        problems: Vec<String>,
    },
    /// `debian` platforms that `images.lock` does not cover as they are now.
    #[error("{}: run `imgraph lock` to update {}{}", platforms[0], lock.display(), match platforms.len() { 1 => String::new(), n => format!(" ({} more platforms too)", n - 1) })]
    Unlocked {
        /// The lock file.
        lock: PathBuf,
        /// Each label and what is wrong with its entry (`L has no entry`).
        platforms: Vec<String>,
    },
    /// `lock --check`: the lock does not cover the manifest (a finding, not bad input).
    #[error("{} does not cover {} debian platform(s) as images.toml now describes them: {}; run `imgraph lock`", lock.display(), platforms.len(), platforms.join("; "))]
    LockIncomplete {
        /// The lock file.
        lock: PathBuf,
        /// Each missing, stale, unbound or edited platform and what is wrong.
        platforms: Vec<String>,
    },
    /// `imgraph lock` failed.
    #[error(transparent)]
    Lock(#[from] crate::exec::lock::LockFailure),
    /// Standard output: closed by its reader (a quiet end), or failing.
    #[error(transparent)]
    Stdout(#[from] crate::stdout::StdoutError),
    /// `imgraph library`: a layout folder is missing, uncommitted or not in git.
    #[error(transparent)]
    Library(#[from] crate::exec::library::LibraryError),
    /// A file outside the cache.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<crate::exec::build::BuildError> for Error {
    fn from(e: crate::exec::build::BuildError) -> Self {
        use crate::exec::build::BuildError;
        match e {
            BuildError::Cache(e) => Error::Cache(e),
            BuildError::Layout(e) => Error::Layout(e),
            BuildError::Steps(f) => Error::Steps(f),
            e @ (BuildError::Credentials(_) | BuildError::Remote(_)) => {
                Error::Remote(e.to_string())
            }
            e @ BuildError::NotBuilt { .. } => Error::NotBuilt(e.to_string()),
        }
    }
}

impl From<crate::exec::verify_pushed::VerifyPushedError> for Error {
    fn from(e: crate::exec::verify_pushed::VerifyPushedError) -> Self {
        use crate::exec::verify_pushed::VerifyPushedError;
        match e {
            VerifyPushedError::Build(e) => e.into(),
            VerifyPushedError::Mismatch(e) => Error::Pushed(e),
            VerifyPushedError::NothingToVerify => Error::NothingPushed,
        }
    }
}

impl Error {
    /// Whether a cache blob failed its digest check (and was dropped).
    pub fn is_corrupt_blob(&self) -> bool {
        let corrupt = |e: &CacheError| matches!(e, CacheError::DigestMismatch { .. });
        match self {
            Error::Cache(e)
            | Error::Layout(LayoutError::Cache(e))
            | Error::Archive(ArchiveError::Cache(e)) => corrupt(e),
            Error::Steps(failures) | Error::Build { failures, .. } => {
                failures.iter().any(StepFailure::is_corrupt_blob)
            }
            _ => false,
        }
    }

    /// Whether the reader of standard output went away (`| head -1`): the command
    /// stopped early on purpose of its reader, and imgraph ends quietly with 0.
    pub fn is_closed_stdout(&self) -> bool {
        use crate::stdout::{is_closed_pipe, StdoutError};
        match self {
            Error::Stdout(StdoutError::Closed) => true,
            Error::Archive(ArchiveError::Io { source, .. }) => is_closed_pipe(source),
            _ => false,
        }
    }

    /// 0 for a closed stdout, 2 for bad input, 1 for everything that went wrong
    /// while working.
    pub fn exit_code(&self) -> i32 {
        if self.is_closed_stdout() {
            return 0;
        }
        match self {
            Error::Manifest(_) | Error::Selector(_) | Error::Usage(_) | Error::NothingPushed => 2,
            Error::Layout(e) if e.is_bad_input() => 2,
            Error::Unlocked { .. } | Error::Sign(_) => 2,
            Error::Lock(e) if e.is_bad_input() => 2,
            Error::Archive(ArchiveError::IsAFolder { .. }) => 2,
            _ => 1,
        }
    }
}

/// One step whose output differs between two clean builds.
#[derive(Debug)]
pub struct Difference {
    /// The step id.
    pub step: String,
    /// Its output digest in the first build.
    pub first: String,
    /// And in the second.
    pub second: String,
    /// For a layer: the files that differ (at most 20).
    pub files: Vec<String>,
}

fn render_differences(differences: &[Difference]) -> String {
    let mut out = String::new();
    for d in differences {
        out.push_str(&format!("\n  {}: {} != {}", d.step, d.first, d.second));
        if !d.files.is_empty() {
            out.push_str(&format!("\n    differing files: {}", d.files.join(", ")));
        }
    }
    out
}

fn render_failures(failures: &[StepFailure]) -> String {
    let mut out = match failures.len() {
        1 => String::from("1 step failed:"),
        n => format!("{n} steps failed:"),
    };
    for f in failures {
        out.push_str(&format!(
            "\n  {}: {}",
            f.step,
            with_causes(&f.error, "    ")
        ));
    }
    out
}

/// What a failed build did not run: the steps below the failures, and those the
/// build never started because it stopped at the first failure.
fn render_not_run(failed: usize, skipped: usize, not_started: usize) -> String {
    let them = if failed == 1 { "it" } else { "them" };
    let mut out = String::new();
    if skipped > 0 {
        out.push_str(&format!(
            "\n{} that depend{} on {them} skipped",
            steps(skipped),
            if skipped == 1 { "s" } else { "" }
        ));
    }
    if not_started > 0 {
        out.push_str(&format!(
            "\n{} not started: the build stopped at the first failure (--keep-going builds everything that does not depend on one)",
            steps(not_started)
        ));
    }
    out
}

fn steps(n: usize) -> String {
    match n {
        1 => "1 step".to_string(),
        n => format!("{n} steps"),
    }
}

/// An error's message and then a `caused by:` line for each error in its `source()`
/// chain, so the OS reason (`Permission denied`) reaches the user even where the
/// message only names the file. A cause whose text the lines so far already show is
/// left out: many messages embed their source (`writing x: No space left on device`).
pub fn with_causes(err: &dyn std::error::Error, indent: &str) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(&format!("\n{indent}caused by: {text}"));
        }
        cause = c.source();
    }
    out
}
