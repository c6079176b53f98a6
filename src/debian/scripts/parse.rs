//! A maintainer script as a syntax tree, from brush's POSIX/bash parser (not
//! regexes: quoting, here-documents, `case` patterns and functions are read as
//! the shell reads them), and the debhelper blocks it contains.

use brush_parser::ast::Program;
use brush_parser::{Parser, ParserOptions};

/// A script that does not parse as shell. Reported as one command not
/// reproduced (line 1), never ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxError(pub(super) String);

/// The options dpkg's `/bin/sh` (dash) implies: POSIX words, no extended globs.
pub(super) fn options() -> ParserOptions {
    ParserOptions {
        enable_extended_globbing: false,
        posix_mode: true,
        sh_mode: true,
        ..ParserOptions::default()
    }
}

/// Parses `text` (a script's bytes, lossily UTF-8) into brush's syntax tree.
pub(super) fn parse(text: &str) -> Result<Program, SyntaxError> {
    let mut parser = Parser::new(std::io::Cursor::new(text.as_bytes()), &options());
    parser
        .parse_program()
        .map_err(|e| SyntaxError(e.to_string()))
}

/// For each line (1-based index), the debhelper tool whose `# Automatically added
/// by dh_...` block holds it, so a report says where a command came from.
pub(super) fn debhelper_blocks(text: &str) -> Vec<Option<String>> {
    let mut out = vec![None];
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("# Automatically added by ") {
            current = Some(rest.split('/').next().unwrap_or(rest).trim().to_string());
            out.push(current.clone());
            continue;
        }
        out.push(current.clone());
        if t.starts_with("# End automatically added section") {
            current = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debhelper_blocks_name_the_tool_for_the_lines_inside() {
        let text = "#!/bin/sh\n# Automatically added by dh_installinit/13.11\nupdate-rc.d x defaults\n# End automatically added section\nfoo\n";
        let blocks = debhelper_blocks(text);
        assert_eq!(blocks[3].as_deref(), Some("dh_installinit"));
        assert_eq!(blocks[5], None);
    }

    #[test]
    fn a_script_with_unbalanced_syntax_is_an_error() {
        assert!(parse("if true; then\n").is_err());
        assert!(parse("case \"$1\" in configure) foo ;; esac\n").is_ok());
    }
}
