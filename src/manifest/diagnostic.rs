//! Errors in `images.toml` that point at the text: file, line, column, a caret
//! snippet and a hint, rendered the way rustc and cargo do.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// One problem found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, in one line.
    pub message: String,
    /// Byte range in the manifest text, where the problem has one.
    pub span: Option<Range<usize>>,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem at a place in the text.
    pub fn at(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// Adds the "how to fix it" line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The manifest's text and name, kept so every diagnostic can quote its line.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user named it.
    pub path: PathBuf,
    /// The whole text.
    pub text: Arc<str>,
}

impl SourceFile {
    /// The largest char boundary at or before `offset`: spans computed from decoded
    /// strings (escapes, multi-byte characters) must never split a character.
    fn floor(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.floor(offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    /// `images.toml:7:13`, or just the file where there is no span.
    pub fn location(&self, span: Option<&Range<usize>>) -> String {
        match span {
            Some(span) => {
                let (line, col) = self.line_col(span.start);
                format!("{}:{line}:{col}", self.path.display())
            }
            None => self.path.display().to_string(),
        }
    }

    /// Renders a diagnostic with a caret snippet under the offending text.
    pub fn render(&self, diag: &Diagnostic) -> String {
        // The gutter is as wide as the line number, as rustc draws it.
        let width = diag
            .span
            .as_ref()
            .map_or(1, |s| self.line_col(s.start).0.to_string().len());
        let mut out = format!(
            "{}\n{}--> {}",
            diag.message,
            " ".repeat(width),
            self.location(diag.span.as_ref())
        );
        if let Some(span) = &diag.span {
            let span = self.floor(span.start)..self.floor(span.end);
            let (line, col) = self.line_col(span.start);
            let line_text = self.text.lines().nth(line - 1).unwrap_or("");
            let width = line.to_string().len();
            let first_line_end = self.text[span.start..]
                .find('\n')
                .map_or(self.text.len(), |i| span.start + i);
            let carets = self.text[span.start..span.end.min(first_line_end).max(span.start)]
                .chars()
                .count()
                .max(1);
            out.push_str(&format!(
                "\n{pad} |\n{line} | {line_text}\n{pad} | {space}{carets}",
                pad = " ".repeat(width),
                space = " ".repeat(col - 1),
                carets = "^".repeat(carets),
            ));
        }
        if let Some(hint) = &diag.hint {
            out.push_str(&format!("\n{} = help: {hint}", " ".repeat(width)));
        }
        out
    }
}

/// Every problem found in one manifest, reported together.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    /// The manifest they are about.
    pub source: SourceFile,
    /// In the order they were found.
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diag) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\nerror: ")?;
            }
            f.write_str(&self.source.render(diag))?;
        }
        Ok(())
    }
}

/// The closest candidate within a small edit distance, for "did you mean" hints.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and
/// swaps of neighbours (`amd46` is one edit from `amd64`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_transpositions_and_typos() {
        assert_eq!(did_you_mean("amd46", ["amd64", "arm64v8"]), Some("amd64"));
        assert_eq!(did_you_mean("dsts", ["dists", "arches"]), Some("dists"));
        assert_eq!(did_you_mean("zzzzzz", ["dists", "arches"]), None);
    }

    #[test]
    fn renders_line_column_and_carets() {
        let src = SourceFile {
            path: "images.toml".into(),
            text: "[images.a]\narches = [\"amd46\"]\n".into(),
        };
        let start = src.text.find("\"amd46\"").unwrap();
        let diag = Diagnostic::at(Some(start..start + 7), "unknown arch \"amd46\"")
            .hint("did you mean \"amd64\"?");
        let text = src.render(&diag);
        assert!(text.contains("images.toml:2:11"), "{text}");
        assert!(text.contains("^^^^^^^"), "{text}");
        assert!(text.contains("help: did you mean"), "{text}");
    }
}
