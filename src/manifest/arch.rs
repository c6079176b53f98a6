//! The bashbrew arch names users write, and everything each one implies.
//!
//! One table, so the OCI platform, the Debian arch, the ELF machine and the
//! template variables can never disagree: an image tagged arm64 is built, checked
//! and indexed as arm64 everywhere.

use serde::{Deserialize, Serialize};

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
    /// What its binaries' ELF headers say.
    pub elf: ElfMachine,
}

/// ELF word size (`EI_CLASS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ElfClass {
    /// `ELFCLASS32`.
    Elf32,
    /// `ELFCLASS64`.
    Elf64,
}

/// ELF byte order (`EI_DATA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Endian {
    /// `ELFDATA2LSB`.
    Little,
    /// `ELFDATA2MSB`.
    Big,
}

/// The platform an ELF file is built for: machine, class and byte order together, since
/// e.g. `EM_MIPS` alone does not tell mips64el from 32-bit big-endian mips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ElfMachine {
    /// `e_machine`.
    pub machine: u16,
    /// `EI_CLASS`.
    pub class: ElfClass,
    /// `EI_DATA`.
    pub endian: Endian,
}

/// `e_machine` values of the arch table.
pub mod em {
    /// Intel 80386.
    pub const I386: u16 = 3;
    /// MIPS.
    pub const MIPS: u16 = 8;
    /// 64-bit PowerPC.
    pub const PPC64: u16 = 21;
    /// IBM S/390.
    pub const S390: u16 = 22;
    /// 32-bit ARM.
    pub const ARM: u16 = 40;
    /// AMD x86-64.
    pub const X86_64: u16 = 62;
    /// 64-bit ARM.
    pub const AARCH64: u16 = 183;
    /// RISC-V.
    pub const RISCV: u16 = 243;
}

macro_rules! arch {
    ($name:literal, $arch:literal, $variant:expr, $deb:expr, $em:ident, $class:ident, $endian:ident) => {
        Arch {
            name: $name,
            os: "linux",
            architecture: $arch,
            variant: $variant,
            debian_arch: $deb,
            elf: ElfMachine {
                machine: em::$em,
                class: ElfClass::$class,
                endian: Endian::$endian,
            },
        }
    };
}

/// Every arch imgraph knows, in the contract's order.
pub const ARCHES: &[Arch] = &[
    arch!("amd64", "amd64", None, Some("amd64"), X86_64, Elf64, Little),
    arch!(
        "arm32v5",
        "arm",
        Some("v5"),
        Some("armel"),
        ARM,
        Elf32,
        Little
    ),
    arch!("arm32v6", "arm", Some("v6"), None, ARM, Elf32, Little),
    arch!(
        "arm32v7",
        "arm",
        Some("v7"),
        Some("armhf"),
        ARM,
        Elf32,
        Little
    ),
    arch!(
        "arm64v8",
        "arm64",
        Some("v8"),
        Some("arm64"),
        AARCH64,
        Elf64,
        Little
    ),
    arch!("i386", "386", None, Some("i386"), I386, Elf32, Little),
    arch!(
        "mips64le",
        "mips64le",
        None,
        Some("mips64el"),
        MIPS,
        Elf64,
        Little
    ),
    arch!(
        "ppc64le",
        "ppc64le",
        None,
        Some("ppc64el"),
        PPC64,
        Elf64,
        Little
    ),
    arch!(
        "riscv64",
        "riscv64",
        None,
        Some("riscv64"),
        RISCV,
        Elf64,
        Little
    ),
    arch!("s390x", "s390x", None, Some("s390x"), S390, Elf64, Big),
];

/// The template variables each arch gives a value (or, as `None`, none), in the
/// order the README lists them.
pub const ARCH_VARIABLES: &[&str] = &[
    "arch",
    "debian_arch",
    "os",
    "architecture",
    "variant",
    "platform",
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

    /// This arch's values for [`ARCH_VARIABLES`], in that order.
    pub fn variables(&self) -> [(&'static str, Option<String>); 6] {
        [
            ("arch", Some(self.name.to_string())),
            ("debian_arch", self.debian_arch.map(str::to_string)),
            ("os", Some(self.os.to_string())),
            ("architecture", Some(self.architecture.to_string())),
            ("variant", self.variant.map(str::to_string)),
            ("platform", Some(self.platform())),
        ]
    }

    /// All known names, for "did you mean" hints and error messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        ARCHES.iter().map(|a| a.name)
    }

    /// The arch a name from another naming scheme means: Debian's (`arm64`,
    /// `armhf`), OCI's (`386`, `arm64/v8`, `linux/arm/v7`) or `uname -m`'s
    /// (`aarch64`, `x86_64`); `None` when it means several (`arm`) or none.
    pub fn by_alias(word: &str) -> Option<&'static Arch> {
        const UNAME: [(&str, &str); 6] = [
            ("x86_64", "amd64"),
            ("aarch64", "arm64v8"),
            ("armv7l", "arm32v7"),
            ("armv6l", "arm32v6"),
            ("armv5tel", "arm32v5"),
            ("i686", "i386"),
        ];
        let word = word.strip_prefix("linux/").unwrap_or(word);
        if let Some((_, name)) = UNAME.iter().find(|(u, _)| *u == word) {
            return Arch::by_name(name);
        }
        let mut found = ARCHES.iter().filter(|a| {
            a.debian_arch == Some(word)
                || a.architecture == word
                || a.variant
                    .is_some_and(|v| word == format!("{}/{v}", a.architecture))
        });
        match (found.next(), found.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// The bashbrew name to suggest for an unknown arch name, among `names`: the
    /// one it means in another naming scheme, else the closest spelling. Asked in
    /// that order because `arm64` is two edits from `amd64` and from `arm64v8`
    /// alike, and only its meaning tells them apart.
    pub fn suggest<'a>(word: &str, names: &[&'a str]) -> Option<&'a str> {
        if let Some(arch) = Arch::by_alias(word) {
            if let Some(name) = names.iter().find(|n| **n == arch.name) {
                return Some(name);
            }
        }
        super::diagnostic::did_you_mean(word, names.iter().copied())
    }

    /// [`Arch::suggest`] among every arch.
    pub fn suggest_any(word: &str) -> Option<&'static str> {
        Arch::suggest(word, &Arch::names().collect::<Vec<_>>())
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

    #[test]
    fn other_schemes_names_suggest_the_bashbrew_name_they_mean() {
        let suggest = Arch::suggest_any;
        assert_eq!(suggest("arm64"), Some("arm64v8"));
        assert_eq!(suggest("aarch64"), Some("arm64v8"));
        assert_eq!(suggest("armhf"), Some("arm32v7"));
        assert_eq!(suggest("linux/arm/v6"), Some("arm32v6"));
        assert_eq!(suggest("386"), Some("i386"));
        assert_eq!(suggest("ppc64el"), Some("ppc64le"));
        assert_eq!(suggest("x86_64"), Some("amd64"));
        // Spelling still helps where no scheme names it; `arm` means three arches.
        assert_eq!(suggest("amd46"), Some("amd64"));
        assert_eq!(Arch::by_alias("arm"), None);
        // Whatever comes first among the names on offer.
        assert_eq!(
            Arch::suggest("arm64", &["amd64", "arm64v8"]),
            Some("arm64v8")
        );
    }

    #[test]
    fn every_arch_gives_every_arch_variable() {
        for a in ARCHES {
            let names: Vec<_> = a.variables().iter().map(|(n, _)| *n).collect();
            assert_eq!(names, ARCH_VARIABLES, "{}", a.name);
        }
    }
}
