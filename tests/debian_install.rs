//! `imgraph::debian::install` against the real thing: bookworm minbase locked
//! with `imgraph lock` from the live mirror (deb.debian.org, reached in CI),
//! fetched into the cache and installed without dpkg, compared with a real
//! `mmdebstrap --variant=minbase` tarball, then used: a shell, dpkg and apt
//! run inside it (chroot, as root), and a foreign arch runs under qemu-user.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use imgraph::cache::Store;
use imgraph::debian::debs::{fetch_debs, MirrorSet};
use imgraph::debian::install::install;
use imgraph::manifest::lock::Lock;

use crate::support::tool;

const MIRROR: &str = "http://deb.debian.org/debian";
/// 2024-01-01T00:00:00Z.
const CREATED: u64 = 1_704_067_200;

/// Paths that differ between mmdebstrap's tree and ours, each for a documented
/// reason: files only maintainer scripts, the bootstrap itself or dpkg's
/// bookkeeping write, which imgraph deliberately leaves out.
const ONLY_MMDEBSTRAP: &[&str] = &[
    // Device nodes: the container runtime mounts /dev.
    "dev/console",
    "dev/fd",
    "dev/full",
    "dev/null",
    "dev/ptmx",
    "dev/pts",
    "dev/random",
    "dev/shm",
    "dev/stderr",
    "dev/stdin",
    "dev/stdout",
    "dev/tty",
    "dev/urandom",
    "dev/zero",
    // Host files and mmdebstrap's own setup.
    "etc/hostname",
    "etc/resolv.conf",
    "etc/apt/sources.list",
    "etc/fstab",
    // Backups, locks, caches and logs of the tools that ran.
    "etc/.pwd.lock",
    "etc/group-",
    "etc/passwd-",
    "etc/ld.so.cache",
    "var/cache/apt/archives/lock",
    "var/cache/debconf/config.dat",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/passwords.dat",
    "var/cache/debconf/templates.dat",
    "var/cache/debconf/templates.dat-old",
    "var/lib/apt/extended_states",
    "var/lib/apt/lists/lock",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/status-old",
    "var/lib/shells.state",
    "var/log/btmp",
    "var/log/faillog",
    "var/log/lastlog",
    "var/log/wtmp",
];

/// Paths in both trees that legitimately differ: `shadow`'s last-change day is
/// `created`'s (mmdebstrap's is the day it ran).
const DIFFERENT_CONTENT: &[&str] = &["etc/shadow"];

/// Locks `dist` minbase for `arches` in a temp project; the lock read back.
fn lock(dist: &str, arches: &str) -> (crate::support::Project, Lock) {
    let p = crate::support::Project::new();
    p.manifest(&format!(
        "[images.minideb]\ndists = [\"{dist}\"]\narches = [{arches}]\nrootfs = {{ debian = {{ variant = \"minbase\" }} }}\n"
    ));
    p.imgraph(&["lock"]).success();
    let lock = Lock::read(&p.path("images.lock")).unwrap();
    (p, lock)
}

/// Fetches and installs platform `label` into `out`.
fn build(lock: &Lock, label: &str, debian_arch: &str, cache: &Path, out: &Path) -> usize {
    let packages = &lock.platforms[label].packages;
    let store = Store::open(cache).unwrap();
    let fetched = fetch_debs(packages, &MirrorSet::new(), &store, 4).unwrap();
    let debs: Vec<_> = packages
        .iter()
        .cloned()
        .zip(fetched.blobs.iter().map(|b| store.blob_path(&b.digest)))
        .collect();
    let started = std::time::Instant::now();
    let installed = install(&debs, debian_arch, CREATED, &store.tmp_dir(), out).unwrap();
    eprintln!(
        "install {label}: {} packages, {} entries in {:?}",
        installed.packages,
        installed.entries,
        started.elapsed()
    );
    assert_eq!(installed.packages, packages.len());
    packages.len()
}

/// Every entry of a tarball: normalised path -> (type, link target, content).
/// One tar entry as compared: type, link target, content, (mode, uid, gid).
type TarItem = (char, String, Vec<u8>, (u32, u64, u64));

fn read_tar(path: &Path) -> BTreeMap<String, TarItem> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let kind = entry.header().entry_type();
        let t = match kind {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => 'f',
        };
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let h = entry.header();
        let meta = (
            h.mode().unwrap() & 0o7777,
            h.uid().unwrap(),
            h.gid().unwrap(),
        );
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        if t == 'h' {
            // Which name of a hard-linked pair is the link is the tar writer's
            // choice: compare as a file with the target's bytes.
            let target = link.trim_start_matches("./").to_string();
            let (_, _, bytes, _): &TarItem = &out[&target];
            out.insert(name, ('f', String::new(), bytes.clone(), meta));
            continue;
        }
        out.insert(name, (t, link, content, meta));
    }
    out
}

fn unpack(tarball: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let st = Command::new("tar")
        .args(["-xpf"])
        .arg(tarball)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

fn chroot(root: &Path, script: &str) -> (bool, String) {
    let out = Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn bookworm_minbase_amd64_matches_mmdebstrap_and_works() {
    tool("mmdebstrap", &["--version"]);
    let (_p, lock) = lock("bookworm", "\"amd64\"");
    let work = tempfile::tempdir().unwrap();
    let ours = work.path().join("ours.tar");
    let count = build(
        &lock,
        "minideb:bookworm/amd64",
        "amd64",
        &work.path().join("cache"),
        &ours,
    );

    let theirs = work.path().join("mm.tar");
    let st = Command::new("mmdebstrap")
        .args(["--quiet", "--variant=minbase", "--arch=amd64", "bookworm"])
        .arg(&theirs)
        .arg(MIRROR)
        .status()
        .unwrap();
    assert!(st.success(), "mmdebstrap");

    let a = read_tar(&ours);
    let b = read_tar(&theirs);
    let only_ours: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_theirs: BTreeSet<&str> = b
        .keys()
        .filter(|k| !a.contains_key(*k))
        .map(String::as_str)
        .collect();
    let mut content = Vec::new();
    let mut meta = Vec::new();
    for (k, (t, l, c, m)) in &a {
        if let Some((t2, l2, c2, m2)) = b.get(k) {
            if m != m2 && *t != 'l' {
                meta.push(format!(
                    "{k} {:o}:{}:{} vs {:o}:{}:{}",
                    m.0, m.1, m.2, m2.0, m2.1, m2.2
                ));
            }
            // Byte for byte, dpkg's database too: `status` (blanks inside a
            // Description kept) and every `info/*.list` in data.tar's order.
            let same = c == c2;
            if t != t2 || l != l2 || (*t == 'f' && !same) {
                content.push(k.clone());
            }
        }
    }
    for k in &content {
        // The first differing lines, to say why.
        let (x, y) = (&a[k].2, &b[k].2);
        let (x, y) = (String::from_utf8_lossy(x), String::from_utf8_lossy(y));
        let diff: Vec<(&str, &str)> = x
            .lines()
            .zip(y.lines())
            .filter(|(l, r)| l != r)
            .take(3)
            .collect();
        eprintln!("{k}: {diff:?}");
    }
    eprintln!("only ours: {only_ours:?}\nonly mmdebstrap: {only_theirs:?}\ndiffer: {content:?}");
    assert!(only_ours.is_empty(), "only in ours: {only_ours:?}");
    let documented: BTreeSet<&str> = ONLY_MMDEBSTRAP.iter().copied().collect();
    assert_eq!(only_theirs, documented);
    assert_eq!(content, DIFFERENT_CONTENT);
    // The database files this test once compared loosely, checked by name: the
    // status and each package's list are there and identical.
    let lists = a
        .keys()
        .filter(|k| k.starts_with("var/lib/dpkg/info/") && k.ends_with(".list"))
        .count();
    assert_eq!(lists, count, "one info/*.list per package");
    for k in a
        .keys()
        .filter(|k| *k == "var/lib/dpkg/status" || k.ends_with(".list"))
    {
        assert!(a[k].2 == b[k].2, "{k} differs from dpkg's");
    }
    assert!(meta.is_empty(), "mode/uid/gid differ: {meta:?}");

    // It works: a shell, dpkg's database, apt.
    let root = work.path().join("root");
    unpack(&ours, &root);
    let (ok, out) = chroot(&root, "echo ok");
    assert!(ok && out == "ok\n", "{out}");
    let (ok, out) = chroot(&root, "dpkg -l | grep -c '^ii '");
    assert!(ok, "{out}");
    assert_eq!(out.trim(), count.to_string(), "dpkg -l lists every package");
    let (ok, out) = chroot(&root, "dpkg --audit");
    assert!(ok && out.is_empty(), "dpkg --audit: {out}");
    let (ok, out) = chroot(&root, "apt-get --version");
    assert!(ok && out.starts_with("apt "), "{out}");

    // The database is consistent enough for dpkg to install a package on top.
    let pkg = work.path().join("hello");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/share/hello")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: hello-imgraph\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@imgraph.invalid>\nDepends: libc6, dash\nDescription: test\n",
    )
    .unwrap();
    std::fs::write(pkg.join("usr/share/hello/hi"), "hi\n").unwrap();
    let st = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&pkg)
        .arg(root.join("tmp/hello.deb"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let (ok, out) = chroot(
        &root,
        "dpkg -i /tmp/hello.deb && dpkg -s hello-imgraph && dpkg --audit",
    );
    assert!(ok && out.contains("Status: install ok installed"), "{out}");
}

#[test]
fn bookworm_minbase_of_every_foreign_arch_runs_dpkg_under_qemu_user() {
    // (bashbrew arch, Debian arch, qemu-user binary): no binfmt_misc involved.
    let arches = [
        ("arm64v8", "arm64", "qemu-aarch64-static"),
        ("arm32v7", "armhf", "qemu-arm-static"),
        ("i386", "i386", "qemu-i386-static"),
        ("ppc64le", "ppc64el", "qemu-ppc64le-static"),
        ("s390x", "s390x", "qemu-s390x-static"),
    ];
    let list: Vec<String> = arches.iter().map(|(a, _, _)| format!("{a:?}")).collect();
    let (_p, lock) = lock("bookworm", &list.join(", "));
    let work = tempfile::tempdir().unwrap();
    for (arch, debian_arch, qemu) in arches {
        tool(qemu, &["--version"]);
        let ours = work.path().join(format!("{arch}.tar"));
        build(
            &lock,
            &format!("minideb:bookworm/{arch}"),
            debian_arch,
            &work.path().join("cache"),
            &ours,
        );
        let root: PathBuf = work.path().join(arch);
        unpack(&ours, &root);
        let run = |loader: Option<&std::path::Path>| {
            let mut cmd = Command::new(qemu);
            cmd.arg("-L").arg(&root);
            cmd.args(loader);
            cmd.arg(root.join("usr/bin/dpkg")).arg("--version");
            cmd.output().unwrap()
        };
        let mut out = run(None);
        if !out.status.success() {
            // ppc64el's /lib64/ld64.so.2 is an absolute symlink (as in every Debian
            // ppc64el system), which qemu-user's -L follows on the host: start the
            // image's own loader instead.
            let loader = std::fs::read_dir(root.join("usr/lib"))
                .unwrap()
                .flatten()
                .filter(|d| d.path().is_dir())
                .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
                .map(|e| e.path())
                .find(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    name.starts_with("ld")
                        && name.contains(".so")
                        && p.is_file()
                        && !p.symlink_metadata().unwrap().file_type().is_symlink()
                })
                .unwrap_or_else(|| panic!("{arch}: no dynamic loader in usr/lib/*/"));
            out = run(Some(&loader));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{arch}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.starts_with("Debian 'dpkg' package management program version 1.21"),
            "{arch}: {text}"
        );
        assert!(text.contains(&format!("({debian_arch})")), "{arch}: {text}");
        assert_eq!(
            std::fs::read_to_string(root.join("var/lib/dpkg/arch")).unwrap(),
            format!("{debian_arch}\n")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}

#[test]
fn trixie_minbase_amd64_works() {
    let (_p, lock) = lock("trixie", "\"amd64\"");
    let work = tempfile::tempdir().unwrap();
    let ours = work.path().join("trixie.tar");
    let count = build(
        &lock,
        "minideb:trixie/amd64",
        "amd64",
        &work.path().join("cache"),
        &ours,
    );
    let root = work.path().join("root");
    unpack(&ours, &root);
    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    let (ok, out) = chroot(&root, "echo ok");
    assert!(ok && out == "ok\n", "{out}");
    let (ok, out) = chroot(&root, "dpkg -l | grep -c '^ii '");
    assert!(ok, "{out}");
    assert_eq!(out.trim(), count.to_string(), "dpkg -l lists every package");
    let (ok, out) = chroot(
        &root,
        "dpkg --audit && apt-get --version && awk 'BEGIN{print 1+1}'",
    );
    assert!(ok && out.contains("apt ") && out.ends_with("2\n"), "{out}");
    // pam-auth-update's stack: su passes PAM.
    let (ok, out) = chroot(&root, "su -s /bin/sh nobody -c 'id -un'");
    assert!(ok && out == "nobody\n", "{out}");
}
