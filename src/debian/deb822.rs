//! Debian control-file syntax (deb822): `Release`/`InRelease`, `Packages`, a
//! `.deb`'s `control` and dpkg's `status` are paragraphs of `Field: value` lines,
//! separated by blank lines, with continuation lines starting with a space or tab
//! (Debian Policy 5.1).
//!
//! Field names are case-insensitive; values keep their continuation lines
//! (joined with `\n`, the leading space removed) so multi-line fields such as a
//! Release file's `SHA256` list can be split by the caller.

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
                out.push(std::mem::take(&mut current));
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
        current
            .fields
            .push((name.to_string(), value.trim().to_string()));
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
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
    fn syntax_errors_name_the_line() {
        assert_eq!(parse(" x\n").unwrap_err().line, 1);
        assert_eq!(parse("A: b\nno colon\n").unwrap_err().line, 2);
    }
}
