//! The provenance statement: an in-toto Statement v1 whose predicate is SLSA
//! Provenance v1 (<https://slsa.dev/spec/v1.0/provenance>). It names the
//! platform manifest as its subject and lists everything the image was built
//! from: each `.deb` and the InRelease that vouched for it, each rootfs input,
//! and the commit of the repository holding `images.toml`.
//!
//! No timestamps or invocation ids: the same inputs give the same bytes.

use serde_json::{json, Map, Value};

use super::Subject;

/// `buildDefinition.buildType`.
pub const BUILD_TYPE: &str = "https://imgraph.invalid/buildtypes/platform-image/v1";

/// The builder: imgraph, at this version.
pub fn builder_id() -> String {
    format!(
        "https://imgraph.invalid/builder/imgraph@{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// One resolved dependency: a uri and its digests (`sha256`, `blake3`, `gitCommit`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dependency {
    /// Where it is (`http://deb.debian.org/debian/pool/...`, `rootfs/one/amd64`).
    pub uri: String,
    /// Algorithm -> hex digest.
    pub digest: Vec<(String, String)>,
}

/// What the statement says besides the subject.
#[derive(Debug, Clone)]
pub struct Provenance<'a> {
    /// The platform image.
    pub subject: Subject<'a>,
    /// The image's `[images.NAME]` table as written, as JSON.
    pub image_section: Value,
    /// Settings that shape the image (compression, created).
    pub internal: Value,
    /// Every input, in any order (sorted when written).
    pub dependencies: Vec<Dependency>,
}

/// The statement, as canonical JSON.
pub fn statement(p: &Provenance<'_>) -> Vec<u8> {
    let s = &p.subject;
    let mut deps = p.dependencies.clone();
    deps.sort();
    deps.dedup();
    let resolved: Vec<Value> = deps
        .iter()
        .map(|d| {
            let digest: Map<String, Value> = d
                .digest
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({ "uri": d.uri, "digest": digest })
        })
        .collect();
    let doc = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": s.purl(),
            "digest": { "sha256": s.hex() },
        }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "image": s.image,
                    "dist": s.dist,
                    "arch": s.arch,
                    "manifest": p.image_section,
                },
                "internalParameters": p.internal,
                "resolvedDependencies": resolved,
            },
            "runDetails": {
                "builder": {
                    "id": builder_id(),
                    "version": { "imgraph": env!("CARGO_PKG_VERSION") },
                },
                "metadata": {},
            },
        },
    });
    crate::oci::image::canonical_json(&doc)
}
