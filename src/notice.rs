//! Notices the library prints on its own (a skipped socket, a wait for the cache
//! lock): one switch, set from `-q`, so "print nothing but errors" holds for them
//! too, as cargo's `-q` hides "Blocking waiting for file lock".

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences [`notice`] for the rest of the process.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Prints a line on stderr unless `-q` was given.
pub fn notice(line: &str) {
    if !QUIET.load(Ordering::Relaxed) {
        crate::stderr::say!("{line}");
    }
}
