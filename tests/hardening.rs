//! Hardening: killed builds, corrupt and concurrent caches, full disks, registry
//! faults, hostile tarballs.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::fault_proxy::{Fault, FaultProxy};
use crate::support::registry::{Auth, RegistryGuard};
use crate::support::{remote_digest, sha256, tool, Project};

/// Pseudo-random bytes that compress a little (so gzip has real work to do).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 3 == 0 {
                b'a'
            } else {
                x as u8
            }
        })
        .collect()
}

fn heavy_project() -> Project {
    let p = Project::hello(&["amd64", "arm64v8", "s390x"]);
    for (i, arch) in ["amd64", "arm64v8", "s390x"].iter().enumerate() {
        p.file(
            &format!("rootfs/one/{arch}/data/blob"),
            &noise(12 << 20, i as u64 + 7),
        );
    }
    p
}

#[test]
fn kill_9_at_any_moment_then_a_rebuild_is_identical_to_a_clean_build() {
    let clean = heavy_project();
    clean.imgraph(&["build"]).success();
    let expected = clean.index_digest("hello", "one");

    let p = heavy_project();
    for delay_ms in [30, 120, 300, 700, 1200] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imgraph"))
            .args(["build", "-q"])
            .current_dir(p.root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Every entry must still point at complete, correct blobs.
        p.imgraph(&["cache", "verify"]).success();
    }
    p.imgraph(&["build"]).success();
    assert_eq!(p.index_digest("hello", "one"), expected);
    for arch in ["amd64", "arm64v8", "s390x"] {
        let f = format!("out/hello/one/{arch}/rootfs.tar.gz");
        assert_eq!(
            std::fs::read(p.path(&f)).unwrap(),
            std::fs::read(clean.path(&f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(
        std::fs::read_dir(p.path("cache/tmp")).unwrap().count(),
        0,
        "temp files left behind"
    );
    for shard in std::fs::read_dir(p.path("cache/actions"))
        .unwrap()
        .flatten()
    {
        for entry in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                name.ends_with(".json") && !name.starts_with('.'),
                "stray file among entries: {name}"
            );
        }
    }
}

fn layer_blob(p: &Project, arch: &str) -> std::path::PathBuf {
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.path(&format!("out/hello/one/{arch}/image-manifest.json"))).unwrap(),
    )
    .unwrap();
    let digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    p.path(&format!("cache/blobs/sha256/{digest}"))
}

fn flip_a_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupt_cache_blob_is_detected_dropped_and_rebuilt() {
    let p = Project::hello(&["amd64", "arm64v8"]);
    p.imgraph(&["build"]).success();
    let good = std::fs::read(p.path("out/hello/one/amd64/rootfs.tar.gz")).unwrap();
    let blob = layer_blob(&p, "amd64");
    let digest = format!("sha256:{}", blob.file_name().unwrap().to_str().unwrap());
    flip_a_byte(&blob);
    std::fs::remove_dir_all(p.path("out")).unwrap(); // the export must read the blob
    p.imgraph(&["build"])
        .success()
        .stderr_has(&["corrupt", &digest]);
    assert_eq!(
        std::fs::read(p.path("out/hello/one/amd64/rootfs.tar.gz")).unwrap(),
        good
    );
    assert_eq!(
        sha256(&std::fs::read(&blob).unwrap()),
        digest,
        "the blob was rebuilt"
    );

    // `cache verify` finds it too, names it, drops it; the next verify is clean.
    flip_a_byte(&blob);
    p.imgraph(&["cache", "verify"])
        .code(1)
        .stderr_has(&[&digest]);
    p.imgraph(&["cache", "verify"]).success();
    p.imgraph(&["build"]).success();
    assert_eq!(
        std::fs::read(p.path("out/hello/one/amd64/rootfs.tar.gz")).unwrap(),
        good
    );
}

#[test]
fn a_corrupt_blob_is_never_pushed() {
    let reg = RegistryGuard::start(Auth::None);
    let p = Project::hello(&["amd64"]);
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&format!(
        "[registries.local]\nurl = \"{}/t\"\ninsecure = true\n\n{}",
        reg.url(),
        text.replace("[images.hello]", "[images.hello]\nregistries = [\"local\"]")
    ));
    p.imgraph(&["build"]).success();
    flip_a_byte(&layer_blob(&p, "amd64"));
    p.imgraph(&["build", "--push"])
        .success()
        .stderr_has(&["corrupt"]);
    assert_eq!(
        remote_digest(&format!("{}/t/hello:one", reg.url())),
        p.index_digest("hello", "one")
    );
    let copy = tempfile::tempdir().unwrap();
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/t/hello:one", reg.url()),
            &format!("oci:{}:x", copy.path().display()),
        ],
    );
}

/// Pushes to two registries stream each blob to both at once and share one
/// hash of it: a corrupt blob must still reach neither.
#[test]
fn a_corrupt_blob_reaches_neither_of_two_registries() {
    let regs = [
        RegistryGuard::start(Auth::None),
        RegistryGuard::start(Auth::None),
    ];
    let p = Project::hello(&["amd64"]);
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&format!(
        "[registries.a]\nurl = \"{}/t\"\ninsecure = true\n\n[registries.b]\nurl = \"{}/t\"\ninsecure = true\n\n{}",
        regs[0].url(),
        regs[1].url(),
        text.replace("[images.hello]", "[images.hello]\nregistries = [\"a\", \"b\"]")
    ));
    p.imgraph(&["build"]).success();
    let blob = layer_blob(&p, "amd64");
    let hex = blob.file_name().unwrap().to_str().unwrap().to_owned();
    flip_a_byte(&blob);
    p.imgraph(&["build", "--push"])
        .success()
        .stderr_has(&["corrupt"]);
    for reg in &regs {
        assert_eq!(
            remote_digest(&format!("{}/t/hello:one", reg.url())),
            p.index_digest("hello", "one")
        );
        // The layer went up once, rebuilt: one committing PUT, none of the corrupt bytes.
        let commits = reg
            .request_log()
            .into_iter()
            .filter(|e| e.method == "PUT" && e.status == 201 && e.path.contains(&hex))
            .count();
        assert_eq!(commits, 1, "{}", reg.url());
    }
}

#[test]
fn two_builds_at_once_on_one_cache_both_succeed_identically() {
    let p = heavy_project();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_imgraph"))
            .args(["build", "--json"])
            .current_dir(p.root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let executed = |o: &std::process::Output| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["executed"].as_array().unwrap().len()
    };
    // The cache lock serialises them: one builds, the other finds it all cached.
    assert_eq!(
        executed(&a) + executed(&b),
        3 * 6 + 2,
        "work done twice or lost"
    );
    p.imgraph(&["cache", "verify"]).success();
    assert!(p.dirty().is_empty());
}

#[test]
fn cache_gc_frees_what_is_no_longer_needed_and_keeps_the_last_build() {
    let p = Project::hello(&["amd64", "arm64v8"]);
    p.file("rootfs/one/amd64/data", &noise(1 << 20, 3));
    p.imgraph(&["build"]).success();
    let old_layer = layer_blob(&p, "amd64");
    p.file("rootfs/one/amd64/data", &noise(1 << 20, 4));
    p.imgraph(&["build"]).success();
    assert!(old_layer.exists());
    let run = p.imgraph(&["cache", "gc"]).success().stderr_has(&["freed"]);
    assert!(
        !old_layer.exists(),
        "gc kept an unreachable layer: {}",
        run.stderr
    );
    assert!(layer_blob(&p, "amd64").exists());
    assert!(
        p.dirty().is_empty(),
        "gc removed something the current build needs"
    );
    p.imgraph(&["cache", "verify"]).success();
}

/// A 1 MiB tmpfs, unmounted when dropped: a disk that fills up.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount() -> SmallDisk {
        let mnt = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(mnt.path())
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "cannot mount a tmpfs: this test needs root (CI runs as root)"
        );
        SmallDisk(mnt)
    }

    fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// A compressed tarball rootfs is spooled to the cache while it is read: when
/// that disk fills up, the error leads with the real cause ("No space left on
/// device"), and never blames the archive ("truncated or corrupt archive?").
#[test]
fn a_full_disk_while_reading_a_tarball_says_no_space_first() {
    let p = Project::hello(&["amd64"]);
    p.file("rootfs/one/amd64/data", &noise(4 << 20, 11));
    tool(
        "tar",
        &[
            "-czf",
            p.path("rootfs.tar.gz").to_str().unwrap(),
            "-C",
            p.path("rootfs/one/amd64").to_str().unwrap(),
            ".",
        ],
    );
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace(
        "rootfs = { dir = \"rootfs/{dist}/{arch}\" }",
        "rootfs = { tar = \"rootfs.tar.gz\" }",
    ));
    let disk = SmallDisk::mount();
    let cache = disk.path().join("cache");
    let run = p
        .imgraph(&["--cache", cache.to_str().unwrap(), "build"])
        .code(1)
        .stderr_has(&["No space left on device"]);
    assert!(!run.stderr.contains("corrupt"), "{}", run.stderr);
    // `  layer:hello:one/amd64: <why>` (the layer step reads the tarball).
    let failed = run
        .stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("layer:hello:one/amd64: "))
        .unwrap_or_else(|| panic!("no failed step:\n{}", run.stderr));
    assert!(
        failed.starts_with("No space left on device"),
        "the cause is not said first: {failed}"
    );
    p.imgraph(&["--cache", cache.to_str().unwrap(), "cache", "verify"])
        .success();
}

#[test]
fn a_full_disk_fails_with_exit_1_and_leaves_the_cache_consistent() {
    let p = Project::hello(&["amd64"]);
    p.file("rootfs/one/amd64/data", &noise(4 << 20, 9));
    let disk = SmallDisk::mount();
    let mnt = disk.path();
    let cache = mnt.join("cache");
    let cache = cache.to_str().unwrap();
    p.imgraph(&["--cache", cache, "build"])
        .code(1)
        .stderr_has(&["No space left on device"]);
    p.imgraph(&["--cache", cache, "cache", "verify"]).success();
    assert_eq!(
        std::fs::read_dir(mnt.join("cache/tmp")).unwrap().count(),
        0,
        "a partial blob was left"
    );
}

fn proxied_project(proxy: &FaultProxy) -> Project {
    let p = Project::hello(&["amd64", "arm64v8"]);
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&format!(
        "[registries.flaky]\nurl = \"{}/t\"\ninsecure = true\n\n{}",
        proxy.url(),
        text.replace("[images.hello]", "[images.hello]\nregistries = [\"flaky\"]")
    ));
    p
}

#[test]
fn transient_registry_faults_are_retried() {
    let reg = RegistryGuard::start(Auth::None);
    let proxy = FaultProxy::start(&reg.url());
    let p = proxied_project(&proxy);
    proxy.inject("PUT", "/manifests/", Fault::Status(503, Some(1)), 1);
    proxy.inject("HEAD", "/blobs/", Fault::Status(429, Some(1)), 1);
    proxy.inject("POST", "/blobs/uploads/", Fault::DropConnection, 1);
    proxy.inject("HEAD", "/manifests/", Fault::Status(500, None), 1);
    proxy.inject("*", "/blobs/", Fault::Delay(Duration::from_millis(300)), 2);
    p.imgraph(&["build", "--push"]).success();
    assert_eq!(proxy.pending_faults(), 0, "not every fault was hit");
    assert_eq!(
        remote_digest(&format!("{}/t/hello:one", reg.url())),
        p.index_digest("hello", "one")
    );
    assert!(proxy.log().iter().any(|(_, _, status)| *status == 503));
}

#[test]
fn a_registry_that_keeps_failing_exits_1_and_no_tag_moves() {
    let reg = RegistryGuard::start(Auth::None);
    let proxy = FaultProxy::start(&reg.url());
    let p = proxied_project(&proxy);
    // The index PUT by digest keeps failing: the tag must not be written.
    proxy.inject("PUT", "/manifests/sha256:", Fault::Status(500, None), 1000);
    let run = p.imgraph(&["build", "--push"]).code(1);
    assert!(run.stderr.contains(&proxy.url()), "{}", run.stderr);
    assert!(
        !proxy
            .log()
            .iter()
            .any(|(m, path, _)| m == "PUT" && path.ends_with("/manifests/one")),
        "a tag was written"
    );
    proxy.clear_faults();
    // A truncated answer is retried too (a manifest PUT is idempotent).
    proxy.inject("PUT", "/manifests/", Fault::TruncateBody, 1);
    p.imgraph(&["build", "--push"]).success();
    assert_eq!(
        remote_digest(&format!("{}/t/hello:one", reg.url())),
        p.index_digest("hello", "one")
    );
}

/// Writes a tarball with Python's tarfile (GNU tar refuses to write most of these).
fn python_tar(p: &Project, name: &str, body: &str) {
    let script = format!(
        "import tarfile, io\nt = tarfile.open('{}', 'w')\ndef f(name, data=b'x', **kw):\n    i = tarfile.TarInfo(name)\n    for k, v in kw.items(): setattr(i, k, v)\n    i.size = len(data) if i.isreg() else 0\n    t.addfile(i, io.BytesIO(data) if i.isreg() else None)\n{body}\nt.close()\n",
        p.path(name).display()
    );
    tool("python3", &["-c", &script]);
}

#[test]
fn hostile_tarballs_fail_naming_the_entry_and_write_nothing_outside() {
    let cases = [
        (
            "symlink out, then through it",
            "f('link', type=tarfile.SYMTYPE, linkname='/etc')\nf('link/passwd')",
            "link/passwd",
        ),
        (
            "hard link to an outside file",
            "f('ok')\nf('pw', type=tarfile.LNKTYPE, linkname='/etc/passwd')",
            "pw",
        ),
        (
            "absolute path escape via ..",
            "f('a/../../../tmp/evil')",
            "evil",
        ),
    ];
    for (what, body, needle) in cases {
        let p = Project::new();
        python_tar(&p, "evil.tar", body);
        p.manifest("[images.e]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { tar = \"evil.tar\" }\n");
        let run = p.imgraph(&["build"]).code(1);
        assert!(run.stderr.contains(needle), "{what}: {}", run.stderr);
        // Nothing of the refused layer was stored, and nothing landed beside the project.
        let stored = std::fs::read_dir(p.path("cache/blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(stored, 0, "{what}: a blob of a refused layer was stored");
        for name in ["evil", "link"] {
            assert!(
                !p.root().parent().unwrap().join(name).exists(),
                "{what}: {name} written outside"
            );
        }
    }
    // Device nodes are a normal part of a rootfs: kept as headers, never created.
    let p = Project::new();
    python_tar(&p, "dev.tar", "f('dev', type=tarfile.DIRTYPE)\nf('dev/null', type=tarfile.CHRTYPE, devmajor=1, devminor=3)");
    p.manifest(
        "[images.d]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { tar = \"dev.tar\" }\n",
    );
    p.imgraph(&["build"]).success();
    let listing = tool(
        "tar",
        &[
            "-tvzf",
            p.path("out/d/one/amd64/rootfs.tar.gz").to_str().unwrap(),
        ],
    );
    assert!(
        listing.contains("1,3") && listing.contains("dev/null"),
        "{listing}"
    );
    // A truncated compressed tarball is an error, not a short layer.
    let q = Project::new();
    q.hello_rootfs("one", "amd64");
    tool(
        "tar",
        &[
            "-czf",
            q.path("full.tar.gz").to_str().unwrap(),
            "-C",
            q.path("rootfs/one/amd64").to_str().unwrap(),
            ".",
        ],
    );
    let bytes = std::fs::read(q.path("full.tar.gz")).unwrap();
    q.file("cut.tar.gz", &bytes[..bytes.len() / 2]);
    q.manifest(
        "[images.c]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { tar = \"cut.tar.gz\" }\n",
    );
    q.imgraph(&["build"]).code(1).stderr_has(&["cut.tar.gz"]);
}
