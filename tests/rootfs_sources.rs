//! `tar` and `command` rootfs sources, early cutoff, `created = "git"`.

use std::process::Command;

use crate::support::{git, hello_binary, Project};

fn command_project(command: &str, extra: &str) -> Project {
    let p = Project::new();
    p.executable("scripts/mk", format!("#!/bin/sh\nset -e\nmkdir -p \"$1/etc\"\ncp '{}' \"$1/hello\"\necho hello > \"$1/etc/hostname\"\n", hello_binary("amd64").display()).as_bytes());
    p.file("inputs/version", b"1\n");
    p.manifest(&format!(
        "[settings]\ncreated = \"2024-06-01T00:00:00Z\"\n[images.cmd]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = {{ command = \"{command}\", inputs = [\"scripts/mk\", \"inputs\"]{extra} }}\n"
    ));
    p
}

#[test]
fn a_command_source_builds_the_same_image_twice() {
    let a = command_project("scripts/mk {out}", "");
    let b = command_project("scripts/mk {out}", "");
    a.imgraph(&["build"]).success();
    b.imgraph(&["build"]).success();
    assert_eq!(a.index_digest("cmd", "one"), b.index_digest("cmd", "one"));
    assert!(
        a.path("cache/logs").read_dir().unwrap().count() > 0,
        "no command log written"
    );
}

#[test]
fn an_input_edit_reruns_the_command_and_an_unchanged_output_cuts_off() {
    let p = command_project("scripts/mk {out}", "");
    p.imgraph(&["build"]).success();
    p.file("inputs/version", b"2\n"); // an input the script does not use
    let plan = p.plan(&[]);
    let rootfs = plan.iter().find(|s| s.0 == "rootfs:cmd:one/amd64").unwrap();
    assert_eq!(rootfs.1, "dirty");
    assert_eq!(rootfs.2.as_deref(), Some("input changed: inputs"));
    let run = p
        .imgraph(&["build", "--json"])
        .success()
        .stderr_has(&["rootfs content unchanged"]);
    let json = run.json();
    let executed: Vec<&str> = json["executed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // The provenance lists the command's inputs by digest, so it is written
    // anew; the layer and everything built from it were cut off.
    assert_eq!(
        executed,
        ["rootfs:cmd:one/amd64", "provenance:cmd:one/amd64"],
        "only the command (and the provenance naming its inputs) ran"
    );
    assert!(json["changed"].as_array().unwrap().is_empty());
}

#[test]
fn a_command_writing_a_tar_is_used_as_a_tar_source() {
    let p = command_project(
        "scripts/mk {out}.d && tar --numeric-owner -C {out}.d -cf {out}.tar .",
        "",
    );
    p.imgraph(&["build"]).success();
    let listing = crate::support::tool(
        "tar",
        &[
            "-tzvf",
            p.path("out/cmd/one/amd64/rootfs.tar.gz").to_str().unwrap(),
        ],
    );
    assert!(
        listing.contains("hello") && listing.contains("etc/hostname"),
        "{listing}"
    );
}

#[test]
fn a_failing_command_exits_1_with_its_log_tail() {
    let p = command_project("echo step one; echo boom >&2; exit 3", "");
    p.imgraph(&["build"]).code(1).stderr_has(&[
        "rootfs:cmd:one/amd64",
        "boom",
        "exit status: 3",
        "cache/logs/",
    ]);
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let marker = format!("{}.25", 300 + std::process::id() % 1000);
    let p = command_project(
        &format!("sleep {marker} & sleep {marker}"),
        ", timeout = \"1s\"",
    );
    let started = std::time::Instant::now();
    p.imgraph(&["build"])
        .code(1)
        .stderr_has(&["timed out after 1s"]);
    assert!(
        started.elapsed().as_secs() < 20,
        "the timeout did not stop the build"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let left = Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes survived: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn tar_sources_in_every_compression_give_the_same_layer() {
    let p = Project::new();
    p.hello_rootfs("src", "amd64");
    let root = p.path("rootfs/src/amd64");
    let mut digests = Vec::new();
    for (name, flag) in [
        ("r.tar", ""),
        ("r.tar.gz", "-z"),
        ("r.tar.xz", "-J"),
        ("r.tar.zst", "--zstd"),
    ] {
        let mut args = vec![
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "-C",
            root.to_str().unwrap(),
            "-cf",
            "",
        ];
        let out = p.path(name);
        args[6] = out.to_str().unwrap();
        if !flag.is_empty() {
            args.insert(0, flag);
        }
        args.push(".");
        crate::support::tool("tar", &args);
        p.manifest(&format!(
            "[settings]\ncreated = \"2024-06-01T00:00:00Z\"\n[images.t]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = {{ tar = \"{name}\" }}\n"
        ));
        p.imgraph(&["build"]).success();
        let config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(p.path("out/t/one/amd64/image-config.json")).unwrap(),
        )
        .unwrap();
        digests.push(
            config["rootfs"]["diff_ids"][0]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

#[test]
fn a_hostile_tar_never_writes_outside_and_fails_naming_the_entry() {
    let p = Project::new();
    // A tarball with a `../` entry, written by Python's tarfile (GNU tar refuses to).
    let script = format!(
        "import tarfile, io\nt = tarfile.open('{}', 'w')\nfor name in ['ok', '../escape']:\n    data = b'x'\n    i = tarfile.TarInfo(name); i.size = len(data)\n    t.addfile(i, io.BytesIO(data))\nt.close()\n",
        p.path("evil.tar").display()
    );
    crate::support::tool("python3", &["-c", &script]);
    p.manifest(
        "[images.e]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { tar = \"evil.tar\" }\n",
    );
    p.imgraph(&["build"]).code(1).stderr_has(&["../escape"]);
    assert!(!p.root().parent().unwrap().join("escape").exists());
}

fn created_of(p: &Project, arch: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.path(&format!("out/g/one/{arch}/image-config.json"))).unwrap(),
    )
    .unwrap();
    v["created"].as_str().unwrap().to_string()
}

#[test]
fn created_from_git_is_per_arch_and_stable() {
    let p = Project::new();
    p.manifest("[settings]\ncreated = \"git\"\n[images.g]\ndists = [\"one\"]\narches = [\"amd64\", \"arm64v8\"]\nrootfs = { dir = \"rootfs/{dist}/{arch}\" }\n");
    git(p.root(), &["init", "-q"], "2020-01-01T00:00:00Z");
    p.hello_rootfs("one", "amd64");
    git(p.root(), &["add", "-A"], "2021-03-04T05:06:07Z");
    git(
        p.root(),
        &["commit", "-qm", "amd64"],
        "2021-03-04T05:06:07Z",
    );
    p.hello_rootfs("one", "arm64v8");
    git(p.root(), &["add", "-A"], "2022-08-09T10:11:12Z");
    git(
        p.root(),
        &["commit", "-qm", "arm64v8"],
        "2022-08-09T10:11:12Z",
    );
    p.imgraph(&["build"]).success();
    assert_eq!(created_of(&p, "amd64"), "2021-03-04T05:06:07Z");
    assert_eq!(created_of(&p, "arm64v8"), "2022-08-09T10:11:12Z");
    p.imgraph(&["build"]).success();
    assert_eq!(
        created_of(&p, "amd64"),
        "2021-03-04T05:06:07Z",
        "stable across builds"
    );

    // A dirty work tree is refused unless --allow-dirty.
    p.file("rootfs/one/arm64v8/etc/hostname", b"edited\n");
    p.imgraph(&["build"])
        .code(2)
        .stderr_has(&["uncommitted changes", "--allow-dirty"]);
    p.imgraph(&["build", "--allow-dirty"]).success();
    // Committing the change re-stamps that arch only.
    git(
        p.root(),
        &["commit", "-qam", "edit"],
        "2023-01-02T03:04:05Z",
    );
    p.imgraph(&["build"]).success();
    assert_eq!(created_of(&p, "arm64v8"), "2023-01-02T03:04:05Z");
    assert_eq!(created_of(&p, "amd64"), "2021-03-04T05:06:07Z");
}

/// `created = "git"` with nothing committed to date from (a new repository, a
/// folder never committed): the help says what works (commit it, or another
/// `created`), not `--allow-dirty`, which cannot help there.
#[test]
fn created_from_git_without_a_commit_says_what_helps() {
    let p = Project::new();
    p.manifest("[settings]\ncreated = \"git\"\n[images.g]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"rootfs/{dist}/{arch}\" }\n");
    p.hello_rootfs("one", "amd64");
    git(p.root(), &["init", "-q"], "2020-01-01T00:00:00Z");
    let helps = |run: crate::support::Run| {
        let run = run.code(2).stderr_has(&[
            "help: commit rootfs/one/amd64 first",
            "set `created` to a date",
            "\"source-date-epoch\"",
        ]);
        assert!(
            !run.stderr.contains("or pass --allow-dirty"),
            "{}",
            run.stderr
        );
        run
    };
    helps(p.imgraph(&["build"])).stderr_has(&["no commits yet"]);
    helps(p.imgraph(&["build", "--allow-dirty"])).stderr_has(&["no commits yet"]);
    // A first commit that leaves the folder out: still nothing to date it from.
    git(p.root(), &["add", "images.toml"], "2021-03-04T05:06:07Z");
    git(
        p.root(),
        &["commit", "-qm", "manifest"],
        "2021-03-04T05:06:07Z",
    );
    helps(p.imgraph(&["build", "--allow-dirty"]))
        .stderr_has(&["no commit touches rootfs/one/amd64"]);
    // Committed: dated from that commit, and an edit is what --allow-dirty is for.
    git(p.root(), &["add", "-A"], "2022-08-09T10:11:12Z");
    git(
        p.root(),
        &["commit", "-qm", "rootfs"],
        "2022-08-09T10:11:12Z",
    );
    p.imgraph(&["build"]).success();
    assert_eq!(created_of(&p, "amd64"), "2022-08-09T10:11:12Z");
    p.file("rootfs/one/amd64/etc/hostname", b"edited\n");
    p.imgraph(&["build"])
        .code(2)
        .stderr_has(&["uncommitted changes", "or pass --allow-dirty"]);
}
