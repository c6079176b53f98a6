//! `images.toml`: parsing, validation, templates, the arch table and selectors.

pub mod arch;
mod created;
pub mod diagnostic;
mod implicit;
mod library;
mod load;
pub mod lock;
mod lock_history;
pub mod model;
mod raw;
pub mod reference;
mod schema;
pub mod selector;
mod structure;
pub mod template;

use std::path::PathBuf;

pub use arch::Arch;
pub use created::rfc3339;
pub use diagnostic::{Diagnostic, Diagnostics, SourceFile};
pub use load::{load, parse, LoadOptions};
pub use model::*;
pub use raw::ConfigTable;
pub use schema::{schema, schema_text};
pub use selector::{Selector, SelectorError};

/// Why a manifest could not be used. Always bad input: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Parsing or validation found problems; all of them are listed.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// `images.lock` beside it is unreadable or not a lock.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
}
