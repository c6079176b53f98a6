//! The core: build, plan, early cutoff, exports checked with real OCI tools.

use crate::support::{hello_binary, sha256, tool, Project};

const ARCHES: &[&str] = &["amd64", "arm64v8"];

fn platform_steps(arch: &str) -> Vec<String> {
    [
        "rootfs",
        "layer",
        "config",
        "manifest",
        "sbom",
        "provenance",
    ]
    .iter()
    .map(|k| format!("{k}:hello:one/{arch}"))
    .collect()
}

#[test]
fn build_writes_layouts_that_oci_tools_accept() {
    let p = Project::hello(ARCHES);
    p.imgraph(&["build"]).success();
    for arch in ARCHES {
        let dir = p.path(&format!("out/hello/one/{arch}"));
        for f in [
            "rootfs.tar.gz",
            "image-config.json",
            "image-manifest.json",
            "index.json",
            "oci-layout",
        ] {
            assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
        }
        // One image in index.json: oci-image-tool validates every entry (no
        // --ref), and bashbrew's oci-import checks pass.
        let manifest = std::fs::read(dir.join("image-manifest.json")).unwrap();
        tool(
            "oci-image-tool",
            &["validate", "--type", "image", dir.to_str().unwrap()],
        );
        crate::support::oci_import::assert_oci_import(&dir);
        // blobs are relative symlinks to the readable files
        let link = dir.join("blobs/sha256").join(&sha256(&manifest)[7..]);
        assert_eq!(
            std::fs::read_link(&link).unwrap().to_str().unwrap(),
            "../../image-manifest.json"
        );
    }
    let index_dir = p.path("out/hello/one/index");
    tool(
        "oci-image-tool",
        &["validate", "--type", "image", index_dir.to_str().unwrap()],
    );
    // The index links its own blob and each image's three, nothing attached
    // (attachments change with every commit; the index folder must not).
    let links = |p: &Project| {
        std::fs::read_dir(p.path("out/hello/one/index/blobs/sha256"))
            .unwrap()
            .count()
    };
    assert_eq!(links(&p), 1 + 3 * ARCHES.len());
    // A link an older layout left (to an attachment) is cleared by the next build.
    std::os::unix::fs::symlink(
        "../../../amd64/sbom.spdx.json",
        index_dir.join("blobs/sha256").join("0".repeat(64)),
    )
    .unwrap();
    p.imgraph(&["build"]).success();
    assert_eq!(links(&p), 1 + 3 * ARCHES.len());
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci:{}:one", index_dir.display()),
        ],
    );
    assert_eq!(sha256(raw.as_bytes()), p.index_digest("hello", "one"));
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["architecture"].as_str().unwrap(),
                m["platform"]["variant"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(platforms, ["amd64/", "arm64/v8"]);

    let copy = tempfile::tempdir().unwrap();
    tool(
        "skopeo",
        &[
            "copy",
            "--all",
            &format!("oci:{}:one", index_dir.display()),
            &format!("oci:{}:one", copy.path().display()),
        ],
    );
    let copied = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci:{}:one", copy.path().display()),
        ],
    );
    assert_eq!(
        sha256(copied.as_bytes()),
        p.index_digest("hello", "one"),
        "skopeo copy --all keeps the index digest"
    );
}

#[test]
fn umoci_unpacks_the_rootfs_byte_for_byte_and_the_binary_runs() {
    let p = Project::hello(&["amd64"]);
    p.imgraph(&["build"]).success();
    let bundle = tempfile::tempdir().unwrap();
    let bundle_dir = bundle.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:one", p.path("out/hello/one/amd64").display()),
            bundle_dir.to_str().unwrap(),
        ],
    );
    let rootfs = bundle_dir.join("rootfs");
    for f in ["hello", "etc/hostname", "etc/os-release"] {
        assert_eq!(
            std::fs::read(rootfs.join(f)).unwrap(),
            std::fs::read(p.path(&format!("rootfs/one/amd64/{f}"))).unwrap(),
            "{f} differs after umoci unpack"
        );
    }
    let out = tool(rootfs.join("hello").to_str().unwrap(), &[]);
    assert!(out.contains("linux/amd64"), "{out}");
}

#[test]
fn plan_after_build_is_all_fresh_and_plan_writes_nothing() {
    let p = Project::hello(ARCHES);
    let steps = p.plan(&[]);
    assert!(
        steps
            .iter()
            .all(|(_, s, r)| s == "dirty" && r.as_deref().is_some()),
        "{steps:?}"
    );
    assert!(steps
        .iter()
        .any(|(id, _, r)| id == "rootfs:hello:one/amd64" && r.as_deref() == Some("not built yet")));
    assert!(!p.path("cache").exists(), "plan created the cache");
    assert!(!p.path("out").exists(), "plan created out/");
    p.imgraph(&["build"]).success();
    let steps = p.plan(&[]);
    assert_eq!(steps.len(), 2 * 6 + 2);
    assert!(steps.iter().all(|(_, s, _)| s == "fresh"), "{steps:?}");
}

#[test]
fn editing_one_file_dirties_exactly_that_platform() {
    let p = Project::hello(ARCHES);
    p.imgraph(&["build"]).success();
    p.file("rootfs/one/arm64v8/etc/hostname", b"renamed\n");
    let mut expected = platform_steps("arm64v8");
    expected.extend(["index:hello:one".to_string(), "tag:hello:one".to_string()]);
    expected.sort();
    assert_eq!(p.dirty(), expected);
    let plan = p.plan(&[]);
    let reason = |id: &str| {
        plan.iter()
            .find(|(i, _, _)| i == id)
            .unwrap()
            .2
            .clone()
            .unwrap()
    };
    assert_eq!(
        reason("rootfs:hello:one/arm64v8"),
        "input changed: rootfs/one/arm64v8/etc/hostname"
    );
    assert_eq!(
        reason("config:hello:one/arm64v8"),
        "upstream dirty: layer:hello:one/arm64v8"
    );

    let amd64_before = std::fs::read(p.path("out/hello/one/amd64/index.json")).unwrap();
    let json = p
        .imgraph(&["build", "--changed", "--json"])
        .success()
        .json();
    let mut executed: Vec<String> = json["executed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    executed.sort();
    assert_eq!(executed, expected);
    let changed = json["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["arch"], "arm64v8");
    assert_eq!(changed[0]["dist"], "one");
    assert_eq!(
        std::fs::read(p.path("out/hello/one/amd64/index.json")).unwrap(),
        amd64_before
    );
    assert!(p.dirty().is_empty());
}

#[test]
fn touching_a_file_without_changing_it_keeps_everything_fresh() {
    let p = Project::hello(ARCHES);
    p.imgraph(&["build"]).success();
    // Same content, new mtime: the stat cache misses, the content hash does not.
    p.file("rootfs/one/amd64/etc/hostname", b"amd64\n");
    assert!(p.dirty().is_empty(), "{:?}", p.dirty());
}

#[test]
fn editing_config_cmd_dirties_configs_and_below_and_names_the_key() {
    let p = Project::hello(ARCHES);
    p.imgraph(&["build"]).success();
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace(r#"cmd = ["/hello"]"#, r#"cmd = ["/hello", "--loud"]"#));
    let plan = p.plan(&[]);
    for (id, status, reason) in &plan {
        let expect_dirty = !id.starts_with("rootfs:") && !id.starts_with("layer:");
        assert_eq!(status == "dirty", expect_dirty, "{id} {status} {reason:?}");
        if id.starts_with("config:") {
            assert_eq!(
                reason.as_deref(),
                Some("manifest changed: images.hello.config.cmd")
            );
        }
    }
}

#[test]
fn adding_an_arch_builds_only_that_platform_and_the_index() {
    let p = Project::hello(ARCHES);
    p.imgraph(&["build"]).success();
    p.hello_rootfs("one", "s390x");
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace(r#""arm64v8"]"#, r#""arm64v8", "s390x"]"#));
    let mut expected = platform_steps("s390x");
    expected.extend(["index:hello:one".to_string(), "tag:hello:one".to_string()]);
    expected.sort();
    assert_eq!(p.dirty(), expected);
}

#[test]
fn builds_are_identical_across_folders_and_job_counts() {
    let a = Project::hello(ARCHES);
    let b = Project::hello(ARCHES);
    a.imgraph(&["build", "-j", "1"]).success();
    b.imgraph(&["build", "-j", "4"]).success();
    assert_eq!(
        a.index_digest("hello", "one"),
        b.index_digest("hello", "one")
    );
    for arch in ARCHES {
        let f = format!("out/hello/one/{arch}/rootfs.tar.gz");
        assert_eq!(
            std::fs::read(a.path(&f)).unwrap(),
            std::fs::read(b.path(&f)).unwrap(),
            "{f}"
        );
    }
}

/// The digest of this fixture's index, checked in on purpose: if it changes,
/// imgraph's output changed for the same input, and every user's images with it.
/// Update it only deliberately, saying why in the commit.
const GOLDEN_INDEX: &str =
    "sha256:54950cf073eeab0aee38b394bb9e3476c834a901337730cf837185f03eba7641";

#[test]
fn golden_index_digest() {
    let p = Project::new();
    // Fixed bytes (not the committed binaries, which may be rebuilt).
    p.file("rootfs/one/amd64/etc/hostname", b"golden\n");
    p.executable(
        "rootfs/one/amd64/bin/true",
        b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0",
    );
    std::os::unix::fs::symlink("bin/true", p.path("rootfs/one/amd64/true")).unwrap();
    p.manifest(
        r#"[settings]
created = "2024-06-01T00:00:00Z"
[images.golden]
dists = ["one"]
arches = ["amd64"]
rootfs = { dir = "rootfs/{dist}/{arch}" }
config = { cmd = ["/true"], env = ["PATH=/bin"] }
"#,
    );
    p.imgraph(&["build"]).success();
    assert_eq!(p.index_digest("golden", "one"), GOLDEN_INDEX);
}

#[test]
fn docker_archive_export_is_accepted_by_skopeo() {
    let p = Project::hello(ARCHES);
    let tar = p.path("hello.tar");
    p.imgraph(&[
        "export",
        "hello:one/arm64v8",
        "--format",
        "docker-archive",
        "-o",
        tar.to_str().unwrap(),
    ])
    .success();
    let out = tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", tar.display())],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Architecture"], "arm64");
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    // A multi-arch dist needs an arch for a docker archive.
    p.imgraph(&[
        "export",
        "hello:one",
        "--format",
        "docker-archive",
        "-o",
        tar.to_str().unwrap(),
    ])
    .code(2)
    .stderr_has(&["hello:one/amd64"]);
}

#[test]
fn oci_export_of_an_index_copies_every_platform() {
    let p = Project::hello(ARCHES);
    let dir = p.path("exported");
    p.imgraph(&[
        "export",
        "hello:one",
        "--format",
        "oci",
        "-o",
        dir.to_str().unwrap(),
    ])
    .success();
    tool(
        "oci-image-tool",
        &["validate", "--type", "image", dir.to_str().unwrap()],
    );
    let copy = tempfile::tempdir().unwrap();
    tool(
        "skopeo",
        &[
            "copy",
            "--all",
            &format!("oci:{}:one", dir.display()),
            &format!("oci:{}:x", copy.path().display()),
        ],
    );
}

#[test]
fn verify_reproducible_passes_on_a_clean_project() {
    let p = Project::hello(ARCHES);
    p.imgraph(&["verify", "--reproducible"])
        .success()
        .stderr_has(&["reproducible", "index:hello:one"]);
}

#[test]
fn every_hello_binary_runs_and_names_its_platform() {
    let all = [
        "amd64", "arm32v5", "arm32v7", "arm64v8", "i386", "mips64le", "ppc64le", "riscv64", "s390x",
    ];
    let p = Project::hello(&all);
    p.imgraph(&["build"]).success();
    for arch in all {
        let bundle = tempfile::tempdir().unwrap();
        let dir = bundle.path().join("b");
        tool(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &format!("{}:one", p.path(&format!("out/hello/one/{arch}")).display()),
                dir.to_str().unwrap(),
            ],
        );
        let bin = dir.join("rootfs/hello");
        assert_eq!(
            std::fs::read(&bin).unwrap(),
            std::fs::read(hello_binary(arch)).unwrap()
        );
        let out = match arch {
            "amd64" | "i386" => tool(bin.to_str().unwrap(), &[]),
            _ => {
                let qemu = match arch {
                    "arm32v5" | "arm32v7" => "qemu-arm-static",
                    "arm64v8" => "qemu-aarch64-static",
                    "mips64le" => "qemu-mips64el-static",
                    "ppc64le" => "qemu-ppc64le-static",
                    "riscv64" => "qemu-riscv64-static",
                    "s390x" => "qemu-s390x-static",
                    _ => unreachable!(),
                };
                tool(qemu, &[bin.to_str().unwrap()])
            }
        };
        assert!(out.contains(&format!("({arch})")), "{arch}: {out}");
    }
}

#[test]
fn selectors_limit_the_graph_and_unknown_ones_exit_2() {
    let p = Project::hello(ARCHES);
    let plan = p.plan(&["hello:one/amd64"]);
    assert_eq!(plan.len(), 6, "{plan:?}");
    p.imgraph(&["plan", "hello:two"])
        .code(2)
        .stderr_has(&["no dist \"two\""]);
    p.imgraph(&["plan", "helo"])
        .code(2)
        .stderr_has(&["did you mean \"hello\""]);
    p.imgraph(&["build", "hello:one/s390x"]).code(2);
}

#[test]
fn wrong_arch_binaries_fail_the_platform_check() {
    let p = Project::new();
    for arch in ["amd64", "arm64v8"] {
        // every rootfs gets the amd64 binary: arm64v8 is mislabelled
        let root = format!("rootfs/one/{arch}");
        p.executable(
            &format!("{root}/hello"),
            &std::fs::read(hello_binary("amd64")).unwrap(),
        );
        p.executable(
            &format!("{root}/bin/sh"),
            &std::fs::read(hello_binary("amd64")).unwrap(),
        );
    }
    p.manifest(
        "[images.x]\ndists = [\"one\"]\narches = [\"amd64\", \"arm64v8\"]\nrootfs = { dir = \"rootfs/{dist}/{arch}\" }\n",
    );
    p.imgraph(&["build"])
        .code(1)
        .stderr_has(&["layer:x:one/arm64v8", "x86-64", "aarch64"]);
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace("rootfs =", "platform_check = false\nrootfs ="));
    p.imgraph(&["build"]).success();
}
