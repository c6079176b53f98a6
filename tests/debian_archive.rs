//! Debian archive access (`imgraph::debian::{signature, release, fetch}`) against a
//! real signed apt repository on 127.0.0.1 (tests/support/apt_repo.rs), and
//! against the live Debian mirror for the real keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use imgraph::cache::Store;
use imgraph::debian::deb822;
use imgraph::debian::fetch::{FetchError, Mirror};
use imgraph::debian::release::{format_date, ReleaseError};
use imgraph::debian::signature::{Keyring, SignatureError};
use imgraph::registry::RetryPolicy;

use crate::support::apt_repo::{AptRepo, Fault, Gpg, ReleaseOptions, SUITE};

/// Quick retries: the faults below are permanent.
fn mirror(repo: &AptRepo) -> Mirror {
    Mirror::new(&repo.url()).unwrap().with_retry(RetryPolicy {
        max_attempts: 2,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
    })
}

fn package_names(data: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = deb822::parse(std::str::from_utf8(data).unwrap())
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}:{}",
                p.get("Package").unwrap(),
                p.get("Architecture").unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

fn blob_count(store: &Store) -> usize {
    store.blobs().unwrap().len()
}

#[test]
fn local_chain_verifies_parses_and_fetches_every_arch_by_hash() {
    let repo = AptRepo::start();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    // The ASCII-armored export of the key works as well as the binary one.
    for keyring in [&repo.keyring, &repo.keyring_asc] {
        let keyring = Keyring::load(keyring).unwrap();
        let suite = mirror(&repo)
            .release(SUITE, &keyring, SystemTime::now(), false)
            .unwrap();
        assert_eq!(suite.fingerprint, repo.key.fingerprint);
        let inrelease = std::fs::read(repo.path("dists/imtest/InRelease")).unwrap();
        assert_eq!(suite.inrelease_sha256, imgraph::digest::sha256(&inrelease));
        let r = &suite.release;
        assert_eq!(r.codename.as_deref(), Some(SUITE));
        assert_eq!(r.suite.as_deref(), Some("testing"));
        assert_eq!(r.origin.as_deref(), Some("imgraph-test"));
        assert_eq!(r.architectures, ["amd64", "arm64"]);
        assert_eq!(r.components, ["main"]);
        assert!(r.acquire_by_hash);
        assert!(r.valid_until.is_none());
        assert!(r.sha256.contains_key("main/binary-amd64/Packages.xz"));
        let err = r.check_arch("riscv64").unwrap_err();
        assert_eq!(
            err.to_string(),
            "suite imtest does not publish architecture riscv64; it has: amd64, arm64"
        );
    }

    let keyring = Keyring::load(&repo.keyring).unwrap();
    let m = mirror(&repo);
    let suite = m
        .release(SUITE, &keyring, SystemTime::now(), false)
        .unwrap();
    repo.clear_requests();
    let wanted = [
        ("main".to_string(), "amd64".to_string()),
        ("main".to_string(), "arm64".to_string()),
    ];
    let indexes: Vec<_> = m
        .packages_many(&suite, &wanted, &store)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for (index, arch) in indexes.iter().zip(["amd64", "arm64"]) {
        assert_eq!(index.arch, arch);
        assert_eq!(index.path, format!("main/binary-{arch}/Packages.xz"));
        assert!(index.downloaded);
        let listed = &suite.release.sha256[&index.path].sha256;
        assert_eq!(index.sha256, format!("sha256:{listed}"));
        assert!(store.has_blob(&index.sha256), "verified index is cached");
        // The decompressed text is the repository's uncompressed Packages, byte for byte.
        let plain =
            std::fs::read(repo.path(&format!("dists/imtest/main/binary-{arch}/Packages"))).unwrap();
        assert_eq!(index.data, plain);
        assert_eq!(
            package_names(&index.data),
            [
                format!("base-tiny:{arch}"),
                format!("gawk-tiny:{arch}"),
                format!("libc-tiny:{arch}"),
                format!("mawk-tiny:{arch}"),
                format!("sh-tiny:{arch}"),
                "tools-all:all".to_string(),
            ]
        );
    }
    let mut requested = repo.requests();
    requested.sort();
    let by_hash = |arch: &str| {
        let hex = &suite.release.sha256[&format!("main/binary-{arch}/Packages.xz")].sha256;
        format!("/dists/imtest/main/binary-{arch}/by-hash/SHA256/{hex}")
    };
    assert_eq!(requested, [by_hash("amd64"), by_hash("arm64")]);
}

#[test]
fn tampered_inrelease_is_a_bad_signature() {
    let repo = AptRepo::start();
    let path = repo.path("dists/imtest/InRelease");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("Origin: imgraph-test\n"));
    // One byte of the signed text.
    std::fs::write(
        &path,
        text.replacen("Origin: imgraph-test", "Origin: imgraph-tesT", 1),
    )
    .unwrap();
    let keyring = Keyring::load(&repo.keyring).unwrap();
    let err = mirror(&repo)
        .release(SUITE, &keyring, SystemTime::now(), false)
        .unwrap_err();
    let FetchError::Signature {
        url,
        source: SignatureError::BadSignature { key, .. },
    } = &err
    else {
        panic!("want a bad signature, got {err:?}");
    };
    assert_eq!(url, &format!("{}/dists/imtest/InRelease", repo.url()));
    assert_eq!(key, &repo.key.fingerprint);
    assert!(err.to_string().contains("BAD signature"), "{err}");
    // The verifier alone, on the same bytes, agrees; and on the untampered file passes.
    let bytes = std::fs::read(&path).unwrap();
    assert!(keyring.verify_cleartext(&bytes, SystemTime::now()).is_err());
    assert!(keyring
        .verify_cleartext(text.as_bytes(), SystemTime::now())
        .is_ok());
}

#[test]
fn unsigned_text_around_the_signed_block_is_refused() {
    let repo = AptRepo::start();
    let text = std::fs::read_to_string(repo.path("dists/imtest/InRelease")).unwrap();
    let keyring = Keyring::load(&repo.keyring).unwrap();
    let verified = keyring
        .verify_cleartext(text.as_bytes(), SystemTime::now())
        .unwrap();
    let release = std::fs::read_to_string(repo.path("dists/imtest/Release")).unwrap();
    // The line break before the signature block is not signed (RFC 9580 7.1).
    assert_eq!(
        verified.text,
        release.strip_suffix('\n').unwrap(),
        "exactly the signed Release text"
    );
    for forged in [
        format!("Origin: evil\n{text}"),
        format!("{text}Origin: evil\n"),
    ] {
        let err = keyring
            .verify_cleartext(forged.as_bytes(), SystemTime::now())
            .unwrap_err();
        assert!(matches!(err, SignatureError::Malformed { .. }), "{err:?}");
    }
}

#[test]
fn inrelease_signed_by_another_key_names_its_key_id() {
    let repo = AptRepo::start();
    let stranger = Gpg::new("imgraph-test-stranger");
    repo.write_release_signed_by(&ReleaseOptions::default(), &stranger);
    let keyring = Keyring::load(&repo.keyring).unwrap();
    let err = mirror(&repo)
        .release(SUITE, &keyring, SystemTime::now(), false)
        .unwrap_err();
    let FetchError::Signature {
        source:
            SignatureError::UnknownKey {
                issuers,
                keyring: path,
            },
        ..
    } = &err
    else {
        panic!("want an unknown key, got {err:?}");
    };
    assert_eq!(issuers, &[stranger.key_id().to_string()]);
    assert_eq!(path, &repo.keyring);
    let msg = err.to_string();
    assert!(msg.contains(stranger.key_id()), "{msg}");
    assert!(msg.contains("not in the keyring"), "{msg}");
}

/// One cleartext message carrying the signatures of two messages over the same text
/// (what `gpg --clearsign -u A -u B` writes), assembled with rPGP because the two
/// keys live in different gpg homes at different faked times.
fn both_signatures(a: &[u8], b: &[u8]) -> Vec<u8> {
    use pgp::composed::{ArmorOptions, CleartextSignedMessage};
    let (a, _) = CleartextSignedMessage::from_string(std::str::from_utf8(a).unwrap()).unwrap();
    let (b, _) = CleartextSignedMessage::from_string(std::str::from_utf8(b).unwrap()).unwrap();
    assert_eq!(a.signed_text(), b.signed_text());
    let text = a.signed_text().replace("\r\n", "\n");
    let sigs = [a.signatures(), b.signatures()].concat();
    CleartextSignedMessage::new_many(&text, |_| Ok(sigs))
        .unwrap()
        .to_armored_string(ArmorOptions::default())
        .unwrap()
        .into_bytes()
}

#[test]
fn signature_by_an_expired_key_is_refused_unless_another_key_signs() {
    let repo = AptRepo::start();
    let old = Gpg::expired("imgraph-test-old-archive");
    repo.write_release_signed_by(&ReleaseOptions::default(), &old);
    let keyring_path = repo.scratch("old.gpg");
    old.export(&keyring_path, false);
    let keyring = Keyring::load(&keyring_path).unwrap();
    let inrelease = std::fs::read(repo.path("dists/imtest/InRelease")).unwrap();
    // Valid while the key was: 2020-01-01 18:00 UTC.
    let then = std::time::UNIX_EPOCH + Duration::from_secs(1_577_901_600);
    let ok = keyring.verify_cleartext(&inrelease, then).unwrap();
    assert_eq!(ok.fingerprint, old.fingerprint);
    let err = mirror(&repo)
        .release(SUITE, &keyring, SystemTime::now(), true)
        .unwrap_err();
    let FetchError::Signature {
        source: SignatureError::KeyNotValid { key, reason },
        ..
    } = &err
    else {
        panic!("want an expired key, got {err:?}");
    };
    assert_eq!(key, &old.fingerprint);
    assert_eq!(reason, "expired on Thu, 02 Jan 2020 12:00:00 UTC");
    // Signed by the expired key and by a valid one (as Debian does across a key
    // change): the valid signature carries it, the expired one is ignored.
    let by_new = repo.scratch("InRelease.new");
    repo.key
        .clearsign(&repo.path("dists/imtest/Release"), &by_new);
    let both = both_signatures(&inrelease, &std::fs::read(&by_new).unwrap());
    let both_ring = repo.scratch("both.gpg");
    let mut bytes = std::fs::read(&keyring_path).unwrap();
    bytes.extend(std::fs::read(&repo.keyring).unwrap());
    std::fs::write(&both_ring, bytes).unwrap();
    let verified = Keyring::load(&both_ring)
        .unwrap()
        .verify_cleartext(&both, SystemTime::now())
        .unwrap();
    assert_eq!(
        verified.signers,
        std::slice::from_ref(&repo.key.fingerprint)
    );
}

#[test]
fn expired_release_fails_unless_allowed() {
    let repo = AptRepo::start_with(&ReleaseOptions {
        valid_for: Some(1),
        ..ReleaseOptions::default()
    });
    let keyring = Keyring::load(&repo.keyring).unwrap();
    let m = mirror(&repo);
    let suite = m.release(SUITE, &keyring, SystemTime::now(), true).unwrap();
    let until = suite.release.valid_until.expect("Valid-Until is written");
    // Valid until then: fine a second before.
    m.release(SUITE, &keyring, until - Duration::from_secs(1), false)
        .unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let err = m
        .release(SUITE, &keyring, SystemTime::now(), false)
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Release {
                source: ReleaseError::Expired { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("expired on {}", format_date(until))),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}/dists/imtest/InRelease", repo.url())),
        "{msg}"
    );
    // --allow-expired still verifies and parses it.
    let suite = m.release(SUITE, &keyring, SystemTime::now(), true).unwrap();
    assert_eq!(suite.release.valid_until, Some(until));
    assert_eq!(suite.fingerprint, repo.key.fingerprint);
}

#[test]
fn swapped_packages_index_is_refused_and_nothing_cached() {
    // Without by-hash, so the swapped file is the one fetched.
    let repo = AptRepo::start_with(&ReleaseOptions {
        by_hash: false,
        ..ReleaseOptions::default()
    });
    let keyring = Keyring::load(&repo.keyring).unwrap();
    let m = mirror(&repo);
    let suite = m
        .release(SUITE, &keyring, SystemTime::now(), false)
        .unwrap();
    // arm64's index served as amd64's: a real xz Packages file, just not the listed one.
    let arm = std::fs::read(repo.path("dists/imtest/main/binary-arm64/Packages.xz")).unwrap();
    std::fs::write(
        repo.path("dists/imtest/main/binary-amd64/Packages.xz"),
        &arm,
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let err = m.packages(&suite, "main", "amd64", &store).unwrap_err();
    let expected = suite.release.sha256["main/binary-amd64/Packages.xz"]
        .sha256
        .clone();
    let actual = imgraph::digest::sha256(&arm);
    let FetchError::DigestMismatch {
        url,
        expected: e,
        actual: a,
        ..
    } = &err
    else {
        panic!("want a digest mismatch, got {err:?}");
    };
    assert_eq!(
        url,
        &format!("{}/dists/imtest/main/binary-amd64/Packages.xz", repo.url())
    );
    assert_eq!(e, &expected);
    assert_eq!(format!("sha256:{a}"), actual);
    let msg = err.to_string();
    assert!(msg.contains(&expected) && msg.contains(a.as_str()), "{msg}");
    assert_eq!(
        blob_count(&store),
        0,
        "nothing that failed a check is cached"
    );
    // The same applies to a by-hash file that lies about its name.
    let repo2 = AptRepo::start();
    let suite2 = mirror(&repo2)
        .release(
            SUITE,
            &Keyring::load(&repo2.keyring).unwrap(),
            SystemTime::now(),
            false,
        )
        .unwrap();
    let listed = &suite2.release.sha256["main/binary-amd64/Packages.xz"].sha256;
    let arm2 = std::fs::read(repo2.path("dists/imtest/main/binary-arm64/Packages.xz")).unwrap();
    std::fs::write(
        repo2.path(&format!(
            "dists/imtest/main/binary-amd64/by-hash/SHA256/{listed}"
        )),
        arm2,
    )
    .unwrap();
    let err = mirror(&repo2)
        .packages(&suite2, "main", "amd64", &store)
        .unwrap_err();
    assert!(matches!(err, FetchError::DigestMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("/by-hash/SHA256/"), "{err}");
    assert_eq!(blob_count(&store), 0);
}

#[test]
fn missing_index_and_dying_mirror_name_the_url() {
    let repo = AptRepo::start();
    let keyring = Keyring::load(&repo.keyring).unwrap();
    let m = mirror(&repo);
    let suite = m
        .release(SUITE, &keyring, SystemTime::now(), false)
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();

    // 404 for the index (by-hash and plain path alike): the plain URL is named.
    repo.fault("binary-amd64/", Fault::NotFound);
    let err = m.packages(&suite, "main", "amd64", &store).unwrap_err();
    let plain = format!("{}/dists/imtest/main/binary-amd64/Packages.xz", repo.url());
    assert!(
        matches!(&err, FetchError::IndexMissing { url, .. } if *url == plain),
        "{err:?}"
    );
    assert!(err.to_string().contains(&plain), "{err}");

    // A by-hash 404 alone falls back to the plain path.
    repo.clear_faults();
    repo.fault("binary-amd64/by-hash", Fault::NotFound);
    repo.clear_requests();
    m.packages(&suite, "main", "amd64", &store).unwrap();
    assert_eq!(repo.requests().len(), 2, "{:?}", repo.requests());
    assert_eq!(
        repo.requests()[1],
        "/dists/imtest/main/binary-amd64/Packages.xz"
    );

    // Dies mid-body, every attempt: an error naming the URL, nothing cached.
    repo.clear_faults();
    repo.fault("binary-arm64/", Fault::DieMidBody);
    let before = blob_count(&store);
    let err = m.packages(&suite, "main", "arm64", &store).unwrap_err();
    let FetchError::Interrupted { url, received, .. } = &err else {
        panic!("want an interrupted download, got {err:?}");
    };
    assert!(
        url.contains("/dists/imtest/main/binary-arm64/by-hash/SHA256/"),
        "{url}"
    );
    let size = suite.release.sha256["main/binary-arm64/Packages.xz"].size;
    assert_eq!(*received, size / 2);
    assert!(err.to_string().contains(url.as_str()), "{err}");
    assert_eq!(blob_count(&store), before, "nothing cached");
    // It was retried (the policy allows 2 attempts).
    let tries = repo
        .requests()
        .iter()
        .filter(|p| p.contains("binary-arm64"))
        .count();
    assert_eq!(tries, 2);

    // InRelease itself 404ing names its URL too (and the suite as unknown).
    repo.fault("InRelease", Fault::NotFound);
    let err = m
        .release(SUITE, &keyring, SystemTime::now(), false)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("{}/dists/imtest/InRelease", repo.url())),
        "{err}"
    );
}

#[test]
fn second_fetch_with_unchanged_inrelease_downloads_only_inrelease() {
    let repo = AptRepo::start();
    let keyring = Keyring::load(&repo.keyring).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let wanted = [
        ("main".to_string(), "amd64".to_string()),
        ("main".to_string(), "arm64".to_string()),
    ];
    let lock = |m: &Mirror| {
        let suite = m
            .release(SUITE, &keyring, SystemTime::now(), false)
            .unwrap();
        let indexes: Vec<_> = m
            .packages_many(&suite, &wanted, &store)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        (suite, indexes)
    };
    // The client counts the body bytes it receives.
    let counted = |repo: &AptRepo| {
        let bytes = Arc::new(AtomicU64::new(0));
        let sink = bytes.clone();
        let m = mirror(repo).with_progress(move |n| {
            sink.fetch_add(n, Ordering::Relaxed);
        });
        (m, bytes)
    };
    let inrelease = std::fs::metadata(repo.path("dists/imtest/InRelease"))
        .unwrap()
        .len();
    let (m, bytes) = counted(&repo);
    let (first, one) = lock(&m);
    assert!(one.iter().all(|i| i.downloaded));
    assert_eq!(repo.requests().len(), 3);
    let xz: u64 = ["amd64", "arm64"]
        .iter()
        .map(|a| first.release.sha256[&format!("main/binary-{a}/Packages.xz")].size)
        .sum();
    assert_eq!(bytes.load(Ordering::Relaxed), inrelease + xz);
    repo.clear_requests();
    // A new client (a new run) with the same cache.
    let (m, bytes) = counted(&repo);
    let (second, two) = lock(&m);
    assert_eq!(repo.requests(), ["/dists/imtest/InRelease"]);
    assert_eq!(bytes.load(Ordering::Relaxed), inrelease);
    assert_eq!(first.inrelease_sha256, second.inrelease_sha256);
    for (a, b) in one.iter().zip(&two) {
        assert!(!b.downloaded);
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.data, b.data);
    }
}

const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

#[test]
fn live_bookworm_and_trixie_inrelease_verify_with_debians_keyring() {
    let keyring = Keyring::load(std::path::Path::new(DEBIAN_KEYRING)).unwrap();
    let m = Mirror::new(DEBIAN_MIRROR).unwrap();
    // Primary keys (`gpg --show-keys debian-archive-keyring.gpg`): the archive's
    // automatic signing keys are RSA 4096 and sign with a subkey; the stable release
    // keys are ed25519.
    for (suite, automatic, release_key) in [
        (
            "bookworm",
            "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8",
            "4D64FEC119C2029067D6E791F8D2585B8783D481",
        ),
        (
            "trixie",
            "04B54C3CDCA79751B16BC6B5225629DF75B188BD",
            "41587F7DB8C774BCCF131416762F67A0B2C39DE4",
        ),
    ] {
        let s = m
            .release(suite, &keyring, SystemTime::now(), false)
            .unwrap_or_else(|e| panic!("{suite}: {e}"));
        assert_eq!(s.release.codename.as_deref(), Some(suite));
        assert_eq!(s.release.origin.as_deref(), Some("Debian"));
        assert!(s.release.acquire_by_hash);
        assert!(s.release.architectures.iter().any(|a| a == "arm64"));
        assert!(s.release.date < SystemTime::now());
        for key in [automatic, release_key] {
            assert!(
                s.signers.iter().any(|k| k == key),
                "{suite}: {key} in {:?}",
                s.signers
            );
        }
        assert_eq!(s.fingerprint, s.signers[0]);
    }
}

#[test]
fn live_bookworm_main_amd64_packages_verify() {
    let keyring = Keyring::load(std::path::Path::new(DEBIAN_KEYRING)).unwrap();
    let m = Mirror::new(DEBIAN_MIRROR).unwrap();
    let suite = m
        .release("bookworm", &keyring, SystemTime::now(), false)
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let index = m.packages(&suite, "main", "amd64", &store).unwrap();
    assert_eq!(index.path, "main/binary-amd64/Packages.xz");
    assert!(store.has_blob(&index.sha256));
    let text = std::str::from_utf8(&index.data).unwrap();
    let paragraphs = deb822::parse(text).unwrap();
    assert!(paragraphs.len() > 50_000, "{}", paragraphs.len());
    assert!(paragraphs
        .iter()
        .any(|p| p.get("Package") == Some("libc6") && p.get("Architecture") == Some("amd64")));
    let again = m.packages(&suite, "main", "amd64", &store).unwrap();
    assert!(!again.downloaded);
}
