//! Fetching locked `.deb`s into the cache (`imgraph::debian::debs`) from a real
//! signed apt repository on 127.0.0.1 (tests/support/apt_repo.rs): the lock-like
//! entries come from the repository's own Packages indexes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use imgraph::cache::Store;
use imgraph::debian::debs::{fetch_debs, DebFetchError, MirrorSet};
use imgraph::debian::fetch::FetchError;
use imgraph::debian::missing::ReleaseNow;
use imgraph::debian::packages::parse_index;
use imgraph::manifest::lock::LockedPackage;
use imgraph::registry::RetryPolicy;

use crate::support::apt_repo::{AptRepo, Fault, ARCHES, SUITE};

/// Quick retries: the faults below are permanent.
fn mirrors(attempts: u32) -> MirrorSet {
    MirrorSet::new().with_retry(RetryPolicy {
        max_attempts: attempts,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
    })
}

/// Every package of both arches, as `images.lock` would pin them (arch:all ones
/// appear once per arch, as in two platforms' package lists).
fn locked(repo: &AptRepo) -> Vec<LockedPackage> {
    let inrelease = std::fs::read(repo.path(&format!("dists/{SUITE}/InRelease"))).unwrap();
    let hash12 = imgraph::digest::sha256(&inrelease)["sha256:".len()..][..12].to_string();
    let mut out = Vec::new();
    for arch in ARCHES {
        let text = std::fs::read_to_string(
            repo.path(&format!("dists/{SUITE}/main/binary-{arch}/Packages")),
        )
        .unwrap();
        for p in parse_index(&text).unwrap() {
            out.push(LockedPackage {
                name: p.name,
                version: p.version.to_string(),
                arch: p.architecture,
                sha256: p.sha256,
                size: p.size,
                filename: p.filename,
                archive: format!("{} {SUITE} {hash12}", repo.url()),
            });
        }
    }
    out
}

fn pool_requests(repo: &AptRepo, path_contains: &str) -> usize {
    repo.requests()
        .iter()
        .filter(|p| p.starts_with("/pool/") && p.contains(path_contains))
        .count()
}

fn tmp_files(store: &Store) -> usize {
    std::fs::read_dir(store.tmp_dir()).unwrap().count()
}

fn find<'a>(packages: &'a [LockedPackage], name: &str, arch: &str) -> &'a LockedPackage {
    packages
        .iter()
        .find(|p| p.name == name && p.arch == arch)
        .unwrap_or_else(|| panic!("{name}:{arch} in the repository"))
}

#[test]
fn locked_debs_are_fetched_once_verified_and_not_fetched_again() {
    let repo = AptRepo::start();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let packages = locked(&repo);
    let all = packages.iter().filter(|p| p.arch == "all").count();
    assert!(all >= 2, "the arch:all package is listed for both arches");
    let distinct = packages.len() - all / 2;

    // The progress callback sees every byte, from every fetching thread.
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let with_progress = mirrors(2).with_progress(move |n| {
        counter.fetch_add(n, Ordering::Relaxed);
    });
    let got = fetch_debs(&packages, &with_progress, &store, 3).unwrap();
    assert_eq!(got.downloaded, distinct);
    assert_eq!(got.blobs.len(), packages.len());
    for (p, blob) in packages.iter().zip(&got.blobs) {
        let pool = std::fs::read(repo.path(&p.filename)).unwrap();
        // The blob is the pool file, named by its digest, computed here.
        assert_eq!(blob.digest, imgraph::digest::sha256(&pool), "{}", p.id());
        assert_eq!(blob.size, pool.len() as u64);
        assert_eq!(store.read_blob(&blob.digest).unwrap(), pool, "{}", p.id());
    }
    let distinct_bytes: u64 = {
        let mut seen = std::collections::BTreeMap::new();
        for p in &packages {
            seen.insert(p.sha256.clone(), p.size);
        }
        seen.values().sum()
    };
    assert_eq!(got.downloaded_bytes, distinct_bytes);
    assert_eq!(seen.load(Ordering::Relaxed), distinct_bytes);
    // Every .deb was requested once: the arch:all one too, though listed twice.
    assert_eq!(
        pool_requests(&repo, ".deb"),
        distinct,
        "{:?}",
        repo.requests()
    );
    assert_eq!(pool_requests(&repo, "_all.deb"), 1);
    assert_eq!(tmp_files(&store), 0, "no temp files left");

    // Everything is cached: the second call asks the mirror for nothing.
    repo.clear_requests();
    let again = fetch_debs(&packages, &mirrors(2), &store, 3).unwrap();
    assert_eq!(again.blobs, got.blobs);
    assert_eq!((again.downloaded, again.downloaded_bytes), (0, 0));
    assert!(repo.requests().is_empty(), "{:?}", repo.requests());
}

#[test]
fn a_swapped_deb_is_refused_naming_both_digests_and_nothing_is_cached() {
    let repo = AptRepo::start();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let packages = locked(&repo);
    let libc = find(&packages, "libc-tiny", "amd64").clone();
    let gawk = find(&packages, "gawk-tiny", "amd64");
    // The mirror now serves another (genuine) .deb under libc-tiny's pool path.
    let other = std::fs::read(repo.path(&gawk.filename)).unwrap();
    std::fs::write(repo.path(&libc.filename), &other).unwrap();
    let other_digest = imgraph::digest::sha256(&other);

    let err = fetch_debs(std::slice::from_ref(&libc), &mirrors(2), &store, 2).unwrap_err();
    let DebFetchError::Mismatch {
        url,
        package,
        expected,
        actual,
        actual_size,
        ..
    } = &err
    else {
        panic!("want a sha256 mismatch, got {err:?}");
    };
    assert_eq!(url, &format!("{}/{}", repo.url(), libc.filename));
    assert_eq!(package, &libc.id());
    assert_eq!(expected, &libc.sha256);
    assert_eq!(format!("sha256:{actual}"), other_digest);
    assert_eq!(*actual_size, other.len() as u64);
    assert!(!err.is_bad_input());
    let msg = err.to_string();
    for part in [url.as_str(), &libc.sha256, actual.as_str(), "libc-tiny"] {
        assert!(msg.contains(part), "{part:?} not in {msg}");
    }
    // Neither digest is in the store, and no temp file is left behind.
    assert!(!store.has_blob(&format!("sha256:{}", libc.sha256)));
    assert!(!store.has_blob(&other_digest));
    assert_eq!(store.blobs().unwrap(), vec![]);
    assert_eq!(tmp_files(&store), 0);
    // A mismatch is not retried: the mirror answered, with the wrong file.
    assert_eq!(pool_requests(&repo, "libc-tiny"), 1);
}

#[test]
fn a_missing_deb_is_an_error_naming_its_url() {
    let repo = AptRepo::start();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let packages = locked(&repo);
    let sh = find(&packages, "sh-tiny", "arm64");
    repo.fault(&sh.filename, Fault::NotFound);

    let err = fetch_debs(&packages, &mirrors(3), &store, 1).unwrap_err();
    // The mirror still serves the Release the lock names: not a stale lock.
    let DebFetchError::Gone {
        package,
        url,
        now: ReleaseNow::Same,
        ..
    } = &err
    else {
        panic!("want a 404 with the locked Release still served, got {err:?}");
    };
    assert_eq!(package, &sh.id());
    assert_eq!(url, &format!("{}/{}", repo.url(), sh.filename));
    let msg = err.to_string();
    assert!(
        msg.contains(url.as_str()) && msg.contains("sh-tiny"),
        "{msg}"
    );
    assert!(!store.has_blob(&format!("sha256:{}", sh.sha256)));
    // A 404 is final: asked once.
    assert_eq!(pool_requests(&repo, &sh.filename), 1);
    assert_eq!(tmp_files(&store), 0);
}

#[test]
fn a_deb_cut_mid_body_is_retried_then_refused_and_nothing_is_cached() {
    let repo = AptRepo::start();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let packages = locked(&repo);
    let mawk = find(&packages, "mawk-tiny", "amd64").clone();
    repo.fault(&mawk.filename, Fault::DieMidBody);

    let err = fetch_debs(std::slice::from_ref(&mawk), &mirrors(3), &store, 2).unwrap_err();
    let DebFetchError::Fetch { package, source } = &err else {
        panic!("want a failed fetch, got {err:?}");
    };
    let FetchError::Interrupted { url, received, .. } = &**source else {
        panic!("want an interrupted download, got {err:?}");
    };
    assert_eq!(package, &mawk.id());
    assert_eq!(url, &format!("{}/{}", repo.url(), mawk.filename));
    assert_eq!(*received, mawk.size / 2);
    assert!(err.to_string().contains(url.as_str()), "{err}");
    // Retried as the policy allows (3 attempts), then given up.
    assert_eq!(pool_requests(&repo, &mawk.filename), 3);
    assert_eq!(store.blobs().unwrap(), vec![]);
    assert_eq!(tmp_files(&store), 0, "each attempt's temp file is removed");

    // Once the mirror behaves, the same call succeeds.
    repo.clear_faults();
    let got = fetch_debs(std::slice::from_ref(&mawk), &mirrors(3), &store, 2).unwrap();
    assert_eq!(got.downloaded, 1);
    assert_eq!(store.verify_blob(&got.blobs[0].digest).unwrap(), mawk.size);
}
