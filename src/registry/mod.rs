//! A small OCI distribution-spec client: what `imgraph build --push` and
//! `imgraph verify --pushed` need, and nothing more.
//!
//! - [`reference`]: `host[:port]/namespace` + image name -> registry host + repository.
//! - [`docker_config`]: credentials as `docker login` writes them.
//! - [`auth`]: `WWW-Authenticate` challenges, basic auth, bearer tokens cached per scope.
//! - [`retry`]: bounded exponential backoff for transient failures.
//! - [`client`]: the HTTP client: manifests and blobs, by digest, verified.
//! - [`artifact`]: generic OCI artifacts (config + blobs under a tag): the step cache's records.
//! - [`push`]: blobs (HEAD-skip, cross-repo mount, monolithic or chunked upload),
//!   then manifests, then the index, then referrers and signatures, then the tags.
//! - [`referrers`]: OCI 1.1 referrers (the API, or the `sha256-<hex>` fallback tag).
//! - [`signatures`]: cosign signatures at the `sha256-<hex>.sig` tag.
//!
//! Secrets (passwords, identity tokens, bearer tokens) only ever live inside
//! [`Secret`], whose `Debug` and `Display` print `<redacted>`.

pub mod artifact;
pub mod auth;
pub mod client;
pub mod docker_config;
pub mod push;
pub mod referrers;
pub mod retry;
pub mod signatures;
mod stream_check;

pub use crate::manifest::reference::{ImageRepository, ReferenceError, RegistryUrl};
pub use client::{Client, Registry, RegistryError};
pub use docker_config::{Credential, CredentialError, CredentialSource};
pub use push::{BlobSource, ManifestBlob, PushEvent, PushPlan, PushReport};
pub use referrers::{Referrer, ReferrerDescriptor};
pub use retry::RetryPolicy;
pub use signatures::{FoundSignature, SignatureLayer};

use std::fmt;

/// A password, identity token or bearer token.
///
/// It cannot be printed: `Debug` and `Display` both write `<redacted>`.
/// [`Secret::expose`] is the only way to get at the value, for building a header.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, to put in a request. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The media types imgraph reads and writes, in the order of preference it
/// sends in `Accept`.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

pub use crate::digest::sha256 as sha256_digest;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
    }
}
