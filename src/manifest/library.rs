//! `[settings] library`: checked here, so that `imgraph library` prints a file
//! docker-library's bashbrew accepts (its maintainer format, an url it can clone).

use std::path::Path;

use super::diagnostic::Diagnostic;
use super::model::LibrarySettings;
use super::raw::{RawLibrary, S};

/// bashbrew's `MaintainersFormat`, for hints.
const MAINTAINER_FORMAT: &str =
    "write \"Full Name <contact-email-or-url> (@github-handle)\" or \"Full Name (@github-handle)\"";

/// The setting as the model holds it, and every problem with it.
pub(super) fn validate(raw: &S<RawLibrary>, root: &Path) -> (LibrarySettings, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let r = raw.get_ref();
    let mut maintainers = Vec::new();
    for m in &r.maintainers {
        match maintainer_problem(m.get_ref()) {
            None => maintainers.push(m.get_ref().clone()),
            Some(problem) => diags.push(
                Diagnostic::at(
                    Some(m.span()),
                    format!("library maintainer {:?} {problem}", m.get_ref()),
                )
                .hint(MAINTAINER_FORMAT),
            ),
        }
    }
    let git_repo = r.git_repo.as_ref().and_then(|url| {
        let u = url.get_ref();
        let problem = if u.is_empty() || u.chars().any(char::is_whitespace) {
            Some("is empty or has whitespace")
        } else if !(u.starts_with("https://") || u.starts_with("http://")) {
            Some("is not an http(s) url")
        } else if u.contains('@') {
            Some("has credentials in it")
        } else {
            None
        };
        match problem {
            None => Some(u.clone()),
            Some(problem) => {
                diags.push(
                    Diagnostic::at(Some(url.span()), format!("library git_repo {u:?} {problem}"))
                        .hint("write the url docker-library clones, e.g. \"https://github.com/acme/hello.git\""),
                );
                None
            }
        }
    });
    let out = r.out.as_ref().map(|o| root.join(o.get_ref()));
    (
        LibrarySettings {
            maintainers,
            git_repo,
            out,
        },
        diags,
    )
}

/// What is wrong with one maintainer, by bashbrew's rule: a name (not starting
/// with a space, without `<>()`), an optional ` <contact>`, then ` (@handle)`.
fn maintainer_problem(m: &str) -> Option<&'static str> {
    let bad = |c: char| c.is_whitespace() || "<>()".contains(c);
    let Some(rest) = m.strip_suffix(')') else {
        return Some("does not end with (@github-handle)");
    };
    let Some((before, handle)) = rest.rsplit_once("(@") else {
        return Some("does not end with (@github-handle)");
    };
    if handle.is_empty() || handle.contains(bad) || handle.contains('@') {
        return Some("has no valid GitHub handle in (@...)");
    }
    let before = before.trim_end();
    if before.len() == rest.len() - handle.len() - 2 {
        return Some("needs a space before (@github-handle)");
    }
    let name = match before.strip_suffix('>') {
        Some(with_contact) => {
            let Some((name, contact)) = with_contact.rsplit_once('<') else {
                return Some("has a > without its <");
            };
            if contact.is_empty() || contact.contains(bad) {
                return Some("has an empty contact or one with spaces in <...>");
            }
            let trimmed = name.trim_end();
            if trimmed.len() == name.len() {
                return Some("needs a space before <contact>");
            }
            trimmed
        }
        None => before,
    };
    if name.is_empty()
        || name.starts_with(char::is_whitespace)
        || name.contains(['<', '>', '(', ')'])
    {
        return Some("has no name, or one with <>() in it");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::maintainer_problem;

    #[test]
    fn maintainers_follow_bashbrews_format() {
        for ok in [
            "Tianon Gravi <admwiggin@gmail.com> (@tianon)",
            "Joseph Ferguson (@yosifkit)",
            "Jane <https://example.com/jane> (@jane-d)",
        ] {
            assert_eq!(maintainer_problem(ok), None, "{ok}");
        }
        for bad in [
            "Jane Doe",
            "Jane Doe <jane@example.com>",
            "Jane Doe(@jane)",
            "Jane Doe <jane@example.com>(@jane)",
            "Jane Doe<jane@example.com> (@jane)",
            "Jane Doe <> (@jane)",
            "(@jane)",
            " Jane (@jane)",
            "Jane (@ja ne)",
            "Jane (Doe) (@jane)",
        ] {
            assert!(maintainer_problem(bad).is_some(), "{bad}");
        }
    }
}
