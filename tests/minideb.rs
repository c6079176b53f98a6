//! The minideb example as a new user runs it, against the live mirror
//! (deb.debian.org, reached in CI): its lock brought up to date, then every
//! platform (2 dists x 6 arches) built from an empty cache and rebuilt in a
//! scratch cache by `verify --reproducible`, every digest compared.

use std::time::Instant;

use crate::support::Project;

/// The example copied into a temp project (the schema path made local).
fn example() -> Project {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minideb");
    let p = Project::new();
    p.file(
        "images.lock",
        &std::fs::read(dir.join("images.lock")).unwrap(),
    );
    let text = std::fs::read_to_string(dir.join("images.toml"))
        .unwrap()
        .replace("../../schemas", "schemas");
    p.manifest(&text);
    p
}

/// The failed step of a build that failed because the mirror answered 404 for
/// a locked `.deb` (the archive moved on between the lock and the build, or a
/// mirror that does not carry every file): that platform cannot be built from
/// this mirror now.
fn missing_on_mirror(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| {
            l.contains(".deb: HTTP 404: ")
                && (l.contains("images.lock points at a file the mirror no longer has")
                    || l.contains("the mirror is incomplete"))
        })
        .filter_map(|l| l.trim().strip_prefix("rootfs:"))
        .map(|l| l.split(':').take(2).collect::<Vec<_>>().join(":"))
        .collect()
}

#[test]
fn minideb_example_every_dist_and_arch_is_reproducible_from_the_live_mirror() {
    let p = example();
    let started = Instant::now();
    // The archive moves (point releases, security updates): lock what it serves now.
    p.imgraph(&["lock", "--update"]).success();
    let lock = imgraph::manifest::lock::Lock::read(&p.path("images.lock")).unwrap();
    let mut platforms: Vec<String> = lock.platforms.keys().cloned().collect();
    assert_eq!(platforms.len(), 12, "2 dists x 6 arches: {platforms:?}");

    // Build every platform once (the first build of verify then finds it
    // cached). A platform whose .deb the mirror does not serve is named and
    // left out; nothing else may fail. `--keep-going` builds every other
    // platform in the same run, so the loop's second pass finds them cached.
    let mut left_out = Vec::new();
    loop {
        let mut args = vec!["build", "--keep-going"];
        args.extend(platforms.iter().map(String::as_str));
        let run = p.imgraph(&args);
        if run.code == 0 {
            break;
        }
        let missing = missing_on_mirror(&run.stderr);
        let failed = match missing.len() {
            1 => "1 step failed:".to_string(),
            n => format!("{n} steps failed:"),
        };
        assert!(
            run.code == 1 && !missing.is_empty() && run.stderr.contains(&failed),
            "build failed for another reason than a .deb missing on the mirror:\n{}",
            run.stderr
        );
        eprintln!(
            "the mirror lacks a .deb of {missing:?}: left out\n{}",
            run.stderr
        );
        platforms.retain(|p| !missing.contains(p));
        left_out.extend(missing);
    }
    // bookworm (stable) is complete on every Debian mirror.
    assert!(
        left_out.iter().all(|p| !p.contains(":bookworm/")),
        "{left_out:?}"
    );
    assert!(platforms.len() >= 10, "{left_out:?}");
    let built = started.elapsed();
    // Every per-arch layout is one image that docker-library's oci-import,
    // oci-image-tool, skopeo and umoci accept.
    assert_eq!(
        crate::support::oci_import::check_all_layouts(&p.path("out")),
        platforms.len()
    );

    // A dist with every arch is selected whole (its index is compared too).
    let mut selectors: Vec<String> = Vec::new();
    for dist in ["bookworm", "trixie"] {
        if left_out.iter().any(|p| p.contains(&format!(":{dist}/"))) {
            selectors.extend(
                platforms
                    .iter()
                    .filter(|p| p.contains(&format!(":{dist}/")))
                    .cloned(),
            );
        } else {
            selectors.push(format!("minideb:{dist}"));
        }
    }
    let whole = selectors.iter().filter(|s| !s.contains('/')).count();
    let mut args = vec!["verify", "--reproducible"];
    args.extend(selectors.iter().map(String::as_str));
    let run = p.imgraph(&args).success();
    // layer, config, manifest, SBOM and provenance of each platform, and each
    // whole dist's index.
    let compared = platforms.len() * 5 + whole;
    run.stderr_has(&[
        &format!("reproducible: {compared} digests identical across two clean builds"),
        "locked .debs taken from the cache, not downloaded again",
        "index:minideb:bookworm sha256:",
    ]);
    eprintln!(
        "minideb: {} platforms locked and built from an empty cache in {built:?}, verified in {:?} more (left out: {left_out:?})",
        platforms.len(),
        started.elapsed() - built
    );
}
