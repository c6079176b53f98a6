//! STUB
use std::io::Write;
use std::path::PathBuf;
pub enum LayerSource {
    Dir {
        root: PathBuf,
        preserve_owners: bool,
    },
    Tar {
        path: PathBuf,
    },
}
pub struct LayerOptions {
    pub mtime: u64,
    pub compression: crate::manifest::Compression,
    pub threads: usize,
    pub temp_dir: PathBuf,
}
pub struct LayerOutput {
    pub digest: String,
    pub diff_id: String,
    pub uncompressed_size: u64,
    pub elf: super::elf::ElfCensus,
}
#[derive(Debug, thiserror::Error)]
#[error("layer")]
pub struct LayerError;
pub fn write_layer(
    _s: &LayerSource,
    _o: &LayerOptions,
    _w: &mut dyn Write,
) -> Result<LayerOutput, LayerError> {
    Err(LayerError)
}
