//! What commands put on stdout: `graph` is dot that graphviz reads, and a reader
//! that stops early (`| head -1`, `| head -c1`) ends every command quietly, never
//! with a panic.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::support::{imgraph_command, Project, Run};

/// A project whose graph and plan print far more than a pipe holds (64 KiB), so a
/// writer is still writing when its reader goes: 12 dists x 9 arches.
fn big_project() -> Project {
    let p = Project::new();
    p.hello_rootfs("one", "amd64");
    let dists = (1..=12)
        .map(|i| format!("\"d{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    p.manifest(&format!(
        r#"[settings]
created = "2024-06-01T00:00:00Z"

[images.hello]
dists = [{dists}]
arches = ["amd64", "arm32v5", "arm32v6", "arm32v7", "arm64v8", "i386", "ppc64le", "riscv64", "s390x"]
rootfs = {{ dir = "rootfs/one/amd64" }}
config = {{ cmd = ["/hello"] }}
platform_check = false
"#
    ));
    p
}

/// Which of imgraph's outputs a test closes.
#[derive(Clone, Copy)]
enum Closed {
    Stdout,
    Stderr,
}

/// Runs imgraph with one output a pipe whose reader is already gone (the other
/// is read): the first write to it fails with EPIPE, as it does once `head` has
/// what it wanted.
fn with_closed(p: &Project, args: &[&str], closed: Closed) -> Run {
    let mut child = imgraph_command(p.root(), args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run imgraph");
    match closed {
        Closed::Stdout => drop(child.stdout.take()),
        Closed::Stderr => drop(child.stderr.take()),
    }
    let out = child.wait_with_output().expect("wait for imgraph");
    let name = match closed {
        Closed::Stdout => "stdout",
        Closed::Stderr => "stderr",
    };
    Run::from(out, format!("imgraph {} ({name} closed)", args.join(" ")))
}

/// `imgraph graph | dot -Tsvg` (the README's line) works: every step is a node
/// graphviz reads, named by its step id, with its edges.
#[test]
fn graph_is_dot_that_graphviz_renders() {
    let p = Project::hello(&["amd64", "arm64v8"]);
    let dot = p.imgraph(&["graph"]).success().stdout;
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dot (graphviz) is installed: scripts/test installs it");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dot refused imgraph's graph: {}\n{dot}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The node titles graphviz writes are the step ids, not Rust debug dumps.
    assert!(!dot.contains("StepId"), "{dot}");
    for id in [
        "rootfs:hello:one/amd64",
        "layer:hello:one/arm64v8",
        "index:hello:one",
    ] {
        assert!(
            svg.contains(&format!("<title>{id}</title>")),
            "{id}:\n{svg}"
        );
    }
    assert!(
        svg.contains("<title>layer:hello:one/amd64&#45;&gt;config:hello:one/amd64</title>")
            || svg
                .contains("<title>layer:hello:one/amd64&#45;&gt;manifest:hello:one/amd64</title>"),
        "no edge from the layer:\n{svg}"
    );
}

/// A reader that goes away is a normal end for every command that writes stdout:
/// exit 0, nothing on stderr, no panic.
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let p = big_project();
    for args in [
        &["graph"][..],
        &["graph", "--format", "json"],
        &["plan"],
        &["plan", "--json"],
        &["explain", "layer:hello:d1/amd64"],
        &["check"],
        &["schema"],
        &["completions", "bash"],
        &["man"],
    ] {
        let run = with_closed(&p, args, Closed::Stdout);
        assert!(
            run.code == 0 && run.stderr.is_empty(),
            "`{}` exit {}:\n{}",
            run.what,
            run.code,
            run.stderr
        );
    }
}

/// The README's pipelines with real `head`: imgraph's own exit status (bash's
/// PIPESTATUS) is 0 and it says nothing; `export -o -` stops writing its tarball.
#[test]
fn head_after_graph_plan_and_export_ends_imgraph_with_0() {
    let p = big_project();
    // An export tarball larger than a pipe holds.
    let mut data = vec![0u8; 1 << 20];
    let mut x = 7u64;
    for b in &mut data {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (x >> 33) as u8;
    }
    p.file("rootfs/one/amd64/data", &data);
    p.imgraph(&["build", "hello:d1/amd64"]).success();
    for pipeline in [
        "\"$IMGRAPH\" graph --format json | head -1",
        "\"$IMGRAPH\" graph | head -1",
        "\"$IMGRAPH\" plan --json | head -c1",
        "\"$IMGRAPH\" plan | head -1",
        "\"$IMGRAPH\" export hello:d1/amd64 -o - | head -c1",
    ] {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "{pipeline} >/dev/null; echo \"imgraph exit ${{PIPESTATUS[0]}}\" >&2"
            ))
            .current_dir(p.root())
            .env("IMGRAPH", env!("CARGO_BIN_EXE_imgraph"))
            .env_remove("IMGRAPH_CACHE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let imgraph_said: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("imgraph exit "))
            .filter(|l| !l.starts_with("exported ")) // only if it finished first
            .collect();
        assert!(
            stderr.contains("imgraph exit 0") && imgraph_said.is_empty(),
            "`{pipeline}`:\n{stderr}"
        );
    }
}

/// A closed stderr never panics a command (exit 101): what imgraph had to say is
/// dropped, the command carries on and exits as it would have, and a build it
/// finished is really built.
#[test]
fn a_closed_stderr_never_panics() {
    let p = Project::hello(&["amd64", "arm64v8"]);
    for args in [
        &["plan"][..],
        &["build"],
        &["build"],
        &["explain", "layer:hello:one/amd64"],
    ] {
        // The panic message itself would go to the closed stderr: the exit
        // status is what tells: each of these succeeds when stderr is read.
        let run = with_closed(&p, args, Closed::Stderr);
        assert_ne!(run.code, 101, "`{}` panicked", run.what);
        assert_eq!(run.code, 0, "`{}`", run.what);
    }
    // The build with nobody listening finished: nothing is left to do.
    p.imgraph(&["build"])
        .success()
        .stderr_has(&["no image changed since the last build"]);
    // A failure still exits with its own status, not a panic's.
    p.manifest("[images.hello\nbroken");
    for args in [&["check"][..], &["build"], &["plan"]] {
        let run = with_closed(&p, args, Closed::Stderr);
        assert_eq!(run.code, 2, "`{}`", run.what);
    }
}

/// `imgraph build 2>&1 | head -1` and `imgraph plan 2>&1 | head -1` with real
/// `head`: imgraph's own exit status is its own (0), not a panic's 101.
#[test]
fn head_after_build_and_plan_on_stderr_ends_imgraph_with_its_own_status() {
    let p = big_project();
    for pipeline in [
        "\"$IMGRAPH\" build 2>&1 | head -1",
        "\"$IMGRAPH\" plan 2>&1 | head -1",
        "\"$IMGRAPH\" build --verbose 2>&1 | head -1",
    ] {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "{pipeline} >/dev/null; echo \"imgraph exit ${{PIPESTATUS[0]}}\" >&2"
            ))
            .current_dir(p.root())
            .env("IMGRAPH", env!("CARGO_BIN_EXE_imgraph"))
            .env_remove("IMGRAPH_CACHE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("imgraph exit 0"), "`{pipeline}`:\n{stderr}");
    }
}
