//! Shared test helpers: fixture projects in temp dirs, running the real `imgraph`
//! binary, and checks with real OCI tools.

#![allow(dead_code)]

pub mod apt_repo;
pub mod cosign;
pub mod fault_proxy;
pub mod live_debian;
pub mod oci_import;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repo's committed hello binaries, one per arch.
pub fn hello_binary(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("images/hello")
        .join(arch)
        .join("hello")
}

/// A project folder with an `images.toml`, deleted at the end of the test.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Default for Project {
    fn default() -> Self {
        Self::new()
    }
}

impl Project {
    /// An empty project.
    pub fn new() -> Self {
        Project {
            dir: tempfile::Builder::new()
                .prefix("imgraph-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// An empty project in a folder whose name has spaces and shell metacharacters
    /// (`My Proj; $(x) 'q'`), for the paths imgraph hands to shells and tools.
    pub fn in_awkward_folder() -> Self {
        Project {
            dir: tempfile::Builder::new()
                .prefix("My Proj; $(touch pwned) 'q' ")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// A `hello` image with one dist `one` and a rootfs per arch holding the real
    /// hello binary for that arch and an `/etc/hostname`.
    pub fn hello(arches: &[&str]) -> Self {
        let p = Project::new();
        for arch in arches {
            p.hello_rootfs("one", arch);
        }
        let list = arches
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        p.manifest(&format!(
            r#"[settings]
created = "2024-06-01T00:00:00Z"

[images.hello]
dists = ["one"]
arches = [{list}]
rootfs = {{ dir = "rootfs/{{dist}}/{{arch}}" }}
config = {{ cmd = ["/hello"] }}
"#
        ));
        p
    }

    /// Adds `rootfs/<dist>/<arch>/` with the hello binary and a few files.
    pub fn hello_rootfs(&self, dist: &str, arch: &str) -> &Self {
        let root = format!("rootfs/{dist}/{arch}");
        self.file(
            &format!("{root}/etc/hostname"),
            format!("{arch}\n").as_bytes(),
        );
        self.file(&format!("{root}/etc/os-release"), b"NAME=hello\n");
        let bin = std::fs::read(hello_binary(arch)).expect("committed hello binary");
        self.executable(&format!("{root}/hello"), &bin);
        self
    }

    /// Writes `images.toml`.
    pub fn manifest(&self, text: &str) -> &Self {
        self.file("images.toml", text.as_bytes())
    }

    /// Writes a file (and its parents).
    pub fn file(&self, rel: &str, bytes: &[u8]) -> &Self {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        self
    }

    /// Writes an executable file.
    pub fn executable(&self, rel: &str, bytes: &[u8]) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        self.file(rel, bytes);
        std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    /// A path inside the project.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The project folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `imgraph` in the project folder.
    pub fn imgraph(&self, args: &[&str]) -> Run {
        imgraph_in(self.root(), args, &[])
    }

    /// Runs `imgraph` with extra environment variables.
    pub fn imgraph_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        imgraph_in(self.root(), args, env)
    }

    /// The `--json` plan as (id -> (status, reason)).
    pub fn plan(&self, extra: &[&str]) -> Vec<(String, String, Option<String>)> {
        let mut args = vec!["plan", "--json"];
        args.extend_from_slice(extra);
        let json = self.imgraph(&args).success().json();
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    s["status"].as_str().unwrap().to_string(),
                    s["reason"].as_str().map(String::from),
                )
            })
            .collect()
    }

    /// Ids of dirty steps in the plan.
    pub fn dirty(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .plan(&[])
            .into_iter()
            .filter(|(_, s, _)| s == "dirty")
            .map(|(id, _, _)| id)
            .collect();
        v.sort();
        v
    }

    /// The digest in `out/<image>/<dist>/index/index.json`.
    pub fn index_digest(&self, image: &str, dist: &str) -> String {
        let text =
            std::fs::read(self.path(&format!("out/{image}/{dist}/index/index.json"))).unwrap();
        let v: Value = serde_json::from_slice(&text).unwrap();
        v["manifests"][0]["digest"].as_str().unwrap().to_string()
    }
}

/// The real binary with `args`, in `dir`, with no cache from the environment and
/// no colour: every way the tests run imgraph starts here.
pub fn imgraph_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgraph"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("IMGRAPH_CACHE")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs the real binary.
pub fn imgraph_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = imgraph_command(dir, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(
        cmd.output().expect("run imgraph"),
        format!("imgraph {}", args.join(" ")),
    )
}

/// Runs the real binary with a terminal as its stdin, stdout and stderr (util-linux
/// `script`), as a user at a shell does: what it draws for a TTY (bars) is in
/// `stderr`, stdout and stderr together, as the terminal showed them.
pub fn imgraph_tty(dir: &Path, args: &[&str]) -> Run {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_imgraph"))
        .chain(args.iter().copied())
        .map(quote)
        .collect();
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command"])
        .arg(line.join(" "))
        .arg("/dev/null")
        .current_dir(dir)
        .env_remove("IMGRAPH_CACHE")
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux)");
    let mut run = Run::from(out, format!("imgraph {} (on a terminal)", args.join(" ")));
    run.stderr = std::mem::take(&mut run.stdout);
    run
}

/// A finished command.
#[derive(Debug)]
pub struct Run {
    /// What ran.
    pub what: String,
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard output as bytes (a tarball on `-o -`).
    pub stdout_bytes: Vec<u8>,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// A finished process, named `what` in failures.
    pub fn from(out: Output, what: String) -> Run {
        Run {
            what,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stdout_bytes: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts exit 0.
    #[track_caller]
    pub fn success(self) -> Run {
        assert_eq!(
            self.code, 0,
            "`{}` failed:\nstdout:\n{}\nstderr:\n{}",
            self.what, self.stdout, self.stderr
        );
        self
    }

    /// Asserts an exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "`{}` exit code:\nstdout:\n{}\nstderr:\n{}",
            self.what, self.stdout, self.stderr
        );
        self
    }

    /// Asserts stderr contains every needle.
    #[track_caller]
    pub fn stderr_has(self, needles: &[&str]) -> Run {
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "`{}` stderr lacks {n:?}:\n{}",
                self.what,
                self.stderr
            );
        }
        self
    }

    /// Parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("`{}` stdout is not JSON ({e}):\n{}", self.what, self.stdout)
        })
    }
}

/// Runs an external tool (skopeo, umoci, ...) and returns its output, failing the
/// test with the tool's stderr when it fails. A missing tool fails the test: CI
/// installs them all (`.ci/run`).
#[track_caller]
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); install it (see .ci/run)"));
    assert!(
        out.status.success(),
        "{program} {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The digest of what a loopback registry serves for `host/repo:tag`, read with skopeo.
#[track_caller]
pub fn remote_digest(reference: &str) -> String {
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ],
    );
    sha256(raw.as_bytes())
}

/// `skopeo copy --all` from a loopback registry into a scratch OCI layout: every
/// platform and blob must be complete and readable.
#[track_caller]
pub fn skopeo_copy_all(reference: &str) {
    let copy = tempfile::tempdir().unwrap();
    tool(
        "skopeo",
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:x", copy.path().display()),
        ],
    );
}

/// sha256 of bytes as `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// GET `url` with `Accept: accept` (plain HTTP to a test registry): the body,
/// or None for any error status.
pub fn http_get(url: &str, accept: &str) -> Option<Vec<u8>> {
    let mut r = ureq::get(url).header("Accept", accept).call().ok()?;
    r.body_mut().read_to_vec().ok()
}

/// Whether any file below `dir` contains `needle` (secrets must not leak).
pub fn grep_tree(dir: &Path, needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            grep_tree(&path, needle)
        } else {
            std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        }
    })
}

/// Runs git in `dir` as a fixed author, with `date` as the author and commit date.
pub fn git(dir: &Path, args: &[&str], date: &str) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every command that reads images.toml, with the flags that print the most
/// (`--json`, `-v`): what a secret-grep test runs to show that a secret in a
/// setting reaches no output. Step ids and selectors name `hello:one/amd64`.
pub const MANIFEST_COMMANDS: &[&[&str]] = &[
    &["check"],
    &["plan"],
    &["plan", "--json", "-v"],
    &["plan", "--json", "--matrix"],
    &["build"],
    &["build", "--push", "--json", "-v"],
    &["verify", "--reproducible"],
    &["verify", "--pushed"],
    &["explain", "index:hello:one"],
    &["explain", "layer:hello:one/amd64", "--json"],
    &["graph"],
    &["graph", "--format", "json"],
    &["export", "hello:one/amd64", "-o", "hello.tar"],
    &["lock"],
    &["lock", "--check"],
    &["cache", "verify"],
    &["cache", "gc"],
    &["library", "hello"],
];

/// The commands that do not read images.toml but print help text, where an
/// environment variable's value could show.
pub const HELP_COMMANDS: &[&[&str]] = &[
    &["--help"],
    &["help", "build"],
    &["build", "--help"],
    &["man"],
    &["schema"],
    &["completions", "bash"],
];

/// Asserts that no run printed `secret`, on stdout or stderr.
#[track_caller]
pub fn assert_never_printed(runs: &[Run], secret: &str) {
    for run in runs {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "`{}` printed the secret:\n{}\n{}",
            run.what,
            run.stdout,
            run.stderr
        );
    }
}
