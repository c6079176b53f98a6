//! TEMPORARY STUB until the walk/fingerprint module lands.
pub mod command;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct StatCache {}
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TreeFingerprint {
    pub digest: String,
    pub entries: BTreeMap<String, String>,
}
pub struct PathChange {
    pub path: String,
}
#[derive(Debug, thiserror::Error)]
#[error("rootfs")]
pub struct RootfsError;
pub use command::CommandError;
pub fn fingerprint_dir(
    _p: &Path,
    _o: bool,
    _c: &mut StatCache,
) -> Result<TreeFingerprint, RootfsError> {
    Err(RootfsError)
}
pub fn fingerprint_file(_p: &Path, _c: &mut StatCache) -> Result<String, RootfsError> {
    Err(RootfsError)
}
pub fn diff(_a: &TreeFingerprint, _b: &TreeFingerprint) -> Vec<PathChange> {
    vec![]
}
