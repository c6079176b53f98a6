//! What a platform image is made of, said in the formats other tools read: SBOMs
//! (SPDX 2.3, CycloneDX 1.6), an in-toto provenance statement (SLSA Provenance
//! v1), and the OCI 1.1 artifact manifests that attach each to the image.
//!
//! Everything here is a pure function of its inputs (the layer, the lock, the
//! manifest), written as canonical JSON: the same image always gets the same
//! bytes, so `verify --reproducible` can compare them like any other output.

pub mod artifact;
pub mod contents;
pub mod cyclonedx;
pub mod license;
pub mod provenance;
mod purl;
pub mod spdx;

pub use artifact::{artifact_manifest, EMPTY_CONFIG, EMPTY_MEDIA_TYPE};
pub use contents::{read_layer, Contents, InstalledPackage, PackageKind};

use std::collections::BTreeMap;

/// The tool name and version written into every document.
pub const TOOL: &str = concat!("imgraph-", env!("CARGO_PKG_VERSION"));

/// Reading the image's layer failed.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The layer could not be read back (decoded as it was verified).
    #[error("reading the layer {digest} for the SBOM: {source}")]
    Layer {
        /// The layer's digest.
        digest: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The layer's cache blob (or the contents the layer step kept) is missing
    /// or not what its digest says.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
}

/// The image an SBOM or a provenance statement is about.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Image name (repository), e.g. `minideb`.
    pub image: &'a str,
    /// Dist, e.g. `bookworm`.
    pub dist: &'a str,
    /// The arch's bashbrew name (`arm64v8`).
    pub arch: &'a str,
    /// The OCI architecture (`arm64`), for purls.
    pub oci_arch: &'a str,
    /// The platform manifest's digest (`sha256:...`).
    pub digest: &'a str,
    /// The image's `created` time, RFC 3339.
    pub created: String,
}

impl Subject<'_> {
    /// `hello:one/amd64`.
    pub fn label(&self) -> String {
        format!("{}:{}/{}", self.image, self.dist, self.arch)
    }

    /// The bare hex of the manifest digest.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// The image as a purl (`pkg:oci/hello@sha256%3A...?arch=amd64`).
    pub fn purl(&self) -> String {
        let name = self.image.rsplit('/').next().unwrap_or(self.image);
        format!(
            "pkg:oci/{}@{}?arch={}",
            purl::encode(name),
            purl::encode(self.digest),
            purl::encode(self.oci_arch)
        )
    }
}

/// Everything an SBOM says, gathered once for every format.
#[derive(Debug, Clone)]
pub struct Sbom<'a> {
    /// The image.
    pub subject: Subject<'a>,
    /// What its layer holds.
    pub contents: &'a Contents,
    /// Locked `.deb`s by `name version arch`: (sha256 hex, download url).
    pub debs: BTreeMap<String, (String, String)>,
    /// `(id, version)` for purls' `distro=` when `/etc/os-release` has no
    /// `VERSION_ID` (a `debian` source knows its dist).
    pub distro_fallback: Option<(String, String)>,
}

/// One package as every SBOM format writes it.
#[derive(Debug, Clone)]
pub struct PackageView<'a> {
    /// What the database says.
    pub pkg: &'a InstalledPackage,
    /// Its purl.
    pub purl: String,
    /// sha256 of the `.deb` it came from (from `images.lock`).
    pub sha256: Option<&'a str>,
    /// Where that `.deb` is downloaded from.
    pub download: Option<&'a str>,
    /// The declared license, when machine-readable.
    pub license: Option<license::Declared>,
}

impl Sbom<'_> {
    /// The packages, in the contents' order.
    pub fn packages(&self) -> Vec<PackageView<'_>> {
        let distro = self
            .contents
            .os
            .as_ref()
            .or(self.distro_fallback.as_ref())
            .map(|(id, v)| (id.as_str(), v.as_str()));
        self.contents
            .packages
            .iter()
            .map(|pkg| {
                let locked = self
                    .debs
                    .get(&format!("{} {} {}", pkg.name, pkg.version, pkg.arch))
                    .filter(|_| pkg.kind == PackageKind::Deb);
                let license = match pkg.kind {
                    PackageKind::Deb => self
                        .contents
                        .copyrights
                        .get(&pkg.name)
                        .and_then(|t| license::dep5(t, &pkg.name)),
                    PackageKind::Apk => pkg.license.as_deref().map(|l| license::apk(l, &pkg.name)),
                };
                PackageView {
                    pkg,
                    purl: purl::package(pkg, distro),
                    sha256: locked.map(|(s, _)| s.as_str()),
                    download: locked.map(|(_, u)| u.as_str()),
                    license,
                }
            })
            .collect()
    }
}

/// A UUID (version 5 layout) derived from `seed`: CycloneDX serial numbers
/// that depend on the image only.
pub(crate) fn uuid_from(seed: &str) -> String {
    let h = crate::digest::sha256(seed.as_bytes());
    let hex = h.trim_start_matches("sha256:");
    let mut b: Vec<u8> = hex::decode(&hex[..32]).unwrap_or_else(|_| vec![0; 16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
