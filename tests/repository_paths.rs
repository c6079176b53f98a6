//! Image names that are repository paths (`[images."a/b"]`): selectors, step ids,
//! out/ folders and pushes all use the path, and a pair of images whose out/ folders
//! would overlap is refused by `check`.

use crate::support::registry::{Auth, RegistryGuard};
use crate::support::{remote_digest, skopeo_copy_all, Project};

#[test]
fn an_image_named_by_a_path_is_selected_exported_and_pushed_under_its_path() {
    let reg = RegistryGuard::start(Auth::None);
    let p = Project::new();
    for arch in ["amd64", "arm64v8"] {
        p.hello_rootfs("one", arch);
    }
    // `a` beside `a/b`: its dist `c` is not `b`, so their folders do not meet.
    p.manifest(&format!(
        r#"[settings]
created = "2024-06-01T00:00:00Z"

[registries.local]
url = "{}/namespace"
insecure = true

[images."a/b"]
dists = ["one"]
arches = ["amd64", "arm64v8"]
registries = ["local"]
rootfs = {{ dir = "rootfs/{{dist}}/{{arch}}" }}

[images.a]
dists = ["c"]
arches = ["amd64"]
rootfs = {{ dir = "rootfs/one/{{arch}}" }}
"#,
        reg.url()
    ));
    p.imgraph(&["check"]).success();

    // Every selector form names the path image, and only it.
    let ids = |selector: &str| -> Vec<String> {
        p.plan(&[selector])
            .into_iter()
            .map(|(id, _, _)| id)
            .collect()
    };
    let platform = ids("a/b:one/amd64");
    assert_eq!(
        platform,
        [
            "rootfs:a/b:one/amd64",
            "layer:a/b:one/amd64",
            "config:a/b:one/amd64",
            "manifest:a/b:one/amd64",
            "sbom:a/b:one/amd64",
            "provenance:a/b:one/amd64"
        ],
        "{platform:?}"
    );
    for selector in ["a/b", "a/b:one"] {
        let all = ids(selector);
        assert!(
            all.contains(&"index:a/b:one".to_string())
                && all.iter().all(|id| id.contains(":a/b:one")),
            "{selector}: {all:?}"
        );
    }
    assert!(ids("a").iter().all(|id| id.contains(":a:c")));
    p.imgraph(&["plan", "a/b:two"])
        .code(2)
        .stderr_has(&["image \"a/b\" has no dist \"two\""]);
    let explained = p.imgraph(&["explain", "layer:a/b:one/amd64"]).success();
    assert!(
        explained.stdout.contains("step     layer:a/b:one/amd64"),
        "{}",
        explained.stdout
    );

    // One platform: its layout, and nothing else.
    p.imgraph(&["build", "a/b:one/amd64"]).success();
    assert!(p.path("out/a/b/one/amd64/index.json").is_file());
    assert!(!p.path("out/a/b/one/index").exists());
    assert!(!p.path("out/a/c").exists());

    // Everything, pushed: the registry serves the index under namespace/a/b.
    p.imgraph(&["build", "--push"]).success();
    for dir in [
        "out/a/b/one/amd64",
        "out/a/b/one/arm64v8",
        "out/a/b/one/index",
        "out/a/c/amd64",
        "out/a/c/index",
    ] {
        assert!(p.path(dir).join("index.json").is_file(), "{dir}");
    }
    let index = p.index_digest("a/b", "one");
    let reference = format!("{}/namespace/a/b:one", reg.url());
    assert_eq!(remote_digest(&reference), index);
    skopeo_copy_all(&reference);
}

#[test]
fn an_image_path_that_meets_another_images_dist_folder_exits_2_naming_both() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("r")).unwrap();
    p.manifest(
        "[images.a]\ndists = [\"b\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n\n[images.\"a/b\"]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
    );
    for cmd in ["check", "build"] {
        p.imgraph(&[cmd]).code(2).stderr_has(&[
            "image \"a/b\" and dist \"b\" of image \"a\" would both be exported to out/a/b/",
            "images.toml:6:9",
            "image \"a\" is defined at images.toml:1:9, its dist \"b\" at images.toml:2:10",
            "rename image \"a/b\"",
        ]);
    }
    assert!(!p.path("out").exists());
}
