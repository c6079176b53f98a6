//! What an image's layer holds, as far as an SBOM cares (see
//! [`crate::oci::contents`]: the layer step gathers it while writing the layer,
//! and the sbom step reads that small blob).
//!
//! Reading it back from the layer itself is the fallback for a layer cached
//! before the layer step gathered it: the same [`Collector`] over the decoded
//! tar, so both give the same [`Contents`]. Every source kind (`dir`, `tar`,
//! `command`, `debian`) ends up as a layer, and the layer is exactly what the
//! image ships.

use std::io::{BufRead, BufReader, Read};

use super::AttestError;
use crate::cache::Store;
use crate::decompress::{decoder, Format};
pub use crate::oci::contents::{Collector, Contents, FileSum, InstalledPackage, PackageKind};

/// Reads a (compressed) layer blob of the cache once: decoded and hashed in the
/// same read (a blob that is not its digest is removed and the read fails).
pub fn read_layer(store: &Store, digest: &str) -> Result<Contents, AttestError> {
    let err = |source| AttestError::Layer {
        digest: digest.to_string(),
        source,
    };
    let mut blob = store.open_verified(digest)?;
    let contents = (|| {
        let mut input = BufReader::with_capacity(256 * 1024, &mut blob);
        let format = Format::sniff(input.fill_buf()?);
        read_tar(decoder(format, input)?)
    })();
    blob.finish()?;
    contents.map_err(err)
}

/// Reads a tar stream (what [`read_layer`] decodes), hashing every file.
pub fn read_tar(reader: impl Read) -> std::io::Result<Contents> {
    let mut archive = tar::Archive::new(reader);
    let mut collector = Collector::new(true);
    let mut buf = vec![0u8; 64 * 1024];
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let Some(target) = entry.link_name_bytes() {
                collector.symlink(&path, &target);
            }
            continue;
        }
        if kind.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                collector.hardlink(&path, &target);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        collector.begin_file(&path);
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            collector.data(&buf[..n]);
        }
        collector.end_file();
    }
    // Every file was hashed, so there are contents whether or not a package
    // database turned up.
    Ok(collector.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, bytes) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *bytes).unwrap();
        }
        for (path, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, path, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn dpkg_status_source_and_symlinked_doc_folders() {
        let status = b"Package: libgcc-s1\nStatus: install ok installed\nArchitecture: arm64\nSource: gcc-12 (12.2.0-14)\nVersion: 12.2.0-14\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: gcc-12-base\nStatus: install ok installed\nArchitecture: arm64\nSource: gcc-12\nVersion: 12.2.0-14\n";
        let tar = tar_of(
            &[
                ("./var/lib/dpkg/status", status),
                ("./usr/share/doc/gcc-12-base/copyright", b"text"),
                ("./etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
            ],
            &[("./usr/share/doc/libgcc-s1", "gcc-12-base")],
        );
        let c = read_tar(&tar[..]).unwrap();
        let names: Vec<_> = c.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["gcc-12-base", "libgcc-s1"]);
        assert_eq!(c.packages[1].source.as_deref(), Some("gcc-12"));
        assert_eq!(c.packages[1].source_version.as_deref(), Some("12.2.0-14"));
        assert_eq!(
            c.copyrights.get("libgcc-s1").map(String::as_str),
            Some("text")
        );
        assert_eq!(c.os, Some(("debian".into(), "12".into())));
        assert!(c.files.is_empty());
    }

    #[test]
    fn apk_database_packages_and_licenses() {
        let db = b"C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\no:musl\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\nL:GPL-2.0-only\no:busybox\n\n";
        let c = read_tar(&tar_of(&[("lib/apk/db/installed", db)], &[])[..]).unwrap();
        assert!(c.has_package_db);
        let got: Vec<_> = c
            .packages
            .iter()
            .map(|p| {
                (
                    p.kind,
                    p.name.as_str(),
                    p.version.as_str(),
                    p.license.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    PackageKind::Apk,
                    "busybox",
                    "1.36.1-r29",
                    Some("GPL-2.0-only")
                ),
                (PackageKind::Apk, "musl", "1.2.5-r0", Some("MIT")),
            ]
        );
    }

    #[test]
    fn no_database_lists_files() {
        let tar = tar_of(&[("hello", b"hi\n")], &[]);
        let c = read_tar(&tar[..]).unwrap();
        assert!(!c.has_package_db);
        assert_eq!(c.files.len(), 1);
        assert_eq!(c.files[0].path, "hello");
        assert_eq!(
            c.files[0].sha256,
            "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"
        );
    }
}
