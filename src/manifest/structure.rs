//! Every structural problem of a manifest at once: unknown keys and values of the
//! wrong type anywhere, not just the first one serde meets.
//!
//! serde stops at the first error. So the text is deserialised, the offending
//! key-value is neutralised in a working copy (an unknown key is blanked out, a
//! wrong-typed value is replaced by an empty value of the expected type), and it is
//! deserialised again, until it passes. Edits only ever overwrite bytes with
//! spaces or a same-length placeholder, so every later error's span is still a
//! span of the text the user wrote. What this yields can then be validated too,
//! with the diagnostics that fall on a neutralised value dropped (an empty
//! placeholder list is not the user's mistake; its wrong type was).

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

use super::diagnostic::did_you_mean;
use super::raw::RawManifest;

/// More problems than this in one file stop the search (each costs a parse).
const MAX_PROBLEMS: usize = 64;

/// The outcome of a lenient deserialisation.
pub(crate) struct Lenient {
    /// The manifest with every structural problem neutralised, when that succeeded.
    pub(crate) raw: Option<RawManifest>,
    /// Every structural problem, in the order found.
    pub(crate) errors: Vec<toml::de::Error>,
    /// The spans that were replaced by placeholders.
    pub(crate) patched: Vec<Range<usize>>,
}

/// Deserialises `text`, collecting every unknown key and wrong type.
pub(crate) fn deserialize_leniently(text: &str) -> Lenient {
    let mut work = text.to_string();
    let mut out = Lenient {
        raw: None,
        errors: Vec::new(),
        patched: Vec::new(),
    };
    let mut blanked_keys: Vec<String> = Vec::new();
    while out.errors.len() < MAX_PROBLEMS {
        let err = match toml::from_str::<RawManifest>(&work) {
            Ok(mut raw) => {
                super::implicit::locate_implicit(&mut raw, &work);
                out.raw = Some(raw);
                return out;
            }
            Err(err) => err,
        };
        let message = err.message().to_string();
        // A required key we neutralised ourselves, or one whose misspelling was
        // just reported with "did you mean", is not news: stop quietly.
        if let Some(field) = missing_field(&message) {
            if blanked_keys
                .iter()
                .any(|k| k == field || did_you_mean(k, [field]).is_some())
            {
                return out;
            }
        }
        let fixed = match (err.span(), ImDocument::parse(work.clone())) {
            (Some(span), Ok(doc)) => neutralise(&doc, &message, &span),
            // A syntax error (or no location): nothing to learn past it.
            _ => None,
        };
        out.errors.push(err);
        let Some(edit) = fixed else {
            return out;
        };
        match edit {
            Edit::Blank { range, key } => {
                blank(&mut work, range);
                blanked_keys.push(key);
            }
            Edit::Replace { range, with } => {
                let padded = format!("{with:width$}", width = range.len());
                work.replace_range(range.clone(), &padded);
                out.patched.push(range);
            }
        }
    }
    out
}

enum Edit {
    /// Remove a whole `key = value` (and a comma that would dangle).
    Blank { range: Range<usize>, key: String },
    /// Put a placeholder of the expected type where a value was.
    Replace { range: Range<usize>, with: String },
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .trim()
        .strip_prefix("missing field `")?
        .split('`')
        .next()
}

/// The empty value of the type serde expected, from its message.
fn placeholder(message: &str) -> Option<&'static str> {
    let expected = message.rsplit_once("expected ")?.1;
    Some(if expected.starts_with("a sequence") {
        "[]"
    } else if expected.starts_with("a string") || expected.contains("string") {
        "\"\""
    } else if expected.starts_with("a boolean") {
        "false"
    } else if expected.starts_with("struct")
        || expected.starts_with("a map")
        || expected.starts_with("a table")
    {
        "{}"
    } else if expected.contains("integer") {
        "0"
    } else {
        return None;
    })
}

/// Finds the key-value the error is about and how to neutralise it.
fn neutralise(doc: &ImDocument<String>, message: &str, span: &Range<usize>) -> Option<Edit> {
    let (key, key_span, value_span) = find_entry(doc.as_table(), span)?;
    let whole = key_span.start..value_span.end;
    let unknown = message.trim().starts_with("unknown field");
    if !unknown {
        if let Some(with) = placeholder(message) {
            // Room for the placeholder: the value, plus blanks before it if needed.
            let mut range = value_span.clone();
            let text = doc.raw();
            while range.len() < with.len() && range.start > key_span.end {
                match text.as_bytes()[range.start - 1] {
                    b' ' | b'\t' => range.start -= 1,
                    _ => break,
                }
            }
            if range.len() >= with.len() {
                return Some(Edit::Replace {
                    range,
                    with: with.to_string(),
                });
            }
        }
    }
    Some(Edit::Blank { range: whole, key })
}

/// The innermost `key = value` whose key or value span contains `span`:
/// (key, key span, value span).
fn find_entry(table: &Table, span: &Range<usize>) -> Option<(String, Range<usize>, Range<usize>)> {
    for (key, item) in table.iter() {
        let Some((k, _)) = table.get_key_value(key) else {
            continue;
        };
        let Some(key_span) = k.span() else { continue };
        // Nested tables first: the innermost entry wins.
        let inner = match item {
            Item::Table(t) => find_entry(t, span),
            Item::Value(Value::InlineTable(t)) => find_inline(t, span),
            Item::ArrayOfTables(a) => a.iter().find_map(|t| find_entry(t, span)),
            _ => None,
        };
        if inner.is_some() {
            return inner;
        }
        let value_span = match item {
            Item::Value(v) => v.span(),
            // `[images.x.rootfs]` as a header table: the key names it.
            Item::Table(t) => t.span(),
            _ => None,
        };
        let Some(value_span) = value_span else {
            continue;
        };
        let hit = |r: &Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
        if hit(&key_span) || hit(&value_span) {
            if matches!(item, Item::Table(_)) {
                // A header table cannot be blanked key-by-key; leave it to serde.
                return None;
            }
            return Some((key.to_string(), key_span, value_span));
        }
    }
    None
}

fn find_inline(
    table: &toml_edit::InlineTable,
    span: &Range<usize>,
) -> Option<(String, Range<usize>, Range<usize>)> {
    for (key, value) in table.iter() {
        let (k, _) = table.get_key_value(key)?;
        let (Some(key_span), Some(value_span)) = (k.span(), value.span()) else {
            continue;
        };
        if let Value::InlineTable(t) = value {
            if let Some(found) = find_inline(t, span) {
                return Some(found);
            }
        }
        let hit = |r: &Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
        if hit(&key_span) || hit(&value_span) {
            return Some((key.to_string(), key_span, value_span));
        }
    }
    None
}

/// Overwrites `range` with spaces (newlines kept), and a comma that would be left
/// dangling in an inline table or array.
fn blank(work: &mut String, range: Range<usize>) {
    // One space per byte (newlines kept): the text keeps its length and offsets.
    let spaces: String = work[range.clone()]
        .chars()
        .flat_map(|c| {
            let (ch, n) = if c == '\n' {
                ('\n', 1)
            } else {
                (' ', c.len_utf8())
            };
            std::iter::repeat_n(ch, n)
        })
        .collect();
    work.replace_range(range.clone(), &spaces);
    let bytes = work.as_bytes();
    let next = (range.end..bytes.len()).find(|&i| !matches!(bytes[i], b' ' | b'\t'));
    let prev = (0..range.start)
        .rev()
        .find(|&i| !matches!(bytes[i], b' ' | b'\t'));
    match (prev.map(|i| bytes[i]), next.map(|i| bytes[i])) {
        (_, Some(b',')) => work.replace_range(next.unwrap()..next.unwrap() + 1, " "),
        (Some(b','), Some(b'}' | b']')) => {
            let p = prev.unwrap();
            work.replace_range(p..p + 1, " ");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        deserialize_leniently(text)
            .errors
            .iter()
            .map(|e| e.message().trim().to_string())
            .collect()
    }

    #[test]
    fn finds_an_unknown_key_and_a_wrong_type_in_different_tables() {
        let text = r#"
[settings]
creatd = "2024-06-01T00:00:00Z"

[images.a]
dists = "b"
arches = ["amd64"]
rootfs = { dir = "x", bogus = 1 }
"#;
        let found = deserialize_leniently(text);
        let msgs: Vec<_> = found
            .errors
            .iter()
            .map(|e| e.message().to_string())
            .collect();
        assert_eq!(found.errors.len(), 3, "{msgs:?}");
        assert!(msgs[0].contains("creatd"), "{msgs:?}");
        assert!(
            msgs.iter().any(|m| m.contains("expected a sequence")),
            "{msgs:?}"
        );
        assert!(msgs.iter().any(|m| m.contains("bogus")), "{msgs:?}");
        assert!(found.raw.is_some(), "the neutralised text deserialises");
        // Spans still point into the original text.
        for e in &found.errors {
            let span = e.span().unwrap();
            assert!(!text[span].trim().is_empty());
        }
    }

    #[test]
    fn a_short_wrong_value_and_a_multi_line_unknown_array() {
        let text = "[settings]\ncreated = 5\n\n[images.a]\ndists = [\"b\"]\narches = 1\ndsts = [\n  \"x\",\n]\nrootfs = { dir = \"x\" }\n";
        let msgs = messages(text);
        assert_eq!(msgs.len(), 3, "{msgs:?}");
    }

    #[test]
    fn syntax_errors_stop_the_search() {
        assert_eq!(messages("[settings\n").len(), 1);
        assert!(messages("").is_empty());
    }
}
