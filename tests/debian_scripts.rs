//! Maintainer scripts are read, not run, and never silently dropped: every
//! command a package's `preinst`/`postinst` runs on a first install whose effect
//! imgraph does not reproduce is named (package, script, line) by `build`,
//! `explain` and `--json`, and fails the build with `scripts = "strict"`.

use serde_json::Value;

use crate::support::apt_repo::{AptRepo, SUITE};
use crate::support::Project;

/// `scripted`'s postinst: a no-op, a guard that holds (tool-foo ships
/// `/usr/bin/foo`) and one that does not, a `case "$1"`, a function, an effect
/// imgraph reproduces (pam-auth-update) and two it does not.
const POSTINST: &str = r#"#!/bin/sh
set -e
frob() {
    frobnicate --all "$@"
}
case "$1" in
    configure)
        dpkg-maintscript-helper rm_conffile /etc/old.conf 0.9 scripted -- "$@"
        if [ -x /usr/bin/foo ]; then
            foo --register scripted
        fi
        if [ -x /usr/bin/absent ]; then
            absent --never
        fi
        frob
        update-ca-certificates --fresh
        pam-auth-update --package
        echo "scripted configured"
    ;;
    abort-upgrade|abort-remove)
        never-on-install
    ;;
    *)
        echo "postinst called with unknown argument \`$1'" >&2
        exit 1
    ;;
esac
# Automatically added by dh_installdeb/13.11.4
dpkg-maintscript-helper rm_conffile /etc/x.conf 1.0 -- "$@"
# End automatically added section
exit 0
"#;

/// `scripted`'s preinst: only `install` runs on a first install.
const PREINST: &str = "#!/bin/sh\nset -e\nif [ \"$1\" = install ]; then\n    prepare-things\nfi\nif [ \"$1\" = upgrade ]; then\n    migrate-things\nfi\n";

/// What `scripted`'s scripts report, in order: (script, line, command).
const EXPECTED: &[(&str, u64, &str)] = &[
    ("preinst", 4, "prepare-things"),
    ("postinst", 10, "foo --register scripted"),
    ("postinst", 4, "frobnicate --all"),
    ("postinst", 16, "update-ca-certificates --fresh"),
];

/// The test archive plus `tool-foo` (ships an executable `/usr/bin/foo`) and
/// `scripted`.
fn repo() -> AptRepo {
    let repo = AptRepo::start();
    repo.add_package(
        "tool-foo",
        "1.0-1",
        "",
        &[("usr/bin/foo", "#!/bin/sh\n", 0o755)],
        &[],
    );
    repo.add_package(
        "scripted",
        "2.0-1",
        "Depends: tool-foo\n",
        &[],
        &[("postinst", POSTINST), ("preinst", PREINST)],
    );
    repo
}

/// A `debian` image `tiny` of the test archive for amd64, with `scripted` and
/// `debian` keys `extra`.
fn project(repo: &AptRepo, extra: &str) -> Project {
    let p = Project::new();
    p.manifest(&format!(
        r#"[settings]
created = "2026-12-01T00:00:00Z"

[images.tiny]
dists = ["{SUITE}"]
arches = ["amd64"]
rootfs = {{ debian = {{ mirror = "{}", keyring = "{}", include = ["scripted"]{extra} }} }}
"#,
        repo.url(),
        repo.keyring.display(),
    ));
    p.imgraph(&["lock"]).success();
    p
}

fn as_rows(list: &Value) -> Vec<(String, u64, String)> {
    list.as_array()
        .expect("a list of commands")
        .iter()
        .filter(|c| c["package"] == "scripted")
        .map(|c| {
            (
                c["script"].as_str().unwrap().to_string(),
                c["line"].as_u64().unwrap(),
                c["command"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expected() -> Vec<(String, u64, String)> {
    EXPECTED
        .iter()
        .map(|(s, l, c)| (s.to_string(), *l, c.to_string()))
        .collect()
}

const STEP: &str = "rootfs:tiny:imtest/amd64";

#[test]
fn build_explain_and_json_name_exactly_the_commands_not_reproduced() {
    let repo = repo();
    let p = project(&repo, "");
    let run = p.imgraph(&["build"]).success();
    let line = format!(
        "tiny:{SUITE}/amd64: 4 maintainer-script commands not reproduced; imgraph explain {STEP}"
    );
    run.stderr_has(&[&line]);

    // explain lists them with package, script and line, from the cached output.
    let explained = p.imgraph(&["explain", STEP]).success();
    for (script, n, command) in EXPECTED {
        let want = format!("scripted {script} line {n}: {command}");
        assert!(
            explained.stdout.contains(&want) || explained.stderr.contains(&want),
            "explain lacks {want:?}:\n{}{}",
            explained.stdout,
            explained.stderr
        );
    }
    for never in [
        "absent --never",
        "never-on-install",
        "migrate-things",
        "pam-auth-update",
        "dpkg-maintscript-helper",
        "echo",
    ] {
        assert!(
            !explained.stdout.contains(never),
            "{never} is reported:\n{}",
            explained.stdout
        );
    }
    let json = p.imgraph(&["explain", STEP, "--json"]).success().json();
    assert_eq!(as_rows(&json["outputs"]["scripts"]), expected());

    // A warm build (nothing runs) says it again; --json carries the list; -q
    // silences the notice.
    let warm = p.imgraph(&["build", "--json"]).success();
    assert!(warm.stderr.contains(&line), "warm build: {}", warm.stderr);
    let doc = warm.json();
    assert_eq!(doc["executed"].as_array().map(Vec::len), Some(0), "{doc}");
    let entry = &doc["scripts_not_reproduced"][0];
    assert_eq!(entry["step"], STEP);
    assert_eq!(entry["platform"], format!("tiny:{SUITE}/amd64"));
    assert_eq!(as_rows(&entry["commands"]), expected());
    let quiet = p.imgraph(&["-q", "build"]).success();
    assert!(!quiet.stderr.contains("not reproduced"), "{}", quiet.stderr);
}

#[test]
fn strict_scripts_fail_the_rootfs_step_naming_package_script_and_line() {
    let repo = repo();
    let p = project(&repo, r#", scripts = "strict""#);
    p.imgraph(&["build"]).code(1).stderr_has(&[
        "4 maintainer-script commands are not reproduced",
        "scripted preinst line 4: prepare-things",
        "scripted postinst line 16: update-ca-certificates --fresh",
        "scripts = \"report\"",
    ]);
    assert!(
        !p.path("out/tiny").exists(),
        "a strict failure exported an image"
    );

    // The same package set without `scripted`'s scripts' package builds.
    let plain = Project::new();
    plain.manifest(&format!(
        r#"[settings]
created = "2026-12-01T00:00:00Z"

[images.tiny]
dists = ["{SUITE}"]
arches = ["amd64"]
rootfs = {{ debian = {{ mirror = "{}", keyring = "{}", include = ["tool-foo"], scripts = "strict" }} }}
"#,
        repo.url(),
        repo.keyring.display(),
    ));
    plain.imgraph(&["lock"]).success();
    let run = plain.imgraph(&["build"]).success();
    assert!(!run.stderr.contains("not reproduced"), "{}", run.stderr);
}

#[test]
fn a_bad_scripts_mode_is_bad_input_with_its_position() {
    let p = Project::new();
    p.manifest(
        r#"[images.tiny]
dists = ["bookworm"]
arches = ["amd64"]
rootfs = { debian = { scripts = "strct" } }
"#,
    );
    p.imgraph(&["check"]).code(2).stderr_has(&[
        "images.toml:4:",
        "unknown debian scripts mode \"strct\"",
        "did you mean \"strict\"?",
    ]);
}

/// The scripts of `(package, first word)` a build reported for `platform`.
fn reported(doc: &Value, platform: &str) -> std::collections::BTreeSet<(String, String)> {
    doc["scripts_not_reproduced"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["platform"] == platform)
        .flat_map(|e| e["commands"].as_array().unwrap().iter())
        .map(|c| {
            let command = c["command"].as_str().unwrap();
            (
                c["package"].as_str().unwrap().to_string(),
                command.split(' ').next().unwrap().to_string(),
            )
        })
        .collect()
}

/// bookworm from the live mirror: minbase reports only the documented gaps
/// (libc-bin's ldconfig: no /etc/ld.so.cache; login's /var/log/faillog), and
/// the README's example set adds ca-certificates' update-ca-certificates and
/// vim-tiny's alternatives, which the image lacks.
#[test]
fn bookworm_minbase_reports_only_its_known_gaps_and_the_example_set_its_missing_effects() {
    let p = Project::new();
    p.manifest(
        r#"[settings]
created = "2024-06-01T00:00:00Z"

[images.base]
dists = ["bookworm"]
arches = ["amd64"]
rootfs = { debian = { variant = "minbase" } }

[images.mini]
dists = ["bookworm"]
arches = ["amd64"]
rootfs = { debian = { variant = "minbase", include = ["ca-certificates", "curl", "tzdata", "vim-tiny", "procps"] } }
"#,
    );
    p.imgraph(&["lock"]).success();
    let doc = p.imgraph(&["build", "--json"]).success().json();
    let owned = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        reported(&doc, "base:bookworm/amd64"),
        owned(&[
            ("libc-bin", "ldconfig"),
            ("login", "chmod"),
            ("login", "chown"),
            ("login", "touch"),
        ])
    );
    let mini = reported(&doc, "mini:bookworm/amd64");
    for want in [
        ("ca-certificates", "update-ca-certificates"),
        ("vim-tiny", "update-alternatives"),
    ] {
        assert!(
            mini.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not reported: {mini:?}"
        );
    }
    let vi = doc["scripts_not_reproduced"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["commands"].as_array().unwrap().iter())
        .any(|c| {
            c["package"] == "vim-tiny"
                && c["command"]
                    .as_str()
                    .unwrap()
                    .starts_with("update-alternatives --install /usr/bin/vi vi /usr/bin/vim.tiny")
        });
    assert!(vi, "vim-tiny's vi alternative is not reported: {doc}");
}
