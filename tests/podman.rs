//! podman, a real container engine, loads, pulls and runs what imgraph builds.

use crate::support::registry::{Auth, RegistryGuard};
use crate::support::{tool, Project};

/// podman with a private image store, so tests neither share nor pollute one.
/// `runc` because crun refuses these machines' hybrid cgroup layout.
fn podman(store: &std::path::Path, args: &[&str]) -> String {
    let root = store.join("root");
    let runroot = store.join("run");
    let mut all = vec![
        "--root",
        root.to_str().unwrap(),
        "--runroot",
        runroot.to_str().unwrap(),
        "--storage-driver",
        "vfs",
        "--runtime",
        "runc",
    ];
    all.extend_from_slice(args);
    tool("podman", &all)
}

#[test]
fn podman_loads_and_runs_the_docker_archive() {
    let p = Project::hello(&["amd64", "arm64v8"]);
    let tar = p.path("hello.tar");
    p.imgraph(&[
        "export",
        "hello:one/amd64",
        "--format",
        "docker-archive",
        "-o",
        tar.to_str().unwrap(),
    ])
    .success();
    let store = tempfile::tempdir().unwrap();
    let loaded = podman(store.path(), &["load", "-i", tar.to_str().unwrap()]);
    assert!(loaded.contains("hello:one"), "{loaded}");
    let out = podman(
        store.path(),
        &["run", "--rm", "--network", "none", "hello:one"],
    );
    assert!(out.contains("linux/amd64"), "{out}");
}

#[test]
fn podman_pulls_the_pushed_index_and_runs_the_amd64_image() {
    let reg = RegistryGuard::start(Auth::None);
    let p = Project::hello(&["amd64", "arm64v8"]);
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&format!(
        "[registries.local]\nurl = \"{}/lib\"\ninsecure = true\n\n{}",
        reg.url(),
        text.replace("[images.hello]", "[images.hello]\nregistries = [\"local\"]")
    ));
    p.imgraph(&["build", "--push"]).success();
    let store = tempfile::tempdir().unwrap();
    let image = format!("{}/lib/hello:one", reg.url());
    podman(store.path(), &["pull", "--tls-verify=false", &image]);
    let out = podman(store.path(), &["run", "--rm", "--network", "none", &image]);
    assert!(out.contains("linux/amd64 (amd64)"), "{out}");
}

/// A `debian` rootfs built from `images.lock` (bookworm minbase from the live
/// mirror, no dpkg, root or emulation involved) is a working Debian system: podman
/// runs a shell in it, `dpkg -l` lists every locked package as installed, dpkg's
/// audit finds nothing, apt runs, `su` and `runuser` pass PAM.
#[test]
fn podman_runs_a_debian_image_built_from_the_lock() {
    let p = Project::new();
    p.manifest(
        r#"[settings]
created = "2024-06-01T00:00:00Z"
[images.minideb]
dists = ["bookworm"]
arches = ["amd64"]
rootfs = { debian = { variant = "minbase" } }
config = { cmd = ["/bin/bash"] }
"#,
    );
    p.imgraph(&["lock"]).success();
    let locked = std::fs::read_to_string(p.path("images.lock"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  \""))
        .count();
    p.imgraph(&["build"]).success();
    let tar = p.path("minideb.tar");
    p.imgraph(&[
        "export",
        "minideb:bookworm/amd64",
        "-o",
        tar.to_str().unwrap(),
    ])
    .success();
    let store = tempfile::tempdir().unwrap();
    podman(store.path(), &["load", "-i", tar.to_str().unwrap()]);
    let run = |cmd: &str| {
        podman(
            store.path(),
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "minideb:bookworm",
                "/bin/sh",
                "-c",
                cmd,
            ],
        )
    };
    assert_eq!(run("echo ok").trim(), "ok");
    let installed = run("dpkg-query -W -f '${db:Status-Abbrev}\\n' | grep -c '^ii'");
    assert_eq!(
        installed.trim().parse::<usize>().unwrap(),
        locked,
        "dpkg -l vs images.lock"
    );
    assert_eq!(run("dpkg --audit; echo audited").trim(), "audited");
    assert!(run("apt-get --version").starts_with("apt "));
    // The PAM stack pam-auth-update would have written is there: su and runuser
    // (util-linux's, through /etc/pam.d/common-*) switch to another user.
    assert_eq!(run("su -s /bin/sh nobody -c 'id -un'").trim(), "nobody");
    assert_eq!(run("runuser -u nobody -- id -un").trim(), "nobody");
}
