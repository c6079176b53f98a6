//! `imgraph lock`: pin every package of every `debian` rootfs in `images.lock`,
//! move the pins (`--update`), or check the lock covers the manifest (`--check`).

use serde_json::json;

use crate::cache::Store;
use crate::cli::LockArgs;
use crate::error::Error;
use crate::exec::lock::{lock, LockOptions, OnBytes};

use super::{Globals, Project};

pub(super) fn run(project: &Project, args: &LockArgs, globals: &Globals) -> Result<(), Error> {
    if args.check {
        return check(project, globals);
    }
    let store = Store::open(&project.cache_dir)?;
    let verbose = globals.verbose;
    let say = move |line: &str| {
        if verbose {
            crate::stderr::say!("{line}");
        }
    };
    // On a terminal, one line counting the bytes fetched from the archives.
    let bar = (!globals.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} fetching from the archive: {bytes} ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let on_bytes: Option<OnBytes> = bar
        .clone()
        .map(|b| std::sync::Arc::new(move |n: u64| b.inc(n)) as OnBytes);
    let result = lock(
        &project.manifest,
        &project.selectors,
        &store,
        &LockOptions {
            update: args.update,
            allow_expired: args.allow_expired,
            allow_downgrade: args.allow_downgrade,
        },
        &say,
        on_bytes,
    );
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = result?;
    if args.json {
        let doc = json!({ "changed": report.changed, "repaired": report.repaired });
        crate::stdout::println(&serde_json::to_string_pretty(&doc).unwrap_or_default())?;
    }
    if globals.quiet {
        return Ok(());
    }
    let lock_path = project.manifest.lock_path();
    for c in &report.changed {
        let label = format!("{}:{}/{}", c.image, c.dist, c.arch);
        let change = match (&c.old, &c.new) {
            (Some(o), Some(n)) => format!("{} {o} -> {n}", c.package),
            (None, Some(n)) => format!("+ {} {n}", c.package),
            (Some(_), None) => format!("- {}", c.package),
            (None, None) => c.package.clone(),
        };
        crate::stderr::say!("{label}  {change}");
    }
    for label in &report.repaired {
        crate::stderr::say!("repaired {label}: its entry no longer matched its digest (edited by hand?); resolved again");
    }
    if !report.bound.is_empty() {
        crate::stderr::say!(
            "bound {} entr{} written by an older imgraph (lock format 1) to their own packages",
            report.bound.len(),
            if report.bound.len() == 1 { "y" } else { "ies" }
        );
    }
    let had_entry = |label: &str| project.manifest.lock.platforms.contains_key(label);
    for (label, n) in &report.resolved {
        if !had_entry(label) {
            crate::stderr::say!("locked {label}: {n} packages");
        }
    }
    if report.written {
        crate::stderr::say!("wrote {}", lock_path.display());
    } else if args.update {
        crate::stderr::say!(
            "nothing changed: {} is up to date with the archives",
            lock_path.display()
        );
    } else {
        crate::stderr::say!(
            "{} already covers every debian platform",
            lock_path.display()
        );
    }
    Ok(())
}

/// No network: does the lock cover every debian platform as the manifest now
/// describes it?
fn check(project: &Project, globals: &Globals) -> Result<(), Error> {
    let unlocked = project.unlocked();
    if !unlocked.is_empty() {
        return Err(Error::LockIncomplete {
            lock: project.manifest.lock_path(),
            platforms: unlocked,
        });
    }
    if !globals.quiet {
        crate::stderr::say!(
            "{} covers every debian platform of {}",
            project.manifest.lock_path().display(),
            project.manifest.source.path.display()
        );
    }
    Ok(())
}
