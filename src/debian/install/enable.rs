//! Init-system enablement that minbase's postinsts do on a first configure, so
//! the tree is what `mmdebstrap` leaves (an image later booted with systemd or
//! sysvinit finds its timers and services enabled as Debian intends):
//! - `deb-systemd-helper enable 'UNIT'` (dh_installsystemd's snippet; its
//!   `was-enabled` check is true on a first install): the `*.wants/` and
//!   `*.requires/` links of the unit's `[Install]` section (with `Also=`,
//!   `Alias=`, `DefaultInstance=`), pointing where `find_unit` finds the unit,
//!   and deb-systemd-helper's state (`*.dsh-also`, and the links mirrored as
//!   empty files) under `/var/lib/systemd/deb-systemd-helper-enabled/`;
//! - `update-rc.d NAME defaults` (dh_installinit's) without insserv:
//!   `rcN.d/S01NAME` for each `Default-Start` level and `K01NAME` for each
//!   `Default-Stop` level of the script's LSB header, as update-rc.d's
//!   `make_sysv_links` writes them.

use std::collections::BTreeSet;

use super::{Node, Tree};

const STATE: &str = "var/lib/systemd/deb-systemd-helper-enabled";

/// The quoted argument after `words` on each line of `script` that has it.
fn arguments(script: &str, words: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(words))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|a| a.trim_matches(|c| c == '\'' || c == '"').to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// deb-systemd-helper's `find_unit`, on the merged tree (a unit under
/// `usr/lib` is found through the `/lib` link first).
fn find_unit(tree: &Tree<'_>, unit: &str) -> Option<String> {
    if tree.has(&format!("etc/systemd/system/{unit}")) {
        Some(format!("/etc/systemd/system/{unit}"))
    } else if tree.has(&format!("usr/lib/systemd/system/{unit}")) {
        Some(format!("/lib/systemd/system/{unit}"))
    } else {
        None
    }
}

/// `get_link_closure`: (link, target) pairs, absolute paths.
fn link_closure(tree: &Tree<'_>, path: &str, visited: &mut Vec<String>) -> Vec<(String, String)> {
    let unit = path.rsplit('/').next().unwrap_or(path).to_string();
    let mut wanted = unit.clone();
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    let text = String::from_utf8_lossy(
        &tree
            .read(path.trim_start_matches('/').as_bytes())
            .unwrap_or_default(),
    )
    .into_owned();
    // A /lib path is read through the merged tree.
    let text = if text.is_empty() {
        let merged = format!("usr{path}");
        String::from_utf8_lossy(
            &tree
                .read(merged.trim_start_matches('/').as_bytes())
                .unwrap_or_default(),
        )
        .into_owned()
    } else {
        text
    };
    let unquote = |v: &str| v.trim_matches(|c| c == '\'' || c == '"').to_string();
    for line in text.lines() {
        let line = line.trim_start();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "wantedby" | "requiredby" => {
                let suffix = if key.eq_ignore_ascii_case("wantedby") {
                    "wants"
                } else {
                    "requires"
                };
                for v in value.split_whitespace() {
                    dirs.push(format!("/etc/systemd/system/{}.{suffix}/", unquote(v)));
                }
            }
            "also" => {
                for v in value.split_whitespace().map(unquote) {
                    if v != unit && !visited.contains(&v) {
                        visited.push(v.clone());
                        if let Some(p) = find_unit(tree, &v) {
                            links.extend(link_closure(tree, &p, visited));
                        }
                    }
                }
            }
            "alias" => {
                for v in value.split_whitespace().map(unquote) {
                    if v != unit {
                        links.push((format!("/etc/systemd/system/{v}"), path.to_string()));
                    }
                }
            }
            "defaultinstance" => {
                let instance = unquote(value.trim());
                if let Some((stem, ext)) = unit.rsplit_once('.') {
                    if stem.ends_with('@') {
                        wanted = format!("{stem}{instance}.{ext}");
                    }
                }
            }
            _ => {}
        }
    }
    for d in dirs {
        links.push((format!("{d}{wanted}"), path.to_string()));
    }
    links
}

/// Puts a folder (and its missing parents) with mode 0755.
fn mkdir_p(tree: &mut Tree<'_>, dir: &str) {
    let mut at = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(part);
        if !tree.has(&at) {
            tree.put(&at, Node::dir(0o755));
        }
    }
}

/// `make_sysv_links` for `defaults`: the LSB header's levels.
fn sysv_links(tree: &mut Tree<'_>, name: &str) {
    let script = format!("etc/init.d/{name}");
    let Some(text) = tree.read(script.as_bytes()) else {
        return;
    };
    let exists = (0..10)
        .map(|l| l.to_string())
        .chain(["S".to_string()])
        .any(|lvl| {
            let dir = format!("etc/rc{lvl}.d/");
            tree.nodes.keys().any(|k| {
                k.strip_prefix(dir.as_bytes())
                    .is_some_and(|rest| rest.len() > 3 && &rest[3..] == name.as_bytes())
            })
        });
    if exists {
        return;
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    let levels = |field: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter_map(|l| l.trim_start().strip_prefix(field))
            .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    for (field, prefix) in [("Default-Start:", "S"), ("Default-Stop:", "K")] {
        for lvl in levels(field) {
            mkdir_p(tree, &format!("etc/rc{lvl}.d"));
            tree.put(
                &format!("etc/rc{lvl}.d/{prefix}01{name}"),
                Node::symlink(&format!("../init.d/{name}")),
            );
        }
    }
}

/// Enables what the postinsts would.
pub(super) fn enable_services(tree: &mut Tree<'_>) {
    let mut units: BTreeSet<String> = BTreeSet::new();
    let mut sysv: BTreeSet<String> = BTreeSet::new();
    for d in tree.debs {
        for (name, _, bytes) in d.extra_members() {
            if name != "postinst" {
                continue;
            }
            let text = String::from_utf8_lossy(bytes);
            units.extend(arguments(&text, "deb-systemd-helper enable "));
            sysv.extend(
                text.lines()
                    .filter_map(|l| l.trim_start().strip_prefix("update-rc.d "))
                    .filter_map(|rest| {
                        let mut w = rest.split_whitespace();
                        let name = w.next()?;
                        (w.next() == Some("defaults")).then(|| name.to_string())
                    }),
            );
        }
    }
    if tree.has("usr/bin/deb-systemd-helper") {
        for unit in units {
            let Some(path) = find_unit(tree, &unit) else {
                continue;
            };
            let links = link_closure(tree, &path, &mut Vec::new());
            let mut also = String::new();
            for (link, target) in &links {
                let rel = link.trim_start_matches('/');
                if let Some((dir, _)) = rel.rsplit_once('/') {
                    mkdir_p(tree, dir);
                }
                tree.put(rel, Node::symlink(target));
                // The state mirrors each link as an empty file.
                let mirrored = format!("{STATE}/{}", rel.trim_start_matches("etc/systemd/system/"));
                if let Some((dir, _)) = mirrored.rsplit_once('/') {
                    mkdir_p(tree, dir);
                }
                tree.put(&mirrored, Node::file(0o644, Vec::new()));
                also.push_str(link);
                also.push('\n');
            }
            mkdir_p(tree, STATE);
            let base = unit.rsplit('/').next().unwrap_or(&unit);
            tree.put(
                &format!("{STATE}/{base}.dsh-also"),
                Node::file(0o644, also.into_bytes()),
            );
        }
    }
    if tree.has("usr/sbin/update-rc.d") {
        for name in sysv {
            sysv_links(tree, &name);
        }
    }
}
