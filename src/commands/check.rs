//! `imgraph check`: validate images.toml without building anything.
//!
//! The loader already collects every problem; this prints each one (file:line:col,
//! a caret snippet, a hint) and a closing count, or a one-line summary when the
//! manifest is valid.

use std::collections::BTreeSet;

use crate::cli::{CheckArgs, Cli};
use crate::error::Error;
use crate::graph::Graph;
use crate::manifest::{self, Diagnostic, LoadOptions, Manifest, ManifestError};
use crate::sign::{KeyProblem, PASSWORD_ENV};

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
                crate::stderr::say!("error: {}\n", diags.source.render(diag));
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
    // What the flags and the environment add to the manifest is checked too:
    // `--cache-registry` / IMGRAPH_CACHE_REGISTRY would fail every build.
    super::cache_registry(cli, &manifest)?;
    check_sign_key(cli, &manifest, globals)?;
    if globals.quiet {
        return Ok(());
    }
    let images: BTreeSet<&str> = manifest.dists.iter().map(|d| d.image.as_str()).collect();
    let steps = Graph::build(&manifest, &[]).len();
    crate::stdout::println(&format!(
        "{} is valid: {}, {}, {}, {} ({})",
        cli.file.display(),
        count(images.len(), "image"),
        count(manifest.dists.len(), "dist"),
        count(manifest.platforms.len(), "platform"),
        count(manifest.registries.len(), "registry"),
        count(steps, "step"),
    ))?;
    Ok(())
}

/// `[settings] sign`: the key file must exist and hold an ECDSA P-256 key, as
/// `build --push` will need it (it refuses a bad key before building anything;
/// `check` says so before CI gets there). An encrypted key is opened only when
/// IMGRAPH_SIGNING_PASSWORD is set: the password belongs to the pushing machine's
/// environment, not to images.toml, so its absence here is a note, not a problem.
fn check_sign_key(cli: &Cli, manifest: &Manifest, globals: &Globals) -> Result<(), Error> {
    let Some(spec) = &manifest.settings.sign else {
        return Ok(());
    };
    let at = manifest.source.location(Some(&spec.span));
    match crate::sign::KeyFile::load(&spec.key, &at) {
        Ok(crate::sign::KeyFile::Private(_)) => Ok(()),
        // A public key makes `sign` verify-only (`verify --pushed` checks with
        // it); `build --push` refuses to push unsigned, and says so.
        Ok(crate::sign::KeyFile::Public(_)) => {
            if !globals.quiet {
                crate::stderr::say!(
                    "note: {} is a public key: `sign` is verify-only (`imgraph verify --pushed` checks signatures with it; `build --push` needs the private key)",
                    spec.key.display()
                );
            }
            Ok(())
        }
        Err(e) if matches!(e.problem, KeyProblem::NoPassword) => {
            if !globals.quiet {
                crate::stderr::say!(
                    "note: signing key {} is encrypted; `build --push` needs {PASSWORD_ENV} set to its password",
                    e.path.display()
                );
            }
            Ok(())
        }
        Err(e) => {
            let diag = Diagnostic::at(
                Some(spec.span.clone()),
                format!("signing key {}: {}", e.path.display(), e.problem),
            );
            crate::stderr::say!("error: {}\n", manifest.source.render(&diag));
            Err(Error::Usage(format!(
                "{} has 1 problem",
                cli.file.display()
            )))
        }
    }
}

fn count(n: usize, what: &str) -> String {
    match (n, what) {
        (1, _) => format!("1 {what}"),
        (_, "registry") => format!("{n} registries"),
        _ => format!("{n} {what}s"),
    }
}
