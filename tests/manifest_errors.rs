//! Bad manifests exit 2 and say where and how to fix it.

use crate::support::Project;

/// (what, manifest, substrings the error must contain)
const CASES: &[(&str, &str, &[&str])] = &[
    (
        "toml syntax error",
        "[images.a\ndists = [\"one\"]\n",
        &["images.toml:1:", "^"],
    ),
    (
        "unknown key with suggestion",
        "[images.a]\ndsts = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:1", "unknown field `dsts`", "did you mean `dists`?"],
    ),
    (
        "unknown arch with suggestion",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd46\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:3:11", "unknown arch \"amd46\"", "did you mean \"amd64\"?"],
    ),
    (
        "wrong type",
        "[images.a]\ndists = \"one\"\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:9", "invalid type"],
    ),
    (
        "unknown template variable",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r/{dsit}\" }\n",
        &["images.toml:4:21", "unknown template variable {dsit}", "did you mean {dist}?"],
    ),
    (
        "variable without a value for a platform",
        "[images.a]\ndists = [\"one\"]\narches = [\"arm32v6\"]\nrootfs = { dir = \"r/{debian_arch}\" }\n",
        &["images.toml:4:", "{debian_arch} has no value for a:one/arm32v6"],
    ),
    (
        "missing rootfs dir",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"nope/{arch}\" }\n",
        &["images.toml:4:18", "rootfs dir \"nope/amd64\" for a:one/amd64 does not exist"],
    ),
    (
        "undeclared registry",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nregistries = [\"hub\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:4:15", "registry \"hub\" is not declared", "[registries.hub]"],
    ),
    (
        "latest not a dist",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nlatest = \"two\"\nrootfs = { dir = \"r\" }\n",
        &["images.toml:4:10", "latest = \"two\" is not one of this image's dists", "use one of: one"],
    ),
    (
        "bad created",
        "[settings]\ncreated = \"yesterday\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:11", "bad `created`", "RFC 3339"],
    ),
    (
        "empty arches",
        "[images.a]\ndists = [\"one\"]\narches = []\nrootfs = { dir = \"r\" }\n",
        &["images.toml:3:10", "lists no arches"],
    ),
    (
        "duplicate tags across dists",
        "[images.a]\ndists = [\"one\", \"two\"]\narches = [\"amd64\"]\ntags = [\"stable\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:4:8", "tag \"stable\" is given to both dist \"one\" and \"two\""],
    ),
    (
        "two rootfs sources",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\", tar = \"r.tar\" }\n",
        &["images.toml:4:10", "more than one source"],
    ),
    (
        "unknown compression",
        "[settings]\ncompression = \"lz4\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:15", "unknown compression \"lz4\""],
    ),
    ("no images", "[settings]\n", &["declares no images", "imgraph init"]),
];

#[test]
fn every_bad_manifest_exits_2_with_location_and_hint() {
    for (what, text, needles) in CASES {
        let p = Project::new();
        std::fs::create_dir_all(p.path("r")).unwrap();
        p.manifest(text);
        let run = p.imgraph(&["plan"]);
        assert_eq!(run.code, 2, "{what}: exit {}\n{}", run.code, run.stderr);
        for n in *needles {
            assert!(
                run.stderr.contains(n),
                "{what}: stderr lacks {n:?}:\n{}",
                run.stderr
            );
        }
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let p = Project::new();
    p.manifest("[images.a]\ndists = [\"one\"]\narches = [\"amd46\", \"arm64\"]\nrootfs = { dir = \"missing\" }\n");
    let run = p.imgraph(&["plan"]).code(2);
    assert!(
        run.stderr.contains("\"amd46\"") && run.stderr.contains("\"arm64\""),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_manifest_exits_2_naming_it() {
    let p = Project::new();
    p.imgraph(&["plan"]).code(2).stderr_has(&["images.toml"]);
}
