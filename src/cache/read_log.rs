//! A count of verified blob reads, for tests: with `IMGRAPH_DEBUG_BLOB_READS=FILE`
//! set, every read of a cache blob checked against its digest (whole, streamed
//! or decoded) appends one line `<digest> <step>` to FILE (`-` when no step is
//! running, e.g. the export to `out/`), so a test can say which step read which
//! blob how often (the sbom step must read no layer). Unset, it costs one cached
//! environment lookup and nothing is written.

use std::cell::RefCell;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The environment variable naming the log file.
pub const ENV: &str = "IMGRAPH_DEBUG_BLOB_READS";

fn target() -> Option<&'static PathBuf> {
    static TARGET: OnceLock<Option<PathBuf>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            std::env::var_os(ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .as_ref()
}

thread_local! {
    /// The step running on this thread, for the log lines.
    static STEP: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` as step `step` (its reads are logged under its id).
pub fn in_step<T>(step: &str, f: impl FnOnce() -> T) -> T {
    if target().is_none() {
        return f();
    }
    let old = STEP.with(|s| s.replace(Some(step.to_owned())));
    let out = f();
    STEP.with(|s| *s.borrow_mut() = old);
    out
}

/// Notes one verified read of `digest`. Best effort: a debugging aid never fails
/// a build. One `write` of a short line to a file opened for appending, so lines
/// from parallel steps do not interleave.
pub(super) fn note(digest: &str) {
    let Some(path) = target() else { return };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let step = STEP
            .with(|s| s.borrow().clone())
            .unwrap_or_else(|| "-".into());
        let _ = f.write_all(format!("{digest} {step}\n").as_bytes());
    }
}
