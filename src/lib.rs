//! imgraph: compile `images.toml` into a graph of content-addressed steps
//! (rootfs, layer, config, manifest, index, tag, push), cache every step by the
//! hash of its inputs, and do only the work that changed.
//!
//! Modules in pipeline order: [`manifest`] -> [`graph`] -> [`key`] -> [`rootfs`]
//! -> [`cache`] -> [`oci`] -> [`registry`] -> [`exec`], then the [`commands`].

pub mod manifest;

pub mod graph;

pub mod key;

pub mod budget;
pub mod decompress;
pub mod digest;

pub mod debian;

pub mod rootfs;

pub mod cache;

pub mod oci;

pub mod registry;

pub mod exec;

pub mod cli;
pub mod commands;
pub mod error;

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
    match commands::run(cli) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {}", error::with_causes(&err, "  "));
            err.exit_code()
        }
    }
}
