//! What an image's layer holds, as far as an SBOM cares: the packages its
//! package database says are installed (dpkg's `status` and `status.d/`, Alpine's
//! `lib/apk/db/installed`), each package's `/usr/share/doc/<pkg>/copyright`,
//! `/etc/os-release`, and, for a rootfs with no package database, every file's
//! checksums.
//!
//! Read from the layer itself, not from the rootfs source: every source kind
//! (`dir`, `tar`, `command`, `debian`) ends up as a layer, and the layer is
//! exactly what the image ships.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha1::Digest as _;

use super::AttestError;
use crate::debian::deb822;

/// Which package manager installed a package.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum PackageKind {
    /// dpkg (Debian, Ubuntu).
    #[default]
    Deb,
    /// apk (Alpine).
    Apk,
}

/// One installed package.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSum {
    /// Path in the image, without a leading `/`.
    pub path: String,
    /// Hex SHA-1 (SPDX 2.3 requires it for files).
    pub sha1: String,
    /// Hex SHA-256.
    pub sha256: String,
}

/// What the layer says about itself.
#[derive(Debug, Clone, Default)]
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

/// Reads a (compressed) layer tarball.
pub fn read_layer(path: &Path, digest: &str) -> Result<Contents, AttestError> {
    let err = |source| AttestError::Layer {
        digest: digest.to_string(),
        source,
    };
    let reader = crate::decompress::open(path).map_err(err)?;
    read_tar(reader).map_err(err)
}

/// The normalized path of an entry: no `./`, no leading or trailing `/`.
fn clean(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// Reads a tar stream (what [`read_layer`] decompresses).
pub fn read_tar(reader: impl Read) -> std::io::Result<Contents> {
    let mut archive = tar::Archive::new(reader);
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    let mut status_d: Vec<String> = Vec::new();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let mut files: BTreeMap<String, (String, String)> = BTreeMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let Some(target) = entry.link_name_bytes() {
                links.insert(path, String::from_utf8_lossy(&target).into_owned());
            }
            continue;
        }
        if kind.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let target = clean(&String::from_utf8_lossy(&target));
                if let Some(sums) = files.get(&target).cloned() {
                    files.insert(path.clone(), sums);
                }
                if let Some(text) = texts.get(&target).cloned() {
                    texts.insert(path, text);
                }
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let wanted = is_wanted(&path);
        let mut sha1 = sha1::Sha1::new();
        let mut sha256 = sha2::Sha256::new();
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sha1.update(&buf[..n]);
            sha256.update(&buf[..n]);
            if wanted {
                kept.extend_from_slice(&buf[..n]);
            }
        }
        files.insert(
            path.clone(),
            (hex::encode(sha1.finalize()), hex::encode(sha256.finalize())),
        );
        if wanted {
            if path.starts_with("var/lib/dpkg/status.d/") {
                status_d.push(path.clone());
            }
            texts.insert(path, String::from_utf8_lossy(&kept).into_owned());
        }
    }

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
        contents.files = files
            .into_iter()
            .map(|(path, (sha1, sha256))| FileSum { path, sha1, sha256 })
            .collect();
    }
    Ok(contents)
}

/// Files whose text the SBOM reads.
fn is_wanted(path: &str) -> bool {
    matches!(
        path,
        "var/lib/dpkg/status" | "lib/apk/db/installed" | "etc/os-release" | "usr/lib/os-release"
    ) || path.starts_with("var/lib/dpkg/status.d/") && !path.ends_with(".md5sums")
        || path.starts_with("usr/share/doc/") && path.ends_with("/copyright")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, bytes) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *bytes).unwrap();
        }
        for (path, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, path, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn dpkg_status_source_and_symlinked_doc_folders() {
        let status = b"Package: libgcc-s1\nStatus: install ok installed\nArchitecture: arm64\nSource: gcc-12 (12.2.0-14)\nVersion: 12.2.0-14\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: gcc-12-base\nStatus: install ok installed\nArchitecture: arm64\nSource: gcc-12\nVersion: 12.2.0-14\n";
        let tar = tar_of(
            &[
                ("./var/lib/dpkg/status", status),
                ("./usr/share/doc/gcc-12-base/copyright", b"text"),
                ("./etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
            ],
            &[("./usr/share/doc/libgcc-s1", "gcc-12-base")],
        );
        let c = read_tar(&tar[..]).unwrap();
        let names: Vec<_> = c.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["gcc-12-base", "libgcc-s1"]);
        assert_eq!(c.packages[1].source.as_deref(), Some("gcc-12"));
        assert_eq!(c.packages[1].source_version.as_deref(), Some("12.2.0-14"));
        assert_eq!(
            c.copyrights.get("libgcc-s1").map(String::as_str),
            Some("text")
        );
        assert_eq!(c.os, Some(("debian".into(), "12".into())));
        assert!(c.files.is_empty());
    }

    #[test]
    fn apk_database_packages_and_licenses() {
        let db = b"C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\no:musl\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\nL:GPL-2.0-only\no:busybox\n\n";
        let c = read_tar(&tar_of(&[("lib/apk/db/installed", db)], &[])[..]).unwrap();
        assert!(c.has_package_db);
        let got: Vec<_> = c
            .packages
            .iter()
            .map(|p| {
                (
                    p.kind,
                    p.name.as_str(),
                    p.version.as_str(),
                    p.license.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    PackageKind::Apk,
                    "busybox",
                    "1.36.1-r29",
                    Some("GPL-2.0-only")
                ),
                (PackageKind::Apk, "musl", "1.2.5-r0", Some("MIT")),
            ]
        );
    }

    #[test]
    fn no_database_lists_files() {
        let tar = tar_of(&[("hello", b"hi\n")], &[]);
        let c = read_tar(&tar[..]).unwrap();
        assert!(!c.has_package_db);
        assert_eq!(c.files.len(), 1);
        assert_eq!(c.files[0].path, "hello");
        assert_eq!(
            c.files[0].sha256,
            "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"
        );
    }
}
