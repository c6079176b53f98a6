//! The validated manifest: every template resolved, every path checked, one
//! [`PlatformSpec`] per `(image, dist, arch)` and one [`DistSpec`] per `(image, dist)`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::arch::Arch;
use super::diagnostic::SourceFile;
use super::raw::ConfigTable;

/// A loaded, valid `images.toml`.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Text and path, for errors that point into it.
    pub source: SourceFile,
    /// The folder holding images.toml: relative paths start here.
    pub root: PathBuf,
    /// `[settings]`.
    pub settings: Settings,
    /// `[registries.NAME]`, by name.
    pub registries: BTreeMap<String, Registry>,
    /// One per image x dist x arch, sorted by image, dist (as listed), arch (as listed).
    pub platforms: Vec<PlatformSpec>,
    /// One per image x dist.
    pub dists: Vec<DistSpec>,
    /// `images.lock` beside it (empty when there is none).
    pub lock: super::lock::Lock,
}

impl Manifest {
    /// `images.lock`, beside `images.toml`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(super::lock::LOCK_FILE)
    }

    /// Every `debian` platform without a current entry in the lock (missing,
    /// resolved for other options, unbound or edited by hand), with how its entry
    /// stands: what `lock --check` reports and `plan` refuses.
    pub fn unlocked_platforms(&self) -> Vec<(&PlatformSpec, super::lock::EntryState)> {
        self.platforms
            .iter()
            .filter_map(|p| match &p.rootfs {
                RootfsSource::Debian(d) => Some((p, self.lock.state(&p.label(), d))),
                _ => None,
            })
            .filter(|(_, state)| *state != super::lock::EntryState::Current)
            .collect()
    }
}

/// `[settings]` with defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How each platform's `created` time is chosen.
    pub created: CreatedSpec,
    /// Layer compression.
    pub compression: Compression,
    /// Export folder (absolute).
    pub out: PathBuf,
    /// Cache folder (absolute) as the manifest says; `--cache`/`IMGRAPH_CACHE` win over it.
    pub cache: PathBuf,
    /// SBOM formats per platform image (`sbom`), unless an image says otherwise.
    pub sbom: Vec<SbomFormat>,
    /// Provenance per platform image (`provenance`), unless an image says otherwise.
    pub provenance: bool,
    /// `sign = { key = ... }`: sign what is pushed.
    pub sign: Option<SignSpec>,
    /// `cache_registry`: the shared step cache, if any (`--cache-registry` wins over it).
    pub cache_registry: Option<CacheRegistry>,
    /// `runners`: CI runner label by arch name or `default`, for `plan --matrix`.
    pub runners: BTreeMap<String, String>,
    /// `library`: what `imgraph library` cannot learn from git.
    pub library: LibrarySettings,
}

/// `[settings] library`: the docker-library manifest file's fields git cannot say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LibrarySettings {
    /// `Maintainers:` lines, each checked against docker-library's format.
    pub maintainers: Vec<String>,
    /// `GitRepo:`, when not the layouts repository's `origin` remote.
    pub git_repo: Option<String>,
    /// The folder (absolute) holding the committed `<image>/<dist>/<arch>/`
    /// layouts, when it is not `out`.
    pub out: Option<PathBuf>,
}

/// An SBOM document format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SbomFormat {
    /// SPDX 2.3 JSON (`application/spdx+json`).
    Spdx,
    /// CycloneDX 1.6 JSON (`application/vnd.cyclonedx+json`).
    Cyclonedx,
}

impl SbomFormat {
    /// The name in `images.toml`.
    pub fn name(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "spdx",
            SbomFormat::Cyclonedx => "cyclonedx",
        }
    }

    /// By its name in `images.toml`.
    pub fn by_name(name: &str) -> Option<SbomFormat> {
        [SbomFormat::Spdx, SbomFormat::Cyclonedx]
            .into_iter()
            .find(|f| f.name() == name)
    }
}

/// `[settings] sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignSpec {
    /// The private key file (absolute).
    pub key: PathBuf,
    /// Where `sign` is written in images.toml, for errors about the key.
    pub span: std::ops::Range<usize>,
}

/// A step cache in an OCI registry (`[settings] cache_registry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRegistry {
    /// `host[:port]`, without scheme.
    pub host: String,
    /// The repository records and blobs go to (`acme/imgraph-cache`).
    pub repository: String,
    /// Plain HTTP.
    pub insecure: bool,
    /// Read only, or read and write.
    pub mode: CacheMode,
}

/// What a build may do with the cache registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Look records up, never write (pull-request builds).
    Read,
    /// Look up, and write the record of every executed step.
    ReadWrite,
}

impl CacheRegistry {
    /// Parses `[http://|https://]host[:port]/repository` as `--cache-registry` and
    /// the string form take it: a scheme decides plain HTTP, else `insecure`.
    pub fn parse(url: &str, insecure: Option<bool>, mode: CacheMode) -> Result<Self, String> {
        let parsed = super::reference::RegistryUrl::parse(url).map_err(|e| e.to_string())?;
        let Some(repository) = parsed.namespace.filter(|n| !n.is_empty()) else {
            return Err(format!(
                "cache registry {url:?} names no repository: write host[:port]/repository, e.g. \"ghcr.io/acme/imgraph-cache\""
            ));
        };
        let insecure =
            match (parsed.plain_http, insecure) {
                (Some(false), Some(true)) => return Err(
                    "`https://` and `insecure = true` disagree: one says TLS, the other plain HTTP"
                        .into(),
                ),
                (Some(true), Some(false)) => return Err(
                    "`http://` and `insecure = false` disagree: one says plain HTTP, the other TLS"
                        .into(),
                ),
                (Some(plain), _) => plain,
                (None, i) => i.unwrap_or(false),
            };
        Ok(CacheRegistry {
            host: parsed.host,
            repository,
            insecure,
            mode,
        })
    }
}

/// Where `created` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreatedSpec {
    /// A fixed time (RFC 3339, or `SOURCE_DATE_EPOCH` read at load), seconds since the epoch.
    Fixed(u64),
    /// The commit time of the newest commit touching each platform's inputs.
    Git,
}

/// Layer compression.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar+gzip`: what every client takes.
    #[default]
    Gzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd`: smaller and faster, newer clients only.
    Zstd,
}

impl Compression {
    /// The OCI layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// The readable file name used in exported layouts.
    pub fn file_name(self) -> &'static str {
        match self {
            Compression::Gzip => "rootfs.tar.gz",
            Compression::Zstd => "rootfs.tar.zst",
        }
    }
}

/// A `[registries.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// The table name (`local`).
    pub name: String,
    /// `host[:port]` the API is served on (Docker Hub's names become
    /// `registry-1.docker.io`), without scheme.
    pub host: String,
    /// Path under the host (`bitnami`), possibly empty.
    pub namespace: String,
    /// Plain HTTP (`insecure = true` or an `http://` url), for loopback test registries.
    pub insecure: bool,
    /// The url exactly as written, part of push keys.
    pub url: String,
}

impl Registry {
    /// The repository an image goes to: `<namespace>/<image>`.
    pub fn repository(&self, image: &str) -> String {
        if self.namespace.is_empty() {
            image.to_string()
        } else {
            format!("{}/{image}", self.namespace)
        }
    }
}

/// Who owns the entries of a `dir` source in the image.
///
/// A directory tree is usually built by an unprivileged user, so its on-disk owners are
/// accidental: by default every entry is owned by 0:0, as in any base image. `Preserve`
/// is for trees built as root (or under fakeroot) whose owners are deliberate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Owners {
    /// Every entry is owned by uid 0, gid 0.
    #[default]
    Root,
    /// Numeric uid/gid are taken from the source.
    Preserve,
}

/// Where one platform's root filesystem comes from, templates resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSource {
    /// A directory in the project.
    Dir {
        /// Absolute path.
        path: PathBuf,
        /// As resolved from the template, relative to the manifest (for messages).
        shown: String,
        /// Owners in the layer.
        owners: Owners,
    },
    /// A tarball (.tar, .tar.gz, .tar.xz, .tar.zst).
    Tar {
        /// Absolute path.
        path: PathBuf,
        /// As resolved, relative to the manifest.
        shown: String,
    },
    /// A command that writes the rootfs to `{out}`.
    Command {
        /// The resolved command, `{out}` still in it.
        command: String,
        /// Files and folders whose content is part of the key, absolute, with their shown names.
        inputs: Vec<(PathBuf, String)>,
        /// `{out}` is a `.tar` file rather than a directory.
        out_is_tar: bool,
        /// Killed after this long.
        timeout: Option<Duration>,
    },
    /// Debian packages, resolved by `imgraph lock` and pinned in `images.lock`.
    Debian(DebianSource),
}

/// `rootfs = { debian = { ... } }` for one platform, templates resolved.
///
/// Everything here shapes which packages are selected, so all of it is part of
/// the lock entry's request hash: change it and `imgraph lock` re-resolves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DebianSource {
    /// `essential`, `apt` or `minbase`.
    pub variant: String,
    /// Extra packages.
    pub include: Vec<String>,
    /// Packages left out.
    pub exclude: Vec<String>,
    /// The archive, e.g. `http://deb.debian.org/debian`.
    pub mirror: String,
    /// Suites read from `mirror`, `{dist}` resolved, e.g. `["bookworm", "bookworm-updates"]`.
    pub suites: Vec<String>,
    /// A security archive whose `{dist}-security` suite is read too.
    pub security: Option<String>,
    /// Components, e.g. `["main"]`.
    pub components: Vec<String>,
    /// The keyring that must have signed every InRelease (absolute).
    pub keyring: PathBuf,
    /// The Debian arch of the platform (`arm64` for arm64v8).
    pub debian_arch: String,
    /// The dist, for the `{dist}-security` suite.
    pub dist: String,
    /// `scripts = "strict"`: a maintainer-script command not reproduced fails
    /// the rootfs step (not part of the lock's request: it does not change the
    /// package set).
    pub scripts_strict: bool,
}

impl DebianSource {
    /// Every (mirror, suite) pair read, in order of preference for equal versions.
    pub fn archives(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .suites
            .iter()
            .map(|s| (self.mirror.clone(), s.clone()))
            .collect();
        if let Some(sec) = &self.security {
            out.push((sec.clone(), format!("{}-security", self.dist)));
        }
        out
    }
}

/// One `(image, dist, arch)`: everything needed to build its manifest.
#[derive(Debug, Clone)]
pub struct PlatformSpec {
    /// Image name.
    pub image: String,
    /// Dist name.
    pub dist: String,
    /// The arch row.
    pub arch: &'static Arch,
    /// Where its rootfs comes from.
    pub rootfs: RootfsSource,
    /// The image config table.
    pub config: ConfigTable,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Whether the layer's ELF machines are checked against the arch.
    pub platform_check: bool,
    /// The `created` time, seconds since the epoch.
    pub created: u64,
    /// SBOM formats attached to this platform's image (empty: none).
    pub sbom: Vec<SbomFormat>,
    /// Whether a provenance statement is attached to it.
    pub provenance: bool,
}

impl PlatformSpec {
    /// `hello:one/arm64v8`, the suffix of this platform's step ids.
    pub fn label(&self) -> String {
        format!("{}:{}/{}", self.image, self.dist, self.arch.name)
    }
}

/// One `(image, dist)`: an index, its tags and where it is pushed.
#[derive(Debug, Clone)]
pub struct DistSpec {
    /// Image name.
    pub image: String,
    /// Dist name.
    pub dist: String,
    /// Arches as listed.
    pub arches: Vec<&'static Arch>,
    /// Resolved tags, `latest` included where it applies.
    pub tags: Vec<String>,
    /// Registry names; the first is canonical.
    pub registries: Vec<String>,
    /// Index annotations.
    pub annotations: BTreeMap<String, String>,
}

impl DistSpec {
    /// `hello:one`.
    pub fn label(&self) -> String {
        format!("{}:{}", self.image, self.dist)
    }
}
