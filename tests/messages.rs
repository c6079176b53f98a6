//! Messages at run time that must tell the user what happened: an unreadable file's
//! OS reason, a skipped socket, a wait for the cache lock, a cache path that is a file.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{imgraph_command, Project, Run};

/// A rootfs file the user cannot read fails the build (exit 1) with the OS reason,
/// not just "cannot read <path>". Tests run as root, who reads anything, so imgraph
/// runs as `nobody` on a project and cache that user owns.
#[test]
fn an_unreadable_rootfs_file_fails_with_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::hello(&["amd64"]);
    p.file("rootfs/one/amd64/etc/shadow", b"secret\n");
    let status = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(p.root())
        .status()
        .expect("chown");
    assert!(status.success());
    let shadow = p.path("rootfs/one/amd64/etc/shadow");
    std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_imgraph"))
        .arg("build")
        .current_dir(p.root())
        .env_remove("IMGRAPH_CACHE")
        .env("NO_COLOR", "1")
        .output()
        .expect("setpriv (util-linux)");
    let run = Run::from(out, "setpriv --reuid=nobody imgraph build".into());
    let run = run.code(1).stderr_has(&["etc/shadow", "Permission denied"]);
    // The reason is said once, not repeated by messages that embed it.
    assert_eq!(
        run.stderr.matches("Permission denied").count(),
        1,
        "{}",
        run.stderr
    );
}

/// A socket cannot go into a tar layer: it is left out with one warning naming it,
/// and the build succeeds.
#[test]
fn a_socket_in_a_dir_rootfs_is_skipped_with_a_warning() {
    let p = Project::hello(&["amd64"]);
    std::fs::create_dir_all(p.path("rootfs/one/amd64/run")).unwrap();
    let _listener =
        std::os::unix::net::UnixListener::bind(p.path("rootfs/one/amd64/run/app.sock")).unwrap();
    let run = p.imgraph(&["build"]).success();
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("run/app.sock"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].starts_with("warning: skipping socket ")
            && warnings[0].contains("cannot be stored"),
        "{}",
        warnings[0]
    );
    // -q: nothing but errors.
    std::fs::remove_dir_all(p.path("cache")).unwrap();
    let run = p.imgraph(&["-q", "build"]).success();
    assert_eq!(run.stderr, "", "-q printed something");
}

/// A build that waits more than a second for another build's cache lock says so,
/// naming the pid that holds it, then finishes once the lock is free.
#[test]
fn a_second_build_says_which_pid_holds_the_cache_lock() {
    let p = Project::new();
    p.manifest(
        r#"[settings]
created = "2024-06-01T00:00:00Z"

[images.slow]
dists = ["one"]
arches = ["amd64"]
rootfs = { command = "sleep 4; mkdir -p {out}/etc && echo slow > {out}/etc/hostname" }
platform_check = false
"#,
    );
    let first = imgraph_command(p.root(), &["build"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The holder writes its pid once it has the lock.
    let started = Instant::now();
    while std::fs::read_to_string(p.path("cache/lock"))
        .unwrap_or_default()
        .trim()
        != first.id().to_string()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the first build never wrote its pid into cache/lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = p.imgraph(&["build"]).success();
    let mut first = first;
    assert!(first.wait().unwrap().success());
    assert!(
        second.stderr.contains(&format!(
            "waiting for the cache lock held by pid {}",
            first.id()
        )),
        "{}",
        second.stderr
    );
    // The second found the work done by the first.
    assert!(second.stderr.contains("0 executed"), "{}", second.stderr);
}

/// `--cache` naming a file is bad input for every command, `plan` included.
#[test]
fn a_cache_path_that_is_a_file_exits_2_for_build_and_plan() {
    let p = Project::hello(&["amd64"]);
    p.file("not-a-folder", b"x");
    for cmd in ["build", "plan"] {
        for cache in ["not-a-folder", "not-a-folder/cache"] {
            p.imgraph(&[cmd, "--cache", cache]).code(2).stderr_has(&[
                "cache folder ",
                "not-a-folder",
                "point --cache (or IMGRAPH_CACHE) at a folder",
            ]);
        }
        p.imgraph_env(&[cmd], &[("IMGRAPH_CACHE", "not-a-folder")])
            .code(2)
            .stderr_has(&["is a file, not a folder"]);
    }
    assert_eq!(std::fs::read(p.path("not-a-folder")).unwrap(), b"x");
}

/// Ctrl-C during a build: exit 130 with a line naming the command and the step
/// that was running and saying a re-run resumes; the `command` rootfs, which runs
/// in a process group of its own (so a terminal's Ctrl-C misses it), is killed;
/// the cache stays consistent and the re-run finishes.
#[test]
fn sigint_during_a_build_says_what_stopped_and_that_a_rerun_resumes() {
    let p = Project::new();
    p.manifest(
        r#"[settings]
created = "2024-06-01T00:00:00Z"

[images.slow]
dists = ["one"]
arches = ["amd64"]
rootfs = { command = "sleep 3; touch late-marker; mkdir -p {out}/etc && echo slow > {out}/etc/hostname" }
platform_check = false
"#,
    );
    let child = imgraph_command(p.root(), &["build"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The command has started once its log exists.
    let started = Instant::now();
    while std::fs::read_dir(p.path("cache/logs")).map_or(true, |d| d.count() == 0) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the command rootfs never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let run = Run::from(child.wait_with_output().unwrap(), "imgraph build".into());
    let run = run.code(130).stderr_has(&[
        "imgraph build interrupted while running rootfs:slow:one/amd64",
        "every step that finished is cached: run it again to resume",
    ]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    // The builder's group was killed with imgraph: it never gets to its `touch`.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !p.path("late-marker").exists(),
        "the command rootfs outlived the interrupted build"
    );
    p.imgraph(&["cache", "verify"]).success();
    p.imgraph(&["build"]).success();
    assert!(p.path("out/slow/one/amd64/index.json").exists());
}

/// An arch written the Debian, OCI or uname way (`arm64`, `aarch64`) is
/// suggested as the bashbrew name it means (`arm64v8`), not as the nearest
/// spelling (`amd64`): in explain, in selectors and in images.toml.
#[test]
fn an_arch_named_another_way_suggests_the_bashbrew_name_it_means() {
    let p = Project::hello(&["amd64", "arm64v8"]);
    let run = p
        .imgraph(&["explain", "layer:hello:one/arm64"])
        .code(2)
        .stderr_has(&["did you mean layer:hello:one/arm64v8?"]);
    assert!(!run.stderr.contains("one/amd64"), "{}", run.stderr);
    p.imgraph(&["plan", "hello:one/aarch64"])
        .code(2)
        .stderr_has(&["did you mean hello:one/arm64v8?"]);
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&text.replace("\"arm64v8\"]", "\"arm64\"]"));
    let run = p
        .imgraph(&["check"])
        .code(2)
        .stderr_has(&["unknown arch \"arm64\"", "did you mean \"arm64v8\"?"]);
    assert!(
        !run.stderr.contains("did you mean \"amd64\""),
        "{}",
        run.stderr
    );
}

/// Runs imgraph as `nobody` in the project (which that user may read, not write).
fn as_nobody(p: &Project, args: &[&str]) -> Run {
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_imgraph"))
        .args(args)
        .current_dir(p.root())
        .env_remove("IMGRAPH_CACHE")
        .env("NO_COLOR", "1")
        .env("HOME", "/nonexistent")
        .output()
        .expect("setpriv (util-linux)");
    Run::from(out, format!("(as nobody) imgraph {}", args.join(" ")))
}

/// A cache the user may read but not write (a shared CI cache, another user's):
/// the commands that only read work on it (plan, explain, graph, check, export of
/// what is built, the check of `cache verify`), and those that must write say so
/// and point at `--cache`, instead of "cache/lock: Permission denied".
#[test]
fn a_read_only_cache_serves_the_commands_that_only_read() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::hello(&["amd64"]);
    p.imgraph(&["build"]).success();
    // Tests run as root; the project and its cache become readable by nobody (as a
    // read-only mount of a CI cache is), writable by root only.
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(p.root())
        .status()
        .unwrap();
    assert!(status.success());
    let outside = tempfile::tempdir().unwrap();
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let tar = outside.path().join("hello.tar");
    let oci = outside.path().join("hello-oci");

    for args in [
        &["plan"][..],
        &["explain", "layer:hello:one/amd64"],
        &["graph"],
        &["check"],
    ] {
        as_nobody(&p, args).success();
    }
    as_nobody(
        &p,
        &["export", "hello:one/amd64", "-o", tar.to_str().unwrap()],
    )
    .success();
    let listed = crate::support::tool("tar", &["-tf", tar.to_str().unwrap()]);
    assert!(listed.contains("manifest.json"), "{listed}");
    let streamed = as_nobody(&p, &["export", "hello:one/amd64", "-o", "-"]).success();
    assert_eq!(streamed.stdout_bytes, std::fs::read(&tar).unwrap());
    as_nobody(
        &p,
        &[
            "export",
            "hello:one",
            "--format",
            "oci",
            "-o",
            oci.to_str().unwrap(),
        ],
    )
    .success();
    assert!(oci.join("index.json").exists());
    as_nobody(&p, &["cache", "verify"])
        .success()
        .stderr_has(&["cache ok"]);

    // What needs to write says where to point instead.
    std::fs::write(p.path("rootfs/one/amd64/etc/hostname"), b"changed\n").unwrap();
    for args in [&["build"][..], &["cache", "gc"]] {
        as_nobody(&p, args).code(1).stderr_has(&[
            "read-only",
            "point --cache (or IMGRAPH_CACHE) at a folder you can write",
        ]);
    }
    as_nobody(
        &p,
        &["export", "hello:one/amd64", "-o", tar.to_str().unwrap()],
    )
    .code(1)
    .stderr_has(&["is not built in the cache", "read-only", "--cache DIR"]);

    // A corrupt blob is reported, not claimed removed: nothing was repaired.
    let blob = std::fs::read_dir(p.path("cache/blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let run = as_nobody(&p, &["cache", "verify"]).code(1).stderr_has(&[
        "not repaired: the cache is read-only here",
        "it could not be removed",
    ]);
    assert!(!run.stderr.contains("now repaired"), "{}", run.stderr);
    assert!(blob.exists());
}
