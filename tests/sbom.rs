//! SBOMs and provenance attached to every platform image: checked by the
//! reference validators (spdx-tools' `pyspdxtools`, cyclonedx-python-lib's JSON
//! schema validator, in-toto-attestation's Statement and SLSA Provenance v1
//! protos), compared with `dpkg-query` on the very rootfs that was built, and
//! read back from the `out/` layouts with skopeo.
//!
//! The Python tools live in the venv `scripts/test` makes; it passes that venv's
//! python as `IMGRAPH_TEST_PYTHON`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::apt_repo::{AptRepo, SUITE};
use crate::support::{sha256, tool, Project};

/// The venv's python: a test that needs it fails (never skips) without it.
fn python() -> PathBuf {
    let python = std::env::var_os("IMGRAPH_TEST_PYTHON")
        .map(PathBuf::from)
        .expect(
            "IMGRAPH_TEST_PYTHON is not set: run the tests with scripts/test, which makes a venv \
         with spdx-tools, cyclonedx-python-lib and in-toto-attestation and points it there",
        );
    assert!(
        python.is_file(),
        "IMGRAPH_TEST_PYTHON={} does not exist: rerun scripts/test",
        python.display()
    );
    python
}

/// Runs a validator; `(succeeded, stdout + stderr)`.
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("validator runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `pyspdxtools -i FILE`: parses and validates an SPDX 2.3 document.
fn spdx_valid(file: &Path) -> (bool, String) {
    let bin = python().with_file_name("pyspdxtools");
    run(Command::new(bin).arg("-i").arg(file))
}

const CYCLONEDX: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if errors is not None:
    sys.exit(f"invalid CycloneDX 1.6: {errors}")
"#;

/// cyclonedx-python-lib's strict JSON validator against the 1.6 schema.
fn cyclonedx_valid(file: &Path) -> (bool, String) {
    run(Command::new(python()).args(["-c", CYCLONEDX]).arg(file))
}

const INTOTO: &str = r#"
import json, sys
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
doc = json.load(open(sys.argv[1]))
pb = json_format.ParseDict(doc, statement_pb2.Statement())
Statement.copy_from_pb(pb).validate()
assert pb.predicate_type == "https://slsa.dev/provenance/v1", pb.predicate_type
# Strict: an unknown or misspelt field of SLSA Provenance v1 is an error.
prov = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
assert prov.build_definition.build_type, "no buildType"
assert prov.run_details.builder.id, "no builder.id"
for d in prov.build_definition.resolved_dependencies:
    assert d.uri and d.digest, d
print(len(prov.build_definition.resolved_dependencies))
"#;

/// in-toto-attestation: a valid Statement v1 whose predicate parses as SLSA
/// Provenance v1. Prints the number of resolved dependencies.
fn intoto_valid(file: &Path) -> (bool, String) {
    run(Command::new(python()).args(["-c", INTOTO]).arg(file))
}

fn assert_valid(what: &str, (ok, text): (bool, String)) {
    assert!(ok, "{what} rejected: {text}");
}

fn json_file(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// `name version arch` of every package an SPDX document lists (the image's own
/// package left out).
fn spdx_packages(doc: &Value) -> BTreeSet<String> {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-Image")
        .map(|p| {
            let arch = p["comment"]
                .as_str()
                .and_then(|c| c.strip_prefix("architecture: "))
                .unwrap_or("");
            format!(
                "{} {} {arch}",
                p["name"].as_str().unwrap(),
                p["versionInfo"].as_str().unwrap()
            )
        })
        .collect()
}

/// The same from a CycloneDX BOM.
fn cyclonedx_packages(doc: &Value) -> BTreeSet<String> {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| {
            let arch = c["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "imgraph:package:arch")
                .and_then(|p| p["value"].as_str())
                .unwrap_or("");
            format!(
                "{} {} {arch}",
                c["name"].as_str().unwrap(),
                c["version"].as_str().unwrap()
            )
        })
        .collect()
}

/// Unpacks the one rootfs tarball the build kept in the cache (what the layer
/// was made from) into `dest`, for dpkg-query.
fn unpack_kept_rootfs(p: &Project, dest: &Path) {
    let kept: Vec<PathBuf> = std::fs::read_dir(p.path("cache/rootfs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tar"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    std::fs::create_dir_all(dest).unwrap();
    tool(
        "tar",
        &[
            "-C",
            dest.to_str().unwrap(),
            "--exclude=./dev/*",
            "-xf",
            kept[0].to_str().unwrap(),
        ],
    );
}

/// What dpkg itself says is installed in `root`.
fn dpkg_query(root: &Path) -> BTreeSet<String> {
    let admindir = root.join("var/lib/dpkg");
    tool(
        "dpkg-query",
        &[
            &format!("--admindir={}", admindir.display()),
            "-W",
            "-f",
            "${Package} ${Version} ${Architecture}\n",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// The attestations layout beside a platform layout.
fn attestations(image_dir: &Path) -> PathBuf {
    let name = image_dir.file_name().unwrap().to_str().unwrap();
    image_dir.with_file_name(format!("{name}.attestations"))
}

/// Checks the platform image's attachments, in the layout beside it: the referrers index under
/// `sha256-<hex>` in index.json, each artifact manifest naming the image as its
/// subject, with the empty config and the document as its one layer. Returns
/// the artifact types found.
fn check_layout(image_dir: &Path) -> Vec<String> {
    let manifest = std::fs::read(image_dir.join("image-manifest.json")).unwrap();
    let subject = sha256(&manifest);
    // The image's own layout holds the image alone.
    let own = json_file(&image_dir.join("index.json"));
    assert_eq!(own["manifests"].as_array().unwrap().len(), 1, "{own}");
    crate::support::oci_import::assert_oci_import(image_dir);
    let dir = &attestations(image_dir);
    let index = json_file(&dir.join("index.json"));
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(
        entries[0]["digest"],
        subject.as_str(),
        "the image stays first"
    );
    let tag = format!("sha256-{}", &subject[7..]);
    let referrers_entry = entries
        .iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .unwrap_or_else(|| panic!("no {tag} entry in {index}"));
    // skopeo resolves the referrers index by that name, like a registry's fallback tag.
    let raw = tool(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:{tag}", dir.display())],
    );
    let referrers: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(referrers_entry["digest"], sha256(raw.as_bytes()).as_str());
    let mut types = Vec::new();
    for r in referrers["manifests"].as_array().unwrap() {
        let digest = r["digest"].as_str().unwrap();
        let bytes = std::fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap();
        assert_eq!(sha256(&bytes), digest);
        let m: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(m["artifactType"], r["artifactType"]);
        assert_eq!(m["subject"]["digest"], subject.as_str());
        assert_eq!(m["subject"]["size"], manifest.len());
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        assert_eq!(m["config"]["digest"], sha256(b"{}").as_str());
        let layer = &m["layers"][0];
        let title = layer["annotations"]["org.opencontainers.image.title"]
            .as_str()
            .unwrap();
        let doc = std::fs::read(dir.join(title)).unwrap();
        assert_eq!(layer["digest"], sha256(&doc).as_str(), "{title}");
        assert!(dir.join("blobs/sha256").join(&sha256(&doc)[7..]).exists());
        types.push(m["artifactType"].as_str().unwrap().to_string());
    }
    types
}

/// A rootfs with a dpkg database (two packages, one from another source
/// package, one DEP-5 copyright file) and an os-release.
fn write_dpkg_rootfs(p: &Project, root: &str) {
    p.file(
        &format!("{root}/var/lib/dpkg/status"),
        b"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\n\
Source: glibc\nVersion: 2.36-9+deb12u9\nDescription: C library\n\n\
Package: libstdc++6\nStatus: install ok installed\nArchitecture: amd64\n\
Source: gcc-12 (12.2.0-14)\nVersion: 12.2.0-14\nDescription: C++ library\n\n\
Package: removed\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\
Description: only its conffiles are left\n",
    );
    p.file(
        &format!("{root}/usr/share/doc/libc6/copyright"),
        b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
Files: *\nCopyright: the GNU C library authors\nLicense: LGPL-2.1+\n",
    );
    p.file(
        &format!("{root}/etc/os-release"),
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
    );
    let bin = std::fs::read(crate::support::hello_binary("amd64")).unwrap();
    p.executable(&format!("{root}/hello"), &bin);
}

#[test]
fn sbom_of_a_command_and_a_tar_rootfs_lists_what_dpkg_query_lists() {
    let p = Project::new();
    write_dpkg_rootfs(&p, "fixture");
    let tarball = p.path("fixture.tar");
    tool(
        "tar",
        &[
            "-C",
            p.path("fixture").to_str().unwrap(),
            "-cf",
            tarball.to_str().unwrap(),
            ".",
        ],
    );
    p.manifest(
        r#"[settings]
created = "2024-06-01T00:00:00Z"
sbom = ["spdx", "cyclonedx"]

[images.fromcmd]
dists = ["one"]
arches = ["amd64"]
rootfs = { command = "cp -a fixture/. {out}", inputs = ["fixture"] }

[images.fromtar]
dists = ["one"]
arches = ["amd64"]
rootfs = { tar = "fixture.tar" }
"#,
    );
    p.imgraph(&["build"]).success();
    // dpkg-query -W also lists a package of which only conffiles are left
    // (`config-files`): not installed, so not in the SBOM.
    let mut expected = dpkg_query(&p.path("fixture"));
    assert!(expected.remove("removed 1 amd64"), "{expected:?}");
    assert_eq!(expected.len(), 2, "{expected:?}");
    for image in ["fromcmd", "fromtar"] {
        let dir = p.path(&format!("out/{image}/one/amd64"));
        let types = check_layout(&dir);
        assert_eq!(
            types,
            [
                "application/spdx+json",
                "application/vnd.cyclonedx+json",
                "application/vnd.in-toto+json"
            ]
        );
        assert_valid(
            "pyspdxtools",
            spdx_valid(&attestations(&dir).join("sbom.spdx.json")),
        );
        assert_valid(
            "cyclonedx",
            cyclonedx_valid(&attestations(&dir).join("sbom.cyclonedx.json")),
        );
        assert_valid(
            "in-toto",
            intoto_valid(&attestations(&dir).join("provenance.intoto.json")),
        );
        let spdx = json_file(&attestations(&dir).join("sbom.spdx.json"));
        assert_eq!(spdx_packages(&spdx), expected, "{image}");
        let cdx = json_file(&attestations(&dir).join("sbom.cyclonedx.json"));
        assert_eq!(cyclonedx_packages(&cdx), expected, "{image}");
        // purl, source package and DEP-5 license as the issue spells them.
        let libc = spdx["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "libc6")
            .unwrap();
        assert_eq!(
            libc["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u9?arch=amd64&distro=debian-12"
        );
        assert_eq!(libc["licenseDeclared"], "LGPL-2.1-or-later");
        assert_eq!(
            libc["sourceInfo"],
            "built from source package glibc 2.36-9+deb12u9"
        );
        let libstdcxx = spdx["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "libstdc++6")
            .unwrap();
        assert_eq!(libstdcxx["licenseDeclared"], "NOASSERTION");
        assert_eq!(
            libstdcxx["sourceInfo"],
            "built from source package gcc-12 12.2.0-14"
        );
        // The document names the image by its manifest digest.
        let manifest = std::fs::read(dir.join("image-manifest.json")).unwrap();
        let image_pkg = &spdx["packages"][0];
        assert_eq!(image_pkg["SPDXID"], "SPDXRef-Image");
        assert_eq!(image_pkg["versionInfo"], sha256(&manifest).as_str());
        assert_eq!(spdx["documentDescribes"][0], "SPDXRef-Image");
        assert!(spdx["documentNamespace"]
            .as_str()
            .unwrap()
            .ends_with(&sha256(&manifest)[7..]));
        assert_eq!(spdx["creationInfo"]["created"], "2024-06-01T00:00:00Z");
        assert!(spdx.get("files").is_none(), "packages, not files");
        assert_eq!(
            cdx["metadata"]["component"]["version"],
            sha256(&manifest).as_str()
        );
    }
}

#[test]
fn a_rootfs_without_a_package_database_gets_every_file_checksummed() {
    let p = Project::hello(&["amd64"]);
    p.imgraph(&["build"]).success();
    let dir = p.path("out/hello/one/amd64");
    assert_eq!(
        check_layout(&dir),
        ["application/spdx+json", "application/vnd.in-toto+json"],
        "the default: SPDX and provenance"
    );
    assert!(!attestations(&dir).join("sbom.cyclonedx.json").exists());
    let file = attestations(&dir).join("sbom.spdx.json");
    assert_valid("pyspdxtools", spdx_valid(&file));
    let spdx = json_file(&file);
    assert_eq!(spdx_packages(&spdx), BTreeSet::new());
    let files: Vec<(String, String)> = spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let sha = f["checksums"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["algorithm"] == "SHA256")
                .unwrap()["checksumValue"]
                .as_str()
                .unwrap()
                .to_string();
            (f["fileName"].as_str().unwrap().to_string(), sha)
        })
        .collect();
    let bin = std::fs::read(crate::support::hello_binary("amd64")).unwrap();
    let expected: Vec<(String, String)> = [
        ("./etc/hostname", sha256(b"amd64\n")),
        ("./etc/os-release", sha256(b"NAME=hello\n")),
        ("./hello", sha256(&bin)),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s[7..].to_string()))
    .collect();
    assert_eq!(files, expected);

    // The validator is real: a document naming an undeclared LicenseRef fails.
    let mut broken = spdx.clone();
    broken["files"][0]["licenseConcluded"] = "LicenseRef-undeclared".into();
    let broken_file = p.path("broken.spdx.json");
    std::fs::write(&broken_file, serde_json::to_vec(&broken).unwrap()).unwrap();
    assert!(
        !spdx_valid(&broken_file).0,
        "pyspdxtools accepted a broken document"
    );
}

#[test]
fn a_debian_image_sbom_matches_dpkg_query_the_lock_and_the_archive() {
    let repo = AptRepo::start();
    let p = repo.project(SUITE, "sbom = [\"spdx\", \"cyclonedx\"]\n");
    p.imgraph(&["lock"]).success();
    p.imgraph(&["build"]).success();

    // dpkg-query on the rootfs that was built (the tarball the layer was made from).
    let root = p.path("unpacked");
    unpack_kept_rootfs(&p, &root);
    let expected = dpkg_query(&root);
    assert_eq!(expected.len(), 5, "{expected:?}");

    let dir = p.path(&format!("out/tiny/{SUITE}/amd64"));
    check_layout(&dir);
    // spdx-tools' url pattern wants a host name with a TLD, which the loopback
    // mirror has not: it validates a copy naming deb.debian.org instead (the
    // urls themselves are checked against the served files below).
    let text = std::fs::read_to_string(attestations(&dir).join("sbom.spdx.json")).unwrap();
    let renamed = p.path("renamed.spdx.json");
    std::fs::write(
        &renamed,
        text.replace(&repo.url(), "http://deb.debian.org/debian"),
    )
    .unwrap();
    assert_valid("pyspdxtools", spdx_valid(&renamed));
    assert_valid(
        "cyclonedx",
        cyclonedx_valid(&attestations(&dir).join("sbom.cyclonedx.json")),
    );
    let (ok, deps) = intoto_valid(&attestations(&dir).join("provenance.intoto.json"));
    assert!(ok, "in-toto rejected: {deps}");
    let spdx = json_file(&attestations(&dir).join("sbom.spdx.json"));
    assert_eq!(spdx_packages(&spdx), expected);
    let cdx = json_file(&attestations(&dir).join("sbom.cyclonedx.json"));
    assert_eq!(cyclonedx_packages(&cdx), expected);

    // Each package's checksum is its .deb's, as served (and locked), and it
    // says where that .deb is downloaded from.
    for pkg in spdx["packages"].as_array().unwrap().iter().skip(1) {
        let url = pkg["downloadLocation"].as_str().unwrap();
        let rel = url
            .strip_prefix(&format!("{}/", repo.url()))
            .unwrap_or_else(|| panic!("{url} is not on the mirror"));
        let deb = std::fs::read(repo.path(rel)).unwrap();
        assert_eq!(
            pkg["checksums"][0]["checksumValue"],
            &sha256(&deb)[7..],
            "{url}"
        );
    }
    let libc = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libc-tiny")
        .unwrap();
    assert_eq!(
        libc["externalRefs"][0]["referenceLocator"],
        format!("pkg:deb/debian/libc-tiny@2.36-9%2Bdeb12u1?arch=amd64&distro=debian-{SUITE}")
    );
    assert_eq!(libc["licenseDeclared"], "GPL-2.0-or-later");
    assert_eq!(
        libc["sourceInfo"],
        "built from source package glibc-tiny 2.36-9+deb12u1"
    );
    let mawk = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mawk-tiny")
        .unwrap();
    assert_eq!(
        mawk["licenseDeclared"], "NOASSERTION",
        "not machine-readable"
    );

    // Provenance: every .deb and the InRelease, by uri and sha256.
    let prov = json_file(&attestations(&dir).join("provenance.intoto.json"));
    let manifest = std::fs::read(dir.join("image-manifest.json")).unwrap();
    assert_eq!(
        prov["subject"][0]["digest"]["sha256"],
        &sha256(&manifest)[7..]
    );
    let resolved = prov["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert_eq!(resolved.len(), 5 + 1, "{resolved:?}");
    assert_eq!(deps.trim(), "6");
    let inrelease = std::fs::read(repo.path(&format!("dists/{SUITE}/InRelease"))).unwrap();
    assert!(
        resolved.iter().any(|d| d["uri"]
            == format!("{}/dists/{SUITE}/InRelease", repo.url()).as_str()
            && d["digest"]["sha256"] == sha256(&inrelease)[7..]),
        "{resolved:?}"
    );
    assert_eq!(
        prov["predicate"]["buildDefinition"]["externalParameters"]["manifest"]["rootfs"]["debian"]
            ["mirror"],
        repo.url().as_str()
    );
}

#[test]
fn sboms_and_provenance_are_byte_identical_across_clean_builds() {
    let build = || {
        let p = Project::new();
        write_dpkg_rootfs(&p, "rootfs");
        p.manifest(
            r#"[settings]
created = "2024-06-01T00:00:00Z"
sbom = ["spdx", "cyclonedx"]

[images.hello]
dists = ["one"]
arches = ["amd64"]
rootfs = { dir = "rootfs" }
"#,
        );
        p.imgraph(&["build"]).success();
        p
    };
    let a = build();
    // Another folder, another cache, another second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build();
    for f in [
        "sbom.spdx.json",
        "sbom.cyclonedx.json",
        "provenance.intoto.json",
        "sbom.spdx.manifest.json",
        "sbom.cyclonedx.manifest.json",
        "provenance.intoto.manifest.json",
        "index.json",
    ] {
        let path = format!("out/hello/one/amd64.attestations/{f}");
        let (x, y) = (
            std::fs::read(a.path(&path)).unwrap(),
            std::fs::read(b.path(&path)).unwrap(),
        );
        assert!(x == y, "{f} differs between two clean builds");
    }
    // verify --reproducible compares the sbom and provenance steps too:
    // layer, config, manifest, sbom, provenance, index.
    a.imgraph(&["verify", "--reproducible"])
        .success()
        .stderr_has(&["reproducible: 6 digests identical"]);
}

#[test]
fn plan_lists_the_steps_and_settings_turn_them_off_or_choose_formats() {
    let p = Project::hello(&["amd64"]);
    let ids = |p: &Project| -> Vec<String> {
        p.plan(&[])
            .into_iter()
            .map(|(id, _, _)| id)
            .filter(|id| id.starts_with("sbom:") || id.starts_with("provenance:"))
            .collect()
    };
    assert_eq!(
        ids(&p),
        ["sbom:hello:one/amd64", "provenance:hello:one/amd64"]
    );
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    let with_settings = |settings: &str, image: &str| {
        text.replace(
            "created = \"2024-06-01T00:00:00Z\"\n",
            &format!("created = \"2024-06-01T00:00:00Z\"\n{settings}"),
        )
        .replace("config = {", &format!("{image}config = {{"))
    };
    p.manifest(&with_settings("sbom = []\nprovenance = false\n", ""));
    assert_eq!(ids(&p), Vec::<String>::new());
    p.imgraph(&["build"]).success();
    assert!(
        !p.path("out/hello/one/amd64.attestations").exists(),
        "nothing attached, no attestations layout"
    );
    assert!(!p
        .path("out/hello/one/amd64.attestations/sbom.spdx.json")
        .exists());

    // An image's own setting wins over [settings].
    p.manifest(&with_settings(
        "sbom = []\nprovenance = false\n",
        "sbom = [\"cyclonedx\"]\n",
    ));
    assert_eq!(ids(&p), ["sbom:hello:one/amd64"]);
    // The image did not change, its attachments did: --changed exports them.
    p.imgraph(&["build", "--changed"]).success();
    assert_eq!(
        check_layout(&p.path("out/hello/one/amd64")),
        ["application/vnd.cyclonedx+json"]
    );
    assert!(!p
        .path("out/hello/one/amd64.attestations/sbom.spdx.json")
        .exists());
    assert_valid(
        "cyclonedx",
        cyclonedx_valid(&p.path("out/hello/one/amd64.attestations/sbom.cyclonedx.json")),
    );

    // An unknown format: exit 2 at its place, naming the valid ones.
    p.manifest(&with_settings("sbom = [\"spdx\", \"spdy\"]\n", ""));
    p.imgraph(&["plan"]).code(2).stderr_has(&[
        "images.toml:3:",
        "unknown sbom format \"spdy\"",
        "\"spdx\", \"cyclonedx\"",
    ]);
}

#[test]
fn every_push_of_a_dist_depends_on_its_platforms_attachments() {
    let p = Project::hello(&["amd64", "arm64v8"]);
    let text = std::fs::read_to_string(p.path("images.toml")).unwrap();
    p.manifest(&format!(
        "{}registries = [\"a\", \"b\"]\n\n[registries.a]\nurl = \"http://127.0.0.1:1/x\"\n\n\
         [registries.b]\nurl = \"http://127.0.0.1:2/y\"\n",
        text
    ));
    let graph = p.imgraph(&["graph", "--format", "json"]).success().json();
    let steps = graph["steps"].as_array().unwrap();
    let deps = |id: &str| -> BTreeSet<String> {
        steps
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no {id}"))["deps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    };
    for reg in ["a", "b"] {
        let mut expected: BTreeSet<String> = ["amd64", "arm64v8"]
            .iter()
            .flat_map(|a| {
                [
                    format!("sbom:hello:one/{a}"),
                    format!("provenance:hello:one/{a}"),
                ]
            })
            .collect();
        expected.insert(format!("tag:hello:one@{reg}"));
        assert_eq!(deps(&format!("push:hello:one@{reg}")), expected);
    }
    // What they attach to and read.
    assert_eq!(
        deps("sbom:hello:one/amd64"),
        BTreeSet::from([
            "layer:hello:one/amd64".to_string(),
            "manifest:hello:one/amd64".to_string()
        ])
    );
    assert_eq!(
        deps("provenance:hello:one/amd64"),
        BTreeSet::from([
            "rootfs:hello:one/amd64".to_string(),
            "manifest:hello:one/amd64".to_string()
        ])
    );
}

/// Live: bookworm minbase from deb.debian.org, locked and built by imgraph.
#[test]
fn live_bookworm_minbase_sbom_lists_what_dpkg_query_lists_and_validates() {
    let p = Project::new();
    p.manifest(
        r#"[settings]
created = "2024-06-01T00:00:00Z"
sbom = ["spdx", "cyclonedx"]

[images.minideb]
dists = ["bookworm"]
arches = ["amd64"]
rootfs = { debian = { variant = "minbase" } }
"#,
    );
    p.imgraph(&["lock"]).success();
    p.imgraph(&["build"]).success();
    let root = p.path("unpacked");
    unpack_kept_rootfs(&p, &root);
    let expected = dpkg_query(&root);
    assert!(expected.len() > 80, "{expected:?}");
    let dir = p.path("out/minideb/bookworm/amd64");
    check_layout(&dir);
    assert_valid(
        "pyspdxtools",
        spdx_valid(&attestations(&dir).join("sbom.spdx.json")),
    );
    assert_valid(
        "cyclonedx",
        cyclonedx_valid(&attestations(&dir).join("sbom.cyclonedx.json")),
    );
    assert_valid(
        "in-toto",
        intoto_valid(&attestations(&dir).join("provenance.intoto.json")),
    );
    let spdx = json_file(&attestations(&dir).join("sbom.spdx.json"));
    assert_eq!(spdx_packages(&spdx), expected);
    let libc = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libc6")
        .unwrap();
    let purl = libc["externalRefs"][0]["referenceLocator"]
        .as_str()
        .unwrap();
    assert!(
        purl.starts_with("pkg:deb/debian/libc6@2.36-9%2Bdeb12u")
            && purl.ends_with("?arch=amd64&distro=debian-12"),
        "{purl}"
    );
    // Most of Debian's copyright files are machine-readable.
    let declared = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .filter(|p| p["licenseDeclared"] != "NOASSERTION")
        .count();
    assert!(
        declared * 2 > expected.len(),
        "{declared} of {}",
        expected.len()
    );
}

/// Live: an mmdebstrap `command` rootfs; its SBOM comes from the dpkg database
/// mmdebstrap (that is, dpkg) wrote.
#[test]
fn live_mmdebstrap_command_image_sbom_lists_what_dpkg_query_lists() {
    let p = Project::new();
    p.manifest(
        r#"[settings]
created = "2024-06-01T00:00:00Z"

[images.mm]
dists = ["bookworm"]
arches = ["amd64"]
rootfs = { command = "mmdebstrap --quiet --variant=minbase --arch={debian_arch} {dist} {out}.tar http://deb.debian.org/debian" }
"#,
    );
    p.imgraph(&["build"]).success();
    let root = p.path("unpacked");
    unpack_kept_rootfs(&p, &root);
    let expected = dpkg_query(&root);
    assert!(expected.len() > 80, "{expected:?}");
    let dir = p.path("out/mm/bookworm/amd64");
    assert_eq!(
        check_layout(&dir),
        ["application/spdx+json", "application/vnd.in-toto+json"]
    );
    assert_valid(
        "pyspdxtools",
        spdx_valid(&attestations(&dir).join("sbom.spdx.json")),
    );
    assert_valid(
        "in-toto",
        intoto_valid(&attestations(&dir).join("provenance.intoto.json")),
    );
    assert_eq!(
        spdx_packages(&json_file(&attestations(&dir).join("sbom.spdx.json"))),
        expected
    );
}

#[test]
fn provenance_names_the_commit_of_the_manifest_repository() {
    let p = Project::hello(&["amd64"]);
    let git = |args: &[&str]| {
        let mut full = vec!["-C", p.root().to_str().unwrap()];
        full.extend_from_slice(args);
        tool("git", &full)
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@imgraph.invalid",
        "commit",
        "-qm",
        "one",
    ]);
    let head = git(&["rev-parse", "HEAD"]).trim().to_string();
    // A remote url with credentials in it is never written.
    git(&[
        "remote",
        "add",
        "origin",
        "https://alice:SECRET@example.invalid/team/images.git",
    ]);
    p.imgraph(&["build"]).success();
    let path = p.path("out/hello/one/amd64.attestations/provenance.intoto.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("SECRET"), "{text}");
    let git_dep = |prov: &Value| -> Value {
        prov["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["digest"]["gitCommit"].is_string())
            .cloned()
            .unwrap_or_else(|| panic!("no gitCommit in {prov}"))
    };
    let dep = git_dep(&json_file(&path));
    assert_eq!(dep["digest"]["gitCommit"], head.as_str());
    assert_eq!(dep["uri"], "git+file:images.toml");
    git(&[
        "remote",
        "set-url",
        "origin",
        "https://example.invalid/team/images.git",
    ]);
    p.imgraph(&["build"]).success();
    let dep = git_dep(&json_file(&path));
    assert_eq!(dep["uri"], "git+https://example.invalid/team/images.git");
    assert_valid(
        "in-toto",
        intoto_valid(&p.path("out/hello/one/amd64.attestations/provenance.intoto.json")),
    );
    // A new commit is a new provenance (and nothing else).
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@imgraph.invalid",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "two",
    ]);
    assert_eq!(p.dirty(), ["provenance:hello:one/amd64"]);
}
