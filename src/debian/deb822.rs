//! Debian control-file syntax (deb822): `Release`/`InRelease`, `Packages`, a
//! `.deb`'s `control` and dpkg's `status` are paragraphs of `Field: value` lines,
//! separated by blank lines, with continuation lines starting with a space or tab
//! (Debian Policy 5.1).
//!
//! Field names are case-insensitive; values keep their continuation lines
//! (joined with `\n`, the leading space removed) so multi-line fields such as a
//! Release file's `SHA256` list can be split by the caller. Blanks are trimmed
//! as dpkg trims them (lib/dpkg/parse.c): before the value and at the end of the
//! whole value, not at the end of each line — a multi-line `Description` whose
//! first line ends in a space keeps it, and `status` is written back byte for byte.

use std::fmt;

/// One paragraph: fields in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

/// A line that is neither a field, a continuation nor blank.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct SyntaxError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl Paragraph {
    /// The value of `name` (case-insensitive), first line and continuations.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every field, in file order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Adds a field (for writing `status`-style files).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Whether it has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl fmt::Display for Paragraph {
    /// As dpkg writes it: continuation lines indented by one space, an empty
    /// continuation line as ` .`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.fields {
            let mut lines = v.split('\n');
            let first = lines.next().unwrap_or("");
            if first.is_empty() {
                write!(f, "{k}:")?;
            } else {
                write!(f, "{k}: {first}")?;
            }
            for l in lines {
                if l.is_empty() {
                    write!(f, "\n .")?;
                } else {
                    write!(f, "\n {l}")?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Parses every paragraph of `text`. Comment lines (`#`) are skipped, as dpkg does
/// in control files.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, SyntaxError> {
    let mut out = Vec::new();
    let mut current = Paragraph::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(finish(std::mem::take(&mut current)));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, value)) = current.fields.last_mut() else {
                return Err(SyntaxError {
                    line: i + 1,
                    problem: "a continuation line before any field".into(),
                });
            };
            let rest = &line[1..];
            value.push('\n');
            // ` .` stands for an empty line inside a multi-line value.
            value.push_str(if rest == "." { "" } else { rest });
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(SyntaxError {
                line: i + 1,
                problem: format!("expected `Field: value`, found {line:?}"),
            });
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(SyntaxError {
                line: i + 1,
                problem: format!("bad field name {name:?}"),
            });
        }
        trim_last_value(&mut current);
        current
            .fields
            .push((name.to_string(), value.trim_start().to_string()));
    }
    if !current.is_empty() {
        out.push(finish(current));
    }
    Ok(out)
}

/// The paragraph with its last value's trailing blanks removed.
fn finish(mut p: Paragraph) -> Paragraph {
    trim_last_value(&mut p);
    p
}

/// A value ends where the next field (or the paragraph) starts: dpkg trims the
/// blanks at its end then, and only there.
fn trim_last_value(p: &mut Paragraph) {
    if let Some((_, v)) = p.fields.last_mut() {
        let keep = v.trim_end_matches([' ', '\t']).len();
        v.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_fields_and_continuations() {
        let text = "Package: a\nVersion: 1.0\nDescription: short\n long line\n .\n more\n\n\nPackage: b\nsha256: X\n";
        let ps = parse(text).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("package"), Some("a"));
        assert_eq!(ps[0].get("Description"), Some("short\nlong line\n\nmore"));
        assert_eq!(ps[1].get("SHA256"), Some("X"));
        assert_eq!(ps[1].get("Version"), None);
        // Written back as dpkg writes it.
        assert_eq!(
            ps[0].to_string(),
            "Package: a\nVersion: 1.0\nDescription: short\n long line\n .\n more\n"
        );
    }

    #[test]
    fn release_style_multiline_lists() {
        let text = "Origin: Debian\nSHA256:\n 0123 10 main/binary-amd64/Packages\n 4567 20 main/binary-amd64/Packages.xz\n";
        let p = &parse(text).unwrap()[0];
        let lines: Vec<&str> = p.get("SHA256").unwrap().lines().skip(1).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(p.to_string(), text);
    }

    #[test]
    fn blanks_are_trimmed_where_dpkg_trims_them() {
        // A first line ending in a space (bookworm's libgcrypt20 and libsemanage2
        // Descriptions) keeps it; the end of each value loses its blanks.
        let text = "Package: a \nDescription: short \n long  \n last \t\nX:  v\t\n";
        let p = &parse(text).unwrap()[0];
        assert_eq!(p.get("Package"), Some("a"));
        assert_eq!(p.get("Description"), Some("short \nlong  \nlast"));
        assert_eq!(p.get("X"), Some("v"));
        assert_eq!(
            p.to_string(),
            "Package: a\nDescription: short \n long  \n last\nX: v\n"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        assert_eq!(parse(" x\n").unwrap_err().line, 1);
        assert_eq!(parse("A: b\nno colon\n").unwrap_err().line, 2);
    }
}
