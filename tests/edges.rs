//! The edges: exports never destroy what they did not write, substituted paths
//! never split or run as shell code, relative and stdout outputs work.

use serde_json::Value;

use crate::support::{hello_binary, tool, Project};

fn index_refs(layout: &std::path::Path) -> Vec<(String, String)> {
    let v: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap())
        .expect("index.json is JSON");
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn export_refuses_a_folder_that_is_not_a_layout_and_keeps_its_files() {
    let p = Project::hello(&["amd64"]);
    p.file("keep/k", b"k\n");
    p.imgraph(&["export", "hello:one", "--format", "oci", "-o", "./keep"])
        .code(2)
        .stderr_has(&["keep", "not an OCI layout"]);
    assert_eq!(std::fs::read(p.path("keep/k")).unwrap(), b"k\n");
    assert_eq!(p.path("keep").read_dir().unwrap().count(), 1);

    // The project root itself: nothing may go.
    let root = p.root().to_str().unwrap().to_string();
    p.imgraph(&["export", "hello:one", "-o", &root]).code(2);
    for kept in ["images.toml", "keep/k", "rootfs/one/amd64/hello"] {
        assert!(p.path(kept).exists(), "{kept} was removed");
    }

    // A file where a layout folder should go.
    p.file("plain", b"p");
    p.imgraph(&["export", "hello:one", "--format", "oci", "-o", "plain"])
        .code(2)
        .stderr_has(&["not a folder"]);
    assert_eq!(std::fs::read(p.path("plain")).unwrap(), b"p");
}

#[test]
fn export_adds_to_an_existing_layout_merging_by_ref_name() {
    let p = Project::hello(&["amd64", "arm64v8"]);
    p.imgraph(&["build"]).success();
    let layout = p.path("layout");
    // Another image already in the layout, copied there by skopeo.
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:one", p.path("out/hello/one/amd64").display()),
            &format!("oci:{}:other", layout.display()),
        ],
    );
    p.file("layout/notes.txt", b"mine\n");
    p.imgraph(&["export", "hello:one", "-o", "layout"])
        .success();
    let refs = index_refs(&layout);
    let index = p.index_digest("hello", "one");
    assert!(refs.iter().any(|(n, _)| n == "other"), "{refs:?}");
    assert!(refs.contains(&("one".into(), index.clone())), "{refs:?}");
    assert_eq!(
        std::fs::read(p.path("layout/notes.txt")).unwrap(),
        b"mine\n"
    );

    // Exporting again after a change replaces the entry of the same name, once.
    p.file("rootfs/one/amd64/etc/hostname", b"changed\n");
    p.imgraph(&["export", "hello:one", "-o", "layout"])
        .success();
    let refs = index_refs(&layout);
    let ones: Vec<_> = refs.iter().filter(|(n, _)| n == "one").collect();
    assert_eq!(ones.len(), 1, "{refs:?}");
    assert_ne!(ones[0].1, index, "the entry was not replaced");
    assert!(refs.iter().any(|(n, _)| n == "other"), "{refs:?}");
    // Both images read back whole.
    for name in ["one", "other"] {
        let copy = tempfile::tempdir().unwrap();
        tool(
            "skopeo",
            &[
                "copy",
                "--all",
                &format!("oci:{}:{name}", layout.display()),
                &format!("oci:{}:x", copy.path().display()),
            ],
        );
    }
    tool(
        "oci-image-tool",
        &["validate", "--type", "image", layout.to_str().unwrap()],
    );
}

#[test]
fn the_readmes_relative_export_names_work() {
    let p = Project::hello(&["amd64", "arm64v8"]);
    // The README's own command, with a bare relative folder name.
    p.imgraph(&["export", "hello:one", "--format", "oci", "-o", "hello-oci"])
        .success();
    tool(
        "oci-image-tool",
        &[
            "validate",
            "--type",
            "image",
            p.path("hello-oci").to_str().unwrap(),
        ],
    );
    // `-o .` from inside an empty folder.
    std::fs::create_dir(p.path("empty")).unwrap();
    let manifest = p.path("images.toml");
    crate::support::imgraph_in(
        &p.path("empty"),
        &[
            "-f",
            manifest.to_str().unwrap(),
            "export",
            "hello:one",
            "-o",
            ".",
        ],
        &[],
    )
    .success();
    assert_eq!(index_refs(&p.path("empty"))[0].0, "one");
    // A bare .tar name: the format follows from the name.
    p.imgraph(&["export", "hello:one/arm64v8", "-o", "hello.tar"])
        .success();
    let v: Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            &format!("docker-archive:{}", p.path("hello.tar").display()),
        ],
    ))
    .unwrap();
    assert_eq!(v["Architecture"], "arm64");
}

#[test]
fn docker_archive_to_stdout_and_never_onto_a_folder() {
    let p = Project::hello(&["amd64"]);
    // `-o -` streams the archive to stdout, like `docker save`.
    let streamed = p
        .imgraph(&["export", "hello:one/amd64", "-o", "-"])
        .success()
        .stdout_bytes;
    assert!(!p.path("-").exists(), "wrote a file named -");
    std::fs::write(p.path("streamed.tar"), &streamed).unwrap();
    p.imgraph(&["export", "hello:one/amd64", "-o", "file.tar"])
        .success();
    assert_eq!(
        std::fs::read(p.path("file.tar")).unwrap(),
        streamed,
        "stdout and file archives differ"
    );
    tool(
        "skopeo",
        &[
            "inspect",
            &format!("docker-archive:{}", p.path("streamed.tar").display()),
        ],
    );
    // Onto an existing regular file: replaced, and said so.
    p.imgraph(&["export", "hello:one/amd64", "-o", "file.tar"])
        .success()
        .stderr_has(&["replaced"]);
    // Onto a folder: refused, nothing in it touched.
    p.file("dir.tar/k", b"k");
    p.imgraph(&[
        "export",
        "hello:one/amd64",
        "--format",
        "docker-archive",
        "-o",
        "dir.tar",
    ])
    .code(2)
    .stderr_has(&["is a folder"]);
    assert_eq!(std::fs::read(p.path("dir.tar/k")).unwrap(), b"k");
    // An OCI layout cannot go to stdout.
    p.imgraph(&["export", "hello:one", "--format", "oci", "-o", "-"])
        .code(2);
}

/// `{out}` in a command reaches the shell as one word: a project folder with
/// spaces and shell syntax, and a `--cache` path with `;`, neither split nor run.
#[test]
fn substituted_paths_are_single_shell_words() {
    let p = Project::in_awkward_folder();
    p.executable(
        "mk",
        format!(
            "#!/bin/sh\nset -e\nmkdir -p \"$1/etc\"\ncp '{}' \"$1/hello\"\necho hi > \"$1/etc/hostname\"\n",
            hello_binary("amd64").display()
        )
        .as_bytes(),
    );
    p.manifest(
        r#"[settings]
created = "2024-06-01T00:00:00Z"
[images.dir]
dists = ["one"]
arches = ["amd64"]
rootfs = { command = "./mk {out}", inputs = ["mk"] }
[images.tarball]
dists = ["one"]
arches = ["amd64"]
rootfs = { command = "./mk {out}.d && tar -C {out}.d -cf {out}.tar . && echo '{out}' > /dev/null", inputs = ["mk"] }
"#,
    );
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("PWNED");
    let cache = scratch.path().join(format!(
        "c x; touch {}; $(touch {})",
        marker.display(),
        marker.display()
    ));
    p.imgraph(&["build", "--cache", cache.to_str().unwrap()])
        .success();
    assert!(!marker.exists(), "a path was run as shell code");
    // Nothing was written beside the project folder (a split path would land there).
    let parent = p.root().parent().unwrap();
    for entry in parent.read_dir().unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !(name == "My" || name.starts_with("Proj")),
            "a split path wrote {}",
            entry.path().display()
        );
    }
    for image in ["dir", "tarball"] {
        assert!(
            p.path(&format!("out/{image}/one/amd64/index.json"))
                .is_file(),
            "{image} not exported"
        );
    }
}
