//! Standard output, where the commands put their results (plan lines, `--json`
//! documents, dot, schemas, tarballs), written so that a reader who stops early
//! ends imgraph quietly instead of crashing it.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader is gone (`imgraph graph
//! | head -1`) fails with `BrokenPipe`, and `println!` turns that into a panic (exit
//! 101). Every command writes stdout through [`print`] instead, which reports a
//! closed stdout as [`StdoutError::Closed`]; the top renders that as nothing and
//! exits 0, as `cat` ends when its reader does. (Restoring SIGPIPE's default would
//! need `unsafe`, which this crate forbids.) `clippy::print_stdout` is denied
//! crate-wide so nothing else writes stdout behind this module's back.

use std::io::{self, Write};

/// Writing to standard output failed.
#[derive(Debug, thiserror::Error)]
pub enum StdoutError {
    /// The reader went away (EPIPE): a normal end, not a failure.
    #[error("standard output was closed by its reader")]
    Closed,
    /// Anything else (a full disk behind a redirect, ...): a real failure.
    #[error("writing to standard output: {0}")]
    Io(#[source] io::Error),
}

impl From<io::Error> for StdoutError {
    fn from(e: io::Error) -> Self {
        if is_closed_pipe(&e) {
            StdoutError::Closed
        } else {
            StdoutError::Io(e)
        }
    }
}

/// Whether an I/O error means the reader of a pipe went away.
pub fn is_closed_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Writes `text` to stdout and flushes it.
pub fn print(text: &str) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Writes `text` and a newline to stdout.
pub fn println(text: &str) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}
