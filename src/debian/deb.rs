//! A `.deb` read in process: no `dpkg`, `ar` or `tar` on the host, no extraction.
//!
//! A `.deb` is an `ar` archive (the common `!<arch>\n` format: 60-byte headers, members
//! padded to an even offset) of `debian-binary` (`2.0\n`), `control.tar[.gz|.xz|.zst]`
//! and `data.tar[.gz|.xz|.zst]`, in that order; members whose name starts with `_` are
//! skipped, as dpkg does. The `ar` reader is hand-written (~80 lines): the `ar` crate
//! would add a dependency for the one format dpkg writes, and its GNU/BSD long-name
//! support is exactly what a `.deb` never needs and we refuse.
//!
//! The data member is read by [`TarSource::from_stream`], so a hostile `.deb` gets the
//! same protection as a hostile rootfs tarball (`..` components, hard links only to
//! earlier entries of the same archive, entries below a symlink, truncation), and the
//! same entry list and content reader feed the layer writer. Contents are spooled into
//! one anonymous temp file (unlinked, so nothing is left on disk, even on error).
//! Compression is told by the member name, as dpkg does, and checked against the
//! member's magic bytes so that a corrupt member is named rather than misread.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::debian::deb822::{self, Paragraph};
use crate::decompress::{self, Format};
use crate::rootfs::display_bytes;
use crate::rootfs::tar_source::{normalise, TarEntry, TarSource, TarSourceError};

mod hashed;
use hashed::HashedFile;

/// The largest control member kept in memory (md5sums of the biggest packages are a few
/// MB); a bigger one is a hostile or broken `.deb`.
const MAX_CONTROL_MEMBER: u64 = 64 << 20;

/// Errors of reading a `.deb`; each names the `.deb` and, where there is one, the `ar`
/// member and the entry inside it.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// The file cannot be opened or read.
    #[error("cannot read {deb}")]
    Open {
        /// The `.deb`.
        deb: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file does not start with the `ar` magic `!<arch>\n`.
    #[error("{deb} is not a .deb (no `!<arch>` ar header); is the download an HTML error page?")]
    NotAnArchive {
        /// The `.deb`.
        deb: PathBuf,
    },
    /// An `ar` member header that does not parse.
    #[error("{deb}: bad ar header at byte {offset}: {problem}")]
    BadHeader {
        /// The `.deb`.
        deb: PathBuf,
        /// Where the header starts.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
    /// A GNU (`/`, `//`, `/123`) or BSD (`#1/...`) long-name member, which dpkg-deb never
    /// writes.
    #[error("{deb}: ar member {member:?} uses a GNU/BSD long-name table, which dpkg never writes; rebuild the package with dpkg-deb")]
    LongName {
        /// The `.deb`.
        deb: PathBuf,
        /// The raw member name.
        member: String,
    },
    /// The file ends inside a member (or inside a member header).
    #[error("{deb} is truncated: ar member {member} is cut short (download again)")]
    Truncated {
        /// The `.deb`.
        deb: PathBuf,
        /// The member, or `the header after X`.
        member: String,
    },
    /// `debian-binary` is not the first member or is not format 2.x.
    #[error("{deb}: debian-binary must be the first member and say `2.0`, found {found:?}")]
    BadFormat {
        /// The `.deb`.
        deb: PathBuf,
        /// What was found (a member name or the member's text).
        found: String,
    },
    /// A member that has no place in a `.deb`, or one out of order or repeated.
    #[error("{deb}: unexpected ar member {member} ({problem})")]
    UnexpectedMember {
        /// The `.deb`.
        deb: PathBuf,
        /// The member.
        member: String,
        /// Why it is unexpected.
        problem: &'static str,
    },
    /// `control.tar*` or `data.tar*` is missing.
    #[error("{deb} has no {member} member")]
    MissingMember {
        /// The `.deb`.
        deb: PathBuf,
        /// `control.tar` or `data.tar`.
        member: &'static str,
    },
    /// A member compressed with something imgraph does not read (bzip2, lzma).
    #[error("{deb}: member {member} is compressed with a format imgraph does not read; rebuild with `dpkg-deb -Zxz`, `-Zzstd` or `-Zgzip`")]
    UnsupportedCompression {
        /// The `.deb`.
        deb: PathBuf,
        /// The member.
        member: String,
    },
    /// A member whose bytes are not in the compression its name says.
    #[error("{deb}: member {member} is {found} data, not what its name says (corrupt .deb?)")]
    CompressionMismatch {
        /// The `.deb`.
        deb: PathBuf,
        /// The member.
        member: String,
        /// The format its magic bytes show.
        found: &'static str,
    },
    /// Reading or decoding the control member failed.
    #[error("cannot read {deb}:{member} at {entry}: truncated or corrupt archive?")]
    ControlRead {
        /// The `.deb`.
        deb: PathBuf,
        /// The member.
        member: String,
        /// The entry being read, or the last good one.
        entry: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A control-archive entry that is not a top-level plain file.
    #[error("{deb}:{member}: entry {entry} {problem}; refusing it")]
    BadControlEntry {
        /// The `.deb`.
        deb: PathBuf,
        /// The member.
        member: String,
        /// The entry as stored.
        entry: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The `control` file is missing, not UTF-8, not deb822, or not one paragraph with a
    /// `Package` field.
    #[error("{deb}:{member}: control file: {problem}")]
    BadControl {
        /// The `.deb`.
        deb: PathBuf,
        /// The member.
        member: String,
        /// What is wrong.
        problem: String,
    },
    /// The data member: the error names `DEB:data.tar.*` and the entry.
    #[error(transparent)]
    Data(TarSourceError),
    /// The file is not the `.deb` `images.lock` pins (changed after it was fetched).
    #[error("{deb} is not the .deb images.lock pins: it has sha256:{found} ({found_size} bytes), the lock says sha256:{expected} ({expected_size} bytes)")]
    NotLocked {
        /// The `.deb`.
        deb: PathBuf,
        /// The locked sha256 (hex).
        expected: String,
        /// The locked size.
        expected_size: u64,
        /// The file's sha256 (hex).
        found: String,
        /// The file's size.
        found_size: u64,
    },
}

/// One `ar` member: its name (trailing spaces and GNU `/` removed) and where its bytes
/// are in the file.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    offset: u64,
    size: u64,
}

/// Lists the members of the `ar` archive in `file`, checking that each lies inside it.
fn ar_members(deb: &Path, file: &HashedFile) -> Result<Vec<Member>, DebError> {
    let open = |source| DebError::Open {
        deb: deb.to_path_buf(),
        source,
    };
    let len = file.file().metadata().map_err(open)?.len();
    let mut magic = [0u8; 8];
    let n = read_full_at(file, &mut magic, 0).map_err(open)?;
    if n < magic.len() || &magic != b"!<arch>\n" {
        return Err(DebError::NotAnArchive {
            deb: deb.to_path_buf(),
        });
    }
    let mut members = Vec::new();
    let mut pos = 8u64;
    while pos < len {
        let mut h = [0u8; 60];
        let n = read_full_at(file, &mut h, pos).map_err(open)?;
        let last = members
            .last()
            .map_or("the ar magic".to_string(), |m: &Member| m.name.clone());
        if n < h.len() {
            return Err(DebError::Truncated {
                deb: deb.to_path_buf(),
                member: format!("the header after {last}"),
            });
        }
        let bad = |problem: String| DebError::BadHeader {
            deb: deb.to_path_buf(),
            offset: pos,
            problem,
        };
        if &h[58..60] != b"`\n" {
            return Err(bad("no `\\n terminator".into()));
        }
        let raw_name = display_bytes(&h[..16]).trim_end_matches(' ').to_string();
        if raw_name.starts_with("#1/") || raw_name.starts_with('/') {
            return Err(DebError::LongName {
                deb: deb.to_path_buf(),
                member: raw_name,
            });
        }
        let name = raw_name.strip_suffix('/').unwrap_or(&raw_name).to_string();
        let size_text = std::str::from_utf8(&h[48..58]).unwrap_or("").trim_end();
        let size: u64 = size_text
            .parse()
            .ok()
            .filter(|_| size_text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(format!("member {name}: size {size_text:?} is not a number")))?;
        let offset = pos + 60;
        if offset.checked_add(size).is_none_or(|end| end > len) {
            return Err(DebError::Truncated {
                deb: deb.to_path_buf(),
                member: name,
            });
        }
        members.push(Member { name, offset, size });
        // Members start at even offsets; the padding byte may be missing at the end.
        pos = offset + size + (size & 1);
    }
    Ok(members)
}

/// `read_at` until `buf` is full or the file ends; the number of bytes read.
fn read_full_at(file: &HashedFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A `.deb`, read: its control data in memory, its data entries indexed with their
/// contents spooled, in the shape of [`TarSource`] so the layer writer takes either.
#[derive(Debug)]
pub struct Deb {
    path: PathBuf,
    control: Paragraph,
    md5sums: Option<Vec<u8>>,
    conffiles: Option<Vec<u8>>,
    control_members: Vec<String>,
    /// Every other plain control member (maintainer scripts, `triggers`, `shlibs`, ...)
    /// with its mode: dpkg keeps them in `/var/lib/dpkg/info/` for later upgrades.
    extra_members: Vec<(String, u32, Vec<u8>)>,
    data: TarSource,
}

impl Deb {
    /// Reads the `.deb` at `path`. Data contents are spooled into an anonymous file in
    /// `temp_dir` (deleted when the `Deb` is dropped, or at once on error).
    pub fn open(path: &Path, temp_dir: &Path) -> Result<Deb, DebError> {
        let file = File::open(path).map_err(|source| DebError::Open {
            deb: path.to_path_buf(),
            source,
        })?;
        Deb::read(path, &HashedFile::new(file, false), temp_dir)
    }

    /// Reads the `.deb` at `path` as [`Deb::open`] does, hashing it as it is read,
    /// and refuses it unless it is the file `images.lock` pins (`sha256`, lowercase
    /// or uppercase hex, and `size`): a `.deb` changed in the cache after it was
    /// fetched and verified is never installed. A file that does not match is
    /// reported as [`DebError::NotLocked`] even when it also fails to parse (the
    /// parse error of a tampered file says nothing about the package).
    pub fn open_locked(
        path: &Path,
        temp_dir: &Path,
        sha256: &str,
        size: u64,
    ) -> Result<Deb, DebError> {
        let open_err = |source| DebError::Open {
            deb: path.to_path_buf(),
            source,
        };
        let file = HashedFile::new(File::open(path).map_err(open_err)?, true);
        let len = file.file().metadata().map_err(open_err)?.len();
        // A file of another size is not the locked one: hash it for the message only.
        let parsed = if len == size {
            Some(Deb::read(path, &file, temp_dir))
        } else {
            None
        };
        let (found, found_size) = file.finish().map_err(open_err)?.unwrap_or_default();
        match parsed {
            Some(parsed) if found == sha256.to_ascii_lowercase() && found_size == size => parsed,
            // Another size (or it changed size while read): not the locked file.
            _ => Err(DebError::NotLocked {
                deb: path.to_path_buf(),
                expected: sha256.to_ascii_lowercase(),
                expected_size: size,
                found,
                found_size,
            }),
        }
    }

    /// Parses the `.deb` open in `file`.
    fn read(path: &Path, file: &HashedFile, temp_dir: &Path) -> Result<Deb, DebError> {
        let deb = path.to_path_buf();
        let members = ar_members(path, file)?;
        let Some(first) = members.first() else {
            return Err(DebError::BadFormat {
                deb,
                found: "an empty ar archive".into(),
            });
        };
        if first.name != "debian-binary" {
            return Err(DebError::BadFormat {
                deb,
                found: first.name.clone(),
            });
        }
        let mut version = vec![0u8; first.size.min(64) as usize];
        read_full_at(file, &mut version, first.offset).map_err(|source| DebError::Open {
            deb: deb.clone(),
            source,
        })?;
        let version = display_bytes(&version);
        // dpkg reads format 2.x; a later minor version only adds members starting `_`.
        let ok = version
            .strip_suffix('\n')
            .and_then(|v| v.strip_prefix("2."))
            .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()));
        if !ok || first.size > 64 {
            return Err(DebError::BadFormat {
                deb,
                found: version,
            });
        }

        let mut control = None;
        let mut data = None;
        for m in &members[1..] {
            if m.name.starts_with('_') {
                continue;
            }
            let unexpected = |problem| DebError::UnexpectedMember {
                deb: deb.clone(),
                member: m.name.clone(),
                problem,
            };
            if let Some(suffix) = m.name.strip_prefix("control.tar") {
                if control.is_some() || data.is_some() {
                    return Err(unexpected("a second control member, or one after data"));
                }
                let format = member_format(&deb, m, suffix)?;
                control = Some(read_control(&deb, file, m, format)?);
            } else if let Some(suffix) = m.name.strip_prefix("data.tar") {
                if control.is_none() {
                    return Err(unexpected("data before control"));
                }
                if data.is_some() {
                    return Err(unexpected("a second data member"));
                }
                let format = member_format(&deb, m, suffix)?;
                check_magic(&deb, file, m, format)?;
                let label = PathBuf::from(format!("{}:{}", deb.display(), m.name));
                let decoder =
                    decompress::decoder(format, member_reader(file, m)).map_err(|source| {
                        DebError::Data(TarSourceError::Read {
                            path: label.clone(),
                            entry: "the start".into(),
                            source,
                        })
                    })?;
                let stream =
                    TarSource::from_stream(&label, decoder, temp_dir).map_err(DebError::Data)?;
                data = Some(stream);
            } else {
                return Err(unexpected(
                    "a .deb holds debian-binary, control.tar* and data.tar*",
                ));
            }
        }
        let control = control.ok_or_else(|| DebError::MissingMember {
            deb: deb.clone(),
            member: "control.tar",
        })?;
        let data = data.ok_or_else(|| DebError::MissingMember {
            deb: deb.clone(),
            member: "data.tar",
        })?;
        Ok(Deb {
            path: deb,
            control: control.paragraph,
            md5sums: control.md5sums,
            conffiles: control.conffiles,
            control_members: control.names,
            extra_members: control.extra,
            data,
        })
    }

    /// The `.deb`'s path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `control` file's paragraph (Package, Version, Architecture, Depends, ...).
    pub fn control(&self) -> &Paragraph {
        &self.control
    }

    /// The `md5sums` control member, byte for byte, when the package ships one (it goes
    /// to `/var/lib/dpkg/info/<pkg>.md5sums`).
    pub fn md5sums(&self) -> Option<&[u8]> {
        self.md5sums.as_deref()
    }

    /// The `conffiles` control member, byte for byte, when the package ships one.
    pub fn conffiles(&self) -> Option<&[u8]> {
        self.conffiles.as_deref()
    }

    /// Every plain control member other than `control`, `md5sums` and `conffiles`
    /// (maintainer scripts, `triggers`, `shlibs`, `symbols`, `templates`, ...), as
    /// `(name, mode, bytes)` sorted by name: what dpkg copies to `/var/lib/dpkg/info/`.
    pub fn extra_members(&self) -> &[(String, u32, Vec<u8>)] {
        &self.extra_members
    }

    /// The names of every control member (`control`, `md5sums`, `postinst`, ...), sorted;
    /// the contents of plain ones are in [`Deb::control`], [`Deb::md5sums`], [`Deb::conffiles`] and [`Deb::extra_members`].
    pub fn control_members(&self) -> &[String] {
        &self.control_members
    }

    /// The data entries, sorted by path bytes, hard links pointing at earlier entries.
    pub fn entries(&self) -> &[TarEntry] {
        self.data.entries()
    }

    /// Every data entry's path in `data.tar`'s order (the root `./` left out):
    /// dpkg writes `info/<pkg>.list` in this order.
    pub fn data_order(&self) -> &[Vec<u8>] {
        self.data.archive_order()
    }

    /// The content of a regular-file entry (empty for other kinds): exactly
    /// `entry.entry.size` bytes.
    pub fn content<'a>(&'a self, entry: &'a TarEntry) -> impl Read + 'a {
        self.data.content(entry)
    }
}

/// The compression of a `control.tar`/`data.tar` member, from its name's suffix.
fn member_format(deb: &Path, m: &Member, suffix: &str) -> Result<Format, DebError> {
    match suffix {
        "" => Ok(Format::Plain),
        ".gz" => Ok(Format::Gzip),
        ".xz" => Ok(Format::Xz),
        ".zst" => Ok(Format::Zstd),
        ".bz2" | ".lzma" => Err(DebError::UnsupportedCompression {
            deb: deb.to_path_buf(),
            member: m.name.clone(),
        }),
        _ => Err(DebError::UnexpectedMember {
            deb: deb.to_path_buf(),
            member: m.name.clone(),
            problem: "unknown compression suffix",
        }),
    }
}

/// Refuses a member whose magic bytes disagree with its name.
fn check_magic(deb: &Path, file: &HashedFile, m: &Member, format: Format) -> Result<(), DebError> {
    let mut head = vec![0u8; decompress::MAGIC_LEN.min(m.size as usize)];
    read_full_at(file, &mut head, m.offset).map_err(|source| DebError::Open {
        deb: deb.to_path_buf(),
        source,
    })?;
    let found = Format::sniff(&head);
    if found != format {
        return Err(DebError::CompressionMismatch {
            deb: deb.to_path_buf(),
            member: m.name.clone(),
            found: found.name(),
        });
    }
    Ok(())
}

/// The member's bytes, buffered.
fn member_reader<'a>(file: &'a HashedFile, m: &Member) -> BufReader<MemberReader<'a>> {
    BufReader::with_capacity(
        256 * 1024,
        MemberReader {
            file,
            pos: m.offset,
            end: m.offset + m.size,
        },
    )
}

/// A byte range of the `.deb` read with `pread` (the range was checked to lie inside).
struct MemberReader<'a> {
    file: &'a HashedFile,
    pos: u64,
    end: u64,
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the .deb shrank while being read",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// What the control member holds that imgraph keeps.
struct Control {
    paragraph: Paragraph,
    md5sums: Option<Vec<u8>>,
    conffiles: Option<Vec<u8>>,
    names: Vec<String>,
    extra: Vec<(String, u32, Vec<u8>)>,
}

/// Reads the control member: top-level plain files only (symlinks are listed by name).
fn read_control(
    deb: &Path,
    file: &HashedFile,
    m: &Member,
    format: Format,
) -> Result<Control, DebError> {
    check_magic(deb, file, m, format)?;
    let mut last = String::from("the start");
    let read_err = |entry: &str, source| DebError::ControlRead {
        deb: deb.to_path_buf(),
        member: m.name.clone(),
        entry: entry.to_string(),
        source,
    };
    let decoder =
        decompress::decoder(format, member_reader(file, m)).map_err(|e| read_err(&last, e))?;
    let mut archive = tar::Archive::new(decoder);
    let mut names = Vec::new();
    let mut control_text = None;
    let mut md5sums = None;
    let mut conffiles = None;
    let mut extra = Vec::new();
    for item in archive.entries().map_err(|e| read_err(&last, e))? {
        let mut entry = item.map_err(|e| read_err(&format!("the header after {last}"), e))?;
        let raw = entry.path_bytes().into_owned();
        let shown = display_bytes(&raw);
        last.clone_from(&shown);
        let bad = |problem| DebError::BadControlEntry {
            deb: deb.to_path_buf(),
            member: m.name.clone(),
            entry: shown.clone(),
            problem,
        };
        let path = normalise(&raw).ok_or_else(|| bad("has a `..` component"))?;
        let etype = entry.header().entry_type();
        if path.is_empty() {
            if etype.is_dir() {
                continue;
            }
            return Err(bad("names the root folder but is not a directory"));
        }
        if path.contains(&b'/') {
            return Err(bad("is not at the top level of the control archive"));
        }
        let name = display_bytes(&path);
        match etype {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if entry.size() > MAX_CONTROL_MEMBER {
                    return Err(bad("is larger than 64 MiB"));
                }
                {
                    let mut bytes = Vec::with_capacity(entry.size() as usize);
                    entry
                        .read_to_end(&mut bytes)
                        .map_err(|e| read_err(&shown, e))?;
                    if (bytes.len() as u64) < entry.size() {
                        return Err(read_err(
                            &shown,
                            io::Error::new(io::ErrorKind::UnexpectedEof, "entry cut short"),
                        ));
                    }
                    match name.as_str() {
                        "control" => control_text = Some(bytes),
                        "md5sums" => md5sums = Some(bytes),
                        "conffiles" => conffiles = Some(bytes),
                        _ => {
                            let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
                            extra.push((name.clone(), mode, bytes));
                        }
                    }
                }
            }
            tar::EntryType::Symlink => {}
            _ => return Err(bad("is not a plain file")),
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    // Read to the end of the compressed stream so that its trailer is checked.
    let mut decoder = archive.into_inner();
    io::copy(&mut decoder, &mut io::sink())
        .map_err(|e| read_err("the end of the compressed stream", e))?;
    names.sort();
    let bad_control = |problem: String| DebError::BadControl {
        deb: deb.to_path_buf(),
        member: m.name.clone(),
        problem,
    };
    let text = control_text.ok_or_else(|| bad_control("missing".into()))?;
    let text =
        String::from_utf8(text).map_err(|_| bad_control("not UTF-8 (Debian Policy 5.1)".into()))?;
    let mut paragraphs = deb822::parse(&text).map_err(|e| bad_control(e.to_string()))?;
    if paragraphs.len() != 1 {
        return Err(bad_control(format!(
            "{} paragraphs, expected exactly one",
            paragraphs.len()
        )));
    }
    let paragraph = paragraphs.remove(0);
    if paragraph.get("Package").is_none_or(str::is_empty) {
        return Err(bad_control("no Package field".into()));
    }
    extra.sort();
    Ok(Control {
        paragraph,
        md5sums,
        conffiles,
        names,
        extra,
    })
}

#[cfg(test)]
mod tests {
    //! Hostile and malformed `.deb`s built by hand (dpkg-deb refuses to write them);
    //! real ones built with dpkg-deb are in tests/debian_deb.rs.

    use super::*;
    use std::io::Write;

    /// One raw tar member; names go into the header as-is so `..` can be written.
    fn tar_member(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn tar(members: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, link, data) in members {
            tar_member(&mut out, name, *kind, link, data);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// An `ar` archive as dpkg-deb writes it.
    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = b"!<arch>\n".to_vec();
        for (name, data) in members {
            let header = format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                name,
                0,
                0,
                0,
                "100644",
                data.len()
            );
            assert_eq!(header.len(), 60);
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    const CONTROL: &[u8] = b"Package: hello\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@imgraph.invalid>\nDescription: test\n";

    fn control_tar() -> Vec<u8> {
        gz(&tar(&[
            ("./", tar::EntryType::Directory, "", b""),
            ("./control", tar::EntryType::Regular, "", CONTROL),
            (
                "./md5sums",
                tar::EntryType::Regular,
                "",
                b"b1946ac92492d2347c6235b4d2611184  usr/share/hello\n",
            ),
            ("./postinst", tar::EntryType::Regular, "", b"#!/bin/sh\n"),
        ]))
    }

    fn deb_with_data(data: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control_tar()),
            ("data.tar.gz", &gz(&tar(data))),
        ])
    }

    /// Opens `bytes` as a .deb in a fresh folder whose temp subfolder must stay empty.
    fn open_bytes(bytes: &[u8]) -> (Result<Deb, DebError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let path = dir.path().join("pkg.deb");
        std::fs::write(&path, bytes).unwrap();
        (Deb::open(&path, &tmp), dir)
    }

    /// Nothing but the .deb and the empty temp folder is left in `dir`.
    fn assert_nothing_written(dir: &tempfile::TempDir) {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["pkg.deb", "tmp"]);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_hand_built_deb_reads_control_md5sums_and_data() {
        let (deb, _dir) = open_bytes(&deb_with_data(&[
            ("./", tar::EntryType::Directory, "", b""),
            ("./usr/", tar::EntryType::Directory, "", b""),
            ("./usr/share/", tar::EntryType::Directory, "", b""),
            ("./usr/share/hello", tar::EntryType::Regular, "", b"hello\n"),
            (
                "./usr/share/hi",
                tar::EntryType::Link,
                "./usr/share/hello",
                b"",
            ),
        ]));
        let deb = deb.unwrap();
        assert_eq!(deb.control().get("Package"), Some("hello"));
        assert_eq!(
            deb.md5sums(),
            Some(&b"b1946ac92492d2347c6235b4d2611184  usr/share/hello\n"[..])
        );
        assert_eq!(deb.conffiles(), None);
        assert_eq!(deb.control_members(), ["control", "md5sums", "postinst"]);
        let paths: Vec<String> = deb
            .entries()
            .iter()
            .map(|e| e.entry.display_path())
            .collect();
        assert_eq!(
            paths,
            ["usr", "usr/share", "usr/share/hello", "usr/share/hi"]
        );
        let mut text = String::new();
        deb.content(&deb.entries()[2])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello\n");
        assert_eq!(
            deb.entries()[3].entry.kind,
            crate::rootfs::EntryKind::Hardlink {
                target: b"usr/share/hello".to_vec()
            }
        );
    }

    #[test]
    fn parent_dir_in_data_tar_is_refused_naming_the_entry_and_nothing_is_written() {
        let (err, dir) = open_bytes(&deb_with_data(&[
            ("./", tar::EntryType::Directory, "", b""),
            ("./usr/", tar::EntryType::Directory, "", b""),
            ("./usr/a", tar::EntryType::Regular, "", b"spooled first"),
            ("./../evil", tar::EntryType::Regular, "", b"x"),
        ]));
        let err = err.unwrap_err();
        match &err {
            DebError::Data(TarSourceError::ParentDir { entry, .. }) => {
                assert_eq!(entry, "./../evil")
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("pkg.deb:data.tar.gz"), "{msg}");
        assert!(msg.contains("./../evil"), "{msg}");
        assert_nothing_written(&dir);
    }

    #[test]
    fn a_symlink_escape_then_a_write_through_it_is_refused() {
        for target in ["/etc", "../../../tmp"] {
            let (err, dir) = open_bytes(&deb_with_data(&[
                ("./", tar::EntryType::Directory, "", b""),
                ("./lib", tar::EntryType::Symlink, target, b""),
                ("./lib/passwd", tar::EntryType::Regular, "", b"evil"),
            ]));
            let err = err.unwrap_err();
            match &err {
                DebError::Data(TarSourceError::NotUnderDirectory { entry, parent, .. }) => {
                    assert_eq!(entry, "lib/passwd");
                    assert_eq!(parent, "lib");
                }
                other => panic!("{other:?}"),
            }
            assert!(err.to_string().contains("pkg.deb:data.tar.gz"), "{err}");
            assert_nothing_written(&dir);
        }
    }

    #[test]
    fn hard_links_only_to_earlier_entries_of_the_same_deb() {
        let (err, dir) = open_bytes(&deb_with_data(&[
            ("./", tar::EntryType::Directory, "", b""),
            ("./bin/", tar::EntryType::Directory, "", b""),
            ("./bin/sh", tar::EntryType::Link, "./bin/dash", b""),
            ("./bin/dash", tar::EntryType::Regular, "", b"x"),
        ]));
        match err.unwrap_err() {
            DebError::Data(TarSourceError::HardlinkTargetMissing { entry, target, .. }) => {
                assert_eq!(entry, "./bin/sh");
                assert_eq!(target, "./bin/dash");
            }
            other => panic!("{other:?}"),
        }
        assert_nothing_written(&dir);
    }

    #[test]
    fn a_truncated_member_is_named() {
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let data = tar(&[
            ("./", tar::EntryType::Directory, "", b""),
            ("./big", tar::EntryType::Regular, "", &big),
        ]);
        let whole = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control_tar()),
            ("data.tar", &data),
        ]);
        // Cut inside data.tar.
        let (err, dir) = open_bytes(&whole[..whole.len() - 1000]);
        match err.unwrap_err() {
            DebError::Truncated { member, .. } => assert_eq!(member, "data.tar"),
            other => panic!("{other:?}"),
        }
        assert_nothing_written(&dir);
        // Cut inside data.tar's ar header.
        let control_end = 8 + 60 + 4 + 60 + control_tar().len().div_ceil(2) * 2;
        let (err, _dir) = open_bytes(&whole[..control_end + 30]);
        match err.unwrap_err() {
            DebError::Truncated { member, .. } => {
                assert_eq!(member, "the header after control.tar.gz")
            }
            other => panic!("{other:?}"),
        }
        // An ar member that is whole but holds a cut xz stream.
        let mut xz = Vec::new();
        let mut enc = xz2::write::XzEncoder::new(&mut xz, 1);
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();
        let cut = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control_tar()),
            ("data.tar.xz", &xz[..xz.len() - 20]),
        ]);
        let (err, dir) = open_bytes(&cut);
        let err = err.unwrap_err();
        assert!(
            matches!(
                err,
                DebError::Data(TarSourceError::Read { .. } | TarSourceError::Truncated { .. })
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("pkg.deb:data.tar.xz"), "{err}");
        assert_nothing_written(&dir);
    }

    #[test]
    fn a_wrong_debian_binary_is_refused() {
        for (members, found) in [
            (vec![("debian-binary", &b"3.0\n"[..])], "3.0\n"),
            (vec![("debian-binary", &b"2.0"[..])], "2.0"),
            (vec![("control.tar.gz", &b"x"[..])], "control.tar.gz"),
        ] {
            let mut all = members.clone();
            let control = control_tar();
            let data = gz(&tar(&[("./", tar::EntryType::Directory, "", b"")]));
            all.push(("control.tar.gz", &control));
            all.push(("data.tar.gz", &data));
            let (err, dir) = open_bytes(&ar(&all));
            match err.unwrap_err() {
                DebError::BadFormat { found: f, .. } => assert_eq!(f, found),
                other => panic!("{other:?}"),
            }
            assert_nothing_written(&dir);
        }
        let (err, _dir) = open_bytes(b"<html>404</html>");
        assert!(matches!(err.unwrap_err(), DebError::NotAnArchive { .. }));
    }

    #[test]
    fn long_names_bzip2_unknown_and_mislabelled_members_are_refused() {
        let control = control_tar();
        let data = gz(&tar(&[("./", tar::EntryType::Directory, "", b"")]));
        type Members<'a> = Vec<(&'a str, &'a [u8])>;
        let cases: Vec<(Members<'_>, &str)> = vec![
            (vec![("//", b"data.tar.gz/\n")], "LongName"),
            (vec![("#1/20", b"x")], "LongName"),
            (
                vec![("control.tar.gz", &control), ("data.tar.bz2", b"BZh9")],
                "UnsupportedCompression",
            ),
            (
                vec![("control.tar.gz", &control), ("data.tar.lzma", b"]")],
                "UnsupportedCompression",
            ),
            (
                vec![("control.tar.gz", &control), ("data.tar.xz", &data)],
                "CompressionMismatch",
            ),
            (vec![("data.tar.gz", &data)], "UnexpectedMember"),
            (
                vec![("control.tar.gz", &control), ("evil", b"x")],
                "UnexpectedMember",
            ),
            (vec![("control.tar.gz", &control)], "MissingMember"),
            (
                vec![
                    ("control.tar.gz", &control),
                    ("_ignored", b"x"),
                    ("data.tar.gz", &data),
                ],
                "ok",
            ),
        ];
        for (members, want) in cases {
            let mut all: Vec<(&str, &[u8])> = vec![("debian-binary", b"2.0\n")];
            all.extend(members);
            let (res, _dir) = open_bytes(&ar(&all));
            let got = match &res {
                Ok(_) => "ok",
                Err(DebError::LongName { .. }) => "LongName",
                Err(DebError::UnsupportedCompression { .. }) => "UnsupportedCompression",
                Err(DebError::CompressionMismatch { .. }) => "CompressionMismatch",
                Err(DebError::UnexpectedMember { .. }) => "UnexpectedMember",
                Err(DebError::MissingMember { .. }) => "MissingMember",
                Err(other) => panic!("{other:?}"),
            };
            assert_eq!(got, want, "{res:?}");
            if let Err(e) = res {
                assert!(e.to_string().contains("pkg.deb"), "{e}");
            }
        }
    }

    #[test]
    fn hostile_control_archives_are_refused() {
        for (name, kind, problem) in [
            ("./../control", tar::EntryType::Regular, "`..`"),
            ("./sub/control", tar::EntryType::Regular, "top level"),
            ("./dev", tar::EntryType::Char, "plain file"),
        ] {
            let control = gz(&tar(&[
                ("./control", tar::EntryType::Regular, "", CONTROL),
                (name, kind, "", b""),
            ]));
            let data = gz(&tar(&[("./", tar::EntryType::Directory, "", b"")]));
            let (err, _dir) = open_bytes(&ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", &control),
                ("data.tar.gz", &data),
            ]));
            let err = err.unwrap_err();
            match &err {
                DebError::BadControlEntry { entry, .. } => assert_eq!(entry, name),
                other => panic!("{other:?}"),
            }
            assert!(err.to_string().contains(problem), "{err}");
        }
    }
}
