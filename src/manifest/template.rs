//! `{dist}`-style templates, resolved per platform when the manifest is loaded so
//! that a variable with no value (`{debian_arch}` on arm32v6) is a load error, not a
//! surprise half-way through a build.

use std::collections::BTreeMap;

use super::arch::ARCH_VARIABLES;

/// Every variable a template may name: the image's, the arch table's
/// ([`ARCH_VARIABLES`]) and a command's `{out}`.
pub fn variables() -> impl Iterator<Item = &'static str> {
    ["image", "dist"]
        .into_iter()
        .chain(ARCH_VARIABLES.iter().copied())
        .chain(["out"])
}

/// Values for one platform (or one dist, for tags); `None` means "known, but no value here".
pub type Vars<'a> = BTreeMap<&'static str, Option<String>>;

/// Why a template could not be resolved; offsets are byte offsets in the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{nmae}`.
    #[error("unknown template variable {{{name}}}")]
    Unknown {
        /// The name as written.
        name: String,
        /// Where it starts.
        offset: usize,
    },
    /// A known variable that this platform has no value for.
    #[error("template variable {{{name}}} has no value for {context}")]
    NoValue {
        /// The variable.
        name: String,
        /// The platform or dist it was resolved for.
        context: String,
        /// Where it starts.
        offset: usize,
    },
    /// `{dist` with no `}`.
    #[error("unclosed `{{` in template")]
    Unclosed {
        /// Where the brace is.
        offset: usize,
    },
}

impl TemplateError {
    /// Byte offset in the template.
    pub fn offset(&self) -> usize {
        match self {
            TemplateError::Unknown { offset, .. }
            | TemplateError::NoValue { offset, .. }
            | TemplateError::Unclosed { offset } => *offset,
        }
    }
}

/// Substitutes `{name}` variables; `{{` and `}}` stand for literal braces.
pub fn render(template: &str, vars: &Vars<'_>, context: &str) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut pos = 0;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let brace = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        if after.as_bytes().first() == Some(&brace) {
            out.push(brace as char);
            rest = &after[1..];
            pos += i + 2;
            continue;
        }
        if brace == b'}' {
            out.push('}');
            rest = after;
            pos += i + 1;
            continue;
        }
        let end = after
            .find('}')
            .ok_or(TemplateError::Unclosed { offset: pos + i })?;
        let name = &after[..end];
        match vars.get(name) {
            Some(Some(value)) => out.push_str(value),
            Some(None) => {
                return Err(TemplateError::NoValue {
                    name: name.to_string(),
                    context: context.to_string(),
                    offset: pos + i,
                })
            }
            None => {
                return Err(TemplateError::Unknown {
                    name: name.to_string(),
                    offset: pos + i,
                })
            }
        }
        rest = &after[end + 1..];
        pos += i + end + 2;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars<'static> {
        let mut v = Vars::new();
        v.insert("dist", Some("bookworm".into()));
        v.insert("debian_arch", None);
        v
    }

    #[test]
    fn substitutes_and_escapes() {
        assert_eq!(
            render("rootfs/{dist}/{{x}}", &vars(), "p").unwrap(),
            "rootfs/bookworm/{x}"
        );
    }

    #[test]
    fn reports_unknown_and_missing_values_with_offsets() {
        assert_eq!(
            render("a/{dsit}", &vars(), "p"),
            Err(TemplateError::Unknown {
                name: "dsit".into(),
                offset: 2
            })
        );
        let err = render("x{debian_arch}", &vars(), "hello:one/arm32v6").unwrap_err();
        assert_eq!(err.offset(), 1);
        assert!(err.to_string().contains("no value for hello:one/arm32v6"));
        assert!(matches!(
            render("{dist", &vars(), "p"),
            Err(TemplateError::Unclosed { offset: 0 })
        ));
    }
}
