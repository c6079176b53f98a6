//! Issue 20, bug 6: one failing platform does not stop every other. `build
//! --keep-going` builds, caches and exports every platform the failure does not
//! reach, never writes or pushes a dist's index without all its platforms, names
//! the failure and what it held back, and exits 1; a failed build never says
//! "no image changed since the last build".

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::registry::{Auth, RegistryGuard};
use crate::support::{http_get, remote_digest, tool, Project};

const DISTS: [&str; 2] = ["one", "two"];
const ARCHES: [&str; 3] = ["amd64", "arm64v8", "s390x"];
/// The platform whose rootfs fails, as minideb's trixie s390x did when the mirror
/// lacked its `apt`.
const BROKEN: &str = "hello:two/s390x";

/// `hello` for two dists and three arches. Each platform's rootfs is made by its
/// own script `mk/<dist>-<arch>.sh` (an input of that platform only, so fixing
/// one script dirties one platform); `two/s390x`'s fails.
fn project(registry: Option<&RegistryGuard>) -> Project {
    let p = Project::new();
    for d in DISTS {
        for a in ARCHES {
            p.hello_rootfs(d, a);
            // The dists differ, so no step of one is a cache hit for the other.
            p.file(&format!("rootfs/{d}/{a}/etc/dist"), d.as_bytes());
            write_script(&p, d, a, true);
        }
    }
    write_script(&p, "two", "s390x", false);
    let (registries, uses) = match registry {
        Some(r) => (
            format!(
                "[registries.local]\nurl = \"{}/test\"\ninsecure = true\n\n",
                r.url()
            ),
            "registries = [\"local\"]\n",
        ),
        None => (String::new(), ""),
    };
    p.manifest(&format!(
        r#"[settings]
created = "2024-06-01T00:00:00Z"

{registries}[images.hello]
dists = ["one", "two"]
arches = ["amd64", "arm64v8", "s390x"]
{uses}rootfs = {{ command = "sh mk/{{dist}}-{{arch}}.sh {{out}}", inputs = ["mk/{{dist}}-{{arch}}.sh", "rootfs/{{dist}}/{{arch}}"] }}
config = {{ cmd = ["/hello"] }}
"#
    ));
    p
}

/// A script that copies the platform's rootfs folder into `$1`, or one that
/// fails the way apt does when the mirror lacks a package for the arch.
fn write_script(p: &Project, dist: &str, arch: &str, works: bool) {
    let body = if works {
        format!("mkdir -p \"$1\" && cp -a rootfs/{dist}/{arch}/. \"$1\"\n")
    } else {
        format!("echo \"E: Unable to locate package apt ({arch})\" >&2\nexit 100\n")
    };
    p.file(&format!("mk/{dist}-{arch}.sh"), body.as_bytes());
}

/// Every step of the broken platform below its rootfs, and its dist's steps.
fn held_back(dist_steps: &[&str]) -> BTreeSet<String> {
    let mut steps: BTreeSet<String> = ["layer", "config", "manifest", "sbom", "provenance"]
        .iter()
        .map(|k| format!("{k}:{BROKEN}"))
        .collect();
    steps.extend(dist_steps.iter().map(|s| s.to_string()));
    steps
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The architecture skopeo reads from a platform layout in `out/`.
fn layout_arch(p: &Project, dist: &str, arch: &str) -> String {
    let dir = p.path(&format!("out/hello/{dist}/{arch}"));
    let inspect = tool(
        "skopeo",
        &["inspect", &format!("oci:{}:{dist}", dir.display())],
    );
    let v: Value = serde_json::from_str(&inspect).unwrap();
    v["Architecture"].as_str().unwrap().to_string()
}

/// `skopeo copy --all` out of an index layout: every platform and blob is there
/// and matches its digest. Returns the number of platforms.
fn copy_index(p: &Project, dist: &str) -> usize {
    let dir = p.path(&format!("out/hello/{dist}/index"));
    let copy = tempfile::tempdir().unwrap();
    tool(
        "skopeo",
        &[
            "copy",
            "--all",
            &format!("oci:{}:{dist}", dir.display()),
            &format!("oci:{}:x", copy.path().display()),
        ],
    );
    let raw = tool(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:{dist}", dir.display())],
    );
    let index: Value = serde_json::from_str(&raw).unwrap();
    index["manifests"].as_array().unwrap().len()
}

#[test]
fn keep_going_builds_and_exports_every_platform_the_failure_does_not_reach() {
    let p = project(None);
    let run = p.imgraph(&["build", "--keep-going", "--json"]).code(1);
    let json = run.json();

    // The failure is named with its error (the command's own output included).
    let failed = json["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{json}");
    assert_eq!(failed[0]["step"], format!("rootfs:{BROKEN}"), "{json}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("Unable to locate package apt (s390x)"),
        "{json}"
    );
    // Everything below it is skipped, each naming it; nothing else is.
    let skipped = json["skipped"].as_array().unwrap();
    let names: BTreeSet<String> = skipped
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        held_back(&["index:hello:two", "tag:hello:two"]),
        "{json}"
    );
    assert!(
        skipped
            .iter()
            .all(|s| s["failed"] == format!("rootfs:{BROKEN}")),
        "{json}"
    );
    assert_eq!(json["not_started"], 0, "{json}");

    // Every other platform is in out/ and reads as its arch; dist one's index is
    // complete; dist two has no index and no layout for the broken platform.
    for d in DISTS {
        for a in ARCHES {
            if format!("hello:{d}/{a}") == BROKEN {
                continue;
            }
            let want = if a == "arm64v8" { "arm64" } else { a };
            assert_eq!(layout_arch(&p, d, a), want, "{d}/{a}");
        }
    }
    assert_eq!(copy_index(&p, "one"), 3);
    assert!(!p.path("out/hello/two/s390x").exists());
    assert!(
        !p.path("out/hello/two/index").exists(),
        "an index was written without all its platforms"
    );
    let exported = strings(&json["exported"]);
    let (attestations, images): (Vec<_>, Vec<_>) =
        exported.iter().partition(|e| e.ends_with(".attestations"));
    assert_eq!(images.len(), 6, "5 platforms and one index: {exported:?}");
    assert_eq!(
        attestations.len(),
        5,
        "each built platform's attachments: {exported:?}"
    );

    // The human text says the same, ends with the error and its count of
    // skipped steps, and never claims that nothing changed.
    let run = run.stderr_has(&[
        "skipped 7 steps that depend on rootfs:hello:two/s390x: layer:hello:two/s390x",
        "(1 platform not built): hello:two/s390x\n",
        "not every platform built: no index written or pushed for hello:two\n",
        "error: 1 step failed:\n  rootfs:hello:two/s390x: ",
        "Unable to locate package apt (s390x)",
        "7 steps that depend on it skipped",
    ]);
    assert!(!run.stderr.contains("no image changed"), "{}", run.stderr);

    // Fixed, the next build does only what failed and was skipped: every other
    // step is cached.
    write_script(&p, "two", "s390x", true);
    let json = p
        .imgraph(&["build", "--keep-going", "--json"])
        .success()
        .json();
    let executed: BTreeSet<String> = strings(&json["executed"]).into_iter().collect();
    let mut want = held_back(&["index:hello:two", "tag:hello:two"]);
    want.insert(format!("rootfs:{BROKEN}"));
    assert_eq!(executed, want, "{json}");
    assert_eq!(layout_arch(&p, "two", "s390x"), "s390x");
    assert_eq!(copy_index(&p, "two"), 3);
}

#[test]
fn keep_going_pushes_only_dists_whose_every_platform_built() {
    let reg = RegistryGuard::start(Auth::None);
    let p = project(Some(&reg));
    let json = p
        .imgraph(&["build", "--push", "--keep-going", "--json"])
        .code(1)
        .json();
    let pushed = json["pushed"].as_array().unwrap();
    let refs: Vec<&str> = pushed
        .iter()
        .map(|v| v["reference"].as_str().unwrap())
        .collect();
    assert_eq!(refs, [format!("{}/test/hello:one", reg.url())], "{json}");
    let skipped: BTreeSet<String> = json["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect();
    assert!(skipped.contains("push:hello:two@local"), "{json}");

    // The complete dist is served as built; the partial one is not there at all.
    assert_eq!(
        remote_digest(&format!("{}/test/hello:one", reg.url())),
        p.index_digest("hello", "one")
    );
    crate::support::skopeo_copy_all(&format!("{}/test/hello:one", reg.url()));
    let two = format!("http://{}/v2/test/hello/manifests/two", reg.url());
    assert!(
        http_get(&two, "application/vnd.oci.image.index.v1+json").is_none(),
        "a partial index was pushed"
    );
    assert!(!p.path("out/hello/two/index").exists());
}

#[test]
fn without_keep_going_a_failed_build_stops_and_never_says_nothing_changed() {
    let p = project(None);
    // One job: every rootfs runs first (they are all ready at once), the broken
    // one last; then the build stops.
    for _ in 0..2 {
        let run = p.imgraph(&["build", "-j", "1"]).code(1);
        assert!(!run.stderr.contains("no image changed"), "{}", run.stderr);
        // What finished is reported, and what did not, with the way out.
        run.stderr_has(&[
            "error: 1 step failed:\n  rootfs:hello:two/s390x: ",
            "Unable to locate package apt (s390x)",
            "not started: the build stopped at the first failure (--keep-going builds everything that does not depend on one)",
            "(6 platforms not built): hello:one/amd64 hello:one/arm64v8",
            "not every platform built: no index written or pushed for hello:one hello:two\n",
        ]);
    }
}

#[test]
fn an_old_index_stays_in_out_only_while_its_platform_layouts_still_hold_it() {
    let p = project(None);
    write_script(&p, "two", "s390x", true);
    p.imgraph(&["build"]).success();
    assert_eq!(copy_index(&p, "two"), 3);
    let one = p.index_digest("hello", "one");
    let two = p.index_digest("hello", "two");

    // s390x of dist two breaks, nothing else changes: the last complete index
    // still describes the layouts in out/, and stays.
    write_script(&p, "two", "s390x", false);
    let json = p.imgraph(&["build", "-k", "--json"]).code(1).json();
    assert_eq!(strings(&json["removed"]), Vec::<String>::new(), "{json}");
    assert_eq!(p.index_digest("hello", "two"), two);
    assert_eq!(copy_index(&p, "two"), 3);

    // Then amd64 of dist two changes too: the new amd64 layout is exported, and
    // the old index, whose blobs are links into that layout, would name bytes no
    // longer there (skopeo: "Manifest does not match provided manifest digest").
    p.file("rootfs/two/amd64/etc/hostname", b"changed\n");
    let run = p.imgraph(&["build", "-k", "--json"]).code(1);
    let json = run.json();
    let exported = strings(&json["exported"]);
    assert!(
        exported.iter().any(|e| e.ends_with("out/hello/two/amd64")),
        "{json}"
    );
    let removed = strings(&json["removed"]);
    assert_eq!(removed.len(), 1, "{json}");
    assert!(removed[0].ends_with("out/hello/two/index"), "{json}");
    assert!(!p.path("out/hello/two/index").exists());
    run.stderr_has(&[
        "removed ",
        "out/hello/two/index: an index of an earlier build",
    ]);
    // Dist one, untouched, keeps its index.
    assert_eq!(p.index_digest("hello", "one"), one);
    assert_eq!(copy_index(&p, "one"), 3);
    assert_eq!(layout_arch(&p, "two", "amd64"), "amd64");
}
