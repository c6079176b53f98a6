//! `imgraph export`: one image as a portable OCI layout or a `docker load` tarball.

use oci_spec::image::MediaType;

use crate::cache::Store;
use crate::cli::{ExportArgs, ExportFormat};
use crate::error::Error;
use crate::exec::{Progress, StepOutput};
use crate::graph::{StepId, StepKind};
use crate::oci::docker_archive::{self, ArchiveImage, Destination};
use crate::oci::layout::export_portable;

use super::{Globals, Project};
use crate::cache::CacheError;
use crate::exec::build::{build, built, BuildError, BuildOptions};

/// `--format`, or what the output's name says: `-` and `*.tar` are docker archives.
fn format_of(args: &ExportArgs) -> Result<ExportFormat, Error> {
    let stdout = args.output.as_os_str() == "-";
    let format = args.format.unwrap_or_else(|| {
        let tar = args
            .output
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tar"));
        if stdout || tar {
            ExportFormat::DockerArchive
        } else {
            ExportFormat::Oci
        }
    });
    if stdout && format == ExportFormat::Oci {
        return Err(Error::Usage(
            "an OCI layout is a folder and cannot go to standard output: name a folder with -o, or use --format docker-archive".into(),
        ));
    }
    if stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(Error::Usage(
            "refusing to write a tarball to a terminal: redirect standard output (`> image.tar`, `| podman load`) or name a file with -o".into(),
        ));
    }
    Ok(format)
}

pub(super) fn run(project: &Project, args: &ExportArgs, globals: &Globals) -> Result<(), Error> {
    let format = format_of(args)?;
    let sel = &project.selectors[0];
    let m = &project.manifest;
    let Some(dist_name) = &sel.dist else {
        return Err(Error::Usage(format!(
            "export needs IMAGE:DIST or IMAGE:DIST/ARCH, not just {:?}: which dist?",
            sel.image
        )));
    };
    let dist = m
        .dists
        .iter()
        .find(|d| d.image == sel.image && &d.dist == dist_name)
        .expect("selector was checked against the manifest");
    let arch = match (&sel.arch, format) {
        (Some(a), _) => Some(
            *dist
                .arches
                .iter()
                .find(|x| x.name == a)
                .expect("selector was checked against the manifest"),
        ),
        (None, ExportFormat::DockerArchive) if dist.arches.len() == 1 => Some(dist.arches[0]),
        (None, ExportFormat::DockerArchive) => {
            return Err(Error::Usage(format!(
                "a docker archive holds one platform: name it, e.g. {}:{}/{}",
                dist.image, dist.dist, dist.arches[0].name
            )))
        }
        (None, ExportFormat::Oci) => None,
    };
    let store = Store::open_read_only(&project.cache_dir);
    let progress = Progress::new(globals.quiet, globals.verbose, globals.color);
    let opts = BuildOptions {
        remote: project.cache_registry.clone(),
        fetch_remote: true,
        ..BuildOptions::cache_only()
    };
    let writable = Store::open(&project.cache_dir).map_err(BuildError::from);
    let report = match writable.and_then(|s| build(m, &project.selectors, &s, &opts, &progress)) {
        // A cache this user cannot write still exports what it holds.
        Err(BuildError::Cache(CacheError::ReadOnly { .. })) => {
            built(m, &project.selectors, &store)?
        }
        other => other?,
    };
    let platform = |arch| report.platform_blobs(m, &dist.image, &dist.dist, arch);
    let mut replaced = false;
    match (format, arch) {
        (ExportFormat::Oci, None) => {
            let index = report
                .output(&StepId::dist(
                    StepKind::Index,
                    &dist.image,
                    &dist.dist,
                    None,
                ))
                .and_then(StepOutput::blob)
                .cloned()
                .expect("index built");
            let platforms: Vec<_> = dist.arches.iter().filter_map(|a| platform(a)).collect();
            let blobs: Vec<_> = platforms
                .iter()
                .flat_map(|p| [&p.layer, &p.config, &p.manifest])
                .collect();
            export_portable(
                &store,
                &args.output,
                (&MediaType::ImageIndex, &index, None),
                &blobs,
                &dist.tags,
            )?;
        }
        (ExportFormat::Oci, Some(a)) => {
            let p = platform(a).expect("platform built");
            export_portable(
                &store,
                &args.output,
                (&MediaType::ImageManifest, &p.manifest, Some(p.arch)),
                &[&p.layer, &p.config],
                &dist.tags,
            )?;
        }
        (ExportFormat::DockerArchive, Some(a)) => {
            let id = |kind| StepId::platform(kind, &dist.image, &dist.dist, a);
            let Some(StepOutput::Layer(layer)) = report.output(&id(StepKind::Layer)) else {
                unreachable!("layer built")
            };
            let config = report
                .output(&id(StepKind::Config))
                .and_then(StepOutput::blob)
                .expect("config built");
            let repo_tags: Vec<String> = dist
                .tags
                .iter()
                .map(|t| format!("{}:{t}", dist.image))
                .collect();
            let dest = if args.output.as_os_str() == "-" {
                Destination::Stdout
            } else {
                Destination::Path(&args.output)
            };
            replaced = docker_archive::write(
                &store,
                &ArchiveImage {
                    config,
                    layer: &layer.blob,
                    diff_id: &layer.diff_id,
                    uncompressed_size: layer.uncompressed_size,
                    repo_tags: &repo_tags,
                },
                dest,
            )?;
        }
        (ExportFormat::DockerArchive, None) => unreachable!("arch resolved above"),
    }
    if !globals.quiet {
        let what = if replaced { "replaced" } else { "to" };
        match args.output.as_os_str() == "-" {
            true => crate::stderr::say!("exported {sel} to standard output"),
            false => crate::stderr::say!("exported {sel} {what} {}", args.output.display()),
        }
    }
    Ok(())
}
