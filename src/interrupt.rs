//! Ctrl-C (SIGINT) and SIGTERM: stop at once, but say so.
//!
//! Stopping at any moment is already safe (every cache write is atomic, `out/`
//! layouts are swapped in whole: the kill -9 tests show it), so there is nothing
//! to wind down; what was missing is a word. A watcher thread (signal-hook: the
//! crate forbids the `unsafe` of a handler of its own) kills the process groups of
//! running `command` rootfs builders, which run in groups of their own and so miss
//! the terminal's Ctrl-C, then says what was interrupted and that a re-run
//! resumes, and exits 128 + the signal (130 for SIGINT), as a shell reports it.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Steps in progress (by id, with how many evaluations of it run), for the message.
static RUNNING: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
/// Process groups of running child commands, killed on the way out.
static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Starts watching for SIGINT and SIGTERM; `command` names what runs
/// (`imgraph build`) in the message. A failure to watch is not worth failing
/// the command for: the signal then ends imgraph as it always did.
pub fn install(command: String) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                stop(&command, signal);
            }
        });
}

/// Kills what runs, says what stopped, exits.
fn stop(command: &str, signal: i32) -> ! {
    for group in lock(&GROUPS).drain(..) {
        kill_group(group);
    }
    let running: Vec<String> = lock(&RUNNING).keys().cloned().collect();
    let how = if signal == signal_hook::consts::SIGTERM {
        "terminated"
    } else {
        "interrupted"
    };
    let during = match running.len() {
        0 => String::new(),
        _ => format!(" while running {}", running.join(", ")),
    };
    // On a terminal, off the line the progress bars (or the ^C echo) were on.
    let lead = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        "\n"
    } else {
        ""
    };
    crate::stderr::say!(
        "{lead}{command} {how}{during}; every step that finished is cached: run it again to resume from there"
    );
    std::process::exit(128 + signal);
}

/// Notes that `step` started; [`finished`] undoes it.
pub fn started(step: &str) {
    *lock(&RUNNING).entry(step.to_string()).or_default() += 1;
}

/// Notes that `step` ended, however.
pub fn finished(step: &str) {
    let mut running = lock(&RUNNING);
    if let Some(n) = running.get_mut(step) {
        *n -= 1;
        if *n == 0 {
            running.remove(step);
        }
    }
}

/// A child's process group, killed if imgraph is interrupted while the guard lives.
pub struct ChildGroup(u32);

impl ChildGroup {
    /// Registers the group led by `pid` (a child spawned with `process_group(0)`).
    pub fn new(pid: u32) -> ChildGroup {
        lock(&GROUPS).push(pid);
        ChildGroup(pid)
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        lock(&GROUPS).retain(|g| *g != self.0);
    }
}

/// SIGKILL to every process of the group `pgid` (through kill(1): no `unsafe`).
pub fn kill_group(pgid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
