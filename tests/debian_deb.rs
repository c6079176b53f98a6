//! `imgraph::debian::deb` against the real thing: packages built by `dpkg-deb
//! --build` with every compression it writes, read in process and compared entry by
//! entry with what `dpkg-deb -c` lists and `dpkg-deb -x` extracts; and a real
//! `base-files` from the live mirror (deb.debian.org, reached in CI). Hostile
//! hand-built `.deb`s are unit tests in src/debian/deb.rs (dpkg-deb refuses to build
//! them).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use imgraph::debian::deb::Deb;
use imgraph::rootfs::EntryKind;

use crate::support::live_debian::{bookworm_records, download, MIRROR};
use crate::support::tool;

/// One line of `dpkg-deb -c`: the `ls`-style mode string, numeric owner/group, size, date and
/// time (UTC), path without the leading `./` and trailing `/`, and the link target
/// (`->` for symlinks, `link to` for hard links).
#[derive(Debug)]
struct Listed {
    mode: String,
    owner: String,
    size: u64,
    when: String,
    link: Option<String>,
}

/// `dpkg-deb -c` is `tar -tv` of `dpkg-deb --fsys-tarfile`; run that with
/// `--numeric-owner` to compare numeric owners (base-files has `root/staff`).
fn dpkg_deb_listing(deb: &Path) -> BTreeMap<String, Listed> {
    let out = Command::new("sh")
        .env("TZ", "UTC")
        .arg("-c")
        .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -tv --numeric-owner -f -")
        .arg("sh")
        .arg(deb)
        .output()
        .expect("dpkg-deb and tar run");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let clean = |p: &str| p.trim_start_matches("./").trim_end_matches('/').to_string();
        let link = match &f[6..] {
            [] => None,
            ["->", target] => Some(target.to_string()),
            ["link", "to", target] => Some(clean(target)),
            other => panic!("unexpected dpkg-deb -c line {line:?} ({other:?})"),
        };
        map.insert(
            clean(f[5]),
            Listed {
                mode: f[0].to_string(),
                owner: f[1].to_string(),
                size: f[2].parse().unwrap(),
                when: format!("{}T{}", f[3], f[4]),
                link,
            },
        );
    }
    map
}

/// `ls -l`'s mode string for an entry.
fn ls_mode(kind: &EntryKind, mode: u32) -> String {
    let mut s = String::from(match kind {
        EntryKind::File => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink { .. } => 'l',
        EntryKind::Hardlink { .. } => 'h',
        EntryKind::CharDevice { .. } => 'c',
        EntryKind::BlockDevice { .. } => 'b',
        EntryKind::Fifo => 'p',
    });
    for (shift, special, set, unset) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Checks every entry of `deb` against `dpkg-deb -c` and every regular file's bytes
/// against `dpkg-deb -x`; returns the number of lines `dpkg-deb -c` prints.
fn assert_reads_like_dpkg_deb(deb_path: &Path, deb: &Deb, scratch: &Path) -> usize {
    let listing = dpkg_deb_listing(deb_path);
    assert_control_like_dpkg_deb(deb_path, deb, scratch);
    let extracted = scratch.join("x");
    let _ = std::fs::remove_dir_all(&extracted);
    tool(
        "dpkg-deb",
        &[
            "-x",
            deb_path.to_str().unwrap(),
            extracted.to_str().unwrap(),
        ],
    );
    let ours: Vec<String> = deb
        .entries()
        .iter()
        .map(|e| e.entry.display_path())
        .collect();
    // The archive's `./` is the image root, not an entry of the layer.
    let theirs: Vec<&String> = listing.keys().filter(|p| !p.is_empty()).collect();
    assert_eq!(ours.iter().collect::<Vec<_>>(), theirs);
    for e in deb.entries() {
        let path = e.entry.display_path();
        let l = &listing[&path];
        assert_eq!(
            l.owner,
            format!("{}/{}", e.entry.uid, e.entry.gid),
            "{path}"
        );
        let when = humantime::format_rfc3339_seconds(
            SystemTime::UNIX_EPOCH + Duration::from_secs(e.entry.mtime as u64),
        )
        .to_string();
        assert_eq!(when[..16], l.when, "{path}");
        let mode = ls_mode(&e.entry.kind, e.entry.mode);
        match &e.entry.kind {
            EntryKind::Hardlink { target } => {
                // dpkg-deb lists the group in archive order, imgraph in sorted order
                // (first name holds the content): either way the two are linked.
                let target = String::from_utf8(target.clone()).unwrap();
                let linked = l.link.as_deref() == Some(&target)
                    || listing[&target].link.as_deref() == Some(&path);
                assert!(linked, "{path} => {target}: {l:?}");
                assert_eq!(mode[1..], l.mode[1..], "{path}");
            }
            EntryKind::File => {
                assert_eq!(mode[1..], l.mode[1..], "{path}");
                let mut bytes = Vec::new();
                deb.content(e).read_to_end(&mut bytes).unwrap();
                assert_eq!(bytes.len() as u64, e.entry.size, "{path}");
                assert_eq!(
                    bytes,
                    std::fs::read(extracted.join(&path)).unwrap(),
                    "{path}"
                );
                if l.link.is_none() {
                    assert_eq!(l.size, e.entry.size, "{path}");
                }
            }
            EntryKind::Symlink { target } => {
                assert_eq!(mode, l.mode, "{path}");
                assert_eq!(l.link.as_deref().map(str::as_bytes), Some(&target[..]));
            }
            _ => assert_eq!(mode, l.mode, "{path}"),
        }
    }
    let listed = tool("dpkg-deb", &["-c", deb_path.to_str().unwrap()]);
    assert_eq!(listed.lines().count(), listing.len());
    listing.len()
}

/// The control members `dpkg-deb -e` extracts: the same names, and `md5sums` and
/// `conffiles` byte for byte.
fn assert_control_like_dpkg_deb(deb_path: &Path, deb: &Deb, scratch: &Path) {
    let control = scratch.join("control");
    let _ = std::fs::remove_dir_all(&control);
    tool(
        "dpkg-deb",
        &["-e", deb_path.to_str().unwrap(), control.to_str().unwrap()],
    );
    let mut names: Vec<String> = std::fs::read_dir(&control)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(deb.control_members(), names);
    let read = |name: &str| std::fs::read(control.join(name)).ok();
    assert_eq!(deb.md5sums().map(<[u8]>::to_vec), read("md5sums"));
    assert_eq!(deb.conffiles().map(<[u8]>::to_vec), read("conffiles"));
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn dpkg_deb_built_packages_read_in_process_like_dpkg_deb_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write(
        &tree.join("DEBIAN/control"),
        "Package: p1test\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@imgraph.invalid>\nDescription: a test\n two lines\n",
        0o644,
    );
    write(&tree.join("DEBIAN/conffiles"), "/etc/p1test.conf\n", 0o644);
    write(&tree.join("DEBIAN/postinst"), "#!/bin/sh\nexit 0\n", 0o755);
    write(&tree.join("etc/p1test.conf"), "setting = 1\n", 0o644);
    write(&tree.join("usr/bin/tool"), "#!/bin/sh\necho tool\n", 0o755);
    let out = Command::new("md5sum")
        .arg("usr/bin/tool")
        .current_dir(&tree)
        .output()
        .unwrap();
    assert!(out.status.success());
    let md5sums = String::from_utf8(out.stdout).unwrap();
    write(&tree.join("DEBIAN/md5sums"), &md5sums, 0o644);
    std::fs::hard_link(tree.join("usr/bin/tool"), tree.join("usr/bin/tool-again")).unwrap();
    write(&tree.join("usr/bin/suid"), "x", 0o4755);
    write(&tree.join("usr/lib/p1test/private"), "secret\n", 0o600);
    std::fs::set_permissions(
        tree.join("usr/lib/p1test"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::symlink("../bin/tool", tree.join("usr/lib/rel")).unwrap();
    std::os::unix::fs::symlink("/etc/p1test.conf", tree.join("usr/lib/abs")).unwrap();

    for z in ["xz", "zstd", "gzip", "none"] {
        let deb_path = dir.path().join(format!("p1test-{z}.deb"));
        tool(
            "dpkg-deb",
            &[
                "--root-owner-group",
                &format!("-Z{z}"),
                "--build",
                tree.to_str().unwrap(),
                deb_path.to_str().unwrap(),
            ],
        );
        let members = tool("ar", &["t", deb_path.to_str().unwrap()]);
        let suffix = match z {
            "xz" => ".xz",
            "zstd" => ".zst",
            "gzip" => ".gz",
            _ => "",
        };
        assert!(
            members.contains(&format!("data.tar{suffix}\n")),
            "{members}"
        );

        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let deb = Deb::open(&deb_path, &tmp).unwrap_or_else(|e| panic!("{z}: {e}"));
        assert_eq!(deb.control().get("Package"), Some("p1test"));
        assert_eq!(deb.control().get("Description"), Some("a test\ntwo lines"));
        assert_eq!(deb.conffiles(), Some(&b"/etc/p1test.conf\n"[..]));
        assert_eq!(deb.md5sums(), Some(md5sums.as_bytes()));
        assert_eq!(
            deb.control_members(),
            ["conffiles", "control", "md5sums", "postinst"]
        );
        let lines = assert_reads_like_dpkg_deb(&deb_path, &deb, dir.path());
        assert_eq!(deb.entries().len() + 1, lines, "{z}");

        let find = |p: &str| {
            &deb.entries()
                .iter()
                .find(|e| e.entry.path == p.as_bytes())
                .unwrap_or_else(|| panic!("{z}: no {p}"))
                .entry
        };
        // `--root-owner-group`: everything is 0:0.
        assert!(deb
            .entries()
            .iter()
            .all(|e| (e.entry.uid, e.entry.gid) == (0, 0)));
        assert_eq!(find("usr/bin/suid").mode, 0o4755);
        assert_eq!(find("usr/lib/p1test").mode, 0o750);
        assert_eq!(find("usr/lib/p1test/private").mode, 0o600);
        assert_eq!(find("usr/bin/tool").kind, EntryKind::File);
        assert_eq!(
            find("usr/bin/tool-again").kind,
            EntryKind::Hardlink {
                target: b"usr/bin/tool".to_vec()
            }
        );
        assert_eq!(
            find("usr/lib/rel").kind,
            EntryKind::Symlink {
                target: b"../bin/tool".to_vec()
            }
        );
        // Contents are spooled into an unlinked file: nothing is left in the temp dir.
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }
}

#[test]
fn live_bookworm_base_files_reads_like_dpkg_deb_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let records = bookworm_records("amd64", dir.path());
    let record = records
        .iter()
        .find(|r| r.name == "base-files")
        .expect("bookworm has base-files");
    let deb_path = dir.path().join("base-files.deb");
    download(&format!("{MIRROR}/{}", record.filename), &deb_path);
    let sha = tool("sha256sum", &[deb_path.to_str().unwrap()]);
    assert_eq!(sha.split_whitespace().next(), Some(record.sha256.as_str()));

    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let deb = Deb::open(&deb_path, &tmp).unwrap();
    assert_eq!(deb.control().get("Package"), Some("base-files"));
    assert_eq!(
        deb.control().get("Version"),
        Some(record.version.to_string().as_str())
    );
    assert!(deb.conffiles().is_some());
    assert!(deb.control_members().iter().any(|m| m == "postinst"));
    let lines = assert_reads_like_dpkg_deb(&deb_path, &deb, dir.path());
    // `dpkg-deb -c` also lists the archive's `./`, which is the root, not an entry.
    assert_eq!(deb.entries().len() + 1, lines);
    assert!(lines > 50, "{lines} lines");
}
