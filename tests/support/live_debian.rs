//! The live Debian mirror (deb.debian.org, reached in CI), for the tests that
//! compare imgraph with the real archive and mmdebstrap.

use std::path::Path;

use imgraph::debian::packages::{parse_index, PackageRecord};

use super::tool;

/// The mirror mmdebstrap and the live tests use.
pub const MIRROR: &str = "http://deb.debian.org/debian";

/// Downloads `url` to `dest` with curl (retrying transient failures).
pub fn download(url: &str, dest: &Path) {
    tool(
        "curl",
        &["-fsS", "--retry", "3", "-o", dest.to_str().unwrap(), url],
    );
}

/// bookworm main's Packages index for a Debian arch, downloaded into `dir`,
/// decompressed with imgraph's decoder and parsed.
pub fn bookworm_records(arch: &str, dir: &Path) -> Vec<PackageRecord> {
    let xz = dir.join(format!("Packages-{arch}.xz"));
    download(
        &format!("{MIRROR}/dists/bookworm/main/binary-{arch}/Packages.xz"),
        &xz,
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut imgraph::decompress::open(&xz).unwrap(), &mut text).unwrap();
    parse_index(&text).expect("bookworm's Packages parses")
}
