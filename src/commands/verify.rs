//! `imgraph verify`: `--reproducible` rebuilds in a scratch cache and compares
//! every digest; `--pushed` reads pushed indexes back by digest and checks that
//! every tag points at them (and, with a key, that they are signed by it).

use std::collections::BTreeMap;

use crate::cache::Store;
use crate::cli::VerifyArgs;
use crate::error::{Difference, Error};
use crate::exec::{Progress, StepOutput};
use crate::graph::StepKind;

use super::{Globals, Project};
use crate::exec::build::{build, BuildOptions};
use crate::exec::verify_pushed::{verify_pushed, verifying_key};

pub(super) fn run(project: &Project, args: &VerifyArgs, globals: &Globals) -> Result<(), Error> {
    if !args.reproducible && !args.pushed {
        return Err(Error::Usage(
            "verify needs --reproducible, --pushed or both".into(),
        ));
    }
    if args.key.is_some() && !args.pushed {
        return Err(Error::Usage(
            "--key checks the signatures of pushed images: use it with --pushed".into(),
        ));
    }
    // Before anything is built: a bad key is bad input.
    let key = match args.pushed {
        true => verifying_key(&project.manifest, args.key.as_deref())?,
        false => None,
    };
    if args.reproducible {
        reproducible(project, globals)?;
    }
    if args.pushed {
        let store = Store::open(&project.cache_dir)?;
        let progress = Progress::new(globals.quiet, globals.verbose, globals.color);
        let verified = verify_pushed(
            &project.manifest,
            &project.selectors,
            &store,
            key.as_ref(),
            project.cache_registry.clone(),
            &progress,
        )?;
        if !globals.quiet {
            for v in verified {
                crate::stderr::say!(
                    "verified {} on {}: {} platforms, {} referrers, {} signatures, tags {}",
                    v.reference,
                    v.registry,
                    v.platforms,
                    v.referrers,
                    v.signatures,
                    v.tags.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn reproducible(project: &Project, globals: &Globals) -> Result<(), Error> {
    let progress = Progress::new(globals.quiet, globals.verbose, globals.color);
    let store = Store::open(&project.cache_dir)?;
    let opts = BuildOptions::cache_only();
    let first = build(
        &project.manifest,
        &project.selectors,
        &store,
        &opts,
        &progress,
    )?;
    let scratch_dir = tempfile::Builder::new()
        .prefix("imgraph-verify-")
        .tempdir()
        .map_err(|source| Error::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let scratch = Store::open(scratch_dir.path())?;
    let seeded = seed_debs(project, &store, &scratch)?;
    progress.println(&if seeded > 0 {
        format!("rebuilding in a scratch cache ({seeded} locked .debs taken from the cache, not downloaded again)...")
    } else {
        "rebuilding in a scratch cache...".to_string()
    });
    let second = build(
        &project.manifest,
        &project.selectors,
        &scratch,
        &BuildOptions { jobs: 1, ..opts },
        &progress,
    )?;

    let mut differences = Vec::new();
    let mut compared = 0;
    for node in first.graph.order() {
        let step = first.graph.step(node);
        if !matches!(
            step.id.kind,
            StepKind::Layer
                | StepKind::Config
                | StepKind::Manifest
                | StepKind::Sbom
                | StepKind::Provenance
                | StepKind::Index
        ) {
            continue;
        }
        let (Some(a), Some(b)) = (first.output(&step.id), second.output(&step.id)) else {
            continue;
        };
        compared += 1;
        if a.digest() == b.digest() {
            continue;
        }
        let files = match (a, b) {
            (StepOutput::Layer(la), StepOutput::Layer(lb)) => {
                layer_differences(&store, &la.blob.digest, &scratch, &lb.blob.digest)
            }
            _ => Vec::new(),
        };
        differences.push(Difference {
            step: step.id.to_string(),
            first: a.digest().to_string(),
            second: b.digest().to_string(),
            files,
        });
    }
    if !differences.is_empty() {
        return Err(Error::NotReproducible {
            compared,
            differences,
        });
    }
    if !globals.quiet {
        crate::stderr::say!("reproducible: {compared} digests identical across two clean builds");
        for node in first.graph.order() {
            let step = first.graph.step(node);
            if step.id.kind == StepKind::Index {
                if let Some(out) = first.output(&step.id) {
                    crate::stderr::say!("  {} {}", step.id, out.digest());
                }
            }
        }
    }
    Ok(())
}

/// Puts every locked `.deb` the cache holds into the scratch cache (a hard link
/// when both are on one filesystem, else a copy checked against its digest).
/// The `.deb`s are inputs pinned by sha256 in `images.lock`, not outputs of the
/// build: what the second build must reproduce is everything made from them, and
/// downloading a 12-platform lock's ~500 MB twice would prove nothing more.
/// Returns how many were seeded.
fn seed_debs(project: &Project, from: &Store, to: &Store) -> Result<usize, Error> {
    let digests: std::collections::BTreeSet<String> = project
        .manifest
        .lock
        .platforms
        .values()
        .flat_map(|p| &p.packages)
        // (An entry that is not 64 hex digits is the build's to report.)
        .filter(|p| p.sha256.len() == 64 && p.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|p| format!("sha256:{}", p.sha256.to_ascii_lowercase()))
        .filter(|d| from.has_blob(d))
        .collect();
    for digest in &digests {
        let dest = to.blob_path(digest);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        if std::fs::hard_link(from.blob_path(digest), &dest).is_err() {
            from.copy_blob_to(digest, &dest)?;
        }
    }
    Ok(digests.len())
}

/// Entry-by-entry comparison of two layers: header fields and content hashes.
fn layer_differences(a: &Store, da: &str, b: &Store, db: &str) -> Vec<String> {
    let (Ok(ea), Ok(eb)) = (entries(a, da), entries(b, db)) else {
        return vec!["(a layer could not be read back)".into()];
    };
    let mut out: Vec<String> = ea
        .iter()
        .filter(|(path, v)| eb.get(*path) != Some(*v))
        .map(|(p, _)| p.clone())
        .chain(eb.keys().filter(|p| !ea.contains_key(*p)).cloned())
        .collect();
    if out.is_empty() {
        out.push("(same entries; the difference is in ordering or compression)".into());
    }
    out.truncate(20);
    out
}

fn entries(store: &Store, digest: &str) -> std::io::Result<BTreeMap<String, String>> {
    let mut archive = tar::Archive::new(crate::decompress::open(&store.blob_path(digest))?);
    let mut map = BTreeMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.display().to_string();
        let h = entry.header();
        let meta = format!(
            "{:?} {:o} {}:{} {} {:?}",
            h.entry_type(),
            h.mode().unwrap_or(0),
            h.uid().unwrap_or(0),
            h.gid().unwrap_or(0),
            h.mtime().unwrap_or(0),
            entry
                .link_name()
                .ok()
                .flatten()
                .map(|p| p.display().to_string())
        );
        let mut hasher = blake3::Hasher::new();
        std::io::copy(&mut entry, &mut hasher)?;
        map.insert(path, format!("{meta} {}", hasher.finalize().to_hex()));
    }
    Ok(map)
}
