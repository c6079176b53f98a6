//! Step keys and why a step is dirty.
//!
//! A key is blake3 over the canonical JSON of a [`StepInputs`]: the manifest values
//! the step reads (named by their path in `images.toml`), the OUTPUT digests of its
//! upstream steps (so a rebuilt-but-identical rootfs leaves everything below fresh),
//! and content hashes of files it reads. The inputs are stored beside the outputs,
//! so a miss can be explained field by field, as cargo's fingerprints do.

use std::collections::BTreeMap;
use std::fmt;

use crate::graph::StepId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped when imgraph's output for the same inputs changes, invalidating every key.
pub const FORMAT: u32 = 2;

/// Everything a step's output depends on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepInputs {
    /// imgraph's output format version.
    pub format: u32,
    /// Step kind (`layer`).
    pub kind: String,
    /// Manifest values, by their dotted path in `images.toml`.
    pub manifest: BTreeMap<String, Value>,
    /// Upstream outputs by role (`layer`, `manifest:arm64v8`): digests, not keys.
    pub upstream: BTreeMap<String, String>,
    /// Content hashes of files and folders read, by the path shown to users.
    pub content: BTreeMap<String, String>,
    /// Locked Debian packages: name -> `version arch sha256` (`images.lock`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub packages: BTreeMap<String, String>,
}

impl StepInputs {
    /// Starts the inputs of a step kind.
    pub fn new(kind: &str) -> Self {
        StepInputs {
            format: FORMAT,
            kind: kind.to_string(),
            ..Default::default()
        }
    }

    /// Adds a manifest value (anything serialisable).
    pub fn manifest(mut self, path: impl Into<String>, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.manifest.insert(path.into(), value);
        self
    }

    /// Adds an upstream output digest under a role.
    pub fn upstream(mut self, role: impl Into<String>, digest: impl Into<String>) -> Self {
        self.upstream.insert(role.into(), digest.into());
        self
    }

    /// Adds a content hash.
    pub fn content(mut self, path: impl Into<String>, hash: impl Into<String>) -> Self {
        self.content.insert(path.into(), hash.into());
        self
    }

    /// Sets the locked packages.
    pub fn packages(mut self, packages: BTreeMap<String, String>) -> Self {
        self.packages = packages;
        self
    }

    /// The key: blake3 of the canonical JSON (serde_json maps are sorted).
    pub fn key(&self) -> String {
        let bytes = serde_json::to_vec(&serde_json::to_value(self).unwrap_or(Value::Null))
            .unwrap_or_default();
        blake3::hash(&bytes).to_hex().to_string()
    }
}

/// Why a step must run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirtyReason {
    /// Nothing was ever recorded for this step.
    NotBuiltYet,
    /// imgraph itself changed how it builds this step.
    FormatChanged,
    /// A manifest value this step reads changed.
    ManifestChanged {
        /// Dotted path, `images.hello.config.cmd`.
        key: String,
    },
    /// A file or folder this step reads changed.
    InputChanged {
        /// Path relative to the manifest, down to the file where known.
        path: String,
    },
    /// An upstream step produced a different output.
    UpstreamChanged {
        /// The upstream step id.
        step: StepId,
    },
    /// An upstream step has to run first, so this step's key is not known yet.
    UpstreamDirty {
        /// The upstream step id.
        step: StepId,
    },
    /// The inputs are the same as before but the cached output is gone or incomplete.
    OutputMissing,
    /// A push step whose registry does not have the tags pointing at this index.
    NotPushed,
    /// `images.lock` pins other packages for this platform.
    LockChanged {
        /// The first change, `libc6 2.36-9+deb12u8 -> 2.36-9+deb12u9`.
        first: String,
        /// How many more packages changed.
        more: usize,
    },
}

impl fmt::Display for DirtyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirtyReason::NotBuiltYet => f.write_str("not built yet"),
            DirtyReason::FormatChanged => f.write_str("imgraph's output format changed"),
            DirtyReason::ManifestChanged { key } => write!(f, "manifest changed: {key}"),
            DirtyReason::InputChanged { path } => write!(f, "input changed: {path}"),
            DirtyReason::UpstreamChanged { step } => write!(f, "upstream changed: {step}"),
            DirtyReason::UpstreamDirty { step } => write!(f, "upstream dirty: {step}"),
            DirtyReason::OutputMissing => f.write_str("cached output missing"),
            DirtyReason::NotPushed => f.write_str("not pushed yet"),
            DirtyReason::LockChanged { first, more: 0 } => write!(f, "lock changed: {first}"),
            DirtyReason::LockChanged { first, more } => {
                write!(f, "lock changed: {first} (+{more} more)")
            }
        }
    }
}

/// Compares the inputs recorded last time with today's and names the first difference.
///
/// `role_step` maps an upstream role to its step id, seen from this step; `content_detail`
/// turns a changed content entry into a file-level path where the caller can.
pub fn explain(
    old: &StepInputs,
    new: &StepInputs,
    role_step: &dyn Fn(&str) -> Option<StepId>,
    content_detail: &dyn Fn(&str) -> Option<String>,
) -> DirtyReason {
    if old.format != new.format || old.kind != new.kind {
        return DirtyReason::FormatChanged;
    }
    for (path, value) in &new.manifest {
        match old.manifest.get(path) {
            Some(old_value) if old_value == value => {}
            Some(old_value) => {
                return DirtyReason::ManifestChanged {
                    key: value_diff(path, old_value, value),
                }
            }
            None => return DirtyReason::ManifestChanged { key: path.clone() },
        }
    }
    if let Some(path) = old.manifest.keys().find(|k| !new.manifest.contains_key(*k)) {
        return DirtyReason::ManifestChanged { key: path.clone() };
    }
    let changes = crate::manifest::lock::diff_packages(&old.packages, &new.packages);
    if let Some(first) = changes.first() {
        return DirtyReason::LockChanged {
            first: first.to_string(),
            more: changes.len() - 1,
        };
    }
    for (path, hash) in &new.content {
        if old.content.get(path) != Some(hash) {
            return DirtyReason::InputChanged {
                path: content_detail(path).unwrap_or_else(|| path.clone()),
            };
        }
    }
    if let Some(path) = old.content.keys().find(|k| !new.content.contains_key(*k)) {
        return DirtyReason::InputChanged { path: path.clone() };
    }
    for (role, digest) in &new.upstream {
        if old.upstream.get(role) != Some(digest) {
            if let Some(step) = role_step(role) {
                return DirtyReason::UpstreamChanged { step };
            }
            return DirtyReason::FormatChanged;
        }
    }
    if let Some(role) = old.upstream.keys().find(|k| !new.upstream.contains_key(*k)) {
        return match role_step(role) {
            Some(step) => DirtyReason::UpstreamChanged { step },
            // A role this version does not know: the record is from another format.
            None => DirtyReason::FormatChanged,
        };
    }
    DirtyReason::OutputMissing
}

/// The dotted path of the first leaf that differs between two JSON values.
fn value_diff(path: &str, old: &Value, new: &Value) -> String {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get(k) {
                    Some(av) if av == v => {}
                    Some(av) => return value_diff(&format!("{path}.{k}"), av, v),
                    None => return format!("{path}.{k}"),
                }
            }
            match a.keys().find(|k| !b.contains_key(*k)) {
                Some(k) => format!("{path}.{k}"),
                None => path.to_string(),
            }
        }
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_detail(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn keys_are_stable_and_sensitive() {
        let a =
            StepInputs::new("config").manifest("images.hello.config", json!({"cmd": ["/hello"]}));
        let b =
            StepInputs::new("config").manifest("images.hello.config", json!({"cmd": ["/hello"]}));
        assert_eq!(a.key(), b.key());
        let c = StepInputs::new("config").manifest("images.hello.config", json!({"cmd": ["/bye"]}));
        assert_ne!(a.key(), c.key());
    }

    #[test]
    fn names_the_changed_manifest_leaf() {
        let old = StepInputs::new("config")
            .manifest("images.hello.config", json!({"cmd": ["/hello"], "env": []}));
        let new = StepInputs::new("config")
            .manifest("images.hello.config", json!({"cmd": ["/bye"], "env": []}));
        let reason = explain(&old, &new, &|_| None, &no_detail);
        assert_eq!(
            reason.to_string(),
            "manifest changed: images.hello.config.cmd"
        );
    }

    #[test]
    fn names_the_upstream_step_and_the_input() {
        let old = StepInputs::new("config").upstream("layer", "sha256:a");
        let new = StepInputs::new("config").upstream("layer", "sha256:b");
        let reason = explain(
            &old,
            &new,
            &|r| format!("{r}:hello:one/amd64").parse().ok(),
            &no_detail,
        );
        assert_eq!(
            reason.to_string(),
            "upstream changed: layer:hello:one/amd64"
        );
        let old = StepInputs::new("rootfs").content("rootfs/one", "x");
        let new = StepInputs::new("rootfs").content("rootfs/one", "y");
        let reason = explain(&old, &new, &|_| None, &|p| {
            Some(format!("{p}/etc/hostname"))
        });
        assert_eq!(reason.to_string(), "input changed: rootfs/one/etc/hostname");
    }
}
