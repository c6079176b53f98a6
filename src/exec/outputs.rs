//! What each kind of step produces, as stored in the action cache.

use serde::{Deserialize, Serialize};

use crate::cache::Descriptor;

/// A step's outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StepOutput {
    /// The rootfs content fingerprint.
    Rootfs {
        /// blake3 of the tree (or tarball) content.
        tree: String,
        /// Entries in it.
        files: u64,
        /// For command sources: where the produced rootfs is kept in the cache.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept: Option<String>,
        /// For `debian` sources: every maintainer-script command not reproduced,
        /// kept with the output so `explain` and a warm `build` show them without
        /// reading the `.deb`s again. Not part of [`StepOutput::digest`]: the
        /// report does not change the tree.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scripts: Vec<crate::debian::scripts::NotReproduced>,
    },
    /// The compressed layer.
    Layer(LayerOut),
    /// A JSON document (config, manifest, index).
    Blob(Descriptor),
    /// References that name an index.
    Tag {
        /// The index.
        index: Descriptor,
        /// `host/repo:tag` (or `image:tag` locally).
        refs: Vec<String>,
    },
    /// What a push left in a registry.
    Push {
        /// The index pushed.
        index: Descriptor,
        /// The references now pointing at it.
        refs: Vec<String>,
        /// `--changed` found the registry already up to date: nothing was written.
        #[serde(default)]
        unchanged: bool,
    },
    /// A push step in a build without `--push`.
    Skipped,
    /// Artifacts attached to a platform manifest (an SBOM in each format asked
    /// for, a provenance statement): OCI 1.1 image manifests with `artifactType`
    /// and `subject`, exported beside the image in `out/` and pushed as its
    /// referrers.
    Attachments(#[serde(with = "attachment_list")] Vec<AttachmentOut>),
}

/// An internally tagged enum (`"kind": ...`) cannot hold a bare sequence, so
/// the list is stored as `{"kind": "attachments", "attachments": [...]}`.
mod attachment_list {
    use super::AttachmentOut;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct Ref<'a> {
        attachments: &'a [AttachmentOut],
    }

    #[derive(Deserialize)]
    struct Owned {
        attachments: Vec<AttachmentOut>,
    }

    pub(super) fn serialize<S: Serializer>(v: &[AttachmentOut], s: S) -> Result<S::Ok, S::Error> {
        Ref { attachments: v }.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<AttachmentOut>, D::Error> {
        Ok(Owned::deserialize(d)?.attachments)
    }
}

/// One attached artifact: everything needed to export or push it without reading
/// anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentOut {
    /// The artifact manifest (`application/vnd.oci.image.manifest.v1+json`).
    pub manifest: Descriptor,
    /// Its `artifactType`, e.g. `application/spdx+json`.
    pub artifact_type: String,
    /// The blobs the artifact manifest references (its config and layers).
    pub blobs: Vec<Descriptor>,
    /// The platform manifest it is attached to (its `subject`).
    pub subject: Descriptor,
}

/// The layer step's outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerOut {
    /// The compressed blob.
    pub blob: Descriptor,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    /// ELF machines found, for the platform check.
    pub elf: crate::oci::elf::ElfCensus,
    /// What the SBOM needs of the layer (packages, copyrights, os-release, file
    /// checksums), gathered while writing it: a small JSON blob, so the sbom step
    /// never reads the layer. Absent in records made before it existed (the sbom
    /// step then reads the layer once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<Descriptor>,
}

impl StepOutput {
    /// The digest this output is known by downstream (what keys are built from).
    pub fn digest(&self) -> String {
        match self {
            StepOutput::Rootfs { tree, .. } => tree.clone(),
            StepOutput::Layer(l) => l.blob.digest.clone(),
            StepOutput::Blob(d) => d.digest.clone(),
            StepOutput::Tag { index, refs } | StepOutput::Push { index, refs, .. } => {
                format!("{}+{}", index.digest, refs.join(","))
            }
            StepOutput::Skipped => String::new(),
            StepOutput::Attachments(a) => a
                .iter()
                .map(|a| a.manifest.digest.as_str())
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Blobs that must be in the cache for this output to be usable.
    pub fn blobs(&self) -> Vec<String> {
        match self {
            StepOutput::Layer(l) => std::iter::once(&l.blob)
                .chain(&l.contents)
                .map(|d| d.digest.clone())
                .collect(),
            StepOutput::Blob(d) => vec![d.digest.clone()],
            StepOutput::Attachments(a) => a
                .iter()
                .flat_map(|a| std::iter::once(&a.manifest).chain(&a.blobs))
                .map(|d| d.digest.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The one blob of this output that stays in the cache registry on a remote
    /// hit until something needs its bytes: a layer's compressed tar. Every other
    /// blob a record names is small and fetched with the record.
    pub fn stays_remote(&self, digest: &str) -> bool {
        matches!(self, StepOutput::Layer(l) if l.blob.digest == digest)
    }

    /// The blob of a document step.
    pub fn blob(&self) -> Option<&Descriptor> {
        match self {
            StepOutput::Blob(d) => Some(d),
            StepOutput::Layer(l) => Some(&l.blob),
            StepOutput::Tag { index, .. } | StepOutput::Push { index, .. } => Some(index),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_round_trip_through_the_action_cache_json() {
        let d = |c: char| Descriptor {
            digest: format!("sha256:{}", c.to_string().repeat(64)),
            size: 2,
        };
        let out = StepOutput::Attachments(vec![AttachmentOut {
            manifest: d('a'),
            artifact_type: "application/spdx+json".into(),
            blobs: vec![d('b'), d('c')],
            subject: d('d'),
        }]);
        let value = serde_json::to_value(&out).unwrap();
        assert_eq!(value["kind"], "attachments");
        assert_eq!(serde_json::from_value::<StepOutput>(value).unwrap(), out);
    }
}
