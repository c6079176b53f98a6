//! Docker Official Images: per-arch layouts that docker-library's `Builder:
//! oci-import` accepts (one image each, nothing that changes when the image does
//! not), read back from a git commit, and `imgraph library IMAGE`, the
//! manifest file that points docker-library at them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::oci_import::{assert_oci_import, check_all_layouts};
use crate::support::{tool, Project};

/// The repository's own images.toml (hello, nine arches, the committed
/// binaries): every per-arch layout passes bashbrew's checks, oci-image-tool,
/// skopeo and umoci.
#[test]
fn the_repositorys_own_layouts_pass_oci_import_and_oci_tools() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = Project::new();
    p.file(
        "images.toml",
        &std::fs::read(repo.join("images.toml")).unwrap(),
    );
    p.file(
        "schemas/images.schema.json",
        &std::fs::read(repo.join("schemas/images.schema.json")).unwrap(),
    );
    for entry in std::fs::read_dir(repo.join("images/hello"))
        .unwrap()
        .flatten()
    {
        let bin = entry.path().join("hello");
        if bin.is_file() {
            let arch = entry.file_name().to_string_lossy().into_owned();
            p.executable(
                &format!("images/hello/{arch}/hello"),
                &std::fs::read(&bin).unwrap(),
            );
        }
    }
    p.imgraph(&["build"]).success();
    assert_eq!(check_all_layouts(&p.path("out")), 9);
    // The attachments are beside each, as a layout of their own.
    assert!(p
        .path("out/hello/one/amd64.attestations/index.json")
        .is_file());
}

/// A git repository around a hello project, with a remote and maintainers set.
struct Repo {
    p: Project,
}

impl Repo {
    fn new(arches: &[&str], library: &str) -> Repo {
        let p = Project::hello(arches);
        let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
        p.manifest(&text.replace(
            "created = \"2024-06-01T00:00:00Z\"\n",
            &format!("created = \"2024-06-01T00:00:00Z\"\n{library}"),
        ));
        p.file(".gitignore", b"/cache/\n");
        let r = Repo { p };
        r.git(&["init", "-q", "-b", "main"]);
        r.git(&["remote", "add", "origin", "git@github.com:acme/hello.git"]);
        r
    }

    fn git(&self, args: &[&str]) -> String {
        let mut full = vec![
            "-C",
            self.p.root().to_str().unwrap(),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@imgraph.invalid",
        ];
        full.extend_from_slice(args);
        tool("git", &full)
    }

    /// Commits everything but the cache (the layouts too).
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A", "."]);
        self.git(&["commit", "-qm", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// The last commit that changed a folder.
    fn last_commit(&self, rel: &str) -> String {
        self.git(&["log", "-1", "--format=%H", "--", rel])
            .trim()
            .to_string()
    }
}

/// An RFC 2822 file as bashbrew reads it: paragraphs of fields, `#` lines
/// skipped, continuation lines (leading whitespace) joined to their field.
fn parse_2822(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut paragraphs = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let last = current
                .last_mut()
                .expect("a continuation line follows a field");
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (key, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("not a field: {line:?}"));
        assert!(
            !current.iter().any(|(k, _)| k == key),
            "field {key} twice in a paragraph"
        );
        current.push((key.to_string(), value.trim().to_string()));
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    paragraphs
        .into_iter()
        .map(|p| p.into_iter().collect())
        .collect()
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const MAINTAINERS: &str = "library = { maintainers = [\"Jane Doe <jane@example.com> (@jane)\", \"Joe Bloggs (@joe)\"] }\n";

/// The whole workflow: build, commit the layouts, read them back from the
/// commit, print the library file; then a commit that changes no image changes
/// no per-arch folder, and a change to one arch moves one folder and one
/// `GitCommit` line.
#[test]
fn library_file_names_each_arch_folder_and_its_last_commit() {
    let r = Repo::new(&["amd64", "arm64v8"], MAINTAINERS);
    let p = &r.p;
    p.imgraph(&["build"]).success();
    let first = r.commit("hello: first build");

    // Read back from the commit, symlinks included, as bashbrew's git fs does.
    let archive = tempfile::tempdir().unwrap();
    let tar = archive.path().join("out.tar");
    r.git(&[
        "archive",
        "-o",
        tar.to_str().unwrap(),
        "HEAD",
        "out/hello/one/amd64",
        "out/hello/one/arm64v8",
    ]);
    tool(
        "tar",
        &[
            "-xf",
            tar.to_str().unwrap(),
            "-C",
            archive.path().to_str().unwrap(),
        ],
    );
    for arch in ["amd64", "arm64v8"] {
        let dir = archive.path().join(format!("out/hello/one/{arch}"));
        assert!(
            dir.join("blobs/sha256")
                .read_dir()
                .unwrap()
                .flatten()
                .all(|e| e.file_type().unwrap().is_symlink()),
            "blobs are symlinks in the commit too"
        );
        assert_oci_import(&dir);
    }
    assert_eq!(check_all_layouts(&archive.path().join("out")), 2);

    let run = p.imgraph(&["library", "hello"]).success();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    let parsed = parse_2822(&run.stdout);
    let header = fields(&[
        (
            "Maintainers",
            "Jane Doe <jane@example.com> (@jane), Joe Bloggs (@joe)",
        ),
        ("GitRepo", "https://github.com/acme/hello.git"),
        ("GitFetch", "refs/heads/main"),
    ]);
    let paragraph = |amd64: &str, arm64: &str| {
        fields(&[
            ("Tags", "one"),
            ("Architectures", "amd64, arm64v8"),
            ("amd64-GitCommit", amd64),
            ("amd64-Directory", "out/hello/one/amd64"),
            ("arm64v8-GitCommit", arm64),
            ("arm64v8-Directory", "out/hello/one/arm64v8"),
            ("Builder", "oci-import"),
            ("File", "index.json"),
        ])
    };
    assert_eq!(parsed, vec![header.clone(), paragraph(&first, &first)]);
    // The maintainers are continuation lines, as the generate scripts write them.
    assert!(
        run.stdout.contains(
            "Maintainers: Jane Doe <jane@example.com> (@jane),\n             Joe Bloggs (@joe)\n"
        ),
        "{}",
        run.stdout
    );

    // A commit that changes no image: the provenance names the new commit, so
    // the attestations move; no per-arch folder does.
    p.file("NOTES", b"unrelated\n");
    let second = r.commit("notes");
    p.imgraph(&["build"]).success();
    let status = r.git(&["status", "--porcelain", "--untracked-files=all"]);
    assert!(
        status.lines().all(|l| l.contains(".attestations/")),
        "only attestations change: {status}"
    );
    assert!(!status.is_empty(), "the provenance names the new commit");
    r.commit("hello: attestations of the notes commit");
    assert_eq!(r.last_commit("out/hello/one/amd64"), first);
    assert_eq!(r.last_commit("out/hello/one/arm64v8"), first);
    assert_ne!(second, first);

    // One arch's rootfs changes: one image folder (attestations may move on
    // every commit), one GitCommit line.
    p.file("rootfs/one/arm64v8/etc/hostname", b"arm64v8 changed\n");
    p.imgraph(&["build"]).success();
    let status = r.git(&["status", "--porcelain", "--untracked-files=all"]);
    for line in status.lines() {
        assert!(
            !line.contains("out/hello/one/amd64/"),
            "amd64 changed: {status}"
        );
    }
    assert!(status.contains("out/hello/one/arm64v8/"), "{status}");

    // Uncommitted: refused, naming the folder.
    p.imgraph(&["library", "hello"])
        .code(1)
        .stderr_has(&["out/hello/one/arm64v8", "uncommitted changes"]);

    let third = r.commit("hello: arm64v8 changed");
    let before = run.stdout;
    let after = p.imgraph(&["library", "hello"]).success().stdout;
    assert_eq!(parse_2822(&after), vec![header, paragraph(&first, &third)]);
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [(
            format!("arm64v8-GitCommit: {first}").as_str(),
            format!("arm64v8-GitCommit: {third}").as_str()
        )],
        "exactly one line moves"
    );
    assert_eq!(before.lines().count(), after.lines().count());
    assert_oci_import(&p.path("out/hello/one/arm64v8"));
}

/// Without maintainers the file is still printed, without the field, with a
/// warning (exit 0); a `git_repo` setting wins over the remote; `latest` is a
/// tag of its dist; bad settings are exit 2 at their place.
#[test]
fn library_without_maintainers_warns_and_settings_are_checked() {
    let r = Repo::new(
        &["amd64"],
        "library = { git_repo = \"https://example.com/acme/hello.git\" }\n",
    );
    let p = &r.p;
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace("arches = [", "latest = \"one\"\narches = ["));
    p.imgraph(&["build"]).success();
    // Never committed: refused, naming the folder.
    p.imgraph(&["library", "hello"])
        .code(1)
        .stderr_has(&["out/hello/one/amd64"]);
    let commit = r.commit("build");
    let run = p
        .imgraph(&["library", "hello"])
        .success()
        .stderr_has(&["warning: no maintainers"]);
    let parsed = parse_2822(&run.stdout);
    assert_eq!(
        parsed[0],
        fields(&[
            ("GitRepo", "https://example.com/acme/hello.git"),
            ("GitFetch", "refs/heads/main"),
        ])
    );
    assert_eq!(parsed[1]["Tags"], "one, latest");
    assert_eq!(parsed[1]["amd64-GitCommit"], commit);

    p.manifest(&text.replace(
        "library = { git_repo = \"https://example.com/acme/hello.git\" }",
        "library = { maintainers = [\"Jane Doe <jane@example.com>\"], git_repo = \"git@github.com:a/b\" }",
    ));
    p.imgraph(&["check"]).code(2).stderr_has(&[
        "images.toml:3:",
        "library maintainer \"Jane Doe <jane@example.com>\"",
        "(@github-handle)",
        "library git_repo \"git@github.com:a/b\" is not an http(s) url",
    ]);
}

/// Layouts committed to another repository than the project's (a publishing
/// checkout, `[settings] library = { out = ... }`): GitRepo, GitCommit and
/// Directory come from that repository.
#[test]
fn library_reads_layouts_committed_in_another_checkout() {
    let p = Project::hello(&["amd64"]);
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace(
        "created = \"2024-06-01T00:00:00Z\"\n",
        "created = \"2024-06-01T00:00:00Z\"\nlibrary = { maintainers = [\"Jane Doe (@jane)\"], out = \"publish/images\" }\n",
    ));
    p.imgraph(&["build"]).success();
    let publish = p.path("publish");
    std::fs::create_dir_all(publish.join("images")).unwrap();
    // cp -a keeps the blobs' symlinks.
    tool(
        "cp",
        &[
            "-a",
            p.path("out/hello").to_str().unwrap(),
            publish.join("images/hello").to_str().unwrap(),
        ],
    );
    let git = |args: &[&str]| {
        let mut full = vec![
            "-C",
            publish.to_str().unwrap(),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@imgraph.invalid",
        ];
        full.extend_from_slice(args);
        tool("git", &full)
    };
    git(&["init", "-q", "-b", "master"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://github.com/acme/publish.git",
    ]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "publish"]);
    let head = git(&["rev-parse", "HEAD"]).trim().to_string();
    let run = p.imgraph(&["library", "hello:one"]).success();
    let parsed = parse_2822(&run.stdout);
    // On master: no GitFetch (bashbrew's default).
    assert_eq!(
        parsed[0],
        fields(&[
            ("Maintainers", "Jane Doe (@jane)"),
            ("GitRepo", "https://github.com/acme/publish.git"),
        ])
    );
    assert_eq!(parsed[1]["amd64-GitCommit"], head);
    assert_eq!(parsed[1]["amd64-Directory"], "images/hello/one/amd64");
    assert_oci_import(&publish.join("images/hello/one/amd64"));
    // An arch is not a library selector.
    p.imgraph(&["library", "hello:one/amd64"])
        .code(2)
        .stderr_has(&["library takes IMAGE or IMAGE:DIST"]);
}
