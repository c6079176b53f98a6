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
        Self::store(file, digest, size, &self.blobs_dir)
    }

    /// Keeps the blob only when it is `expected` (digest and size): what came
    /// from elsewhere (a fetched `.deb`) is never cached unchecked, and is hashed
    /// once, as it was written. Otherwise the temp file is removed and
    /// `Ok(Err(found))` says what was written instead.
    pub fn finish_verified(
        self,
        expected: &Descriptor,
    ) -> Result<Result<Descriptor, Descriptor>, CacheError> {
        let (file, digest, size) = self.file.finish();
        if digest != expected.digest || size != expected.size {
            // Dropping the temp file deletes it.
            return Ok(Err(Descriptor { digest, size }));
        }
        Self::store(file, digest, size, &self.blobs_dir).map(Ok)
    }

    fn store(
        file: io::BufWriter<NamedTempFile>,
        digest: String,
        size: u64,
        blobs_dir: &std::path::Path,
    ) -> Result<Descriptor, CacheError> {
        let hex = digest.trim_start_matches("sha256:");
        let file = file.into_inner().map_err(|e| CacheError::Io {
            action: "writing",
            path: PathBuf::from("blob temp file"),
            source: e.into_error(),
        })?;
        let target = blobs_dir.join(hex);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_that_is_not_the_expected_one_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, blobs) = (dir.path().join("tmp"), dir.path().join("blobs"));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(&blobs).unwrap();
        let expected = Descriptor {
            digest: crate::digest::sha256(b"right"),
            size: 5,
        };
        let mut w = BlobWriter::new(&tmp, &blobs).unwrap();
        w.write_all(b"wrong").unwrap();
        let found = w.finish_verified(&expected).unwrap().unwrap_err();
        assert_eq!(found.digest, crate::digest::sha256(b"wrong"));
        assert_eq!(
            blobs.read_dir().unwrap().count(),
            0,
            "a wrong blob was kept"
        );
        assert_eq!(tmp.read_dir().unwrap().count(), 0, "its temp file was left");
        let mut w = BlobWriter::new(&tmp, &blobs).unwrap();
        w.write_all(b"right").unwrap();
        assert_eq!(w.finish_verified(&expected).unwrap().unwrap(), expected);
        assert!(blobs
            .join(expected.digest.trim_start_matches("sha256:"))
            .is_file());
    }
}
