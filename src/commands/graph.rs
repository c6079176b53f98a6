//! `imgraph graph`.

use crate::cli::{GraphArgs, GraphFormat};
use crate::error::Error;
use crate::graph::{to_dot, to_json, Graph};
use crate::stdout;

use super::Project;

pub(super) fn run(project: &Project, args: &GraphArgs) -> Result<(), Error> {
    let graph = Graph::build(&project.manifest, &project.selectors);
    match args.format {
        GraphFormat::Dot => stdout::print(&to_dot(&graph))?,
        GraphFormat::Json => {
            stdout::println(&serde_json::to_string_pretty(&to_json(&graph)).unwrap_or_default())?
        }
    }
    Ok(())
}
