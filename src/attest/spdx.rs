//! SPDX 2.3 JSON (<https://spdx.github.io/spdx-spec/v2.3/>): the document
//! DESCRIBES the image (a CONTAINER package named by its manifest digest), which
//! CONTAINS one package per installed package, or every file when the rootfs
//! has no package database.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{Sbom, TOOL};

const NOASSERTION: &str = "NOASSERTION";

/// The SPDX id of the `n`th element: letters, digits, `.` and `-` only.
fn spdx_id(prefix: &str, n: usize, name: &str) -> String {
    format!("SPDXRef-{prefix}-{n}-{}", super::license::idstring(name))
}

/// The document, as canonical JSON.
pub fn document(sbom: &Sbom<'_>) -> Vec<u8> {
    let s = &sbom.subject;
    let image_id = "SPDXRef-Image";
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": s.image,
        "versionInfo": s.digest,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "checksums": [{ "algorithm": "SHA256", "checksumValue": s.hex() }],
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": s.purl(),
        }],
        "comment": format!("The platform image {} (manifest {}).", s.label(), s.digest),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    for (n, p) in sbom.packages().iter().enumerate() {
        let id = spdx_id("Package", n + 1, &p.pkg.name);
        let mut pkg = json!({
            "SPDXID": id,
            "name": p.pkg.name,
            "versionInfo": p.pkg.version,
            "downloadLocation": p.download.unwrap_or(NOASSERTION),
            "filesAnalyzed": false,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": p.license.as_ref().map_or(NOASSERTION, |l| l.expression.as_str()),
            "copyrightText": NOASSERTION,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl,
            }],
        });
        if let Some(sha) = p.sha256 {
            pkg["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": sha }]);
        }
        if let Some(src) = &p.pkg.source {
            let version = p.pkg.source_version.as_deref().unwrap_or(&p.pkg.version);
            pkg["sourceInfo"] = json!(format!("built from source package {src} {version}"));
        }
        if !p.pkg.arch.is_empty() {
            pkg["comment"] = json!(format!("architecture: {}", p.pkg.arch));
        }
        if let Some(l) = &p.license {
            extracted.extend(l.refs.clone());
        }
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let files: Vec<Value> = sbom
        .contents
        .files
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let id = spdx_id("File", n + 1, "");
            relationships.push(json!({
                "spdxElementId": image_id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": id.trim_end_matches('-'),
            }));
            json!({
                "SPDXID": id.trim_end_matches('-'),
                "fileName": format!("./{}", f.path),
                "checksums": [
                    { "algorithm": "SHA1", "checksumValue": f.sha1 },
                    { "algorithm": "SHA256", "checksumValue": f.sha256 },
                ],
                "licenseConcluded": NOASSERTION,
                "copyrightText": NOASSERTION,
            })
        })
        .collect();
    if !sbom.contents.files.is_empty() {
        // Files CONTAINED by a package make it an analysed one: SPDX then asks
        // for the verification code over their SHA-1s (clause 7.9).
        let mut sha1s: Vec<&str> = sbom
            .contents
            .files
            .iter()
            .map(|f| f.sha1.as_str())
            .collect();
        sha1s.sort_unstable();
        let code = hex::encode(<sha1::Sha1 as sha1::Digest>::digest(
            sha1s.concat().as_bytes(),
        ));
        packages[0]["filesAnalyzed"] = json!(true);
        packages[0]["packageVerificationCode"] = json!({ "packageVerificationCodeValue": code });
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{} {}", s.label(), s.digest),
        "documentNamespace": format!(
            "https://imgraph.invalid/spdx/{}/{}",
            super::purl::encode(s.image),
            s.hex()
        ),
        "creationInfo": {
            "created": s.created,
            "creators": [format!("Tool: {TOOL}")],
        },
        "documentDescribes": [image_id],
        "packages": packages,
        "relationships": relationships,
    });
    if !files.is_empty() {
        doc["files"] = Value::Array(files);
    }
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = extracted
            .into_iter()
            .map(|(id, text)| {
                json!({
                    "licenseId": id,
                    "name": id.trim_start_matches("LicenseRef-"),
                    "extractedText": text,
                })
            })
            .collect();
    }
    crate::oci::image::canonical_json(&doc)
}
