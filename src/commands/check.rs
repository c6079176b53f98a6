//! `imgraph check`: validate images.toml without building anything.
//!
//! The loader already collects every problem; this prints each one (file:line:col,
//! a caret snippet, a hint) and a closing count, or a one-line summary when the
//! manifest is valid.

use std::collections::BTreeSet;

use crate::cli::{CheckArgs, Cli};
use crate::error::Error;
use crate::graph::Graph;
use crate::manifest::{self, LoadOptions, ManifestError};

use super::Globals;

pub(super) fn run(cli: &Cli, args: &CheckArgs, globals: &Globals) -> Result<(), Error> {
    let opts = LoadOptions {
        allow_dirty: args.allow_dirty,
        ..LoadOptions::default()
    };
    let manifest = match manifest::load(&cli.file, &opts) {
        Ok(m) => m,
        Err(ManifestError::Invalid(diags)) => {
            for diag in &diags.items {
                eprintln!("error: {}\n", diags.source.render(diag));
            }
            let n = diags.items.len();
            return Err(Error::Usage(format!(
                "{} has {n} problem{}",
                cli.file.display(),
                if n == 1 { "" } else { "s" }
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if globals.quiet {
        return Ok(());
    }
    let images: BTreeSet<&str> = manifest.dists.iter().map(|d| d.image.as_str()).collect();
    let steps = Graph::build(&manifest, &[]).len();
    println!(
        "{} is valid: {}, {}, {}, {} ({})",
        cli.file.display(),
        count(images.len(), "image"),
        count(manifest.dists.len(), "dist"),
        count(manifest.platforms.len(), "platform"),
        count(manifest.registries.len(), "registry"),
        count(steps, "step"),
    );
    Ok(())
}

fn count(n: usize, what: &str) -> String {
    match (n, what) {
        (1, _) => format!("1 {what}"),
        (_, "registry") => format!("{n} registries"),
        _ => format!("{n} {what}s"),
    }
}
