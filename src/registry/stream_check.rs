//! Checking an uploaded blob against its digest while it streams, so a push
//! hashes each blob once: blobs the registry already has (HEAD) or mounts are
//! never read, and the bytes that are sent are hashed on their way out.
//!
//! The check fires before the last byte leaves: a blob whose local file does not
//! match its digest fails its upload, and the registry never commits it.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::Digest as _;

/// The running hash of one blob's upload (one attempt: a retry starts a new one).
pub(crate) struct StreamCheck {
    digest: String,
    size: u64,
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    hasher: sha2::Sha256,
    /// Bytes from the start of the blob hashed so far.
    hashed: u64,
    /// What the whole file hashed to, when it was not the digest.
    mismatch: Option<String>,
}

impl StreamCheck {
    pub(crate) fn new(digest: &str, size: u64, path: PathBuf) -> Self {
        StreamCheck {
            digest: digest.to_owned(),
            size,
            path,
            state: Mutex::new(State {
                hasher: sha2::Sha256::new(),
                hashed: 0,
                mismatch: None,
            }),
        }
    }

    /// Feeds `buf`, read at `offset` of the blob. Bytes hashed before (a body
    /// sent again after a 401) are skipped. `Err` when these bytes complete the
    /// blob and it does not match its digest.
    fn feed(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let end = offset + buf.len() as u64;
        if offset <= st.hashed && end > st.hashed {
            let from = (st.hashed - offset) as usize;
            st.hasher.update(&buf[from..]);
            st.hashed = end;
            if st.hashed == self.size {
                let hasher = std::mem::take(&mut st.hasher);
                let found = format!("sha256:{}", hex::encode(hasher.finalize()));
                if found != self.digest {
                    st.mismatch = Some(found);
                }
            }
        }
        match &st.mismatch {
            Some(found) => Err(std::io::Error::other(format!(
                "{} hashes to {found}, not {}",
                self.path.display(),
                self.digest
            ))),
            None => Ok(()),
        }
    }

    /// What the file hashed to, when its upload stopped because it is not the blob.
    pub(crate) fn mismatch(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .mismatch
            .clone()
    }

    /// The local file.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// A reader of `len` bytes from `offset` of the blob's file that feeds `check`
/// and fails before handing over the last bytes of a blob that does not match.
pub(crate) struct CheckedReader<'a, R> {
    pub(crate) inner: R,
    pub(crate) offset: u64,
    /// `None`: pass the bytes through unchecked.
    pub(crate) check: Option<&'a StreamCheck>,
}

impl<R: Read> Read for CheckedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(check) = self.check {
            check.feed(self.offset, &buf[..n])?;
        }
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(check: &StreamCheck, bytes: &[u8], chunk: usize) -> std::io::Result<()> {
        for (i, part) in bytes.chunks(chunk).enumerate() {
            let mut r = CheckedReader {
                inner: part,
                offset: (i * chunk) as u64,
                check: Some(check),
            };
            std::io::copy(&mut r, &mut std::io::sink())?;
        }
        Ok(())
    }

    #[test]
    fn a_matching_blob_streams_and_a_changed_one_stops_before_its_end() {
        let bytes = b"hello, registry".to_vec();
        let digest = crate::digest::sha256(&bytes);
        let ok = StreamCheck::new(&digest, bytes.len() as u64, "f".into());
        read_all(&ok, &bytes, 4).unwrap();
        assert!(ok.mismatch().is_none());

        let mut bad = bytes.clone();
        bad[3] ^= 1;
        let check = StreamCheck::new(&digest, bytes.len() as u64, "f".into());
        assert!(read_all(&check, &bad, 4).is_err());
        assert_eq!(check.mismatch(), Some(crate::digest::sha256(&bad)));
    }

    #[test]
    fn bytes_sent_again_are_hashed_once() {
        let bytes = b"0123456789".to_vec();
        let digest = crate::digest::sha256(&bytes);
        let check = StreamCheck::new(&digest, 10, "f".into());
        // The first chunk twice (a 401 re-send), then the rest.
        read_all(&check, &bytes[..5], 5).unwrap();
        read_all(&check, &bytes[..5], 5).unwrap();
        let mut r = CheckedReader {
            inner: &bytes[5..],
            offset: 5,
            check: Some(&check),
        };
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert!(check.mismatch().is_none());
    }
}
