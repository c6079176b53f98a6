//! Cosign signatures where cosign looks for them: the tag
//! `sha256-<hex of the signed manifest>.sig` holds an image manifest with one
//! layer per signature. Each layer's bytes are the simple-signing payload
//! (`application/vnd.dev.cosign.simplesigning.v1+json`) and its annotation
//! `dev.cosignproject.cosign/signature` the base64 signature over them.
//!
//! Adding a signature reads that manifest and appends a layer, keeping the
//! signatures others made; a signature already there (same payload, same
//! signature bytes: signing is deterministic) writes nothing.

use base64::Engine as _;
use serde_json::{json, Value};
use ureq::http::Method;

use super::client::{drain, with_query, Body, Client, RegistryError};
use super::push::ManifestBlob;
use crate::manifest::reference::validate_digest;

/// Media type of a signature layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// One signature to store for `subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The signed manifest's digest.
    pub subject: String,
    /// The simple-signing payload (the layer's bytes).
    pub payload: Vec<u8>,
    /// The DER signature over `payload`.
    pub signature: Vec<u8>,
}

impl SignatureLayer {
    fn signature_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.signature)
    }
}

/// A signature read back from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSignature {
    /// The payload's bytes (digest-checked).
    pub payload: Vec<u8>,
    /// The DER signature (empty if the annotation was not base64).
    pub signature: Vec<u8>,
}

/// `sha256:<hex>` -> `sha256-<hex>.sig`.
pub fn signature_tag(subject: &str) -> String {
    format!("{}.sig", subject.replacen(':', "-", 1))
}

/// The image config cosign writes for a signature image: no platform, one
/// diff_id per (uncompressed) layer.
fn config_for(layers: &[Value]) -> Vec<u8> {
    let diff_ids: Vec<&Value> = layers.iter().filter_map(|l| l.get("digest")).collect();
    let history: Vec<Value> = layers
        .iter()
        .map(|_| json!({"created": "0001-01-01T00:00:00Z"}))
        .collect();
    serde_json::to_vec(&json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap_or_default()
}

impl Client {
    /// The signature manifest of `subject`, or `None` when there is none.
    fn signature_manifest(
        &self,
        repo: &str,
        subject: &str,
    ) -> Result<Option<Value>, RegistryError> {
        validate_digest(subject)?;
        let tag = signature_tag(subject);
        match self.fetch_manifest(repo, &tag) {
            Ok((_, bytes, _)) => {
                let bad = |reason: String| RegistryError::BadSignatureManifest {
                    host: self.registry.host.clone(),
                    repository: repo.to_owned(),
                    tag: tag.clone(),
                    reason,
                };
                let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
                if !v.get("layers").is_some_and(Value::is_array) {
                    return Err(bad("it has no `layers` list".into()));
                }
                Ok(Some(v))
            }
            Err(RegistryError::ManifestNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every simple-signing signature stored for `subject`, payloads fetched.
    pub fn signatures(
        &self,
        repo: &str,
        subject: &str,
    ) -> Result<Vec<FoundSignature>, RegistryError> {
        let Some(m) = self.signature_manifest(repo, subject)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for layer in m["layers"].as_array().into_iter().flatten() {
            if layer.get("mediaType").and_then(Value::as_str) != Some(SIMPLE_SIGNING) {
                continue;
            }
            let (Some(digest), Some(sig)) = (
                layer.get("digest").and_then(Value::as_str),
                layer
                    .pointer(&format!(
                        "/annotations/{}",
                        SIGNATURE_ANNOTATION.replace('/', "~1")
                    ))
                    .and_then(Value::as_str),
            ) else {
                continue;
            };
            let mut payload = Vec::new();
            self.get_blob(repo, digest, &mut payload)?;
            out.push(FoundSignature {
                payload,
                signature: base64::engine::general_purpose::STANDARD
                    .decode(sig)
                    .unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Whether `s` (this payload with this signature) is stored for its subject.
    pub fn has_signature(&self, repo: &str, s: &SignatureLayer) -> Result<bool, RegistryError> {
        Ok(self
            .signature_manifest(repo, &s.subject)?
            .is_some_and(|m| has_layer(&m, s)))
    }

    /// Adds `s` to its subject's signature manifest (payload and config
    /// blobs first, then the manifest at the `.sig` tag). Returns whether
    /// anything was written.
    pub(super) fn push_signature(
        &self,
        repo: &str,
        s: &SignatureLayer,
        scopes: &[String],
    ) -> Result<bool, RegistryError> {
        let mut m = self
            .signature_manifest(repo, &s.subject)?
            .unwrap_or_else(|| {
                json!({
                    "schemaVersion": 2,
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "config": {},
                    "layers": [],
                })
            });
        if has_layer(&m, s) {
            return Ok(false);
        }
        let payload_digest = super::sha256_digest(&s.payload);
        self.push_bytes_blob(repo, &payload_digest, &s.payload, scopes)?;
        let layers = m["layers"].as_array_mut().expect("checked to be a list");
        layers.push(json!({
            "mediaType": SIMPLE_SIGNING,
            "digest": payload_digest,
            "size": s.payload.len(),
            "annotations": {SIGNATURE_ANNOTATION: s.signature_b64()},
        }));
        let config = config_for(layers);
        let config_digest = super::sha256_digest(&config);
        self.push_bytes_blob(repo, &config_digest, &config, scopes)?;
        m["config"] = json!({
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": config.len(),
        });
        let bytes = serde_json::to_vec(&m).unwrap_or_default();
        let blob = ManifestBlob {
            digest: super::sha256_digest(&bytes),
            media_type: m
                .get("mediaType")
                .and_then(Value::as_str)
                .unwrap_or(MANIFEST_MEDIA_TYPE)
                .to_owned(),
            bytes,
        };
        self.put_manifest(repo, &signature_tag(&s.subject), &blob, scopes)?;
        Ok(true)
    }

    /// A small in-memory blob: HEAD, else one upload session (POST, then PUT
    /// with the bytes), retried as a whole.
    pub(super) fn push_bytes_blob(
        &self,
        repo: &str,
        digest: &str,
        bytes: &[u8],
        scopes: &[String],
    ) -> Result<bool, RegistryError> {
        self.retry.run(
            |_| {
                if self.head_blob_once(repo, digest, scopes)? {
                    return Ok(false);
                }
                let location = self.open_upload(repo, digest, scopes)?;
                let mut req = self.request(
                    Method::PUT,
                    &with_query(&location, "digest", digest),
                    repo,
                    scopes,
                );
                req.headers
                    .push(("Content-Type", "application/octet-stream".to_owned()));
                req.body = Body::Bytes(bytes);
                let response = self.attempt(&req)?;
                if response.status().as_u16() != 201 {
                    return Err(self.status_error(&req, response));
                }
                drain(response);
                Ok(true)
            },
            RegistryError::verdict,
        )
    }
}

/// Whether `m` has a layer with `s`'s payload and signature.
fn has_layer(m: &Value, s: &SignatureLayer) -> bool {
    let digest = super::sha256_digest(&s.payload);
    let sig = s.signature_b64();
    m["layers"].as_array().into_iter().flatten().any(|l| {
        l.get("digest").and_then(Value::as_str) == Some(&digest)
            && l.get("annotations")
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                .and_then(Value::as_str)
                == Some(&sig)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_matched_by_payload_and_signature() {
        let s = SignatureLayer {
            subject: "sha256:aa".into(),
            payload: b"{}".to_vec(),
            signature: vec![1, 2, 3],
        };
        let mut m = json!({"layers": [{"digest": super::super::sha256_digest(b"{}"), "annotations": {SIGNATURE_ANNOTATION: "AQID"}}]});
        assert!(has_layer(&m, &s));
        m["layers"][0]["annotations"][SIGNATURE_ANNOTATION] = json!("AQIE");
        assert!(!has_layer(&m, &s));
        assert_eq!(signature_tag("sha256:ab"), "sha256-ab.sig");
        let c: Value =
            serde_json::from_slice(&config_for(m["layers"].as_array().unwrap())).unwrap();
        assert_eq!(
            c["rootfs"]["diff_ids"][0],
            json!(super::super::sha256_digest(b"{}"))
        );
    }
}
