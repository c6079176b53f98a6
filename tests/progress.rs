//! Transfers on a terminal (`script` gives imgraph one, as a user's shell does):
//! `.deb` downloads and layer uploads show their bytes and rate while they run and
//! end with one line saying how much moved how fast; nothing of it with `-q`,
//! `--json`, or when stderr is not a terminal.

use crate::support::apt_repo::{AptRepo, SUITE};
use crate::support::registry::{Auth, RegistryGuard};
use crate::support::{imgraph_tty, Project};

/// indicatif's `HumanBytes`, as the line prints a size.
fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

fn project(repo: &AptRepo, dist: &str) -> Project {
    repo.project(dist, "")
}

#[test]
fn deb_downloads_show_bytes_and_rate_on_a_terminal_only() {
    let repo = AptRepo::start();
    let p = project(&repo, SUITE);
    p.imgraph(&["lock"]).success();
    let lock = imgraph::manifest::lock::Lock::read(&p.path("images.lock")).unwrap();
    let packages = &lock.platforms[&format!("tiny:{SUITE}/amd64")].packages;
    let bytes: u64 = packages.iter().map(|p| p.size).sum();

    // Not a terminal: the plain step lines only, nothing about bytes.
    let plain = p.imgraph(&["build"]).success();
    assert!(!plain.stderr.contains(".debs for"), "{}", plain.stderr);
    std::fs::remove_dir_all(p.path("cache")).unwrap();
    // -q and --json on a terminal: nothing extra either.
    for args in [&["-q", "build"][..], &["build", "--json"][..]] {
        let run = imgraph_tty(p.root(), args).success();
        assert!(
            !run.stderr.contains(".debs for"),
            "{args:?}: {}",
            run.stderr
        );
        std::fs::remove_dir_all(p.path("cache")).unwrap();
    }

    // On a terminal: how many .debs, how many bytes, how fast.
    let run = imgraph_tty(p.root(), &["build"]).success();
    let done = format!(
        "fetched {} .debs for tiny:{SUITE}/amd64: {} in ",
        packages.len(),
        human(bytes)
    );
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains(&done))
        .unwrap_or_else(|| panic!("no {done:?} in:\n{}", run.stderr));
    assert!(line.contains("/s)"), "{line}");
    // Cached now: nothing is fetched, nothing said.
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let again = imgraph_tty(p.root(), &["build"]).success();
    assert!(!again.stderr.contains(".debs for"), "{}", again.stderr);
}

/// `len` bytes gzip cannot shrink (xorshift), different for each `seed`.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn layer_uploads_show_bytes_and_rate_on_a_terminal_only() {
    let reg = RegistryGuard::start(Auth::None);
    let p = Project::new();
    p.hello_rootfs("one", "amd64");
    p.manifest(&format!(
        "[settings]\ncreated = \"2024-06-01T00:00:00Z\"\n\n[registries.local]\nurl = \"{}/test\"\ninsecure = true\n\n[images.hello]\ndists = [\"one\"]\narches = [\"amd64\"]\nregistries = [\"local\"]\nrootfs = {{ dir = \"rootfs/{{dist}}/{{arch}}\" }}\n",
        reg.url()
    ));
    // 3 MiB of noise: a layer past the 1 MiB from which an upload gets a bar.
    p.file("rootfs/one/amd64/noise", &noise(3 << 20, 1));
    let run = imgraph_tty(p.root(), &["build", "--push"]).success();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.path("out/hello/one/amd64/image-manifest.json")).unwrap(),
    )
    .unwrap();
    let layer = &manifest["layers"][0];
    let (digest, size) = (
        layer["digest"].as_str().unwrap(),
        layer["size"].as_u64().unwrap(),
    );
    assert!(size > 3 << 20, "{size}");
    let done = format!(
        "pushed layer {} for push:hello:one",
        &digest[.."sha256:".len() + 12]
    );
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains(&done))
        .unwrap_or_else(|| panic!("no {done:?} in:\n{}", run.stderr));
    assert!(line.contains(&format!(": {} in ", human(size))), "{line}");
    assert!(line.contains("/s)"), "{line}");
    // Only layers: the config and the SBOM are too small for a bar.
    assert_eq!(
        run.stderr.matches("pushed layer ").count(),
        1,
        "{}",
        run.stderr
    );

    // A new layer each time, pushed with --json or -q on a terminal, or with
    // stderr not a terminal: nothing about it.
    for (seed, tty, args) in [
        (2, true, &["build", "--push", "--json"][..]),
        (3, true, &["-q", "build", "--push"][..]),
        (4, false, &["build", "--push"][..]),
    ] {
        p.file("rootfs/one/amd64/noise", &noise(3 << 20, seed));
        let run = if tty {
            imgraph_tty(p.root(), args).success()
        } else {
            p.imgraph(args).success()
        };
        assert!(
            !run.stderr.contains("pushed layer"),
            "{args:?}: {}",
            run.stderr
        );
    }
}
