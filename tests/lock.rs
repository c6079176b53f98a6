//! `imgraph lock` against a local signed apt repository (built with dpkg-deb,
//! apt-ftparchive and gpg, served on 127.0.0.1), and `plan` reading only the lock.

use serde_json::Value;

use crate::support::apt_repo::{AptRepo, Fault, Gpg, SUITE};
use crate::support::Project;

pub(crate) fn project(repo: &AptRepo, arches: &str, extra: &str) -> Project {
    let p = Project::new();
    p.manifest(&format!(
        r#"[settings]
created = "2024-06-01T00:00:00Z"

[images.tiny]
dists = ["{SUITE}"]
arches = [{arches}]
rootfs = {{ debian = {{ mirror = "{}", keyring = "{}"{extra} }} }}
"#,
        repo.url(),
        repo.keyring.display()
    ));
    p
}

pub(crate) fn lock_text(p: &Project) -> String {
    std::fs::read_to_string(p.path("images.lock")).expect("images.lock written")
}

fn rootfs_reason(p: &Project, arch: &str) -> (String, Option<String>) {
    let plan = p.plan(&[]);
    let (_, status, reason) = plan
        .into_iter()
        .find(|(id, _, _)| *id == format!("rootfs:tiny:{SUITE}/{arch}"))
        .expect("rootfs step planned");
    (status, reason)
}

#[test]
fn lock_pins_every_package_and_plan_reads_only_the_lock() {
    let repo = AptRepo::start();
    let p = project(&repo, r#""amd64", "arm64v8""#, "");
    // Without a lock, plan refuses: it never resolves against the network.
    p.imgraph(&["plan"])
        .code(2)
        .stderr_has(&["images.lock", "run `imgraph lock`"]);
    p.imgraph(&["lock", "--check"])
        .code(1)
        .stderr_has(&["tiny:imtest/amd64", "tiny:imtest/arm64v8"]);

    p.imgraph(&["lock"])
        .success()
        .stderr_has(&["locked tiny:imtest/amd64: 5 packages", "wrote"]);
    let text = lock_text(&p);
    for line in [
        "\"base-tiny 12.4 amd64\",",
        "\"libc-tiny 2.36-9+deb12u1 arm64\",",
        "\"mawk-tiny 1.3.4-1 amd64\",",
        "\"sh-tiny 5.2-1 arm64\",",
        "\"tools-all 1.0-1 all\",",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    // The alternative `awk | gawk-tiny` is satisfied by what is already there.
    assert!(!text.contains("gawk-tiny"), "{text}");
    // The arch:all .deb is in the pool once, with its sha256 from the index.
    assert_eq!(text.matches("tools-all_1.0-1_all.deb").count(), 1, "{text}");
    assert!(
        text.contains(&format!("key = \"{}\"", repo.key.fingerprint)),
        "{text}"
    );
    p.imgraph(&["lock", "--check"]).success();

    // Locking again changes nothing, byte for byte.
    p.imgraph(&["lock"])
        .success()
        .stderr_has(&["already covers"]);
    assert_eq!(lock_text(&p), text);

    // plan and build read only the lock: the mirror can be gone.
    repo.fault("/", Fault::NotFound);
    let (status, reason) = rootfs_reason(&p, "arm64v8");
    assert_eq!(status, "dirty");
    assert_eq!(reason.as_deref(), Some("not built yet"));
    repo.clear_faults();

    // --update with an unchanged archive downloads InRelease and nothing else.
    repo.clear_requests();
    p.imgraph(&["lock", "--update"])
        .success()
        .stderr_has(&["nothing changed"]);
    assert_eq!(lock_text(&p), text);
    let requests = repo.requests();
    assert!(
        requests.iter().all(|r| r.contains("InRelease")),
        "{requests:?}"
    );
}

#[test]
fn lock_update_names_each_change_and_plan_dirties_exactly_those_platforms() {
    let repo = AptRepo::start();
    let p = project(&repo, r#""amd64", "arm64v8""#, "");
    p.imgraph(&["lock"]).success();
    // A build from the lock: every package installed, the dpkg database says so.
    p.imgraph(&["build"]).success();
    assert_eq!(rootfs_reason(&p, "amd64").0, "fresh");
    let status = layer_file(&p, "arm64v8", "var/lib/dpkg/status");
    assert!(
        status.contains("Package: libc-tiny\n") && status.contains("Version: 2.36-9+deb12u1\n"),
        "{status}"
    );
    assert_eq!(
        status.matches("Status: install ok installed").count(),
        5,
        "{status}"
    );
    assert_eq!(
        layer_file(&p, "amd64", "usr/share/doc/libc-tiny/README"),
        "libc-tiny 2.36-9+deb12u1 for amd64\n"
    );

    // A binNMU on arm64 only.
    repo.publish("libc-tiny", "2.36-9+deb12u1+b1", "arm64");
    let run = p.imgraph(&["lock", "--update", "--json"]).success();
    let json: Value = run.json();
    assert_eq!(
        json["changed"],
        serde_json::json!([{
            "image": "tiny", "dist": SUITE, "arch": "arm64v8", "package": "libc-tiny",
            "old": "2.36-9+deb12u1", "new": "2.36-9+deb12u1+b1"
        }])
    );
    run.stderr_has(&["tiny:imtest/arm64v8  libc-tiny 2.36-9+deb12u1 -> 2.36-9+deb12u1+b1"]);
    let (status, reason) = rootfs_reason(&p, "arm64v8");
    assert_eq!(status, "dirty");
    assert_eq!(
        reason.as_deref(),
        Some("lock changed: libc-tiny 2.36-9+deb12u1 -> 2.36-9+deb12u1+b1")
    );
    assert_eq!(rootfs_reason(&p, "amd64").0, "fresh", "only arm64 changed");
    // build --changed rebuilds that platform only (its rootfs, layer, config and
    // manifest, then its dist's index and tags), and says so.
    let run = p.imgraph(&["build", "--changed", "--json"]).success();
    let json: Value = run.json();
    let mut executed: Vec<&str> = json["executed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    executed.sort();
    let (platform, dist): (Vec<&str>, Vec<&str>) = executed.iter().partition(|s| s.contains('/'));
    // Plus that platform's SBOM and provenance, and amd64's provenance alone:
    // it names the InRelease the lock was resolved from, which is new (amd64's
    // image, layer and SBOM stay as they were).
    assert_eq!(
        platform,
        [
            "config:tiny:imtest/arm64v8",
            "layer:tiny:imtest/arm64v8",
            "manifest:tiny:imtest/arm64v8",
            "provenance:tiny:imtest/amd64",
            "provenance:tiny:imtest/arm64v8",
            "rootfs:tiny:imtest/arm64v8",
            "sbom:tiny:imtest/arm64v8"
        ],
        "{json}"
    );
    assert!(dist.contains(&"index:tiny:imtest"), "{json}");
    assert!(
        dist.iter()
            .all(|s| *s == "index:tiny:imtest" || s.starts_with("tag:tiny:imtest")),
        "{json}"
    );
    assert_eq!(json["changed"][0]["arch"], "arm64v8", "{json}");
    let changed: Vec<&Value> = json["changed"].as_array().unwrap().iter().collect();
    assert!(
        changed.iter().all(|c| c["arch"] != "amd64"),
        "amd64 did not change: {json}"
    );
    let run = run.stderr_has(&["changed: tiny:imtest/arm64v8 sha256:"]);
    assert!(
        !run.stderr.contains("changed: tiny:imtest/amd64"),
        "{}",
        run.stderr
    );
    assert!(layer_file(&p, "arm64v8", "var/lib/dpkg/status").contains("2.36-9+deb12u1+b1"));

    // An arch:all update moves every arch.
    p.imgraph(&["build"]).success();
    repo.publish("tools-all", "1.0-2", "all");
    let json: Value = p.imgraph(&["lock", "--update", "--json"]).success().json();
    let arches: Vec<&str> = json["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["arch"].as_str().unwrap())
        .collect();
    assert_eq!(arches, ["amd64", "arm64v8"], "{json}");
    for arch in ["amd64", "arm64v8"] {
        assert_eq!(rootfs_reason(&p, arch).0, "dirty", "{arch}");
    }

    // Changing what is asked for makes the entries stale until the next lock.
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace("keyring = ", "include = [\"gawk-tiny\"], keyring = "));
    p.imgraph(&["lock", "--check"])
        .code(1)
        .stderr_has(&["tiny:imtest/amd64", "run `imgraph lock`"]);
    p.imgraph(&["plan"])
        .code(2)
        .stderr_has(&["run `imgraph lock`"]);
    p.imgraph(&["lock"]).success();
    assert!(lock_text(&p).contains("\"gawk-tiny 5.2.1-2 amd64\","));
    p.imgraph(&["lock", "--check"]).success();
}

#[test]
fn a_lock_that_fails_a_check_leaves_images_lock_untouched() {
    let repo = AptRepo::start();
    let p = project(&repo, r#""amd64""#, "");
    p.imgraph(&["lock"]).success();
    let before = lock_text(&p);
    repo.publish("libc-tiny", "2.36-9+deb12u2", "any");

    // Tampered InRelease: one byte of the signed text.
    let inrelease = repo.path(&format!("dists/{SUITE}/InRelease"));
    let good = std::fs::read(&inrelease).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    std::fs::write(&inrelease, text.replacen("Suite:", "Suite: ", 1)).unwrap();
    p.imgraph(&["lock", "--update"])
        .code(1)
        .stderr_has(&["InRelease"]);
    assert_eq!(lock_text(&p), before);

    // Signed by a key the keyring does not hold.
    let stranger = Gpg::new("stranger");
    repo.write_release_signed_by(&Default::default(), &stranger);
    p.imgraph(&["lock", "--update"])
        .code(1)
        .stderr_has(&[stranger.key_id()]);
    assert_eq!(lock_text(&p), before);

    // A Packages index that is not the one Release lists.
    repo.write_release(&Default::default());
    let index = repo.path(&format!("dists/{SUITE}/main/binary-amd64/Packages.xz"));
    let arm = repo.path(&format!("dists/{SUITE}/main/binary-arm64/Packages.xz"));
    std::fs::copy(&arm, &index).unwrap();
    repo.fault("by-hash", Fault::NotFound);
    let run = p.imgraph(&["lock", "--update"]).code(1);
    run.stderr_has(&["sha256"]);
    assert_eq!(lock_text(&p), before);
    repo.clear_faults();
}

#[test]
fn an_older_release_than_the_one_locked_is_refused_unless_allowed() {
    let repo = AptRepo::start();
    let p = project(&repo, r#""amd64""#, "");
    // Keep the archive as it is now, then move it on and lock the newer state.
    let dists = repo.path(&format!("dists/{SUITE}"));
    let saved = repo.scratch("old-dists");
    copy_dir(&dists, &saved);
    repo.publish("libc-tiny", "2.36-9+deb12u2", "any");
    p.imgraph(&["lock"]).success();
    let before = lock_text(&p);
    // The mirror now serves the older (validly signed) state: a replay.
    std::fs::remove_dir_all(&dists).unwrap();
    copy_dir(&saved, &dists);
    p.imgraph(&["lock", "--update"])
        .code(1)
        .stderr_has(&["older", "--allow-downgrade"]);
    assert_eq!(lock_text(&p), before);
    let json: Value = p
        .imgraph(&["lock", "--update", "--allow-downgrade", "--json"])
        .success()
        .json();
    assert_eq!(json["changed"][0]["new"], "2.36-9+deb12u1", "{json}");
}

#[test]
fn an_arch_the_suite_does_not_publish_is_bad_input_naming_its_arches() {
    let repo = AptRepo::start();
    let p = project(&repo, r#""riscv64""#, "");
    p.imgraph(&["lock"])
        .code(2)
        .stderr_has(&["riscv64", "amd64, arm64"]);
    assert!(!p.path("images.lock").exists());
}

/// A file's text from the exported layer of `tiny:imtest/ARCH`, read with tar.
pub(crate) fn layer_file(p: &Project, arch: &str, path: &str) -> String {
    let layer = p.path(&format!("out/tiny/{SUITE}/{arch}/rootfs.tar.gz"));
    crate::support::tool("tar", &["-xzOf", layer.to_str().unwrap(), path])
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// `lock` keeps each index pre-parsed in the cache under the index's sha256 and
/// reads that instead of the index; a pre-parsed file that is altered or cut
/// short is never believed: the index is parsed again, the lock comes out the
/// same, and the file is rewritten.
#[test]
fn pre_parsed_indexes_are_used_and_a_bad_one_never_changes_the_lock() {
    let repo = AptRepo::start();
    let p = project(&repo, r#""amd64""#, "");
    p.imgraph(&["lock"]).success();
    let text = lock_text(&p);
    assert!(
        text.contains("\"libc-tiny 2.36-9+deb12u1 amd64\","),
        "{text}"
    );
    let index =
        std::fs::read(repo.path(&format!("dists/{SUITE}/main/binary-amd64/Packages.xz"))).unwrap();
    let digest = crate::support::sha256(&index);
    let pre_parsed = p.path(&format!(
        "cache/state/packages-{}.v1",
        digest.trim_start_matches("sha256:")
    ));
    let good = std::fs::read(&pre_parsed).expect("the index is kept pre-parsed");

    // Used: with the index gone from the cache, locking again downloads nothing but
    // InRelease.
    let relock = || {
        std::fs::remove_file(p.path("images.lock")).unwrap();
        for blob in std::fs::read_dir(p.path("cache/blobs/sha256")).unwrap() {
            std::fs::remove_file(blob.unwrap().path()).unwrap();
        }
        repo.clear_requests();
        p.imgraph(&["lock"]).success();
        assert_eq!(lock_text(&p), text);
    };
    relock();
    let requests = repo.requests();
    assert!(
        requests.iter().all(|r| r.contains("InRelease")),
        "{requests:?}"
    );

    // Altered: libc-tiny's version (and pool path) rewritten in place, same length.
    let (old, new) = (b"2.36-9+deb12u1", b"2.36-9+deb12u7");
    let mut altered = good.clone();
    let mut hits = 0;
    for at in 0..altered.len() - old.len() {
        if &altered[at..at + old.len()] == old {
            altered[at..at + old.len()].copy_from_slice(new);
            hits += 1;
        }
    }
    assert!(hits >= 2, "version and pool path: {hits}");
    std::fs::write(&pre_parsed, &altered).unwrap();
    relock();
    assert!(
        repo.requests().iter().any(|r| r.contains("binary-amd64")),
        "the index was fetched and parsed again"
    );
    assert_eq!(std::fs::read(&pre_parsed).unwrap(), good, "rewritten");

    // Cut short, then another format's header: the same.
    std::fs::write(&pre_parsed, &good[..good.len() / 2]).unwrap();
    relock();
    assert_eq!(std::fs::read(&pre_parsed).unwrap(), good);
    let mut other = good.clone();
    other[8] = 99;
    std::fs::write(&pre_parsed, &other).unwrap();
    relock();
    assert_eq!(std::fs::read(&pre_parsed).unwrap(), good);
}
