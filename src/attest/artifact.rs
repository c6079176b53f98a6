//! OCI 1.1 artifact manifests: an image manifest whose `artifactType` says what
//! it carries, whose config is the empty descriptor, whose one layer is the
//! document, and whose `subject` is the platform manifest it is about. The
//! referrers API (and its fallback tag) finds attachments by that subject.

use serde_json::json;

use crate::cache::Descriptor;

/// The empty config's media type (image-spec 1.1, "Guidance for an empty descriptor").
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The empty config's bytes: `{}`.
pub const EMPTY_CONFIG: &[u8] = b"{}";

const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The artifact manifest for `document` (already in the store as `doc`),
/// attached to `subject`, as canonical JSON.
pub fn artifact_manifest(
    artifact_type: &str,
    title: &str,
    doc: &Descriptor,
    empty: &Descriptor,
    subject: &Descriptor,
    created: &str,
) -> Vec<u8> {
    let m = json!({
        "schemaVersion": 2,
        "mediaType": IMAGE_MANIFEST,
        "artifactType": artifact_type,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": empty.digest,
            "size": empty.size,
            "data": "e30=",
        },
        "layers": [{
            "mediaType": artifact_type,
            "digest": doc.digest,
            "size": doc.size,
            "annotations": { "org.opencontainers.image.title": title },
        }],
        "subject": {
            "mediaType": IMAGE_MANIFEST,
            "digest": subject.digest,
            "size": subject.size,
        },
        "annotations": { "org.opencontainers.image.created": created },
    });
    crate::oci::image::canonical_json(&m)
}
