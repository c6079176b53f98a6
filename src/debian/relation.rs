//! Package relationship fields (Debian Policy 7.1): `Depends`, `Pre-Depends`,
//! `Provides`, `Conflicts`, `Breaks`. A field is comma-separated groups; a group
//! is `|`-separated alternatives; each is `name[:archqual] [(op version)]`.
//!
//! `[arch ...]` and `<profile ...>` restrictions (only meaningful in source
//! packages) are skipped, so a relation copied from a `.dsc` still parses.
//! The obsolete operators `<` and `>` mean `<=` and `>=`, as dpkg reads them.

use std::fmt;

use super::version::{Version, VersionError};

/// A version comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (also the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (also the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// Its canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

/// `(op version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// The operator.
    pub op: Op,
    /// The version on its right.
    pub version: Version,
}

impl Constraint {
    /// Whether `v` satisfies it.
    pub fn matches(&self, v: &Version) -> bool {
        use std::cmp::Ordering::*;
        let o = v.cmp(&self.version);
        match self.op {
            Op::Lt => o == Less,
            Op::Le => o != Greater,
            Op::Eq => o == Equal,
            Op::Ge => o != Less,
            Op::Gt => o == Greater,
        }
    }
}

/// One alternative: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The package (or virtual package) name.
    pub name: String,
    /// The architecture qualifier after `:` (`any`, `native` or an arch), if any.
    pub arch: Option<String>,
    /// The version constraint, if any.
    pub constraint: Option<Constraint>,
}

/// A field that does not parse; names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationError {
    /// Syntax.
    #[error("{problem} in {text:?}")]
    Syntax {
        /// The relation (or group) that is wrong.
        text: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The version inside `(op version)`.
    #[error(transparent)]
    Version(#[from] VersionError),
}

impl fmt::Display for Relation {
    /// As Debian writes it: `openssl (>= 3.0)`, `perl:any`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch {
            write!(f, ":{a}")?;
        }
        if let Some(c) = &self.constraint {
            write!(f, " ({} {})", c.op.as_str(), c.version)?;
        }
        Ok(())
    }
}

/// Renders a group of alternatives as written: `a | b (>= 1)`.
pub fn display_group(group: &[Relation]) -> String {
    group
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Parses a `Depends`/`Pre-Depends` style field: groups of alternatives.
/// An empty field is no groups.
pub fn parse_groups(field: &str) -> Result<Vec<Vec<Relation>>, RelationError> {
    let mut out = Vec::new();
    for group in field.split(',') {
        if group.trim().is_empty() {
            // dpkg rejects empty groups, but a trailing comma is common enough
            // in hand-written control files that failing on it helps no one.
            continue;
        }
        let alts = group
            .split('|')
            .map(parse_one)
            .collect::<Result<Vec<_>, _>>()?;
        out.push(alts);
    }
    Ok(out)
}

/// Parses a field without alternatives (`Provides`, `Conflicts`, `Breaks`).
pub fn parse_list(field: &str) -> Result<Vec<Relation>, RelationError> {
    parse_groups(field)?
        .into_iter()
        .map(|mut g| {
            if g.len() == 1 {
                Ok(g.remove(0))
            } else {
                Err(RelationError::Syntax {
                    text: display_group(&g),
                    problem: "alternatives (`|`) are not allowed in this field",
                })
            }
        })
        .collect()
}

/// Parses a `Provides` field: like [`parse_list`], and a version may only be
/// given with `=` (Policy 7.5).
pub fn parse_provides(field: &str) -> Result<Vec<Relation>, RelationError> {
    let list = parse_list(field)?;
    for r in &list {
        if r.constraint.as_ref().is_some_and(|c| c.op != Op::Eq) {
            return Err(RelationError::Syntax {
                text: r.to_string(),
                problem: "a provided version must use `=`",
            });
        }
    }
    Ok(list)
}

/// Removes `[...]` and `<...>` restrictions.
fn strip_restrictions(text: &str) -> Result<String, RelationError> {
    let mut out = String::with_capacity(text.len());
    let mut close = None;
    // Inside `( )`, `<` and `>` are operators, not a profile.
    let mut in_parens = false;
    for c in text.chars() {
        match (close, c) {
            (None, '[') if !in_parens => close = Some(']'),
            (None, '<') if !in_parens => close = Some('>'),
            (Some(end), c) if c == end => close = None,
            (Some(_), _) => {}
            (None, c) => {
                match c {
                    '(' => in_parens = true,
                    ')' => in_parens = false,
                    _ => {}
                }
                out.push(c)
            }
        }
    }
    if close.is_some() {
        return Err(RelationError::Syntax {
            text: text.trim().to_string(),
            problem: "unclosed `[` or `<` restriction",
        });
    }
    Ok(out)
}

fn parse_one(text: &str) -> Result<Relation, RelationError> {
    let syntax = |problem| RelationError::Syntax {
        text: text.trim().to_string(),
        problem,
    };
    let cleaned = strip_restrictions(text)?;
    let s = cleaned.trim();
    let (head, constraint) = match s.find('(') {
        Some(open) => {
            let rest = &s[open + 1..];
            let close = rest.find(')').ok_or_else(|| syntax("missing `)`"))?;
            if !rest[close + 1..].trim().is_empty() {
                return Err(syntax("text after the version constraint"));
            }
            let inner = rest[..close].trim();
            let op_len = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(inner.len());
            let op = match &inner[..op_len] {
                "<<" => Op::Lt,
                "<=" | "<" => Op::Le,
                "=" => Op::Eq,
                ">=" | ">" => Op::Ge,
                ">>" => Op::Gt,
                "" => return Err(syntax("missing operator in the version constraint")),
                _ => return Err(syntax("unknown operator in the version constraint")),
            };
            let version: Version = inner[op_len..].trim().parse()?;
            (s[..open].trim(), Some(Constraint { op, version }))
        }
        None => (s, None),
    };
    if head.is_empty() {
        return Err(syntax("missing package name"));
    }
    let (name, arch) = match head.split_once(':') {
        Some((n, a)) => (n, Some(a.to_string())),
        None => (head, None),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    };
    if !valid(name) {
        return Err(syntax("bad package name"));
    }
    if arch.as_deref().is_some_and(|a| !valid(a)) {
        return Err(syntax("bad architecture qualifier"));
    }
    Ok(Relation {
        name: name.to_string(),
        arch,
        constraint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_alternatives_and_constraints() {
        let g = parse_groups(
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, perl:any,\n libfoo (<<2~)",
        )
        .unwrap();
        assert_eq!(g.len(), 4);
        assert_eq!(g[0][0].to_string(), "libc6 (>= 2.34)");
        assert_eq!(display_group(&g[1]), "debconf (>= 0.5) | debconf-2.0");
        assert_eq!(g[2][0].name, "perl");
        assert_eq!(g[2][0].arch.as_deref(), Some("any"));
        assert_eq!(g[3][0].to_string(), "libfoo (<< 2~)");
        assert!(parse_groups("").unwrap().is_empty());
    }

    #[test]
    fn obsolete_operators_and_matching() {
        let r = &parse_list("a (< 2), b (> 2), c (= 1:2)").unwrap();
        assert_eq!(r[0].constraint.as_ref().unwrap().op, Op::Le);
        assert_eq!(r[1].constraint.as_ref().unwrap().op, Op::Ge);
        let c = r[2].constraint.as_ref().unwrap();
        // `2.0` is newer than `2` (the `.` outranks the end); `02` equals `2`.
        assert!(c.matches(&"1:02".parse().unwrap()));
        assert!(!c.matches(&"1:2.0".parse().unwrap()));
        assert!(!c.matches(&"2".parse().unwrap()));
    }

    #[test]
    fn restrictions_are_skipped() {
        let g = parse_groups("a [amd64 !i386] <!nocheck> | b (>= 1) [linux-any] <stage1 cross>")
            .unwrap();
        assert_eq!(display_group(&g[0]), "a | b (>= 1)");
    }

    #[test]
    fn provides_and_errors() {
        let p = parse_provides("mail-transport-agent, libfoo (= 1.2)").unwrap();
        assert_eq!(p[1].to_string(), "libfoo (= 1.2)");
        assert!(parse_provides("x (>= 1)").is_err());
        assert!(parse_list("a | b").is_err());
        for bad in ["a (>= 1", "a (~ 1)", "(>= 1)", "a b", "a (>= )", "a [amd64"] {
            assert!(parse_groups(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
