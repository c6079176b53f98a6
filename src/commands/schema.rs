//! `imgraph schema`: the JSON schema of images.toml (what `schemas/images.schema.json` holds).

use crate::error::Error;

pub(super) fn run() -> Result<(), Error> {
    crate::stdout::print(&crate::manifest::schema_text())?;
    Ok(())
}
