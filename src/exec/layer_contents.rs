//! What the sbom step knows of its image's layer: the contents the layer step
//! gathered while writing it (a small verified JSON blob), so describing an
//! image never decompresses its layer.

use super::steps::StepError;
use super::{Ctx, LayerOut};
use crate::attest::{self, Contents};

/// The layer's contents. A layer cached before the layer step kept them (or
/// whose kept contents are of another version's format) is read back once,
/// decoded and verified in the same read; a layer that is only in the cache
/// registry is fetched first (verified).
pub(super) fn layer_contents(ctx: &Ctx<'_>, layer: &LayerOut) -> Result<Contents, StepError> {
    if let Some(kept) = &layer.contents {
        let bytes = ctx.store.read_blob(&kept.digest)?;
        if let Ok(contents) = serde_json::from_slice::<Contents>(&bytes) {
            return Ok(contents);
        }
    }
    let blob = &layer.blob;
    if !ctx.store.has_blob(&blob.digest) {
        if let Some(remote) = ctx.remote {
            remote
                .fetch_blob(ctx.store, &blob.digest, blob.size, ctx.progress)
                .map_err(|e| StepError::RemoteCache(Box::new(e)))?;
        }
    }
    // A corrupt layer is a cache error like any other, so the build drops it and
    // makes it again in a second pass.
    attest::read_layer(ctx.store, &blob.digest).map_err(|e| match e {
        attest::AttestError::Cache(e) => StepError::Cache(e),
        e => StepError::Attest(e),
    })
}
