//! Progress: bars on a terminal, one plain line per executed step elsewhere,
//! nothing with `-q`. Everything goes to stderr; stdout is for `--json`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Outcome, Status};

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
        Progress { display, verbose }
    }

    /// Reports nothing (plan, tests).
    pub fn quiet() -> Self {
        Progress {
            display: Display::Quiet,
            verbose: false,
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
                    eprintln!(
                        "  built {step} in {:.2}s{}",
                        o.elapsed.as_secs_f64(),
                        cut_off_note(step, o)
                    );
                } else if outcome.is_none() {
                    eprintln!("  FAILED {step}");
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
            Display::Plain => eprintln!("{line}"),
            Display::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
        }
    }
}

/// Early cutoff made visible: the step ran but its output is what it was.
fn cut_off_note(step: &str, o: &Outcome) -> &'static str {
    match (o.cut_off, step.starts_with("rootfs:")) {
        (false, _) => "",
        (true, true) => " (rootfs content unchanged: everything below stays fresh)",
        (true, false) => " (output unchanged)",
    }
}
