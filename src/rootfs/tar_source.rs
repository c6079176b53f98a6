//! A rootfs tarball read as an ordered list of entries, without extracting it.
//!
//! Extracting would need root (device nodes, owners) and would lose what the tarball says
//! about owners. Instead the archive is read once: headers are kept in memory (small),
//! file contents stay where they are (a plain `.tar` is indexed by offset) or are spooled
//! to one anonymous temp file (compressed sources: a stream cannot be revisited). The
//! layer writer then re-emits the entries sorted by path, reading contents by offset, so
//! memory stays low whatever the rootfs size.
//!
//! Hostile archives are refused, each error naming the source and the entry: `..`
//! components, hard links to something not earlier in the archive or to a directory,
//! entries below a non-directory, and truncated streams. Absolute symlink targets are data
//! inside the image and are kept as they are. Duplicate paths: the last one wins, as when
//! `tar` extracts the archive; a hard link made before the path was replaced keeps the
//! content it linked to.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::rootfs::{display_bytes, Entry, EntryKind};

/// Errors of reading a tarball source; each names the tarball and, where there is one,
/// the entry.
#[derive(Debug, thiserror::Error)]
pub enum TarSourceError {
    /// The tarball cannot be opened or its start read.
    #[error("cannot open rootfs tarball {path}")]
    Open {
        /// The tarball.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A compression imgraph does not read.
    #[error("{path} is {format}-compressed; use .tar, .tar.gz, .tar.xz or .tar.zst")]
    UnsupportedCompression {
        /// The tarball.
        path: PathBuf,
        /// What it looks like.
        format: &'static str,
    },
    /// Reading or decompressing failed: a corrupt or truncated stream.
    #[error("cannot read {path} at {entry}: truncated or corrupt archive?")]
    Read {
        /// The tarball.
        path: PathBuf,
        /// The entry being read, or the last good one (`after ...`).
        entry: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The archive ends inside an entry's content.
    #[error("{path} is truncated: entry {entry} is cut short")]
    Truncated {
        /// The tarball.
        path: PathBuf,
        /// The entry.
        entry: String,
    },
    /// No entries at all: an empty or non-tar file.
    #[error("{path} contains no tar entries (empty, or not a tar archive)")]
    Empty {
        /// The tarball.
        path: PathBuf,
    },
    /// A non-directory entry that names the root itself (`/`, `.`, an empty name).
    #[error("{path}: entry {entry:?} names the root folder but is not a directory; refusing it")]
    RootNotDir {
        /// The tarball.
        path: PathBuf,
        /// The entry as stored.
        entry: String,
    },
    /// A path with a `..` component could write outside the root.
    #[error("{path}: entry {entry} has a `..` component; refusing it")]
    ParentDir {
        /// The tarball.
        path: PathBuf,
        /// The entry (or link target) as stored.
        entry: String,
    },
    /// A hard link to something that is not an earlier entry.
    #[error("{path}: hard link {entry} points to {target}, which is not an earlier entry")]
    HardlinkTargetMissing {
        /// The tarball.
        path: PathBuf,
        /// The link.
        entry: String,
        /// Its target.
        target: String,
    },
    /// A hard link to a directory, which no filesystem allows.
    #[error("{path}: hard link {entry} points to directory {target}")]
    HardlinkToDirectory {
        /// The tarball.
        path: PathBuf,
        /// The link.
        entry: String,
        /// Its target.
        target: String,
    },
    /// An entry type that has no place in a rootfs layer.
    #[error("{path}: entry {entry} has unsupported type {typeflag:?}")]
    UnsupportedType {
        /// The tarball.
        path: PathBuf,
        /// The entry.
        entry: String,
        /// Its type flag.
        typeflag: char,
    },
    /// An entry below something that is not a directory (e.g. below a symlink).
    #[error("{path}: entry {entry} is below {parent}, which is not a directory")]
    NotUnderDirectory {
        /// The tarball.
        path: PathBuf,
        /// The entry.
        entry: String,
        /// Its parent.
        parent: String,
    },
    /// The spool file in the temp dir could not be created or written. The OS
    /// reason leads: it is the cause (a full disk), not the tarball.
    #[error("{source}: cannot keep the contents of {path} in {dir} while reading it")]
    Spool {
        /// The tarball.
        path: PathBuf,
        /// The temp dir.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// How a tarball is compressed, detected from its first bytes (extensions lie).
pub use crate::decompress::Format as SourceCompression;

/// Detects the compression from magic bytes.
pub fn detect_compression(path: &Path) -> Result<SourceCompression, TarSourceError> {
    match SourceCompression::of_file(path) {
        Ok(SourceCompression::Bzip2) => Err(TarSourceError::UnsupportedCompression {
            path: path.to_path_buf(),
            format: "bzip2",
        }),
        Ok(format) => Ok(format),
        Err(source) => Err(TarSourceError::Open {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[derive(Debug, Clone, Copy)]
enum DataLoc {
    /// Offset in the (plain) source tarball.
    Source(u64),
    /// Offset in the spool file.
    Spool(u64),
}

/// One entry of a tarball source, in layer order.
#[derive(Debug, Clone)]
pub struct TarEntry {
    /// The entry, with normalised path and hard links resolved to the first name in
    /// sorted order.
    pub entry: Entry,
    data: Option<DataLoc>,
}

/// A tarball source, indexed and ready to be re-emitted in sorted order.
#[derive(Debug)]
pub struct TarSource {
    path: PathBuf,
    entries: Vec<TarEntry>,
    /// Every path, in the order the archive first names it (dpkg's `.list` order).
    archive_order: Vec<Vec<u8>>,
    /// The plain tarball, when contents are indexed in it; `None` for a stream.
    source: Option<File>,
    spool: Option<File>,
}

/// What the first pass keeps of one archive member.
struct RawEntry {
    entry: Entry,
    data: Option<DataLoc>,
}

#[derive(Clone, Copy)]
enum Slot {
    /// The path holds raw entry `i`.
    Own(usize),
    /// The path is a hard link to raw entry `i`.
    Link(usize),
}

impl Slot {
    fn content(self) -> usize {
        match self {
            Slot::Own(i) | Slot::Link(i) => i,
        }
    }
}

/// Normalises an archive path: no leading `/` or `./`, no empty or `.` components, no
/// trailing `/`; `..` is refused. Shared with the `.deb` reader so that both apply the
/// same rules.
pub(crate) fn normalise(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return None,
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Some(out)
}

impl TarSource {
    /// Reads the tarball at `path`; compressed contents are spooled into an anonymous
    /// file in `temp_dir` (deleted when the `TarSource` is dropped).
    pub fn open(path: &Path, temp_dir: &Path) -> Result<TarSource, TarSourceError> {
        let compression = detect_compression(path)?;
        let open_err = |source| TarSourceError::Open {
            path: path.to_path_buf(),
            source,
        };
        let source = File::open(path).map_err(open_err)?;
        let mut reader = Reader {
            path: path.to_path_buf(),
            temp_dir: temp_dir.to_path_buf(),
            spool: None,
            spool_len: 0,
            raw: Vec::new(),
            live: HashMap::new(),
            order: Vec::new(),
        };
        match compression {
            SourceCompression::Plain => {
                let file = source.try_clone().map_err(open_err)?;
                let mut archive = tar::Archive::new(BufReader::with_capacity(64 * 1024, file));
                let entries = archive.entries_with_seek().map_err(open_err)?;
                reader.read_all(entries, Some(&source))?;
            }
            SourceCompression::Bzip2 => unreachable!("refused by detect_compression"),
            format => {
                let file =
                    BufReader::with_capacity(256 * 1024, source.try_clone().map_err(open_err)?);
                reader.read_stream(crate::decompress::decoder(format, file).map_err(open_err)?)?;
            }
        }
        let spool = reader.spool.take();
        let archive_order = std::mem::take(&mut reader.order);
        let entries = reader.finish()?;
        Ok(TarSource {
            path: path.to_path_buf(),
            entries,
            archive_order,
            source: Some(source),
            spool,
        })
    }

    /// Reads a tar stream that is not a file of its own (a `.deb`'s `data.tar`), already
    /// decoded, with exactly the checks of [`TarSource::open`]. Contents are spooled into
    /// an anonymous file in `temp_dir`; `label` names the stream in errors (e.g.
    /// `pkg.deb:data.tar.xz`). The stream is read to its end, so a decoder checks its
    /// trailer.
    pub(crate) fn from_stream(
        label: &Path,
        stream: impl Read,
        temp_dir: &Path,
    ) -> Result<TarSource, TarSourceError> {
        let mut reader = Reader {
            path: label.to_path_buf(),
            temp_dir: temp_dir.to_path_buf(),
            spool: None,
            spool_len: 0,
            raw: Vec::new(),
            live: HashMap::new(),
            order: Vec::new(),
        };
        reader.read_stream(stream)?;
        let spool = reader.spool.take();
        let archive_order = std::mem::take(&mut reader.order);
        let entries = reader.finish()?;
        Ok(TarSource {
            path: label.to_path_buf(),
            entries,
            archive_order,
            source: None,
            spool,
        })
    }

    /// The tarball's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries, sorted by path bytes, hard links pointing at earlier entries.
    pub fn entries(&self) -> &[TarEntry] {
        &self.entries
    }

    /// Every entry's normalised path in the order the archive first names it
    /// (the root `./` left out): what dpkg lists in `info/<pkg>.list`.
    pub fn archive_order(&self) -> &[Vec<u8>] {
        &self.archive_order
    }

    /// The content of a regular-file entry (empty for other kinds): exactly
    /// `entry.entry.size` bytes.
    pub fn content(&self, entry: &TarEntry) -> impl Read + '_ {
        let (file, offset) = match entry.data {
            Some(DataLoc::Source(o)) => (self.source.as_ref(), o),
            Some(DataLoc::Spool(o)) => (self.spool.as_ref(), o),
            None => (None, 0),
        };
        let len = if entry.data.is_some() {
            entry.entry.size
        } else {
            0
        };
        RangeReader {
            file,
            pos: offset,
            end: offset + len,
        }
    }
}

/// Reads a byte range of a file with `pread`, so many readers can share one handle.
struct RangeReader<'a> {
    /// `None` only for an empty range (an entry without content).
    file: Option<&'a File>,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let Some(file) = self.file else {
            return Err(io::Error::other("tar content has no backing file"));
        };
        let n = file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "tar content shorter than its header says",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Which side of a copy failed.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// `io::copy`, telling a failed read from a failed write.
fn spool_copy(from: &mut impl Read, to: &mut File) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        copied += n as u64;
    }
}

struct Reader {
    path: PathBuf,
    temp_dir: PathBuf,
    spool: Option<File>,
    spool_len: u64,
    raw: Vec<RawEntry>,
    live: HashMap<Vec<u8>, Slot>,
    /// Paths in the order the archive first names them.
    order: Vec<Vec<u8>>,
}

impl Reader {
    /// Makes `path` hold `slot`, noting where the archive first named it.
    fn set_live(&mut self, path: Vec<u8>, slot: Slot) {
        if !self.live.contains_key(&path) {
            self.order.push(path.clone());
        }
        self.live.insert(path, slot);
    }

    fn read_stream<R: Read>(&mut self, decoder: R) -> Result<(), TarSourceError> {
        let mut archive = tar::Archive::new(decoder);
        let entries = archive.entries().map_err(|source| TarSourceError::Read {
            path: self.path.clone(),
            entry: "the start".into(),
            source,
        })?;
        self.read_all(entries, None)?;
        // The tar ends before the compressed stream does: read the rest (zero padding)
        // so that the decoder checks its trailer (gzip CRC and length, xz/zstd checks)
        // and a stream cut after the end-of-archive marker is still caught.
        let mut decoder = archive.into_inner();
        io::copy(&mut decoder, &mut io::sink()).map_err(|source| TarSourceError::Read {
            path: self.path.clone(),
            entry: "the end of the compressed stream".into(),
            source,
        })?;
        Ok(())
    }

    /// First pass: validate every member, index or spool its content.
    ///
    /// `plain` is the source file of a plain tar: contents are then indexed by offset, not
    /// copied, and the end-of-archive marker is checked (a plain tar has no trailer that
    /// would reveal a cut at an entry boundary).
    fn read_all<R: Read>(
        &mut self,
        entries: tar::Entries<'_, R>,
        plain: Option<&File>,
    ) -> Result<(), TarSourceError> {
        let plain_len = match plain {
            Some(f) => Some(
                f.metadata()
                    .map_err(|source| TarSourceError::Open {
                        path: self.path.clone(),
                        source,
                    })?
                    .len(),
            ),
            None => None,
        };
        let mut last = String::from("the start");
        let mut count = 0usize;
        let mut end_of_last = 0u64;
        for item in entries {
            let mut member = item.map_err(|source| TarSourceError::Read {
                path: self.path.clone(),
                entry: format!("the header after {last}"),
                source,
            })?;
            count += 1;
            end_of_last = member.raw_file_position() + member.size().div_ceil(512) * 512;
            let raw_path = member.path_bytes().into_owned();
            let name = display_bytes(&raw_path);
            last.clone_from(&name);
            let path = normalise(&raw_path).ok_or_else(|| TarSourceError::ParentDir {
                path: self.path.clone(),
                entry: name.clone(),
            })?;
            let header = member.header().clone();
            let src_path = self.path.clone();
            let read_err = |source| TarSourceError::Read {
                path: src_path.clone(),
                entry: name.clone(),
                source,
            };
            let etype = header.entry_type();
            let link = member
                .link_name_bytes()
                .map(|b| b.into_owned())
                .unwrap_or_default();
            let kind = match etype {
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => EntryKind::File,
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Symlink => EntryKind::Symlink { target: link },
                tar::EntryType::Link => {
                    let target_raw = link;
                    let target =
                        normalise(&target_raw).ok_or_else(|| TarSourceError::ParentDir {
                            path: self.path.clone(),
                            entry: format!("{name} -> {}", display_bytes(&target_raw)),
                        })?;
                    let missing = || TarSourceError::HardlinkTargetMissing {
                        path: self.path.clone(),
                        entry: name.clone(),
                        target: display_bytes(&target_raw),
                    };
                    let slot = *self.live.get(&target).ok_or_else(missing)?;
                    let content = slot.content();
                    if self.raw[content].entry.kind == EntryKind::Dir {
                        return Err(TarSourceError::HardlinkToDirectory {
                            path: self.path.clone(),
                            entry: name,
                            target: display_bytes(&target_raw),
                        });
                    }
                    if path.is_empty() {
                        return Err(missing());
                    }
                    self.set_live(path, Slot::Link(content));
                    continue;
                }
                tar::EntryType::Char | tar::EntryType::Block => {
                    let major = header.device_major().map_err(read_err)?.unwrap_or(0);
                    let minor = header.device_minor().map_err(read_err)?.unwrap_or(0);
                    if etype == tar::EntryType::Char {
                        EntryKind::CharDevice { major, minor }
                    } else {
                        EntryKind::BlockDevice { major, minor }
                    }
                }
                tar::EntryType::Fifo => EntryKind::Fifo,
                // Global PAX headers carry defaults for readers, nothing to store.
                tar::EntryType::XGlobalHeader => continue,
                other => {
                    return Err(TarSourceError::UnsupportedType {
                        path: self.path.clone(),
                        entry: name,
                        typeflag: char::from(other.as_byte()),
                    })
                }
            };
            if path.is_empty() {
                // The archive's `./`: the image root is not an entry of the layer.
                if kind == EntryKind::Dir {
                    continue;
                }
                return Err(TarSourceError::RootNotDir {
                    path: self.path.clone(),
                    entry: name,
                });
            }
            let mut size = 0;
            let mut data = None;
            if kind == EntryKind::File {
                let declared = member.size();
                match plain_len {
                    Some(len) if etype != tar::EntryType::GNUSparse => {
                        let offset = member.raw_file_position();
                        if offset.saturating_add(declared) > len {
                            return Err(TarSourceError::Truncated {
                                path: self.path.clone(),
                                entry: name,
                            });
                        }
                        size = declared;
                        data = Some(DataLoc::Source(offset));
                    }
                    _ => {
                        let offset = self.spool_len;
                        let (tar, dir) = (self.path.clone(), self.temp_dir.clone());
                        let spool = self.spool_file()?;
                        // A failed read is the archive's fault; a failed write is the
                        // spool's disk (full, read-only), and is said as such.
                        let copied = spool_copy(&mut member, spool).map_err(|e| match e {
                            CopyError::Read(source) => read_err(source),
                            CopyError::Write(source) => TarSourceError::Spool {
                                path: tar,
                                dir,
                                source,
                            },
                        })?;
                        if copied < declared && etype != tar::EntryType::GNUSparse {
                            return Err(TarSourceError::Truncated {
                                path: self.path.clone(),
                                entry: name,
                            });
                        }
                        self.spool_len += copied;
                        size = copied;
                        data = Some(DataLoc::Spool(offset));
                    }
                }
            }
            let entry = Entry {
                path: path.clone(),
                kind,
                mode: header.mode().map_err(read_err)? & 0o7777,
                uid: header.uid().map_err(read_err)?,
                gid: header.gid().map_err(read_err)?,
                size,
                mtime: i64::try_from(header.mtime().map_err(read_err)?).unwrap_or(i64::MAX),
            };
            self.raw.push(RawEntry { entry, data });
            self.set_live(path, Slot::Own(self.raw.len() - 1));
        }
        if count == 0 {
            return Err(TarSourceError::Empty {
                path: self.path.clone(),
            });
        }
        if let Some(file) = plain {
            let mut marker = [0xffu8; 512];
            let n = file.read_at(&mut marker, end_of_last).unwrap_or(0);
            if n < marker.len() || marker.iter().any(|b| *b != 0) {
                return Err(TarSourceError::Truncated {
                    path: self.path.clone(),
                    entry: format!("the end-of-archive marker after {last}"),
                });
            }
        }
        Ok(())
    }

    fn spool_file(&mut self) -> Result<&mut File, TarSourceError> {
        if self.spool.is_none() {
            let file =
                tempfile::tempfile_in(&self.temp_dir).map_err(|source| TarSourceError::Spool {
                    path: self.path.clone(),
                    dir: self.temp_dir.clone(),
                    source,
                })?;
            self.spool = Some(file);
        }
        let spool = self.spool.as_mut().expect("spool created above");
        // io::copy appends at the cursor, which stays at the end.
        spool
            .seek(SeekFrom::End(0))
            .map_err(|source| TarSourceError::Spool {
                path: self.path.clone(),
                dir: self.temp_dir.clone(),
                source,
            })?;
        Ok(spool)
    }

    /// Second step: sort the surviving paths and turn hard-link groups into "first name
    /// in sorted order holds the content, the others link to it".
    fn finish(self) -> Result<Vec<TarEntry>, TarSourceError> {
        let mut paths: Vec<(&Vec<u8>, Slot)> = self.live.iter().map(|(p, s)| (p, *s)).collect();
        paths.sort_by(|a, b| a.0.cmp(b.0));
        let mut first: HashMap<usize, Vec<u8>> = HashMap::new();
        let mut out = Vec::with_capacity(paths.len());
        for (path, slot) in paths {
            if let Some(cut) = path.iter().rposition(|b| *b == b'/') {
                let parent = &path[..cut];
                if let Some(p) = self.live.get(parent) {
                    if self.raw[p.content()].entry.kind != EntryKind::Dir {
                        return Err(TarSourceError::NotUnderDirectory {
                            path: self.path.clone(),
                            entry: display_bytes(path),
                            parent: display_bytes(parent),
                        });
                    }
                }
            }
            let content = slot.content();
            let raw = &self.raw[content];
            let mut entry = raw.entry.clone();
            entry.path.clone_from(path);
            let data = if let Some(target) = first.get(&content) {
                entry.kind = EntryKind::Hardlink {
                    target: target.clone(),
                };
                entry.size = 0;
                None
            } else {
                first.insert(content, path.clone());
                raw.data
            };
            out.push(TarEntry { entry, data });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// One raw member; names are written into the header as-is (the `tar` crate's
    /// builder refuses `..`, which is exactly what these tests need to write).
    struct M<'a> {
        name: &'a [u8],
        kind: tar::EntryType,
        link: &'a [u8],
        data: &'a [u8],
    }

    fn file<'a>(name: &'a str, data: &'a str) -> M<'a> {
        M {
            name: name.as_bytes(),
            kind: tar::EntryType::Regular,
            link: b"",
            data: data.as_bytes(),
        }
    }

    fn link<'a>(kind: tar::EntryType, name: &'a str, target: &'a str) -> M<'a> {
        M {
            name: name.as_bytes(),
            kind,
            link: target.as_bytes(),
            data: b"",
        }
    }

    fn dir(name: &str) -> M<'_> {
        M {
            name: name.as_bytes(),
            kind: tar::EntryType::Directory,
            link: b"",
            data: b"",
        }
    }

    fn build(members: &[M<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in members {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..m.name.len()].copy_from_slice(m.name);
            h.as_old_mut().linkname[..m.link.len()].copy_from_slice(m.link);
            h.set_entry_type(m.kind);
            h.set_mode(0o644);
            h.set_uid(1000);
            h.set_gid(1000);
            h.set_mtime(1_600_000_000);
            h.set_size(m.data.len() as u64);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(m.data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn open_bytes(bytes: &[u8]) -> Result<TarSource, TarSourceError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src.tar");
        std::fs::write(&path, bytes).unwrap();
        let src = TarSource::open(&path, dir.path());
        drop(dir);
        src
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn paths(src: &TarSource) -> Vec<String> {
        src.entries()
            .iter()
            .map(|e| e.entry.display_path())
            .collect()
    }

    fn content(src: &TarSource, i: usize) -> String {
        let mut s = String::new();
        src.content(&src.entries()[i])
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn parent_dir_components_are_refused() {
        for name in ["../evil", "./a/../../evil", "/../evil", "a/.."] {
            let err = open_bytes(&build(&[dir("a/"), file(name, "x")])).unwrap_err();
            match &err {
                TarSourceError::ParentDir { entry, .. } => assert_eq!(entry, name),
                other => panic!("{name}: {other:?}"),
            }
            assert!(err.to_string().contains(name), "{err}");
        }
        // In a hard link's target too.
        let err = open_bytes(&build(&[
            file("a", "x"),
            link(tar::EntryType::Link, "b", "../a"),
        ]))
        .unwrap_err();
        assert!(matches!(err, TarSourceError::ParentDir { .. }), "{err:?}");
    }

    #[test]
    fn hardlink_to_missing_or_later_entry_is_refused() {
        let err = open_bytes(&build(&[
            link(tar::EntryType::Link, "bin/sh", "bin/dash"),
            file("bin/dash", "x"),
        ]))
        .unwrap_err();
        match &err {
            TarSourceError::HardlinkTargetMissing { entry, target, .. } => {
                assert_eq!(entry, "bin/sh");
                assert_eq!(target, "bin/dash");
            }
            other => panic!("{other:?}"),
        }
        let err =
            open_bytes(&build(&[dir("d/"), link(tar::EntryType::Link, "e", "d")])).unwrap_err();
        assert!(
            matches!(err, TarSourceError::HardlinkToDirectory { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_streams_are_errors_naming_the_source() {
        let big = "0123456789".repeat(10_000);
        let tar = build(&[file("etc/a", "x"), file("usr/big", &big), file("zz", "y")]);

        // gzip cut in the middle of usr/big.
        let gzipped = gz(&tar);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.tar.gz");
        std::fs::write(&path, &gzipped[..gzipped.len() / 2]).unwrap();
        let err = TarSource::open(&path, dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("cut.tar.gz"), "{msg}");
        assert!(
            matches!(
                err,
                TarSourceError::Read { .. } | TarSourceError::Truncated { .. }
            ),
            "{err:?}"
        );

        // gzip missing only its trailer: the data is complete but unverified.
        std::fs::write(&path, &gzipped[..gzipped.len() - 4]).unwrap();
        assert!(TarSource::open(&path, dir.path()).is_err());

        // A plain tar cut inside usr/big's content.
        let plain = dir.path().join("cut.tar");
        std::fs::write(&plain, &tar[..2048]).unwrap();
        let err = TarSource::open(&plain, dir.path()).unwrap_err();
        match &err {
            TarSourceError::Truncated { entry, .. } => assert_eq!(entry, "usr/big"),
            other => panic!("{other:?}"),
        }

        // xz and zstd cut short.
        for (tool, ext) in [("xz", "xz"), ("zstd", "zst")] {
            let full = dir.path().join("full.tar");
            std::fs::write(&full, &tar).unwrap();
            let out = std::process::Command::new(tool)
                .arg("-c")
                .arg(&full)
                .output()
                .unwrap();
            let cut = dir.path().join(format!("cut.tar.{ext}"));
            std::fs::write(&cut, &out.stdout[..out.stdout.len() - 16]).unwrap();
            let err = TarSource::open(&cut, dir.path()).unwrap_err();
            assert!(err.to_string().contains(&format!("cut.tar.{ext}")), "{err}");
        }

        // A plain tar cut exactly after an entry, before the end-of-archive marker.
        std::fs::write(&plain, &tar[..1024]).unwrap();
        let err = TarSource::open(&plain, dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("end-of-archive marker after etc/a"),
            "{err}"
        );

        // Not a tar at all.
        std::fs::write(&plain, b"").unwrap();
        assert!(matches!(
            TarSource::open(&plain, dir.path()).unwrap_err(),
            TarSourceError::Empty { .. }
        ));
    }

    #[test]
    fn entries_below_a_symlink_are_refused() {
        let err = open_bytes(&build(&[
            link(tar::EntryType::Symlink, "lib", "/etc"),
            file("lib/passwd", "evil"),
        ]))
        .unwrap_err();
        match &err {
            TarSourceError::NotUnderDirectory { entry, parent, .. } => {
                assert_eq!(entry, "lib/passwd");
                assert_eq!(parent, "lib");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths_are_normalised_sorted_and_last_duplicate_wins() {
        for compress in [false, true] {
            let tar = build(&[
                dir("./"),
                dir("./usr/"),
                file("./usr/b", "first"),
                file("/usr//a", "a"),
                file("usr/./b", "second"),
                link(tar::EntryType::Symlink, "abs", "/usr/a"),
            ]);
            let bytes = if compress { gz(&tar) } else { tar };
            let src = open_bytes(&bytes).unwrap();
            assert_eq!(paths(&src), ["abs", "usr", "usr/a", "usr/b"]);
            assert_eq!(content(&src, 3), "second");
            assert_eq!(
                src.entries()[0].entry.kind,
                EntryKind::Symlink {
                    target: b"/usr/a".to_vec()
                }
            );
            assert_eq!(src.entries()[2].entry.uid, 1000);
        }
    }

    #[test]
    fn hardlink_groups_are_reordered_for_sorted_output() {
        // The archive holds z/file then a link a/link -> z/file; sorted, a/link comes
        // first, so it must carry the content and z/file must become the link.
        let tar = build(&[
            dir("a/"),
            dir("z/"),
            file("z/file", "shared"),
            link(tar::EntryType::Link, "a/link", "z/file"),
        ]);
        let src = open_bytes(&gz(&tar)).unwrap();
        assert_eq!(paths(&src), ["a", "a/link", "z", "z/file"]);
        assert_eq!(src.entries()[1].entry.kind, EntryKind::File);
        assert_eq!(content(&src, 1), "shared");
        assert_eq!(
            src.entries()[3].entry.kind,
            EntryKind::Hardlink {
                target: b"a/link".to_vec()
            }
        );
        // A link made before its target was replaced keeps the old content.
        let tar = build(&[
            file("f", "old"),
            link(tar::EntryType::Link, "g", "f"),
            file("f", "new"),
        ]);
        let src = open_bytes(&tar).unwrap();
        assert_eq!(paths(&src), ["f", "g"]);
        assert_eq!(content(&src, 0), "new");
        assert_eq!(content(&src, 1), "old");
    }

    #[test]
    fn bzip2_is_named() {
        let err = open_bytes(b"BZh91AY&SY").unwrap_err();
        assert!(err.to_string().contains("bzip2"), "{err}");
    }
}
