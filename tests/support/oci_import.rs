//! The checks docker-library's bashbrew makes before `Builder: oci-import`
//! imports a per-arch OCI layout (`cmd/bashbrew/oci-builder.go`), in Rust:
//!
//! - `oci-layout` decodes, strictly, to `{"imageLayoutVersion":"1.0.0"}`;
//! - `index.json` decodes strictly (unknown fields refused, no trailing data) to
//!   the OCI 1.1 `Index` struct: `schemaVersion` 2, exactly one `manifests`
//!   entry, an OCI image manifest with a valid digest and size;
//! - every blob (the manifest, then its config and layers) is read from
//!   `blobs/<alg>/<hex>` (through symlinks, as bashbrew's git fs follows them)
//!   and checked against its size and digest;
//! - the manifest decodes strictly to the OCI 1.1 `Manifest` struct, and its
//!   layers are tar, tar+gzip or tar+zstd (media type and content).
//!
//! The structs' field sets are image-spec v1.1's Go structs (`specs-go/v1`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::sha256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageLayout {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Platform {
    architecture: String,
    os: String,
    #[serde(rename = "os.version", default)]
    os_version: Option<String>,
    #[serde(rename = "os.features", default)]
    os_features: Option<Vec<String>>,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    platform: Option<serde_json::Value>,
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: i64,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    manifests: Vec<Descriptor>,
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: i64,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Strict JSON: unknown fields refused (by the struct), nothing after the value.
fn strict<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(&mut de).map_err(|e| format!("{what}: {e}"))?;
    de.end()
        .map_err(|e| format!("{what}: unexpected extra data: {e}"))?;
    Ok(value)
}

fn check_digest(digest: &str) -> Result<&str, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("digest {digest:?} is not sha256"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!("invalid digest {digest:?}"));
    }
    Ok(hex)
}

/// Reads a blob as bashbrew's `importOCIBlob`: `blobs/sha256/<hex>`, at most
/// size+1 bytes, then size and digest checked.
fn read_blob(layout: &Path, d: &Descriptor) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let hex = check_digest(&d.digest)?;
    if d.size < 0 {
        return Err(format!("invalid size {} for {}", d.size, d.digest));
    }
    let path = layout.join("blobs/sha256").join(hex);
    let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(d.size as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as i64 != d.size {
        return Err(format!(
            "{}: size {} but the descriptor says {}",
            d.digest,
            bytes.len(),
            d.size
        ));
    }
    if sha256(&bytes) != d.digest {
        return Err(format!(
            "{}: content has digest {}",
            d.digest,
            sha256(&bytes)
        ));
    }
    Ok(bytes)
}

/// A tar stream starts with a ustar header (`ustar` at offset 257).
fn is_tar(bytes: &[u8]) -> bool {
    bytes.len() >= 512 && &bytes[257..262] == b"ustar"
}

fn check_layer(d: &Descriptor, bytes: &[u8]) -> Result<(), String> {
    use std::io::Read;
    let mut head = vec![0u8; 512];
    let ok = match d.media_type.as_str() {
        "application/vnd.oci.image.layer.v1.tar" => is_tar(bytes),
        "application/vnd.oci.image.layer.v1.tar+gzip" => flate2::read::GzDecoder::new(bytes)
            .read_exact(&mut head)
            .is_ok_and(|()| is_tar(&head)),
        "application/vnd.oci.image.layer.v1.tar+zstd" => zstd::stream::read::Decoder::new(bytes)
            .and_then(|mut r| r.read_exact(&mut head))
            .is_ok_and(|()| is_tar(&head)),
        other => {
            return Err(format!(
                "layer {}: unsupported media type {other}",
                d.digest
            ))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("layer {} is not a {}", d.digest, d.media_type))
    }
}

/// bashbrew's oci-import checks on the layout folder `layout` (with `file` =
/// `index.json`). `Err` says what bashbrew would refuse.
pub fn oci_import_check(layout: &Path) -> Result<(), String> {
    let read = |name: &str| {
        std::fs::read(layout.join(name))
            .map_err(|e| format!("{}: {e}", layout.join(name).display()))
    };
    let oci_layout: ImageLayout = strict(&read("oci-layout")?, "oci-layout")?;
    if oci_layout.version != "1.0.0" {
        return Err(format!(
            "unsupported OCI image layout version {:?}",
            oci_layout.version
        ));
    }
    let index: Index = strict(&read("index.json")?, "index.json")?;
    if index.schema_version != 2 {
        return Err(format!(
            "unsupported schemaVersion {}",
            index.schema_version
        ));
    }
    if index.manifests.len() != 1 {
        return Err(format!(
            "expected only one manifests entry (not {}) in index.json",
            index.manifests.len()
        ));
    }
    let desc = index.manifests[0].clone();
    if desc.media_type != IMAGE_MANIFEST {
        return Err(format!(
            "unsupported mediaType {:?} in descriptor",
            desc.media_type
        ));
    }
    if let Some(p) = &desc.platform {
        strict::<Platform>(p.to_string().as_bytes(), "index.json platform")?;
    }
    let bytes = read_blob(layout, &desc)?;
    let manifest: Manifest = strict(&bytes, "image manifest")?;
    if manifest.schema_version != 2 {
        return Err(format!(
            "manifest schemaVersion {}",
            manifest.schema_version
        ));
    }
    read_blob(layout, &manifest.config)?;
    for layer in &manifest.layers {
        check_layer(layer, &read_blob(layout, layer)?)?;
    }
    Ok(())
}

/// [`oci_import_check`] as an assertion.
pub fn assert_oci_import(layout: &Path) {
    if let Err(e) = oci_import_check(layout) {
        panic!("bashbrew oci-import would refuse {}: {e}", layout.display());
    }
}

/// Every per-arch layout folder under `out` (`<image...>/<dist>/<arch>/`,
/// recognised by their arch name), sorted.
pub fn arch_layouts(out: &Path) -> Vec<std::path::PathBuf> {
    const ARCHES: &[&str] = &[
        "amd64", "arm32v5", "arm32v6", "arm32v7", "arm64v8", "i386", "mips64le", "ppc64le",
        "riscv64", "s390x",
    ];
    let mut found = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if ARCHES.contains(&name.as_str()) && path.join("oci-layout").is_file() {
                found.push(path);
            } else if name != "blobs" {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Every per-arch layout under `out` passes `oci-image-tool validate --type
/// image` (no `--ref`: every entry of index.json), skopeo and umoci read it by
/// its tag, and bashbrew's checks pass. Returns how many layouts were checked.
pub fn check_all_layouts(out: &Path) -> usize {
    let layouts = arch_layouts(out);
    assert!(
        !layouts.is_empty(),
        "no per-arch layout under {}",
        out.display()
    );
    for dir in &layouts {
        assert_oci_import(dir);
        super::tool(
            "oci-image-tool",
            &["validate", "--type", "image", dir.to_str().unwrap()],
        );
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: the image has no tag", dir.display()));
        let reference = format!("{}:{tag}", dir.display());
        super::tool("skopeo", &["inspect", "--raw", &format!("oci:{reference}")]);
        super::tool("umoci", &["stat", "--image", &reference]);
    }
    layouts.len()
}
