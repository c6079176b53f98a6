//! What imgraph makes of one command a maintainer script reaches on a first
//! install: an effect the installer already reproduces (`install.rs` and
//! `install/`), a command that does nothing on a first install, or one whose
//! effect the image lacks.

use super::eval::{FileTest, Reached};
use crate::debian::install::{ALTERNATIVES, DIVERSIONS};

/// A command's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// The installer makes what it would have made.
    Reproduced,
    /// Nothing to do on a first install, or a query.
    NoOp,
    /// Its effect is not in the image.
    NotReproduced,
}

/// What classifying asks about the package set beyond the file tree.
pub(super) trait Facts {
    /// Whether `path` is in the unpacked tree as `test` asks.
    fn file(&self, test: FileTest, path: &str) -> bool;
    /// Whether base-passwd's master files (which the installer writes as
    /// `/etc/passwd` and `/etc/group`) have this user (`group` false) or group.
    fn account(&self, group: bool, name: &str) -> bool;
}

/// Commands that change nothing on a first install (or only print, or ask).
const NO_OPS: &[&str] = &[
    // maintscript conffile moves and symlink changes apply to upgrades only.
    "dpkg-maintscript-helper",
    // Starting services: no services run in an image build.
    "deb-systemd-invoke",
    "invoke-rc.d",
    // Queries.
    "dpkg-query",
    "getent",
    "id",
    "grep",
    "egrep",
    "fgrep",
    "cmp",
    "diff",
    "readlink",
    "realpath",
    "basename",
    "dirname",
    "head",
    "tail",
    "cat",
    "wc",
    "sort",
    "uniq",
    "tr",
    "cut",
    "awk",
    "mawk",
    "expr",
    "sleep",
    "dpkg-architecture",
    "systemd-detect-virt",
    "ischroot",
    "pidof",
    "logger",
    "debconf-escape",
    "mountpoint",
    "md5sum",
    "sha256sum",
    "stat",
    "ls",
    "uname",
    "dpkg-realpath",
    "nproc",
];

/// Commands whose effect the installer reproduces whatever their arguments.
const REPRODUCED: &[(&str, &str)] = &[
    (
        "pam-auth-update",
        "pam-auth-update's /etc/pam.d/common-* (install/pam.rs)",
    ),
    (
        "deb-systemd-helper",
        "systemd enablement (install/enable.rs)",
    ),
    ("update-passwd", "base-passwd's master files"),
    ("shadowconfig", "shadowed passwd and group"),
    ("add-shell", "/etc/shells"),
    ("update-shells", "/etc/shells"),
];

/// File commands of a few minbase postinsts whose first-install effect the
/// installer's code for that package makes (`base_files`, `small_postinsts`,
/// `shells` in `install.rs`; checked against mmdebstrap's minbase tree):
/// (package, command, a path among its arguments; `""`: any).
const PACKAGE_EFFECTS: &[(&str, &str, &str)] = &[
    ("base-files", "cp", ""),
    ("base-files", "mkdir", ""),
    ("base-files", "chown", ""),
    ("base-files", "chmod", ""),
    ("base-files", "ln", ""),
    ("base-files", "rmdir", ""),
    ("base-files", ":", ""),
    ("libc-bin", "cp", "/etc/nsswitch.conf"),
    ("debianutils", "cp", "/etc/shells"),
    ("base-passwd", "cat", "/etc/passwd"),
    ("base-passwd", "cat", "/etc/group"),
    ("base-passwd", "cp", "/etc/passwd"),
    ("base-passwd", "cp", "/etc/group"),
    // dash's /bin/sh and sh.1.gz, diverted and linked (install.rs's DIVERSIONS).
    ("dash", "cp", ""),
    ("dash", "ln", ""),
    ("dash", "mv", ""),
    ("dash", "rm", ""),
    ("dash", "touch", ""),
    ("libpam-modules", "touch", "/etc/security/opasswd"),
    ("libpam-modules", "chmod", "/etc/security/opasswd"),
    ("libpam-modules", "touch", "/etc/environment"),
    // tzdata's debconf default: Etc/UTC.
    ("tzdata", "ln", ""),
    ("tzdata", "mv", ""),
    ("tzdata", "echo", "/etc/timezone"),
    ("login", "touch", "/etc/subuid"),
    ("login", "chown", "/etc/subuid"),
    ("login", "chmod", "/etc/subuid"),
    ("login", "touch", "/etc/subgid"),
    ("login", "chown", "/etc/subgid"),
    ("login", "chmod", "/etc/subgid"),
];

/// Classifies `c`, a command `package`'s script reached.
pub(super) fn classify(package: &str, c: &Reached, facts: &dyn Facts) -> Class {
    let Some(name) = c.words[0].as_deref() else {
        return Class::NotReproduced;
    };
    let base = name.rsplit('/').next().unwrap_or(name);
    let args: Vec<Option<&str>> = c.words[1..].iter().map(|w| w.as_deref()).collect();
    let has = |flag: &str| args.contains(&Some(flag));
    if PACKAGE_EFFECTS.iter().any(|(p, cmd, path)| {
        *p == package
            && *cmd == base
            && (path.is_empty()
                || args.contains(&Some(*path))
                || c.writes.as_deref() == Some(*path))
    }) {
        return Class::Reproduced;
    }
    if c.writes.is_some() {
        // Its output goes to a file the image would have.
        return Class::NotReproduced;
    }
    if base.starts_with("db_") || NO_OPS.contains(&base) {
        return Class::NoOp;
    }
    if REPRODUCED.iter().any(|(n, _)| *n == base) {
        return Class::Reproduced;
    }

    match base {
        // `perl -e ""`: a test that perl runs.
        "perl" if args == [Some("-e"), Some("")] => Class::NoOp,
        // debconf's library: its `db_*` calls take the templates' defaults.
        "." | "source" if args == [Some("/usr/share/debconf/confmodule")] => Class::NoOp,
        "dpkg" => {
            if args.iter().flatten().any(|a| {
                matches!(
                    *a,
                    "--print-architecture"
                        | "--print-foreign-architectures"
                        | "--compare-versions"
                        | "-L"
                        | "--listfiles"
                        | "-s"
                        | "--status"
                        | "--validate-version"
                ) || a.starts_with("--assert-")
            }) {
                Class::NoOp
            } else {
                Class::NotReproduced
            }
        }
        // `--remove` of an alternative a first install never registered.
        "update-alternatives" if has("--remove") || has("--remove-all") => Class::NoOp,
        "update-alternatives" if has("--query") || has("--display") || has("--list") => Class::NoOp,
        "update-alternatives" => {
            let at = args.iter().position(|a| *a == Some("--install"));
            let (link, alt) = match at {
                Some(i) => (
                    args.get(i + 1).copied().flatten(),
                    args.get(i + 2).copied().flatten(),
                ),
                None => (None, None),
            };
            let known = ALTERNATIVES
                .iter()
                .any(|(pkg, n, l, ..)| *pkg == package && Some(*n) == alt && Some(*l) == link);
            if known {
                Class::Reproduced
            } else {
                Class::NotReproduced
            }
        }
        "dpkg-divert"
            if has("--remove") || has("--list") || has("--truename") || has("--listpackage") =>
        {
            Class::NoOp
        }
        "dpkg-divert" => {
            let path = args.last().copied().flatten();
            let known = DIVERSIONS
                .iter()
                .any(|(pkg, from, _)| *pkg == package && Some(*from) == path);
            if known {
                Class::Reproduced
            } else {
                Class::NotReproduced
            }
        }
        "update-rc.d" => match args.get(1).copied().flatten() {
            Some("defaults") => Class::Reproduced,
            Some("remove") => Class::NoOp,
            _ => Class::NotReproduced,
        },
        "adduser" | "addgroup" | "useradd" | "groupadd" => {
            let group = matches!(base, "addgroup" | "groupadd") || has("--group");
            let user = args.iter().rev().flatten().find(|a| !a.starts_with('-'));
            match user {
                Some(u) if facts.account(group, u) => Class::Reproduced,
                _ => Class::NotReproduced,
            }
        }
        // Removing what a first install does not have.
        "rm" | "rmdir" => {
            let paths: Vec<_> = args
                .iter()
                .filter(|a| !a.is_some_and(|a| a.starts_with('-')))
                .collect();
            if !paths.is_empty()
                && paths.iter().all(|p| {
                    p.is_some_and(|p| {
                        p.starts_with('/') && !p.contains('*') && !facts.file(FileTest::Exists, p)
                    })
                })
            {
                Class::NoOp
            } else {
                Class::NotReproduced
            }
        }
        _ => Class::NotReproduced,
    }
}
