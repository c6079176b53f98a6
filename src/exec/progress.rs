//! Progress: bars on a terminal, one plain line per executed step elsewhere,
//! nothing with `-q`. Everything goes to stderr; stdout is for `--json`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Outcome, Status};
use crate::debian::debs::MirrorSet;

enum Display {
    Quiet,
    Plain,
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        running: Mutex<HashMap<String, ProgressBar>>,
    },
}

/// How a run reports its progress.
pub struct Progress {
    display: Display,
    verbose: bool,
    /// Byte bars for downloads and uploads (off with `--json`: nothing extra).
    transfers: bool,
}

impl Progress {
    /// Picks bars, plain lines or nothing from the flags and whether stderr is a terminal.
    pub fn new(quiet: bool, verbose: bool, color: bool) -> Self {
        let display = if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() && !verbose {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(if color {
                "{spinner:.green} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps {msg}"
            } else {
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps {msg}"
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let overall = multi.add(ProgressBar::new(0).with_style(style));
            overall.enable_steady_tick(Duration::from_millis(120));
            Display::Bars {
                multi,
                overall,
                running: Mutex::default(),
            }
        } else {
            Display::Plain
        };
        Progress {
            display,
            verbose,
            transfers: true,
        }
    }

    /// No byte bars for transfers (`--json`: the steps' bars stay, nothing is added).
    pub fn without_transfers(mut self) -> Self {
        self.transfers = false;
        self
    }

    /// A transfer's byte bar, shown once [`Transfer::start`] is called: only on a
    /// terminal (never with `-q`, `--json`, or when stderr is not one).
    pub(crate) fn transfer(&self) -> Transfer {
        let multi = match &self.display {
            Display::Bars { multi, .. } if self.transfers => Some(multi.clone()),
            _ => None,
        };
        Transfer {
            multi,
            bar: Mutex::new(None),
        }
    }

    /// Reports nothing (plan, tests).
    pub fn quiet() -> Self {
        Progress {
            display: Display::Quiet,
            verbose: false,
            transfers: false,
        }
    }

    /// Whether `-v` was given: command output is streamed.
    pub fn verbose(&self) -> bool {
        self.verbose
    }

    pub(crate) fn begin(&self, total: usize) {
        if let Display::Bars { overall, .. } = &self.display {
            overall.set_length(total as u64);
        }
    }

    pub(crate) fn start(&self, step: &str) {
        crate::interrupt::started(step);
        if let Display::Bars { multi, running, .. } = &self.display {
            let bar = multi.add(ProgressBar::new_spinner().with_message(step.to_string()));
            bar.enable_steady_tick(Duration::from_millis(120));
            running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(step.to_string(), bar);
        }
    }

    pub(crate) fn finish(&self, step: &str, outcome: Option<&Outcome>) {
        crate::interrupt::finished(step);
        let executed = outcome.filter(|o| o.status == Status::Executed);
        match &self.display {
            Display::Quiet => {}
            Display::Plain => {
                if let Some(o) = executed {
                    crate::stderr::say!(
                        "  built {step} in {:.2}s{}",
                        o.elapsed.as_secs_f64(),
                        cut_off_note(step, o)
                    );
                } else if outcome.is_none() {
                    crate::stderr::say!("  FAILED {step}");
                }
            }
            Display::Bars {
                multi,
                overall,
                running,
            } => {
                if let Some(bar) = running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(step)
                {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                if let Some(o) = executed {
                    let _ =
                        multi.println(format!("  built {step} in {:.2}s", o.elapsed.as_secs_f64()));
                }
                overall.inc(1);
            }
        }
    }

    pub(crate) fn end(&self) {
        if let Display::Bars { overall, .. } = &self.display {
            overall.finish_and_clear();
        }
    }

    /// Prints a line that does not break the bars.
    pub fn println(&self, line: &str) {
        match &self.display {
            Display::Quiet => {}
            Display::Plain => crate::stderr::say!("{line}"),
            Display::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
        }
    }
}

/// Transfers smaller than this get no bar (configs, manifests, signatures).
pub(crate) const TRANSFER_MIN: u64 = 1 << 20;

/// One download or upload on a terminal: a bar with bytes, total and rate while
/// it runs (a 20 s download of `.deb`s or a layer upload is not a bare spinner),
/// then one line saying how much moved how fast. Inert elsewhere; usable from
/// the fetching threads.
pub(crate) struct Transfer {
    multi: Option<MultiProgress>,
    /// The bar and what it moves (`42 .debs for minideb:bookworm/amd64`), once started.
    bar: Mutex<Option<(ProgressBar, String, Instant)>>,
}

impl Transfer {
    /// Shows the bar: `verb` (`fetching`) `what`, `total` bytes expected.
    pub(crate) fn start(&self, verb: &str, what: String, total: u64) {
        let Some(multi) = &self.multi else { return };
        let style = ProgressStyle::with_template(&format!(
            "{{spinner}} {verb} {{msg}}: {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left)"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = multi.add(ProgressBar::new(total).with_style(style));
        bar.set_message(what.clone());
        bar.enable_steady_tick(Duration::from_millis(120));
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some((bar, what, Instant::now()));
    }

    /// `n` more bytes moved.
    pub(crate) fn inc(&self, n: u64) {
        if let Some((bar, _, _)) = &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            bar.inc(n);
        }
    }

    /// `n` bytes moved so far.
    pub(crate) fn set(&self, n: u64) {
        if let Some((bar, _, _)) = &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            bar.set_position(n);
        }
    }

    /// Removes the bar and prints `  {done} {what}: BYTES in SECS (RATE/s)`.
    pub(crate) fn finish(&self, done: &str) {
        let taken = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (Some(multi), Some((bar, what, started))) = (&self.multi, taken) else {
            return;
        };
        let bytes = bar.position();
        bar.finish_and_clear();
        multi.remove(&bar);
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            (bytes as f64 / secs) as u64
        } else {
            bytes
        };
        let _ = multi.println(format!(
            "  {done} {what}: {} in {secs:.1}s ({}/s)",
            HumanBytes(bytes),
            HumanBytes(rate)
        ));
    }
}

impl Drop for Transfer {
    /// A transfer that failed or was abandoned: its bar goes, with no line.
    fn drop(&mut self) {
        let taken = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some(multi), Some((bar, _, _))) = (&self.multi, taken) {
            bar.finish_and_clear();
            multi.remove(&bar);
        }
    }
}

/// Counts what is written through it into a [`Transfer`].
pub(crate) struct Counting<'a, W: ?Sized> {
    /// Where the bytes go.
    pub inner: &'a mut W,
    /// Told how many.
    pub transfer: &'a Transfer,
}

impl<W: std::io::Write + ?Sized> std::io::Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.transfer.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The mirrors a debian rootfs step fetches its `.deb`s with, reporting to a
/// byte bar for `platform` (`minideb:bookworm/amd64`); finish the transfer after.
pub(crate) fn deb_mirrors(progress: &Progress, platform: &str) -> (MirrorSet, Arc<Transfer>) {
    let transfer = Arc::new(progress.transfer());
    let (on_start, on_bytes) = (transfer.clone(), transfer.clone());
    let platform = platform.to_string();
    let mirrors = MirrorSet::new()
        .with_start(move |count, bytes| {
            let what = match count {
                1 => format!("1 .deb for {platform}"),
                n => format!("{n} .debs for {platform}"),
            };
            on_start.start("fetching", what, bytes);
        })
        .with_progress(move |n| on_bytes.inc(n));
    (mirrors, transfer)
}

/// Early cutoff made visible: the step ran but its output is what it was.
fn cut_off_note(step: &str, o: &Outcome) -> &'static str {
    match (o.cut_off, step.starts_with("rootfs:")) {
        (false, _) => "",
        (true, true) => " (rootfs content unchanged: everything below stays fresh)",
        (true, false) => " (output unchanged)",
    }
}
