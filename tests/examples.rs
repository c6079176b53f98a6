//! The examples build as their READMEs say. Busybox (extract variant, two arches)
//! runs in CI; minideb's full build is `tests/minideb.rs`, its lock and manifest
//! forms are checked here.

use crate::support::{tool, Project};

#[test]
fn busybox_example_builds_two_arches_and_each_binary_reports_its_arch() {
    // In a folder whose name has spaces and shell syntax: `{out}` and the
    // project path must reach mmdebstrap whole.
    let p = Project::in_awkward_folder();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/busybox");
    let script = std::fs::read(example.join("mkrootfs")).unwrap();
    p.executable("mkrootfs", &script);
    let text = std::fs::read_to_string(example.join("images.toml")).unwrap();
    // Two arches keep CI quick; the plain mirror (no -updates/-security suites)
    // keeps it independent of security-mirror sync hiccups.
    let text = text
        .replace(
            r#"arches = ["amd64", "arm64v8", "arm32v7", "i386", "ppc64le", "s390x", "riscv64"]"#,
            r#"arches = ["amd64", "arm64v8"]"#,
        )
        .replace("{out}.tar", "{out}.tar http://deb.debian.org/debian");
    assert!(
        text.contains(r#"arches = ["amd64", "arm64v8"]"#),
        "the example's arches line changed"
    );
    p.manifest(&text);
    p.imgraph(&["build"]).success();
    // Each per-arch layout is one image that docker-library's oci-import,
    // oci-image-tool, skopeo and umoci accept.
    assert_eq!(
        crate::support::oci_import::check_all_layouts(&p.path("out")),
        2
    );
    for (arch, qemu, machine) in [
        ("amd64", None, "x86_64"),
        ("arm64v8", Some("qemu-aarch64-static"), "aarch64"),
    ] {
        let bundle = tempfile::tempdir().unwrap();
        let dir = bundle.path().join("b");
        let layout = p.path(&format!("out/busybox/trixie/{arch}"));
        tool(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &format!("{}:trixie", layout.display()),
                dir.to_str().unwrap(),
            ],
        );
        let busybox = dir.join("rootfs/bin/busybox");
        let out = match qemu {
            None => tool(busybox.to_str().unwrap(), &["uname", "-m"]),
            Some(q) => tool(q, &[busybox.to_str().unwrap(), "uname", "-m"]),
        };
        assert_eq!(out.trim(), machine, "{arch}");
        assert_eq!(
            std::fs::read_link(dir.join("rootfs/bin/sh"))
                .unwrap()
                .to_str()
                .unwrap(),
            "busybox"
        );
    }
    // Rebuilding from scratch gives the same index.
    p.imgraph(&["verify", "--reproducible"]).success();
}

/// The minideb example's committed lock covers its manifest, with no network:
/// what `lock --check` in its README says.
#[test]
fn minideb_example_lock_covers_its_manifest() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minideb");
    let p = Project::new();
    for f in ["images.toml", "images.lock"] {
        p.file(f, &std::fs::read(example.join(f)).unwrap());
    }
    let text = std::fs::read_to_string(p.path("images.toml"))
        .unwrap()
        .replace("../../schemas", "schemas");
    p.manifest(&text);
    p.imgraph(&["lock", "--check"]).success();
    let plan = p.plan(&[]);
    assert_eq!(
        plan.iter()
            .filter(|(id, _, _)| id.starts_with("rootfs:minideb:"))
            .count(),
        12,
        "2 dists x 6 arches"
    );
}

/// `[images.minideb.rootfs.debian]` with no `[images.minideb.rootfs]` line is
/// valid TOML (the dotted header creates `rootfs`): the example written that
/// way loads, its lock still covers it, and it plans the same steps.
#[test]
fn minideb_example_with_only_a_rootfs_debian_header_plans_the_same_steps() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minideb");
    let p = Project::new();
    p.file(
        "images.lock",
        &std::fs::read(example.join("images.lock")).unwrap(),
    );
    let text = std::fs::read_to_string(example.join("images.toml"))
        .unwrap()
        .replace("../../schemas", "schemas");
    p.manifest(&text);
    let inline = p.plan(&[]);
    let line =
        r#"rootfs = { debian = { variant = "minbase", suites = ["{dist}", "{dist}-updates"] } }"#;
    assert!(text.contains(line), "the example's rootfs line changed");
    let headers = text.replace(
        line,
        "[images.minideb.rootfs.debian]\nvariant = \"minbase\"\nsuites = [\"{dist}\", \"{dist}-updates\"]",
    );
    p.manifest(&headers);
    p.imgraph(&["lock", "--check"]).success();
    assert_eq!(p.plan(&[]), inline);
    // rootfs, layer, config, manifest, sbom, provenance per platform; index, tag per dist.
    assert_eq!(inline.len(), 12 * 6 + 2 * 2, "{inline:?}");
}

/// Running an example writes `cache/` and `out/` beside its images.toml: git
/// ignores them for every example (so `git status` stays clean after a run), and
/// none of their files is committed (minideb's cache once was: 106 MB of indexes).
#[test]
fn examples_cache_and_out_are_ignored_and_none_is_committed() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .expect("git")
    };
    let tracked = git(&["ls-files", "examples"]);
    assert!(tracked.status.success());
    let tracked = String::from_utf8_lossy(&tracked.stdout).into_owned();
    let committed: Vec<&str> = tracked
        .lines()
        .filter(|l| l.split('/').any(|c| c == "cache" || c == "out"))
        .collect();
    assert!(committed.is_empty(), "committed run output: {committed:?}");
    let examples: Vec<String> = std::fs::read_dir(repo.join("examples"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("images.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(examples.len() >= 3, "{examples:?}");
    for example in &examples {
        for dir in ["cache", "out"] {
            // A file such a run writes; check-ignore needs no file on disk.
            let path = format!("examples/{example}/{dir}/blobs/sha256/0");
            let ignored = git(&["check-ignore", "-q", "--no-index", &path]);
            assert!(ignored.status.success(), "{path} is not git-ignored");
        }
    }
}
