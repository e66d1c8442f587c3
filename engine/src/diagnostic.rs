//! Errors about a user's input, pointing at the file, line and column of
//! the offending value, so an operator can fix a flow without guessing.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a source file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// From 1.
    pub line: usize,
    /// From 1, in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`; columns count characters.
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position { line, column }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// One problem with a flow (or another input file).
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// The flow file.
    pub file: PathBuf,
    /// Where in it, when the field could be found.
    pub position: Option<Position>,
    /// The field the problem is in, e.g. `steps[2].with.from`; empty for
    /// problems with the file as a whole.
    pub field: String,
    /// What is wrong, with the offending value.
    pub message: String,
    /// The source line the position points into, shown under the message.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// A problem with `field` (a path such as `steps[0].uses`) of `file`, located later against
    /// its text.
    pub fn new(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            position: None,
            field: field.into(),
            message: message.into(),
            source_line: None,
        }
    }

    /// Points the diagnostic at byte `offset` of `text`, the file's contents.
    pub fn at_offset(mut self, text: &str, offset: usize) -> Self {
        let position = Position::of_offset(text, offset);
        self.source_line = text.lines().nth(position.line - 1).map(str::to_owned);
        self.position = Some(position);
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        write!(f, ": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(p), Some(line)) = (self.position, &self.source_line) {
            let gutter = p.line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {:>col$}",
                "",
                p.line,
                line,
                "",
                "^",
                col = p.column
            )?;
        }
        Ok(())
    }
}

/// Several diagnostics, reported together so one `validate` shows them all.
#[derive(Debug)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "error: {d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{}", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

/// The expected word `word` is most likely a typo of, if one is close
/// (the measures clap suggests with): for every "did you mean".
pub fn closest<'e>(word: &str, expected: &[&'e str]) -> Option<&'e str> {
    expected
        .iter()
        .map(|e| (strsim::jaro_winkler(word, e), *e))
        .filter(|(score, e)| *score >= 0.8 || strsim::levenshtein(word, e) <= 2)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(Position::of_offset(text, 0), Position { line: 1, column: 1 });
        let x = text.find('"').unwrap();
        assert_eq!(Position::of_offset(text, x), Position { line: 2, column: 6 });
    }

    #[test]
    fn display_shows_file_line_column_field_and_caret() {
        let text = "name = 1\n";
        let d = Diagnostic::new(Path::new("f.toml"), "name", "expected a string").at_offset(text, 7);
        let shown = d.to_string();
        assert!(
            shown.starts_with("f.toml:1:8: name: expected a string"),
            "{shown}"
        );
        assert!(shown.contains("1 | name = 1"), "{shown}");
        assert!(shown.ends_with("|        ^"), "{shown}");
    }
}
