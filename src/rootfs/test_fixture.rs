//! A small rootfs with every kind of entry, shared by the tests of the rootfs and oci
//! modules.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// A name long enough (> 100 bytes with its directory) to need a GNU long-name member.
pub(crate) const LONG_DIR: &str =
    "usr/share/a-directory-with-a-rather-long-name-to-push-paths-past-one-hundred-bytes";
pub(crate) const LONG_FILE: &str = "and-a-file-with-a-long-name-too.txt";

/// Fills `root` with: nested dirs, files, an empty file, a setuid file, an absolute and a
/// relative symlink, a symlink with a > 100 byte target, a hard link, a long path, a fifo
/// and a fake x86-64 ELF binary. Every mtime is set to `mtime` (seconds).
pub(crate) fn make_rootfs(root: &Path, mtime: i64) {
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join(LONG_DIR)).unwrap();
    fs::create_dir_all(root.join("var/empty")).unwrap();
    fs::write(root.join("etc/hostname"), "imgraph\n").unwrap();
    fs::write(root.join("etc/os-release"), "ID=debian\n".repeat(50)).unwrap();
    fs::write(root.join("etc/empty"), "").unwrap();
    let mut elf = vec![0u8; 4096];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[18..20].copy_from_slice(&62u16.to_le_bytes());
    fs::write(root.join("usr/bin/tool"), &elf).unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("usr/bin/su"), "setuid").unwrap();
    fs::set_permissions(root.join("usr/bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(root.join("var/empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).unwrap();
    symlink("/etc/hostname", root.join("etc/abs-link")).unwrap();
    symlink("../etc/hostname", root.join("usr/rel-link")).unwrap();
    symlink(
        format!("/{LONG_DIR}/{LONG_FILE}"),
        root.join("usr/long-link"),
    )
    .unwrap();
    fs::write(root.join(LONG_DIR).join(LONG_FILE), "long\n").unwrap();
    let status = Command::new("mkfifo")
        .arg(root.join("var/fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    set_all_mtimes(root, mtime);
}

/// Sets the mtime of every entry below `root` (symlinks themselves included).
pub(crate) fn set_all_mtimes(root: &Path, mtime: i64) {
    let status = Command::new("find")
        .arg(root)
        .args(["-mindepth", "1", "-exec", "touch", "-h", "-d"])
        .arg(format!("@{mtime}"))
        .args(["{}", "+"])
        .status()
        .unwrap();
    assert!(status.success());
}
