//! One pass over the rootfs (issue 23): the layer step gathers what the SBOM
//! needs while it writes the layer, so the sbom and provenance steps read a
//! small JSON blob and never the layer. Proved with the cache's read log
//! (`IMGRAPH_DEBUG_BLOB_READS`: one `<digest> <step>` line per verified blob
//! read), not with timings.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::registry::{Auth, RegistryGuard};
use crate::support::Project;

const LOG_ENV: &str = "IMGRAPH_DEBUG_BLOB_READS";

/// The attachments a default build with both SBOM formats writes.
const DOCUMENTS: [&str; 3] = [
    "sbom.spdx.json",
    "sbom.cyclonedx.json",
    "provenance.intoto.json",
];

/// A rootfs with a dpkg database, a copyright file behind a symlinked doc
/// folder and an os-release, at `root`.
fn write_dpkg_rootfs(p: &Project, root: &str) {
    p.file(
        &format!("{root}/var/lib/dpkg/status"),
        b"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
Source: glibc\nVersion: 2.36-9+deb12u9\nDescription: C library\n\n\
Package: libgcc-s1\nStatus: install ok installed\nArchitecture: amd64\n\
Source: gcc-12 (12.2.0-14)\nVersion: 12.2.0-14\nDescription: GCC support library\n",
    );
    p.file(
        &format!("{root}/usr/share/doc/libc6/copyright"),
        b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
Files: *\nCopyright: the GNU C library authors\nLicense: LGPL-2.1+\n",
    );
    std::fs::create_dir_all(p.path(&format!("{root}/usr/share/doc"))).unwrap();
    std::os::unix::fs::symlink("libc6", p.path(&format!("{root}/usr/share/doc/libgcc-s1")))
        .unwrap();
    p.file(
        &format!("{root}/etc/os-release"),
        b"ID=debian\nVERSION_ID=\"12\"\n",
    );
    let bin = std::fs::read(crate::support::hello_binary("amd64")).unwrap();
    p.executable(&format!("{root}/hello"), &bin);
}

/// A project with two amd64 images: `pkgs` (a dpkg database) and `bare` (none:
/// every file is checksummed), both SBOM formats, provenance on.
fn two_images(extra_settings: &str) -> Project {
    let p = Project::new();
    write_dpkg_rootfs(&p, "pkgs");
    p.hello_rootfs("one", "amd64");
    p.manifest(&format!(
        r#"[settings]
created = "2024-06-01T00:00:00Z"
{extra_settings}

[images.pkgs]
dists = ["one"]
arches = ["amd64"]
rootfs = {{ dir = "pkgs" }}

[images.bare]
dists = ["one"]
arches = ["amd64"]
rootfs = {{ dir = "rootfs/one/amd64" }}
"#
    ));
    p
}

const BOTH_FORMATS: &str = r#"sbom = ["spdx", "cyclonedx"]"#;

/// The layer digest of `image`'s amd64 platform, from its exported manifest.
fn layer_digest(p: &Project, image: &str) -> String {
    let text =
        std::fs::read(p.path(&format!("out/{image}/one/amd64/image-manifest.json"))).unwrap();
    let v: Value = serde_json::from_slice(&text).unwrap();
    v["layers"][0]["digest"].as_str().unwrap().to_string()
}

/// The read log: (digest, step) per line, `-` for reads outside any step.
fn reads(log: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("no blob read log at {}: {e}", log.display()));
    text.lines()
        .map(|l| {
            let (d, s) = l.split_once(' ').unwrap_or((l, ""));
            (d.to_string(), s.to_string())
        })
        .collect()
}

/// The documents of `image` in `out/`, by file name.
fn documents(p: &Project, image: &str) -> BTreeMap<&'static str, Vec<u8>> {
    DOCUMENTS
        .iter()
        .map(|f| {
            let path = p.path(&format!("out/{image}/one/amd64.attestations/{f}"));
            (
                *f,
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            )
        })
        .collect()
}

/// Builds with the read log on; returns the log's lines.
fn build_logged(p: &Project, name: &str, args: &[&str]) -> Vec<(String, String)> {
    let log = p.path(name);
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    p.imgraph_env(&all, &[(LOG_ENV, log.to_str().unwrap())])
        .success();
    reads(&log)
}

#[test]
fn the_sbom_and_provenance_steps_read_no_layer_blob() {
    let p = two_images(BOTH_FORMATS);
    let log = build_logged(&p, "reads.log", &[]);
    for image in ["pkgs", "bare"] {
        let layer = layer_digest(&p, image);
        // The log is real: the export to out/ reads the layer, verified.
        assert!(
            log.iter().any(|(d, s)| *d == layer && s == "-"),
            "{image}: the export's read of the layer is not in the log: {log:?}"
        );
        for kind in ["sbom", "provenance"] {
            let step = format!("{kind}:{image}:one/amd64");
            let layer_reads: Vec<_> = log
                .iter()
                .filter(|(d, s)| *d == layer && *s == step)
                .collect();
            assert!(
                layer_reads.is_empty(),
                "{step} read the layer: {layer_reads:?}"
            );
        }
        // What the sbom step did read: the contents the layer step kept (one
        // small blob), nothing else but what it wrote.
        let sbom_reads: Vec<_> = log
            .iter()
            .filter(|(_, s)| *s == format!("sbom:{image}:one/amd64"))
            .collect();
        assert_eq!(sbom_reads.len(), 1, "{image}: {sbom_reads:?}");
    }
    // The documents still say what the layers hold.
    let spdx: Value = serde_json::from_slice(
        &std::fs::read(p.path("out/pkgs/one/amd64.attestations/sbom.spdx.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"libc6") && names.contains(&"libgcc-s1"),
        "{names:?}"
    );
    let spdx: Value = serde_json::from_slice(
        &std::fs::read(p.path("out/bare/one/amd64.attestations/sbom.spdx.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(spdx["files"].as_array().unwrap().len(), 3, "{spdx}");
}

/// Drops `contents` from every layer record of the cache (as a cache written
/// before the layer step kept them) and every sbom record (so the sbom steps run
/// again).
fn age_the_cache(p: &Project) {
    for sub in ["actions", "steps"] {
        for path in files_under(&p.path(&format!("cache/{sub}"))) {
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            let Ok(mut record) = serde_json::from_slice::<Value>(&text) else {
                continue;
            };
            let step = record["step"].as_str().unwrap_or("").to_string();
            if step.starts_with("sbom:") {
                std::fs::remove_file(&path).unwrap();
            } else if step.starts_with("layer:") {
                let contents = record["outputs"]
                    .as_object_mut()
                    .unwrap()
                    .remove("contents")
                    .expect("a layer record names its contents");
                let digest = contents["digest"].as_str().unwrap().to_string();
                let blobs = record["blobs"].as_array_mut().unwrap();
                blobs.retain(|b| b.as_str() != Some(digest.as_str()));
                std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
            }
        }
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_layer_cached_before_its_contents_were_kept_is_read_once_and_gives_the_same_documents() {
    let p = two_images(BOTH_FORMATS);
    p.imgraph(&["build"]).success();
    let before: Vec<_> = ["pkgs", "bare"].iter().map(|i| documents(&p, i)).collect();
    age_the_cache(&p);
    let log = build_logged(&p, "reads.log", &["--json"]);
    for (image, before) in ["pkgs", "bare"].iter().zip(before) {
        let layer = layer_digest(&p, image);
        let step = format!("sbom:{image}:one/amd64");
        let n = log
            .iter()
            .filter(|(d, s)| *d == layer && *s == step)
            .count();
        assert_eq!(
            n, 1,
            "{step} should read its old layer exactly once (decoded and verified together): {log:?}"
        );
        assert!(
            before == documents(&p, image),
            "{image}: the documents read from the layer differ from those made from the kept contents"
        );
    }
}

#[test]
fn a_layer_from_the_cache_registry_brings_its_contents_to_the_sbom_step() {
    let reg = RegistryGuard::start(Auth::None);
    let cache = format!(
        "cache_registry = {{ url = \"{}/cache/imgraph\", insecure = true }}",
        reg.url()
    );
    // The reference: everything built on one machine.
    let single = two_images(BOTH_FORMATS);
    single.imgraph(&["build"]).success();
    // A runner records layers with attestations off ...
    let runner = two_images(&format!("sbom = []\nprovenance = false\n{cache}"));
    runner.imgraph(&["build"]).success();
    // ... and another machine wants SBOMs: its layers are cache registry hits,
    // its sbom steps run here, on the contents the layer records carry.
    let assembler = two_images(&format!("{BOTH_FORMATS}\n{cache}"));
    let log = build_logged(&assembler, "reads.log", &["--json"]);
    for image in ["pkgs", "bare"] {
        let layer = layer_digest(&single, image);
        assert_eq!(layer_digest(&assembler, image), layer);
        let step = format!("sbom:{image}:one/amd64");
        assert!(
            !log.iter().any(|(d, s)| *d == layer && *s == step),
            "{step} read the layer: {log:?}"
        );
        assert!(
            log.iter().any(|(_, s)| *s == step),
            "{step} did not run here: {log:?}"
        );
        assert!(
            documents(&single, image) == documents(&assembler, image),
            "{image}: the assembler's documents differ from the single-machine build's"
        );
    }
}

/// The step records of the cache whose step id starts with `prefix`.
fn records(p: &Project, prefix: &str) -> Vec<(std::path::PathBuf, Value)> {
    ["actions", "steps"]
        .iter()
        .flat_map(|sub| files_under(&p.path(&format!("cache/{sub}"))))
        .filter_map(|path| {
            let record: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            record["step"]
                .as_str()?
                .starts_with(prefix)
                .then_some((path, record))
        })
        .collect()
}

#[test]
fn a_corrupt_contents_blob_is_dropped_and_the_layer_made_again() {
    let p = two_images(BOTH_FORMATS);
    p.imgraph(&["build"]).success();
    let before = documents(&p, "pkgs");
    let (_, layer) = records(&p, "layer:pkgs:").pop().unwrap();
    let contents = layer["outputs"]["contents"]["digest"].as_str().unwrap();
    let blob = p.path(&format!("cache/blobs/sha256/{}", &contents[7..]));
    std::fs::write(&blob, b"{\"packages\":[]}").unwrap();
    for (path, _) in records(&p, "sbom:pkgs:") {
        std::fs::remove_file(path).unwrap();
    }
    let run = p.imgraph(&["build", "--json"]).success();
    assert!(
        run.stderr.contains("corrupt") && run.stderr.contains(&contents[7..]),
        "the corrupt contents blob is not named: {}",
        run.stderr
    );
    let executed = run.json()["executed"].to_string();
    assert!(executed.contains("layer:pkgs:one/amd64"), "{executed}");
    assert!(before == documents(&p, "pkgs"));
}
