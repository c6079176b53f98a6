//! Installing locked `.deb`s into a root filesystem without dpkg, root or
//! emulation: every package's data merged into one tree, plus what dpkg and the
//! maintainer scripts would have left (see the README's list), written as one
//! deterministic tarball that the layer step reads like any tarball source.
//!
//! What is produced declaratively, checked against `mmdebstrap --variant=minbase`
//! of bookworm (amd64):
//! - the merged data of every package, with merged `/usr` as bookworm's and
//!   trixie's bootstrap lay it out (`bin/`, `sbin/`, `lib*/` are installed under
//!   `usr/`, and the top level gets `bin -> usr/bin`, ...);
//! - the dpkg database (`status`, `info/*`, `arch`, `diversions`, `triggers/`,
//!   `alternatives/`), so `dpkg -l`, `dpkg --audit` and `dpkg -i` work inside;
//! - users and groups from base-passwd's master files, shadowed as `shadowconfig`
//!   leaves them;
//! - the `update-alternatives` links and the `dpkg-divert`s of minbase's
//!   postinsts ([`ALTERNATIVES`], [`DIVERSIONS`]);
//! - pam-auth-update's `/etc/pam.d/common-*` and `/var/lib/pam/` ([`pam`]);
//! - the systemd and sysv-rc enablement of the postinsts ([`enable`]).
//!
//! Deliberately not produced: logs, `*-old` backups, caches, `/etc/machine-id`,
//! `/etc/hostname`, `/etc/resolv.conf`, and `/etc/ld.so.cache` (the dynamic
//! loader searches the default paths without it; `ldconfig` rebuilds it on the
//! first `dpkg -i` of a library through libc-bin's trigger).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

mod enable;
mod pam;

use super::deb::Deb;
use crate::manifest::lock::LockedPackage;
use crate::rootfs::EntryKind;

/// Bumped when [`install`] makes a different tree from the same `.deb`s (2:
/// pam-auth-update's files, init-system enablement; 3: `status` and `info/*.list` byte for
/// byte as dpkg writes them), so rootfs steps and kept trees of an older imgraph are rebuilt.
pub const FORMAT: u32 = 3;

/// What [`install`] built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Entries in the tarball.
    pub entries: u64,
    /// Packages installed.
    pub packages: usize,
    /// blake3 (hex) of the tarball's bytes, hashed as it was written: what
    /// [`crate::rootfs::fingerprint_file`] gives for it, so a kept copy can be
    /// checked before it is used again.
    pub blake3: String,
}

/// Installing failed; nothing is left at the output path.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Reading a `.deb`.
    #[error(transparent)]
    Deb(#[from] super::deb::DebError),
    /// Two packages ship the same path and neither Replaces the other.
    #[error("{path} is shipped by both {first} and {second}, and neither declares Replaces on the other")]
    Conflict {
        /// The path.
        path: String,
        /// The package installed first.
        first: String,
        /// The other.
        second: String,
    },
    /// A package's file would go below another package's non-directory.
    #[error(
        "{path} of {package} lies below {parent}, which is not a directory in the merged tree"
    )]
    NotUnderDirectory {
        /// The path.
        path: String,
        /// Its package.
        package: String,
        /// The ancestor that is not a directory.
        parent: String,
    },
    /// The locked package and the `.deb` disagree (wrong file handed in).
    #[error("{deb} is {found}, but the lock says {locked}")]
    WrongDeb {
        /// The `.deb`.
        deb: PathBuf,
        /// `name version arch` from its control file.
        found: String,
        /// `name version arch` from the lock.
        locked: String,
    },
    /// Writing the tarball.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Where a node's bytes come from.
#[derive(Debug, Clone)]
enum Data {
    None,
    /// Entry `1` of `.deb` `0` (for a hard link: the entry it links to).
    Deb(usize, usize),
    Bytes(Vec<u8>),
}

/// One path of the merged tree.
#[derive(Debug, Clone)]
struct Node {
    kind: EntryKind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    /// The package that owns it (index into the `.deb`s), for conflicts.
    package: Option<usize>,
    data: Data,
}

impl Node {
    fn made(kind: EntryKind, mode: u32, data: Data) -> Node {
        Node {
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: i64::MAX,
            package: None,
            data,
        }
    }
    fn dir(mode: u32) -> Node {
        Node::made(EntryKind::Dir, mode, Data::None)
    }
    fn file(mode: u32, bytes: Vec<u8>) -> Node {
        Node::made(EntryKind::File, mode, Data::Bytes(bytes))
    }
    fn symlink(target: &str) -> Node {
        Node::made(
            EntryKind::Symlink {
                target: target.as_bytes().to_vec(),
            },
            0o777,
            Data::None,
        )
    }
}

/// The top-level folders that merged `/usr` moves under `usr/`: `bin`, `sbin` and
/// the `lib*` ones (`lib`, `lib32`, `lib64`, `libx32`, `libo32`; not `libexec`), as the `usrmerge`
/// conversion and mmdebstrap's merged-/usr setup do.
fn is_merged_top(name: &[u8]) -> bool {
    matches!(
        name,
        b"bin" | b"sbin" | b"lib" | b"lib32" | b"lib64" | b"libx32" | b"libo32"
    )
}

/// The path a package's path is installed at under merged `/usr`.
fn merged_path(path: &[u8]) -> Vec<u8> {
    let top = path.split(|b| *b == b'/').next().unwrap_or(b"");
    if is_merged_top(top) {
        let mut out = b"usr/".to_vec();
        out.extend_from_slice(path);
        out
    } else {
        path.to_vec()
    }
}

/// The package names a `Replaces` field names (versions and arch qualifiers
/// ignored: the lock holds one version of each package).
fn replaces(deb: &Deb) -> BTreeSet<String> {
    deb.control()
        .get("Replaces")
        .unwrap_or("")
        .split(',')
        .filter_map(|r| {
            let name = r.trim().split([' ', '(', ':']).next()?.trim();
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

fn field<'a>(deb: &'a Deb, name: &str) -> &'a str {
    deb.control().get(name).unwrap_or("")
}

/// The merged tree, keyed by path bytes (so iteration is the tar order).
struct Tree<'a> {
    debs: &'a [Deb],
    nodes: BTreeMap<Vec<u8>, Node>,
}

impl<'a> Tree<'a> {
    /// Adds every data entry of `.deb` `i` under the Replaces rule.
    fn add_package(&mut self, i: usize) -> Result<(), InstallError> {
        let deb = &self.debs[i];
        for (idx, e) in deb.entries().iter().enumerate() {
            let entry = &e.entry;
            // trixie's base-files ships the merged-/usr links (`bin -> usr/bin`)
            // itself: they stay at the top level.
            let is_usr_link = matches!(&entry.kind, EntryKind::Symlink { target }
                if !entry.path.contains(&b'/') && *target == [&b"usr/"[..], &entry.path].concat());
            let path = if is_usr_link {
                entry.path.clone()
            } else {
                merged_path(&entry.path)
            };
            let (kind, data) = match &entry.kind {
                EntryKind::Hardlink { target } => {
                    let at = deb
                        .entries()
                        .binary_search_by(|t| t.entry.path.as_slice().cmp(target))
                        .unwrap_or(idx);
                    (
                        EntryKind::Hardlink {
                            target: merged_path(target),
                        },
                        Data::Deb(i, at),
                    )
                }
                EntryKind::File => (EntryKind::File, Data::Deb(i, idx)),
                other => (other.clone(), Data::None),
            };
            let node = Node {
                kind,
                mode: entry.mode,
                uid: entry.uid,
                gid: entry.gid,
                mtime: entry.mtime,
                package: Some(i),
                data,
            };
            self.check_parents(&path, i)?;
            self.insert(path, node)?;
        }
        Ok(())
    }

    /// Every ancestor of `path` already in the tree is a directory.
    fn check_parents(&self, path: &[u8], i: usize) -> Result<(), InstallError> {
        let mut end = 0;
        while let Some(pos) = path[end..].iter().position(|b| *b == b'/') {
            let parent = &path[..end + pos];
            if let Some(n) = self.nodes.get(parent) {
                if n.kind != EntryKind::Dir {
                    return Err(InstallError::NotUnderDirectory {
                        path: String::from_utf8_lossy(path).into_owned(),
                        package: self.name(i),
                        parent: String::from_utf8_lossy(parent).into_owned(),
                    });
                }
            }
            end += pos + 1;
        }
        Ok(())
    }

    fn name(&self, i: usize) -> String {
        field(&self.debs[i], "Package").to_string()
    }

    fn insert(&mut self, path: Vec<u8>, node: Node) -> Result<(), InstallError> {
        let Some(old) = self.nodes.get(&path) else {
            self.nodes.insert(path, node);
            return Ok(());
        };
        if old.kind == EntryKind::Dir && node.kind == EntryKind::Dir {
            // Shared directories: the first package's mode and owner stay, as dpkg.
            return Ok(());
        }
        let (a, b) = (old.package, node.package);
        let keep_new = match (a, b) {
            (Some(a), Some(b)) if a == b => {
                // One package shipping both `/bin/x` and `/usr/bin/x`: the real
                // file wins over a compatibility symlink.
                matches!(old.kind, EntryKind::Symlink { .. })
                    && !matches!(node.kind, EntryKind::Symlink { .. } | EntryKind::Dir)
            }
            (Some(a), Some(b)) => {
                let (na, nb) = (self.name(a), self.name(b));
                if old.kind != EntryKind::Dir
                    && node.kind != EntryKind::Dir
                    && replaces(&self.debs[b]).contains(&na)
                {
                    true
                } else if old.kind != EntryKind::Dir
                    && node.kind != EntryKind::Dir
                    && (replaces(&self.debs[a]).contains(&nb) || na == nb)
                {
                    // `na == nb`: Multi-Arch: same siblings share their files.
                    false
                } else {
                    return Err(InstallError::Conflict {
                        path: String::from_utf8_lossy(&path).into_owned(),
                        first: na,
                        second: nb,
                    });
                }
            }
            _ => true,
        };
        if keep_new {
            self.nodes.insert(path, node);
        }
        Ok(())
    }

    /// Adds a generated entry (dpkg database, users, links), replacing what is there.
    fn put(&mut self, path: &str, node: Node) {
        self.nodes.insert(path.as_bytes().to_vec(), node);
    }

    fn has(&self, path: &str) -> bool {
        self.nodes.contains_key(path.as_bytes())
    }

    /// The bytes of a regular file in the tree.
    fn read(&self, path: &[u8]) -> Option<Vec<u8>> {
        let node = self.nodes.get(path)?;
        let mut out = Vec::new();
        match &node.data {
            Data::Bytes(b) => out.extend_from_slice(b),
            Data::Deb(d, idx) => {
                let deb = &self.debs[*d];
                deb.content(&deb.entries()[*idx])
                    .read_to_end(&mut out)
                    .ok()?;
            }
            Data::None => return None,
        }
        Some(out)
    }
}

/// The fields dpkg knows, in the order it writes them in `status`
/// (lib/dpkg/parse.c); any other field follows in the control file's order.
const STATUS_ORDER: &[&str] = &[
    "Package",
    "Essential",
    "Protected",
    "Status",
    "Priority",
    "Section",
    "Installed-Size",
    "Origin",
    "Maintainer",
    "Bugs",
    "Architecture",
    "Multi-Arch",
    "Source",
    "Version",
    "Config-Version",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
    "Conffiles",
    "Description",
    "Triggers-Pending",
    "Triggers-Awaited",
];

/// One alternative that a minbase postinst registers with `update-alternatives
/// --install`: (package, name, link, path, priority, slaves as (name, link, path)).
type Alternative = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u32,
    &'static [(&'static str, &'static str, &'static str)],
);

/// The alternatives minbase's postinsts register (mawk, util-linux, tar,
/// debianutils, bash); a slave whose path the tree lacks is left out, as
/// update-alternatives does.
pub const ALTERNATIVES: &[Alternative] = &[
    (
        "mawk",
        "awk",
        "/usr/bin/awk",
        "/usr/bin/mawk",
        5,
        &[
            (
                "awk.1.gz",
                "/usr/share/man/man1/awk.1.gz",
                "/usr/share/man/man1/mawk.1.gz",
            ),
            ("nawk", "/usr/bin/nawk", "/usr/bin/mawk"),
            (
                "nawk.1.gz",
                "/usr/share/man/man1/nawk.1.gz",
                "/usr/share/man/man1/mawk.1.gz",
            ),
        ],
    ),
    (
        "bash",
        "builtins.7.gz",
        "/usr/share/man/man7/builtins.7.gz",
        "/usr/share/man/man7/bash-builtins.7.gz",
        10,
        &[],
    ),
    (
        "util-linux",
        "pager",
        "/usr/bin/pager",
        "/bin/more",
        50,
        &[(
            "pager.1.gz",
            "/usr/share/man/man1/pager.1.gz",
            "/usr/share/man/man1/more.1.gz",
        )],
    ),
    (
        "tar",
        "rmt",
        "/usr/sbin/rmt",
        "/usr/sbin/rmt-tar",
        50,
        &[(
            "rmt.8.gz",
            "/usr/share/man/man8/rmt.8.gz",
            "/usr/share/man/man8/rmt-tar.8.gz",
        )],
    ),
    (
        "debianutils",
        "which",
        "/usr/bin/which",
        "/usr/bin/which.debianutils",
        0,
        &[
            (
                "which.1.gz",
                "/usr/share/man/man1/which.1.gz",
                "/usr/share/man/man1/which.debianutils.1.gz",
            ),
            (
                "which.de1.gz",
                "/usr/share/man/de/man1/which.1.gz",
                "/usr/share/man/de/man1/which.debianutils.1.gz",
            ),
            (
                "which.es1.gz",
                "/usr/share/man/es/man1/which.1.gz",
                "/usr/share/man/es/man1/which.debianutils.1.gz",
            ),
            (
                "which.fr1.gz",
                "/usr/share/man/fr/man1/which.1.gz",
                "/usr/share/man/fr/man1/which.debianutils.1.gz",
            ),
            (
                "which.it1.gz",
                "/usr/share/man/it/man1/which.1.gz",
                "/usr/share/man/it/man1/which.debianutils.1.gz",
            ),
            (
                "which.ja1.gz",
                "/usr/share/man/ja/man1/which.1.gz",
                "/usr/share/man/ja/man1/which.debianutils.1.gz",
            ),
            (
                "which.pl1.gz",
                "/usr/share/man/pl/man1/which.1.gz",
                "/usr/share/man/pl/man1/which.debianutils.1.gz",
            ),
            (
                "which.sl1.gz",
                "/usr/share/man/sl/man1/which.1.gz",
                "/usr/share/man/sl/man1/which.debianutils.1.gz",
            ),
        ],
    ),
];

/// The `dpkg-divert`s minbase's maintainer scripts leave: (package, path, diverted to).
/// dash diverts its own `/bin/sh` so that bash's cannot take it.
pub const DIVERSIONS: &[(&str, &str, &str)] = &[
    (
        "dash",
        "/usr/share/man/man1/sh.1.gz",
        "/usr/share/man/man1/sh.distrib.1.gz",
    ),
    ("dash", "/bin/sh", "/bin/sh.distrib"),
];

/// The `/var/lib/dpkg/info` base name of a package: `name:arch` for Multi-Arch: same.
fn info_name(deb: &Deb) -> String {
    if field(deb, "Multi-Arch") == "same" {
        format!("{}:{}", field(deb, "Package"), field(deb, "Architecture"))
    } else {
        field(deb, "Package").to_string()
    }
}

/// The hex md5 of `bytes`.
fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// Writes the dpkg database.
fn dpkg_database(tree: &mut Tree<'_>, debian_arch: &str) {
    let debs = tree.debs;
    let db = "var/lib/dpkg";
    for d in [
        "var",
        "var/lib",
        db,
        "var/lib/dpkg/alternatives",
        "var/lib/dpkg/info",
        "var/lib/dpkg/parts",
        "var/lib/dpkg/triggers",
        "var/lib/dpkg/updates",
    ] {
        if !tree.has(d) {
            tree.put(d, Node::dir(0o755));
        }
    }
    tree.put(
        &format!("{db}/arch"),
        Node::file(0o644, format!("{debian_arch}\n").into_bytes()),
    );
    tree.put(
        &format!("{db}/info/format"),
        Node::file(0o644, b"1\n".to_vec()),
    );
    for lock in ["lock", "lock-frontend", "triggers/Lock"] {
        let mode = if lock == "triggers/Lock" {
            0o600
        } else {
            0o640
        };
        tree.put(&format!("{db}/{lock}"), Node::file(mode, Vec::new()));
    }
    tree.put(
        &format!("{db}/triggers/Unincorp"),
        Node::file(0o644, Vec::new()),
    );

    // Status paragraphs sorted by name then arch, as dpkg writes them.
    let mut order: Vec<usize> = (0..debs.len()).collect();
    order.sort_by(|&a, &b| {
        (field(&debs[a], "Package"), field(&debs[a], "Architecture"))
            .cmp(&(field(&debs[b], "Package"), field(&debs[b], "Architecture")))
    });
    let mut status = String::new();
    let mut file_triggers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut explicit: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for &i in &order {
        let deb = &debs[i];
        let info = info_name(deb);
        let mut conffiles = String::new();
        if let Some(c) = deb.conffiles() {
            for line in String::from_utf8_lossy(c).lines() {
                let line = line.trim();
                // `remove-on-upgrade` entries are not installed files.
                let Some(path) = line.strip_prefix('/').filter(|p| !p.contains(' ')) else {
                    continue;
                };
                let sum = tree
                    .read(&merged_path(path.as_bytes()))
                    .map_or_else(|| "newconffile".to_string(), |b| md5_hex(&b));
                conffiles.push_str(&format!("\n/{path} {sum}"));
            }
            tree.put(
                &format!("{db}/info/{info}.conffiles"),
                Node::file(0o644, c.to_vec()),
            );
        }
        let mut known: Vec<(&str, String)> = Vec::new();
        for name in STATUS_ORDER {
            let value = match *name {
                "Status" => Some("install ok installed".to_string()),
                "Conffiles" => (!conffiles.is_empty()).then(|| conffiles.clone()),
                _ => deb.control().get(name).map(str::to_string),
            };
            if let Some(v) = value {
                known.push((name, v));
            }
        }
        for (name, value) in known {
            status.push_str(&format_field(name, &value));
        }
        for (name, value) in deb.control().fields() {
            if !STATUS_ORDER.iter().any(|k| k.eq_ignore_ascii_case(name)) {
                status.push_str(&format_field(name, value));
            }
        }
        status.push('\n');

        // info/<pkg>.list: the paths as shipped, `/.` first, in data.tar's
        // order (dpkg records them as it unpacks), bytes as they are.
        let mut list = b"/.\n".to_vec();
        for path in deb.data_order() {
            list.push(b'/');
            list.extend_from_slice(path);
            list.push(b'\n');
        }
        tree.put(&format!("{db}/info/{info}.list"), Node::file(0o644, list));
        if let Some(m) = deb.md5sums() {
            tree.put(
                &format!("{db}/info/{info}.md5sums"),
                Node::file(0o644, m.to_vec()),
            );
        }
        for (name, mode, bytes) in deb.extra_members() {
            tree.put(
                &format!("{db}/info/{info}.{name}"),
                Node::file(*mode, bytes.clone()),
            );
            if name == "triggers" {
                for line in String::from_utf8_lossy(bytes).lines() {
                    let mut words = line.split_whitespace();
                    let (Some(kind), Some(trigger)) = (words.next(), words.next()) else {
                        continue;
                    };
                    let suffix = if kind.ends_with("-noawait") {
                        "/noawait"
                    } else {
                        ""
                    };
                    if !kind.starts_with("interest") {
                        continue;
                    }
                    let who = format!("{info}{suffix}");
                    let map = if trigger.starts_with('/') {
                        &mut file_triggers
                    } else {
                        &mut explicit
                    };
                    map.entry(trigger.to_string()).or_default().push(who);
                }
            }
        }
    }
    tree.put(
        &format!("{db}/status"),
        Node::file(0o644, status.into_bytes()),
    );
    let mut file = String::new();
    for (path, who) in &file_triggers {
        for w in who {
            file.push_str(&format!("{path} {w}\n"));
        }
    }
    tree.put(
        &format!("{db}/triggers/File"),
        Node::file(0o644, file.into_bytes()),
    );
    for (name, who) in &explicit {
        let text: String = who.iter().map(|w| format!("{w}\n")).collect();
        tree.put(
            &format!("{db}/triggers/{name}"),
            Node::file(0o644, text.into_bytes()),
        );
    }

    let mut diversions = String::new();
    for (pkg, from, to) in DIVERSIONS {
        if scripts_mention(debs, pkg, &["dpkg-divert", from]) {
            diversions.push_str(&format!("{from}\n{to}\n{pkg}\n"));
        }
    }
    tree.put(
        &format!("{db}/diversions"),
        Node::file(0o644, diversions.into_bytes()),
    );
}

/// Whether `package`'s maintainer scripts mention every one of `words`: a table
/// entry of [`ALTERNATIVES`] or [`DIVERSIONS`] applies only to the versions of the
/// package that still do what it describes (trixie's dash no longer diverts
/// `/bin/sh`).
fn scripts_mention(debs: &[Deb], package: &str, words: &[&str]) -> bool {
    debs.iter()
        .filter(|d| field(d, "Package") == package)
        .any(|d| {
            d.extra_members()
                .iter()
                .filter(|(name, _, _)| matches!(name.as_str(), "preinst" | "postinst"))
                .any(|(_, _, bytes)| {
                    let text = String::from_utf8_lossy(bytes);
                    words.iter().all(|w| text.contains(w))
                })
        })
}

/// One `Name: value` field as dpkg writes it (continuation lines indented).
fn format_field(name: &str, value: &str) -> String {
    let mut p = super::deb822::Paragraph::default();
    p.push(name, value);
    p.to_string()
}

/// The `update-alternatives` links and their administrative files.
fn alternatives(tree: &mut Tree<'_>) {
    let exists = |tree: &Tree<'_>, p: &str| {
        tree.has(&String::from_utf8_lossy(&merged_path(
            p.trim_start_matches('/').as_bytes(),
        )))
    };
    for (pkg, name, link, path, priority, slaves) in ALTERNATIVES {
        if !scripts_mention(tree.debs, pkg, &["update-alternatives", link]) || !exists(tree, path) {
            continue;
        }
        if !tree.has("etc/alternatives") {
            tree.put("etc/alternatives", Node::dir(0o755));
        }
        let slaves: Vec<_> = slaves.iter().filter(|s| exists(tree, s.2)).collect();
        let mut admin = format!("auto\n{link}\n");
        for (s, l, _) in &slaves {
            admin.push_str(&format!("{s}\n{l}\n"));
        }
        admin.push_str(&format!("\n{path}\n{priority}\n"));
        for (_, _, p) in &slaves {
            admin.push_str(&format!("{p}\n"));
        }
        admin.push('\n');
        tree.put(
            &format!("var/lib/dpkg/alternatives/{name}"),
            Node::file(0o644, admin.into_bytes()),
        );
        for (n, l, p) in std::iter::once(&(*name, *link, *path)).chain(slaves.iter().copied()) {
            tree.put(&format!("etc/alternatives/{n}"), Node::symlink(p));
            let at = String::from_utf8_lossy(&merged_path(l.trim_start_matches('/').as_bytes()))
                .into_owned();
            tree.put(&at, Node::symlink(&format!("/etc/alternatives/{n}")));
        }
    }
}

/// `/etc/passwd`, `group`, `shadow` and `gshadow` from base-passwd's master files,
/// as base-passwd's postinst and `shadowconfig on` leave them.
fn users(tree: &mut Tree<'_>, created: u64) {
    let (Some(passwd), Some(group)) = (
        tree.read(b"usr/share/base-passwd/passwd.master"),
        tree.read(b"usr/share/base-passwd/group.master"),
    ) else {
        return;
    };
    let days = created / 86_400;
    let (mut pw, mut sh, mut gr, mut gsh) =
        (String::new(), String::new(), String::new(), String::new());
    for line in String::from_utf8_lossy(&passwd).lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            continue;
        }
        pw.push_str(&format!("{}:x:{}\n", f[0], f[2..].join(":")));
        sh.push_str(&format!("{}:{}:{days}:0:99999:7:::\n", f[0], f[1]));
    }
    for line in String::from_utf8_lossy(&group).lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            continue;
        }
        gr.push_str(&format!("{}:x:{}\n", f[0], f[2..].join(":")));
        gsh.push_str(&format!("{}:{}::{}\n", f[0], f[1], f[3]));
    }
    if !tree.has("etc") {
        tree.put("etc", Node::dir(0o755));
    }
    tree.put("etc/passwd", Node::file(0o644, pw.into_bytes()));
    tree.put("etc/group", Node::file(0o644, gr.into_bytes()));
    for (path, text) in [("etc/shadow", sh), ("etc/gshadow", gsh)] {
        let mut node = Node::file(0o640, text.into_bytes());
        node.gid = SHADOW_GID;
        tree.put(path, node);
    }
}

/// The `shadow` group of base-passwd.
const SHADOW_GID: u64 = 42;

/// The top-level merged-/usr symlinks (`bin -> usr/bin`, ...), for each merged
/// folder that `usr/` has.
fn usr_links(tree: &mut Tree<'_>) {
    let tops: Vec<String> = tree
        .nodes
        .iter()
        .filter(|(p, n)| {
            n.kind == EntryKind::Dir
                && p.starts_with(b"usr/")
                && !p[4..].contains(&b'/')
                && is_merged_top(&p[4..])
        })
        .map(|(p, _)| String::from_utf8_lossy(&p[4..]).into_owned())
        .collect();
    for top in tops {
        if !tree.has(&top) {
            tree.put(&top, Node::symlink(&format!("usr/{top}")));
        }
    }
}

/// Opens the `.deb` at `path` for the locked package `locked`, hashing it as it is
/// read: refused unless it is the very file the lock pins
/// ([`DebError::NotLocked`](super::deb::DebError::NotLocked): sha256 and size) and
/// its control file names the locked package ([`InstallError::WrongDeb`]).
pub fn open_locked(
    locked: &LockedPackage,
    path: &Path,
    temp_dir: &Path,
) -> Result<Deb, InstallError> {
    let deb = Deb::open_locked(path, temp_dir, &locked.sha256, locked.size)?;
    let found = format!(
        "{} {} {}",
        field(&deb, "Package"),
        field(&deb, "Version"),
        field(&deb, "Architecture")
    );
    let want = format!("{} {} {}", locked.name, locked.version, locked.arch);
    if found != want {
        return Err(InstallError::WrongDeb {
            deb: path.to_path_buf(),
            found,
            locked: want,
        });
    }
    Ok(deb)
}

/// Installs `debs` (each locked package with its `.deb` file, checked against the
/// lock as it is read) for `debian_arch` into the tarball `out` (written
/// atomically), with every mtime clamped to `created`. `temp_dir` is scratch
/// space on the cache's filesystem.
pub fn install(
    debs: &[(LockedPackage, PathBuf)],
    debian_arch: &str,
    created: u64,
    temp_dir: &Path,
    out: &Path,
) -> Result<Installed, InstallError> {
    let opened = debs
        .iter()
        .map(|(locked, path)| open_locked(locked, path, temp_dir))
        .collect::<Result<Vec<_>, _>>()?;
    install_opened(&opened, debian_arch, created, out)
}

/// Installs `.deb`s already opened with [`open_locked`] (in the lock's order) into
/// the tarball `out`, as [`install`] does.
pub fn install_opened(
    opened: &[Deb],
    debian_arch: &str,
    created: u64,
    out: &Path,
) -> Result<Installed, InstallError> {
    let mut tree = Tree {
        debs: opened,
        nodes: BTreeMap::new(),
    };
    for i in 0..opened.len() {
        tree.add_package(i)?;
    }
    usr_links(&mut tree);
    base_files(&mut tree);
    shells(&mut tree);
    small_postinsts(&mut tree);
    pam::pam_auth_update(&mut tree);
    enable::enable_services(&mut tree);
    users(&mut tree, created);
    alternatives(&mut tree);
    dpkg_database(&mut tree, debian_arch);
    let (entries, blake3) = write_tar(&tree, created, out)?;
    Ok(Installed {
        entries,
        packages: opened.len(),
        blake3,
    })
}

/// Writes the tree as a tarball at `out` through a temp file in its folder, then
/// renames it into place; returns the entry count and the tarball's blake3 (hex).
fn write_tar(tree: &Tree<'_>, created: u64, out: &Path) -> Result<(u64, String), InstallError> {
    let werr = |source| InstallError::Write {
        path: out.to_path_buf(),
        source,
    };
    let tmp = crate::atomic_file::AtomicFile::create(out).map_err(werr)?;
    let hashed = Blake3Writer {
        inner: tmp.file(),
        hasher: blake3::Hasher::new(),
    };
    let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, hashed));
    builder.mode(tar::HeaderMode::Complete);
    let clamp = i64::try_from(created).unwrap_or(i64::MAX);
    let mut count = 0u64;
    // Files written so far that came from a .deb (a hard link may point at them).
    // (Only when it holds the very entry the link names: a Replaces may have put
    // another package's file there.)
    let mut written_files: BTreeMap<&[u8], (usize, usize)> = BTreeMap::new();
    // The root folder first, as mmdebstrap's tarball has it.
    let root = Node::dir(0o755);
    let all =
        std::iter::once((&b""[..], &root)).chain(tree.nodes.iter().map(|(p, n)| (p.as_slice(), n)));
    for (path, node) in all {
        let mut h = tar::Header::new_gnu();
        h.set_mode(node.mode & 0o7777);
        h.set_uid(node.uid);
        h.set_gid(node.gid);
        h.set_mtime(node.mtime.min(clamp).max(0) as u64);
        let mut name = b"./".to_vec();
        name.extend_from_slice(path);
        let mut content: Option<Vec<u8>> = None;
        let mut link: Option<Vec<u8>> = None;
        match &node.kind {
            EntryKind::Dir => {
                if !path.is_empty() {
                    name.push(b'/');
                }
                h.set_entry_type(tar::EntryType::Directory);
            }
            EntryKind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                content = Some(tree.read(path).unwrap_or_default());
            }
            EntryKind::Symlink { target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                link = Some(target.clone());
            }
            EntryKind::Hardlink { target }
                if matches!(node.data, Data::Deb(d, i)
                    if written_files.get(target.as_slice()) == Some(&(d, i))) =>
            {
                h.set_entry_type(tar::EntryType::Link);
                let mut t = b"./".to_vec();
                t.extend_from_slice(target);
                link = Some(t);
            }
            EntryKind::Hardlink { .. } => {
                // Merged /usr sorted the link before its target (or the target
                // was replaced): a file of its own with the same bytes.
                h.set_entry_type(tar::EntryType::Regular);
                let mut bytes = Vec::new();
                if let Data::Deb(d, idx) = node.data {
                    let deb = &tree.debs[d];
                    deb.content(&deb.entries()[idx])
                        .read_to_end(&mut bytes)
                        .map_err(werr)?;
                }
                content = Some(bytes);
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                h.set_entry_type(if matches!(node.kind, EntryKind::CharDevice { .. }) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(*major).map_err(werr)?;
                h.set_device_minor(*minor).map_err(werr)?;
            }
            EntryKind::Fifo => h.set_entry_type(tar::EntryType::Fifo),
        }
        let name = std::str::from_utf8(&name)
            .map_err(|_| werr(io::Error::other("path is not UTF-8")))?
            .to_string();
        if let Some(target) = link {
            h.set_size(0);
            let target = String::from_utf8_lossy(&target).into_owned();
            builder.append_link(&mut h, &name, &target).map_err(werr)?;
        } else {
            let bytes = content.unwrap_or_default();
            h.set_size(bytes.len() as u64);
            builder
                .append_data(&mut h, &name, bytes.as_slice())
                .map_err(werr)?;
            if let (EntryKind::File, Data::Deb(d, i)) = (&node.kind, &node.data) {
                written_files.insert(path, (*d, *i));
            }
        }
        count += 1;
    }
    let hashed = builder
        .into_inner()
        .map_err(werr)?
        .into_inner()
        .map_err(|e| werr(e.into_error()))?;
    let blake3 = hashed.hasher.finalize().to_hex().to_string();
    tmp.commit(true).map_err(werr)?;
    Ok((count, blake3))
}

/// A writer that hashes (blake3) what passes through it.
struct Blake3Writer<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Blake3Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What base-files' postinst leaves on a first configure: the default dot files,
/// `/etc/profile` and `/etc/motd` copied from `/usr/share/base-files`, the FHS
/// folders it creates, `/var/run -> /run`, `/var/lock -> /run/lock`, `/usr/local/*`
/// and `/usr/share/info/dir`. Not reproduced: `/var/log/{wtmp,btmp,lastlog}` (logs).
fn base_files(tree: &mut Tree<'_>) {
    if !tree.has("usr/share/base-files") {
        return;
    }
    if tree.has("etc/dpkg/origins/debian") && !tree.has("etc/dpkg/origins/default") {
        tree.put("etc/dpkg/origins/default", Node::symlink("debian"));
    }
    for (from, to) in [
        ("dot.profile", "root/.profile"),
        ("dot.bashrc", "root/.bashrc"),
        ("profile", "etc/profile"),
        ("motd", "etc/motd"),
        ("info.dir", "usr/share/info/dir"),
    ] {
        let from = format!("usr/share/base-files/{from}");
        if tree.has(to) {
            continue;
        }
        if let Some(node) = tree.nodes.get(from.as_bytes()).cloned() {
            // `cp -p`: mode, owner and mtime travel with the bytes.
            let mut node = node;
            node.package = None;
            if to == "usr/share/info/dir" {
                node.mode = 0o644;
            }
            tree.put(to, node);
        }
    }
    for (dir, mode, gid) in [
        ("mnt", 0o755, 0),
        ("srv", 0o755, 0),
        ("opt", 0o755, 0),
        ("etc/opt", 0o755, 0),
        ("var/opt", 0o755, 0),
        ("media", 0o755, 0),
        ("var/mail", 0o2775, MAIL_GID),
        ("run/lock", 0o1777, 0),
        ("usr/local", 0o755, 0),
        ("usr/local/share", 0o755, 0),
        ("usr/local/share/man", 0o755, 0),
        ("usr/local/bin", 0o755, 0),
        ("usr/local/games", 0o755, 0),
        ("usr/local/lib", 0o755, 0),
        ("usr/local/include", 0o755, 0),
        ("usr/local/sbin", 0o755, 0),
        ("usr/local/src", 0o755, 0),
        ("usr/local/etc", 0o755, 0),
    ] {
        if !tree.has(dir) {
            let mut node = Node::dir(mode);
            node.gid = gid;
            tree.put(dir, node);
        }
    }
    tree.put("var/spool/mail", Node::symlink("../mail"));
    tree.put("usr/local/man", Node::symlink("share/man"));
    // migrate_directory: the packaged folders become links (nothing is below them).
    for (dir, target) in [("var/run", "/run"), ("var/lock", "/run/lock")] {
        let mut below = dir.as_bytes().to_vec();
        below.push(b'/');
        if !tree.nodes.keys().any(|k| k.starts_with(&below)) {
            tree.put(dir, Node::symlink(target));
        }
    }
}

/// base-passwd's `_apt` user.
const APT_UID: u64 = 42;

/// base-passwd's `mail` group.
const MAIL_GID: u64 = 8;

/// `/etc/shells` as debianutils' `update-shells` writes it: the template, the
/// shells of every `shells.d` file, then their merged-/usr aliases.
fn shells(tree: &mut Tree<'_>) {
    let Some(template) = tree.read(b"usr/share/debianutils/shells") else {
        return;
    };
    let mut lines: Vec<String> = Vec::new();
    let mut out = String::new();
    for line in String::from_utf8_lossy(&template).lines() {
        if line.starts_with('/') {
            lines.push(line.to_string());
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let dir = b"usr/share/debianutils/shells.d/".to_vec();
    let files: Vec<Vec<u8>> = tree
        .nodes
        .range(dir.clone()..)
        .take_while(|(k, _)| k.starts_with(&dir))
        .map(|(k, _)| k.clone())
        .collect();
    for f in files {
        for line in String::from_utf8_lossy(&tree.read(&f).unwrap_or_default()).lines() {
            let line = line.trim();
            if line.starts_with('/') && !lines.iter().any(|l| l == line) {
                lines.push(line.to_string());
            }
        }
    }
    let aliases: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix('/')?;
            let top = rest.split('/').next()?;
            is_merged_top(top.as_bytes()).then(|| format!("/usr/{rest}"))
        })
        .collect();
    for l in lines.iter().chain(&aliases) {
        out.push_str(l);
        out.push('\n');
    }
    tree.put("etc/shells", Node::file(0o644, out.into_bytes()));
}

/// The one-line effects of a few minbase postinsts: libc-bin's
/// `/etc/nsswitch.conf`, tzdata's UTC default, passwd's empty `subuid`/`subgid`,
/// libpam-modules' empty `/etc/environment` and `opasswd`, apt's `_apt`-owned
/// `partial/` folders. (pam-auth-update's effects are [`pam`]'s, init-system
/// enablement [`enable`]'s.)
fn small_postinsts(tree: &mut Tree<'_>) {
    let installed: BTreeSet<String> = tree
        .debs
        .iter()
        .map(|d| field(d, "Package").to_string())
        .collect();
    if let Some(node) = tree
        .nodes
        .get(&b"usr/share/libc-bin/nsswitch.conf"[..])
        .cloned()
    {
        if !tree.has("etc/nsswitch.conf") {
            let mut node = node;
            node.package = None;
            tree.put("etc/nsswitch.conf", node);
        }
    }
    if installed.contains("tzdata") && tree.has("usr/share/zoneinfo/Etc/UTC") {
        tree.put(
            "etc/localtime",
            Node::symlink("/usr/share/zoneinfo/Etc/UTC"),
        );
        tree.put("etc/timezone", Node::file(0o644, b"Etc/UTC\n".to_vec()));
    }
    if installed.contains("apt") {
        // apt's postinst hands its download folders to the `_apt` sandbox user.
        for dir in [
            "var/cache/apt/archives/partial",
            "var/lib/apt/lists/partial",
        ] {
            if let Some(node) = tree.nodes.get_mut(dir.as_bytes()) {
                node.mode = 0o700;
                node.uid = APT_UID;
                node.gid = 0;
            }
        }
    }
    let mut empty = Vec::new();
    if installed.contains("passwd") {
        empty.extend([("etc/subuid", 0o644), ("etc/subgid", 0o644)]);
    }
    if installed.contains("libpam-modules") {
        empty.extend([("etc/environment", 0o644), ("etc/security/opasswd", 0o600)]);
    }
    for (path, mode) in empty {
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        if tree.has(parent) && !tree.has(path) {
            tree.put(path, Node::file(mode, Vec::new()));
        }
    }
}

#[cfg(test)]
mod tests {
    //! Tiny packages built with the real `dpkg-deb`, installed and read back.

    use super::*;
    use std::collections::BTreeMap;
    use std::process::Command;

    /// Builds `name_1.0_ARCH.deb` in `dir` from `control` extra fields and `files`
    /// (path -> content; `->T` is a symlink to T, `=>P` a hard link to the earlier P).
    fn deb(
        dir: &Path,
        name: &str,
        extra: &str,
        files: &[(&str, &str)],
    ) -> (LockedPackage, PathBuf) {
        let root = dir.join(format!("{name}.src"));
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        let arch = if extra.contains("Multi-Arch: same") {
            "amd64"
        } else {
            "all"
        };
        std::fs::write(
            root.join("DEBIAN/control"),
            format!("Package: {name}\nVersion: 1.0\nArchitecture: {arch}\nMaintainer: t <t@imgraph.invalid>\n{extra}Description: test {name}\n"),
        )
        .unwrap();
        let mut conffiles = String::new();
        for (path, content) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if let Some(target) = content.strip_prefix("->") {
                std::os::unix::fs::symlink(target, &p).unwrap();
            } else if let Some(target) = content.strip_prefix("=>") {
                std::fs::hard_link(root.join(target), &p).unwrap();
            } else {
                std::fs::write(&p, content).unwrap();
            }
            if path.starts_with("etc/") {
                conffiles.push_str(&format!("/{path}\n"));
            }
        }
        if !conffiles.is_empty() {
            std::fs::write(root.join("DEBIAN/conffiles"), conffiles).unwrap();
        }
        let out = dir.join(format!("{name}_1.0_{arch}.deb"));
        let st = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&root)
            .arg(&out)
            .output()
            .expect("dpkg-deb (see .ci/run)");
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let bytes = std::fs::read(&out).unwrap();
        let locked = LockedPackage {
            name: name.into(),
            version: "1.0".into(),
            arch: arch.into(),
            sha256: crate::digest::sha256(&bytes)
                .trim_start_matches("sha256:")
                .to_string(),
            size: bytes.len() as u64,
            filename: String::new(),
            archive: String::new(),
        };
        (locked, out)
    }

    /// Installs and reads the tarball back: path -> (link target or content).
    fn run(
        dir: &Path,
        debs: &[(LockedPackage, PathBuf)],
    ) -> Result<BTreeMap<String, String>, InstallError> {
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let out = dir.join("rootfs.tar");
        install(debs, "amd64", 1_700_000_000, &tmp, &out)?;
        let mut map = BTreeMap::new();
        let mut ar = tar::Archive::new(std::fs::File::open(&out).unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = String::from_utf8_lossy(&e.path_bytes())
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            assert!(
                e.header().mtime().unwrap() <= 1_700_000_000,
                "{path} clamped"
            );
            let link = e.link_name_bytes().map(|l| l.into_owned());
            let value = match link {
                Some(l) => format!("->{}", String::from_utf8_lossy(&l)),
                None => {
                    let mut s = String::new();
                    e.read_to_string(&mut s).unwrap();
                    s
                }
            };
            map.insert(path, value);
        }
        Ok(map)
    }

    #[test]
    fn a_file_shipped_twice_without_replaces_is_a_conflict_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let a = deb(dir.path(), "pkga", "", &[("usr/bin/tool", "a\n")]);
        // Shipped as /bin/tool: merged /usr puts it at the same path.
        let b = deb(dir.path(), "pkgb", "", &[("bin/tool", "b\n")]);
        let err = run(dir.path(), &[a, b]).unwrap_err();
        match &err {
            InstallError::Conflict {
                path,
                first,
                second,
            } => {
                assert_eq!(
                    (path.as_str(), first.as_str(), second.as_str()),
                    ("usr/bin/tool", "pkga", "pkgb")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !dir.path().join("rootfs.tar").exists(),
            "nothing at the output path"
        );
    }

    #[test]
    fn replaces_decides_who_owns_a_shared_file_in_either_order() {
        let dir = tempfile::tempdir().unwrap();
        let old = deb(dir.path(), "old", "", &[("usr/share/x", "old\n")]);
        let new = deb(
            dir.path(),
            "new",
            "Replaces: old (<< 2)\n",
            &[("usr/share/x", "new\n")],
        );
        for debs in [
            vec![old.clone(), new.clone()],
            vec![new.clone(), old.clone()],
        ] {
            let tree = run(dir.path(), &debs).unwrap();
            assert_eq!(tree["usr/share/x"], "new\n");
        }
    }

    #[test]
    fn merged_usr_moves_bin_and_lib_and_links_the_top_level() {
        let dir = tempfile::tempdir().unwrap();
        let a = deb(
            dir.path(),
            "a",
            "",
            &[
                ("bin/sh", "->dash"),
                ("bin/dash", "#!dash\n"),
                ("lib64/ld.so", "->/lib/x/ld.so"),
                ("usr/libexec/helper", "h\n"),
            ],
        );
        let tree = run(dir.path(), &[a]).unwrap();
        assert_eq!(tree["bin"], "->usr/bin");
        assert_eq!(tree["lib64"], "->usr/lib64");
        assert_eq!(tree["usr/bin/sh"], "->dash");
        assert_eq!(tree["usr/lib64/ld.so"], "->/lib/x/ld.so");
        assert_eq!(tree["usr/libexec/helper"], "h\n");
        assert!(
            !tree.contains_key("libexec")
                && !tree.contains_key("sbin")
                && !tree.contains_key("lib")
        );
        // The .list keeps the paths as shipped.
        let list = &tree["var/lib/dpkg/info/a.list"];
        assert!(
            list.starts_with("/.\n") && list.contains("\n/bin/dash\n"),
            "{list}"
        );
    }

    #[test]
    fn status_has_dpkgs_field_order_conffiles_md5_and_multi_arch_names() {
        let dir = tempfile::tempdir().unwrap();
        let a = deb(
            dir.path(),
            "liba",
            "Multi-Arch: same\nDepends: libc6 (>= 2.36)\nHomepage: https://imgraph.invalid\nSection: libs\nPriority: optional\n",
            &[("etc/a.conf", "key=value\n"), ("usr/lib/liba.so", "elf\n")],
        );
        let tree = run(dir.path(), &[a]).unwrap();
        let md5 = md5_hex(b"key=value\n");
        assert_eq!(
            tree["var/lib/dpkg/status"],
            format!(
                "Package: liba\nStatus: install ok installed\nPriority: optional\nSection: libs\n\
                 Maintainer: t <t@imgraph.invalid>\nArchitecture: amd64\nMulti-Arch: same\nVersion: 1.0\n\
                 Depends: libc6 (>= 2.36)\nConffiles:\n /etc/a.conf {md5}\nDescription: test liba\n\
                 Homepage: https://imgraph.invalid\n\n"
            )
        );
        assert!(tree.contains_key("var/lib/dpkg/info/liba:amd64.list"));
        assert_eq!(
            tree["var/lib/dpkg/info/liba:amd64.conffiles"],
            "/etc/a.conf\n"
        );
        assert_eq!(tree["var/lib/dpkg/arch"], "amd64\n");
        assert_eq!(tree["var/lib/dpkg/info/format"], "1\n");
    }

    #[test]
    fn a_deb_that_is_not_the_locked_package_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut locked, path) = deb(dir.path(), "pkga", "", &[("usr/share/a", "a\n")]);
        locked.version = "2.0".into();
        match run(dir.path(), &[(locked, path)]).unwrap_err() {
            InstallError::WrongDeb { found, locked, .. } => {
                assert_eq!(
                    (found.as_str(), locked.as_str()),
                    ("pkga 1.0 all", "pkga 2.0 all")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join("rootfs.tar").exists());
    }

    /// A `.deb` changed after it was locked (another package's bytes, or garbage of
    /// the locked size) is refused naming both digests, before anything is written.
    #[test]
    fn a_deb_that_is_not_the_locked_file_is_refused_naming_both_digests() {
        let dir = tempfile::tempdir().unwrap();
        let (locked, path) = deb(dir.path(), "pkga", "", &[("usr/share/a", "a\n")]);
        let (_, other) = deb(dir.path(), "pkgb", "", &[("usr/share/b", "b\n")]);
        std::fs::copy(&other, &path).unwrap();
        let garbage = vec![b'x'; usize::try_from(locked.size).unwrap()];
        for bytes in [std::fs::read(&other).unwrap(), garbage] {
            std::fs::write(&path, &bytes).unwrap();
            match run(dir.path(), &[(locked.clone(), path.clone())]).unwrap_err() {
                InstallError::Deb(super::super::deb::DebError::NotLocked {
                    expected,
                    found,
                    found_size,
                    ..
                }) => {
                    assert_eq!(expected, locked.sha256);
                    assert_eq!(
                        found,
                        crate::digest::sha256(&bytes).trim_start_matches("sha256:")
                    );
                    assert_eq!(found_size, bytes.len() as u64);
                }
                other => panic!("{other:?}"),
            }
            assert!(!dir.path().join("rootfs.tar").exists());
        }
    }

    #[test]
    fn the_same_debs_give_the_same_bytes_whatever_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = deb(
            dir.path(),
            "a",
            "",
            &[("usr/share/a", "a\n"), ("etc/a.conf", "x\n")],
        );
        let b = deb(dir.path(), "b", "", &[("bin/b", "b\n")]);
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let (one, two) = (dir.path().join("1.tar"), dir.path().join("2.tar"));
        install(&[a.clone(), b.clone()], "amd64", 1_700_000_000, &tmp, &one).unwrap();
        install(&[b, a], "amd64", 1_700_000_000, &tmp, &two).unwrap();
        assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "no temp files left"
        );
    }

    #[test]
    fn hard_links_stay_links_unless_merged_usr_puts_the_link_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = deb(
            dir.path(),
            "a",
            "",
            &[
                ("usr/bin/perl", "elf\n"),
                ("usr/bin/perl5", "=>usr/bin/perl"),
                // Sorts after usr/bin/aaa once merged, but is the file in the .deb.
                ("bin/zzz", "z\n"),
                ("usr/bin/aaa", "=>bin/zzz"),
            ],
        );
        let tree = run(dir.path(), &[a]).unwrap();
        assert_eq!(tree["usr/bin/perl5"], "->./usr/bin/perl", "a tar hard link");
        assert_eq!(tree["usr/bin/aaa"], "z\n", "written as a copy");
        assert_eq!(tree["usr/bin/zzz"], "z\n");
    }

    #[test]
    fn a_package_shipping_the_merged_usr_links_itself_as_trixie_does() {
        let dir = tempfile::tempdir().unwrap();
        let tool = deb(dir.path(), "tool", "", &[("usr/bin/tool", "t\n")]);
        let base = deb(
            dir.path(),
            "base-files",
            "",
            &[("bin", "->usr/bin"), ("lib", "->usr/lib")],
        );
        let tree = run(dir.path(), &[tool, base]).unwrap();
        assert_eq!(tree["bin"], "->usr/bin");
        assert_eq!(tree["lib"], "->usr/lib");
        assert_eq!(tree["usr/bin/tool"], "t\n");
    }
}
