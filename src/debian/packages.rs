//! Binary package records of a `Packages` index: what the resolver needs to
//! choose a package and what the lock needs to pin it (pool path, size, sha256).

use super::deb822::{self, Paragraph};
use super::relation::{self, Relation, RelationError};
use super::version::{Version, VersionError};

/// `Multi-Arch` (absent means `no`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MultiArch {
    /// Not co-installable, satisfies only dependencies of its own arch.
    #[default]
    No,
    /// Co-installable with itself for other arches.
    Same,
    /// Satisfies dependencies of any arch.
    Foreign,
    /// Satisfies `name:any` dependencies.
    Allowed,
}

impl MultiArch {
    /// Its spelling in a control file.
    pub fn as_str(self) -> &'static str {
        match self {
            MultiArch::No => "no",
            MultiArch::Same => "same",
            MultiArch::Foreign => "foreign",
            MultiArch::Allowed => "allowed",
        }
    }
}

/// One package of a `Packages` index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRecord {
    /// `Package`.
    pub name: String,
    /// `Version`.
    pub version: Version,
    /// `Architecture` (a Debian arch such as `arm64`, or `all`).
    pub architecture: String,
    /// `Multi-Arch`.
    pub multi_arch: MultiArch,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority` (`required`, `important`, `standard`, `optional`, `extra`), if given.
    pub priority: Option<String>,
    /// `Depends`: groups of alternatives.
    pub depends: Vec<Vec<Relation>>,
    /// `Pre-Depends`: groups of alternatives.
    pub pre_depends: Vec<Vec<Relation>>,
    /// `Provides` (versions only with `=`).
    pub provides: Vec<Relation>,
    /// `Conflicts`.
    pub conflicts: Vec<Relation>,
    /// `Breaks`.
    pub breaks: Vec<Relation>,
    /// The source package's name: `Source: name [(version)]`, else the package's own.
    pub source: String,
    /// The source package's version: the one in `Source:`'s parentheses
    /// (a binNMU), else the package's own.
    pub source_version: Version,
    /// `Filename`: the path in the pool, relative to the mirror root.
    pub filename: String,
    /// `Size` of the `.deb` in bytes.
    pub size: u64,
    /// `SHA256` of the `.deb`, lowercase hex.
    pub sha256: String,
}

/// A record that cannot be used; names the package (or its position) and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("package {package}: field {field}: {problem}")]
pub struct PackageError {
    /// The `Package` name, or `#N` (1-based paragraph number) when it has none.
    pub package: String,
    /// The field that is missing or wrong.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// A whole index that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackagesError {
    /// Not deb822 at all.
    #[error("not a Packages index: {0}")]
    Syntax(#[from] deb822::SyntaxError),
    /// A record in it.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// Beyond what a pre-parsed index can address (4 GiB of fields).
    #[error("too large to pre-parse (over 4 GiB of fields)")]
    TooLarge,
}

impl PackageRecord {
    /// Reads one paragraph of a `Packages` index. `Package`, `Version`,
    /// `Architecture`, `Filename`, `Size` and `SHA256` are required (a record
    /// without them cannot be pinned); relationship fields default to empty.
    pub fn from_paragraph(p: &Paragraph) -> Result<PackageRecord, PackageError> {
        let name = p.get("Package").map(str::trim).unwrap_or("");
        let err = |field, problem: String| PackageError {
            package: name.to_string(),
            field,
            problem,
        };
        if name.is_empty() {
            return Err(err("Package", "missing".into()));
        }
        let required = |field: &'static str| {
            p.get(field)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| err(field, "missing".into()))
        };
        let version: Version = required("Version")?
            .parse()
            .map_err(|e: VersionError| err("Version", e.to_string()))?;
        let architecture = required("Architecture")?.to_string();
        let multi_arch = match p.get("Multi-Arch").map(str::trim) {
            None | Some("no") => MultiArch::No,
            Some("same") => MultiArch::Same,
            Some("foreign") => MultiArch::Foreign,
            Some("allowed") => MultiArch::Allowed,
            Some(other) => {
                return Err(err(
                    "Multi-Arch",
                    format!("{other:?} is not one of no, same, foreign, allowed"),
                ))
            }
        };
        let essential = match p.get("Essential").map(str::trim) {
            None | Some("no") => false,
            Some("yes") => true,
            Some(other) => return Err(err("Essential", format!("{other:?} is not yes or no"))),
        };
        let rel = |field: &'static str, e: RelationError| err(field, e.to_string());
        let groups = |field: &'static str| {
            relation::parse_groups(p.get(field).unwrap_or("")).map_err(|e| rel(field, e))
        };
        let list = |field: &'static str| {
            relation::parse_list(p.get(field).unwrap_or("")).map_err(|e| rel(field, e))
        };
        let provides = relation::parse_provides(p.get("Provides").unwrap_or(""))
            .map_err(|e| rel("Provides", e))?;
        let (source, source_version) = match p.get("Source").map(str::trim) {
            None | Some("") => (name.to_string(), version.clone()),
            Some(s) => match s.split_once('(') {
                Some((n, v)) => {
                    let v = v
                        .strip_suffix(')')
                        .ok_or_else(|| err("Source", format!("{s:?}: missing `)`")))?;
                    let v = v
                        .parse()
                        .map_err(|e: VersionError| err("Source", e.to_string()))?;
                    (n.trim().to_string(), v)
                }
                None => (s.to_string(), version.clone()),
            },
        };
        let filename = required("Filename")?.to_string();
        let size = required("Size")?
            .parse::<u64>()
            .map_err(|e| err("Size", e.to_string()))?;
        let sha256 = required("SHA256")?.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("SHA256", format!("{sha256:?} is not 64 hex digits")));
        }
        Ok(PackageRecord {
            name: name.to_string(),
            version,
            architecture,
            multi_arch,
            essential,
            priority: p.get("Priority").map(|s| s.trim().to_string()),
            depends: groups("Depends")?,
            pre_depends: groups("Pre-Depends")?,
            provides,
            conflicts: list("Conflicts")?,
            breaks: list("Breaks")?,
            source,
            source_version,
            filename,
            size,
            sha256,
        })
    }
}

/// Parses a whole (decompressed) `Packages` index.
pub fn parse_index(text: &str) -> Result<Vec<PackageRecord>, PackagesError> {
    deb822::parse(text)?
        .iter()
        .enumerate()
        .map(|(i, p)| {
            PackageRecord::from_paragraph(p).map_err(|mut e| {
                if e.package.is_empty() {
                    e.package = format!("#{}", i + 1);
                }
                e.into()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn record(extra: &str) -> Result<PackageRecord, PackagesError> {
        let text = format!(
            "Package: libfoo1\nVersion: 1.2-3\nArchitecture: amd64\n{extra}Filename: pool/main/f/foo/libfoo1_1.2-3_amd64.deb\nSize: 1234\nSHA256: {HASH}\n"
        );
        parse_index(&text).map(|mut v| v.remove(0))
    }

    #[test]
    fn fields_and_defaults() {
        let r = record("").unwrap();
        assert_eq!(r.name, "libfoo1");
        assert_eq!(r.version.to_string(), "1.2-3");
        assert_eq!(r.multi_arch, MultiArch::No);
        assert!(!r.essential);
        assert_eq!(r.priority, None);
        assert!(r.depends.is_empty() && r.provides.is_empty());
        assert_eq!(
            (r.source.as_str(), r.source_version.to_string()),
            ("libfoo1", "1.2-3".into())
        );
        assert_eq!((r.size, r.sha256.as_str()), (1234, HASH));

        let r = record("Multi-Arch: same\nEssential: yes\nPriority: required\nSource: foo\nPre-Depends: libc6 (>= 2.34)\nDepends: a | b, c:any\nProvides: libfoo (= 1.2)\nConflicts: old\nBreaks: x (<< 2)\n").unwrap();
        assert_eq!(r.multi_arch, MultiArch::Same);
        assert!(r.essential);
        assert_eq!(r.priority.as_deref(), Some("required"));
        assert_eq!(
            (r.source.as_str(), r.source_version.to_string()),
            ("foo", "1.2-3".into())
        );
        assert_eq!(r.pre_depends.len(), 1);
        assert_eq!(r.depends[0].len(), 2);
        assert_eq!(r.provides[0].to_string(), "libfoo (= 1.2)");
        assert_eq!(r.conflicts[0].name, "old");
        assert_eq!(r.breaks[0].to_string(), "x (<< 2)");

        // A binNMU: the source version differs from the binary's.
        let r = record("Source: foo (1.2-3)\n").unwrap();
        assert_eq!(
            (r.source.as_str(), r.source_version.to_string()),
            ("foo", "1.2-3".into())
        );
    }

    #[test]
    fn errors_name_package_and_field() {
        let e = record("Depends: a (>= \n").unwrap_err().to_string();
        assert!(e.contains("libfoo1") && e.contains("Depends"), "{e}");
        let e = record("Multi-Arch: sometimes\n").unwrap_err().to_string();
        assert!(e.contains("libfoo1") && e.contains("Multi-Arch"), "{e}");
        let e = parse_index("Package: x\nArchitecture: all\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("package x: field Version: missing"), "{e}");
        let e = parse_index("Version: 1\n").unwrap_err().to_string();
        assert!(e.contains("package #1: field Package"), "{e}");
    }
}
