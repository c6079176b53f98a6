//! Generic OCI artifacts: an image manifest with an `artifactType`, a config blob
//! and layer blobs, stored under a tag. The step cache in a registry
//! (`exec::remote_cache`) is built on these; nothing here knows about steps.
//!
//! Writes go blobs first, the manifest last (by digest, then the tag), through
//! the push path: a writer killed half-way leaves blobs nobody names, never a
//! manifest that names a missing blob (the registry also refuses one).

use ureq::http::Method;

use super::client::{drain, Client, RegistryError};
use super::push::{BlobSource, ManifestBlob, PushPlan};
use super::sha256_digest;
use crate::manifest::reference::{validate_digest, validate_repository, validate_tag};

/// The media type of an artifact manifest (an OCI 1.1 image manifest).
pub const ARTIFACT_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Small blobs (configs, JSON documents) are read whole, up to this size.
const SMALL_BLOB_LIMIT: usize = 8 << 20;

impl Client {
    /// The manifest `tag` of `repo` and its digest (hashed here, never taken from a
    /// header), or `None` when there is no such tag.
    pub fn get_tagged(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<(String, Vec<u8>)>, RegistryError> {
        validate_repository(&self.registry.host, repo)?;
        validate_tag(tag)?;
        match self.fetch_manifest(repo, tag) {
            Ok((_, bytes, _)) => Ok(Some((sha256_digest(&bytes), bytes))),
            Err(RegistryError::ManifestNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `repo` has blob `digest` (a HEAD; nothing is downloaded).
    pub fn has_blob(&self, repo: &str, digest: &str) -> Result<bool, RegistryError> {
        validate_digest(digest)?;
        let scopes = [Self::pull_scope(repo)];
        let mut req = self.request(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest}"),
            repo,
            &scopes,
        );
        req.follow_redirects = true;
        let response = self.send(&req)?;
        match response.status().as_u16() {
            200 => {
                drain(response);
                Ok(true)
            }
            404 => {
                drain(response);
                Ok(false)
            }
            _ => Err(self.status_error(&req, response)),
        }
    }

    /// A small blob of `repo`, read whole and checked against `digest`.
    pub fn get_small_blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let mut out = Vec::new();
        let mut limited = Limited {
            inner: &mut out,
            left: SMALL_BLOB_LIMIT,
        };
        self.get_blob(repo, digest, &mut limited)?;
        Ok(out)
    }

    /// Stores an artifact: `blobs` (HEAD-skipped, mounted from `mount_from`, or
    /// uploaded), then `manifest` by digest, then `tag` pointing at it.
    pub fn put_artifact(
        &self,
        repo: &str,
        blobs: Vec<BlobSource>,
        manifest: ManifestBlob,
        tag: &str,
        mount_from: Vec<String>,
    ) -> Result<(), RegistryError> {
        let plan = PushPlan {
            repository: repo.to_owned(),
            blobs,
            manifests: Vec::new(),
            index: manifest,
            tags: vec![tag.to_owned()],
            mount_from,
            referrers: Vec::new(),
            signatures: Vec::new(),
        };
        self.push(&plan, &|_| {}).map(|_| ())
    }
}

/// A writer that refuses more than `left` bytes (a "small" blob that is not).
struct Limited<'a> {
    inner: &'a mut Vec<u8>,
    left: usize,
}

impl std::io::Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.left {
            return Err(std::io::Error::other("blob larger than expected"));
        }
        self.left -= buf.len();
        self.inner.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
