//! OCI 1.1 referrers: artifact manifests (an SBOM, a provenance statement)
//! whose `subject` is an image manifest, pushed so that `oras discover`,
//! `cosign tree` and `imgraph verify --pushed` find them.
//!
//! A registry with the referrers API indexes them itself (it answers the
//! manifest PUT with an `OCI-Subject` header). One without it (Debian's
//! docker-registry 2.8) gets the distribution-spec fallback: the tag
//! `sha256-<hex of the subject>` holds an image index of referrer descriptors,
//! read, extended and written back, keeping every entry other tools put there.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use ureq::http::Method;

use super::client::{drain, Client, RegistryError};
use super::push::{BlobSource, ManifestBlob};
use crate::manifest::reference::validate_digest;

const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// An artifact manifest to push as a referrer of `subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// The artifact manifest; its `subject` names `subject`.
    pub manifest: ManifestBlob,
    /// Its config and layers (pushed with the image's blobs).
    pub blobs: Vec<BlobSource>,
    /// The described manifest's digest.
    pub subject: String,
}

/// One entry of a referrers list (the API's answer or the fallback tag's index).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerDescriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// The fallback tag of `subject`: `sha256:<hex>` -> `sha256-<hex>`.
pub fn fallback_tag(subject: &str) -> String {
    subject.replacen(':', "-", 1)
}

/// The index entry for `m`: its artifactType (or config media type) and
/// annotations copied from the manifest, as the distribution spec asks.
fn descriptor_of(m: &ManifestBlob) -> Value {
    let doc: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
    let mut d = Map::new();
    d.insert("mediaType".into(), json!(m.media_type));
    d.insert("digest".into(), json!(m.digest));
    d.insert("size".into(), json!(m.bytes.len()));
    let artifact_type = doc
        .get("artifactType")
        .or_else(|| doc.pointer("/config/mediaType"))
        .cloned();
    if let Some(t) = artifact_type {
        d.insert("artifactType".into(), t);
    }
    if let Some(a) = doc.get("annotations").filter(|a| a.is_object()) {
        d.insert("annotations".into(), a.clone());
    }
    Value::Object(d)
}

impl Client {
    /// The referrers of `subject` in `repo`: from the referrers API, or (a
    /// registry without it answers 404) from the fallback tag. Empty when
    /// there are none.
    pub fn referrers(
        &self,
        repo: &str,
        subject: &str,
    ) -> Result<Vec<ReferrerDescriptor>, RegistryError> {
        validate_digest(subject)?;
        match self.referrers_api(repo, subject)? {
            Some(list) => Ok(list),
            None => Ok(self
                .fallback_index(repo, subject)?
                .map(|v| entries(&v))
                .unwrap_or_default()),
        }
    }

    /// `GET /v2/<repo>/referrers/<digest>`; `None` when the registry has no
    /// such API.
    fn referrers_api(
        &self,
        repo: &str,
        subject: &str,
    ) -> Result<Option<Vec<ReferrerDescriptor>>, RegistryError> {
        let scopes = [Self::pull_scope(repo)];
        let mut req = self.request(
            Method::GET,
            &format!("/v2/{repo}/referrers/{subject}"),
            repo,
            &scopes,
        );
        req.headers.push(("Accept", INDEX_MEDIA_TYPE.to_owned()));
        let response = self.send(&req)?;
        match response.status().as_u16() {
            200 => {}
            400 | 404 | 405 | 501 => {
                drain(response);
                return Ok(None);
            }
            _ => return Err(self.status_error(&req, response)),
        }
        let bytes = response
            .into_body()
            .with_config()
            .limit(8 << 20)
            .read_to_vec()
            .map_err(|source| RegistryError::Transport {
                host: self.registry.host.clone(),
                request: super::client::request_line(&req.method, &req.url),
                source: Box::new(source),
            })?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.bad_index(repo, subject, &e.to_string()))?;
        Ok(Some(entries(&v)))
    }

    /// The fallback tag's index, or `None` when the tag does not exist.
    fn fallback_index(&self, repo: &str, subject: &str) -> Result<Option<Value>, RegistryError> {
        let tag = fallback_tag(subject);
        match self.fetch_manifest(repo, &tag) {
            Ok((_, bytes, _)) => {
                let v: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| self.bad_index(repo, subject, &e.to_string()))?;
                if !v.get("manifests").is_some_and(Value::is_array) {
                    return Err(self.bad_index(repo, subject, "it has no `manifests` list"));
                }
                Ok(Some(v))
            }
            Err(RegistryError::ManifestNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn bad_index(&self, repo: &str, subject: &str, reason: &str) -> RegistryError {
        RegistryError::BadReferrersIndex {
            host: self.registry.host.clone(),
            repository: repo.to_owned(),
            tag: fallback_tag(subject),
            reason: reason.to_owned(),
        }
    }

    /// Whether `r`'s manifest is in `repo` and listed among its subject's referrers.
    pub fn has_referrer(&self, repo: &str, r: &Referrer) -> Result<bool, RegistryError> {
        if self.head_manifest(repo, &r.manifest.digest)?.as_deref() != Some(&r.manifest.digest) {
            return Ok(false);
        }
        Ok(self
            .referrers(repo, &r.subject)?
            .iter()
            .any(|d| d.digest == r.manifest.digest))
    }

    /// Pushes the manifests of `group` (referrers of one subject) by digest
    /// (their blobs must be there) and makes sure each is listed: by the
    /// registry (`OCI-Subject` answer, or the referrers API) or in the fallback
    /// tag, which is then read, extended and written back once for the whole
    /// group. Returns how many manifests were written (the fallback index
    /// counts as one).
    pub(super) fn push_referrers(
        &self,
        repo: &str,
        subject: &str,
        group: &[&Referrer],
        scopes: &[String],
    ) -> Result<usize, RegistryError> {
        let mut written = 0;
        let mut unlisted: Vec<&Referrer> = Vec::new();
        let mut api_listing: Option<Option<Vec<ReferrerDescriptor>>> = None;
        for r in group {
            let digest = r.manifest.digest.as_str();
            if self.head_manifest_scoped(repo, digest, scopes)?.as_deref() != Some(digest) {
                written += 1;
                if self
                    .put_manifest(repo, digest, &r.manifest, scopes)?
                    .is_none_or(|s| s != subject)
                {
                    unlisted.push(r);
                }
                continue;
            }
            // Already there: listed by the API (asked once per subject), or
            // look for it in the fallback tag below.
            if api_listing.is_none() {
                api_listing = Some(self.referrers_api(repo, subject)?);
            }
            match api_listing.as_ref().and_then(Option::as_ref) {
                Some(listed) if listed.iter().any(|d| d.digest == digest) => {}
                _ => unlisted.push(r),
            }
        }
        if unlisted.is_empty() {
            return Ok(written);
        }
        // Fallback tag: read, add ours if missing, write back everything. Two
        // pushes of this build (two dists sharing a platform manifest, two
        // registries behind one host) must not interleave their read and write,
        // or one's entry is lost; the registry offers no compare-and-swap, so
        // this process serialises its own updates, per repository: pushes to
        // different ones (the same image to two registries) go side by side.
        let _one_at_a_time = fallback_lock(&format!("{}/{repo}", self.registry.host));
        let mut index = self.fallback_index(repo, subject)?.unwrap_or_else(
            || json!({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}),
        );
        let list = index["manifests"]
            .as_array_mut()
            .expect("checked to be a list");
        let mut added = false;
        for r in unlisted {
            let digest = r.manifest.digest.as_str();
            if !list
                .iter()
                .any(|d| d.get("digest").and_then(Value::as_str) == Some(digest))
            {
                list.push(descriptor_of(&r.manifest));
                added = true;
            }
        }
        if !added {
            return Ok(written);
        }
        let bytes = serde_json::to_vec(&index).unwrap_or_default();
        let blob = ManifestBlob {
            digest: super::sha256_digest(&bytes),
            media_type: INDEX_MEDIA_TYPE.to_owned(),
            bytes,
        };
        self.put_manifest(repo, &fallback_tag(subject), &blob, scopes)?;
        Ok(written + 1)
    }
}

/// Held while a fallback tag of `repository` (`host/name`) is read, modified
/// and written back.
fn fallback_lock(repository: &str) -> std::sync::MutexGuard<'static, ()> {
    type Locks = Vec<(String, &'static std::sync::Mutex<()>)>;
    static LOCKS: std::sync::Mutex<Locks> = std::sync::Mutex::new(Vec::new());
    let lock = {
        let mut locks = LOCKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match locks.iter().find(|(k, _)| k == repository) {
            Some((_, l)) => *l,
            None => {
                // One small allocation per repository for the life of the process.
                let l: &'static std::sync::Mutex<()> =
                    Box::leak(Box::new(std::sync::Mutex::new(())));
                locks.push((repository.to_owned(), l));
                l
            }
        }
    };
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The descriptors of an index, skipping entries that are not descriptors.
fn entries(index: &Value) -> Vec<ReferrerDescriptor> {
    index
        .get("manifests")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|d| serde_json::from_value(d.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_descriptor_copies_artifact_type_and_annotations() {
        let bytes = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/spdx+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1},"annotations":{"org.opencontainers.image.created":"1970-01-01T00:00:00Z"}}"#;
        let m = ManifestBlob {
            digest: super::super::sha256_digest(bytes),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            bytes: bytes.to_vec(),
        };
        let d = descriptor_of(&m);
        assert_eq!(d["artifactType"], "application/spdx+json");
        assert_eq!(
            d["annotations"]["org.opencontainers.image.created"],
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(d["size"], bytes.len());
        assert_eq!(fallback_tag("sha256:abc"), "sha256-abc");
        let parsed = entries(&json!({"manifests": [d, {"no": "digest"}]}));
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            parsed[0].artifact_type.as_deref(),
            Some("application/spdx+json")
        );
    }
}
