//! ELF census of a layer: which machine its binaries are built for.
//!
//! A rootfs built for the wrong architecture (qemu not registered, wrong `--arch`) still
//! packs fine and only fails when someone runs it. Counting the ELF headers while the
//! layer is written costs nothing (the bytes pass by anyway) and catches it at build time.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Bytes of a file needed to classify it: `e_ident` (16) and `e_type`/`e_machine` (4).
pub const ELF_PEEK: usize = 20;

pub use crate::manifest::arch::{em, ElfClass, ElfMachine, Endian};

impl ElfMachine {
    /// Classifies the first bytes of a file; `None` when it is not an ELF file.
    pub fn from_header(head: &[u8]) -> Option<ElfMachine> {
        if head.len() < ELF_PEEK || &head[..4] != b"\x7fELF" {
            return None;
        }
        let class = match head[4] {
            1 => ElfClass::Elf32,
            2 => ElfClass::Elf64,
            _ => return None,
        };
        let (endian, machine) = match head[5] {
            1 => (Endian::Little, u16::from_le_bytes([head[18], head[19]])),
            2 => (Endian::Big, u16::from_be_bytes([head[18], head[19]])),
            _ => return None,
        };
        Some(ElfMachine {
            machine,
            class,
            endian,
        })
    }
}

impl fmt::Display for ElfMachine {
    /// Names as `file(1)` and Debian say them, so that errors read naturally.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ElfClass::{Elf32, Elf64};
        use Endian::{Big, Little};
        let name = match (self.machine, self.class, self.endian) {
            (em::X86_64, Elf64, Little) => "x86-64",
            (em::X86_64, Elf32, Little) => "x32",
            (em::AARCH64, Elf64, Little) => "aarch64",
            (em::ARM, Elf32, Little) => "arm",
            (em::I386, Elf32, Little) => "i386",
            (em::MIPS, Elf64, Little) => "mips64el",
            (em::MIPS, Elf32, Little) => "mipsel",
            (em::MIPS, Elf32, Big) => "mips",
            (em::PPC64, Elf64, Little) => "ppc64le",
            (em::PPC64, Elf64, Big) => "ppc64",
            (em::RISCV, Elf64, Little) => "riscv64",
            (em::S390, Elf64, Big) => "s390x",
            _ => {
                let bits = if self.class == Elf64 { 64 } else { 32 };
                let order = if self.endian == Little { "LE" } else { "BE" };
                return write!(f, "e_machine {} ({bits}-bit {order})", self.machine);
            }
        };
        f.write_str(name)
    }
}

/// Count of ELF files per machine, with one example path each.
///
/// Serialised as a list of [`ElfCount`] (JSON maps need string keys), so that it can be
/// stored with the layer step's outputs and checked again without re-reading the layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<ElfCount>", from = "Vec<ElfCount>")]
pub struct ElfCensus {
    /// Files per machine, with the first path (in layer order) seen for it.
    pub counts: BTreeMap<ElfMachine, (u64, String)>,
}

/// One machine's line of an [`ElfCensus`], its serialised form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElfCount {
    /// The machine.
    pub machine: ElfMachine,
    /// How many files.
    pub count: u64,
    /// The first such file, relative to the root.
    pub example: String,
}

impl From<ElfCensus> for Vec<ElfCount> {
    fn from(c: ElfCensus) -> Self {
        c.counts
            .into_iter()
            .map(|(machine, (count, example))| ElfCount {
                machine,
                count,
                example,
            })
            .collect()
    }
}

impl From<Vec<ElfCount>> for ElfCensus {
    fn from(v: Vec<ElfCount>) -> Self {
        ElfCensus {
            counts: v
                .into_iter()
                .map(|c| (c.machine, (c.count, c.example)))
                .collect(),
        }
    }
}

/// The layer's binaries are mostly for another machine than its platform's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the rootfs{platform} is not for {expected}: it holds {found} (e.g. /{example}); \
     build it for the right arch or set platform_check = false"
)]
pub struct PlatformMismatch {
    /// ` of hello:one/arm64v8 (linux/arm64/v8)`, once known.
    pub platform: String,
    /// What the platform needs.
    pub expected: ElfMachine,
    /// The counts, rendered (`"812 x86-64, 3 aarch64"`).
    pub found: String,
    /// A file of the most common machine.
    pub example: String,
}

impl PlatformMismatch {
    /// Names the platform the check was for.
    pub fn for_platform(mut self, label: &str, platform: &str) -> Self {
        self.platform = format!(" of {label} ({platform})");
        self
    }
}

/// Counts the ELF machines in a layer file (compressed or not, told by its magic),
/// for checking layers read back from a registry.
pub fn census_of_layer(path: &std::path::Path) -> std::io::Result<ElfCensus> {
    use std::io::Read;
    let reader = crate::decompress::open(path)?;
    let mut census = ElfCensus::default();
    for entry in tar::Archive::new(reader).entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut head = Vec::with_capacity(ELF_PEEK);
        (&mut entry).take(ELF_PEEK as u64).read_to_end(&mut head)?;
        census.record(path.trim_start_matches("./"), &head);
    }
    Ok(census)
}

impl ElfCensus {
    /// Records one file's first bytes.
    pub fn record(&mut self, path: &str, head: &[u8]) {
        if let Some(m) = ElfMachine::from_header(head) {
            self.counts
                .entry(m)
                .or_insert_with(|| (0, path.to_owned()))
                .0 += 1;
        }
    }

    /// Total ELF files seen.
    pub fn total(&self) -> u64 {
        self.counts.values().map(|(n, _)| n).sum()
    }

    /// Passes when `expected` is (one of) the most common machines, or when there are no
    /// ELF files at all (a data-only or script-only rootfs has nothing to check).
    pub fn check(&self, expected: ElfMachine) -> Result<(), PlatformMismatch> {
        let Some(max) = self.counts.values().map(|(n, _)| *n).max() else {
            return Ok(());
        };
        if self.counts.get(&expected).is_some_and(|(n, _)| *n == max) {
            return Ok(());
        }
        let mut ranked: Vec<_> = self.counts.iter().collect();
        ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        let found = ranked
            .iter()
            .map(|(m, (n, _))| format!("{n} {m}"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(PlatformMismatch {
            platform: String::new(),
            expected,
            found,
            example: ranked[0].1 .1.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Arch;

    fn elf_of(arch: &str) -> Option<ElfMachine> {
        Arch::by_name(arch).map(|a| a.elf)
    }

    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = data;
        h[6] = 1;
        let m = if data == 1 {
            machine.to_le_bytes()
        } else {
            machine.to_be_bytes()
        };
        h[18..20].copy_from_slice(&m);
        h
    }

    #[test]
    fn census_counts_and_checks() {
        let mut c = ElfCensus::default();
        for i in 0..5 {
            c.record(&format!("usr/bin/x{i}"), &header(2, 1, em::X86_64));
        }
        c.record("usr/lib/arm.so", &header(2, 1, em::AARCH64));
        c.record("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n");
        c.record("short", b"\x7fELF");
        assert_eq!(c.total(), 6);
        let amd64 = elf_of("amd64").unwrap();
        let arm64 = elf_of("arm64v8").unwrap();
        c.check(amd64).unwrap();
        let err = c.check(arm64).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not for aarch64"), "{msg}");
        assert!(msg.contains("5 x86-64, 1 aarch64"), "{msg}");
        assert!(msg.contains("/usr/bin/x0"), "{msg}");
    }

    #[test]
    fn empty_census_passes_and_class_matters() {
        let c = ElfCensus::default();
        c.check(elf_of("s390x").unwrap()).unwrap();

        let mut c = ElfCensus::default();
        // 32-bit big-endian MIPS is not mips64le.
        c.record("bin/sh", &header(1, 2, em::MIPS));
        assert!(c.check(elf_of("mips64le").unwrap()).is_err());
        let s390 = header(2, 2, em::S390);
        assert_eq!(ElfMachine::from_header(&s390), elf_of("s390x"));
        assert_eq!(elf_of("s390x").unwrap().to_string(), "s390x");
        assert_eq!(elf_of("riscv64").unwrap().to_string(), "riscv64");
        assert!(elf_of("sparc").is_none());
    }

    #[test]
    fn ties_pass() {
        let mut c = ElfCensus::default();
        c.record("a", &header(2, 1, em::X86_64));
        c.record("b", &header(2, 1, em::AARCH64));
        c.check(elf_of("arm64v8").unwrap()).unwrap();
        c.check(elf_of("amd64").unwrap()).unwrap();
    }
}
