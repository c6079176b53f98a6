//! `build --push`, `--changed` and `verify --pushed` against real registries.

use crate::support::registry::{Auth, RegistryGuard};
use crate::support::{
    assert_never_printed, grep_tree, hello_binary, sha256, skopeo_copy_all, tool, Project,
    HELP_COMMANDS, MANIFEST_COMMANDS,
};

fn project_for(registries: &[(&str, &RegistryGuard)], dists: &[&str]) -> Project {
    let p = Project::new();
    for d in dists {
        for a in ["amd64", "arm64v8"] {
            p.hello_rootfs(d, a);
        }
    }
    let mut text = String::from("[settings]\ncreated = \"2024-06-01T00:00:00Z\"\n\n");
    for (name, reg) in registries {
        text.push_str(&format!(
            "[registries.{name}]\nurl = \"{}/test\"\ninsecure = true\n\n",
            reg.url()
        ));
    }
    let names = registries
        .iter()
        .map(|(n, _)| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let dists = dists
        .iter()
        .map(|d| format!("{d:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    text.push_str(&format!(
        "[images.hello]\ndists = [{dists}]\narches = [\"amd64\", \"arm64v8\"]\nlatest = \"one\"\nregistries = [{names}]\nrootfs = {{ dir = \"rootfs/{{dist}}/{{arch}}\" }}\nconfig = {{ cmd = [\"/hello\"] }}\n"
    ));
    p.manifest(&text);
    p
}

fn remote_digest(reg: &RegistryGuard, reference: &str) -> String {
    crate::support::remote_digest(&format!("{}/test/{reference}", reg.url()))
}

#[test]
fn push_to_two_registries_then_nothing_when_unchanged() {
    let a = RegistryGuard::start(Auth::None);
    let b = RegistryGuard::start(Auth::None);
    let p = project_for(&[("a", &a), ("b", &b)], &["one"]);
    let json = p.imgraph(&["build", "--push", "--json"]).success().json();
    let pushed = json["pushed"].as_array().unwrap();
    // two tags ("one", "latest") on two registries
    assert_eq!(pushed.len(), 4, "{pushed:?}");
    let index = p.index_digest("hello", "one");
    for reg in [&a, &b] {
        assert_eq!(remote_digest(reg, "hello:one"), index);
        assert_eq!(remote_digest(reg, "hello:latest"), index);
    }
    skopeo_copy_all(&format!("{}/test/hello:one", a.url()));

    // A plain re-push uploads no blob (HEAD first).
    a.clear_log();
    p.imgraph(&["build", "--push"]).success();
    assert!(
        a.request_log().iter().all(|e| !e.is_blob_write()),
        "{:?}",
        a.writes()
    );

    // --changed asks the registry and writes nothing at all.
    a.clear_log();
    b.clear_log();
    let json = p
        .imgraph(&["build", "--push", "--changed", "--json"])
        .success()
        .json();
    assert_eq!(json["pushed"].as_array().unwrap().len(), 0, "{json}");
    assert!(
        a.writes().is_empty() && b.writes().is_empty(),
        "{:?} {:?}",
        a.writes(),
        b.writes()
    );
    p.imgraph(&["verify", "--pushed"])
        .success()
        .stderr_has(&["verified", "2 platforms"]);
}

#[test]
fn one_arch_change_pushes_that_platform_and_that_dist_only() {
    let reg = RegistryGuard::start(Auth::None);
    let p = project_for(&[("local", &reg)], &["one", "two"]);
    p.imgraph(&["build", "--push"]).success();
    let two_before = remote_digest(&reg, "hello:two");
    reg.clear_log();
    p.file("rootfs/one/arm64v8/etc/hostname", b"changed\n");
    let json = p
        .imgraph(&["build", "--push", "--changed", "--json"])
        .success()
        .json();
    let refs: Vec<&str> = json["pushed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["reference"].as_str().unwrap())
        .collect();
    assert_eq!(refs.len(), 2, "{refs:?}");
    assert!(
        refs.iter()
            .all(|r| r.ends_with("hello:one") || r.ends_with("hello:latest")),
        "{refs:?}"
    );
    let changed = json["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["arch"], "arm64v8");

    let log = reg.writes();
    // New layer and config, and that platform's SBOM and provenance: each one
    // upload finished by a PUT with ?digest=.
    let finished_blobs = log
        .iter()
        .filter(|w| w.starts_with("PUT") && w.contains("/blobs/uploads/"))
        .count();
    assert!((1..=4).contains(&finished_blobs), "{log:?}");
    // Referrers go to the changed platform's fallback tag only, written once
    // for its SBOM and provenance together.
    let fallback_writes: Vec<&String> = log
        .iter()
        .filter(|w| w.contains("/manifests/sha256-"))
        .collect();
    assert_eq!(fallback_writes.len(), 1, "{log:?}");
    assert!(
        log.iter().all(|w| !w.contains("manifests/two")),
        "dist two was touched: {log:?}"
    );
    assert_eq!(remote_digest(&reg, "hello:two"), two_before);
    assert_eq!(
        remote_digest(&reg, "hello:one"),
        p.index_digest("hello", "one")
    );
}

#[test]
fn basic_auth_from_docker_config_and_wrong_password_never_printed() {
    use base64::Engine as _;
    let reg = RegistryGuard::start(Auth::Htpasswd {
        user: "alice".into(),
        pass: "s3cret-pa55".into(),
    });
    let p = project_for(&[("private", &reg)], &["one"]);
    let cfg = tempfile::tempdir().unwrap();
    let write_cfg = |pass: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{pass}"));
        std::fs::write(
            cfg.path().join("config.json"),
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.url()),
        )
        .unwrap();
    };
    write_cfg("wrong-pa55word");
    let env = [("DOCKER_CONFIG", cfg.path().to_str().unwrap())];
    let run = p
        .imgraph_env(&["build", "--push", "--json", "-v"], &env)
        .code(1);
    assert!(
        run.stderr.contains(&reg.url()),
        "host not named: {}",
        run.stderr
    );
    for secret in [
        "wrong-pa55word",
        &base64::engine::general_purpose::STANDARD.encode("alice:wrong-pa55word"),
    ] {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "secret leaked"
        );
    }
    write_cfg("s3cret-pa55");
    let run = p
        .imgraph_env(&["build", "--push", "--json", "-v"], &env)
        .success();
    assert_eq!(
        remote_digest_auth(&reg, "alice:s3cret-pa55"),
        p.index_digest("hello", "one")
    );
    for secret in [
        "s3cret-pa55",
        &base64::engine::general_purpose::STANDARD.encode("alice:s3cret-pa55"),
    ] {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "secret leaked"
        );
        assert!(!grep_tree(&p.path("cache"), secret), "secret in the cache");
        assert!(!grep_tree(&p.path("out"), secret), "secret in out/");
    }
}

fn remote_digest_auth(reg: &RegistryGuard, creds: &str) -> String {
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            creds,
            &format!("docker://{}/test/hello:one", reg.url()),
        ],
    );
    sha256(raw.as_bytes())
}

#[test]
fn bearer_token_auth_push() {
    use base64::Engine as _;
    let reg = RegistryGuard::start(Auth::Token {
        user: "bob".into(),
        pass: "tok-pass".into(),
    });
    let p = project_for(&[("tok", &reg)], &["one"]);
    let cfg = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("bob:tok-pass");
    std::fs::write(
        cfg.path().join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.url()),
    )
    .unwrap();
    p.imgraph_env(
        &["build", "--push"],
        &[("DOCKER_CONFIG", cfg.path().to_str().unwrap())],
    )
    .success();
    assert!(reg.token_requests() > 0, "the token issuer was never asked");
}

#[test]
fn registry_killed_mid_push_then_rerun_completes() {
    let reg = RegistryGuard::start(Auth::None);
    let p = project_for(&[("local", &reg)], &["one"]);
    // A large incompressible file makes the layer go up in a PATCH, then a PUT:
    // the registry is killed between the two, before the blob is committed.
    let mut noise = vec![0u8; 24 << 20];
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    p.file("rootfs/one/amd64/noise", &noise);
    // Through a proxy that holds the first upload-finishing PUT for 3 s: the
    // registry logs the PATCH once it has the bytes, and is killed while the PUT
    // that would commit them waits, never halfway through its commit (which
    // leaves docker-registry's storage broken for that blob, whatever the client).
    let proxy = crate::support::fault_proxy::FaultProxy::start(&reg.url());
    proxy.inject(
        "PUT",
        "/blobs/uploads/",
        crate::support::fault_proxy::Fault::Delay(std::time::Duration::from_secs(3)),
        1,
    );
    let text = std::fs::read_to_string(p.path("images.toml"))
        .unwrap()
        .replace(&reg.url(), &proxy.url());
    p.manifest(&text);
    p.imgraph(&["build"]).success();
    let killer = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                if reg.request_log().iter().any(|e| e.method == "PATCH") {
                    reg.kill();
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            false
        });
        let run = p.imgraph(&["build", "--push"]);
        (h.join().unwrap(), run)
    });
    let (killed, run) = killer;
    assert!(killed, "the push never reached a PATCH upload");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains(&proxy.url()), "{}", run.stderr);
    reg.restart();
    // No tag may point at incomplete content: the tag does not exist yet.
    let status = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/test/hello:one", reg.url()),
        ])
        .output()
        .unwrap();
    assert!(!status.status.success(), "a tag exists after a failed push");
    p.imgraph(&["build", "--push"]).success();
    skopeo_copy_all(&format!("{}/test/hello:one", reg.url()));
}

#[test]
fn verify_pushed_catches_binaries_of_the_wrong_arch() {
    let reg = RegistryGuard::start(Auth::None);
    let p = project_for(&[("local", &reg)], &["one"]);
    // arm64v8 rootfs full of amd64 binaries, with the build-time check off
    let amd64 = std::fs::read(hello_binary("amd64")).unwrap();
    p.executable("rootfs/one/arm64v8/hello", &amd64);
    p.executable("rootfs/one/arm64v8/bin/sh", &amd64);
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace("rootfs =", "platform_check = false\nrootfs ="));
    p.imgraph(&["build", "--push"]).success();
    p.imgraph(&["verify", "--pushed"])
        .code(1)
        .stderr_has(&["local", "linux/arm64/v8", "x86-64"]);
}

#[test]
fn verify_pushed_reports_every_moved_or_missing_tag() {
    let a = RegistryGuard::start(Auth::None);
    let b = RegistryGuard::start(Auth::None);
    let p = project_for(&[("a", &a), ("b", &b)], &["one", "two"]);
    p.file("rootfs/two/amd64/etc/hostname", b"two\n");
    p.imgraph(&["build", "--push"]).success();
    let one = p.index_digest("hello", "one");
    let two = p.index_digest("hello", "two");
    assert_ne!(one, two);
    p.imgraph(&["verify", "--pushed"]).success();

    // Another image copied over a tag, on each registry a different one.
    let copy_over = |reg: &RegistryGuard, tag: &str| {
        tool(
            "skopeo",
            &[
                "copy",
                "--all",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &format!("docker://{}/test/hello:two", reg.url()),
                &format!("docker://{}/test/hello:{tag}", reg.url()),
            ],
        );
        assert_eq!(remote_digest(reg, &format!("hello:{tag}")), two);
    };
    copy_over(&a, "one");
    copy_over(&b, "latest");
    // A tag the manifest now asks for that was never pushed (tags are not part
    // of the index, so the build is still a cache hit).
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace(
        "latest = \"one\"",
        "latest = \"one\"\ntags = [\"{dist}\", \"{dist}-extra\"]",
    ));

    let run = p.imgraph(&["verify", "--pushed"]).code(1);
    let moved_a = format!("{}/test/hello:one points at {two}, expected {one}", a.url());
    let moved_b = format!(
        "{}/test/hello:latest points at {two}, expected {one}",
        b.url()
    );
    let mut needles = vec![moved_a, moved_b];
    for reg in [&a, &b] {
        for dist in ["one", "two"] {
            let expected = if dist == "one" { &one } else { &two };
            needles.push(format!(
                "{}/test/hello:{dist}-extra is missing, expected {expected}",
                reg.url()
            ));
        }
    }
    for n in &needles {
        assert!(
            run.stderr.contains(n.as_str()),
            "lacks {n:?}:\n{}",
            run.stderr
        );
    }
    // Tags that are right are not reported.
    for ok in [
        format!("{}/test/hello:latest points", a.url()),
        format!("{}/test/hello:one points", b.url()),
        format!("{}/test/hello:two points", a.url()),
    ] {
        assert!(
            !run.stderr.contains(&ok),
            "reported {ok:?}:\n{}",
            run.stderr
        );
    }
}

/// The secret of a URL with userinfo, and every place it could end up.
const URL_SECRET: &str = "s3cret-in-url";

#[test]
fn credentials_in_a_registry_url_are_refused_and_never_printed_or_stored() {
    let reg = RegistryGuard::start(Auth::Htpasswd {
        user: "alice".into(),
        pass: URL_SECRET.into(),
    });
    let p = project_for(&[("private", &reg)], &["one"]);
    reg.clear_log();
    let good = std::fs::read_to_string(p.path("images.toml")).unwrap();
    let url = format!("{}/test", reg.url());
    let bad = good.replace(
        &format!("url = \"{url}\""),
        &format!("url = \"alice:{URL_SECRET}@{url}\""),
    );
    assert_ne!(good, bad);
    p.manifest(&bad);
    let line = bad
        .lines()
        .position(|l| l.starts_with("url = "))
        .map(|i| i + 1)
        .unwrap();
    let run = p.imgraph(&["check"]).code(2).stderr_has(&[
        &format!("images.toml:{line}:8"),
        "credentials",
        "~/.docker/config.json",
        &format!("docker login {}", reg.url()),
    ]);
    let mut outputs = vec![run];
    for args in MANIFEST_COMMANDS {
        outputs.push(p.imgraph(args).code(2));
    }
    for args in HELP_COMMANDS {
        outputs.push(p.imgraph(args).success());
    }
    assert_never_printed(&outputs, URL_SECRET);
    assert!(
        !grep_tree(&p.path("cache"), URL_SECRET),
        "secret in the cache"
    );
    assert!(!grep_tree(&p.path("out"), URL_SECRET), "secret in out/");
    assert!(
        reg.request_log().is_empty(),
        "the registry was contacted: {:?}",
        reg.request_log()
    );
}

#[test]
fn no_docker_config_says_no_credentials_were_found() {
    let reg = RegistryGuard::start(Auth::Htpasswd {
        user: "alice".into(),
        pass: "s3cret-pa55".into(),
    });
    let p = project_for(&[("private", &reg)], &["one"]);
    let empty = tempfile::tempdir().unwrap();
    let config = empty.path().join("config.json");
    let run = p
        .imgraph_env(
            &["build", "--push"],
            &[("DOCKER_CONFIG", empty.path().to_str().unwrap())],
        )
        .code(1)
        .stderr_has(&[
            &format!(
                "{} asks for credentials and none were found in {}",
                reg.url(),
                config.display()
            ),
            &format!("run `docker login {}`", reg.url()),
        ]);
    assert!(
        !run.stderr.contains("rejected the credentials"),
        "{}",
        run.stderr
    );
}

/// A project pushing to `reg` with this `[registries.local]` body.
fn project_with_registry(reg_table: &str) -> Project {
    let p = project_for(&[], &["one"]);
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&format!(
        "{}\n[registries.local]\n{reg_table}\n",
        text.replace("registries = []", "registries = [\"local\"]")
    ));
    p
}

#[test]
fn tls_to_a_plain_http_registry_says_set_insecure() {
    let reg = RegistryGuard::start(Auth::None);
    let p = project_with_registry(&format!("url = \"{}/test\"", reg.url()));
    let run = p.imgraph(&["build", "--push"]).code(1).stderr_has(&[
        &reg.url(),
        "server speaks plain HTTP: set insecure = true for this registry",
    ]);
    assert!(!run.stderr.contains("InvalidContentType"), "{}", run.stderr);
}

#[test]
fn an_http_scheme_means_plain_http_and_pushes() {
    let reg = RegistryGuard::start(Auth::None);
    let p = project_with_registry(&format!("url = \"http://{}/test\"", reg.url()));
    p.imgraph(&["build", "--push"]).success();
    assert_eq!(
        remote_digest(&reg, "hello:one"),
        p.index_digest("hello", "one")
    );
    p.imgraph(&["verify", "--pushed"]).success();
}

/// Issue 11, bug 4: with one registry down, `build --push --json` still prints what
/// was built, exported and pushed where, and what failed; out/ holds the new build.
#[test]
fn a_partial_push_reports_what_succeeded_and_what_failed_and_out_is_current() {
    let up = RegistryGuard::start(Auth::None);
    let down = RegistryGuard::start(Auth::None);
    let p = project_for(&[("up", &up), ("down", &down)], &["one"]);
    p.imgraph(&["build", "--push"]).success();
    let old = p.index_digest("hello", "one");
    // Nothing listens on its port any more.
    down.kill();
    p.file("rootfs/one/arm64v8/etc/hostname", b"changed\n");
    let run = p.imgraph(&["build", "--push", "--json"]).code(1);
    let json = run.json();

    // out/ reflects the build, and it is what the up registry serves.
    let new = p.index_digest("hello", "one");
    assert_ne!(new, old, "out/ was left stale: {json}");
    assert_eq!(remote_digest(&up, "hello:one"), new);
    assert_eq!(remote_digest(&up, "hello:latest"), new);

    let pushed = json["pushed"].as_array().unwrap();
    let mut refs: Vec<&str> = pushed
        .iter()
        .map(|v| v["reference"].as_str().unwrap())
        .collect();
    refs.sort();
    let up_ref = |tag: &str| format!("{}/test/hello:{tag}", up.url());
    assert_eq!(refs, [up_ref("latest"), up_ref("one")], "{json}");
    assert!(
        pushed
            .iter()
            .all(|v| v["registry"] == "up" && v["digest"] == new.as_str()),
        "{json}"
    );

    let failed = json["failed"].as_array().unwrap();
    let mut refs: Vec<&str> = failed
        .iter()
        .map(|v| v["reference"].as_str().unwrap())
        .collect();
    refs.sort();
    let down_ref = |tag: &str| format!("{}/test/hello:{tag}", down.url());
    assert_eq!(refs, [down_ref("latest"), down_ref("one")], "{json}");
    for f in failed {
        assert_eq!(f["registry"], "down", "{json}");
        let error = f["error"].as_str().unwrap();
        assert!(error.contains(&down.url()), "error names no host: {json}");
    }

    let changed = json["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{json}");
    assert_eq!(changed[0]["arch"], "arm64v8");
    let exported: Vec<&str> = json["exported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        exported.iter().any(|e| e.ends_with("out/hello/one/index"))
            && exported
                .iter()
                .any(|e| e.ends_with("out/hello/one/arm64v8")),
        "{json}"
    );

    // The human summary says the same on stderr, and the error names the host.
    let run = run.stderr_has(&[
        &format!("pushed: {}", up_ref("one")),
        &format!("failed: {} (registry down)", down_ref("one")),
        &format!("failed: {} (registry down)", down_ref("latest")),
        "changed: hello:one/arm64v8",
    ]);
    assert!(
        !run.stderr.contains(&format!("pushed: {}", down.url())),
        "{}",
        run.stderr
    );
}

/// Issue 11, bug 4: a failed platform step is listed in `failed` with its step id,
/// and what did build before the build stopped is still exported and reported.
#[test]
fn a_failed_platform_is_listed_and_what_built_is_still_exported() {
    let p = Project::new();
    p.hello_rootfs("one", "amd64");
    // `bad` fails after a while; meanwhile the other worker builds all of `good`.
    p.manifest(
        "[settings]\ncreated = \"2024-06-01T00:00:00Z\"\n\n\
         [images.bad]\ndists = [\"one\"]\narches = [\"amd64\"]\n\
         rootfs = { command = \"sleep 3; exit 3\" }\n\n\
         [images.good]\ndists = [\"one\"]\narches = [\"amd64\"]\n\
         rootfs = { dir = \"rootfs/{dist}/{arch}\" }\nconfig = { cmd = [\"/hello\"] }\n",
    );
    let run = p.imgraph(&["build", "--jobs", "2", "--json"]).code(1);
    let json = run.json();
    let failed = json["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{json}");
    assert_eq!(failed[0]["step"], "rootfs:bad:one/amd64", "{json}");
    assert!(!failed[0]["error"].as_str().unwrap().is_empty(), "{json}");
    assert!(
        json["changed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["image"] == "good" && c["arch"] == "amd64"),
        "{json}"
    );
    let digest = p.index_digest("good", "one");
    assert!(digest.starts_with("sha256:"));
    assert!(
        p.path("out/good/one/amd64/index.json").is_file(),
        "the platform that built was not exported"
    );
    assert!(!p.path("out/bad").exists(), "a failed image was exported");
    run.stderr_has(&["failed: rootfs:bad:one/amd64", "changed: good:one/amd64"]);
}
