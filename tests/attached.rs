//! SBOMs and provenance reach the registry: `build --push` puts each platform's
//! attachments there as referrers (Debian's docker-registry has no referrers
//! API, so through the `sha256-<hex>` fallback tag), the way `oras discover` and
//! `cosign tree` find them; `verify --pushed` checks them; `--changed` re-pushes
//! nothing.

use serde_json::Value;

use crate::support::registry::{Auth, RegistryGuard};
use crate::support::{http_get, sha256, tool, Project};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn project(reg: &RegistryGuard) -> Project {
    let p = Project::new();
    for a in ["amd64", "arm64v8"] {
        p.hello_rootfs("one", a);
    }
    p.manifest(&format!(
        "[settings]\ncreated = \"2024-06-01T00:00:00Z\"\nsbom = [\"spdx\", \"cyclonedx\"]\n\n\
         [registries.local]\nurl = \"{}/test\"\ninsecure = true\n\n\
         [images.hello]\ndists = [\"one\"]\narches = [\"amd64\", \"arm64v8\"]\nregistries = [\"local\"]\n\
         rootfs = {{ dir = \"rootfs/{{dist}}/{{arch}}\" }}\nconfig = {{ cmd = [\"/hello\"] }}\n",
        reg.url()
    ));
    p
}

fn get_json(url: &str, accept: &str) -> Value {
    serde_json::from_slice(&http_get(url, accept).unwrap_or_else(|| panic!("GET {url}"))).unwrap()
}

/// The platform manifests of the pushed index, by arch.
fn platforms(reg: &RegistryGuard) -> Vec<(String, String)> {
    let index = get_json(
        &format!("http://{}/v2/test/hello/manifests/one", reg.url()),
        INDEX,
    );
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Puts an artifact of another tool (empty config, one small layer) whose
/// subject is `subject` into test/hello, listed in the fallback tag as that
/// tool would list it; returns its manifest digest.
fn foreign_referrer(reg: &RegistryGuard, subject: &str) -> String {
    let base = format!("http://{}/v2/test/hello", reg.url());
    let put_blob = |bytes: &[u8]| -> String {
        let digest = sha256(bytes);
        let r = ureq::post(&format!("{base}/blobs/uploads/"))
            .send_empty()
            .unwrap();
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", reg.url())
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        ureq::put(&format!("{url}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .send(bytes)
            .unwrap();
        digest
    };
    let config = put_blob(b"{}");
    let report = br#"{"vulnerabilities":[]}"#;
    let layer = put_blob(report);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": "application/vnd.example.scan+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.scan+json", "digest": layer, "size": report.len()}],
        "subject": {"mediaType": MANIFEST, "digest": subject, "size": 0},
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = sha256(&bytes);
    ureq::put(&format!("{base}/manifests/{digest}"))
        .header("Content-Type", MANIFEST)
        .send(&bytes[..])
        .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": digest,
            "size": bytes.len(),
            "artifactType": "application/vnd.example.scan+json",
        }],
    });
    ureq::put(&format!("{base}/manifests/{}", subject.replace(':', "-")))
        .header("Content-Type", INDEX)
        .send(&serde_json::to_vec(&index).unwrap()[..])
        .unwrap();
    digest
}

/// Each platform manifest has its SPDX, CycloneDX and provenance referrers in
/// the fallback tag (read by skopeo, as a second client), each naming that
/// manifest as its subject and carrying the same document bytes as `out/`;
/// `verify --pushed` checks them and fails once one is gone; `--changed`
/// writes nothing.
#[test]
fn attachments_are_pushed_as_referrers_and_checked_by_verify() {
    let reg = RegistryGuard::start(Auth::None);
    let p = project(&reg);
    // Another tool (a scanner) attached a report to the amd64 image before we
    // pushed: its entry in the fallback tag must survive our update.
    p.imgraph(&["build"]).success();
    let amd64 = sha256(&std::fs::read(p.path("out/hello/one/amd64/image-manifest.json")).unwrap());
    let foreign = foreign_referrer(&reg, &amd64);
    p.imgraph(&["build", "--push"]).success();

    let platforms = platforms(&reg);
    assert_eq!(platforms.len(), 2);
    for (arch, digest) in &platforms {
        let tag = digest.replace(':', "-");
        // skopeo reads the fallback tag as any client without referrers API would.
        let raw = tool(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{}/test/hello:{tag}", reg.url()),
            ],
        );
        let referrers: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(referrers["mediaType"], INDEX, "{raw}");
        let mut types: Vec<String> = referrers["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["artifactType"].as_str().unwrap().to_owned())
            .collect();
        if *digest == amd64 {
            assert!(
                types
                    .iter()
                    .any(|t| t == "application/vnd.example.scan+json"),
                "the other tool's referrer was lost: {raw}"
            );
            types.retain(|t| t != "application/vnd.example.scan+json");
            assert!(raw.contains(&foreign), "{raw}");
        }
        types.sort();
        assert_eq!(
            types,
            [
                "application/spdx+json",
                "application/vnd.cyclonedx+json",
                "application/vnd.in-toto+json"
            ],
            "{arch}: {raw}"
        );
        let ours = referrers["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["digest"] != foreign.as_str());
        let layout = ["amd64", "arm64v8"]
            .iter()
            .map(|a| p.path(&format!("out/hello/one/{a}")))
            .find(|l| sha256(&std::fs::read(l.join("image-manifest.json")).unwrap()) == *digest)
            .unwrap_or_else(|| panic!("no layout in out/ has {digest}"));
        // Its attachments are in the layout beside it.
        let attestations = layout.with_extension("attestations");
        for entry in ours {
            let m = get_json(
                &format!(
                    "http://{}/v2/test/hello/manifests/{}",
                    reg.url(),
                    entry["digest"].as_str().unwrap()
                ),
                MANIFEST,
            );
            assert_eq!(m["subject"]["digest"].as_str(), Some(digest.as_str()));
            assert_eq!(m["artifactType"], entry["artifactType"]);
            let layer = m["layers"][0]["digest"].as_str().unwrap();
            let bytes = http_get(
                &format!("http://{}/v2/test/hello/blobs/{layer}", reg.url()),
                "*/*",
            )
            .unwrap();
            assert_eq!(sha256(&bytes), layer);
            let file = match entry["artifactType"].as_str().unwrap() {
                "application/spdx+json" => "sbom.spdx.json",
                "application/vnd.cyclonedx+json" => "sbom.cyclonedx.json",
                _ => "provenance.intoto.json",
            };
            assert_eq!(
                bytes,
                std::fs::read(attestations.join(file)).unwrap(),
                "{arch}: the pushed {file} differs from out/"
            );
        }
    }

    let ok = p.imgraph(&["verify", "--pushed"]).success();
    assert!(ok.stderr.contains("referrer"), "{}", ok.stderr);

    reg.clear_log();
    p.imgraph(&["build", "--push", "--changed"]).success();
    assert_eq!(
        reg.writes(),
        Vec::<String>::new(),
        "--changed re-push wrote"
    );

    // Drop the SBOMs of one platform from its fallback tag, keep the provenance.
    let (arch, digest) = &platforms[0];
    let tag = digest.replace(':', "-");
    let url = format!("http://{}/v2/test/hello/manifests/{tag}", reg.url());
    let mut referrers = get_json(&url, INDEX);
    referrers["manifests"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["artifactType"] == "application/vnd.in-toto+json");
    ureq::put(&url)
        .header("Content-Type", INDEX)
        .send(serde_json::to_vec(&referrers).unwrap())
        .unwrap();
    p.imgraph(&["verify", "--pushed"])
        .code(1)
        .stderr_has(&[digest.as_str()]);
    // --changed notices the missing referrers and puts them back.
    p.imgraph(&["build", "--push", "--changed"]).success();
    p.imgraph(&["verify", "--pushed"]).success();
    let back = get_json(&url, INDEX);
    assert_eq!(
        back["manifests"].as_array().unwrap().len(),
        3,
        "{arch}: {back}"
    );
}

/// Two dists with the same content share their platform manifests, so their
/// push steps (running at once) both add referrers to the same fallback tags:
/// neither may lose the other's entries.
#[test]
fn pushes_sharing_a_platform_manifest_keep_each_others_referrers() {
    let reg = RegistryGuard::start(Auth::None);
    let p = Project::new();
    for d in ["one", "two", "three"] {
        for a in ["amd64", "arm64v8"] {
            p.hello_rootfs(d, a);
        }
    }
    p.manifest(&format!(
        "[settings]\ncreated = \"2024-06-01T00:00:00Z\"\nsbom = [\"spdx\", \"cyclonedx\"]\n\n\
         [registries.local]\nurl = \"{}/test\"\ninsecure = true\n\n\
         [images.hello]\ndists = [\"one\", \"two\", \"three\"]\narches = [\"amd64\", \"arm64v8\"]\n\
         registries = [\"local\"]\nrootfs = {{ dir = \"rootfs/{{dist}}/{{arch}}\" }}\n\
         config = {{ cmd = [\"/hello\"] }}\n",
        reg.url()
    ));
    p.imgraph(&["build", "--push"]).success();
    for arch in ["amd64", "arm64v8"] {
        let mut subject = None;
        let mut expected = Vec::new();
        for dist in ["one", "two", "three"] {
            let layout = p.path(&format!("out/hello/{dist}/{arch}"));
            let index: Value = serde_json::from_slice(
                &std::fs::read(p.path(&format!(
                    "out/hello/{dist}/{arch}.attestations/referrers.index.json"
                )))
                .unwrap(),
            )
            .unwrap();
            for m in index["manifests"].as_array().unwrap() {
                expected.push(m["digest"].as_str().unwrap().to_owned());
            }
            // The dists share the platform manifest: one subject, one fallback tag.
            let digest = sha256(&std::fs::read(layout.join("image-manifest.json")).unwrap());
            assert!(
                subject.is_none() || subject.as_deref() == Some(digest.as_str()),
                "{dist}/{arch} has another manifest: the test needs shared ones"
            );
            subject = Some(digest);
        }
        expected.sort();
        expected.dedup();
        let subject = subject.unwrap();
        let listed = get_json(
            &format!(
                "http://{}/v2/test/hello/manifests/{}",
                reg.url(),
                subject.replace(':', "-")
            ),
            INDEX,
        );
        let mut listed: Vec<String> = listed["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap().to_owned())
            .collect();
        listed.sort();
        assert_eq!(listed, expected, "{arch}: referrers lost");
    }
}
