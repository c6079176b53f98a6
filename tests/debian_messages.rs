//! What imgraph says about a Debian mirror, against a real signed apt repository
//! on 127.0.0.1 (tests/support/apt_repo.rs): a 404 says which 404 it is (a suite
//! the mirror does not have, a lock gone stale, an incomplete mirror, a mirror
//! mid-update) and what to do.

use std::time::SystemTime;

use imgraph::cache::Store;
use imgraph::debian::fetch::{FetchError, Mirror};
use imgraph::debian::missing::ReleaseNow;
use imgraph::debian::signature::Keyring;
use imgraph::registry::RetryPolicy;

use crate::support::apt_repo::{AptRepo, Fault, SUITE};
use crate::support::Project;

fn project(repo: &AptRepo, dist: &str) -> Project {
    repo.project(dist, "")
}

/// Serves `dists/testing` as a link to the repository's suite, as every Debian
/// mirror serves its aliases (`stable -> trixie`).
fn alias_testing(repo: &AptRepo) {
    std::os::unix::fs::symlink(SUITE, repo.path("dists/testing")).unwrap();
}

#[test]
fn a_suite_the_mirror_lacks_is_named_with_the_suites_it_has() {
    let repo = AptRepo::start();
    alias_testing(&repo);
    let p = project(&repo, "imtset");
    let run = p.imgraph(&["lock"]).code(2).stderr_has(&[
        &format!("{}/dists/imtset/InRelease: HTTP 404", repo.url()),
        &format!("there is no suite \"imtset\" on {}", repo.url()),
        // What the mirror has, found through its well-known aliases.
        "it has imtest (testing)",
        "check the dist name",
    ]);
    assert!(!run.stderr.contains("mid-update"), "{}", run.stderr);
    assert!(!p.path("images.lock").exists());

    // A URL that is no Debian archive's root: nothing answers, and it says so.
    let wrong = Project::new();
    wrong.manifest(&format!(
        "[images.tiny]\ndists = [\"{SUITE}\"]\narches = [\"amd64\"]\nrootfs = {{ debian = {{ mirror = \"{}/pool\", keyring = \"{}\" }} }}\n",
        repo.url(),
        repo.keyring.display()
    ));
    wrong.imgraph(&["lock"]).code(2).stderr_has(&[
        "there is no suite \"imtest\"",
        "nor does it have any of oldoldstable, oldstable, stable, testing, unstable",
        "a Debian archive's root",
    ]);
}

#[test]
fn a_deb_gone_from_the_pool_after_the_suite_moved_on_says_the_lock_is_stale() {
    let repo = AptRepo::start();
    let p = project(&repo, SUITE);
    p.imgraph(&["lock"]).success();
    // A new mawk-tiny replaces the locked one in the pool; the Release moves on.
    repo.publish("mawk-tiny", "1.3.4-2", "any");
    let run = p.imgraph(&["build"]).code(1).stderr_has(&[
        "mawk-tiny 1.3.4-1 amd64",
        "pool/main/m/mawk-tiny/mawk-tiny_1.3.4-1_amd64.deb: HTTP 404",
        "images.lock points at a file the mirror no longer has",
        "imtest's Release has moved on since the lock was made (it is now dated ",
        "run `imgraph lock --update`",
        "https://snapshot.debian.org/archive/debian/",
    ]);
    assert!(!run.stderr.contains("mid-update"), "{}", run.stderr);
    // Doing what it says works.
    p.imgraph(&["lock", "--update"])
        .success()
        .stderr_has(&["mawk-tiny 1.3.4-1 -> 1.3.4-2"]);
    p.imgraph(&["build"]).success();
}

#[test]
fn a_deb_missing_while_the_locked_release_is_still_served_blames_the_mirror() {
    let repo = AptRepo::start();
    let p = project(&repo, SUITE);
    p.imgraph(&["lock"]).success();
    repo.fault("mawk-tiny_1.3.4-1_amd64.deb", Fault::NotFound);
    let run = p.imgraph(&["build"]).code(1).stderr_has(&[
        "mawk-tiny_1.3.4-1_amd64.deb: HTTP 404",
        "the mirror still serves the imtest Release the lock was made from",
        "the mirror is incomplete; use another mirror",
    ]);
    for wrong in ["mid-update", "lock --update", "no longer has"] {
        assert!(!run.stderr.contains(wrong), "{wrong}: {}", run.stderr);
    }
}

#[test]
fn an_index_missing_is_mid_update_only_when_the_release_moved() {
    let repo = AptRepo::start();
    let keyring = Keyring::load(&repo.keyring).unwrap();
    let m = Mirror::new(&repo.url())
        .unwrap()
        .with_retry(RetryPolicy::none());
    let suite = m
        .release(SUITE, &keyring, SystemTime::now(), false)
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let plain = format!("{}/dists/{SUITE}/main/binary-amd64/Packages.xz", repo.url());

    // The Release this run fetched is still the mirror's: an incomplete mirror.
    repo.fault("binary-amd64/", Fault::NotFound);
    let err = m.packages(&suite, "main", "amd64", &store).unwrap_err();
    assert!(
        matches!(&err, FetchError::IndexMissing { url, now: ReleaseNow::Same, .. } if *url == plain),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("not an update in progress") && !msg.contains("mid-update"),
        "{msg}"
    );

    // The mirror published a new Release after this run fetched one: mid-update.
    repo.publish("mawk-tiny", "1.3.4-2", "any");
    let err = m.packages(&suite, "main", "amd64", &store).unwrap_err();
    assert!(
        matches!(
            &err,
            FetchError::IndexMissing {
                now: ReleaseNow::Moved { date: Some(_) },
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&plain) && msg.contains("it is mid-update, run the command again"),
        "{msg}"
    );
    assert_eq!(store.blobs().unwrap(), vec![], "nothing cached");
}
