//! CycloneDX 1.6 JSON (<https://cyclonedx.org/docs/1.6/json/>): the image is the
//! BOM's `metadata.component` (a container named by its manifest digest); every
//! installed package (or, with no package database, every file) is a component
//! it depends on.

use serde_json::{json, Value};

use super::{uuid_from, Sbom};

/// The BOM, as canonical JSON.
pub fn document(sbom: &Sbom<'_>) -> Vec<u8> {
    let s = &sbom.subject;
    let image_ref = s.purl();
    let mut refs: Vec<String> = Vec::new();
    let mut components: Vec<Value> = Vec::new();
    for (n, p) in sbom.packages().iter().enumerate() {
        // A purl is unique per name, version and arch; the index keeps it so
        // even for a database listing a package twice.
        let bom_ref = format!("{}#{}", p.purl, n + 1);
        let mut c = json!({
            "type": "library",
            "bom-ref": bom_ref,
            "name": p.pkg.name,
            "version": p.pkg.version,
            "purl": p.purl,
        });
        let mut props = Vec::new();
        if !p.pkg.arch.is_empty() {
            props.push(json!({ "name": "imgraph:package:arch", "value": p.pkg.arch }));
        }
        if let Some(src) = &p.pkg.source {
            props.push(json!({ "name": "imgraph:package:source", "value": src }));
            if let Some(v) = &p.pkg.source_version {
                props.push(json!({ "name": "imgraph:package:source-version", "value": v }));
            }
        }
        if !props.is_empty() {
            c["properties"] = Value::Array(props);
        }
        if let Some(sha) = p.sha256 {
            c["hashes"] = json!([{ "alg": "SHA-256", "content": sha }]);
        }
        if let Some(url) = p.download {
            c["externalReferences"] = json!([{ "type": "distribution", "url": url }]);
        }
        if let Some(l) = &p.license {
            c["licenses"] = json!([{ "expression": l.expression }]);
        }
        refs.push(bom_ref);
        components.push(c);
    }
    for f in &sbom.contents.files {
        let bom_ref = format!("file:./{}", f.path);
        components.push(json!({
            "type": "file",
            "bom-ref": bom_ref,
            "name": format!("./{}", f.path),
            "hashes": [
                { "alg": "SHA-1", "content": f.sha1 },
                { "alg": "SHA-256", "content": f.sha256 },
            ],
        }));
        refs.push(bom_ref);
    }
    let doc = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid_from(s.digest)),
        "version": 1,
        "metadata": {
            "timestamp": s.created,
            "tools": { "components": [{
                "type": "application",
                "name": "imgraph",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": s.image,
                "version": s.digest,
                "purl": image_ref,
                "hashes": [{ "alg": "SHA-256", "content": s.hex() }],
                "description": format!("The platform image {}", s.label()),
            },
        },
        "components": components,
        "dependencies": [{ "ref": image_ref, "dependsOn": refs }],
    });
    crate::oci::image::canonical_json(&doc)
}
