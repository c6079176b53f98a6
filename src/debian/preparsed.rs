//! `Packages` indexes kept pre-parsed in the cache, so resolving a platform
//! from indexes already fetched costs milliseconds instead of an xz decode and
//! a parse of ~63k paragraphs (BENCHMARKS.md, row g.).
//!
//! An index is immutable under its sha256 (the compressed file Release lists),
//! so its pre-parsed form is keyed by that digest: `state/packages-<hex>.v1`.
//! It holds, per record, only the fields [`PackageRecord`] reads, as the text
//! the deb822 parser gave them, so turning one back into a record is the very
//! same [`PackageRecord::from_paragraph`] a text parse runs. It is written only
//! after the whole index parsed (every record valid), atomically, and carries a
//! blake3 of its body: a file that is truncated, altered, of another format
//! version or otherwise unreadable is ignored and the index parsed again, so a
//! bad cache file can cost time but never change a resolution.
//!
//! Layout: a header (`MAGIC`, format u32, record count u32, the light
//! section's length u64, the heavy section's length u64, blake3 of the light
//! section), then two sections. The light section holds, per record, what
//! [`prune`] reads of every record ([`LIGHT`]: name, arch, Essential, Priority,
//! Provides) and where its heavy part is, with a digest of that part; the heavy
//! section holds the other fields ([`HEAVY`]). Only the light section (~4 MB for
//! bookworm's 63k packages) is read and hashed whole; a heavy part is read and
//! checked when its record is reached. Fields are u32 LE lengths (`u32::MAX`
//! for an absent field), then their bytes.
//!
//! Loading does not build 63k records: [`prune`] walks from the names a request
//! can start from (every `Essential: yes` and `Priority: required` record, the
//! requested names, `apt`) over every alternative of `Pre-Depends`/`Depends`
//! and every provider, and only the records it reaches become
//! [`PackageRecord`]s. For every name the resolver can look up, the pruned
//! universe has exactly the records (and candidates and providers) the full one
//! has, so the resolution is the same (see [`prune`]).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::deb822::{self, Paragraph};
use super::packages::{PackageError, PackageRecord, PackagesError};
use super::relation;
use super::resolve::Index;

/// First bytes of the file.
const MAGIC: &[u8; 8] = b"imgpkgs\n";
/// The layout's version; a file of another version is ignored (and rewritten).
pub const FORMAT: u32 = 1;
/// Bytes before the light section: magic, format, count, two lengths, blake3.
const HEADER: usize = 8 + 4 + 4 + 8 + 8 + 32;
/// The length that marks an absent field.
const ABSENT: u32 = u32::MAX;
/// Bytes of a heavy part's digest (a truncated blake3) kept in the light section.
const PART_DIGEST: usize = 16;

/// Fields every record is read for, in file order; a fifth light slot holds
/// the names `Provides` lists (as [`relation::parse_provides`] reads them, one
/// per line), so pruning parses no relation of a record it does not reach.
pub const LIGHT: [&str; 4] = ["Package", "Architecture", "Essential", "Priority"];
/// Light slots per record: [`LIGHT`] and the provided names.
const LIGHT_SLOTS: usize = LIGHT.len() + 1;
/// The other fields [`PackageRecord::from_paragraph`] reads, read per reached record.
pub const HEAVY: [&str; 11] = [
    "Version",
    "Multi-Arch",
    "Provides",
    "Pre-Depends",
    "Depends",
    "Conflicts",
    "Breaks",
    "Source",
    "Filename",
    "Size",
    "SHA256",
];
const PACKAGE: usize = 0;
const ARCHITECTURE: usize = 1;
const ESSENTIAL: usize = 2;
const PRIORITY: usize = 3;
const PROVIDED: usize = 4;
const PRE_DEPENDS: usize = 3;
const DEPENDS: usize = 4;

/// FxHash (rustc's): the names hashed here come from a verified index, and
/// SipHash's flood resistance cost a tenth of the load time.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut add =
            |w: u64| self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        add(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 56));
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
type FxBuild = std::hash::BuildHasherDefault<Fx>;

/// Why a pre-parsed file was not used (it is then ignored and rewritten).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pre-parsed index unusable: {0}")]
pub struct Corrupt(pub &'static str);

/// Where the heavy section is.
#[derive(Debug)]
enum Heavy {
    /// In memory (just encoded): the whole file.
    Bytes(Vec<u8>),
    /// In the file, from this offset.
    File(File, u64),
}

/// A pre-parsed index, its light section loaded and checked.
#[derive(Debug)]
pub struct ParsedIndex {
    /// The header and the light section.
    light: Vec<u8>,
    heavy: Heavy,
    /// Offset of each light record.
    starts: Vec<u32>,
}

/// The cache's `state/` name of the pre-parsed form of the index `sha256:<hex>`.
pub fn state_name(digest: &str) -> String {
    format!(
        "packages-{}.v{FORMAT}",
        digest.trim_start_matches("sha256:")
    )
}

/// Parses a whole (decompressed) `Packages` text, checks every record as
/// [`super::packages::parse_index`] does (same errors), and encodes it
/// ([`ParsedIndex::file_bytes`] is the file to keep).
pub fn encode_text(text: &str) -> Result<ParsedIndex, PackagesError> {
    let paragraphs = deb822::parse(text)?;
    for (i, p) in paragraphs.iter().enumerate() {
        PackageRecord::from_paragraph(p).map_err(|mut e| {
            if e.package.is_empty() {
                e.package = format!("#{}", i + 1);
            }
            PackagesError::Package(e)
        })?;
    }
    ParsedIndex::decode(encode(&paragraphs)).map_err(|_| PackagesError::TooLarge)
}

/// Appends `values` as lengths then bytes.
fn put_fields(out: &mut Vec<u8>, values: &[Option<&str>]) {
    for v in values {
        let len = v.map_or(ABSENT, |v| v.len() as u32);
        out.extend_from_slice(&len.to_le_bytes());
    }
}

fn part_digest(bytes: &[u8]) -> [u8; PART_DIGEST] {
    let mut d = [0u8; PART_DIGEST];
    d.copy_from_slice(&blake3::hash(bytes).as_bytes()[..PART_DIGEST]);
    d
}

/// Encodes paragraphs (valid records: [`encode_text`] checked them) in the file layout.
fn encode(paragraphs: &[Paragraph]) -> Vec<u8> {
    let mut light = Vec::new();
    let mut heavy = Vec::new();
    for p in paragraphs {
        let provided: Option<String> = p.get("Provides").map(|v| {
            let names = relation::parse_provides(v).unwrap_or_default();
            names
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
                .join("\n")
        });
        let mut l: Vec<Option<&str>> = LIGHT.iter().map(|f| p.get(f)).collect();
        l.push(provided.as_deref());
        let h: Vec<Option<&str>> = HEAVY.iter().map(|f| p.get(f)).collect();
        let at = heavy.len();
        put_fields(&mut heavy, &h);
        for v in h.into_iter().flatten() {
            heavy.extend_from_slice(v.as_bytes());
        }
        put_fields(&mut light, &l);
        light.extend_from_slice(&(at as u32).to_le_bytes());
        light.extend_from_slice(&((heavy.len() - at) as u32).to_le_bytes());
        light.extend_from_slice(&part_digest(&heavy[at..]));
        for v in l.into_iter().flatten() {
            light.extend_from_slice(v.as_bytes());
        }
    }
    let mut out = Vec::with_capacity(HEADER + light.len() + heavy.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(paragraphs.len() as u32).to_le_bytes());
    out.extend_from_slice(&(light.len() as u64).to_le_bytes());
    out.extend_from_slice(&(heavy.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(&light).as_bytes());
    out.extend_from_slice(&light);
    out.extend_from_slice(&heavy);
    out
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at + 8)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// The `field`th of `n` length-prefixed fields starting at `start`.
fn field_in(bytes: &[u8], start: usize, n: usize, skip: usize, field: usize) -> Option<&str> {
    let mut at = start + 4 * n + skip;
    for f in 0..field {
        let l = u32_at(bytes, start + 4 * f)?;
        if l != ABSENT {
            at += l as usize;
        }
    }
    let l = u32_at(bytes, start + 4 * field)?;
    if l == ABSENT {
        return None;
    }
    std::str::from_utf8(bytes.get(at..at + l as usize)?).ok()
}

/// Checks `n` length-prefixed fields at `start` (after `skip` more fixed bytes):
/// in bounds and (with `utf8`) UTF-8. Returns where they end.
fn check_fields(
    bytes: &[u8],
    start: usize,
    n: usize,
    skip: usize,
    utf8: bool,
) -> Result<usize, Corrupt> {
    let mut at = start + 4 * n + skip;
    for f in 0..n {
        let l = u32_at(bytes, start + 4 * f).ok_or(Corrupt("truncated"))?;
        if l == ABSENT {
            continue;
        }
        let end = at + l as usize;
        let text = bytes.get(at..end).ok_or(Corrupt("truncated"))?;
        if utf8 {
            std::str::from_utf8(text).map_err(|_| Corrupt("a field is not UTF-8"))?;
        }
        at = end;
    }
    Ok(at)
}

/// A record's heavy part, read and checked.
struct HeavyPart(Vec<u8>);

impl HeavyPart {
    fn field(&self, field: usize) -> Option<&str> {
        field_in(&self.0, 0, HEAVY.len(), 0, field)
    }
}

impl ParsedIndex {
    /// Checks and indexes a whole file's bytes (as [`encode`] gives them).
    pub fn decode(bytes: Vec<u8>) -> Result<ParsedIndex, Corrupt> {
        let (count, light_len, heavy_len) = header(&bytes)?;
        if bytes.len() as u64 != (HEADER as u64) + light_len + heavy_len {
            return Err(Corrupt("truncated or extended"));
        }
        let light = bytes[..HEADER + light_len as usize].to_vec();
        let starts = check_light(&light, count, heavy_len)?;
        Ok(ParsedIndex {
            light,
            heavy: Heavy::Bytes(bytes),
            starts,
        })
    }

    /// Opens a pre-parsed file: reads and checks its light section only.
    pub fn open(path: &Path) -> Result<ParsedIndex, Corrupt> {
        let mut file = File::open(path).map_err(|_| Corrupt("cannot be read"))?;
        let size = file
            .metadata()
            .map_err(|_| Corrupt("cannot be read"))?
            .len();
        let mut light = vec![0u8; HEADER];
        file.read_exact(&mut light)
            .map_err(|_| Corrupt("truncated"))?;
        let (count, light_len, heavy_len) = header(&light)?;
        if size != (HEADER as u64) + light_len + heavy_len {
            return Err(Corrupt("truncated or extended"));
        }
        light.resize(HEADER + light_len as usize, 0);
        file.read_exact(&mut light[HEADER..])
            .map_err(|_| Corrupt("truncated"))?;
        let starts = check_light(&light, count, heavy_len)?;
        Ok(ParsedIndex {
            heavy: Heavy::File(file, light.len() as u64),
            light,
            starts,
        })
    }

    /// The whole file, for writing; only an index just encoded has it.
    pub fn file_bytes(&self) -> Option<&[u8]> {
        match &self.heavy {
            Heavy::Bytes(b) => Some(b),
            Heavy::File(..) => None,
        }
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether it has no records.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Light field `field` (an index into [`LIGHT`], or `PROVIDED`) of record `record`.
    fn field(&self, record: usize, field: usize) -> Option<&str> {
        field_in(
            &self.light,
            self.starts[record] as usize,
            LIGHT_SLOTS,
            8 + PART_DIGEST,
            field,
        )
    }

    /// Every light slot of record `record`, checked (bounds were checked on load).
    fn light_fields(&self, record: usize) -> Result<[Option<&str>; LIGHT_SLOTS], Corrupt> {
        let start = self.starts[record] as usize;
        let mut at = start + 4 * LIGHT_SLOTS + 8 + PART_DIGEST;
        let mut out = [None; LIGHT_SLOTS];
        for (f, slot) in out.iter_mut().enumerate() {
            let l = u32_at(&self.light, start + 4 * f).ok_or(Corrupt("truncated"))?;
            if l == ABSENT {
                continue;
            }
            let end = at + l as usize;
            let b = self.light.get(at..end).ok_or(Corrupt("truncated"))?;
            *slot = Some(std::str::from_utf8(b).map_err(|_| Corrupt("a field is not UTF-8"))?);
            at = end;
        }
        Ok(out)
    }

    /// Reads record `record`'s heavy part and checks it against its digest.
    fn heavy(&self, record: usize) -> Result<HeavyPart, Corrupt> {
        let at = self.starts[record] as usize + 4 * LIGHT_SLOTS;
        let off = u32_at(&self.light, at).ok_or(Corrupt("truncated"))? as u64;
        let len = u32_at(&self.light, at + 4).ok_or(Corrupt("truncated"))? as usize;
        let digest = &self.light[at + 8..at + 8 + PART_DIGEST];
        let bytes = match &self.heavy {
            Heavy::Bytes(b) => {
                let start = self.light.len() + off as usize;
                b.get(start..start + len)
                    .ok_or(Corrupt("truncated"))?
                    .to_vec()
            }
            Heavy::File(f, base) => {
                let mut buf = vec![0u8; len];
                f.read_exact_at(&mut buf, base + off)
                    .map_err(|_| Corrupt("truncated"))?;
                buf
            }
        };
        if part_digest(&bytes) != digest {
            return Err(Corrupt("a record's digest does not match"));
        }
        if check_fields(&bytes, 0, HEAVY.len(), 0, true)? != bytes.len() {
            return Err(Corrupt("a record has trailing bytes"));
        }
        Ok(HeavyPart(bytes))
    }

    /// Record `record` as a text parse would have given it.
    fn record_with(&self, record: usize, heavy: &HeavyPart) -> Result<PackageRecord, PackageError> {
        let mut p = Paragraph::default();
        for (f, name) in LIGHT.iter().enumerate() {
            if let Some(v) = self.field(record, f) {
                p.push(*name, v);
            }
        }
        for (f, name) in HEAVY.iter().enumerate() {
            if let Some(v) = heavy.field(f) {
                p.push(*name, v);
            }
        }
        PackageRecord::from_paragraph(&p)
    }

    /// Record `record` as a text parse would have given it.
    pub fn record(&self, record: usize) -> Result<PackageRecord, PackageError> {
        let heavy = self
            .heavy(record)
            .map_err(|e| corrupt(self.name(record), e))?;
        self.record_with(record, &heavy)
    }

    fn name(&self, record: usize) -> &str {
        self.field(record, PACKAGE).unwrap_or("").trim()
    }

    /// Every record, as [`super::packages::parse_index`] gives them.
    pub fn records(&self) -> Result<Vec<PackageRecord>, PackageError> {
        (0..self.len()).map(|r| self.record(r)).collect()
    }
}

/// A heavy part that failed its check, as a record error (the caller then
/// parses the index's text instead).
fn corrupt(package: &str, e: Corrupt) -> PackageError {
    PackageError {
        package: package.to_string(),
        field: "(pre-parsed)",
        problem: e.to_string(),
    }
}

/// Reads the header: (record count, light length, heavy length).
fn header(bytes: &[u8]) -> Result<(usize, u64, u64), Corrupt> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(Corrupt("not a pre-parsed index"));
    }
    if u32_at(bytes, 8) != Some(FORMAT) {
        return Err(Corrupt("another format version"));
    }
    let count = u32_at(bytes, 12).ok_or(Corrupt("truncated"))? as usize;
    let light = u64_at(bytes, 16).ok_or(Corrupt("truncated"))?;
    let heavy = u64_at(bytes, 24).ok_or(Corrupt("truncated"))?;
    if light > u32::MAX as u64 || heavy > u32::MAX as u64 {
        return Err(Corrupt("too large"));
    }
    Ok((count, light, heavy))
}

/// Checks the light section (its digest, every record in bounds and UTF-8,
/// every heavy part inside the heavy section) and returns the record offsets.
fn check_light(light: &[u8], count: usize, heavy_len: u64) -> Result<Vec<u32>, Corrupt> {
    if blake3::hash(&light[HEADER..]).as_bytes() != &light[HEADER - 32..HEADER] {
        return Err(Corrupt("digest mismatch"));
    }
    let mut starts = Vec::with_capacity(count);
    let mut at = HEADER;
    for _ in 0..count {
        starts.push(u32::try_from(at).map_err(|_| Corrupt("too large"))?);
        let h = at + 4 * LIGHT_SLOTS;
        let off = u32_at(light, h).ok_or(Corrupt("truncated"))? as u64;
        let len = u32_at(light, h + 4).ok_or(Corrupt("truncated"))? as u64;
        if off + len > heavy_len {
            return Err(Corrupt("a record's part is out of bounds"));
        }
        // UTF-8 is checked as the fields are read (`light_fields`).
        at = check_fields(light, at, LIGHT_SLOTS, 8 + PART_DIGEST, false)?;
    }
    if at != light.len() {
        return Err(Corrupt("trailing bytes"));
    }
    Ok(starts)
}

/// One source of a universe: a suite and one of its pre-parsed indexes (one per
/// component, in the order the suite's records are concatenated).
pub struct Source<'a> {
    /// The suite.
    pub suite: &'a str,
    /// Its index for one component.
    pub index: &'a ParsedIndex,
}

/// The indexes a universe of native arch `arch` needs for requests naming
/// `requested` (their `include` and `exclude` names): per suite, in suite order,
/// the records of `sources` (in their order) that a resolution can reach.
///
/// Reached: every record of a name that is reached; every provider of a name
/// that is reached (and so its name). Names are reached from every
/// `Essential: yes` or `Priority: required` record, from `requested` and `apt`,
/// and from every alternative of the `Pre-Depends` and `Depends` of a reached
/// record. Records of other arches (not `arch`, not `all`) are left out, as
/// [`super::resolve::Universe::new`] leaves them out.
///
/// Why the resolution is unchanged: the resolver looks up only names that are
/// seeds, requested, excluded, or in a dependency or conflict of a selected
/// package. For each reached name the pruned universe has all of its records
/// (so the same candidate: highest version, earlier record on a tie, order
/// kept) and all of its providers; selected packages are reached, so a conflict
/// lookup finds the same selected packages in the same order; seeds are
/// candidates with `Essential: yes` or `Priority: required`, all reached.
pub fn prune(
    sources: &[Source<'_>],
    arch: &str,
    requested: &[String],
) -> Result<Vec<Index>, PackageError> {
    const NONE: u32 = u32::MAX;
    // Global ids: (source, record) flattened.
    let offsets: Vec<usize> = sources
        .iter()
        .scan(0, |acc, s| {
            let o = *acc;
            *acc += s.index.len();
            Some(o)
        })
        .collect();
    let total: usize = sources.iter().map(|s| s.index.len()).sum();
    let locate = |g: usize| {
        let s = offsets.partition_point(|&o| o <= g) - 1;
        (s, g - offsets[s])
    };
    // name -> records of that name (a chain through `next`); provided name ->
    // providers (a chain through `pnext`).
    let mut head: HashMap<&str, u32, FxBuild> =
        HashMap::with_capacity_and_hasher(total, FxBuild::default());
    let mut next = vec![NONE; total];
    let mut phead: HashMap<&str, u32, FxBuild> = HashMap::default();
    let mut pnodes: Vec<(u32, u32)> = Vec::new();
    let mut queue: Vec<String> = Vec::new();
    let mut seen: HashSet<String, FxBuild> = HashSet::default();
    let mut reach = |name: &str, queue: &mut Vec<String>| {
        if !seen.contains(name) {
            seen.insert(name.to_string());
            queue.push(name.to_string());
        }
    };
    for (s, src) in sources.iter().enumerate() {
        let ix = src.index;
        for r in 0..ix.len() {
            let fields = ix.light_fields(r).map_err(|e| corrupt("?", e))?;
            let a = fields[ARCHITECTURE].map(str::trim).unwrap_or("");
            if a != arch && a != "all" {
                continue;
            }
            let g = offsets[s] + r;
            let name = fields[PACKAGE].map(str::trim).unwrap_or("");
            if let Some(h) = head.insert(name, g as u32) {
                next[g] = h;
            }
            for provided in fields[PROVIDED].into_iter().flat_map(|p| p.split('\n')) {
                let h = phead.entry(provided).or_insert(NONE);
                pnodes.push((g as u32, *h));
                *h = (pnodes.len() - 1) as u32;
            }
            let essential = fields[ESSENTIAL].map(str::trim) == Some("yes");
            let required = fields[PRIORITY].map(str::trim) == Some("required");
            if essential || required {
                reach(name, &mut queue);
            }
        }
    }
    for name in requested.iter().map(String::as_str).chain(["apt"]) {
        reach(name, &mut queue);
    }
    // The heavy part of each reached record, read once.
    let mut included: Vec<Option<HeavyPart>> = (0..total).map(|_| None).collect();
    while let Some(name) = queue.pop() {
        let mut g = head.get(name.as_str()).copied().unwrap_or(NONE);
        while g != NONE {
            let at = g as usize;
            g = next[at];
            if included[at].is_some() {
                continue;
            }
            let (s, r) = locate(at);
            let heavy = sources[s].index.heavy(r).map_err(|e| corrupt(&name, e))?;
            for field in [PRE_DEPENDS, DEPENDS] {
                let Some(text) = heavy.field(field) else {
                    continue;
                };
                let groups = relation::parse_groups(text).map_err(|e| PackageError {
                    package: name.clone(),
                    field: HEAVY[field],
                    problem: e.to_string(),
                })?;
                for rel in groups.iter().flatten() {
                    reach(&rel.name, &mut queue);
                }
            }
            included[at] = Some(heavy);
        }
        let mut n = phead.get(name.as_str()).copied().unwrap_or(NONE);
        while n != NONE {
            let (provider, after) = pnodes[n as usize];
            n = after;
            let (s, r) = locate(provider as usize);
            reach(sources[s].index.name(r), &mut queue);
        }
    }
    let mut out: Vec<Index> = Vec::new();
    for (s, src) in sources.iter().enumerate() {
        if out.last().is_none_or(|i| i.suite != src.suite) {
            out.push(Index {
                suite: src.suite.to_string(),
                records: Vec::new(),
            });
        }
        let records = &mut out.last_mut().expect("pushed above").records;
        for r in 0..src.index.len() {
            if let Some(heavy) = &included[offsets[s] + r] {
                records.push(src.index.record_with(r, heavy)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::packages::parse_index;
    use crate::debian::resolve::{resolve, Request, Universe, Variant};

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Short paragraphs made full records (Filename, Size, SHA256, and
    /// Architecture amd64 unless given).
    fn text(short: &str) -> String {
        short
            .trim()
            .split("\n\n")
            .map(|p| {
                let p = p.trim();
                let arch = if p.contains("Architecture:") {
                    ""
                } else {
                    "\nArchitecture: amd64"
                };
                format!("{p}{arch}\nFilename: pool/x.deb\nSize: 1\nSHA256: {HASH}\nDescription: long\n text\n\n")
            })
            .collect()
    }

    fn enc(text: &str) -> Vec<u8> {
        encode_text(text).unwrap().file_bytes().unwrap().to_vec()
    }

    const MAIN: &str = "Package: e\nVersion: 1\nEssential: yes\nPre-Depends: libc (>= 2)\nDepends: x | y, awk\n\n\
        Package: libc\nVersion: 2.36\nMulti-Arch: same\nSource: glibc (2.36-9)\nDepends: gcc-base\n\n\
        Package: gcc-base\nVersion: 12\n\n\
        Package: x\nVersion: 1\nDepends: far-away\n\n\
        Package: far-away\nVersion: 1\n\n\
        Package: y\nVersion: 1\nPriority: required\n\n\
        Package: mawk\nVersion: 1.3\nPriority: required\nProvides: awk\n\n\
        Package: gawk\nVersion: 5\nPriority: optional\nProvides: awk\nDepends: libsigsegv\n\n\
        Package: libsigsegv\nVersion: 2\n\n\
        Package: apt\nVersion: 2.6\nPriority: important\nDepends: libapt\n\n\
        Package: libapt\nVersion: 2.6\n\n\
        Package: unreached\nVersion: 1\nDepends: also-unreached\n\n\
        Package: also-unreached\nVersion: 1\n\n\
        Package: armonly\nVersion: 1\nArchitecture: arm64\nEssential: yes\n\n\
        Package: data\nVersion: 1\nArchitecture: all\nConflicts: x\nBreaks: y (<< 0)\n\n\
        Package: sudo\nVersion: 1\nDepends: data";
    const UPDATES: &str =
        "Package: libc\nVersion: 2.36-9+deb12u1\nMulti-Arch: same\nDepends: gcc-base\n\n\
        Package: gcc-base\nVersion: 11\n";

    #[test]
    fn round_trip_gives_the_records_a_text_parse_gives() {
        let t = text(MAIN);
        let bytes = enc(&t);
        let ix = ParsedIndex::decode(bytes.clone()).unwrap();
        assert_eq!(ix.records().unwrap(), parse_index(&t).unwrap());
        assert_eq!(ix.len(), 16);
        // Absent and empty differ, as in the text.
        let e = text("Package: a\nVersion: 1\nDepends:");
        let ix = ParsedIndex::decode(enc(&e)).unwrap();
        assert_eq!(ix.heavy(0).unwrap().field(DEPENDS), Some(""));
        assert_eq!(ix.field(0, PROVIDED), None);
        assert_eq!(ix.heavy(0).unwrap().field(2), None);
        // Read from a file: the same records.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(state_name("sha256:ab"));
        std::fs::write(&path, enc(&t)).unwrap();
        let opened = ParsedIndex::open(&path).unwrap();
        assert!(opened.file_bytes().is_none());
        assert_eq!(opened.records().unwrap(), parse_index(&t).unwrap());
        // Encoding is deterministic.
        assert_eq!(enc(&t), bytes);
        // A bad index is refused with parse_index's own error.
        let bad = text("Package: a\nVersion: 1\nMulti-Arch: sometimes");
        assert_eq!(
            encode_text(&bad).unwrap_err(),
            parse_index(&bad).unwrap_err()
        );
    }

    /// Whether every record can be read back from `bytes`, in memory and as a file.
    fn usable(bytes: &[u8]) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, bytes).unwrap();
        let memory = ParsedIndex::decode(bytes.to_vec()).is_ok_and(|i| i.records().is_ok());
        let file = ParsedIndex::open(&path).is_ok_and(|i| i.records().is_ok());
        assert_eq!(memory, file);
        memory
    }

    #[test]
    fn truncated_altered_or_other_format_files_are_refused() {
        let good = enc(&text(MAIN));
        assert!(usable(&good));
        for cut in [
            0,
            7,
            HEADER - 1,
            HEADER,
            HEADER + 3,
            good.len() / 2,
            good.len() - 1,
        ] {
            assert!(!usable(&good[..cut]), "cut at {cut}");
        }
        // One changed byte anywhere (a version digit, a length, a name) is caught.
        let version_at = good
            .windows(6)
            .position(|w| w == b"2.36-9")
            .expect("the binNMU's source version is stored");
        let name_at = good
            .windows(8)
            .position(|w| w == b"gcc-base")
            .expect("a name is stored");
        for at in [
            version_at,
            name_at,
            HEADER,
            HEADER + 4,
            good.len() - 1,
            20,
            40,
        ] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            assert!(!usable(&bad), "byte {at}");
        }
        let mut other = good.clone();
        other[8] = 2;
        assert_eq!(
            ParsedIndex::decode(other).unwrap_err(),
            Corrupt("another format version")
        );
        let mut extra = good.clone();
        extra.push(0);
        assert!(!usable(&extra));
        assert!(!usable(b"Package: a\n"));
    }

    fn names(indexes: &[Index]) -> Vec<String> {
        indexes
            .iter()
            .flat_map(|i| {
                i.records
                    .iter()
                    .map(move |r| format!("{}:{} {}", i.suite, r.name, r.version))
            })
            .collect()
    }

    #[test]
    fn prune_keeps_what_a_resolution_can_reach_and_resolves_the_same() {
        let main = ParsedIndex::decode(enc(&text(MAIN))).unwrap();
        let updates = ParsedIndex::decode(enc(&text(UPDATES))).unwrap();
        let sources = [
            Source {
                suite: "bookworm",
                index: &main,
            },
            Source {
                suite: "bookworm-updates",
                index: &updates,
            },
        ];
        let pruned = prune(&sources, "amd64", &[]).unwrap();
        assert_eq!(
            names(&pruned),
            [
                "bookworm:e 1",
                "bookworm:libc 2.36",
                "bookworm:gcc-base 12",
                "bookworm:x 1",
                "bookworm:far-away 1",
                "bookworm:y 1",
                "bookworm:mawk 1.3",
                "bookworm:gawk 5",
                "bookworm:libsigsegv 2",
                "bookworm:apt 2.6",
                "bookworm:libapt 2.6",
                "bookworm-updates:libc 2.36-9+deb12u1",
                "bookworm-updates:gcc-base 11",
            ]
        );
        let with_sudo = prune(&sources, "amd64", &["sudo".into()]).unwrap();
        assert!(names(&with_sudo).contains(&"bookworm:data 1".to_string()));

        let full = Universe::new(
            "amd64",
            vec![
                Index {
                    suite: "bookworm".into(),
                    records: main.records().unwrap(),
                },
                Index {
                    suite: "bookworm-updates".into(),
                    records: updates.records().unwrap(),
                },
            ],
        );
        for variant in [Variant::Essential, Variant::Apt, Variant::Minbase] {
            for (include, exclude) in [
                (vec![], vec![]),
                (vec!["sudo".to_string()], vec![]),
                (vec!["gawk".to_string()], vec!["mawk".to_string()]),
                (vec!["awk".to_string()], vec![]),
                (vec!["unknown".to_string()], vec![]),
                (vec![], vec!["x".to_string()]),
            ] {
                let request = Request {
                    variant,
                    include: include.clone(),
                    exclude: exclude.clone(),
                };
                let requested: Vec<String> = include.into_iter().chain(exclude).collect();
                let small = Universe::new("amd64", prune(&sources, "amd64", &requested).unwrap());
                assert_eq!(
                    resolve(&small, &request),
                    resolve(&full, &request),
                    "{request:?}"
                );
            }
        }
    }
}
