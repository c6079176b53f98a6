//! One module per subcommand; they share loading the manifest and the cache.

mod build;
mod cache;
mod check;
mod completions;
mod explain;
mod export;
mod graph;
mod init;
mod library;
mod lock;
mod plan;
mod schema;
mod verify;

use std::path::PathBuf;

use crate::cli::{Cli, ColorChoice, Command, EditCommand};
use crate::error::Error;
use crate::manifest::{self, LoadOptions, Manifest, Selector};

pub use completions::complete_from_env;

/// What every command starts from.
pub(crate) struct Project {
    pub(crate) manifest: Manifest,
    pub(crate) selectors: Vec<Selector>,
    pub(crate) cache_dir: PathBuf,
    /// The cache registry: `--cache-registry`/`IMGRAPH_CACHE_REGISTRY`, else
    /// `cache_registry` in images.toml; `--cache-mode` overrides its mode.
    pub(crate) cache_registry: Option<manifest::CacheRegistry>,
}

pub(crate) struct Globals {
    pub(crate) quiet: bool,
    pub(crate) verbose: bool,
    pub(crate) color: bool,
}

impl Project {
    fn load(cli: &Cli, selectors: &[String], allow_dirty: bool) -> Result<Project, Error> {
        let opts = LoadOptions {
            allow_dirty,
            ..LoadOptions::default()
        };
        Self::load_with(cli, selectors, &opts)
    }

    fn load_with(cli: &Cli, selectors: &[String], opts: &LoadOptions) -> Result<Project, Error> {
        let manifest = manifest::load(&cli.file, opts)?;
        let selectors = selectors
            .iter()
            .map(|s| {
                let sel = Selector::parse(s)?;
                sel.check(&manifest)?;
                Ok(sel)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let cache_dir = match &cli.cache {
            Some(dir) => std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
            None => manifest.settings.cache.clone(),
        };
        check_cache_dir(&cache_dir, cli.cache.is_some())?;
        let cache_registry = cache_registry(cli, &manifest)?;
        Ok(Project {
            manifest,
            selectors,
            cache_dir,
            cache_registry,
        })
    }
}

impl Project {
    /// The selected `debian` platforms without a current lock entry, each with
    /// what is wrong with its entry (`tiny:imtest/amd64 has no entry in images.lock`).
    pub(crate) fn unlocked(&self) -> Vec<String> {
        self.manifest
            .unlocked_platforms()
            .into_iter()
            .filter(|(p, _)| {
                self.selectors.is_empty() || self.selectors.iter().any(|s| s.matches_platform(p))
            })
            .map(|(p, state)| format!("{} {}", p.label(), state.problem()))
            .collect()
    }

    /// Refuses a project whose selected `debian` platforms are not all in
    /// `images.lock` as resolved for their current options: `plan` and `build`
    /// never resolve against the network themselves.
    fn locked(self) -> Result<Project, Error> {
        let unlocked = self.unlocked();
        if unlocked.is_empty() {
            Ok(self)
        } else {
            Err(Error::Unlocked {
                lock: self.manifest.lock_path(),
                platforms: unlocked,
            })
        }
    }
}

/// A cache path that is (or is inside) a file is bad input, refused before any
/// command starts: otherwise `build` fails creating it (exit 1) while `plan` reads
/// nothing from it and reports everything dirty.
fn check_cache_dir(dir: &std::path::Path, from_flag: bool) -> Result<(), Error> {
    let Some(existing) = dir.ancestors().find(|a| a.exists()) else {
        return Ok(());
    };
    if existing.is_dir() {
        return Ok(());
    }
    let origin = if from_flag {
        "--cache (or IMGRAPH_CACHE)"
    } else {
        "`cache` in [settings]"
    };
    let what = if existing == dir {
        "is a file, not a folder".to_string()
    } else {
        format!("is inside {}, which is a file", existing.display())
    };
    Err(Error::Usage(format!(
        "cache folder {} {what}\n  = help: point {origin} at a folder; it is created when missing",
        dir.display()
    )))
}

/// The cache registry the flags or the manifest name (the flags win).
fn cache_registry(
    cli: &Cli,
    manifest: &Manifest,
) -> Result<Option<manifest::CacheRegistry>, Error> {
    use crate::cli::CacheModeArg;
    use manifest::{CacheMode, CacheRegistry};
    let mode = cli.cache_mode.map(|m| match m {
        CacheModeArg::Read => CacheMode::Read,
        CacheModeArg::ReadWrite => CacheMode::ReadWrite,
    });
    let mut registry = match cli.cache_registry.as_deref().filter(|r| !r.is_empty()) {
        Some(url) => {
            // As in images.toml: no credentials in the url, and the error quotes
            // neither the url nor its userinfo.
            if let Err(manifest::reference::ReferenceError::Credentials { host }) =
                manifest::reference::RegistryUrl::parse(url)
            {
                return Err(Error::Usage(format!(
                    "--cache-registry (or IMGRAPH_CACHE_REGISTRY) has credentials before `@{host}`; imgraph never reads them from a url\n  = help: put credentials in ~/.docker/config.json (run `docker login {host}`, or configure a credential helper) and write host[:port]/repository"
                )));
            }
            Some(
                CacheRegistry::parse(url, None, CacheMode::ReadWrite).map_err(|message| {
                    Error::Usage(format!(
                        "--cache-registry (or IMGRAPH_CACHE_REGISTRY) {url:?}: {message}\n  = help: write [http://]host[:port]/repository, e.g. ghcr.io/acme/imgraph-cache"
                    ))
                })?,
            )
        }
        None => manifest.settings.cache_registry.clone(),
    };
    if let (Some(r), Some(mode)) = (registry.as_mut(), mode) {
        r.mode = mode;
    }
    Ok(registry)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::IsTerminal::is_terminal(&std::io::stdout())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    crate::notice::set_quiet(cli.quiet);
    let globals = Globals {
        quiet: cli.quiet,
        verbose: cli.verbose,
        color,
    };
    match &cli.command {
        Command::Edit(cmd) => edit(&cli, cmd, &globals),
        // `lock` dates nothing: it writes what `created = "git"` dates from.
        Command::Lock(args) => lock::run(
            &Project::load_with(
                &cli,
                &args.selection.selectors,
                &LoadOptions {
                    allow_dirty: true,
                    skip_git_dates: true,
                },
            )?,
            args,
            &globals,
        ),
        Command::Plan(args) => plan::run(
            &Project::load(&cli, &args.selection.selectors, args.allow_dirty)?.locked()?,
            args,
            &globals,
        ),
        Command::Build(args) => build::run(
            &Project::load(&cli, &args.selection.selectors, args.allow_dirty)?.locked()?,
            args,
            &globals,
        ),
        Command::Verify(args) => verify::run(
            &Project::load(&cli, &args.selection.selectors, args.allow_dirty)?.locked()?,
            args,
            &globals,
        ),
        Command::Graph(args) => graph::run(
            &Project::load(&cli, &args.selection.selectors, false)?,
            args,
        ),
        Command::Export(args) => export::run(
            &Project::load(&cli, std::slice::from_ref(&args.selector), false)?.locked()?,
            args,
            &globals,
        ),
        Command::Cache(cmd) => cache::run(&Project::load(&cli, &[], false)?, cmd, &globals),
        Command::Library(args) => library::run(
            &Project::load(&cli, std::slice::from_ref(&args.image), true)?,
            &globals,
        ),
    }
}

/// The commands about editing images.toml (issue 7), dispatched apart to keep `run` short.
fn edit(cli: &Cli, cmd: &EditCommand, globals: &Globals) -> Result<(), Error> {
    match cmd {
        EditCommand::Check(args) => check::run(cli, args, globals),
        EditCommand::Init => init::run(cli, globals),
        EditCommand::Explain(args) => {
            explain::run(&Project::load(cli, &[], args.allow_dirty)?, args, globals)
        }
        EditCommand::Schema => schema::run(),
        EditCommand::Completions(args) => completions::run(args),
        EditCommand::Man(args) => completions::man(args),
    }
}

pub(crate) use crate::exec::default_jobs;
