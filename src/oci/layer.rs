//! Writing a rootfs as a reproducible, compressed OCI layer in one streaming pass.
//!
//! The same rootfs must give the same layer bytes on any machine, at any time, with any
//! thread count: entries are sorted by path, owners are numeric (0:0 for a `dir` source
//! unless owners are preserved) with no user/group names, every mtime is
//! `min(mtime, created)`, there is no atime/ctime, and the compressors are deterministic
//! (see [`crate::oci::compress`]).
//!
//! Nothing is held whole: the tar bytes are hashed (diff_id) as they go into the
//! compressor, and the compressed bytes are hashed (digest) and counted as they go to the
//! caller's writer (typically the cache's blob writer).
//!
//! The same pass gathers what the SBOM needs ([`crate::oci::contents`]) and the ELF
//! census, so no later step reads the layer back.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::oci::compress::{self, GzipEncoder};
use crate::oci::contents::{self, Collector, Contents};
use crate::oci::elf::{ElfCensus, ELF_PEEK};
use crate::rootfs::fingerprint::clamp_mtime;
use crate::rootfs::tar_source::{TarSource, TarSourceError};
use crate::rootfs::walk::{walk, WalkError};
use crate::rootfs::{Entry, EntryKind, Owners};

/// Errors of writing a layer; each names the file or entry concerned.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Walking a `dir` source failed.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// Reading a `tar` source failed.
    #[error(transparent)]
    TarSource(#[from] TarSourceError),
    /// A file of the source could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file (for a tar source: `tarball:entry`).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file changed between the walk and the moment its bytes were packed.
    #[error(
        "{path} changed while the layer was being written; is something still writing the rootfs?"
    )]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// Writing the compressed layer failed (the output, or the compressor).
    #[error("cannot write the layer into the cache (at entry {entry}): {source}")]
    Write {
        /// The entry being written, or `end of archive`.
        entry: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Where the rootfs comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSource {
    /// A directory tree.
    Dir {
        /// Its root.
        root: PathBuf,
        /// Whether its owners go into the image.
        owners: Owners,
    },
    /// A tarball (`.tar`, `.tar.gz`, `.tar.xz`, `.tar.zst`); its owners are kept.
    Tar {
        /// The tarball.
        path: PathBuf,
    },
}

pub use crate::manifest::Compression;

/// How to write a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOptions {
    /// The image's `created` time, seconds since the epoch: each entry's mtime becomes
    /// `min(its mtime, created)`, so a rebuilt tree of fresh files gives the same layer.
    pub mtime: u64,
    /// gzip or zstd.
    pub compression: Compression,
    /// Compression threads (0: this thread plus the cores the process budget has
    /// free, see `budget`); never changes the output bytes.
    pub threads: usize,
    /// Where a compressed tarball source spools its file contents.
    pub temp_dir: PathBuf,
}

/// What the layer step produces besides the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerOutput {
    /// `sha256:<hex>` of the uncompressed tar, for the image config's `rootfs.diff_ids`.
    pub diff_id: String,
    /// `sha256:<hex>` of the compressed bytes, the blob's digest.
    pub digest: String,
    /// Compressed size in bytes.
    pub size: u64,
    /// Uncompressed tar size in bytes.
    pub uncompressed_size: u64,
    /// Number of tar entries written (every kind).
    pub files: u64,
    /// Machines of the ELF files packed, for the platform check.
    pub elf: ElfCensus,
    /// What the SBOM needs to know of the layer, gathered in the same pass
    /// (`None` only in the odd case [`Collector::finish`] describes).
    pub contents: Option<Contents>,
}

use crate::digest::HashingWriter as HashCount;

type Sink<'a> = HashCount<&'a mut dyn Write>;

enum Encoder<'a> {
    Gzip(GzipEncoder<Sink<'a>>),
    Zstd(zstd::stream::write::Encoder<'static, Sink<'a>>),
}

impl<'a> Encoder<'a> {
    fn finish(self) -> io::Result<Sink<'a>> {
        match self {
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl Write for Encoder<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.flush(),
        }
    }
}

const BLOCK: usize = 512;
/// Size of the copy buffer: big enough that per-read overhead vanishes.
const COPY_BUF: usize = 256 * 1024;

/// Fills a tar name-like field, returning false when the bytes do not fit.
fn fill_field(field: &mut [u8], bytes: &[u8]) -> bool {
    field.fill(0);
    let n = bytes.len().min(field.len());
    field[..n].copy_from_slice(&bytes[..n]);
    bytes.len() <= field.len()
}

/// The tar stream being built, over the uncompressed-side hasher.
struct TarWriter<'a> {
    w: HashCount<Encoder<'a>>,
    buf: Vec<u8>,
    entries: u64,
    census: ElfCensus,
    contents: Collector,
}

impl TarWriter<'_> {
    fn write_all(&mut self, entry: &str, bytes: &[u8]) -> Result<(), LayerError> {
        self.w.write_all(bytes).map_err(|source| LayerError::Write {
            entry: entry.to_owned(),
            source,
        })
    }

    fn pad(&mut self, entry: &str, len: u64) -> Result<(), LayerError> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.write_all(entry, &[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// A GNU `././@LongLink` member carrying a name or link target too long for 100 bytes
    /// (read by GNU tar, bsdtar, Go's archive/tar and Python's tarfile).
    fn long_link(&mut self, entry: &str, typeflag: u8, bytes: &[u8]) -> Result<(), LayerError> {
        let mut h = tar::Header::new_gnu();
        fill_field(&mut h.as_old_mut().name, b"././@LongLink");
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(bytes.len() as u64 + 1);
        h.set_entry_type(tar::EntryType::new(typeflag));
        h.set_cksum();
        self.write_all(entry, h.as_bytes())?;
        self.write_all(entry, bytes)?;
        self.write_all(entry, &[0])?;
        self.pad(entry, bytes.len() as u64 + 1)
    }

    /// Writes one entry; `content` must yield exactly `e.size` bytes for a file.
    fn append(
        &mut self,
        e: &Entry,
        uid: u64,
        gid: u64,
        mtime: u64,
        content: Option<&mut dyn Read>,
        source_name: &dyn Fn() -> PathBuf,
    ) -> Result<(), LayerError> {
        let shown = e.display_path();
        let mut name = e.path.clone();
        if e.kind == EntryKind::Dir {
            name.push(b'/');
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode & 0o7777);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h.set_size(if e.kind == EntryKind::File { e.size } else { 0 });
        let link: Option<&[u8]> = match &e.kind {
            EntryKind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                None
            }
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                None
            }
            EntryKind::Symlink { target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                Some(target)
            }
            EntryKind::Hardlink { target } => {
                h.set_entry_type(tar::EntryType::Link);
                Some(target)
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                h.set_entry_type(if matches!(e.kind, EntryKind::CharDevice { .. }) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                let dev_err = |source| LayerError::Write {
                    entry: shown.clone(),
                    source,
                };
                h.set_device_major(*major).map_err(dev_err)?;
                h.set_device_minor(*minor).map_err(dev_err)?;
                None
            }
            EntryKind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                None
            }
        };
        match &e.kind {
            EntryKind::Symlink { target } => self.contents.symlink(&e.path, target),
            EntryKind::Hardlink { target } => self.contents.hardlink(&e.path, target),
            _ => {}
        }
        if let Some(link) = link {
            if !fill_field(&mut h.as_old_mut().linkname, link) {
                self.long_link(&shown, b'K', link)?;
            }
        }
        if !fill_field(&mut h.as_old_mut().name, &name) {
            self.long_link(&shown, b'L', &name)?;
        }
        h.set_cksum();
        self.write_all(&shown, h.as_bytes())?;
        self.entries += 1;

        if e.kind == EntryKind::File {
            let Some(content) = content else {
                return Err(LayerError::Changed {
                    path: source_name(),
                });
            };
            let mut left = e.size;
            let collect = self.contents.begin_file(&e.path);
            let mut head = Vec::with_capacity(ELF_PEEK);
            let mut buf = std::mem::take(&mut self.buf);
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = match content.read(&mut buf[..want]) {
                    Ok(0) => {
                        self.buf = buf;
                        return Err(LayerError::Changed {
                            path: source_name(),
                        });
                    }
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        return Err(LayerError::Read {
                            path: source_name(),
                            source,
                        })
                    }
                };
                if head.len() < ELF_PEEK {
                    let k = (ELF_PEEK - head.len()).min(n);
                    head.extend_from_slice(&buf[..k]);
                }
                if collect {
                    self.contents.data(&buf[..n]);
                }
                if let Err(err) = self.write_all(&shown, &buf[..n]) {
                    self.buf = buf;
                    return Err(err);
                }
                left -= n as u64;
            }
            self.buf = buf;
            self.census.record(&shown, &head);
            self.contents.end_file();
            self.pad(&shown, e.size)?;
        }
        Ok(())
    }
}

/// Writes `source` as a compressed layer to `out` and says what was written.
///
/// `out` receives exactly the blob bytes; the caller decides where they live (the cache's
/// blob writer checks nothing half-written is visible).
pub fn write_layer(
    source: &LayerSource,
    opts: &LayerOptions,
    out: &mut dyn Write,
) -> Result<LayerOutput, LayerError> {
    // 0: the caller's thread plus whatever cores no other step is using.
    let extra = match opts.threads {
        0 => crate::budget::global().extra(usize::MAX),
        _ => crate::budget::global().extra(0),
    };
    let threads = match opts.threads {
        0 => 1 + extra.count(),
        n => n,
    };
    let sink = HashCount::new(out);
    let encoder = match opts.compression {
        Compression::Gzip => Encoder::Gzip(GzipEncoder::new(sink, compress::GZIP_LEVEL, threads)),
        Compression::Zstd => {
            Encoder::Zstd(
                compress::zstd_encoder(sink).map_err(|source| LayerError::Write {
                    entry: "the start".into(),
                    source,
                })?,
            )
        }
    };
    let mut tw = TarWriter {
        w: HashCount::new(encoder),
        buf: vec![0u8; COPY_BUF],
        entries: 0,
        census: ElfCensus::default(),
        // Replaced once the entry list is known (see `hash_files`).
        contents: Collector::new(false),
    };

    match source {
        LayerSource::Dir { root, owners } => write_dir(&mut tw, root, *owners, opts.mtime)?,
        LayerSource::Tar { path } => {
            let tar = TarSource::open(path, &opts.temp_dir)?;
            tw.contents = Collector::new(hash_files(tar.entries().iter().map(|t| &t.entry)));
            for te in tar.entries() {
                let e = &te.entry;
                let mut content = tar.content(te);
                let name = || {
                    let mut p = path.as_os_str().to_owned();
                    p.push(":");
                    p.push(e.display_path());
                    PathBuf::from(p)
                };
                tw.append(
                    e,
                    e.uid,
                    e.gid,
                    clamp_mtime(e.mtime, opts.mtime),
                    Some(&mut content),
                    &name,
                )?;
            }
        }
    }

    tw.write_all("end of archive", &[0u8; 2 * BLOCK])?;
    let TarWriter {
        w,
        entries,
        census,
        contents,
        ..
    } = tw;
    let (encoder, diff_id, tar_len) = w.finish();
    let end_err = |source| LayerError::Write {
        entry: "end of archive".into(),
        source,
    };
    let mut sink = encoder.finish().map_err(end_err)?;
    sink.flush().map_err(end_err)?;
    let (_, digest, size) = sink.finish();
    Ok(LayerOutput {
        diff_id,
        digest,
        size,
        uncompressed_size: tar_len,
        files: entries,
        elf: census,
        contents: contents.finish(),
    })
}

/// Whether the SBOM needs every file's checksums: only when no entry could be a
/// package database (decided from the entry list, known before any byte is
/// read, so a rootfs with one hashes nothing extra).
fn hash_files<'e>(mut entries: impl Iterator<Item = &'e Entry>) -> bool {
    !entries.any(|e| {
        matches!(e.kind, EntryKind::File | EntryKind::Hardlink { .. })
            && contents::may_be_package_db(&e.path)
    })
}

fn write_dir(
    tw: &mut TarWriter<'_>,
    root: &Path,
    owners: Owners,
    created: u64,
) -> Result<(), LayerError> {
    let entries = walk(root)?;
    tw.contents = Collector::new(hash_files(entries.iter().map(|w| &w.entry)));
    for we in entries {
        let e = &we.entry;
        let (uid, gid) = match owners {
            Owners::Root => (0, 0),
            Owners::Preserve => (e.uid, e.gid),
        };
        let disk = we.disk_path(root);
        let name = || disk.clone();
        let mtime = clamp_mtime(e.mtime, created);
        if e.kind == EntryKind::File {
            let mut file = File::open(&disk).map_err(|source| LayerError::Read {
                path: disk.clone(),
                source,
            })?;
            let meta = file.metadata().map_err(|source| LayerError::Read {
                path: disk.clone(),
                source,
            })?;
            // The walk stat'ed a path; make sure the file opened is that file, unchanged.
            if meta.ino() != we.stat.ino || meta.size() != e.size {
                return Err(LayerError::Changed { path: disk });
            }
            tw.append(e, uid, gid, mtime, Some(&mut file), &name)?;
        } else {
            tw.append(e, uid, gid, mtime, None, &name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::test_fixture::{make_rootfs, set_all_mtimes, LONG_DIR, LONG_FILE};
    use std::process::Command;

    const OLD: i64 = 1_600_000_000; // 2020-09-13
    const CREATED: u64 = 1_500_000_000; // 2017-07-14: earlier than the files

    fn layer(
        source: &LayerSource,
        mtime: u64,
        compression: Compression,
        threads: usize,
    ) -> (Vec<u8>, LayerOutput) {
        let tmp = tempfile::tempdir().unwrap();
        let opts = LayerOptions {
            mtime,
            compression,
            threads,
            temp_dir: tmp.path().to_path_buf(),
        };
        let mut out = Vec::new();
        let info = write_layer(source, &opts, &mut out).unwrap();
        (out, info)
    }

    fn python(script: &str, file: &Path) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn dir_layer_is_deterministic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        make_rootfs(&root, OLD);
        let src = LayerSource::Dir {
            root: root.clone(),
            owners: Owners::Root,
        };
        let (a, info) = layer(&src, CREATED, Compression::Gzip, 1);
        let (b, _) = layer(&src, CREATED, Compression::Gzip, 1);
        let (c, info4) = layer(&src, CREATED, Compression::Gzip, 4);
        assert!(a == b, "two runs differ");
        assert!(a == c, "threads=1 and threads=4 differ");
        assert_eq!(info, info4);
        assert_eq!(info.size, a.len() as u64);
        assert_eq!(info.digest, crate::digest::sha256(&a));
        // diff_id is the sha256 of the decompressed stream.
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(info.uncompressed_size, tar.len() as u64);
        assert_eq!(info.diff_id, crate::digest::sha256(&tar));

        let file = dir.path().join("layer.tar.gz");
        std::fs::write(&file, &a).unwrap();

        // GNU tar: numeric owners 0/0, clamped mtimes, every entry listed.
        let out = Command::new("tar")
            .args(["--numeric-owner", "--full-time", "-tvzf"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8(out.stdout).unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).is_empty());
        for line in listing.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[1], "0/0", "{line}");
            assert!(
                line.contains("2017-07-14 02:40:00"),
                "mtime not clamped: {line}"
            );
        }
        assert!(
            listing.contains(&format!("{LONG_DIR}/{LONG_FILE}")),
            "{listing}"
        );
        assert!(listing.contains("-rwsr-xr-x 0/0"), "setuid lost: {listing}");
        assert!(listing.contains("drwxrwxrwt 0/0"), "sticky lost: {listing}");
        assert!(
            listing.contains("usr/bin/tool-alias link to usr/bin/tool"),
            "{listing}"
        );
        assert!(
            listing.contains("etc/abs-link -> /etc/hostname"),
            "{listing}"
        );

        // Python's tarfile agrees on names, kinds, owners and link targets.
        let py = python(
            "import sys,tarfile\n\
             t=tarfile.open(sys.argv[1])\n\
             for m in t.getmembers():\n\
             \x20 print(m.name, m.type.decode(), oct(m.mode), m.uid, m.gid, repr(m.uname), repr(m.gname), m.mtime, m.size, m.linkname)\n",
            &file,
        );
        let names: Vec<&str> = py.lines().map(|l| l.split(' ').next().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "entries not sorted");
        assert_eq!(info.files, names.len() as u64);
        for l in py.lines() {
            assert!(l.contains(" 0 0 '' '' 1500000000 "), "{l}");
        }
        assert!(
            py.contains(&format!(
                "usr/long-link 2 0o777 0 0 '' '' 1500000000 0 /{LONG_DIR}/{LONG_FILE}"
            )),
            "{py}"
        );
        assert!(py.contains("usr/bin/tool-alias 1 "), "{py}");
        assert!(py.contains("var/fifo 6 0o644"), "{py}");
        assert!(
            py.contains("etc/empty 0 0o644 0 0 '' '' 1500000000 0"),
            "{py}"
        );
        assert!(!names
            .iter()
            .any(|n| n.is_empty() || *n == "." || *n == "./"));

        // Raw headers: directories end with '/', no user/group names.
        let mut ar = tar::Archive::new(&tar[..]);
        for entry in ar.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            if h.entry_type() == tar::EntryType::Directory {
                assert!(entry.path_bytes().ends_with(b"/"));
            }
        }

        // The ELF census saw the fake x86-64 binary once (its alias is a link).
        assert_eq!(info.elf.total(), 1);
        info.elf
            .check(crate::manifest::Arch::by_name("amd64").unwrap().elf)
            .unwrap();
        assert!(info
            .elf
            .check(crate::manifest::Arch::by_name("arm64v8").unwrap().elf)
            .is_err());
    }

    #[test]
    fn clamp_changes_nothing_for_older_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        make_rootfs(&root, OLD);
        let src = LayerSource::Dir {
            root: root.clone(),
            owners: Owners::Root,
        };
        let (a, _) = layer(&src, 1_700_000_000, Compression::Gzip, 2);
        let (b, _) = layer(&src, 1_800_000_000, Compression::Gzip, 2);
        assert!(a == b);
        // ...but a touched file older than `created` does change the layer.
        set_all_mtimes(&root, OLD - 10);
        let (c, _) = layer(&src, 1_700_000_000, Compression::Gzip, 2);
        assert!(a != c);
    }

    #[test]
    fn owners_preserve_keeps_ids() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        make_rootfs(&root, OLD);
        if std::os::unix::fs::chown(root.join("etc/hostname"), Some(1234), Some(4321)).is_err() {
            crate::stderr::say!("not root: skipping chown check");
            return;
        }
        let keep = LayerSource::Dir {
            root: root.clone(),
            owners: Owners::Preserve,
        };
        let (bytes, _) = layer(&keep, CREATED, Compression::Gzip, 1);
        let file = dir.path().join("l.tgz");
        std::fs::write(&file, bytes).unwrap();
        let py = python(
            "import sys,tarfile\nprint(tarfile.open(sys.argv[1]).getmember('etc/hostname').uid)",
            &file,
        );
        assert_eq!(py.trim(), "1234");
    }

    #[test]
    fn zstd_layer_is_deterministic_and_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        make_rootfs(&root, OLD);
        let src = LayerSource::Dir {
            root,
            owners: Owners::Root,
        };
        let (a, ia) = layer(&src, CREATED, Compression::Zstd, 1);
        let (b, ib) = layer(&src, CREATED, Compression::Zstd, 4);
        assert!(a == b);
        assert_eq!(ia, ib);
        let (_, ig) = layer(&src, CREATED, Compression::Gzip, 1);
        assert_eq!(ia.diff_id, ig.diff_id, "same tar whatever the compression");
        let file = dir.path().join("l.tar.zst");
        std::fs::write(&file, &a).unwrap();
        let out = Command::new("tar")
            .args(["--zstd", "-tf"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A tar of the fixture made by GNU tar, in all four compressions, gives the same
    /// layer as the directory itself with owners preserved.
    #[test]
    fn tar_sources_match_dir_source() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        make_rootfs(&root, OLD);
        let plain = dir.path().join("src.tar");
        let st = Command::new("tar")
            .args(["--numeric-owner", "--sort=name", "-cf"])
            .arg(&plain)
            .arg("-C")
            .arg(&root)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let mut sources = vec![plain.clone()];
        for (tool, ext) in [("gzip", "gz"), ("xz", "xz"), ("zstd", "zst")] {
            let out = dir.path().join(format!("src.tar.{ext}"));
            let data = Command::new(tool).arg("-c").arg(&plain).output().unwrap();
            assert!(data.status.success());
            std::fs::write(&out, data.stdout).unwrap();
            sources.push(out);
        }
        // Detection is by magic bytes: a misnamed file still works.
        let misnamed = dir.path().join("really-zstd.tar");
        std::fs::copy(&sources[3], &misnamed).unwrap();
        sources.push(misnamed);

        let (want, want_info) = layer(
            &LayerSource::Dir {
                root,
                owners: Owners::Preserve,
            },
            CREATED,
            Compression::Gzip,
            2,
        );
        for path in sources {
            let (got, info) = layer(
                &LayerSource::Tar { path: path.clone() },
                CREATED,
                Compression::Gzip,
                2,
            );
            assert_eq!(info.diff_id, want_info.diff_id, "{}", path.display());
            assert!(got == want, "{}", path.display());
        }
    }

    /// What the layer step gathers in its pass is exactly what reading the
    /// layer back gives (the sbom step's old way, now its fallback): with a
    /// package database (no file hashed) and without (every file hashed, hard
    /// links and long names included), from a folder and from a tarball.
    #[test]
    fn contents_gathered_in_the_pass_are_what_reading_the_layer_back_gives() {
        for with_db in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("rootfs");
            make_rootfs(&root, OLD);
            if with_db {
                std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
                std::fs::write(
                    root.join("var/lib/dpkg/status"),
                    "Package: tool\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n",
                )
                .unwrap();
                std::fs::create_dir_all(root.join("usr/share/doc/tool")).unwrap();
                std::fs::write(root.join("usr/share/doc/tool/copyright"), "mine\n").unwrap();
            }
            let tarball = dir.path().join("src.tar");
            let st = Command::new("tar")
                .args(["--numeric-owner", "-cf"])
                .arg(&tarball)
                .arg("-C")
                .arg(&root)
                .arg(".")
                .status()
                .unwrap();
            assert!(st.success());
            for src in [
                LayerSource::Dir {
                    root: root.clone(),
                    owners: Owners::Root,
                },
                LayerSource::Tar { path: tarball },
            ] {
                let (bytes, info) = layer(&src, CREATED, Compression::Gzip, 2);
                let back =
                    crate::attest::contents::read_tar(flate2::read::GzDecoder::new(&bytes[..]))
                        .unwrap();
                assert_eq!(info.contents.as_ref(), Some(&back), "{src:?}");
                assert_eq!(back.has_package_db, with_db);
                if with_db {
                    assert!(back.files.is_empty());
                    assert_eq!(back.packages.len(), 1);
                    assert_eq!(back.copyrights["tool"], "mine\n");
                } else {
                    let paths: Vec<&str> = back.files.iter().map(|f| f.path.as_str()).collect();
                    assert!(paths.contains(&"usr/bin/tool-alias"), "{paths:?}");
                    assert!(paths.iter().any(|p| p.ends_with(LONG_FILE)), "{paths:?}");
                }
            }
        }
    }

    /// A `status` that is only a hard link to a file the SBOM does not read looks
    /// like a package database before the pass (so nothing is hashed) but is none:
    /// the layer says it has no contents and the sbom step reads the layer back.
    #[test]
    fn a_status_hard_linked_to_another_file_leaves_the_contents_to_a_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        make_rootfs(&root, OLD);
        std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        std::fs::hard_link(root.join("etc/hostname"), root.join("var/lib/dpkg/status")).unwrap();
        let src = LayerSource::Dir {
            root,
            owners: Owners::Root,
        };
        let (bytes, info) = layer(&src, CREATED, Compression::Gzip, 1);
        assert_eq!(info.contents, None);
        let back =
            crate::attest::contents::read_tar(flate2::read::GzDecoder::new(&bytes[..])).unwrap();
        assert!(!back.has_package_db && !back.files.is_empty());
    }

    #[test]
    fn write_errors_name_the_entry() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        make_rootfs(&root, OLD);
        let opts = LayerOptions {
            mtime: CREATED,
            compression: Compression::Zstd,
            threads: 1,
            temp_dir: dir.path().to_path_buf(),
        };
        let err = write_layer(
            &LayerSource::Dir {
                root,
                owners: Owners::Root,
            },
            &opts,
            &mut Full,
        )
        .unwrap_err();
        assert!(matches!(err, LayerError::Write { .. }), "{err:?}");
    }
}
