//! What `images.lock` says is what is built (issue 20): `created = "git"` dates a
//! `debian` platform from the last commit that changed its own entry, and an entry
//! edited by hand (or written without a digest) is refused until `imgraph lock`
//! resolves or binds it. Against the local signed apt repository, offline.

use serde_json::Value;

use crate::lock::{layer_file, lock_text, project};
use crate::support::apt_repo::{AptRepo, Fault, SUITE};
use crate::support::{git, sha256, Project};

/// `created` of `tiny:imtest/ARCH`'s exported config.
fn created_of(p: &Project, arch: &str) -> String {
    let v: Value = serde_json::from_slice(
        &std::fs::read(p.path(&format!("out/tiny/{SUITE}/{arch}/image-config.json"))).unwrap(),
    )
    .unwrap();
    v["created"].as_str().unwrap().to_string()
}

/// The digest of `tiny:imtest/ARCH`'s exported platform manifest.
fn manifest_digest(p: &Project, arch: &str) -> String {
    sha256(&std::fs::read(p.path(&format!("out/tiny/{SUITE}/{arch}/image-manifest.json"))).unwrap())
}

/// The manifest's `created` switched to "git".
fn date_from_git(p: &Project) {
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    let git_text = text.replace("created = \"2024-06-01T00:00:00Z\"", "created = \"git\"");
    assert_ne!(git_text, text);
    p.manifest(&git_text);
}

/// The lines of the `[platforms."LABEL"]` table.
fn entry(text: &str, label: &str) -> String {
    let head = format!("[platforms.\"{label}\"]");
    let start = text
        .find(&head)
        .unwrap_or_else(|| panic!("{head} in {text}"));
    let rest = &text[start..];
    rest[..rest.find("\n]\n").unwrap()].to_string()
}

#[test]
fn created_from_git_dates_each_debian_platform_from_its_own_entry() {
    let repo = AptRepo::start();
    let p = project(&repo, r#""amd64", "arm64v8""#, "");
    p.imgraph(&["lock"]).success();
    date_from_git(&p);
    git(p.root(), &["init", "-q"], "2020-01-01T00:00:00Z");
    git(p.root(), &["add", "-A"], "2021-03-04T05:06:07Z");
    git(p.root(), &["commit", "-qm", "lock"], "2021-03-04T05:06:07Z");
    p.imgraph(&["build"]).success();
    assert_eq!(created_of(&p, "amd64"), "2021-03-04T05:06:07Z");
    assert_eq!(created_of(&p, "arm64v8"), "2021-03-04T05:06:07Z");
    let amd64 = manifest_digest(&p, "amd64");

    // A commit that changes arm64v8's entry only.
    repo.publish("libc-tiny", "2.36-9+deb12u1+b1", "arm64");
    let before = lock_text(&p);
    p.imgraph(&["lock", "--update", &format!("tiny:{SUITE}/arm64v8")])
        .success();
    let after = lock_text(&p);
    assert_eq!(
        entry(&before, &format!("tiny:{SUITE}/amd64")),
        entry(&after, &format!("tiny:{SUITE}/amd64"))
    );
    git(
        p.root(),
        &["commit", "-qam", "arm64"],
        "2022-08-09T10:11:12Z",
    );
    p.imgraph(&["build"]).success();
    assert_eq!(created_of(&p, "arm64v8"), "2022-08-09T10:11:12Z");
    assert_eq!(created_of(&p, "amd64"), "2021-03-04T05:06:07Z");
    assert_eq!(manifest_digest(&p, "amd64"), amd64, "amd64 did not change");

    // Another arm64 update, this time with every platform moved to the new
    // InRelease: amd64's entry names the new archive state, its packages are the
    // same, so its date and digest stay.
    repo.publish("libc-tiny", "2.36-9+deb12u1+b2", "arm64");
    let before = lock_text(&p);
    p.imgraph(&["lock", "--update"]).success();
    let after = lock_text(&p);
    assert_ne!(
        entry(&before, &format!("tiny:{SUITE}/amd64")),
        entry(&after, &format!("tiny:{SUITE}/amd64")),
        "amd64's archives line moved"
    );
    git(
        p.root(),
        &["commit", "-qam", "update"],
        "2023-01-02T03:04:05Z",
    );
    p.imgraph(&["build"]).success();
    assert_eq!(created_of(&p, "arm64v8"), "2023-01-02T03:04:05Z");
    assert_eq!(created_of(&p, "amd64"), "2021-03-04T05:06:07Z");
    assert_eq!(manifest_digest(&p, "amd64"), amd64, "amd64 did not change");

    // An uncommitted change to arm64v8's entry is refused for arm64v8 alone.
    repo.publish("libc-tiny", "2.36-9+deb12u1+b3", "arm64");
    p.imgraph(&["lock", "--update", &format!("tiny:{SUITE}/arm64v8")])
        .success();
    let run = p
        .imgraph(&["build"])
        .code(2)
        .stderr_has(&[&format!("tiny:{SUITE}/arm64v8"), "uncommitted changes"]);
    assert!(
        !run.stderr.contains(&format!("tiny:{SUITE}/amd64")),
        "{}",
        run.stderr
    );
    p.imgraph(&["build", "--allow-dirty"]).success();
    assert_eq!(created_of(&p, "amd64"), "2021-03-04T05:06:07Z");
}

#[test]
fn the_first_lock_in_a_new_repository_with_created_git_is_written() {
    let repo = AptRepo::start();
    let p = project(&repo, r#""amd64""#, "");
    date_from_git(&p);
    git(p.root(), &["init", "-q"], "2020-01-01T00:00:00Z");
    // No commit yet, and nothing to date: lock needs no date.
    p.imgraph(&["lock"])
        .success()
        .stderr_has(&[&format!("locked tiny:{SUITE}/amd64"), "wrote"]);
    p.imgraph(&["lock", "--check"]).success();
    // Uncommitted, the lock dates nothing yet: build says to commit it (or to
    // date otherwise), not --allow-dirty, which has no commit to date from.
    for args in [&["build"][..], &["build", "--allow-dirty"]] {
        let run = p.imgraph(args).code(2).stderr_has(&[
            "no commits yet",
            "help: commit images.lock first",
            "\"source-date-epoch\"",
        ]);
        assert!(
            !run.stderr.contains("or pass --allow-dirty"),
            "{}",
            run.stderr
        );
    }
    git(p.root(), &["add", "-A"], "2021-03-04T05:06:07Z");
    git(p.root(), &["commit", "-qm", "lock"], "2021-03-04T05:06:07Z");
    p.imgraph(&["build"]).success();
    assert_eq!(created_of(&p, "amd64"), "2021-03-04T05:06:07Z");
}

/// Drops `line` (a package line with its indent and comma) from the lock text.
fn without(text: &str, line: &str) -> String {
    let needle = format!("  \"{line}\",\n");
    assert!(text.contains(&needle), "{needle} in {text}");
    text.replacen(&needle, "", 1)
}

#[test]
fn a_hand_edited_lock_entry_is_refused_and_lock_repairs_it() {
    let repo = AptRepo::start();
    let p = project(
        &repo,
        r#""amd64", "arm64v8""#,
        r#", include = ["gawk-tiny"]"#,
    );
    p.imgraph(&["lock"]).success();
    let good = lock_text(&p);
    let amd64 = format!("tiny:{SUITE}/amd64");
    let edits: [(&str, String, &str); 3] = [
        (
            "a dependency dropped",
            without(&good, "libc-tiny 2.36-9+deb12u1 amd64"),
            "+ libc-tiny 2.36-9+deb12u1",
        ),
        (
            "an included package dropped",
            without(&good, "gawk-tiny 5.2.1-2 amd64"),
            "+ gawk-tiny 5.2.1-2",
        ),
        (
            "a version changed, line and pool key alike",
            good.replace("libc-tiny 2.36-9+deb12u1 amd64", "libc-tiny 2.36-9 amd64"),
            "libc-tiny 2.36-9 -> 2.36-9+deb12u1",
        ),
    ];
    for (what, edited, repair) in &edits {
        assert_ne!(edited, &good, "{what}");
        std::fs::write(p.path("images.lock"), edited).unwrap();
        let run = p.imgraph(&["lock", "--check"]).code(1).stderr_has(&[
            &amd64,
            "edited by hand",
            "run `imgraph lock`",
        ]);
        assert!(!run.stderr.contains("arm64v8"), "{what}: {}", run.stderr);
        p.imgraph(&["build"])
            .code(2)
            .stderr_has(&[&amd64, "edited by hand", "run `imgraph lock`"]);
        p.imgraph(&["lock"]).success().stderr_has(&[
            &format!("repaired {amd64}"),
            &format!("{amd64}  {repair}"),
            "wrote",
        ]);
        assert_eq!(lock_text(&p), good, "{what}");
        p.imgraph(&["lock", "--check"]).success();
    }

    // `lock --update` repairs it too, and says so in its JSON.
    std::fs::write(p.path("images.lock"), &edits[0].1).unwrap();
    let json: Value = p.imgraph(&["lock", "--update", "--json"]).success().json();
    assert_eq!(json["repaired"], serde_json::json!([amd64]), "{json}");
    assert_eq!(
        json["changed"],
        serde_json::json!([{
            "image": "tiny", "dist": SUITE, "arch": "amd64", "package": "libc-tiny",
            "old": null, "new": "2.36-9+deb12u1"
        }])
    );
    assert_eq!(lock_text(&p), good);
    p.imgraph(&["build"]).success();
    assert!(layer_file(&p, "amd64", "var/lib/dpkg/status").contains("Package: libc-tiny\n"));
}

#[test]
fn a_lock_without_digests_is_refused_until_lock_binds_it_offline() {
    let repo = AptRepo::start();
    let p = project(&repo, r#""amd64", "arm64v8""#, "");
    p.imgraph(&["lock"]).success();
    let good = lock_text(&p);
    assert!(good.contains("\nversion = 2\n"), "{good}");
    // The same lock as an imgraph before digests wrote it.
    let old: String = good
        .replace("\nversion = 2\n", "\nversion = 1\n")
        .lines()
        .filter(|l| !l.starts_with("digest = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(old, good);
    std::fs::write(p.path("images.lock"), &old).unwrap();
    p.imgraph(&["lock", "--check"]).code(1).stderr_has(&[
        "tiny:imtest/amd64",
        "older imgraph",
        "run `imgraph lock`",
    ]);
    p.imgraph(&["plan"])
        .code(2)
        .stderr_has(&["older imgraph", "run `imgraph lock`"]);
    // Bound from its own lines: the mirror is not asked.
    repo.fault("/", Fault::NotFound);
    repo.clear_requests();
    p.imgraph(&["lock"])
        .success()
        .stderr_has(&["bound 2 entries", "wrote"]);
    assert_eq!(repo.requests(), Vec::<String>::new());
    assert_eq!(lock_text(&p), good);
}

/// A lock a newer imgraph wrote (a format version above this one's, with fields
/// this one does not know) is named as such, with "upgrade imgraph", by every
/// command that reads it; none says to rewrite it, and none touches it.
#[test]
fn a_lock_from_a_newer_imgraph_says_to_upgrade() {
    let repo = AptRepo::start();
    let p = project(&repo, r#""amd64""#, "");
    p.imgraph(&["lock"]).success();
    let newer = lock_text(&p).replace("version = 2\n", "version = 7\nsealed = true\n");
    assert_ne!(newer, lock_text(&p));
    std::fs::write(p.path("images.lock"), &newer).unwrap();
    for args in [&["lock", "--check"][..], &["build"], &["plan"], &["lock"]] {
        let run = p.imgraph(args).stderr_has(&[
            "images.lock was written by a newer imgraph",
            "lock format version 7",
            "upgrade imgraph",
        ]);
        assert!(
            run.code != 0 && run.code != 101,
            "`{}` exit {}",
            run.what,
            run.code
        );
        assert!(!run.stderr.contains("run `imgraph lock`"), "{}", run.stderr);
        assert_eq!(lock_text(&p), newer, "`{}` rewrote the lock", run.what);
    }
}
