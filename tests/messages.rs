//! Messages at run time that must tell the user what happened: an unreadable file's
//! OS reason, a skipped socket, a wait for the cache lock, a cache path that is a file.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Project, Run};

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
    let first = Command::new(env!("CARGO_BIN_EXE_imgraph"))
        .arg("build")
        .current_dir(p.root())
        .env_remove("IMGRAPH_CACHE")
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
