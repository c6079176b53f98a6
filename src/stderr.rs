//! Standard error, where imgraph says what it is doing (progress, notices,
//! summaries) and what went wrong, written so that a reader who stops early
//! (`imgraph build 2>&1 | head -1`) never crashes imgraph.
//!
//! Rust ignores SIGPIPE, so `eprintln!` to a pipe whose reader is gone panics
//! (exit 101) in the middle of a build. Stderr is the side channel: when nobody
//! reads it any more there is nobody left to tell, so [`say!`] drops the line and
//! the command carries on; its exit status still says how it ended. (A closed
//! *stdout* ends the command instead, see [`crate::stdout`]: there the output is
//! the result.) `clippy::print_stderr` is denied crate-wide so nothing else
//! writes stderr behind this module's back.

use std::io::{self, Write};

/// Writes `text` and a newline to stderr in one write; a write that fails (the
/// reader went away, a full disk behind `2>file`) is dropped.
pub fn line(text: &str) {
    let mut err = io::stderr().lock();
    let mut buf = Vec::with_capacity(text.len() + 1);
    buf.extend_from_slice(text.as_bytes());
    buf.push(b'\n');
    let _ = err.write_all(&buf);
    let _ = err.flush();
}

/// `eprintln!` that never panics: formats its arguments and writes them through
/// [`line`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::stderr::line(&::std::format!($($arg)*))
    };
}
pub(crate) use say;

#[cfg(test)]
mod tests {
    /// The macro formats like `eprintln!` (and does not panic when stderr is
    /// fine; the closed-pipe case is tested with the real binary in tests/).
    #[test]
    fn say_formats() {
        let n = 3;
        super::say!("{n} lines, {}", "said");
        super::say!("");
    }
}
