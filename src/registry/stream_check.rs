//! Checking an uploaded blob against its digest while it streams, so a push
//! hashes each blob once: blobs the registry already has (HEAD) or mounts are
//! never read, and the bytes that are sent are hashed on their way out.
//!
//! The check fires before the last byte leaves: a blob whose local file does not
//! match its digest fails its upload, and the registry never commits it.
//!
//! One check is shared by every upload of the same blob file under way in this
//! process ([`StreamCheck::shared`]): a push to two registries streams each layer
//! to both at about the same time, and hashing it once, not once per registry,
//! is a third of imgraph's CPU on such a push.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use sha2::Digest as _;

/// The running hash of one blob's uploads. Every reader streams the file from
/// its start (a chunked upload chunk after chunk), so the bytes hashed so far
/// are always a prefix no reader is ahead of: the reader at the front extends
/// it, the others' bytes were hashed already. The first reader to reach the end
/// compares the digest before handing over its last bytes; the others are
/// behind it, so a mismatch stops every one of them before their end.
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

    /// The check of the uploads of `path` as `digest` under way in this process,
    /// or a new one when there are none (it lives while an upload holds it).
    pub(crate) fn shared(digest: &str, size: u64, path: PathBuf) -> Arc<StreamCheck> {
        type Live = Vec<(String, u64, PathBuf, Weak<StreamCheck>)>;
        static LIVE: Mutex<Live> = Mutex::new(Vec::new());
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|(.., w)| w.strong_count() > 0);
        let found = live
            .iter()
            .filter(|(d, s, p, _)| d == digest && *s == size && *p == path)
            .find_map(|(.., w)| w.upgrade());
        found.unwrap_or_else(|| {
            let check = Arc::new(StreamCheck::new(digest, size, path.clone()));
            live.push((digest.to_owned(), size, path, Arc::downgrade(&check)));
            check
        })
    }

    /// Feeds `buf`, read at `offset` of the blob. Bytes hashed before (a body
    /// sent again after a 401, or by another upload of the blob) are skipped. `Err` when these bytes complete the
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
    /// Told the offset reached after each read (progress), when set.
    pub(crate) sent: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl<R: Read> Read for CheckedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(check) = self.check {
            check.feed(self.offset, &buf[..n])?;
        }
        self.offset += n as u64;
        if let Some(sent) = self.sent {
            sent(self.offset);
        }
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
                sent: None,
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
            sent: None,
        };
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert!(check.mismatch().is_none());
    }

    /// Two uploads of one blob (two registries) share one check while both
    /// run: the bytes are hashed once, and a corrupt file stops both before
    /// their last bytes, the one behind included.
    #[test]
    fn uploads_under_way_share_one_hash_and_all_stop_on_a_corrupt_blob() {
        let bytes: Vec<u8> = (0..100u8).collect();
        let digest = crate::digest::sha256(&bytes);
        let path = PathBuf::from("/nonexistent/shared-check-test");
        let a = StreamCheck::shared(&digest, 100, path.clone());
        let b = StreamCheck::shared(&digest, 100, path.clone());
        assert!(Arc::ptr_eq(&a, &b));
        let other = StreamCheck::shared(&digest, 100, PathBuf::from("/elsewhere"));
        assert!(!Arc::ptr_eq(&a, &other));
        // A leads, B follows, B overtakes: every byte hashed once, both pass.
        let feed = |c: &StreamCheck, from: usize, to: usize, data: &[u8]| {
            let mut r = CheckedReader {
                inner: &data[from..to],
                offset: from as u64,
                check: Some(c),
                sent: None,
            };
            std::io::copy(&mut r, &mut std::io::sink()).map(|_| ())
        };
        feed(&a, 0, 40, &bytes).unwrap();
        feed(&b, 0, 30, &bytes).unwrap();
        feed(&b, 30, 70, &bytes).unwrap();
        assert_eq!(a.state.lock().unwrap().hashed, 70);
        feed(&a, 40, 100, &bytes).unwrap();
        feed(&b, 70, 100, &bytes).unwrap();
        assert!(a.mismatch().is_none());
        drop((a, b));
        // Nothing holds it: the next upload starts a new check.
        let fresh = StreamCheck::shared(&digest, 100, path.clone());
        assert_eq!(fresh.state.lock().unwrap().hashed, 0);

        let mut bad = bytes.clone();
        bad[50] ^= 1;
        feed(&fresh, 0, 60, &bad).unwrap();
        let follower = StreamCheck::shared(&digest, 100, path);
        feed(&follower, 0, 60, &bad).unwrap();
        assert!(feed(&fresh, 60, 100, &bad).is_err(), "the leader's end");
        assert!(
            feed(&follower, 60, 61, &bad).is_err(),
            "the follower, before its end"
        );
        assert_eq!(follower.mismatch(), Some(crate::digest::sha256(&bad)));
    }
}
