//! Package URLs (<https://github.com/package-url/purl-spec>): the one identifier
//! scanners match SBOM packages on.

use super::contents::{InstalledPackage, PackageKind};

/// Percent-encodes everything but RFC 3986's unreserved characters (so `+` is
/// `%2B` and an epoch's `:` is `%3A`, as the purl spec asks).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `pkg:deb/debian/libc6@2.36-9%2Bdeb12u9?arch=arm64&distro=debian-12`, or
/// `pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64`.
pub(crate) fn package(p: &InstalledPackage, distro: Option<(&str, &str)>) -> String {
    let (kind, default_ns) = match p.kind {
        PackageKind::Deb => ("deb", "debian"),
        PackageKind::Apk => ("apk", "alpine"),
    };
    let ns = distro.map_or(default_ns, |(id, _)| id);
    let mut out = format!(
        "pkg:{kind}/{}/{}@{}?arch={}",
        encode(ns),
        encode(&p.name),
        encode(&p.version),
        encode(&p.arch)
    );
    if let Some((id, version)) = distro {
        out.push_str(&format!("&distro={}", encode(&format!("{id}-{version}"))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_purls_encode_plus_and_epoch() {
        let p = InstalledPackage {
            name: "libc6".into(),
            version: "2.36-9+deb12u9".into(),
            arch: "arm64".into(),
            ..InstalledPackage::default()
        };
        assert_eq!(
            package(&p, Some(("debian", "12"))),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u9?arch=arm64&distro=debian-12"
        );
        assert_eq!(encode("1:2.3"), "1%3A2.3");
    }
}
