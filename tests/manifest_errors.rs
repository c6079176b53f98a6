//! Bad manifests exit 2 and say where and how to fix it.

use crate::support::Project;

/// (what, manifest, substrings the error must contain)
const CASES: &[(&str, &str, &[&str])] = &[
    (
        // (The implied `rootfs` table itself is fine: `dir` is a string, not a table.)
        "a rootfs source written as a table header",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\n[images.a.rootfs.dir]\n",
        &["images.toml:4:1", "invalid type: map, expected a string"],
    ),
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
        // `rootfs` created implicitly by a dotted key and a dotted header: the
        // diagnostic points at the first thing written below it.
        "two rootfs sources, rootfs table implicit",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs.dir = \"r\"\n\n[images.a.rootfs.debian]\nvariant = \"minbase\"\n",
        &["images.toml:4:8", "more than one source"],
    ),
    (
        "no rootfs source, rootfs table implicit",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\n\n[images.a.rootfs.x]\n",
        &["images.toml:5:1", "unknown field `x`"],
    ),
    (
        "unknown compression",
        "[settings]\ncompression = \"lz4\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:15", "unknown compression \"lz4\""],
    ),
    ("no images", "[settings]\n", &["declares no images", "imgraph init"]),
    (
        "typo in settings",
        "[settings]\ncach = \"c\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:1", "did you mean `cache`?"],
    ),
    (
        "typo in rootfs",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dirr = \"r\" }\n",
        &["images.toml:4:12", "did you mean `dir`?"],
    ),
    (
        "typo in config",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\nconfig = { cmdd = [\"x\"] }\n",
        &["images.toml:5:12", "did you mean `cmd`?"],
    ),
    (
        "typo at the top",
        "[imagess.a]\n",
        &["images.toml:1:2", "did you mean `images`?"],
    ),
    (
        "registry url without host",
        "[registries.x]\nurl = \"/ns\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:7", "has no host", "host[:port]/namespace"],
    ),
    (
        "credentials in a registry url",
        "[registries.x]\nurl = \"bob:hunter2@reg.example/ns\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:8", "credentials", "~/.docker/config.json", "docker login reg.example", "url = \"bob:*******@reg.example/ns\""],
    ),
    (
        "https scheme with insecure = true",
        "[registries.x]\nurl = \"https://reg.example/ns\"\ninsecure = true\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:8", "`https://` and `insecure = true` disagree", "http://"],
    ),
    (
        "http scheme with insecure = false",
        "[registries.x]\nurl = \"http://127.0.0.1:5000/ns\"\ninsecure = false\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:8", "`http://` and `insecure = false` disagree"],
    ),
    (
        "unknown url scheme",
        "[registries.x]\nurl = \"docker://reg.example/ns\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:8", "scheme `docker://`", "https://"],
    ),
    (
        "registry port out of range",
        "[registries.x]\nurl = \"127.0.0.1:99999/ns\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:18", "port 99999 is out of range", "1-65535"],
    ),
    (
        "registry port zero",
        "[registries.x]\nurl = \"reg.example:0\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:20", "port 0 is out of range"],
    ),
    (
        "unknown owners",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\", owners = \"nobody\" }\n",
        &["images.toml:4:32", "unknown owners \"nobody\""],
    ),
    (
        "owners on a tarball",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { tar = \"r\", owners = \"root\" }\n",
        &["images.toml:4:32", "`owners` only applies to a `dir` rootfs"],
    ),
    (
        "inputs on a dir",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\", inputs = [\"x\"] }\n",
        &["images.toml:4:33", "`inputs` only applies to a `command` rootfs"],
    ),
    (
        "bad timeout",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { command = \"true {out}\", timeout = \"soon\" }\n",
        &["images.toml:4:46", "bad timeout \"soon\"", "30m"],
    ),
    (
        "dist listed twice",
        "[images.a]\ndists = [\"one\", \"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:17", "dist \"one\" is listed twice"],
    ),
    (
        "arch listed twice",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\", \"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:3:20", "arch \"amd64\" is listed twice"],
    ),
    (
        "uppercase image name",
        "[images.Hello]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:1:9", "not a valid repository name"],
    ),
    (
        "invalid tag",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\ntags = [\"bad tag!\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:4:9", "tag \"bad tag!\" is not a valid tag"],
    ),
    (
        "per-arch variable in a tag",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\ntags = [\"{arch}\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:4:10", "{arch} has no value for a:one"],
    ),
    (
        "missing rootfs",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\n",
        &["images.toml:1:1", "missing field `rootfs`"],
    ),
    (
        "empty dists",
        "[images.a]\ndists = []\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:9", "lists no dists"],
    ),
    (
        "unclosed template brace",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r/{dist\" }\n",
        &["images.toml:4:21", "unclosed `{`"],
    ),
    (
        "missing tarball",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { tar = \"missing.tar\" }\n",
        &["images.toml:4:18", "rootfs tarball \"missing.tar\" for a:one/amd64 does not exist"],
    ),
    (
        "missing command input",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { command = \"true {out}\", inputs = [\"nope\"] }\n",
        &["images.toml:4:46", "input \"nope\" for a:one/amd64 does not exist"],
    ),
    (
        "source-date-epoch unset",
        "[settings]\ncreated = \"source-date-epoch\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:11", "SOURCE_DATE_EPOCH is not set"],
    ),
    (
        "a number where a string goes",
        "[images.a]\ndists = [1]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:10", "invalid type: integer `1`, expected a string"],
    ),
    (
        "created is a number",
        "[settings]\ncreated = 5\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:11", "`created` must be a timestamp string, not 5", "RFC 3339", "\"git\"", "\"source-date-epoch\""],
    ),
    (
        "an image table defined twice",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n[images.a]\ndists = [\"two\"]\n",
        &["[images.a] is defined twice: at images.toml:1:1 and at images.toml:5:1", "merge the two tables"],
    ),
    (
        "created = git outside a git repository",
        "[settings]\ncreated = \"git\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
        &["images.toml:2:11", "there is no git repository at", "git init"],
    ),
    (
        "unknown debian variant",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { debian = { variant = \"minbas\", keyring = \"keyring.gpg\" } }\n",
        &["images.toml:4:33", "unknown debian variant \"minbas\"", "did you mean \"minbase\"?"],
    ),
    (
        "debian rootfs for an arch Debian has no port for",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\", \"arm32v6\"]\nrootfs = { debian = { keyring = \"keyring.gpg\" } }\n",
        &["images.toml:3:20", "arch \"arm32v6\" cannot have a `debian` rootfs: Debian has no port for it", "remove \"arm32v6\" from `arches`"],
    ),
    (
        "not a debian package name",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { debian = { include = [\"ca-certificates\", \"Curl\"], keyring = \"keyring.gpg\" } }\n",
        &["images.toml:4:53", "include entry \"Curl\" is not a Debian package name", "did you mean \"curl\"?"],
    ),
    (
        "missing debian keyring",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { debian = { keyring = \"keys/{dist}.gpg\" } }\n",
        &["images.toml:4:33", "debian keyring \"keys/one.gpg\" does not exist", "keys/one.gpg is where it was looked for"],
    ),
    (
        "typo inside debian",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { debian = { varient = \"apt\", keyring = \"keyring.gpg\" } }\n",
        &["images.toml:4:23", "unknown field `varient`", "did you mean `variant`?"],
    ),
    (
        "credentials in a debian mirror",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { debian = { mirror = \"http://bob:hunter2@deb.example/debian\", keyring = \"keyring.gpg\" } }\n",
        &["images.toml:4:40", "mirror url has credentials in it", "remove `user:password@`", "bob:*******@deb.example"],
    ),
    (
        "ftp debian mirror",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { debian = { security = \"ftp://deb.example/debian-security\", keyring = \"keyring.gpg\" } }\n",
        &["images.toml:4:34", "security \"ftp://deb.example/debian-security\" is not an http:// or https:// url"],
    ),
    (
        "empty debian suites",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { debian = { suites = [], keyring = \"keyring.gpg\" } }\n",
        &["images.toml:4:32", "`suites` is empty", "[\"{dist}\"]"],
    ),
    (
        "package both included and excluded",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { debian = { include = [\"curl\"], exclude = [\"curl\"], keyring = \"keyring.gpg\" } }\n",
        &["images.toml:4:54", "package \"curl\" is both included and excluded"],
    ),
];

#[test]
fn every_bad_manifest_exits_2_with_location_and_hint() {
    assert!(
        CASES.len() >= 30,
        "the hardening issue asks for at least 30 distinct bad manifests"
    );
    for (what, text, needles) in CASES {
        let p = Project::new();
        std::fs::create_dir_all(p.path("r")).unwrap();
        // A keyring, so a `debian` case fails for its own mistake alone.
        p.file("keyring.gpg", b"not read by check");
        p.manifest(text);
        let run = p.imgraph_env(&["plan"], &[("SOURCE_DATE_EPOCH", "")]);
        assert_eq!(run.code, 2, "{what}: exit {}\n{}", run.code, run.stderr);
        for n in *needles {
            assert!(
                run.stderr.contains(n),
                "{what}: stderr lacks {n:?}:\n{}",
                run.stderr
            );
        }
        assert!(
            !run.stderr.contains("hunter2"),
            "{what}: secret printed:\n{}",
            run.stderr
        );
    }
}

/// Every key of a `debian` rootfs, templates included, is accepted by `check`.
#[test]
fn a_debian_rootfs_with_every_key_passes_check() {
    let p = Project::new();
    p.file("keys/archive.gpg", b"a keyring");
    p.manifest(
        r#"[images.minideb]
dists = ["bookworm", "trixie"]
arches = ["amd64", "arm64v8"]
rootfs = { debian = { variant = "apt", include = ["ca-certificates", "curl"], exclude = ["e2fsprogs"], mirror = "https://deb.debian.org/debian/", suites = ["{dist}", "{dist}-updates"], security = "http://deb.debian.org/debian-security", components = ["main", "contrib"], keyring = "keys/archive.gpg" } }

[images.minimal]
dists = ["bookworm"]
arches = ["i386"]
rootfs = { debian = { keyring = "keys/archive.gpg" } }
"#,
    );
    let run = p.imgraph(&["check"]).success();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
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

/// The errors `check` printed, as (location, message) pairs in order.
fn problems(stderr: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = stderr.lines().collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let message = w[0].strip_prefix("error: ")?;
            let location = w[1].trim_start().strip_prefix("--> ")?;
            Some((location.to_string(), message.to_string()))
        })
        .collect()
}

#[test]
fn check_reports_an_unknown_key_and_a_bad_arch_in_one_table() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("r")).unwrap();
    p.manifest("[images.a]\ndists = [\"one\"]\narches = [\"amd46\"]\ndsts = [\"b\"]\nrootfs = { dir = \"r\" }\n");
    let run = p.imgraph(&["check"]).code(2);
    let found = problems(&run.stderr);
    assert_eq!(found.len(), 2, "{}", run.stderr);
    assert_eq!(found[0].0, "images.toml:3:11");
    assert!(found[0].1.contains("unknown arch \"amd46\""));
    assert_eq!(found[1].0, "images.toml:4:1");
    assert!(found[1].1.contains("unknown field `dsts`"));
    run.stderr_has(&[
        "did you mean \"amd64\"?",
        "did you mean `dists`?",
        "has 2 problems",
    ]);
}

#[test]
fn check_reports_problems_of_every_kind_across_tables() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("r")).unwrap();
    p.manifest(
        r#"[settings]
compresion = "zstd"

[registries.local]
url = "127.0.0.1:5000/lib"
insecure = "yes"

[images.a]
dists = ["one"]
arches = ["amd46"]
rootfs = { dir = "r" }

[images.b]
dists = "two"
arches = ["amd64"]
rootfs = { dir = "r", ownrs = "preserve" }
"#,
    );
    let run = p.imgraph(&["check"]).code(2);
    let found = problems(&run.stderr);
    let at: Vec<&str> = found.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        at,
        [
            "images.toml:2:1",   // unknown key in [settings]
            "images.toml:6:12",  // wrong type in [registries.local]
            "images.toml:10:11", // bad arch in [images.a]
            "images.toml:14:9",  // wrong type in [images.b]
            "images.toml:16:23", // unknown key in an inline table
        ],
        "{}",
        run.stderr
    );
    run.stderr_has(&[
        "did you mean `compression`?",
        "expected a boolean",
        "did you mean \"amd64\"?",
        "expected a sequence",
        "did you mean `owners`?",
        "has 5 problems",
    ]);
    // The placeholder for the wrong-typed dists is not reported as empty.
    assert!(!found
        .iter()
        .any(|(_, m)| m.contains("empty") || m.contains("no dists")));
}

#[test]
fn check_reports_three_unknown_keys_at_once() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("r")).unwrap();
    p.manifest("[settings]\ncreatd = \"2024-06-01T00:00:00Z\"\n[images.a]\ndsts = [\"one\"]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\nconfg = { cmd = [\"/x\"] }\n");
    let run = p.imgraph(&["check"]).code(2);
    let found = problems(&run.stderr);
    let at: Vec<&str> = found.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        at,
        ["images.toml:2:1", "images.toml:4:1", "images.toml:8:1"],
        "{}",
        run.stderr
    );
    run.stderr_has(&[
        "did you mean `created`?",
        "did you mean `dists`?",
        "did you mean `config`?",
        "has 3 problems",
    ]);
}

/// One rule for repository names: what `check` accepts is what a push accepts.
#[test]
fn a_double_dot_in_a_registry_namespace_or_an_image_name_fails_check() {
    for (what, text, at) in [
        (
            "registry namespace",
            "[registries.r]\nurl = \"127.0.0.1:5000/a..b\"\ninsecure = true\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nregistries = [\"r\"]\nrootfs = { dir = \"r\" }\n",
            "images.toml:2:",
        ),
        (
            "image name",
            "[images.\"a..b\"]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
            "images.toml:1:",
        ),
    ] {
        let p = Project::new();
        std::fs::create_dir_all(p.path("r")).unwrap();
        p.manifest(text);
        let run = p.imgraph(&["check"]);
        assert_eq!(run.code, 2, "{what}: {}", run.stderr);
        assert!(run.stderr.contains("a..b") && run.stderr.contains(at), "{what}: {}", run.stderr);
    }
}

#[test]
fn a_missing_manifest_exits_2_naming_it() {
    let p = Project::new();
    p.imgraph(&["plan"]).code(2).stderr_has(&["images.toml"]);
}
