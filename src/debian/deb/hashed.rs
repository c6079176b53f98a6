//! A `.deb` file whose sha256 is computed from the reads that parse it.
//!
//! The installer reads every byte of a `.deb` anyway (headers, control, the whole data
//! member), so checking it against the lock should cost no second pass over the file.
//! The reader reads with `pread` at offsets (the `ar` index is scanned before the
//! members are read), so the hash follows a cursor: a read that covers the cursor
//! feeds the bytes past it to sha256 and moves it; a read ahead of the cursor is served
//! but hashed later. A small gap (a member header, a padding byte, a short control
//! member) is read and hashed at once so that the cursor keeps up; a large one (the
//! data member, skipped while the headers are scanned) waits until the member is read
//! in order. [`HashedFile::finish`] hashes whatever was never reached (an unread tail)
//! and gives the digest of the whole file as it is on disk.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

/// The largest gap filled at once; larger ones are hashed when read in order.
const FILL_GAP: u64 = 1 << 20;

/// A file read with `pread`, hashed in file order as a side effect.
pub(super) struct HashedFile {
    file: File,
    hash: Option<RefCell<Cursor>>,
}

struct Cursor {
    sha: Sha256,
    /// Bytes `0..upto` are hashed.
    upto: u64,
}

impl HashedFile {
    /// A file that is hashed as it is read when `hash`, else read plainly.
    pub(super) fn new(file: File, hash: bool) -> HashedFile {
        HashedFile {
            file,
            hash: hash.then(|| {
                RefCell::new(Cursor {
                    sha: Sha256::new(),
                    upto: 0,
                })
            }),
        }
    }

    /// The open file (for its metadata).
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// `pread` at `offset`, feeding the hash.
    pub(super) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = self.file.read_at(buf, offset)?;
        if let Some(cursor) = &self.hash {
            let mut c = cursor.borrow_mut();
            if offset > c.upto && offset - c.upto <= FILL_GAP {
                c.fill_to(&self.file, offset)?;
            }
            let end = offset + n as u64;
            if offset <= c.upto && end > c.upto {
                let from = usize::try_from(c.upto - offset).unwrap_or(usize::MAX);
                c.sha.update(&buf[from..n]);
                c.upto = end;
            }
        }
        Ok(n)
    }

    /// The file's sha256 (lowercase hex) and size: hashes every byte not yet reached.
    /// `None` when the file was opened without hashing.
    pub(super) fn finish(self) -> io::Result<Option<(String, u64)>> {
        let Some(cursor) = self.hash else {
            return Ok(None);
        };
        let mut c = cursor.into_inner();
        c.fill_to(&self.file, u64::MAX)?;
        Ok(Some((hex::encode(c.sha.finalize()), c.upto)))
    }
}

impl Cursor {
    /// Reads and hashes `upto..end` (or to the end of the file).
    fn fill_to(&mut self, file: &File, end: u64) -> io::Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        while self.upto < end {
            let want = usize::try_from(end - self.upto)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = match file.read_at(&mut buf[..want], self.upto) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.sha.update(&buf[..n]);
            self.upto += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever order and overlap the reads come in, the digest is the file's.
    #[test]
    fn reads_in_any_order_give_the_files_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let want = hex::encode(Sha256::digest(&bytes));
        for reads in [
            vec![],
            vec![(0, 8), (8, 60), (2_500_000, 60), (68, 4), (72, 100_000)],
            vec![(10, 5), (0, 100), (50, 3_000_000)],
            vec![
                (2_999_990, 10),
                (0, 1),
                (1, 1_500_000),
                (1_000_000, 2_000_000),
            ],
        ] {
            let f = HashedFile::new(File::open(&path).unwrap(), true);
            for (off, len) in reads {
                let mut buf = vec![0u8; len];
                let n = f.read_at(&mut buf, off).unwrap();
                assert_eq!(&buf[..n], &bytes[off as usize..off as usize + n]);
            }
            assert_eq!(
                f.finish().unwrap(),
                Some((want.clone(), bytes.len() as u64))
            );
        }
    }
}
