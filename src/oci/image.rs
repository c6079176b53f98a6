//! The JSON documents of an image: config, platform manifest, index. Built with
//! oci-spec's types, then written through one canonical encoder (sorted keys, no
//! whitespace) so that their digests depend on content only.

use std::collections::{BTreeMap, HashMap};

use oci_spec::image::{
    Arch as OciArch, ConfigBuilder, Descriptor, Digest, HistoryBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};
use serde::Serialize;

use crate::cache::Descriptor as BlobDesc;
use crate::manifest::{rfc3339, Arch, Compression, PlatformSpec};

/// Annotation naming a manifest inside an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A document could not be built (a digest that does not parse, mostly).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the {what}: {message}")]
pub struct DocumentError {
    what: &'static str,
    message: String,
}

fn doc_err(what: &'static str) -> impl Fn(oci_spec::OciSpecError) -> DocumentError {
    move |e| DocumentError {
        what,
        message: e.to_string(),
    }
}

/// Canonical JSON: object keys sorted at every level, no insignificant whitespace.
pub fn canonical_json(value: &impl Serialize) -> Vec<u8> {
    // serde_json::Value keeps object keys in a BTreeMap (no preserve_order), so
    // going through it sorts every map, including oci-spec's HashMaps.
    let value = serde_json::to_value(value).expect("OCI documents are always serialisable");
    serde_json::to_vec(&value).expect("a JSON value is always serialisable")
}

fn digest(d: &str) -> Result<Digest, DocumentError> {
    d.parse().map_err(doc_err("descriptor"))
}

fn hashmap(m: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// A descriptor for a blob.
pub fn descriptor(media_type: MediaType, blob: &BlobDesc) -> Result<Descriptor, DocumentError> {
    Ok(Descriptor::new(
        media_type,
        blob.size,
        digest(&blob.digest)?,
    ))
}

/// The OCI platform of an arch.
pub fn platform(arch: &Arch) -> Result<oci_spec::image::Platform, DocumentError> {
    let mut b = PlatformBuilder::default()
        .architecture(OciArch::from(arch.architecture))
        .os(Os::from(arch.os));
    if let Some(v) = arch.variant {
        b = b.variant(v);
    }
    b.build().map_err(doc_err("platform"))
}

/// The image config of one platform, whose single layer has `diff_id`.
pub fn config(p: &PlatformSpec, diff_id: &str) -> Result<Vec<u8>, DocumentError> {
    let c = &p.config;
    let mut cb = ConfigBuilder::default();
    if let Some(v) = &c.cmd {
        cb = cb.cmd(v.clone());
    }
    if let Some(v) = &c.entrypoint {
        cb = cb.entrypoint(v.clone());
    }
    if let Some(v) = &c.env {
        cb = cb.env(v.clone());
    }
    if let Some(v) = &c.workdir {
        cb = cb.working_dir(v.clone());
    }
    if let Some(v) = &c.user {
        cb = cb.user(v.clone());
    }
    if let Some(v) = &c.labels {
        cb = cb.labels(
            v.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    if let Some(v) = &c.exposed_ports {
        cb = cb.exposed_ports(v.clone());
    }
    if let Some(v) = &c.volumes {
        cb = cb.volumes(v.clone());
    }
    if let Some(v) = &c.stop_signal {
        cb = cb.stop_signal(v.clone());
    }
    let created = rfc3339(p.created);
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(vec![diff_id.to_string()])
        .build()
        .map_err(doc_err("rootfs"))?;
    let history = HistoryBuilder::default()
        .created(created.clone())
        .created_by("imgraph")
        .build()
        .map_err(doc_err("history"))?;
    let mut b = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(OciArch::from(p.arch.architecture))
        .os(Os::from(p.arch.os))
        .config(cb.build().map_err(doc_err("config"))?)
        .rootfs(rootfs)
        .history(vec![history]);
    if let Some(v) = p.arch.variant {
        b = b.variant(v);
    }
    Ok(canonical_json(&b.build().map_err(doc_err("image config"))?))
}

/// The platform image manifest: one config, one layer.
pub fn manifest(
    config: &BlobDesc,
    layer: &BlobDesc,
    compression: Compression,
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, DocumentError> {
    let mut b = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(MediaType::ImageConfig, config)?)
        .layers(vec![descriptor(
            MediaType::from(compression.media_type()),
            layer,
        )?]);
    if let Some(a) = hashmap(annotations) {
        b = b.annotations(a);
    }
    Ok(canonical_json(
        &b.build().map_err(doc_err("image manifest"))?,
    ))
}

/// The multi-platform index of one dist.
pub fn index(
    entries: &[(BlobDesc, &Arch)],
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, DocumentError> {
    let manifests = entries
        .iter()
        .map(|(blob, arch)| {
            let mut d = descriptor(MediaType::ImageManifest, blob)?;
            d.set_platform(Some(platform(arch)?));
            Ok(d)
        })
        .collect::<Result<Vec<_>, DocumentError>>()?;
    let mut b = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests);
    if let Some(a) = hashmap(annotations) {
        b = b.annotations(a);
    }
    Ok(canonical_json(&b.build().map_err(doc_err("image index"))?))
}

/// An OCI layout's `index.json` naming one manifest (or index) under one or more ref names.
pub fn layout_index(
    media_type: MediaType,
    blob: &BlobDesc,
    platform_of: Option<&Arch>,
    ref_names: &[String],
) -> Result<Vec<u8>, DocumentError> {
    let manifests = ref_names
        .iter()
        .map(|name| {
            let mut d = descriptor(media_type.clone(), blob)?;
            if let Some(arch) = platform_of {
                d.set_platform(Some(platform(arch)?));
            }
            d.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), name.clone())])));
            Ok(d)
        })
        .collect::<Result<Vec<_>, DocumentError>>()?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(doc_err("layout index"))?;
    Ok(canonical_json(&index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let mut m = HashMap::new();
        for k in ["b", "a", "c"] {
            m.insert(k.to_string(), serde_json::json!({"z": 1, "y": 2}));
        }
        let s = String::from_utf8(canonical_json(&m)).unwrap();
        assert_eq!(
            s,
            r#"{"a":{"y":2,"z":1},"b":{"y":2,"z":1},"c":{"y":2,"z":1}}"#
        );
    }

    #[test]
    fn index_carries_platform_with_variant() {
        let arch = Arch::by_name("arm64v8").unwrap();
        let blob = BlobDesc {
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 3,
        };
        let bytes = index(&[(blob, arch)], &BTreeMap::new()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["manifests"][0]["platform"]["architecture"], "arm64");
        assert_eq!(v["manifests"][0]["platform"]["variant"], "v8");
        assert_eq!(v["mediaType"], "application/vnd.oci.image.index.v1+json");
    }
}
