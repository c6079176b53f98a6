//! Writing a blob: hash and count while writing to a temp file, then rename it to
//! its digest. Nothing half-written is ever visible under `blobs/`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use super::{io_err, CacheError};
use crate::digest::HashingWriter;

/// Blobs at least this large are fsynced before the rename.
const SYNC_THRESHOLD: u64 = 1 << 20;

/// A blob's identity: what OCI descriptors carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

/// An `io::Write` into the blob store.
pub struct BlobWriter {
    file: HashingWriter<io::BufWriter<NamedTempFile>>,
    blobs_dir: PathBuf,
}

impl BlobWriter {
    pub(crate) fn new(tmp_dir: &Path, blobs_dir: &Path) -> Result<Self, CacheError> {
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(tmp_dir)
            .map_err(io_err("creating a temp file in", tmp_dir))?;
        Ok(BlobWriter {
            file: HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file)),
            blobs_dir: blobs_dir.to_path_buf(),
        })
    }

    /// Renames the blob (synced if large) to `blobs/sha256/<hex>`, returning its descriptor.
    pub fn finish(self) -> Result<Descriptor, CacheError> {
        let (file, digest, size) = self.file.finish();
        let hex = digest.trim_start_matches("sha256:");
        let file = file.into_inner().map_err(|e| CacheError::Io {
            action: "writing",
            path: PathBuf::from("blob temp file"),
            source: e.into_error(),
        })?;
        let target = self.blobs_dir.join(hex);
        if !target.exists() {
            // Layers are synced before they are named; small JSON blobs are not
            // (see `atomic`): a torn one fails its digest check and is rebuilt.
            if size >= SYNC_THRESHOLD {
                file.as_file()
                    .sync_all()
                    .map_err(io_err("syncing", file.path()))?;
            }
            file.persist(&target).map_err(|e| CacheError::Io {
                action: "renaming into",
                path: target.clone(),
                source: e.error,
            })?;
        }
        Ok(Descriptor { digest, size })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
