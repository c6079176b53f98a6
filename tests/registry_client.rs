//! The registry client against a real `docker-registry` on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use imgraph::registry::{
    sha256_digest, BlobSource, Client, CredentialSource, ManifestBlob, PushEvent, PushPlan,
    Registry, RegistryError, RetryPolicy,
};

use crate::support::fault_proxy::{Fault, FaultProxy};
use crate::support::registry::{Auth, RegistryGuard};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A fake single-platform image on disk: layers + config, a manifest, an index.
struct FakeImage {
    _dir: tempfile::TempDir,
    plan: PushPlan,
}

/// A real gzip stream (skopeo recompresses layers that are not) of about
/// `len` incompressible bytes derived from `seed`.
fn bytes_for(seed: &str, len: usize) -> Vec<u8> {
    use std::io::Write as _;
    let mut raw = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut raw);
    let mut gz =
        flate2::write::GzEncoder::new(Vec::with_capacity(len + 1024), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

fn write_blob(dir: &Path, bytes: &[u8]) -> BlobSource {
    let digest = sha256_digest(bytes);
    let path = dir.join(digest.replace(':', "-"));
    std::fs::write(&path, bytes).unwrap();
    BlobSource {
        digest,
        size: bytes.len() as u64,
        path,
    }
}

/// Layers of `layer_sizes` bytes, content derived from `seed`.
fn fake_image(seed: &str, repository: &str, layer_sizes: &[usize]) -> FakeImage {
    let layers: Vec<(String, usize)> = layer_sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("{seed}/layer{i}"), n))
        .collect();
    fake_image_with(seed, repository, &layers)
}

/// Layers given as (content seed, size).
fn fake_image_with(seed: &str, repository: &str, layers: &[(String, usize)]) -> FakeImage {
    let dir = tempfile::tempdir().unwrap();
    let layers: Vec<BlobSource> = layers
        .iter()
        .map(|(s, n)| write_blob(dir.path(), &bytes_for(s, *n)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
    });
    let config = write_blob(dir.path(), config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.size},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l.digest, "size": l.size,
        })).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let manifest = ManifestBlob {
        digest: sha256_digest(&manifest),
        media_type: MANIFEST.into(),
        bytes: manifest,
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": MANIFEST, "digest": manifest.digest, "size": manifest.bytes.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    })
    .to_string()
    .into_bytes();
    let index = ManifestBlob {
        digest: sha256_digest(&index),
        media_type: INDEX.into(),
        bytes: index,
    };
    let mut blobs = layers;
    blobs.push(config);
    FakeImage {
        _dir: dir,
        plan: PushPlan {
            repository: repository.into(),
            blobs,
            manifests: vec![manifest],
            index,
            referrers: vec![],
            signatures: vec![],
            tags: vec!["bookworm".into(), "latest".into()],
            mount_from: vec![],
        },
    }
}

fn client(reg: &RegistryGuard, creds: CredentialSource) -> Client {
    Client::new(
        Registry {
            host: reg.url(),
            insecure: true,
        },
        creds,
    )
}

fn quiet(_: PushEvent) {}

/// A DOCKER_CONFIG directory holding `json` as config.json.
fn docker_config(json: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), json).unwrap();
    dir
}

fn auths_config(host: &str, user: &str, pass: &str) -> tempfile::TempDir {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    docker_config(&format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#))
}

fn skopeo(args: &[&str]) -> std::process::Output {
    let out = Command::new("skopeo").args(args).output().expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn push_to_plain_registry_reads_back_with_skopeo() {
    let reg = RegistryGuard::start(Auth::None);
    let img = fake_image("plain", "bitnami/minideb", &[1000, 3000]);
    let c = client(&reg, CredentialSource::anonymous());
    let events = Mutex::new(Vec::new());
    let report = c
        .push(&img.plan, &|e| events.lock().unwrap().push(e))
        .unwrap();
    assert_eq!(report.uploaded.len(), 3, "{report:?}");
    assert!(report.skipped.is_empty() && report.mounted.is_empty());
    assert_eq!(report.manifests_put, 2);
    assert_eq!(report.tags_put, vec!["bookworm", "latest"]);
    // Manifests naming blobs this push uploaded, and tags of an index it wrote,
    // go up without a HEAD first: they cannot be there yet.
    let manifest_heads: Vec<_> = reg
        .request_log()
        .into_iter()
        .filter(|e| e.method == "HEAD" && e.path.contains("/manifests/"))
        .collect();
    assert!(manifest_heads.is_empty(), "{manifest_heads:#?}");

    // skopeo sees the index under the tag, byte for byte.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/bitnami/minideb:bookworm", reg.url()),
    ]);
    assert_eq!(sha256_digest(&raw.stdout), img.plan.index.digest);
    let oci = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/bitnami/minideb:latest", reg.url()),
        &format!("oci:{}:latest", oci.path().display()),
    ]);
    for b in &img.plan.blobs {
        let hex = b.digest.strip_prefix("sha256:").unwrap();
        let path = oci.path().join("blobs/sha256").join(hex);
        let copied = std::fs::read(&path).unwrap_or_else(|e| {
            let listing = Command::new("find")
                .arg(oci.path())
                .output()
                .unwrap()
                .stdout;
            panic!(
                "{}: {e}\n{}",
                path.display(),
                String::from_utf8_lossy(&listing)
            )
        });
        assert_eq!(copied, std::fs::read(&b.path).unwrap());
    }

    // Order: every blob is complete before the first manifest PUT, tags last.
    let log = reg.request_log();
    let put_manifest = |e: &&crate::support::registry::LogEntry| {
        e.method == "PUT" && e.path.contains("/manifests/")
    };
    let first_manifest = log.iter().position(|e| put_manifest(&e)).unwrap();
    let last_blob = log
        .iter()
        .rposition(|e| e.method == "PUT" && e.path.contains("/blobs/"))
        .unwrap();
    assert!(last_blob < first_manifest, "{log:#?}");
    let manifest_puts: Vec<&str> = log
        .iter()
        .filter(put_manifest)
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(
        manifest_puts,
        vec![
            format!(
                "/v2/bitnami/minideb/manifests/{}",
                img.plan.manifests[0].digest
            )
            .as_str(),
            format!("/v2/bitnami/minideb/manifests/{}", img.plan.index.digest).as_str(),
            "/v2/bitnami/minideb/manifests/bookworm",
            "/v2/bitnami/minideb/manifests/latest",
        ]
    );

    // Reading back by digest.
    assert_eq!(
        c.head_manifest("bitnami/minideb", "bookworm").unwrap(),
        Some(img.plan.index.digest.clone())
    );
    assert_eq!(c.head_manifest("bitnami/minideb", "nope").unwrap(), None);
    let (mt, bytes) = c
        .get_manifest("bitnami/minideb", &img.plan.index.digest)
        .unwrap();
    assert_eq!((mt.as_str(), bytes), (INDEX, img.plan.index.bytes.clone()));
    let events = events.into_inner().unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, PushEvent::BlobUploaded { .. }))
            .count(),
        3
    );
}

#[test]
fn repush_uploads_no_blob_and_writes_nothing() {
    let reg = RegistryGuard::start(Auth::None);
    let img = fake_image("repush", "a/b", &[100, 200]);
    let c = client(&reg, CredentialSource::anonymous());
    c.push(&img.plan, &quiet).unwrap();
    reg.clear_log();
    let report = client(&reg, CredentialSource::anonymous())
        .push(&img.plan, &quiet)
        .unwrap();
    assert!(
        report.uploaded.is_empty() && report.mounted.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.skipped.len(), 3);
    assert_eq!((report.manifests_put, report.manifests_skipped), (0, 2));
    assert!(report.tags_put.is_empty());
    let log = reg.request_log();
    assert!(!log.is_empty());
    let writes: Vec<_> = log
        .iter()
        .filter(|e| e.method != "HEAD" && e.method != "GET")
        .collect();
    assert!(writes.is_empty(), "re-push wrote: {writes:#?}");

    // Moving a tag: only the index and that tag are written.
    // A new image sharing one layer: only the other layer and the config go up.
    let moved_image = fake_image_with(
        "repush-2",
        "a/b",
        &[("repush/layer0".into(), 100), ("new".into(), 200)],
    );
    let moved = &moved_image.plan;
    let report = c.push(moved, &quiet).unwrap();
    assert_eq!(report.skipped, vec![img.plan.blobs[0].digest.clone()]);
    assert_eq!(report.uploaded.len(), 2);
}

#[test]
fn large_blob_goes_in_chunks_and_reads_back_verified() {
    let reg = RegistryGuard::start(Auth::None);
    let img = fake_image("large", "big/one", &[20 << 20, 10]);
    let c = client(&reg, CredentialSource::anonymous()).with_chunking(8 << 20, 8 << 20);
    let progress = Mutex::new(0u32);
    let report = c
        .push(&img.plan, &|e| {
            if let PushEvent::BlobProgress { .. } = e {
                *progress.lock().unwrap() += 1;
            }
        })
        .unwrap();
    assert_eq!(report.uploaded.len(), 3);
    let log = reg.request_log();
    let patches = log.iter().filter(|e| e.method == "PATCH").count();
    assert_eq!(patches, 3, "20 MiB in 8 MiB chunks: {log:#?}");
    assert!(log
        .iter()
        .filter(|e| e.method == "PATCH")
        .all(|e| e.status == 202));
    assert_eq!(*progress.lock().unwrap(), 3);

    let big = &img.plan.blobs[0];
    let mut out = Vec::new();
    let n = c.get_blob("big/one", &big.digest, &mut out).unwrap();
    assert_eq!(n, big.size);
    assert_eq!(sha256_digest(&out), big.digest);
    let missing = format!("sha256:{}", "0".repeat(64));
    let err = c
        .get_blob("big/one", &missing, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, RegistryError::BlobNotFound { .. }), "{err:?}");
}

/// By default a blob larger than a monolithic PUT goes up in one streamed
/// PATCH (as skopeo sends it), and that upload is still retried as a whole.
#[test]
fn large_blob_goes_in_one_patch_and_a_dropped_patch_is_retried() {
    let reg = RegistryGuard::start(Auth::None);
    let proxy = FaultProxy::start(&reg.url());
    let img = fake_image("one-patch", "big/one", &[20 << 20, 10]);
    let c = Client::new(
        Registry {
            host: proxy.url(),
            insecure: true,
        },
        CredentialSource::anonymous(),
    )
    .with_retry(RetryPolicy {
        max_attempts: 3,
        initial_delay: std::time::Duration::from_millis(50),
        max_delay: std::time::Duration::from_millis(200),
    });
    proxy.inject("PATCH", "/blobs/uploads/", Fault::DropConnection, 1);
    let report = c.push(&img.plan, &quiet).unwrap();
    assert_eq!(report.uploaded.len(), 3);
    assert_eq!(proxy.pending_faults(), 0, "the PATCH was never sent");
    let patches: Vec<u16> = proxy
        .log()
        .iter()
        .filter(|(m, ..)| m == "PATCH")
        .map(|(.., status)| *status)
        .collect();
    assert_eq!(patches, vec![0, 202], "one PATCH per attempt");
    // The registry took the whole blob from that one PATCH.
    let log = reg.request_log();
    assert_eq!(log.iter().filter(|e| e.method == "PATCH").count(), 1);
    let big = &img.plan.blobs[0];
    let mut out = Vec::new();
    assert_eq!(
        c.get_blob("big/one", &big.digest, &mut out).unwrap(),
        big.size
    );
    assert_eq!(sha256_digest(&out), big.digest);
}

/// A local blob file that no longer matches its digest stops its streamed
/// upload before the last byte: the registry commits nothing, no tag moves.
#[test]
fn a_corrupt_large_blob_is_refused_while_it_streams() {
    let reg = RegistryGuard::start(Auth::None);
    let img = fake_image("corrupt-patch", "big/bad", &[12 << 20, 10]);
    let big = img.plan.blobs[0].clone();
    let mut bytes = std::fs::read(&big.path).unwrap();
    bytes[(6 << 20) + 1] ^= 0x55;
    std::fs::write(&big.path, &bytes).unwrap();
    let c = client(&reg, CredentialSource::anonymous());
    let err = c.push(&img.plan, &quiet).unwrap_err();
    match &err {
        RegistryError::LocalBlobCorrupt { digest, found, .. } => {
            assert_eq!(digest, &big.digest);
            assert_eq!(found, &sha256_digest(&bytes));
        }
        other => panic!("expected LocalBlobCorrupt, got {other:?}"),
    }
    let err = c
        .get_blob("big/bad", &big.digest, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, RegistryError::BlobNotFound { .. }), "{err:?}");
    assert_eq!(c.head_manifest("big/bad", "bookworm").unwrap(), None);
    let hex = big.digest.trim_start_matches("sha256:");
    let committed = reg
        .request_log()
        .into_iter()
        .filter(|e| e.method == "PUT" && e.status == 201 && e.path.contains(hex))
        .count();
    assert_eq!(committed, 0, "the corrupt blob was committed");
}

#[test]
fn second_repository_mounts_blobs_instead_of_uploading() {
    let reg = RegistryGuard::start(Auth::None);
    let img = fake_image("mount", "team/a", &[500, 600]);
    let c = client(&reg, CredentialSource::anonymous());
    c.push(&img.plan, &quiet).unwrap();
    reg.clear_log();
    let mut plan = img.plan.clone();
    plan.repository = "team/b".into();
    plan.mount_from = vec!["team/a".into()];
    let report = c.push(&plan, &quiet).unwrap();
    assert_eq!(report.mounted.len(), 3, "{report:?}");
    assert!(report.uploaded.is_empty());
    let log = reg.request_log();
    let mounts: Vec<_> = log
        .iter()
        .filter(|e| e.method == "POST" && e.path.contains("mount="))
        .collect();
    assert_eq!(mounts.len(), 3, "{log:#?}");
    assert!(mounts.iter().all(|e| e.status == 201), "{mounts:#?}");
    assert!(!log.iter().any(|e| e.method == "PATCH"));
    assert!(!log
        .iter()
        .any(|e| e.method == "PUT" && e.path.contains("/blobs/")));
}

#[test]
fn htpasswd_right_and_wrong_credentials() {
    let (user, pass) = ("imgraph", "correct-horse-battery-staple");
    let reg = RegistryGuard::start(Auth::Htpasswd {
        user: user.into(),
        pass: pass.into(),
    });
    let img = fake_image("htpasswd", "sec/img", &[100]);

    let good = auths_config(&reg.url(), user, pass);
    let c = client(&reg, CredentialSource::from_dir(good.path()).unwrap());
    let report = c.push(&img.plan, &quiet).unwrap();
    assert_eq!(report.uploaded.len(), 2);
    assert_eq!(
        c.head_manifest("sec/img", "bookworm").unwrap(),
        Some(img.plan.index.digest.clone())
    );

    let wrong_pass = "WrongPassword-9f8e7d";
    let bad = auths_config(&format!("https://{}/v1/", reg.url()), user, wrong_pass);
    let c = client(&reg, CredentialSource::from_dir(bad.path()).unwrap());
    let err = c.push(&img.plan, &quiet).unwrap_err();
    match &err {
        RegistryError::Unauthorized { host, .. } => assert_eq!(host, &reg.url()),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    eprintln!("wrong password: {err}");
    let shown = format!("{err} | {err:?} | {c:?}");
    assert!(shown.contains(&reg.url()), "{shown}");
    assert!(!shown.contains(wrong_pass), "secret leaked: {shown}");
    assert!(
        !shown.contains("V3JvbmdQYXNzd29yZC05ZjhlN2Q"),
        "base64 secret leaked: {shown}"
    );

    // No credentials at all: say so, not "rejected the credentials".
    let anon = client(&reg, CredentialSource::anonymous());
    let err = anon.head_manifest("sec/img", "bookworm").unwrap_err();
    assert!(
        matches!(&err, RegistryError::NoCredentials { host, .. } if *host == reg.url()),
        "{err:?}"
    );
    assert!(err.to_string().contains("none were found"), "{err}");
}

#[test]
fn token_auth_goes_through_the_bearer_flow() {
    let (user, pass) = ("tokenuser", "token-pass-123");
    let reg = RegistryGuard::start(Auth::Token {
        user: user.into(),
        pass: pass.into(),
    });
    let img = fake_image("token", "tok/img", &[300, 400]);
    let cfg = auths_config(&reg.url(), user, pass);
    let c = client(&reg, CredentialSource::from_dir(cfg.path()).unwrap());
    let report = c.push(&img.plan, &quiet).unwrap();
    assert_eq!(report.uploaded.len(), 3);
    let hits = reg.token_requests();
    assert!(hits >= 1, "token issuer never asked");
    // One token per scope set, cached: not one per request.
    let log = reg.request_log();
    assert!(
        hits < log.len() / 2,
        "{hits} token requests for {} registry requests",
        log.len()
    );
    assert!(log.iter().any(|e| e.status == 401));
    assert_eq!(
        c.get_manifest("tok/img", &img.plan.index.digest).unwrap().1,
        img.plan.index.bytes
    );

    // identitytoken: exchanged as an OAuth2 refresh token.
    let cfg = docker_config(&format!(
        r#"{{"auths":{{"{}":{{"auth":"","identitytoken":"{pass}"}}}}}}"#,
        reg.url()
    ));
    let c = client(&reg, CredentialSource::from_dir(cfg.path()).unwrap());
    assert_eq!(
        c.head_manifest("tok/img", "latest").unwrap(),
        Some(img.plan.index.digest.clone())
    );

    // Wrong password: the issuer says 401 -> Unauthorized naming the host.
    let bad_pass = "not-the-token-pass";
    let cfg = auths_config(&reg.url(), user, bad_pass);
    let c = client(&reg, CredentialSource::from_dir(cfg.path()).unwrap());
    let err = c.push(&img.plan, &quiet).unwrap_err();
    assert!(
        matches!(&err, RegistryError::Unauthorized { host, .. } if *host == reg.url()),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(bad_pass));
}

/// A `docker-credential-test` script in a temp dir, answering for `host`.
fn credential_helper(host: &str, user: &str, pass: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("docker-credential-test");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\nif [ \"$server\" = \"{host}\" ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{pass}\"}}' \"$server\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn helper_path(dir: &Path) -> std::ffi::OsString {
    let mut paths: Vec<PathBuf> = vec![dir.to_owned()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

#[test]
fn creds_store_and_cred_helpers_are_used() {
    let (user, pass) = ("helperuser", "helper-secret-42");
    let reg = RegistryGuard::start(Auth::Htpasswd {
        user: user.into(),
        pass: pass.into(),
    });
    let img = fake_image("helper", "help/img", &[100]);
    let helper = credential_helper(&reg.url(), user, pass);

    let store = docker_config(r#"{"auths":{},"credsStore":"test"}"#);
    let creds = CredentialSource::from_dir(store.path())
        .unwrap()
        .with_helper_path(helper_path(helper.path()));
    client(&reg, creds).push(&img.plan, &quiet).unwrap();

    let per_host = docker_config(&format!(r#"{{"credHelpers":{{"{}":"test"}}}}"#, reg.url()));
    let creds = CredentialSource::from_dir(per_host.path())
        .unwrap()
        .with_helper_path(helper_path(helper.path()));
    assert_eq!(
        client(&reg, creds)
            .head_manifest("help/img", "bookworm")
            .unwrap(),
        Some(img.plan.index.digest.clone())
    );

    // A helper that is not installed is named in the error.
    let missing = docker_config(r#"{"credsStore":"nonexistent-helper"}"#);
    let creds = CredentialSource::from_dir(missing.path())
        .unwrap()
        .with_helper_path(helper.path().as_os_str().to_owned());
    let err = client(&reg, creds)
        .head_manifest("help/img", "bookworm")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("docker-credential-nonexistent-helper"),
        "{err}"
    );
}

#[test]
fn registry_killed_mid_push_fails_cleanly_then_repush_completes() {
    let reg = RegistryGuard::start(Auth::None);
    let img = fake_image("killed", "k/img", &[12 << 20, 50]);
    let c = client(&reg, CredentialSource::anonymous())
        .with_chunking(1 << 20, 1 << 20)
        .with_retry(RetryPolicy {
            max_attempts: 3,
            initial_delay: std::time::Duration::from_millis(50),
            max_delay: std::time::Duration::from_millis(200),
        });
    let started = std::time::Instant::now();
    let err = c
        .push(&img.plan, &|e| {
            if let PushEvent::BlobProgress { sent, .. } = e {
                if sent >= 3 << 20 {
                    reg.kill();
                }
            }
        })
        .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    eprintln!("killed mid-push: {err}");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains(&reg.url()), "{err}");

    reg.restart();
    // No tag points at the half-pushed image.
    assert_eq!(c.head_manifest("k/img", "bookworm").unwrap(), None);
    let report = c.push(&img.plan, &quiet).unwrap();
    assert_eq!(report.tags_put, vec!["bookworm", "latest"]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/k/img:bookworm", reg.url()),
    ]);
    assert_eq!(sha256_digest(&raw.stdout), img.plan.index.digest);
    let oci = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/k/img:bookworm", reg.url()),
        &format!("oci:{}:bookworm", oci.path().display()),
    ]);
}

/// Raw HTTP, as another tool would write: a blob (one upload session).
fn raw_put_blob(reg: &RegistryGuard, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let resp = ureq::post(format!("http://{}/v2/{repo}/blobs/uploads/", reg.url()))
        .send_empty()
        .unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let location = if location.starts_with('/') {
        format!("http://{}{location}", reg.url())
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    ureq::put(format!("{location}{sep}digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .send(bytes)
        .unwrap();
    digest
}

/// Raw HTTP: a manifest at `reference`.
fn raw_put_manifest(
    reg: &RegistryGuard,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) {
    ureq::put(format!(
        "http://{}/v2/{repo}/manifests/{reference}",
        reg.url()
    ))
    .header("Content-Type", media_type)
    .send(bytes)
    .unwrap();
}

/// An OCI 1.1 artifact manifest of `artifact_type` about `subject`, with one layer.
fn artifact(
    artifact_type: &str,
    subject: &ManifestBlob,
    layer: &BlobSource,
    empty: &str,
    annotations: serde_json::Value,
) -> ManifestBlob {
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer.digest, "size": layer.size}],
        "subject": {"mediaType": MANIFEST, "digest": subject.digest, "size": subject.bytes.len()},
        "annotations": annotations,
    }))
    .unwrap();
    ManifestBlob {
        digest: sha256_digest(&bytes),
        media_type: MANIFEST.into(),
        bytes,
    }
}

/// Docker's registry 2.8 has no referrers API: the push writes the artifact
/// manifest by digest and lists it in the `sha256-<hex>` fallback tag, keeping
/// the referrer another tool put there first; both are found with skopeo and
/// the client's `referrers`; a re-push writes nothing; tags move last.
#[test]
fn referrers_go_to_the_fallback_tag_keeping_other_tools_entries() {
    let reg = RegistryGuard::start(Auth::None);
    let mut img = fake_image("referrers", "test/ref", &[300]);
    let subject = img.plan.manifests[0].clone();
    let repo = "test/ref";

    // Another tool attached something first.
    let empty = raw_put_blob(&reg, repo, b"{}");
    let foreign_layer = write_blob(img._dir.path(), b"{\"foreign\":true}");
    raw_put_blob(&reg, repo, b"{\"foreign\":true}");
    let foreign = artifact(
        "application/vnd.example.foreign",
        &subject,
        &foreign_layer,
        &empty,
        serde_json::json!({"com.example.tool": "other"}),
    );
    raw_put_manifest(&reg, repo, &foreign.digest, MANIFEST, &foreign.bytes);
    let foreign_entry = serde_json::json!({
        "mediaType": MANIFEST, "digest": foreign.digest, "size": foreign.bytes.len(),
        "artifactType": "application/vnd.example.foreign",
        "annotations": {"com.example.tool": "other"},
    });
    // And one that names another subject but was listed under this one.
    let misfiled = artifact(
        "application/vnd.example.misfiled",
        &img.plan.index,
        &foreign_layer,
        &empty,
        serde_json::json!({}),
    );
    raw_put_manifest(&reg, repo, &misfiled.digest, MANIFEST, &misfiled.bytes);
    let misfiled_entry = serde_json::json!({
        "mediaType": MANIFEST, "digest": misfiled.digest, "size": misfiled.bytes.len(),
        "artifactType": "application/vnd.example.misfiled",
    });
    let fallback = format!("sha256-{}", subject.digest.strip_prefix("sha256:").unwrap());
    raw_put_manifest(
        &reg,
        repo,
        &fallback,
        INDEX,
        &serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": INDEX,
            "manifests": [foreign_entry.clone(), misfiled_entry.clone()],
        }))
        .unwrap(),
    );

    // Ours: an SBOM-like artifact.
    let empty_blob = write_blob(img._dir.path(), b"{}");
    let sbom = write_blob(img._dir.path(), br#"{"spdxVersion":"SPDX-2.3"}"#);
    let ours = artifact(
        "application/spdx+json",
        &subject,
        &sbom,
        &empty_blob.digest,
        serde_json::json!({"org.opencontainers.image.created": "2024-06-01T00:00:00Z"}),
    );
    let referrer = imgraph::registry::Referrer {
        manifest: ours.clone(),
        blobs: vec![empty_blob, sbom],
        subject: subject.digest.clone(),
    };
    img.plan.referrers = vec![referrer.clone()];
    let c = client(&reg, CredentialSource::anonymous());
    assert!(!c.has_referrer(repo, &referrer).unwrap());
    reg.clear_log();
    let report = c.push(&img.plan, &quiet).unwrap();
    assert_eq!(
        report.referrers_put, 2,
        "the manifest and the fallback index"
    );

    // The fallback index as skopeo reads it: the other tool's entry untouched, ours added.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/{repo}:{fallback}", reg.url()),
    ]);
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{index}");
    assert_eq!(entries[0], foreign_entry);
    assert_eq!(entries[1], misfiled_entry);
    let entry = &entries[2];
    assert_eq!(entry["digest"], ours.digest);
    assert_eq!(entry["artifactType"], "application/spdx+json");
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.created"],
        "2024-06-01T00:00:00Z"
    );
    assert_eq!(entry["size"], ours.bytes.len());
    let listed: Vec<String> = c
        .referrers(repo, &subject.digest)
        .unwrap()
        .into_iter()
        .map(|d| d.digest)
        .collect();
    assert_eq!(
        listed,
        vec![
            foreign.digest.clone(),
            misfiled.digest.clone(),
            ours.digest.clone()
        ]
    );
    assert!(c.has_referrer(repo, &referrer).unwrap());
    // Read back by digest: the bytes we pushed, naming the subject.
    let (_, bytes) = c.get_manifest(repo, &ours.digest).unwrap();
    assert_eq!(bytes, ours.bytes);

    // Referrers before tags.
    let log = reg.request_log();
    let put_at = |needle: &str| {
        log.iter()
            .position(|e| e.method == "PUT" && e.path.contains(needle))
            .unwrap_or_else(|| panic!("no PUT of {needle}: {log:#?}"))
    };
    assert!(put_at(&fallback) < put_at("/manifests/bookworm"));
    assert!(put_at(&format!("/manifests/{}", ours.digest)) < put_at(&fallback));

    // A re-push writes nothing.
    reg.clear_log();
    let report = c.push(&img.plan, &quiet).unwrap();
    assert_eq!(report.referrers_put, 0);
    let writes: Vec<_> = reg
        .request_log()
        .into_iter()
        .filter(|e| e.method != "HEAD" && e.method != "GET")
        .collect();
    assert!(writes.is_empty(), "re-push wrote: {writes:#?}");

    // What `verify --pushed` checks per platform: the build's attachment is
    // listed and names its subject; an SBOM with other content (another
    // digest) is missing; a listed manifest naming another subject is wrong.
    use imgraph::exec::verify_pushed::{check_referrers, PushedProblem};
    use imgraph::exec::AttachmentOut;
    let desc = |m: &ManifestBlob| imgraph::cache::Descriptor {
        digest: m.digest.clone(),
        size: m.bytes.len() as u64,
    };
    let attachment = |m: &ManifestBlob, artifact_type: &str| AttachmentOut {
        manifest: desc(m),
        artifact_type: artifact_type.into(),
        blobs: vec![],
        subject: desc(&subject),
    };
    let built = attachment(&ours, "application/spdx+json");
    let (problems, ok) = check_referrers(&c, repo, &subject.digest, &[&built]);
    assert!(problems.is_empty() && ok == 1, "{problems:?}");
    let other_sbom = artifact(
        "application/spdx+json",
        &subject,
        &write_blob(
            img._dir.path(),
            br#"{"spdxVersion":"SPDX-2.3","packages":[]}"#,
        ),
        &empty,
        serde_json::json!({}),
    );
    let differs = attachment(&other_sbom, "application/spdx+json");
    let misfiled_attachment = attachment(&misfiled, "application/vnd.example.misfiled");
    let (problems, ok) = check_referrers(
        &c,
        repo,
        &subject.digest,
        &[&built, &differs, &misfiled_attachment],
    );
    assert_eq!(ok, 1);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        matches!(&problems[0], PushedProblem::ReferrerMissing { digest, .. } if *digest == other_sbom.digest),
        "{problems:?}"
    );
    assert!(
        matches!(&problems[1], PushedProblem::ReferrerWrongSubject { found, .. } if *found == img.plan.index.digest),
        "{problems:?}"
    );
    assert!(problems[0]
        .to_string()
        .contains("is not among the referrers of"));
}

/// A fallback tag holding something that is not an index is named, not overwritten.
#[test]
fn a_broken_fallback_tag_is_refused_not_overwritten() {
    let reg = RegistryGuard::start(Auth::None);
    let mut img = fake_image("referrers-broken", "test/broken", &[100]);
    let subject = img.plan.manifests[0].clone();
    let fallback = format!("sha256-{}", subject.digest.strip_prefix("sha256:").unwrap());
    // An image manifest (no `manifests` list) where the index should be.
    let other = fake_image("other", "test/broken", &[50]);
    client(&reg, CredentialSource::anonymous())
        .push(&other.plan, &quiet)
        .unwrap();
    raw_put_manifest(
        &reg,
        "test/broken",
        &fallback,
        MANIFEST,
        &other.plan.manifests[0].bytes,
    );
    let empty = write_blob(img._dir.path(), b"{}");
    let layer = write_blob(img._dir.path(), b"[]");
    let ours = artifact(
        "application/spdx+json",
        &subject,
        &layer,
        &empty.digest,
        serde_json::json!({}),
    );
    img.plan.referrers = vec![imgraph::registry::Referrer {
        manifest: ours,
        blobs: vec![empty, layer],
        subject: subject.digest.clone(),
    }];
    let err = client(&reg, CredentialSource::anonymous())
        .push(&img.plan, &quiet)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::BadReferrersIndex { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&fallback), "{err}");
    // No tag moved.
    assert_eq!(
        client(&reg, CredentialSource::anonymous())
            .head_manifest("test/broken", "bookworm")
            .unwrap(),
        other.plan.index.digest.clone().into()
    );
}
