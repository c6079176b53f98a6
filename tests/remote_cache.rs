//! The step cache in a registry (`cache_registry`): separate clones of one project
//! with separate local caches stand for CI runners and the assembler, sharing one
//! real `docker-registry` on loopback whose access log shows what moved.

use std::collections::BTreeMap;

use crate::support::fault_proxy::{Fault, FaultProxy};
use crate::support::registry::{Auth, LogEntry, RegistryGuard};
use crate::support::{
    assert_never_printed, grep_tree, remote_digest, skopeo_copy_all, Project, HELP_COMMANDS,
    MANIFEST_COMMANDS,
};

const ARCHES: [&str; 2] = ["amd64", "arm64v8"];
const CACHE_REPO: &str = "cache/imgraph";

/// A clone of the fixture: hello for amd64 and arm64v8, pushed to `reg`, with
/// `cache` as its `cache_registry` line (none when empty).
fn clone(reg: &RegistryGuard, cache: &str) -> Project {
    let p = Project::new();
    for a in ARCHES {
        p.hello_rootfs("one", a);
    }
    p.manifest(&format!(
        r#"[settings]
created = "2024-06-01T00:00:00Z"
{cache}

[registries.local]
url = "{}/test"
insecure = true

[images.hello]
dists = ["one"]
arches = ["amd64", "arm64v8"]
registries = ["local"]
rootfs = {{ dir = "rootfs/{{dist}}/{{arch}}" }}
config = {{ cmd = ["/hello"] }}
"#,
        reg.url()
    ));
    p
}

fn cache_line(url: &str) -> String {
    format!("cache_registry = {{ url = \"{url}/{CACHE_REPO}\", insecure = true }}")
}

/// The layer digest (hex) of each arch, from a single-machine build's `out/`.
fn layer_hexes(single: &Project) -> BTreeMap<&'static str, String> {
    ARCHES
        .iter()
        .map(|a| {
            let text =
                std::fs::read(single.path(&format!("out/hello/one/{a}/image-manifest.json")))
                    .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
            let digest = v["layers"][0]["digest"].as_str().unwrap();
            (*a, digest.trim_start_matches("sha256:").to_string())
        })
        .collect()
}

/// The single-machine reference: no cache registry, everything built here.
fn single_machine(reg: &RegistryGuard) -> (Project, String) {
    let single = clone(reg, "");
    single.imgraph(&["build"]).success();
    let index = single.index_digest("hello", "one");
    (single, index)
}

fn http(reg: &str, method: &str, path: &str) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{reg}{path}"))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .body(())
        .unwrap();
    let mut resp = agent.run(req).unwrap();
    let status = resp.status().as_u16();
    let body = if method == "HEAD" {
        Vec::new()
    } else {
        resp.body_mut().read_to_vec().unwrap()
    };
    (status, body)
}

/// Every record tag in the cache repository, checked: each names only blobs the
/// repository has. Returns the tags.
fn records_are_complete(reg: &RegistryGuard) -> Vec<String> {
    let (status, body) = http(&reg.url(), "GET", &format!("/v2/{CACHE_REPO}/tags/list"));
    if status == 404 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let tags: Vec<String> = v["tags"]
        .as_array()
        .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    for tag in &tags {
        let (status, body) = http(
            &reg.url(),
            "GET",
            &format!("/v2/{CACHE_REPO}/manifests/{tag}"),
        );
        assert_eq!(status, 200, "record {tag}");
        let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            m["artifactType"], "application/vnd.imgraph.step.v1+json",
            "{m}"
        );
        let blobs = std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap());
        for b in blobs {
            let digest = b["digest"].as_str().unwrap();
            let (status, _) = http(
                &reg.url(),
                "HEAD",
                &format!("/v2/{CACHE_REPO}/blobs/{digest}"),
            );
            assert_eq!(
                status, 200,
                "record {tag} names blob {digest}, which is missing"
            );
        }
    }
    tags
}

fn requests_naming(log: &[LogEntry], hex: &str) -> Vec<String> {
    log.iter()
        .filter(|e| e.path.contains(hex))
        .map(|e| format!("{} {} {}", e.method, e.path, e.status))
        .collect()
}

#[test]
fn two_runners_fill_the_cache_and_the_assembler_moves_no_layer_bytes() {
    let reg = RegistryGuard::start(Auth::None);
    let (single, expected) = single_machine(&reg);
    let layers = layer_hexes(&single);
    let line = cache_line(&reg.url());
    let (a, b, assembler) = (clone(&reg, &line), clone(&reg, &line), clone(&reg, &line));

    // Runner A builds the arm64v8 slice while runner B builds amd64.
    std::thread::scope(|s| {
        let ra = s.spawn(|| a.imgraph(&["build", "hello:one/arm64v8"]));
        let rb = s.spawn(|| b.imgraph(&["build", "hello:one/amd64"]));
        ra.join().unwrap().success();
        rb.join().unwrap().success();
    });
    let tags = records_are_complete(&reg);
    for kind in ["layer-", "config-", "manifest-"] {
        assert_eq!(
            tags.iter().filter(|t| t.starts_with(kind)).count(),
            2,
            "one {kind} record per platform: {tags:?}"
        );
    }

    // The assembler: a fresh clone with an empty local cache.
    reg.clear_log();
    let run = assembler
        .imgraph(&["build", "--push", "--json"])
        .success()
        .stderr_has(&["only in the cache registry"]);
    // It pushed by mount and wrote no layout: it names no `out/` path.
    let index_line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("index hello:one "))
        .unwrap_or_else(|| panic!("no index line:\n{}", run.stderr));
    assert!(
        index_line.ends_with("(not in out/: its platforms are only in the cache registry)"),
        "{index_line}"
    );
    for named in run.stderr.split("oci:").skip(1) {
        let path = named.split(')').next().unwrap();
        assert!(
            assembler.root().join(path).join("index.json").exists(),
            "the assembler named {path}, which it did not write:\n{}",
            run.stderr
        );
    }
    let json = run.json();
    let executed: Vec<&str> = json["executed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        executed.iter().all(|s| !s.starts_with("layer:")),
        "the assembler built a layer: {executed:?}"
    );
    let log = reg.request_log();
    for (arch, hex) in &layers {
        let seen = requests_naming(&log, hex);
        assert!(
            seen.iter().all(|r| !r.starts_with("GET ")
                && !r.starts_with("PUT ")
                && !r.starts_with("PATCH ")),
            "{arch}'s layer was downloaded or uploaded by the assembler: {seen:?}"
        );
        assert!(
            seen.iter()
                .any(|r| r.starts_with("POST ") && r.contains("mount=") && r.ends_with(" 201")),
            "{arch}'s layer was not mounted from the cache: {seen:?}"
        );
    }
    assert!(
        log.iter().all(|e| e.method != "PATCH"),
        "a chunked upload: {log:?}"
    );
    assert_eq!(
        remote_digest(&format!("{}/test/hello:one", reg.url())),
        expected,
        "the pushed index is not the single-machine build's"
    );
    skopeo_copy_all(&format!("{}/test/hello:one", reg.url()));

    // A plain build (no --push) fetches the layers for out/, verified, and names
    // the layout it wrote.
    assembler
        .imgraph(&["build"])
        .success()
        .stderr_has(&["(oci:", "out/hello/one/index)"]);
    assert_eq!(assembler.index_digest("hello", "one"), expected);
}

#[test]
fn a_runner_killed_mid_upload_leaves_no_record_and_the_assembler_builds_that_platform() {
    let reg = RegistryGuard::start(Auth::None);
    let (single, expected) = single_machine(&reg);
    let layers = layer_hexes(&single);
    let proxy = FaultProxy::start(&reg.url());
    let through_proxy = format!(
        "cache_registry = {{ url = \"{}/{CACHE_REPO}\", insecure = true }}",
        proxy.addr()
    );
    // Runner B's upload of its layer never completes: the connection drops after
    // the body is sent, every time.
    proxy.inject("PUT", &layers["amd64"], Fault::DropConnection, 1000);
    let b = clone(&reg, &through_proxy);
    b.imgraph(&["build", "hello:one/amd64"])
        .success()
        .stderr_has(&["layer:hello:one/amd64: record not written to the cache registry"]);
    let tags = records_are_complete(&reg);
    assert!(
        !tags.iter().any(|t| t.starts_with("layer-")),
        "a layer record exists without its layer: {tags:?}"
    );

    let line = cache_line(&reg.url());
    let a = clone(&reg, &line);
    a.imgraph(&["build", "hello:one/arm64v8"]).success();

    // --require-cache: the assembler refuses to build it, naming it.
    let assembler = clone(&reg, &line);
    assembler
        .imgraph(&["build", "--push", "--require-cache"])
        .code(1)
        .stderr_has(&["layer:hello:one/amd64", "--require-cache"]);
    // Without it the assembler builds amd64's layer itself; arm64v8 stays a hit.
    let json = assembler
        .imgraph(&["build", "--push", "--json"])
        .success()
        .json();
    let executed: Vec<&str> = json["executed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(executed.contains(&"layer:hello:one/amd64"), "{executed:?}");
    assert!(
        !executed.contains(&"layer:hello:one/arm64v8"),
        "{executed:?}"
    );
    assert_eq!(
        remote_digest(&format!("{}/test/hello:one", reg.url())),
        expected
    );
    records_are_complete(&reg);
}

#[test]
fn read_mode_writes_nothing() {
    let reg = RegistryGuard::start(Auth::None);
    let read = format!(
        "cache_registry = {{ url = \"{}/{CACHE_REPO}\", mode = \"read\", insecure = true }}",
        reg.url()
    );
    let p = clone(&reg, &read);
    reg.clear_log();
    p.imgraph(&["build"]).success();
    let log = reg.request_log();
    assert!(
        log.iter()
            .any(|e| e.method == "GET" && e.path.contains("/manifests/layer-")),
        "the build did not look in the cache: {log:?}"
    );
    let writes: Vec<&LogEntry> = log
        .iter()
        .filter(|e| matches!(e.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
        .collect();
    assert!(writes.is_empty(), "mode = \"read\" wrote: {writes:?}");

    // The same project in read-write mode (--cache-mode) does write: the check
    // above can fail.
    reg.clear_log();
    let q = clone(&reg, &read);
    q.imgraph(&["--cache-mode", "read-write", "build"])
        .success();
    assert!(reg.request_log().iter().any(|e| e.method == "PUT"));
}

#[test]
fn a_record_whose_blob_was_replaced_is_detected_and_rebuilt() {
    let reg = RegistryGuard::start(Auth::None);
    let (single, expected) = single_machine(&reg);
    let layers = layer_hexes(&single);
    let line = cache_line(&reg.url());
    clone(&reg, &line).imgraph(&["build"]).success();

    // Someone with write access replaces arm64v8's layer with other bytes of
    // the same length.
    let hex = &layers["arm64v8"];
    let data = reg.storage().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let fresh = clone(&reg, &line);
    let json = fresh
        .imgraph(&["build", "--json"])
        .success()
        .stderr_has(&["sent other bytes for blob", hex])
        .json();
    let executed: Vec<&str> = json["executed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        executed.contains(&"layer:hello:one/arm64v8"),
        "{executed:?}"
    );
    assert_eq!(fresh.index_digest("hello", "one"), expected);
    crate::support::tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:one", fresh.path("out/hello/one/arm64v8").display()),
            &fresh.path("unpacked").display().to_string(),
        ],
    );
}

#[test]
fn bad_cache_registry_settings_are_exit_2_with_a_place() {
    let reg = RegistryGuard::start(Auth::None);
    let p = clone(
        &reg,
        "cache_registry = { url = \"127.0.0.1:5000/c\", mode = \"write\" }",
    );
    p.imgraph(&["check"])
        .code(2)
        .stderr_has(&["images.toml:3:", "mode", "\"read\""]);
    let p = clone(&reg, "cache_registry = \"127.0.0.1:5000\"");
    p.imgraph(&["plan"])
        .code(2)
        .stderr_has(&["images.toml:3:", "names no repository"]);
    clone(&reg, "")
        .imgraph(&["--cache-registry", "http://h:99999/x", "plan"])
        .code(2)
        .stderr_has(&["--cache-registry", "99999"]);
}

/// `user:password@` in the cache registry's url is refused wherever it is set
/// (images.toml as a string or a table, `--cache-registry`, IMGRAPH_CACHE_REGISTRY):
/// exit 2 from every command that reads images.toml, saying where credentials go,
/// and the password is printed by no command (help texts included), stored nowhere
/// and sent nowhere.
#[test]
fn credentials_in_the_cache_registry_url_are_refused_and_never_printed() {
    const SECRET: &str = "cache-pa55-s3cret";
    let reg = RegistryGuard::start(Auth::None);
    reg.clear_log();
    let url = format!("alice:{SECRET}@{}/{CACHE_REPO}", reg.url());
    let host = reg.url();
    let in_toml = [
        format!("cache_registry = \"{url}\""),
        format!("cache_registry = {{ url = \"http://{url}\", mode = \"read\" }}"),
    ];
    let mut runs = Vec::new();
    for line in &in_toml {
        let p = clone(&reg, line);
        let run = p.imgraph(&["check"]).code(2).stderr_has(&[
            "images.toml:3:",
            "credentials",
            &format!("docker login {host}"),
            "credential helper",
        ]);
        runs.push(run);
        for args in MANIFEST_COMMANDS {
            runs.push(p.imgraph(args).code(2).stderr_has(&["credentials"]));
        }
        for args in HELP_COMMANDS {
            runs.push(p.imgraph(args).success());
        }
        assert!(!grep_tree(&p.path("cache"), SECRET), "secret in the cache");
        assert!(!grep_tree(&p.path("out"), SECRET), "secret in out/");
    }
    let p = clone(&reg, "");
    for args in MANIFEST_COMMANDS {
        let mut with_flag = vec!["--cache-registry", url.as_str()];
        with_flag.extend_from_slice(args);
        runs.push(p.imgraph(&with_flag).code(2).stderr_has(&[
            "--cache-registry (or IMGRAPH_CACHE_REGISTRY) has credentials",
            &format!("docker login {host}"),
        ]));
        runs.push(
            p.imgraph_env(args, &[("IMGRAPH_CACHE_REGISTRY", &url)])
                .code(2)
                .stderr_has(&["credentials"]),
        );
    }
    for args in HELP_COMMANDS {
        runs.push(
            p.imgraph_env(args, &[("IMGRAPH_CACHE_REGISTRY", &url)])
                .success(),
        );
    }
    assert_never_printed(&runs, SECRET);
    assert!(!grep_tree(&p.path("cache"), SECRET), "secret in the cache");
    assert!(
        reg.request_log().is_empty(),
        "the cache registry was contacted: {:?}",
        reg.request_log()
    );
}

#[test]
fn plan_matrix_lists_what_neither_cache_has_one_entry_per_runner() {
    let reg = RegistryGuard::start(Auth::None);
    let settings = format!(
        "{}\nrunners = {{ arm64v8 = \"ubuntu-24.04-arm\", default = \"ubuntu-24.04\" }}",
        cache_line(&reg.url())
    );
    let matrix = |p: &Project| p.imgraph(&["plan", "--json", "--matrix"]).success().json();
    let fresh = clone(&reg, &settings);
    assert_eq!(
        matrix(&fresh),
        serde_json::json!({ "include": [
            { "selector": "hello:one/amd64", "arch": "amd64", "arches": ["amd64"], "runner": "ubuntu-24.04" },
            { "selector": "hello:one/arm64v8", "arch": "arm64v8", "arches": ["arm64v8"], "runner": "ubuntu-24.04-arm" },
        ]})
    );
    // Runner A's records make arm64v8 clean for every other machine.
    clone(&reg, &settings)
        .imgraph(&["build", "hello:one/arm64v8"])
        .success();
    let other = clone(&reg, &settings);
    let explained = other
        .imgraph(&["explain", "layer:hello:one/arm64v8"])
        .success();
    assert!(
        explained.stdout.contains("status   fresh"),
        "{}",
        explained.stdout
    );
    let include = matrix(&other)["include"].clone();
    assert_eq!(include.as_array().unwrap().len(), 1, "{include}");
    assert_eq!(include[0]["selector"], "hello:one/amd64");
    clone(&reg, &settings)
        .imgraph(&["build", "hello:one/amd64"])
        .success();
    // Nothing dirty anywhere: an empty matrix, with an empty local cache.
    reg.clear_log();
    assert_eq!(
        matrix(&clone(&reg, &settings)),
        serde_json::json!({ "include": [] })
    );
    assert!(reg
        .request_log()
        .iter()
        .all(|e| matches!(e.method.as_str(), "GET" | "HEAD")));
}

#[test]
fn a_command_rootfs_from_the_cache_is_made_again_when_a_layer_needs_it() {
    let reg = RegistryGuard::start(Auth::None);
    let proxy = FaultProxy::start(&reg.url());
    let project = |cache: &str| {
        let p = Project::new();
        p.manifest(&format!(
            r#"[settings]
created = "2024-06-01T00:00:00Z"
{cache}

[images.cmd]
dists = ["one"]
arches = ["amd64"]
rootfs = {{ command = "mkdir -p {{out}}/etc && echo {{arch}} > {{out}}/etc/arch" }}
platform_check = false
"#
        ));
        p
    };
    let single = project("");
    single.imgraph(&["build"]).success();
    let expected = single.index_digest("cmd", "one");

    // Runner A's layer record never gets its tag; its rootfs record does.
    proxy.inject("PUT", "/manifests/layer-", Fault::DropConnection, 1000);
    let a = project(&format!(
        "cache_registry = {{ url = \"{}/{CACHE_REPO}\", insecure = true }}",
        proxy.addr()
    ));
    a.imgraph(&["build"])
        .success()
        .stderr_has(&["layer:cmd:one/amd64: record not written"]);
    let tags = records_are_complete(&reg);
    assert!(tags.iter().any(|t| t.starts_with("rootfs-")), "{tags:?}");
    assert!(!tags.iter().any(|t| t.starts_with("layer-")), "{tags:?}");
    drop(a); // the folder its record's rootfs was kept in is gone

    let b = project(&cache_line(&reg.url()));
    let json = b.imgraph(&["build", "--json"]).success().json();
    let cached: Vec<&str> = json["cached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(cached.contains(&"rootfs:cmd:one/amd64"), "{json}");
    assert!(json["executed"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("layer:cmd:one/amd64")));
    assert_eq!(b.index_digest("cmd", "one"), expected);
}

#[test]
fn plan_matrix_gives_platforms_that_share_a_rootfs_one_runner() {
    let p = Project::new();
    p.file("rootfs/one/etc/motd", b"shared\n");
    p.file("other/etc/motd", b"own\n");
    p.manifest(
        r#"[settings]
created = "2024-06-01T00:00:00Z"

[images.shared]
dists = ["one"]
arches = ["amd64", "i386"]
rootfs = { dir = "rootfs/{dist}" }
platform_check = false

[images.own]
dists = ["one"]
arches = ["s390x"]
rootfs = { dir = "other" }
platform_check = false
"#,
    );
    let json = p.imgraph(&["plan", "--json", "--matrix"]).success().json();
    assert_eq!(
        json,
        serde_json::json!({ "include": [
            { "selector": "own:one/s390x", "arch": "s390x", "arches": ["s390x"] },
            { "selector": "shared:one/amd64 shared:one/i386", "arch": "amd64", "arches": ["amd64", "i386"] },
        ]})
    );
    p.imgraph(&["build"]).success();
    assert_eq!(
        p.imgraph(&["plan", "--json", "--matrix"]).success().json(),
        serde_json::json!({ "include": [] })
    );
    // --matrix is a shape of --json.
    p.imgraph(&["plan", "--matrix"]).code(2);
}
