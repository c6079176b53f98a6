//! Reading a cache blob once, checking its digest on the way: for a blob that
//! must be decoded anyway (a layer read back for its contents), hashing while
//! decoding saves the separate verifying read.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::{io_err, CacheError};

/// A cache blob's bytes, hashed as they are read. Nothing read from it is to be
/// trusted until [`VerifiedReader::finish`] says the digest matched.
pub struct VerifiedReader {
    file: File,
    path: PathBuf,
    digest: String,
    sha: Sha256,
    size: u64,
}

impl VerifiedReader {
    pub(super) fn new(file: File, path: PathBuf, digest: &str) -> Self {
        VerifiedReader {
            file,
            path,
            digest: digest.to_owned(),
            sha: Sha256::new(),
            size: 0,
        }
    }

    /// Reads what the decoder left unread, then checks the digest; a blob that
    /// does not match is removed (it will be rebuilt). Returns the blob's size.
    pub fn finish(mut self) -> Result<u64, CacheError> {
        io::copy(&mut self, &mut io::sink()).map_err(io_err("reading", &self.path))?;
        let found = format!("sha256:{}", hex::encode(self.sha.finalize()));
        if found != self.digest {
            let removed = std::fs::remove_file(&self.path).is_ok();
            return Err(CacheError::DigestMismatch {
                expected: self.digest,
                found,
                path: self.path,
                removed,
            });
        }
        Ok(self.size)
    }
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.sha.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}
