//! The package set as the scripts see it on a first install: every path the
//! `.deb`s unpack (under merged `/usr`), base-passwd's users and groups, and the
//! triggers the set activates.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use super::eval::FileTest;
use super::Probe;
use crate::debian::deb::Deb;
use crate::rootfs::EntryKind;

/// What a path is in the unpacked tree.
#[derive(Debug, Clone, Copy)]
struct PathInfo {
    dir: bool,
    symlink: bool,
    mode: u32,
    /// For a regular file: (deb, entry) to read it from.
    at: Option<(usize, usize)>,
}

/// Sourced files larger than this are not read (no maintainer-script library is).
const MAX_SOURCED: u64 = 1 << 20;

/// The unpacked package set, for the walk's questions.
#[derive(Debug, Default)]
pub(super) struct PackageSet<'a> {
    debs: Vec<&'a Deb>,
    paths: BTreeMap<String, PathInfo>,
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
    /// Trigger names some package activates explicitly (`activate*` lines).
    activated: BTreeSet<String>,
}

/// The path `path` (absolute or relative) is unpacked at under merged `/usr`.
fn normal(path: &str) -> String {
    let rel = path.trim_start_matches("./").trim_start_matches('/');
    let rel = rel.trim_end_matches('/');
    let top = rel.split('/').next().unwrap_or("");
    if matches!(
        top,
        "bin" | "sbin" | "lib" | "lib32" | "lib64" | "libx32" | "libo32"
    ) {
        format!("usr/{rel}")
    } else {
        rel.to_string()
    }
}

/// The names in the first field of a base-passwd master file.
fn names(bytes: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

impl<'a> PackageSet<'a> {
    /// Indexes `debs`.
    pub(super) fn new(debs: &[&'a Deb]) -> PackageSet<'a> {
        let mut set = PackageSet {
            debs: debs.to_vec(),
            ..PackageSet::default()
        };
        for (d, deb) in debs.iter().enumerate() {
            for (i, e) in deb.entries().iter().enumerate() {
                let path = normal(&String::from_utf8_lossy(&e.entry.path));
                let info = PathInfo {
                    dir: e.entry.kind == EntryKind::Dir,
                    symlink: matches!(e.entry.kind, EntryKind::Symlink { .. }),
                    mode: e.entry.mode,
                    at: (e.entry.kind == EntryKind::File).then_some((d, i)),
                };
                for (file, into) in [
                    ("usr/share/base-passwd/passwd.master", &mut set.users),
                    ("usr/share/base-passwd/group.master", &mut set.groups),
                ] {
                    if path == file {
                        let mut bytes = Vec::new();
                        if deb.content(e).read_to_end(&mut bytes).is_ok() {
                            *into = names(&bytes);
                        }
                    }
                }
                set.paths.insert(path, info);
            }
            if let Some((_, _, t)) = deb.extra_members().iter().find(|(n, _, _)| n == "triggers") {
                for l in String::from_utf8_lossy(t).lines() {
                    let mut w = l.split_whitespace();
                    if let (Some(d), Some(name)) = (w.next(), w.next()) {
                        if d.starts_with("activate") {
                            set.activated.insert(name.to_string());
                        }
                    }
                }
            }
        }
        set
    }

    /// The answer to `probe`.
    pub(super) fn answer(&self, probe: &Probe) -> bool {
        match probe {
            Probe::File(test, path) => {
                let top = normal(path);
                // Merged /usr's top-level links exist when usr/<top> does.
                let info = self.paths.get(&top).copied().or_else(|| {
                    (top.is_empty()).then_some(PathInfo {
                        dir: true,
                        symlink: false,
                        mode: 0o755,
                        at: None,
                    })
                });
                match (test, info) {
                    (_, None) => false,
                    (FileTest::Exists, Some(_)) => true,
                    (FileTest::File, Some(i)) => !i.dir,
                    (FileTest::Dir, Some(i)) => i.dir,
                    (FileTest::Symlink, Some(i)) => i.symlink,
                    // A symlink (an alternative, a merged-/usr link) is taken as
                    // pointing at something executable.
                    (FileTest::Executable, Some(i)) => i.symlink || i.mode & 0o111 != 0,
                }
            }
            Probe::Account(false, name) => self.users.contains(name),
            Probe::Account(true, name) => self.groups.contains(name),
            Probe::Content(path, hash) => &content_hash(self.read(path).as_deref()) == hash,
            Probe::List(dir, names) => &self.list(dir).join("/") == names,
        }
    }

    /// The text of a regular file the set ships at `path`.
    pub(super) fn read(&self, path: &str) -> Option<String> {
        let (d, i) = self.paths.get(&normal(path))?.at?;
        let deb = self.debs.get(d)?;
        let entry = deb.entries().get(i)?;
        if entry.entry.size > MAX_SOURCED {
            return None;
        }
        let mut bytes = Vec::new();
        deb.content(entry).read_to_end(&mut bytes).ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The names directly in folder `dir`, sorted.
    pub(super) fn list(&self, dir: &str) -> Vec<String> {
        let d = normal(dir);
        let under = if d.is_empty() {
            String::new()
        } else {
            format!("{d}/")
        };
        self.paths
            .range(under.clone()..)
            .take_while(|(p, _)| p.starts_with(&under))
            .filter_map(|(p, _)| {
                let rest = &p[under.len()..];
                (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
            })
            .collect()
    }

    /// Whether a trigger `name` an interested package declares is activated by
    /// the set: explicitly (`activate* NAME`), or, for a file trigger (an
    /// absolute path), by any package shipping a path below it.
    pub(super) fn trigger_activated(&self, name: &str) -> bool {
        if name.starts_with('/') {
            let under = format!("{}/", normal(name));
            self.paths
                .range(under.clone()..)
                .next()
                .is_some_and(|(p, _)| p.starts_with(&under))
        } else {
            self.activated.contains(name)
        }
    }
}

/// What [`Probe::Content`] records of a file's text (`-` when absent).
pub(super) fn content_hash(text: Option<&str>) -> String {
    text.map_or_else(
        || "-".to_string(),
        |t| blake3::hash(t.as_bytes()).to_hex().to_string(),
    )
}

#[cfg(test)]
impl PackageSet<'static> {
    /// A set of the given paths (`name` a file, `name*` an executable, `name/`
    /// a folder) and base-passwd users.
    pub(super) fn of(paths: &[&str], users: &[&str]) -> PackageSet<'static> {
        let mut set = PackageSet::default();
        for p in paths {
            let (path, dir, mode) = if let Some(p) = p.strip_suffix('/') {
                (p, true, 0o755)
            } else if let Some(p) = p.strip_suffix('*') {
                (p, false, 0o755)
            } else {
                (*p, false, 0o644)
            };
            set.paths.insert(
                normal(path),
                PathInfo {
                    dir,
                    symlink: false,
                    mode,
                    at: None,
                },
            );
        }
        set.users = users.iter().map(|u| u.to_string()).collect();
        set
    }
}
