//! The cache never hands over bytes it has not checked, and a warm build equals a
//! clean one: a `.deb` or a kept rootfs changed in `cache/` never reaches an image,
//! and every setting a rootfs step reads is in its key.

use std::io::Read;
use std::path::{Path, PathBuf};

use imgraph::manifest::lock::Lock;

use crate::support::apt_repo::{AptRepo, SUITE};
use crate::support::{hello_binary, tool, Project};

/// A `debian` image `tiny` of the local signed test archive, for amd64, with
/// `settings` (TOML lines) and `include`.
fn tiny_manifest(repo: &AptRepo, created: &str, settings: &str, include: &[&str]) -> String {
    format!(
        r#"[settings]
created = "{created}"
{settings}
[images.tiny]
dists = ["{SUITE}"]
arches = ["amd64"]
rootfs = {{ debian = {{ mirror = "{}", keyring = "{}", include = {include:?} }} }}
"#,
        repo.url(),
        repo.keyring.display(),
    )
}

/// The bytes of `path` in the layer of `out/<image>/<dist>/amd64/` (gzip or zstd).
fn layer_file(p: &Project, image: &str, dist: &str, path: &str) -> Option<Vec<u8>> {
    let dir = p.path(&format!("out/{image}/{dist}/amd64"));
    let layer = ["rootfs.tar.gz", "rootfs.tar.zst"]
        .iter()
        .map(|n| dir.join(n))
        .find(|f| f.exists())
        .expect("the layout has a layer");
    let bytes = std::fs::read(&layer).unwrap();
    let tar: Box<dyn Read> = if layer.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(bytes.as_slice()))
    } else {
        Box::new(zstd::Decoder::new(bytes.as_slice()).unwrap())
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if name.trim_start_matches("./") == path {
            let mut out = Vec::new();
            entry.read_to_end(&mut out).unwrap();
            return Some(out);
        }
    }
    None
}

/// The locked amd64 `.deb` of `name`: (sha256 hex, pool filename).
fn locked_deb(p: &Project, name: &str) -> (String, String) {
    let lock = Lock::read(&p.path("images.lock")).unwrap();
    lock.platforms
        .values()
        .flat_map(|pl| &pl.packages)
        .find(|pkg| pkg.name == name && pkg.arch == "amd64")
        .map(|pkg| (pkg.sha256.clone(), pkg.filename.clone()))
        .unwrap_or_else(|| panic!("{name} is locked"))
}

/// The real `.deb` at `real` with its README saying PWNED and a `/usr/bin/<name>`
/// script printing PWNED added, rebuilt with `dpkg-deb`.
fn tampered_deb(real: &Path, name: &str, scratch: &Path) -> Vec<u8> {
    let root = scratch.join("tampered");
    tool(
        "dpkg-deb",
        &["-R", real.to_str().unwrap(), root.to_str().unwrap()],
    );
    std::fs::write(root.join(format!("usr/share/doc/{name}/README")), "PWNED\n").unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    let script = root.join(format!("usr/bin/{name}"));
    std::fs::write(&script, "#!/bin/sh\necho PWNED\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = scratch.join("tampered.deb");
    tool(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "-b",
            root.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    std::fs::read(out).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::support::sha256(bytes)
        .trim_start_matches("sha256:")
        .to_string()
}

/// Issue 20, bug 1: a `.deb` replaced in the cache is hashed as it is read for
/// installing, dropped, fetched again from the mirror (verified), named on stderr,
/// and the good one installed.
#[test]
fn a_deb_replaced_in_the_cache_is_fetched_again_and_never_installed() {
    let repo = AptRepo::start();
    let p = Project::new();
    p.manifest(&tiny_manifest(&repo, "2026-12-01T00:00:00Z", "", &[]));
    p.imgraph(&["lock"]).success();
    p.imgraph(&["build"]).success();
    let genuine = b"mawk-tiny 1.3.4-1 for amd64\n".to_vec();
    assert_eq!(
        layer_file(&p, "tiny", SUITE, "usr/share/doc/mawk-tiny/README"),
        Some(genuine.clone())
    );

    // The cached mawk-tiny .deb becomes one whose files print PWNED.
    let (sha256, filename) = locked_deb(&p, "mawk-tiny");
    let blob = p.path(&format!("cache/blobs/sha256/{sha256}"));
    let scratch = tempfile::tempdir().unwrap();
    let bad = tampered_deb(&repo.path(&filename), "mawk-tiny", scratch.path());
    assert_ne!(sha256_hex(&bad), sha256);
    std::fs::write(&blob, &bad).unwrap();

    // Another package joins: the rootfs is installed again from the cache.
    p.manifest(&tiny_manifest(
        &repo,
        "2026-12-01T00:00:00Z",
        "",
        &["gawk-tiny"],
    ));
    p.imgraph(&["lock"]).success();
    repo.clear_requests();
    let run = p.imgraph(&["build"]).success();

    assert_eq!(
        layer_file(&p, "tiny", SUITE, "usr/share/doc/mawk-tiny/README"),
        Some(genuine),
        "the image holds the tampered .deb's files"
    );
    assert_eq!(
        layer_file(&p, "tiny", SUITE, "usr/bin/mawk-tiny"),
        None,
        "the tampered .deb's script reached the image"
    );
    assert!(
        layer_file(&p, "tiny", SUITE, "usr/share/doc/gawk-tiny/README").is_some(),
        "gawk-tiny is installed"
    );
    let run = run.stderr_has(&[
        "mawk-tiny 1.3.4-1 amd64",
        &blob.display().to_string(),
        &sha256_hex(&bad),
        "fetching it again",
    ]);
    assert!(
        repo.requests().iter().any(|r| r.ends_with(&filename)),
        "mawk-tiny was not fetched again: {:?}\n{}",
        repo.requests(),
        run.stderr
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&blob).unwrap()),
        sha256,
        "the cache holds the locked .deb again"
    );
    p.imgraph(&["cache", "verify"]).success();
}

/// The one kept `debian-*.tar` in the cache.
fn kept_debian_tar(p: &Project) -> PathBuf {
    let kept: Vec<PathBuf> = std::fs::read_dir(p.path("cache/rootfs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.to_string_lossy().ends_with(".tar"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    kept[0].clone()
}

/// Rewrites `needle` in the file at `path` with `PWNED` padded to the same length
/// (a tarball stays a valid tarball).
fn poison(path: &Path, needle: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{} holds {:?}", path.display(), needle));
    let mut pwned = b"PWNED".to_vec();
    pwned.resize(needle.len() - 1, b' ');
    pwned.push(b'\n');
    bytes[at..at + needle.len()].copy_from_slice(&pwned);
    std::fs::write(path, bytes).unwrap();
}

/// Issue 20, bug 1: the installed tarball a `debian` rootfs keeps in the cache is
/// checked against its recorded fingerprint before a layer is made from it again;
/// `cache verify` checks it too and removes a changed one.
#[test]
fn a_changed_kept_debian_rootfs_is_made_again_and_cache_verify_removes_it() {
    let repo = AptRepo::start();
    let p = Project::new();
    let readme = b"mawk-tiny 1.3.4-1 for amd64\n";
    p.manifest(&tiny_manifest(&repo, "2026-12-01T00:00:00Z", "", &[]));
    p.imgraph(&["lock"]).success();
    p.imgraph(&["build"]).success();
    let kept = kept_debian_tar(&p);
    poison(&kept, readme);

    // A layer setting changes: the rootfs step is fresh, its kept tarball is read.
    p.manifest(&tiny_manifest(
        &repo,
        "2026-12-01T00:00:00Z",
        "compression = \"zstd\"",
        &[],
    ));
    let run = p.imgraph(&["build"]).success();
    assert_eq!(
        layer_file(&p, "tiny", SUITE, "usr/share/doc/mawk-tiny/README").as_deref(),
        Some(&readme[..]),
        "a layer was made from the changed kept rootfs"
    );
    run.stderr_has(&[&kept.display().to_string(), "has changed in the cache"]);

    // cache verify names it and removes it; a second verify passes.
    poison(&kept, readme);
    p.imgraph(&["cache", "verify"])
        .code(1)
        .stderr_has(&[&kept.display().to_string(), "kept rootfs"]);
    assert!(!kept.exists(), "cache verify left the changed kept rootfs");
    p.imgraph(&["cache", "verify"]).success();
    // explain says it is gone, not "kept" as if it were there.
    let explain = p
        .imgraph(&["explain", &format!("rootfs:tiny:{SUITE}/amd64")])
        .success();
    assert!(
        format!("{}{}", explain.stdout, explain.stderr).contains("(gone: made again"),
        "{}{}",
        explain.stdout,
        explain.stderr
    );
}

/// The same for a `command` source's kept output folder.
#[test]
fn a_changed_kept_command_rootfs_is_made_again_and_cache_verify_removes_it() {
    let p = Project::new();
    let manifest = |compression: &str| {
        format!(
            "[settings]\ncreated = \"2026-12-01T00:00:00Z\"\ncompression = \"{compression}\"\n[images.cmd]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = {{ command = \"mkdir -p {{out}}/etc && cp '{}' {{out}}/hello && echo genuine-motd > {{out}}/etc/motd\" }}\n",
            hello_binary("amd64").display()
        )
    };
    p.manifest(&manifest("gzip"));
    p.imgraph(&["build"]).success();
    let motd: Vec<PathBuf> = std::fs::read_dir(p.path("cache/rootfs"))
        .unwrap()
        .map(|e| e.unwrap().path().join("etc/motd"))
        .filter(|f| f.exists())
        .collect();
    assert_eq!(motd.len(), 1, "{motd:?}");
    let motd = &motd[0];
    poison(motd, b"genuine-motd\n");

    p.manifest(&manifest("zstd"));
    let run = p.imgraph(&["build"]).success();
    assert_eq!(
        layer_file(&p, "cmd", "one", "etc/motd").as_deref(),
        Some(&b"genuine-motd\n"[..]),
        "a layer was made from the changed kept rootfs"
    );
    run.stderr_has(&["has changed in the cache"]);

    poison(motd, b"genuine-motd\n");
    p.imgraph(&["cache", "verify"])
        .code(1)
        .stderr_has(&["kept rootfs"]);
    assert!(!motd.exists(), "cache verify left the changed kept rootfs");
    p.imgraph(&["cache", "verify"]).success();
}

/// Builds `p` in its own cache (warm, after whatever changed), then in a fresh
/// cache (clean): the index digests must be the same.
#[track_caller]
fn warm_equals_clean(p: &Project, image: &str, dist: &str, what: &str) {
    p.imgraph(&["build"]).success();
    let warm = p.index_digest(image, dist);
    let clean_cache = tempfile::tempdir().unwrap();
    p.imgraph_env(
        &["build"],
        &[("IMGRAPH_CACHE", clean_cache.path().to_str().unwrap())],
    )
    .success();
    let clean = p.index_digest(image, dist);
    assert_eq!(
        warm, clean,
        "after {what}, the warm build differs from a clean one"
    );
}

/// Issue 20, bug 2: for every source kind, each setting its rootfs step reads is
/// changed in turn and the warm build compared with a clean one.
#[test]
fn a_warm_build_equals_a_clean_one_after_each_setting_of_each_source_kind() {
    // dir: created, owners, a file, compression.
    let p = Project::new();
    p.hello_rootfs("one", "amd64");
    let dir = |created: &str, owners: &str, compression: &str| {
        format!("[settings]\ncreated = \"{created}\"\ncompression = \"{compression}\"\n[images.d]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = {{ dir = \"rootfs/{{dist}}/{{arch}}\", owners = \"{owners}\" }}\n")
    };
    p.manifest(&dir("2026-12-01T00:00:00Z", "root", "gzip"));
    warm_equals_clean(&p, "d", "one", "the first build");
    p.manifest(&dir("2026-12-04T00:00:00Z", "root", "gzip"));
    warm_equals_clean(&p, "d", "one", "dir: created changed");
    p.manifest(&dir("2026-12-04T00:00:00Z", "preserve", "gzip"));
    warm_equals_clean(&p, "d", "one", "dir: owners changed");
    p.file("rootfs/one/amd64/etc/hostname", b"edited\n");
    warm_equals_clean(&p, "d", "one", "dir: a file changed");
    p.manifest(&dir("2026-12-04T00:00:00Z", "preserve", "zstd"));
    warm_equals_clean(&p, "d", "one", "dir: compression changed");

    // tar: created, the tarball.
    let p = Project::new();
    p.hello_rootfs("one", "amd64");
    let make_tar = |p: &Project| {
        tool(
            "tar",
            &[
                "-C",
                p.path("rootfs/one/amd64").to_str().unwrap(),
                "-cf",
                p.path("rootfs.tar").to_str().unwrap(),
                ".",
            ],
        );
    };
    make_tar(&p);
    let tar = |created: &str| {
        format!("[settings]\ncreated = \"{created}\"\n[images.t]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = {{ tar = \"rootfs.tar\" }}\n")
    };
    p.manifest(&tar("2026-12-01T00:00:00Z"));
    warm_equals_clean(&p, "t", "one", "the first build");
    p.manifest(&tar("2026-12-04T00:00:00Z"));
    warm_equals_clean(&p, "t", "one", "tar: created changed");
    p.file("rootfs/one/amd64/etc/hostname", b"edited\n");
    make_tar(&p);
    warm_equals_clean(&p, "t", "one", "tar: the tarball changed");

    // command: created (SOURCE_DATE_EPOCH), an input, the command, {out}.tar.
    let p = Project::new();
    p.executable(
        "mk",
        format!(
            "#!/bin/sh\nset -e\nmkdir -p \"$1/etc\"\ncp '{}' \"$1/hello\"\ncat motd > \"$1/etc/motd\"\necho \"$SOURCE_DATE_EPOCH $2\" > \"$1/etc/built\"\nif [ -n \"$3\" ]; then tar -C \"$1\" -cf \"$3\" . && rm -r \"$1\"; fi\n",
            hello_binary("amd64").display()
        )
        .as_bytes(),
    );
    p.file("motd", b"one\n");
    let command = |created: &str, command: &str| {
        format!("[settings]\ncreated = \"{created}\"\n[images.c]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = {{ command = \"{command}\", inputs = [\"mk\", \"motd\"] }}\n")
    };
    p.manifest(&command("2026-12-01T00:00:00Z", "./mk {out} a"));
    warm_equals_clean(&p, "c", "one", "the first build");
    p.manifest(&command("2026-12-04T00:00:00Z", "./mk {out} a"));
    warm_equals_clean(&p, "c", "one", "command: created changed");
    p.file("motd", b"two\n");
    warm_equals_clean(&p, "c", "one", "command: an input changed");
    p.manifest(&command("2026-12-04T00:00:00Z", "./mk {out} b"));
    warm_equals_clean(&p, "c", "one", "command: the command changed");
    p.manifest(&command(
        "2026-12-04T00:00:00Z",
        "mkdir -p {out} && ./mk {out} b {out}.tar",
    ));
    warm_equals_clean(&p, "c", "one", "command: it writes {out}.tar");
    p.manifest(&command(
        "2026-12-05T00:00:00Z",
        "mkdir -p {out} && ./mk {out} b {out}.tar",
    ));
    warm_equals_clean(&p, "c", "one", "command ({out}.tar): created changed");

    // debian: created, include (and the lock).
    let repo = AptRepo::start();
    let p = Project::new();
    p.manifest(&tiny_manifest(&repo, "2026-12-01T00:00:00Z", "", &[]));
    p.imgraph(&["lock"]).success();
    warm_equals_clean(&p, "tiny", SUITE, "the first build");
    p.manifest(&tiny_manifest(&repo, "2026-12-04T00:00:00Z", "", &[]));
    warm_equals_clean(&p, "tiny", SUITE, "debian: created changed");
    p.manifest(&tiny_manifest(
        &repo,
        "2026-12-04T00:00:00Z",
        "",
        &["gawk-tiny"],
    ));
    p.imgraph(&["lock"]).success();
    warm_equals_clean(&p, "tiny", SUITE, "debian: include changed");
    p.manifest(&tiny_manifest(
        &repo,
        "2026-12-01T00:00:00Z",
        "",
        &["gawk-tiny"],
    ));
    warm_equals_clean(&p, "tiny", SUITE, "debian: created changed back");
}
