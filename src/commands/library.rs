//! `imgraph library IMAGE`: print the docker-library manifest file.

use crate::error::Error;
use crate::exec::library::library_file;

use super::{Globals, Project};

pub(super) fn run(project: &Project, globals: &Globals) -> Result<(), Error> {
    let sel = &project.selectors[0];
    if sel.arch.is_some() {
        return Err(Error::Usage(format!(
            "library takes IMAGE or IMAGE:DIST, not an arch ({sel})\n  = help: one file lists every arch of every dist: imgraph library {}",
            sel.image
        )));
    }
    let file = library_file(&project.manifest, &sel.image, sel.dist.as_deref())?;
    if !globals.quiet {
        for w in &file.warnings {
            crate::stderr::say!("warning: {w}");
        }
    }
    crate::stdout::print(&file.text)?;
    Ok(())
}
