//! `images.toml` exactly as written: serde types with spans, before validation.
//!
//! Unknown keys are rejected here (`deny_unknown_fields`) so a typo never silently
//! builds a different image than the user meant.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawManifest {
    #[serde(default)]
    pub(crate) settings: RawSettings,
    #[serde(default)]
    pub(crate) registries: BTreeMap<S<String>, RawRegistry>,
    #[serde(default)]
    pub(crate) images: BTreeMap<S<String>, S<RawImage>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSettings {
    pub(crate) created: Option<S<String>>,
    pub(crate) compression: Option<S<String>>,
    pub(crate) out: Option<S<String>>,
    pub(crate) cache: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistry {
    pub(crate) url: S<String>,
    #[serde(default)]
    pub(crate) insecure: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawImage {
    pub(crate) dists: S<Vec<S<String>>>,
    pub(crate) arches: S<Vec<S<String>>>,
    pub(crate) tags: Option<S<Vec<S<String>>>>,
    pub(crate) latest: Option<S<String>>,
    #[serde(default)]
    pub(crate) registries: Vec<S<String>>,
    pub(crate) rootfs: S<RawRootfs>,
    #[serde(default)]
    pub(crate) config: RawConfig,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) platform_check: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRootfs {
    pub(crate) dir: Option<S<String>>,
    pub(crate) tar: Option<S<String>>,
    pub(crate) command: Option<S<String>>,
    #[serde(default)]
    pub(crate) inputs: Vec<S<String>>,
    pub(crate) owners: Option<S<String>>,
    pub(crate) timeout: Option<S<String>>,
}

/// The image config table; field names are the manifest's, so a change can be
/// reported as `images.hello.config.cmd`.
#[derive(Debug, Deserialize, Default, Clone, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigTable {
    /// Default command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `NAME=value` environment entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// `user[:group]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Image labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `80/tcp` style ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<Vec<String>>,
    /// Volume paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<String>>,
    /// Signal sent to stop the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

pub(crate) type RawConfig = ConfigTable;
