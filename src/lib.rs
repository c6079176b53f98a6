//! imgraph: compile `images.toml` into a graph of content-addressed steps
//! (rootfs, layer, config, manifest, sbom, provenance, index, tag, push), cache every step by the
//! hash of its inputs, and do only the work that changed.
//!
//! Modules in pipeline order; each imports only modules listed above it
//! (`scripts/layers` checks it, ARCHITECTURE.md says what each owns):
//! the leaf utilities [`digest`], [`decompress`] and [`budget`]; [`manifest`] ->
//! [`graph`] -> [`key`]; the stages [`rootfs`], [`cache`], [`oci`], [`registry`],
//! [`debian`], [`attest`]; [`exec`] (scheduler, steps, build, push, lock, verify); the argument
//! grammar [`cli`]; [`error`]; the [`commands`].

// stdout goes through `stdout`, which ends quietly when its reader does; stderr
// through `stderr`, which never panics when its reader goes.
#![deny(clippy::print_stdout, clippy::print_stderr)]

// Leaf utilities: no imports from the crate but `stderr`.
pub mod atomic_file;
pub mod budget;
pub mod decompress;
pub mod digest;
mod git;
pub mod interrupt;
pub mod notice;
pub mod stderr;
pub mod stdout;

// What the user wrote, and the step graph it compiles to.
pub mod manifest;

pub mod graph;

pub mod key;

// The stages a step runs.
pub mod rootfs;
pub mod sign;

pub mod cache;

pub mod oci;

pub mod registry;

// The Debian archive: signed indexes, the resolver, .debs (reads through
// cache, rootfs and registry's retry policy).
pub mod debian;

// SBOMs and provenance of a platform image, and the artifact manifests that
// attach them (reads the layer through decompress, dpkg files through debian).
pub mod attest;

// Running the graph: the library entry points the commands share.
pub mod exec;

// The command line: grammar, errors, one file per subcommand.
pub mod cli;
pub mod error;

pub mod commands;

pub use error::Error;

/// Runs imgraph with these arguments and returns the process exit status.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    if let Some(code) = commands::complete_from_env(&args) {
        return code;
    }
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    interrupt::install(format!("imgraph {}", cli.command.name()));
    match commands::run(cli) {
        Ok(()) => 0,
        // The reader of stdout stopped (`| head -1`): a normal end, said by nothing.
        Err(err) if err.is_closed_stdout() => 0,
        Err(err) => {
            crate::stderr::say!("error: {}", error::with_causes(&err, "  "));
            err.exit_code()
        }
    }
}
