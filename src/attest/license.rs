//! Licenses as SPDX license expressions, from a package's machine-readable
//! (DEP-5) `/usr/share/doc/<pkg>/copyright` or an apk database's `L:` field.
//!
//! Debian's short names mostly map onto SPDX ids (`GPL-2+` is
//! `GPL-2.0-or-later`, `Expat` is `MIT`); any other name becomes a
//! `LicenseRef-` whose text (the copyright file's standalone License paragraph)
//! goes into the document, as SPDX requires for every `LicenseRef-` it uses.

use std::collections::BTreeMap;

use crate::debian::deb822;

/// A declared license and the non-SPDX licenses it refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// An SPDX license expression.
    pub expression: String,
    /// `LicenseRef-...` id -> the license text (or where to find it).
    pub refs: BTreeMap<String, String>,
}

/// The copyright-format 1.0 URL (http or https, with or without the trailing `/`).
const DEP5: &str = "www.debian.org/doc/packaging-manuals/copyright-format/1.0";

/// The licenses a DEP-5 copyright file declares, or `None` when it is not
/// machine-readable (then the SBOM says NOASSERTION).
pub fn dep5(text: &str, pkg: &str) -> Option<Declared> {
    let paragraphs = deb822::parse(text).ok()?;
    let header = paragraphs.first()?;
    if !header.get("Format").is_some_and(|f| f.contains(DEP5)) {
        return None;
    }
    // Standalone `License:` paragraphs hold the texts Files paragraphs name.
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for p in paragraphs
        .iter()
        .skip(1)
        .filter(|p| p.get("Files").is_none())
    {
        if let Some(l) = p.get("License") {
            let (name, body) = l.split_once('\n').unwrap_or((l, ""));
            texts.insert(name.trim().to_string(), body.to_string());
        }
    }
    let fallback = format!("See /usr/share/doc/{pkg}/copyright in the image.");
    let mut declared = Declared::default();
    let mut parts: Vec<String> = Vec::new();
    for p in paragraphs.iter().filter(|p| p.get("Files").is_some()) {
        let Some(l) = p.get("License") else { continue };
        let (name, body) = l.split_once('\n').unwrap_or((l, ""));
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let text = texts
            .get(name)
            .cloned()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| (!body.trim().is_empty()).then(|| body.to_string()))
            .unwrap_or_else(|| fallback.clone());
        let expr = expression(name, &text, &mut declared.refs);
        if !parts.contains(&expr) {
            parts.push(expr);
        }
    }
    if parts.is_empty() {
        return None;
    }
    parts.sort();
    declared.expression = join_and(&parts);
    Some(declared)
}

/// An apk database's `L:` value as an SPDX expression.
pub fn apk(value: &str, pkg: &str) -> Declared {
    let mut declared = Declared::default();
    let text = format!("License {value:?} of the apk package {pkg}.");
    declared.expression = expression(value, &text, &mut declared.refs);
    declared
}

fn join_and(parts: &[String]) -> String {
    if parts.len() == 1 {
        return parts[0].clone();
    }
    parts
        .iter()
        .map(|p| {
            if p.contains(' ') {
                format!("({p})")
            } else {
                p.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// One `License:` name (`GPL-2+ or Artistic`) as an SPDX expression. A name
/// this cannot read becomes one `LicenseRef-`.
///
/// DEP-5: `and` binds tighter than `or` (as in SPDX), and a comma binds
/// loosest: `GPL-1+ or Artistic, and BSD-3-clause` is
/// `(GPL-1.0-or-later OR Artistic-1.0) AND BSD-3-Clause`.
fn expression(name: &str, text: &str, refs: &mut BTreeMap<String, String>) -> String {
    let paren = |e: String| if e.contains(' ') { format!("({e})") } else { e };
    let mut acc: Option<String> = None;
    for segment in name.split(',') {
        let tokens: Vec<&str> = segment.split_whitespace().collect();
        let (op, rest) = match tokens.first().map(|t| t.to_ascii_lowercase()) {
            Some(t) if t == "and" => (Some("AND"), &tokens[1..]),
            Some(t) if t == "or" => (Some("OR"), &tokens[1..]),
            _ => (None, &tokens[..]),
        };
        let Some(e) = simple(rest, text, refs) else {
            return license_ref(name, text, refs);
        };
        acc = match (acc, op) {
            (None, None) => Some(e),
            (Some(a), Some(op)) => Some(format!("{} {op} {}", paren(a), paren(e))),
            _ => return license_ref(name, text, refs),
        };
    }
    acc.unwrap_or_else(|| license_ref(name, text, refs))
}

/// `id (and|or id)*` as SPDX, or `None` for anything else (`with`, parentheses).
fn simple(tokens: &[&str], text: &str, refs: &mut BTreeMap<String, String>) -> Option<String> {
    if tokens.is_empty() || tokens.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let op = match t.to_ascii_lowercase().as_str() {
            "and" => Some("AND"),
            "or" => Some("OR"),
            _ => None,
        };
        if (i % 2 == 1) != op.is_some() || t.contains(['(', ')']) {
            return None;
        }
        out.push(match op {
            Some(op) => op.to_string(),
            None => spdx_id(t).unwrap_or_else(|| license_ref(t, text, refs)),
        });
    }
    Some(out.join(" "))
}

/// `name` in the characters SPDX allows in an `SPDXRef-` or `LicenseRef-` id
/// (letters, digits, `.` and `-`): everything else becomes `-`.
pub(super) fn idstring(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn license_ref(name: &str, text: &str, refs: &mut BTreeMap<String, String>) -> String {
    let id = format!("LicenseRef-{}", idstring(name.trim()));
    refs.entry(id.clone()).or_insert_with(|| text.to_string());
    id
}

/// SPDX ids Debian (and Alpine) write as they are.
const SAME: &[&str] = &[
    "Apache-1.0",
    "Apache-1.1",
    "Apache-2.0",
    "Artistic-1.0",
    "Artistic-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-4-Clause",
    "BSL-1.0",
    "CC0-1.0",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "curl",
    "FSFAP",
    "FSFUL",
    "FSFULLR",
    "ISC",
    "MIT",
    "MPL-1.1",
    "MPL-2.0",
    "OpenSSL",
    "PSF-2.0",
    "Python-2.0",
    "Unicode-DFS-2016",
    "X11",
    "Zlib",
    "0BSD",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
];

/// The SPDX id of a Debian license short name, when there is one.
fn spdx_id(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let renamed = match lower.as_str() {
        "expat" => Some("MIT"),
        "zlib" => Some("Zlib"),
        "artistic" => Some("Artistic-1.0"),
        "bsd-2-clause" => Some("BSD-2-Clause"),
        "bsd-3-clause" => Some("BSD-3-Clause"),
        "bsd-4-clause" => Some("BSD-4-Clause"),
        "psf-2" => Some("PSF-2.0"),
        "apache-2" => Some("Apache-2.0"),
        "mpl-2" => Some("MPL-2.0"),
        _ => None,
    };
    if let Some(r) = renamed {
        return Some(r.to_string());
    }
    if let Some(same) = SAME.iter().find(|s| s.eq_ignore_ascii_case(name)) {
        return Some((*same).to_string());
    }
    // GNU family: GPL-2, GPL-2+, LGPL-2.1+, GFDL-1.3, AGPL-3+.
    let (family, version) = name.split_once('-')?;
    let family = ["GPL", "LGPL", "AGPL", "GFDL"]
        .into_iter()
        .find(|f| f.eq_ignore_ascii_case(family))?;
    let (version, later) = match version.strip_suffix('+') {
        Some(v) => (v, true),
        None => (version, false),
    };
    let known = match family {
        "GPL" => ["1.0", "2.0", "3.0"].as_slice(),
        "LGPL" => ["2.0", "2.1", "3.0"].as_slice(),
        "AGPL" => ["1.0", "3.0"].as_slice(),
        _ => ["1.1", "1.2", "1.3"].as_slice(),
    };
    let version = if version.contains('.') {
        version.to_string()
    } else {
        format!("{version}.0")
    };
    known.contains(&version.as_str()).then(|| {
        format!(
            "{family}-{version}-{}",
            if later { "or-later" } else { "only" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_names_become_spdx_expressions() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: me\nLicense: GPL-2+ or Artistic\n\nFiles: lib/*\nCopyright: me\nLicense: Expat\n\nFiles: odd/*\nCopyright: me\nLicense: public-domain\n\nLicense: public-domain\n The text.\n";
        let d = dep5(text, "p").unwrap();
        assert_eq!(
            d.expression,
            "(GPL-2.0-or-later OR Artistic-1.0) AND LicenseRef-public-domain AND MIT"
        );
        assert_eq!(d.refs["LicenseRef-public-domain"], "The text.");
    }

    #[test]
    fn free_form_copyright_is_no_assertion() {
        assert_eq!(dep5("This package was debianized by me.\n", "p"), None);
    }

    #[test]
    fn odd_names_are_one_license_ref() {
        let mut refs = BTreeMap::new();
        assert_eq!(
            expression("GPL-2+ with OpenSSL exception", "t", &mut refs),
            "LicenseRef-GPL-2--with-OpenSSL-exception"
        );
        assert_eq!(expression("LGPL-2.1+", "t", &mut refs), "LGPL-2.1-or-later");
        assert_eq!(
            expression("GPL-1+ or Artistic, and BSD-3-clause", "t", &mut refs),
            "(GPL-1.0-or-later OR Artistic-1.0) AND BSD-3-Clause"
        );
    }
}
