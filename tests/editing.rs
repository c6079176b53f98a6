//! Editing images.toml: the JSON schema (fresh, and every manifest in the repo valid
//! against it), `check` output snapshots, `init`, `explain`, completions, man page
//! and `--help` examples.
//!
//! Snapshots live in `tests/snapshots/`; after an intended change of output,
//! regenerate them (and the schema) with `IMGRAPH_BLESS=1 cargo test editing`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{imgraph_in, Project};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn bless() -> bool {
    std::env::var_os("IMGRAPH_BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Compares `actual` with a checked-in file, or rewrites the file when blessing.
#[track_caller]
fn assert_snapshot(path: &Path, actual: &str, regenerate: &str) {
    if bless() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        panic!(
            "{} is stale; regenerate it with `{regenerate}` and review the diff.\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

fn schema() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/images.schema.json")).unwrap(),
    )
    .unwrap()
}

/// TOML text as the JSON document the schema describes.
fn toml_to_json(text: &str) -> Value {
    let table: toml::Table = toml::from_str(text).unwrap();
    serde_json::to_value(table).unwrap()
}

/// Schema errors for a manifest, one line each.
fn schema_errors(text: &str) -> Vec<String> {
    let validator = jsonschema::validator_for(&schema()).expect("the schema compiles");
    validator
        .iter_errors(&toml_to_json(text))
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn repo_manifests() -> Vec<PathBuf> {
    let mut found = vec![repo().join("images.toml")];
    if let Ok(dir) = std::fs::read_dir(repo().join("examples")) {
        for entry in dir.flatten() {
            let path = entry.path().join("images.toml");
            if path.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_checked_in_schema_is_what_imgraph_schema_prints() {
    let run = imgraph_in(repo(), &["schema"], &[]).success();
    let _: Value = serde_json::from_str(&run.stdout).expect("imgraph schema prints JSON");
    assert_snapshot(
        &repo().join("schemas/images.schema.json"),
        &run.stdout,
        "cargo run -q -- schema > schemas/images.schema.json",
    );
}

#[test]
fn every_manifest_in_the_repo_names_the_schema_and_validates_against_it() {
    let schema_file = repo()
        .join("schemas/images.schema.json")
        .canonicalize()
        .unwrap();
    for path in repo_manifests() {
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or("");
        let named = first.strip_prefix("#:schema ").unwrap_or_else(|| {
            panic!(
                "{} must start with `#:schema <relative path to schemas/images.schema.json>`",
                path.display()
            )
        });
        let resolved = path.parent().unwrap().join(named.trim());
        assert_eq!(
            resolved.canonicalize().ok().as_ref(),
            Some(&schema_file),
            "{}: {first} does not point at schemas/images.schema.json",
            path.display()
        );
        let errors = schema_errors(&text);
        assert!(
            errors.is_empty(),
            "{} does not match the schema:\n{}",
            path.display(),
            errors.join("\n")
        );
    }
}

#[test]
fn the_schema_rejects_what_the_loader_rejects() {
    let ok = "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n";
    assert_eq!(schema_errors(ok), Vec::<String>::new());
    let debian = ok.replace(
        "dir = \"r\"",
        "debian = { variant = \"apt\", include = [\"libstdc++6\"], mirror = \"https://deb.debian.org/debian\", suites = [\"{dist}\", \"{dist}-updates\"], keyring = \"k.gpg\" }",
    );
    assert_eq!(schema_errors(&debian), Vec::<String>::new());
    for (what, text) in [
        ("unknown arch", ok.replace("amd64", "amd46")),
        ("unknown key", ok.replace("dists", "dsts")),
        (
            "two sources",
            ok.replace("{ dir = \"r\" }", "{ dir = \"r\", tar = \"t\" }"),
        ),
        ("no source", ok.replace("{ dir = \"r\" }", "{ }")),
        (
            "bad compression",
            format!("[settings]\ncompression = \"lz4\"\n{ok}"),
        ),
        (
            "bad created",
            format!("[settings]\ncreated = \"yesterday\"\n{ok}"),
        ),
        (
            "bad owners",
            ok.replace("dir = \"r\"", "dir = \"r\", owners = \"me\""),
        ),
        ("image name", ok.replace("images.a", "images.Big")),
        ("no rootfs", ok.replace("rootfs = { dir = \"r\" }\n", "")),
        ("empty arches", ok.replace("[\"amd64\"]", "[]")),
        (
            "config typo",
            format!("{ok}config = {{ Cmd = [\"/x\"] }}\n"),
        ),
        (
            "dir and debian",
            ok.replace("dir = \"r\"", "dir = \"r\", debian = {}"),
        ),
        (
            "debian variant",
            ok.replace("dir = \"r\"", "debian = { variant = \"minbas\" }"),
        ),
        (
            "debian key typo",
            ok.replace("dir = \"r\"", "debian = { varient = \"apt\" }"),
        ),
        (
            "debian package name",
            ok.replace("dir = \"r\"", "debian = { include = [\"Curl\"] }"),
        ),
        (
            "debian mirror credentials",
            ok.replace(
                "dir = \"r\"",
                "debian = { mirror = \"http://u:p@h/debian\" }",
            ),
        ),
        (
            "debian empty suites",
            ok.replace("dir = \"r\"", "debian = { suites = [] }"),
        ),
    ] {
        assert!(
            !schema_errors(&text).is_empty(),
            "{what}: the schema accepts\n{text}"
        );
    }
}

/// (snapshot name, manifest) for `imgraph check`; `r/` exists in every project.
const CHECK_CASES: &[(&str, &str)] = &[
    (
        "unknown-arch",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd46\"]\nrootfs = { dir = \"r\" }\n",
    ),
    (
        "debian-arch-on-arm32v6",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\", \"arm32v6\"]\nrootfs = { command = \"mkrootfs {dist} {debian_arch} {out}.tar\" }\n",
    ),
    (
        "many-problems-at-once",
        "[settings]\ncompression = \"lz4\"\n\n[images.a]\ndists = [\"one\", \"one\"]\narches = [\"amd64\", \"arm64\"]\nlatest = \"two\"\ntags = [\"{dist}-{arch}\"]\nregistries = [\"hub\"]\nrootfs = { dir = \"r/{dsit}\" }\n",
    ),
    (
        "unknown-key",
        "[images.a]\ndsts = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
    ),
    (
        "string-for-array",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\nconfig = { cmd = \"/bin/sh\" }\n",
    ),
    (
        "rootfs-not-a-table",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = \"r\"\n",
    ),
    (
        "credentials-in-registry-url",
        "[registries.x]\nurl = \"alice:s3cret@127.0.0.1:5000/lib\"\n\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nregistries = [\"x\"]\nrootfs = { dir = \"r\" }\n",
    ),
    (
        "missing-rootfs",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\n",
    ),
    ("toml-syntax", "[images.a\ndists = [\"one\"]\n"),
    (
        "unterminated-string",
        "[images.a]\ndists = [\"one]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
    ),
    (
        "missing-rootfs-dir",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\", \"i386\"]\nrootfs = { dir = \"rootfs/{arch}\" }\n",
    ),
    (
        "created-number",
        "[settings]\ncreated = 5\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
    ),
    (
        "image-defined-twice",
        "[images.a]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n\n[images.a]\ndists = [\"two\"]\n",
    ),
    (
        "created-git-without-repository",
        "[settings]\ncreated = \"git\"\n[images.a]\ndists = [\"one\"]\narches = [\"amd64\", \"i386\"]\nrootfs = { dir = \"r\" }\n",
    ),
    (
        "image-path-meets-a-dist",
        "[images.a]\ndists = [\"b\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n\n[images.\"a/b\"]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = { dir = \"r\" }\n",
    ),
    (
        "valid",
        "[images.a]\ndists = [\"one\", \"two\"]\narches = [\"amd64\", \"arm64v8\"]\nrootfs = { dir = \"r\" }\n",
    ),
];

#[test]
fn check_output_snapshots() {
    for (name, text) in CHECK_CASES {
        let p = Project::new();
        std::fs::create_dir_all(p.path("r")).unwrap();
        p.manifest(text);
        let run = p.imgraph(&["check"]);
        let root = p.root().display().to_string();
        let shown = format!(
            "$ imgraph check\nexit status: {}\n--- stdout\n{}--- stderr\n{}",
            run.code, run.stdout, run.stderr
        )
        .replace(&root, "[ROOT]");
        assert_snapshot(
            &repo().join(format!("tests/snapshots/check/{name}.txt")),
            &format!("{text}\n{shown}"),
            "IMGRAPH_BLESS=1 cargo test editing",
        );
        let expected = if *name == "valid" { 0 } else { 2 };
        assert_eq!(run.code, expected, "{name}:\n{}", run.stderr);
    }
}

#[test]
fn check_reports_the_repo_manifest_valid_without_building() {
    let run = imgraph_in(
        repo(),
        &["check", "--cache", "/nonexistent/imgraph-cache"],
        &[],
    )
    .success();
    assert!(
        run.stdout.starts_with("images.toml is valid: "),
        "{}",
        run.stdout
    );
    assert!(!Path::new("/nonexistent/imgraph-cache").exists());
}

#[test]
fn init_writes_a_starter_that_builds_and_refuses_to_overwrite() {
    let p = Project::new();
    let run = p.imgraph(&["init"]).success();
    assert!(run.stdout.contains("rootfs/stable/amd64"), "{}", run.stdout);
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    assert!(
        text.starts_with("#:schema ./images.schema.json\n"),
        "{text}"
    );
    let schema_written = std::fs::read_to_string(p.path("images.schema.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&schema_written).unwrap(),
        schema()
    );
    assert_eq!(schema_errors(&text), Vec::<String>::new());

    // Refuses to overwrite, and leaves the file alone.
    std::fs::write(p.path("images.toml"), "# mine\n").unwrap();
    p.imgraph(&["init"])
        .code(2)
        .stderr_has(&["images.toml already exists", "help:"]);
    assert_eq!(
        std::fs::read_to_string(p.path("images.toml")).unwrap(),
        "# mine\n"
    );
    std::fs::write(p.path("images.toml"), &text).unwrap();

    // The folder it names is all that is missing.
    p.imgraph(&["check"])
        .code(2)
        .stderr_has(&["rootfs/stable/amd64", "does not exist"]);
    let bin = std::fs::read(crate::support::hello_binary("amd64")).unwrap();
    p.executable("rootfs/stable/amd64/bin/sh", &bin);
    p.imgraph(&["check"]).success();
    p.imgraph(&["build"]).success();
    assert!(p.path("out/base/stable/index/index.json").is_file());
}

#[test]
fn init_honours_the_file_flag() {
    let p = Project::new();
    p.imgraph(&["-f", "sub/images.toml", "init"]).success();
    assert!(p.path("sub/images.toml").is_file());
    assert!(p.path("sub/images.schema.json").is_file());
}

#[test]
fn explain_shows_inputs_key_outputs_and_what_changed() {
    let p = Project::hello(&["amd64"]);
    let run = p.imgraph(&["explain", "config:hello:one/amd64"]).success();
    assert!(
        run.stdout
            .contains("status   dirty: upstream dirty: layer:hello:one/amd64")
            && run
                .stdout
                .contains("because layer:hello:one/amd64 is dirty: not built yet"),
        "{}",
        run.stdout
    );
    let run = p.imgraph(&["explain", "rootfs:hello:one/amd64"]).success();
    for needle in [
        "status   dirty: not built yet",
        "images.hello.rootfs",
        "rootfs/one/amd64",
        "outputs  (known without running",
    ] {
        assert!(run.stdout.contains(needle), "{needle}:\n{}", run.stdout);
    }

    p.imgraph(&["build"]).success();
    let run = p.imgraph(&["explain", "config:hello:one/amd64"]).success();
    for needle in [
        "status   fresh",
        "images.hello.config  {\"cmd\":[\"/hello\"]}",
        "layer:hello:one/amd64  sha256:",
        "outputs  (cached)",
        "blob       sha256:",
    ] {
        assert!(run.stdout.contains(needle), "{needle}:\n{}", run.stdout);
    }

    // A manifest edit: the changed key, the old value.
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace("cmd = [\"/hello\"]", "cmd = [\"/hello\", \"-v\"]"));
    let run = p.imgraph(&["explain", "config:hello:one/amd64"]).success();
    for needle in [
        "status   dirty: manifest changed: images.hello.config.cmd",
        "changed since the last build; was {\"cmd\":[\"/hello\"]}",
        "last     ",
    ] {
        assert!(run.stdout.contains(needle), "{needle}:\n{}", run.stdout);
    }
    let json = p
        .imgraph(&["explain", "--json", "config:hello:one/amd64"])
        .success()
        .json();
    assert_eq!(json["status"], "dirty");
    assert_eq!(json["changed"][0]["input"], "manifest.images.hello.config");
    assert_eq!(
        json["inputs"]["manifest"]["images.hello.config"]["cmd"][1],
        "-v"
    );

    // A file edit under a dirty upstream: the file, and the step's own manifest change.
    p.file("rootfs/one/amd64/etc/hostname", b"changed\n");
    let run = p.imgraph(&["explain", "config:hello:one/amd64"]).success();
    for needle in [
        "because layer:hello:one/amd64 is dirty: upstream changed: rootfs:hello:one/amd64",
        "and its own inputs changed: manifest changed: images.hello.config.cmd",
    ] {
        assert!(run.stdout.contains(needle), "{needle}:\n{}", run.stdout);
    }
    let run = p.imgraph(&["explain", "rootfs:hello:one/amd64"]).success();
    assert!(
        run.stdout
            .contains("status   dirty: input changed: rootfs/one/amd64/etc/hostname"),
        "{}",
        run.stdout
    );
}

#[test]
fn explain_an_unknown_step_exits_2_with_a_suggestion() {
    let p = Project::hello(&["amd64"]);
    p.imgraph(&["explain", "layer:hello:one/amd46"])
        .code(2)
        .stderr_has(&[
            "no step \"layer:hello:one/amd46\"",
            "did you mean layer:hello:one/amd64?",
        ]);
    p.imgraph(&["explain", "hello:one/amd64"])
        .code(2)
        .stderr_has(&["that is a selector; its steps are: rootfs:hello:one/amd64"]);
    p.imgraph(&["explain", "zzz"])
        .code(2)
        .stderr_has(&["imgraph plan` lists them"]);
}

#[test]
fn completions_complete_selectors_and_step_ids_from_the_manifest() {
    let p = Project::hello(&["amd64", "arm64v8"]);
    for shell in ["bash", "zsh", "fish"] {
        let run = p.imgraph(&["completions", shell]).success();
        assert!(
            run.stdout.contains("IMGRAPH_COMPLETE"),
            "{shell}:\n{}",
            run.stdout
        );
    }
    let complete = |words: &[&str]| {
        let mut args = vec!["--", "imgraph"];
        args.extend_from_slice(words);
        p.imgraph_env(&args, &[("IMGRAPH_COMPLETE", "fish")])
            .success()
            .stdout
    };
    assert_eq!(
        complete(&["build", "hello:one/"]),
        "hello:one/amd64\nhello:one/arm64v8\n"
    );
    assert_eq!(
        complete(&["explain", "layer:"]),
        "layer:hello:one/amd64\nlayer:hello:one/arm64v8\n"
    );
    assert!(complete(&["ex"]).contains("explain\t"));

    // Through bash itself, as a user's TAB would.
    // As a user has it: `imgraph` on PATH (whose folders may hold spaces).
    let script = "source <(imgraph completions bash); COMP_WORDS=(imgraph plan hello:one/arm); COMP_CWORD=2; COMP_TYPE=9; _clap_complete_imgraph imgraph hello:one/arm plan; printf '%s\\n' \"${COMPREPLY[@]}\"";
    let out = std::process::Command::new("bash")
        .args(["-c", script])
        .current_dir(p.root())
        .env("PATH", path_with_imgraph())
        .env_remove("IMGRAPH_COMPLETE")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello:one/arm64v8\n");
}

/// What a TAB after each line offers in bash, with `COMP_WORDS` split the way a
/// stock bash splits them: at every character of the default `COMP_WORDBREAKS`,
/// `:` included (`layer:hello:one/s3` is five words, and after a trailing `:` the
/// word passed as `$2` is empty). Nothing from the bash-completion package is loaded.
#[test]
fn bash_completes_step_ids_and_selectors_across_colons() {
    let p = Project::hello(&["amd64", "s390x"]);
    std::fs::create_dir_all(p.path("r")).unwrap();
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&format!(
        "{text}\n[images.\"a/b\"]\ndists = [\"one\"]\narches = [\"amd64\"]\nrootfs = {{ dir = \"r\" }}\n"
    ));
    /// (command line up to the cursor, COMP_WORDS, COMP_CWORD, $2, $3, expected COMPREPLY)
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        usize,
        &'a str,
        &'a str,
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        (
            "imgraph explain layer:hello:one/s3",
            &["imgraph", "explain", "layer", ":", "hello", ":", "one/s3"],
            6,
            "one/s3",
            ":",
            &["one/s390x"],
        ),
        (
            "imgraph explain layer:",
            &["imgraph", "explain", "layer", ":"],
            3,
            "",
            "layer",
            &["a/b:one/amd64", "hello:one/amd64", "hello:one/s390x"],
        ),
        (
            "imgraph explain layer:a/b:one/",
            &["imgraph", "explain", "layer", ":", "a/b", ":", "one/"],
            6,
            "one/",
            ":",
            &["one/amd64"],
        ),
        (
            "imgraph build hello:one/s",
            &["imgraph", "build", "hello", ":", "one/s"],
            4,
            "one/s",
            ":",
            &["one/s390x"],
        ),
        (
            "imgraph plan a/b:",
            &["imgraph", "plan", "a/b", ":"],
            3,
            "",
            "a/b",
            &["one", "one/amd64"],
        ),
    ];
    for (line, words, cword, cur, prev, expected) in cases {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let script = format!(
            "source <(imgraph completions bash)\n\
             COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_TYPE=9\n\
             _clap_complete_imgraph imgraph '{cur}' '{prev}'\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            words = quoted.join(" "),
        );
        let out = std::process::Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &script])
            .current_dir(p.root())
            .env("PATH", path_with_imgraph())
            .env_remove("IMGRAPH_COMPLETE")
            .output()
            .unwrap();
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        got.sort();
        assert_eq!(
            got,
            *expected,
            "{line}<TAB>\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn man_pages_render() {
    let p = Project::new();
    let run = p.imgraph(&["man"]).success();
    assert!(run.stdout.contains(".TH imgraph 1"), "{}", run.stdout);
    let run = p.imgraph(&["man", "build"]).success();
    assert!(
        run.stdout.contains(".TH imgraph-build 1") && run.stdout.contains("\"imgraph 0.1.0\""),
        "{}",
        run.stdout
    );
    p.imgraph(&["man", "biuld"])
        .code(2)
        .stderr_has(&["did you mean `build`?"]);
}

#[test]
fn every_command_has_help_with_examples() {
    use clap::CommandFactory;
    let cmd = imgraph::cli::Cli::command();
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        let run = imgraph_in(repo(), &[name, "--help"], &[]).success();
        assert!(
            run.stdout.contains("Examples:"),
            "`imgraph {name} --help` has no examples:\n{}",
            run.stdout
        );
    }
}

/// `PATH` with the folder of the `imgraph` under test first.
fn path_with_imgraph() -> std::ffi::OsString {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_imgraph"));
    let mut dirs = vec![bin.parent().unwrap().to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}
