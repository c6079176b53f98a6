//! The bashbrew arch names users write, and everything each one implies.
//!
//! One table, so the OCI platform, the Debian arch and the ELF machine can never
//! disagree: an image tagged arm64 is built, checked and indexed as arm64 everywhere.

/// One row of the contract's arch table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Arch {
    /// The bashbrew name used in `images.toml` (`arm64v8`).
    pub name: &'static str,
    /// OCI `os`.
    pub os: &'static str,
    /// OCI `architecture`.
    pub architecture: &'static str,
    /// OCI `variant`, where the platform has one.
    pub variant: Option<&'static str>,
    /// Debian's name for the arch, where Debian ships one (`{debian_arch}`).
    pub debian_arch: Option<&'static str>,
}

macro_rules! arch {
    ($name:literal, $arch:literal, $variant:expr, $deb:expr) => {
        Arch {
            name: $name,
            os: "linux",
            architecture: $arch,
            variant: $variant,
            debian_arch: $deb,
        }
    };
}

/// Every arch imgraph knows, in the contract's order.
pub const ARCHES: &[Arch] = &[
    arch!("amd64", "amd64", None, Some("amd64")),
    arch!("arm32v5", "arm", Some("v5"), Some("armel")),
    arch!("arm32v6", "arm", Some("v6"), None),
    arch!("arm32v7", "arm", Some("v7"), Some("armhf")),
    arch!("arm64v8", "arm64", Some("v8"), Some("arm64")),
    arch!("i386", "386", None, Some("i386")),
    arch!("mips64le", "mips64le", None, Some("mips64el")),
    arch!("ppc64le", "ppc64le", None, Some("ppc64el")),
    arch!("riscv64", "riscv64", None, Some("riscv64")),
    arch!("s390x", "s390x", None, Some("s390x")),
];

impl Arch {
    /// Looks up a bashbrew arch name.
    pub fn by_name(name: &str) -> Option<&'static Arch> {
        ARCHES.iter().find(|a| a.name == name)
    }

    /// The OCI platform string, `linux/arm64/v8`.
    pub fn platform(&self) -> String {
        match self.variant {
            Some(v) => format!("{}/{}/{}", self.os, self.architecture, v),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// All known names, for "did you mean" hints and error messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        ARCHES.iter().map(|a| a.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_strings_follow_the_contract() {
        assert_eq!(
            Arch::by_name("arm64v8").unwrap().platform(),
            "linux/arm64/v8"
        );
        assert_eq!(Arch::by_name("i386").unwrap().platform(), "linux/386");
        assert_eq!(Arch::by_name("arm32v6").unwrap().debian_arch, None);
        assert!(Arch::by_name("amd46").is_none());
    }
}
