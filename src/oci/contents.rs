//! What a layer holds, as far as an SBOM cares, gathered while the layer is
//! written: the packages its package database says are installed (dpkg's
//! `status` and `status.d/`, Alpine's `lib/apk/db/installed`), each package's
//! `/usr/share/doc/<pkg>/copyright`, `/etc/os-release`, and, for a rootfs with no
//! package database, every file's checksums.
//!
//! The layer step already reads every byte of the rootfs to write the tar, so it
//! feeds each entry to a [`Collector`] too (as it feeds the ELF census) and keeps
//! the result as a small cached blob: the sbom step then reads that JSON and never
//! decompresses a layer. The same collector reads a layer back
//! (`read_tar` in the attest module) for a cache entry made before this
//! existed, so both ways give the same [`Contents`] by construction.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use crate::debian::deb822;

/// Which package manager installed a package.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    /// dpkg (Debian, Ubuntu).
    #[default]
    Deb,
    /// apk (Alpine).
    Apk,
}

/// One installed package.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstalledPackage {
    /// dpkg or apk.
    pub kind: PackageKind,
    /// Package name.
    pub name: String,
    /// Version, as the package manager writes it.
    pub version: String,
    /// Its architecture (`arm64`, `all`, `x86_64`).
    pub arch: String,
    /// The source package it was built from, when it differs or is known.
    pub source: Option<String>,
    /// The source package's version, when it differs from `version`.
    pub source_version: Option<String>,
    /// The license the database states (apk's `L:`), else none.
    pub license: Option<String>,
}

/// One regular file, for a rootfs without a package database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Path in the image, without a leading `/`.
    pub path: String,
    /// Hex SHA-1 (SPDX 2.3 requires it for files).
    pub sha1: String,
    /// Hex SHA-256.
    pub sha256: String,
}

/// What the layer says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// Installed packages, sorted by kind, name, arch.
    pub packages: Vec<InstalledPackage>,
    /// Whether a package database was found at all (an empty one counts).
    pub has_package_db: bool,
    /// Every regular file's checksums, sorted by path (empty when there is a
    /// package database: the packages say what is there).
    pub files: Vec<FileSum>,
    /// `/usr/share/doc/<pkg>/copyright` texts, by package name.
    pub copyrights: BTreeMap<String, String>,
    /// `ID` and `VERSION_ID` of `/etc/os-release` (or `/usr/lib/os-release`).
    pub os: Option<(String, String)>,
}

/// The normalized path of an entry: no `./`, no leading or trailing `/`.
fn clean(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// Files whose text the SBOM reads.
fn is_wanted(path: &str) -> bool {
    matches!(
        path,
        "var/lib/dpkg/status" | "lib/apk/db/installed" | "etc/os-release" | "usr/lib/os-release"
    ) || path.starts_with("var/lib/dpkg/status.d/") && !path.ends_with(".md5sums")
        || path.starts_with("usr/share/doc/") && path.ends_with("/copyright")
}

/// Whether an entry at `path` (a regular file or a hard link) could be a
/// package database. Asked of every entry before the layer is written: when none
/// could be, every file's checksums are needed and hashed in the same pass; when
/// one could, no file is hashed (the packages say what is there).
pub fn may_be_package_db(path: &[u8]) -> bool {
    let path = clean(&String::from_utf8_lossy(path));
    matches!(
        path.as_str(),
        "var/lib/dpkg/status" | "lib/apk/db/installed"
    ) || path.starts_with("var/lib/dpkg/status.d/") && !path.ends_with(".md5sums")
}

/// The regular file being read.
struct Open {
    path: String,
    wanted: bool,
    sums: Option<(sha1::Sha1, sha2::Sha256)>,
    kept: Vec<u8>,
}

/// Gathers [`Contents`] one tar entry at a time, in archive order.
pub struct Collector {
    hash_files: bool,
    texts: BTreeMap<String, String>,
    status_d: Vec<String>,
    links: BTreeMap<String, String>,
    files: BTreeMap<String, (String, String)>,
    open: Option<Open>,
}

impl Collector {
    /// `hash_files`: checksum every regular file (needed only when the rootfs
    /// has no package database).
    pub fn new(hash_files: bool) -> Self {
        Collector {
            hash_files,
            texts: BTreeMap::new(),
            status_d: Vec::new(),
            links: BTreeMap::new(),
            files: BTreeMap::new(),
            open: None,
        }
    }

    /// A symbolic link entry.
    pub fn symlink(&mut self, path: &[u8], target: &[u8]) {
        let path = clean(&String::from_utf8_lossy(path));
        self.links
            .insert(path, String::from_utf8_lossy(target).into_owned());
    }

    /// A hard link entry: it has what its (earlier) target has.
    pub fn hardlink(&mut self, path: &[u8], target: &[u8]) {
        let path = clean(&String::from_utf8_lossy(path));
        let target = clean(&String::from_utf8_lossy(target));
        if let Some(sums) = self.files.get(&target).cloned() {
            self.files.insert(path.clone(), sums);
        }
        if let Some(text) = self.texts.get(&target).cloned() {
            self.texts.insert(path, text);
        }
    }

    /// A regular file starts; returns whether [`Collector::data`] wants its bytes.
    pub fn begin_file(&mut self, path: &[u8]) -> bool {
        let path = clean(&String::from_utf8_lossy(path));
        let wanted = is_wanted(&path);
        let sums = self
            .hash_files
            .then(|| (sha1::Sha1::new(), sha2::Sha256::new()));
        let needs_bytes = wanted || sums.is_some();
        self.open = Some(Open {
            path,
            wanted,
            sums,
            kept: Vec::new(),
        });
        needs_bytes
    }

    /// The next bytes of the file begun last.
    pub fn data(&mut self, bytes: &[u8]) {
        let Some(open) = &mut self.open else { return };
        if let Some((sha1, sha256)) = &mut open.sums {
            sha1.update(bytes);
            sha256.update(bytes);
        }
        if open.wanted {
            open.kept.extend_from_slice(bytes);
        }
    }

    /// The file begun last is complete.
    pub fn end_file(&mut self) {
        let Some(open) = self.open.take() else { return };
        if let Some((sha1, sha256)) = open.sums {
            self.files.insert(
                open.path.clone(),
                (hex::encode(sha1.finalize()), hex::encode(sha256.finalize())),
            );
        }
        if open.wanted {
            if open.path.starts_with("var/lib/dpkg/status.d/") {
                self.status_d.push(open.path.clone());
            }
            self.texts
                .insert(open.path, String::from_utf8_lossy(&open.kept).into_owned());
        }
    }

    /// What the entries said; `None` when files were not hashed and there turned
    /// out to be no package database after all (only a hard-linked `status` whose
    /// target is not a file can do that): the caller then reads the layer back.
    pub fn finish(self) -> Option<Contents> {
        let Collector {
            hash_files,
            texts,
            status_d,
            links,
            files,
            ..
        } = self;
        let mut contents = Contents::default();
        let mut dpkg_texts: Vec<&String> = Vec::new();
        if let Some(t) = texts.get("var/lib/dpkg/status") {
            dpkg_texts.push(t);
        }
        dpkg_texts.extend(status_d.iter().filter_map(|p| texts.get(p)));
        if !dpkg_texts.is_empty() {
            contents.has_package_db = true;
            for text in dpkg_texts {
                contents.packages.extend(dpkg_packages(text));
            }
        }
        if let Some(t) = texts.get("lib/apk/db/installed") {
            contents.has_package_db = true;
            contents.packages.extend(apk_packages(t));
        }
        contents.packages.sort();
        contents.packages.dedup();
        for p in contents
            .packages
            .iter()
            .filter(|p| p.kind == PackageKind::Deb)
        {
            if let Some(text) = copyright_of(&p.name, &texts, &links) {
                contents.copyrights.insert(p.name.clone(), text.clone());
            }
        }
        contents.os = ["etc/os-release", "usr/lib/os-release"]
            .iter()
            .find_map(|p| texts.get(*p))
            .and_then(|t| os_release(t));
        if !contents.has_package_db {
            if !hash_files {
                return None;
            }
            contents.files = files
                .into_iter()
                .map(|(path, (sha1, sha256))| FileSum { path, sha1, sha256 })
                .collect();
        }
        Some(contents)
    }
}

/// `usr/share/doc/<pkg>/copyright`, following a symlinked doc folder (Debian
/// links `libgcc-s1`'s to `gcc-12-base`'s) or a symlinked file.
fn copyright_of<'t>(
    pkg: &str,
    texts: &'t BTreeMap<String, String>,
    links: &BTreeMap<String, String>,
) -> Option<&'t String> {
    let mut dir = format!("usr/share/doc/{pkg}");
    for _ in 0..4 {
        let file = format!("{dir}/copyright");
        if let Some(t) = texts.get(&file) {
            return Some(t);
        }
        if let Some(target) = links.get(&file) {
            return texts.get(&resolve(&dir, target));
        }
        let target = links.get(&dir)?;
        dir = resolve("usr/share/doc", target);
    }
    None
}

/// A symlink target seen from the folder holding the link.
fn resolve(from_dir: &str, target: &str) -> String {
    if let Some(abs) = target.strip_prefix('/') {
        return clean(abs);
    }
    let mut parts: Vec<&str> = from_dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Installed packages of a dpkg `status` file (or one `status.d/` file).
fn dpkg_packages(text: &str) -> Vec<InstalledPackage> {
    let Ok(paragraphs) = deb822::parse(text) else {
        return Vec::new();
    };
    paragraphs
        .iter()
        .filter(|p| {
            // `install ok installed`; a status.d file (distroless) has no Status.
            p.get("Status").is_none_or(|s| {
                let state = s.split_whitespace().nth(2).unwrap_or("");
                !matches!(state, "not-installed" | "config-files")
            })
        })
        .filter_map(|p| {
            let name = p.get("Package")?.trim().to_string();
            let version = p.get("Version")?.trim().to_string();
            let arch = p.get("Architecture").unwrap_or("").trim().to_string();
            // `Source: gcc-12 (12.2.0-14)`: a name, and a version when it differs.
            let (source, source_version) = match p.get("Source").map(str::trim) {
                None | Some("") => (None, None),
                Some(s) => match s.split_once(' ') {
                    Some((n, v)) => (
                        Some(n.to_string()),
                        Some(
                            v.trim_matches(|c| c == '(' || c == ')' || c == ' ')
                                .to_string(),
                        ),
                    ),
                    None => (Some(s.to_string()), None),
                },
            };
            Some(InstalledPackage {
                kind: PackageKind::Deb,
                name,
                version,
                arch,
                source,
                source_version,
                license: None,
            })
        })
        .collect()
}

/// Packages of Alpine's `lib/apk/db/installed` (`P:`, `V:`, `A:`, `L:`, `o:`).
fn apk_packages(text: &str) -> Vec<InstalledPackage> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut p = InstalledPackage {
            kind: PackageKind::Apk,
            ..InstalledPackage::default()
        };
        for line in block.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k {
                "P" => p.name = v.to_string(),
                "V" => p.version = v.to_string(),
                "A" => p.arch = v.to_string(),
                "L" if !v.is_empty() => p.license = Some(v.to_string()),
                "o" if !v.is_empty() => p.source = Some(v.to_string()),
                _ => {}
            }
        }
        if !p.name.is_empty() && !p.version.is_empty() {
            out.push(p);
        }
    }
    out
}

/// `ID` and `VERSION_ID` (major version for Debian: `12`).
fn os_release(text: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let v = l.strip_prefix(name)?.strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_string())
        })
    };
    let id = field("ID")?;
    let version = field("VERSION_ID")?;
    Some((id, version))
}
