//! STUB
use serde::{Deserialize, Serialize};
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ElfCensus {}
#[derive(Debug, Clone, Copy)]
pub struct ElfMachine;
impl ElfMachine {
    pub fn for_arch(_a: &str) -> Option<ElfMachine> {
        None
    }
}
#[derive(Debug, thiserror::Error)]
#[error("mismatch")]
pub struct PlatformMismatch;
impl PlatformMismatch {
    pub fn for_platform(self, _l: &str, _p: &str) -> Self {
        self
    }
}
impl ElfCensus {
    pub fn check(&self, _m: ElfMachine) -> Result<(), PlatformMismatch> {
        Ok(())
    }
}
pub fn census_of_layer(_p: &std::path::Path) -> Result<ElfCensus, std::io::Error> {
    Ok(ElfCensus {})
}
