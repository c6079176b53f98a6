//! `[settings] sign`: cosign-compatible signatures pushed to a real
//! `docker-registry`, read back over plain HTTP and verified by `openssl dgst`.

use std::path::Path;

use base64::Engine as _;
use serde_json::Value;

use crate::support::registry::{Auth, RegistryGuard};
use crate::support::{grep_tree, http_get, tool, Project};

/// A hello project (two arches) pushing to `reg` and signing with `key`
/// (a file name in the project).
fn signed_project(reg: &RegistryGuard, key: &str) -> Project {
    signed_project_at(&reg.url(), key)
}

/// The same, pushing to `host:port` (a fault proxy).
fn signed_project_at(host: &str, key: &str) -> Project {
    let p = Project::new();
    for a in ["amd64", "arm64v8"] {
        p.hello_rootfs("one", a);
    }
    p.manifest(&format!(
        "[settings]\ncreated = \"2024-06-01T00:00:00Z\"\nsign = {{ key = \"{key}\" }}\n\n\
         [registries.local]\nurl = \"{}/test\"\ninsecure = true\n\n\
         [images.hello]\ndists = [\"one\"]\narches = [\"amd64\", \"arm64v8\"]\nregistries = [\"local\"]\n\
         rootfs = {{ dir = \"rootfs/{{dist}}/{{arch}}\" }}\nconfig = {{ cmd = [\"/hello\"] }}\n",
        host
    ));
    p
}

/// Makes a key with openssl; returns the path.
fn openssl_key(dir: &Path, name: &str, args: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut all: Vec<&str> = args.to_vec();
    let out = path.to_str().unwrap();
    all.extend(["-out", out]);
    tool("openssl", &all);
    path
}

/// The public half, as openssl writes it.
fn public_pem(key: &Path, password: Option<&str>, dir: &Path) -> std::path::PathBuf {
    let out = dir.join("pub.pem");
    let pass = password.map(|p| format!("pass:{p}"));
    let mut args = vec!["pkey", "-in", key.to_str().unwrap(), "-pubout"];
    if let Some(p) = &pass {
        args.extend(["-passin", p]);
    }
    args.extend(["-out", out.to_str().unwrap()]);
    tool("openssl", &args);
    out
}

/// The signatures stored for `digest`: (payload bytes, DER signature), read
/// with plain HTTP as cosign does: the `sha256-<hex>.sig` manifest, its layers.
fn signatures(reg: &RegistryGuard, repo: &str, digest: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let tag = format!("{}.sig", digest.replace(':', "-"));
    let Some(bytes) = http_get(
        &format!("http://{}/v2/{repo}/manifests/{tag}", reg.url()),
        "application/vnd.oci.image.manifest.v1+json",
    ) else {
        return Vec::new();
    };
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(
                l["mediaType"],
                "application/vnd.dev.cosign.simplesigning.v1+json"
            );
            let payload = http_get(
                &format!(
                    "http://{}/v2/{repo}/blobs/{}",
                    reg.url(),
                    l["digest"].as_str().unwrap()
                ),
                "*/*",
            )
            .unwrap();
            let sig = base64::engine::general_purpose::STANDARD
                .decode(
                    l["annotations"]["dev.cosignproject.cosign/signature"]
                        .as_str()
                        .unwrap(),
                )
                .unwrap();
            (payload, sig)
        })
        .collect()
}

/// `openssl dgst -sha256 -verify` over the exact payload bytes.
fn openssl_verifies(public: &Path, payload: &[u8], sig: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("payload"), payload).unwrap();
    std::fs::write(dir.path().join("sig.der"), sig).unwrap();
    std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public)
        .arg("-signature")
        .arg(dir.path().join("sig.der"))
        .arg(dir.path().join("payload"))
        .output()
        .unwrap()
        .status
        .success()
}

/// Every digest a push signs: the index and each platform manifest.
fn signed_digests(p: &Project) -> Vec<String> {
    let index = p.index_digest("hello", "one");
    let layout = p.path("out/hello/one/index");
    let bytes = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(index.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    let parsed: Value = serde_json::from_slice(&bytes).unwrap();
    let mut out: Vec<String> = parsed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    out.push(index);
    out
}

/// PKCS#8 (`genpkey`), SEC1 with its parameters block (`ecparam -genkey`) and
/// password-protected PKCS#8 (`genpkey -aes-256-cbc`): each push signs the index
/// and both platform manifests; openssl verifies every signature over the
/// exact payload bytes, which name the pushed digest and repository;
/// `verify --pushed` accepts them; `--changed` re-push writes nothing.
#[test]
fn pushes_are_signed_and_openssl_verifies_every_signature() {
    const PASSWORD: &str = "correct horse battery staple";
    let keys: [(&str, &[&str], Option<&str>); 3] = [
        (
            "pkcs8.key",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            None,
        ),
        (
            "sec1.key",
            &["ecparam", "-name", "prime256v1", "-genkey"],
            None,
        ),
        (
            "encrypted.key",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-aes-256-cbc",
                "-pass",
                "pass:correct horse battery staple",
            ],
            Some(PASSWORD),
        ),
    ];
    for (name, args, password) in keys {
        let reg = RegistryGuard::start(Auth::None);
        let p = signed_project(&reg, name);
        let key = openssl_key(p.root(), name, args);
        let env: Vec<(&str, &str)> = password
            .map(|pw| vec![("IMGRAPH_SIGNING_PASSWORD", pw)])
            .unwrap_or_default();
        let run = p
            .imgraph_env(&["build", "--push", "--json", "-v"], &env)
            .success();
        let keydir = tempfile::tempdir().unwrap();
        let public = public_pem(&key, password, keydir.path());
        let repository = format!("{}/test/hello", reg.url());
        let digests = signed_digests(&p);
        assert_eq!(digests.len(), 3);
        for digest in &digests {
            let sigs = signatures(&reg, "test/hello", digest);
            assert_eq!(sigs.len(), 1, "{name}: one signature of {digest}");
            let (payload, sig) = &sigs[0];
            assert!(
                openssl_verifies(&public, payload, sig),
                "{name}: openssl rejects the signature of {digest}"
            );
            assert!(
                !openssl_verifies(&public, &[payload.as_slice(), b" "].concat(), sig),
                "{name}: openssl accepts a signature over other bytes"
            );
            let doc: Value = serde_json::from_slice(payload).unwrap();
            assert_eq!(doc["critical"]["image"]["docker-manifest-digest"], **digest);
            assert_eq!(doc["critical"]["identity"]["docker-reference"], *repository);
            assert_eq!(doc["critical"]["type"], "cosign container image signature");
        }
        p.imgraph_env(&["verify", "--pushed"], &env)
            .success()
            .stderr_has(&["verified", "2 platforms, 4 referrers, 3 signatures"]);

        // Deterministic signatures: a re-push finds them all and writes nothing.
        reg.clear_log();
        let json = p
            .imgraph_env(&["build", "--push", "--changed", "--json"], &env)
            .success()
            .json();
        assert_eq!(json["pushed"].as_array().unwrap().len(), 0, "{json}");
        assert!(reg.writes().is_empty(), "{name}: {:?}", reg.writes());
        reg.clear_log();
        p.imgraph_env(&["build", "--push"], &env).success();
        assert!(
            reg.writes().is_empty(),
            "{name}: plain re-push wrote {:?}",
            reg.writes()
        );

        // Key material and the password appear nowhere.
        let text = std::fs::read_to_string(&key).unwrap();
        let mut secrets: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 20)
            .map(str::to_owned)
            .collect();
        let plain = tool(
            "openssl",
            &[
                "pkey",
                "-in",
                key.to_str().unwrap(),
                "-passin",
                &format!("pass:{}", password.unwrap_or("")),
            ],
        );
        secrets.extend(
            plain
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 20)
                .map(str::to_owned),
        );
        secrets.extend(password.map(str::to_owned));
        assert!(!secrets.is_empty());
        for s in &secrets {
            assert!(
                !run.stdout.contains(s.as_str()) && !run.stderr.contains(s.as_str()),
                "{name}: key material in output"
            );
            assert!(
                !grep_tree(&p.path("cache"), s),
                "{name}: key material in cache/"
            );
            assert!(
                !grep_tree(&p.path("out"), s),
                "{name}: key material in out/"
            );
            assert!(
                !grep_tree(&reg.storage(), s),
                "{name}: key material in the registry"
            );
        }
    }
}

/// A second key's signature joins the first (cosign keeps every signature in
/// the `.sig` manifest); `verify --pushed` with a key that never signed fails
/// naming what is unsigned.
#[test]
fn signatures_by_others_are_kept_and_an_unknown_key_fails_verify() {
    let reg = RegistryGuard::start(Auth::None);
    let p = signed_project(&reg, "first.key");
    let gen = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ];
    let first = openssl_key(p.root(), "first.key", &gen);
    let second = openssl_key(p.root(), "second.key", &gen);
    openssl_key(p.root(), "never.key", &gen);
    p.imgraph(&["build", "--push"]).success();
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace("first.key", "second.key"));
    p.imgraph(&["build", "--push"]).success();
    let index = p.index_digest("hello", "one");
    let sigs = signatures(&reg, "test/hello", &index);
    assert_eq!(sigs.len(), 2, "both signatures kept");
    let keydir = tempfile::tempdir().unwrap();
    for (key, (payload, sig)) in [&first, &second].into_iter().zip(&sigs) {
        let public = public_pem(key, None, keydir.path());
        assert!(openssl_verifies(&public, payload, sig));
    }
    p.imgraph(&["verify", "--pushed"]).success();
    p.manifest(&text.replace("first.key", "never.key"));
    p.imgraph(&["verify", "--pushed"]).code(1).stderr_has(&[
        "has no valid signature by key sha256:",
        &format!("{}/test/hello@{index}", reg.url()),
        "2 signature(s), none by this key",
    ]);
}

/// Missing key, wrong or missing password, an RSA key, a P-384 key: exit 2
/// naming the key file and the `sign` line, before any step ran (no cache
/// entry), and the password is never printed.
/// `check` knows what `build --push` will refuse: a missing signing key, or one
/// that is not P-256, or a wrong password, is exit 2 naming images.toml:LINE:COL
/// and the key file; an encrypted key with no password set is a note (the password
/// is the pushing machine's), and a good key passes.
#[test]
fn check_refuses_a_missing_or_unusable_signing_key() {
    let p = signed_project_at("127.0.0.1:5000", "keys/cosign.key");
    let key = p.path("keys/cosign.key");
    let refused = |env: &[(&str, &str)], needle: &str| {
        let run = p.imgraph_env(&["check"], env).code(2).stderr_has(&[
            "images.toml:3:8",
            key.to_str().unwrap(),
            needle,
            "sign = { key = \"keys/cosign.key\" }",
        ]);
        for (_, v) in env {
            assert!(!run.stderr.contains(v), "password printed");
        }
    };
    refused(&[], "cannot read it");
    std::fs::create_dir_all(p.path("keys")).unwrap();
    openssl_key(
        &p.path("keys"),
        "cosign.key",
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ],
    );
    refused(&[], "is not an ECDSA P-256 key");
    openssl_key(
        &p.path("keys"),
        "cosign.key",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-aes-256-cbc",
            "-pass",
            "pass:right-password-1",
        ],
    );
    refused(
        &[("IMGRAPH_SIGNING_PASSWORD", "wrong-password-2")],
        "wrong password",
    );
    p.imgraph(&["check"])
        .success()
        .stderr_has(&["encrypted", "IMGRAPH_SIGNING_PASSWORD"]);
    p.imgraph_env(
        &["check"],
        &[("IMGRAPH_SIGNING_PASSWORD", "right-password-1")],
    )
    .success();
}

#[test]
fn a_bad_key_or_password_exits_2_before_anything_is_built() {
    let reg = RegistryGuard::start(Auth::None);
    let p = signed_project(&reg, "cosign.key");
    let key = p.path("cosign.key");
    reg.clear_log();
    let check = |env: &[(&str, &str)], needles: &[&str]| {
        let run = p.imgraph_env(&["build", "--push", "-v"], env).code(2);
        let mut all = vec!["images.toml:3:8", key.to_str().unwrap()];
        all.extend(needles);
        let run = run.stderr_has(&all);
        for (_, v) in env {
            assert!(
                !run.stderr.contains(v) && !run.stdout.contains(v),
                "password printed"
            );
        }
        let actions = p.path("cache/actions");
        assert!(
            std::fs::read_dir(&actions).map_or(true, |d| d.count() == 0),
            "steps ran before the key was checked"
        );
        assert!(reg.request_log().is_empty(), "the registry was contacted");
    };
    check(&[], &["cannot read it"]);
    tool(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-aes-256-cbc",
            "-pass",
            "pass:right-password-1",
            "-out",
            key.to_str().unwrap(),
        ],
    );
    check(
        &[("IMGRAPH_SIGNING_PASSWORD", "wrong-password-2")],
        &["wrong password"],
    );
    check(&[], &["IMGRAPH_SIGNING_PASSWORD is not set"]);
    tool(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            key.to_str().unwrap(),
        ],
    );
    check(&[], &["is not an ECDSA P-256 key (a RSA key)"]);
    tool(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            key.to_str().unwrap(),
        ],
    );
    check(&[], &["is not an ECDSA P-256 key (an EC key on P-384)"]);
    tool(
        "openssl",
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-out",
            key.to_str().unwrap(),
        ],
    );
    check(&[], &["is not an ECDSA P-256 key"]);
    // The right password then builds, pushes and signs.
    tool(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-aes-256-cbc",
            "-pass",
            "pass:right-password-1",
            "-out",
            key.to_str().unwrap(),
        ],
    );
    p.imgraph_env(
        &["build", "--push"],
        &[("IMGRAPH_SIGNING_PASSWORD", "right-password-1")],
    )
    .success();
    let index = p.index_digest("hello", "one");
    assert_eq!(signatures(&reg, "test/hello", &index).len(), 1);
}

/// Seals a PKCS#8 DER key the way `cosign generate-key-pair` does
/// (go-securesystemslib `encrypted`: scrypt N=2^15 r=8 p=1, NaCl secretbox),
/// with Debian's PyNaCl and Python's scrypt: an implementation independent of
/// imgraph's.
const COSIGN_SEAL: &str = r#"
import base64, hashlib, json, os, sys
import nacl.secret
der = open(sys.argv[1], "rb").read()
salt, nonce = os.urandom(32), os.urandom(24)
key = hashlib.scrypt(sys.argv[2].encode(), salt=salt, n=32768, r=8, p=1, maxmem=128 << 20, dklen=32)
box = nacl.secret.SecretBox(key).encrypt(der, nonce).ciphertext
b = lambda x: base64.b64encode(x).decode()
doc = {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b(salt)},
       "cipher": {"name": "nacl/secretbox", "nonce": b(nonce)}, "ciphertext": b(box)}
body = base64.b64encode(json.dumps(doc).encode()).decode()
lines = [body[i:i + 64] for i in range(0, len(body), 64)]
print("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----")
"#;

/// A key in cosign's own format signs pushes that openssl verifies; the
/// wrong password is exit 2.
#[test]
fn a_cosign_format_key_signs_and_a_wrong_password_exits_2() {
    let reg = RegistryGuard::start(Auth::None);
    let p = signed_project(&reg, "cosign.key");
    let gen = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ];
    let plain = openssl_key(p.root(), "plain.pem", &gen);
    let der = p.path("plain.der");
    tool(
        "openssl",
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-outform",
            "DER",
            "-in",
            plain.to_str().unwrap(),
            "-out",
            der.to_str().unwrap(),
        ],
    );
    let sealed = tool(
        "/usr/bin/python3",
        &["-c", COSIGN_SEAL, der.to_str().unwrap(), "cosign-pw"],
    );
    p.file("cosign.key", sealed.as_bytes());
    p.imgraph_env(
        &["build", "--push"],
        &[("IMGRAPH_SIGNING_PASSWORD", "not-it")],
    )
    .code(2)
    .stderr_has(&["images.toml:3:8", "cosign.key", "wrong password"]);
    let env = [("IMGRAPH_SIGNING_PASSWORD", "cosign-pw")];
    p.imgraph_env(&["build", "--push"], &env).success();
    let keydir = tempfile::tempdir().unwrap();
    let public = public_pem(&plain, None, keydir.path());
    for digest in signed_digests(&p) {
        let sigs = signatures(&reg, "test/hello", &digest);
        assert_eq!(sigs.len(), 1);
        assert!(openssl_verifies(&public, &sigs[0].0, &sigs[0].1));
    }
    p.imgraph_env(&["verify", "--pushed"], &env).success();
}

/// A registry that keeps refusing the signature manifest: exit 1, and no tag
/// moves (signatures go before tags). Transient faults on the signature's
/// blobs and manifest are retried and the push completes, signed.
#[test]
fn a_failing_signature_write_moves_no_tag_and_transient_faults_are_retried() {
    use crate::support::fault_proxy::{Fault, FaultProxy};
    let reg = RegistryGuard::start(Auth::None);
    let proxy = FaultProxy::start(&reg.url());
    let p = signed_project_at(&proxy.url(), "cosign.key");
    let gen = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ];
    let key = openssl_key(p.root(), "cosign.key", &gen);
    proxy.inject("PUT", ".sig", Fault::Status(500, None), 1000);
    let run = p.imgraph(&["build", "--push"]).code(1);
    assert!(run.stderr.contains(&proxy.url()), "{}", run.stderr);
    assert!(
        !proxy
            .log()
            .iter()
            .any(|(m, path, _)| m == "PUT" && path.ends_with("/manifests/one")),
        "a tag was written before the signatures"
    );
    proxy.clear_faults();
    proxy.inject("PUT", ".sig", Fault::Status(503, Some(1)), 1);
    proxy.inject("POST", "/blobs/uploads/", Fault::DropConnection, 1);
    proxy.inject("GET", ".sig", Fault::Status(502, None), 1);
    p.imgraph(&["build", "--push"]).success();
    assert_eq!(proxy.pending_faults(), 0, "not every fault was hit");
    let keydir = tempfile::tempdir().unwrap();
    let public = public_pem(&key, None, keydir.path());
    for digest in signed_digests(&p) {
        let sigs = signatures(&reg, "test/hello", &digest);
        assert_eq!(sigs.len(), 1, "{digest}");
        assert!(openssl_verifies(&public, &sigs[0].0, &sigs[0].1));
    }
    p.imgraph(&["verify", "--pushed"]).success();
}

/// Whoever checks a pushed image has the public key only: with the private
/// key file gone and no password set, `verify --pushed --key cosign.pub`
/// passes, and so does `verify --pushed` with `sign` naming the public key
/// (verify-only: `build --push` with it is exit 2 saying it cannot sign). A
/// key that never signed fails naming each platform, its digest and the index;
/// an image pushed unsigned fails naming the `.sig` tag that is not there.
#[test]
fn verify_pushed_needs_only_the_public_key() {
    const PASSWORD: &str = "pushers-only-password";
    let reg = RegistryGuard::start(Auth::None);
    let p = signed_project(&reg, "cosign.key");
    let gen = [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ];
    let mut encrypted = gen.to_vec();
    let pass = format!("pass:{PASSWORD}");
    encrypted.extend(["-aes-256-cbc", "-pass", &pass]);
    let key = openssl_key(p.root(), "cosign.key", &encrypted);
    p.imgraph_env(
        &["build", "--push"],
        &[("IMGRAPH_SIGNING_PASSWORD", PASSWORD)],
    )
    .success();
    let keydir = tempfile::tempdir().unwrap();
    let public = public_pem(&key, Some(PASSWORD), keydir.path());
    std::fs::copy(&public, p.path("cosign.pub")).unwrap();
    std::fs::remove_file(&key).unwrap();
    let digests = signed_digests(&p);
    let (index, platform_digests) = digests.split_last().unwrap();

    // `--key`: the public key from anywhere, images.toml unchanged.
    p.imgraph(&["verify", "--pushed", "--key", public.to_str().unwrap()])
        .success()
        .stderr_has(&["verified", "2 platforms, 4 referrers, 3 signatures"]);
    // `sign` naming the public key: verify-only.
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace("cosign.key", "cosign.pub"));
    p.imgraph(&["verify", "--pushed"])
        .success()
        .stderr_has(&["3 signatures"]);
    reg.clear_log();
    let run = p.imgraph(&["build", "--push"]).code(2).stderr_has(&[
        "images.toml:3:8",
        "cosign.pub",
        "holds a public key",
        "cannot make them",
        "point `sign = { key = ... }` at the private key",
    ]);
    assert!(reg.writes().is_empty(), "pushed with a public key: {run:?}");

    // A key that never signed: every platform and the index named, exit 1.
    let other = openssl_key(keydir.path(), "other.key", &gen);
    let other_pub = keydir.path().join("other.pub");
    tool(
        "openssl",
        &[
            "pkey",
            "-in",
            other.to_str().unwrap(),
            "-pubout",
            "-out",
            other_pub.to_str().unwrap(),
        ],
    );
    let repo = format!("{}/test/hello", reg.url());
    let run = p
        .imgraph(&["verify", "--pushed", "--key", other_pub.to_str().unwrap()])
        .code(1);
    for (platform, digest) in ["linux/amd64", "linux/arm64/v8"]
        .iter()
        .zip(platform_digests)
    {
        assert!(
            run.stderr.contains(&format!(
                "platform {platform} {repo}@{digest} has no valid signature by key sha256:"
            )),
            "{platform} not named:\n{}",
            run.stderr
        );
    }
    assert!(
        run.stderr
            .contains(&format!("index {repo}@{index} has no valid signature")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("1 signature(s), none by this key"));

    // Pushed unsigned (another repository): the missing `.sig` tag is named.
    p.manifest(
        &text
            .replace("sign = { key = \"cosign.key\" }\n", "")
            .replace("/test\"", "/unsigned\""),
    );
    p.imgraph(&["build", "--push"]).success();
    let unsigned_index = p.index_digest("hello", "one");
    p.imgraph(&["verify", "--pushed", "--key", public.to_str().unwrap()])
        .code(1)
        .stderr_has(&[
            &format!(
                "index {}/unsigned/hello@{unsigned_index} has no valid signature",
                reg.url()
            ),
            &format!(
                "no signature at tag {}.sig",
                unsigned_index.replace(':', "-")
            ),
            "platform linux/arm64/v8",
        ]);

    // Bad input: --key without --pushed, a missing key file, one that is no key.
    p.imgraph(&["verify", "--reproducible", "--key", "cosign.pub"])
        .code(2)
        .stderr_has(&["use it with --pushed"]);
    p.imgraph(&["verify", "--pushed", "--key", "nowhere.pub"])
        .code(2)
        .stderr_has(&["verify --key", "nowhere.pub", "cannot read it"]);
    p.file("junk.pub", b"not a key\n");
    p.imgraph(&["verify", "--pushed", "--key", "junk.pub"])
        .code(2)
        .stderr_has(&["junk.pub", "is not a PEM key"]);
}

/// The real cosign (Debian trixie's, fetched from the mirror and checked by
/// sha256) verifies imgraph's signature on every pushed platform manifest and
/// the index, with a key pair cosign itself generated (imgraph signs with its
/// `ENCRYPTED SIGSTORE PRIVATE KEY`); it rejects them with another key. And
/// the other way round: `verify --pushed --key` accepts a signature `cosign
/// sign` made.
#[test]
fn cosign_verifies_every_pushed_manifest_and_the_index() {
    let cosign = crate::support::cosign::cosign();
    let reg = RegistryGuard::start(Auth::None);
    let p = signed_project(&reg, "cosign.key");
    let made = std::process::Command::new(&cosign.bin)
        .args(["generate-key-pair"])
        .current_dir(p.root())
        .env("COSIGN_PASSWORD", "cosign-made")
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "cosign generate-key-pair: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let key_text = std::fs::read_to_string(p.path("cosign.key")).unwrap();
    assert!(
        key_text.contains("ENCRYPTED SIGSTORE PRIVATE KEY"),
        "{key_text}"
    );
    p.imgraph_env(
        &["build", "--push"],
        &[("IMGRAPH_SIGNING_PASSWORD", "cosign-made")],
    )
    .success();
    let public = p.path("cosign.pub");
    let digests = signed_digests(&p);
    assert_eq!(digests.len(), 3);
    let repo = format!("{}/test/hello", reg.url());
    for digest in &digests {
        let reference = format!("{repo}@{digest}");
        let out = cosign.verify(&public, &reference);
        assert!(
            out.status.success(),
            "cosign {} rejects {reference}:\n{}\n{}",
            cosign.version,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let found: Value = serde_json::from_slice(&out.stdout).unwrap();
        let found = found.as_array().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0]["critical"]["image"]["docker-manifest-digest"],
            **digest
        );
        assert_eq!(found[0]["critical"]["identity"]["docker-reference"], *repo);
    }
    // imgraph agrees, with the public key alone.
    p.imgraph(&["verify", "--pushed", "--key", public.to_str().unwrap()])
        .success()
        .stderr_has(&["3 signatures"]);
    // And cosign does check: another key is refused.
    let other = p.path("other");
    std::fs::create_dir(&other).unwrap();
    let made = std::process::Command::new(&cosign.bin)
        .args(["generate-key-pair"])
        .current_dir(&other)
        .env("COSIGN_PASSWORD", "")
        .output()
        .unwrap();
    assert!(made.status.success());
    let out = cosign.verify(&other.join("cosign.pub"), &format!("{repo}@{}", digests[0]));
    assert!(!out.status.success(), "cosign accepted another key");

    // The other way round: a signature `cosign sign` made on the index (beside
    // imgraph's) satisfies `verify --pushed` for the index; the platforms it
    // did not sign are named.
    let (index, platforms) = digests.split_last().unwrap();
    let signed = std::process::Command::new(&cosign.bin)
        .args([
            "sign",
            "--key",
            "cosign.key",
            "--tlog-upload=false",
            "--allow-insecure-registry",
            "--allow-http-registry",
            "-y",
            &format!("{repo}@{index}"),
        ])
        .current_dir(&other)
        .env("COSIGN_PASSWORD", "")
        .env("HOME", &other)
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "cosign sign: {}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let other_pub = other.join("cosign.pub");
    let run = p
        .imgraph(&["verify", "--pushed", "--key", other_pub.to_str().unwrap()])
        .code(1);
    assert!(
        !run.stderr.contains(&format!("index {repo}@{index}")),
        "cosign's signature of the index was not found:\n{}",
        run.stderr
    );
    for digest in platforms {
        assert!(
            run.stderr
                .contains(&format!("{repo}@{digest} has no valid signature")),
            "{}",
            run.stderr
        );
    }
    // imgraph's own signature is still there beside cosign's.
    assert_eq!(signatures(&reg, "test/hello", index).len(), 2);
    p.imgraph(&["verify", "--pushed", "--key", public.to_str().unwrap()])
        .success();
}
