//! What `images.lock` says is what is built (issue 20): an entry edited by hand
//! (or written without a digest) is refused until `imgraph lock` resolves or
//! binds it. Against the local signed apt repository, offline.

use serde_json::Value;

use crate::lock::{layer_file, lock_text, project};
use crate::support::apt_repo::{AptRepo, Fault, SUITE};

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
