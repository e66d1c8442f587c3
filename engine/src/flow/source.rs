//! Reading a flow file, and tying a field back to its line and column.

use super::field::{FieldPath, Segment};
use super::model::FlowFile;
use crate::diagnostic::Diagnostic;
use std::path::{Path, PathBuf};

/// TOML for people, JSON for machines; chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// TOML, from a `.toml` file (or any other extension).
    Toml,
    /// JSON, from a `.json` file.
    Json,
}

/// A flow file's text, kept so that diagnostics can quote it.
#[derive(Debug, Clone)]
pub struct FlowSource {
    /// Where it was read from: errors name it, relative paths start there.
    pub path: PathBuf,
    /// The text, kept to locate errors by line and column.
    pub text: String,
    /// How the text is written.
    pub format: Format,
}

impl FlowSource {
    /// Reads the flow file at `path`; a directory stands for the flow
    /// file in it, `flow.toml` (or `flow.json` where only that exists).
    pub fn read(path: &Path) -> Result<FlowSource, Diagnostic> {
        let path = &match path.is_dir() {
            true if !path.join("flow.toml").exists() && path.join("flow.json").exists() => {
                path.join("flow.json")
            }
            true => path.join("flow.toml"),
            false => path.to_path_buf(),
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| Diagnostic::new(path, "", format!("cannot read the flow file: {e}")))?;
        Ok(FlowSource::from_text(path, text))
    }

    /// A flow whose text is given, as if read from `path`.
    pub fn from_text(path: &Path, text: String) -> FlowSource {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Toml,
        };
        FlowSource {
            path: path.to_path_buf(),
            text,
            format,
        }
    }

    /// The directory relative paths in the flow are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Parses the file, reporting syntax errors, unknown keys and wrong
    /// types at their position.
    pub fn parse(&self) -> Result<FlowFile, Diagnostic> {
        match self.format {
            Format::Toml => toml::from_str(&self.text).map_err(|e| {
                let d = Diagnostic::new(&self.path, "", e.message().trim_end());
                match e.span() {
                    Some(span) => d.at_offset(&self.text, span.start),
                    None => d,
                }
            }),
            Format::Json => serde_json::from_str(&self.text).map_err(|e| {
                let full = e.to_string();
                let message = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m);
                let offset = offset_of_line_column(&self.text, e.line(), e.column());
                Diagnostic::new(&self.path, "", message).at_offset(&self.text, offset)
            }),
        }
    }

    /// A diagnostic about `field`, placed at the field's value (or at the
    /// nearest enclosing value that exists in the file).
    pub fn diagnostic(&self, field: &FieldPath, message: impl Into<String>) -> Diagnostic {
        self.placed(field, Spot::Value, message)
    }

    /// A diagnostic about the key that ends `field` (one that should not be
    /// there), placed at the key, as the parser places its own.
    pub fn key_diagnostic(&self, field: &FieldPath, message: impl Into<String>) -> Diagnostic {
        self.placed(field, Spot::Key, message)
    }

    fn placed(&self, field: &FieldPath, spot: Spot, message: impl Into<String>) -> Diagnostic {
        let d = Diagnostic::new(&self.path, field.to_string(), message);
        let offset = match self.format {
            Format::Toml => toml_offset(&self.text, field, spot),
            Format::Json => json_offset(&self.text, field, spot),
        };
        match offset {
            Some(offset) => d.at_offset(&self.text, offset),
            None => d,
        }
    }
}

fn offset_of_line_column(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let in_line = text[line_start..]
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    line_start + in_line
}

/// Where in the file a field's diagnostic goes: at its value, or at the
/// key naming it.
#[derive(Clone, Copy, PartialEq)]
enum Spot {
    Value,
    Key,
}

fn toml_offset(text: &str, field: &FieldPath, spot: Spot) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut table = Some(doc.get_ref());
    let mut array: Option<&toml::de::DeArray> = None;
    let mut best = None;
    for (n, segment) in field.0.iter().enumerate() {
        let last = n + 1 == field.0.len();
        let (key, value) = match (segment, table, array) {
            (Segment::Key(key), Some(t), _) => match t.iter().find(|(k, _)| k.get_ref() == key) {
                Some((k, v)) => (Some(k.span().start), v),
                None => break,
            },
            (Segment::Index(i), _, Some(a)) => match a.get(*i) {
                Some(v) => (None, v),
                None => break,
            },
            _ => break,
        };
        best = match (spot, last, key) {
            (Spot::Key, true, Some(key)) => Some(key),
            _ => Some(value.span().start),
        };
        (table, array) = match value.get_ref() {
            DeValue::Table(t) => (Some(t), None),
            DeValue::Array(a) => (None, Some(a)),
            _ => (None, None),
        };
    }
    best
}

/// The field of TOML `text` whose value holds byte `offset`, the deepest
/// one: the inverse of finding a field's offset. A table with a header
/// (`[[steps]]`, `[steps.with]`) spans only its header, so the one an
/// offset is in is the last that starts before it.
pub(super) fn toml_field_at(text: &str, offset: usize) -> FieldPath {
    use toml::de::{DeTable, DeValue};
    type Spanned<'a> = toml::Spanned<DeValue<'a>>;
    /// The entry of `table` that holds `offset`, as the segments to it.
    fn entry<'t, 'a>(table: &'t DeTable<'a>, offset: usize) -> Option<(Vec<Segment>, &'t Spanned<'a>)> {
        let holds = |v: &Spanned| v.span().start <= offset && offset < v.span().end;
        if let Some((k, v)) = table.iter().find(|(_, v)| holds(v)) {
            return Some((vec![Segment::Key(k.get_ref().to_string())], v));
        }
        let mut before: Vec<(usize, Vec<Segment>, &Spanned)> = Vec::new();
        for (k, v) in table.iter() {
            let key = Segment::Key(k.get_ref().to_string());
            match v.get_ref() {
                DeValue::Table(_) if v.span().start <= offset => before.push((v.span().start, vec![key], v)),
                DeValue::Array(a) => before.extend(
                    a.iter()
                        .enumerate()
                        .filter(|(_, e)| matches!(e.get_ref(), DeValue::Table(_)) && e.span().start <= offset)
                        .map(|(i, e)| (e.span().start, vec![key.clone(), Segment::Index(i)], e)),
                ),
                _ => {}
            }
        }
        before
            .into_iter()
            .max_by_key(|(start, ..)| *start)
            .map(|(_, path, v)| (path, v))
    }
    let Ok(doc) = DeTable::parse(text) else {
        return FieldPath::root();
    };
    let mut field = FieldPath::root();
    let mut next = entry(doc.get_ref(), offset);
    while let Some((segments, value)) = next {
        field.0.extend(segments);
        next = match value.get_ref() {
            DeValue::Table(t) => entry(t, offset),
            DeValue::Array(a) => a
                .iter()
                .enumerate()
                .find(|(_, v)| v.span().start <= offset && offset < v.span().end)
                .map(|(i, v)| (vec![Segment::Index(i)], v)),
            _ => None,
        };
    }
    field
}

fn json_offset(text: &str, field: &FieldPath, spot: Spot) -> Option<usize> {
    use jsonc_parser::ast::Value;
    use jsonc_parser::common::Ranged;
    let parsed = jsonc_parser::parse_to_ast(text, &Default::default(), &Default::default()).ok()?;
    let mut current = parsed.value?;
    let mut best = None;
    for (n, segment) in field.0.iter().enumerate() {
        let last = n + 1 == field.0.len();
        let next = match (segment, current) {
            (Segment::Key(key), Value::Object(o)) => {
                o.get(key).map(|p| (Some(p.name.range().start), p.value.clone()))
            }
            (Segment::Index(i), Value::Array(a)) => a.elements.get(*i).cloned().map(|v| (None, v)),
            _ => None,
        };
        let Some((key, next)) = next else { break };
        best = match (spot, last, key) {
            (Spot::Key, true, Some(key)) => Some(key),
            _ => Some(next.range().start),
        };
        current = next;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Position;

    fn position(source: &FlowSource, field: &FieldPath) -> Option<Position> {
        source.diagnostic(field, "x").position
    }

    #[test]
    fn toml_fields_are_located_at_their_values() {
        let text = "name = \"f\"\n\n[[steps]]\nname = \"a\"\nuses = \"builtin:fail\"\n\n[[steps]]\nname = \"b\"\nuses = \"nope\"\n";
        let s = FlowSource::from_text(Path::new("f.toml"), text.into());
        let field = FieldPath::root().key("steps").index(1).key("uses");
        assert_eq!(position(&s, &field), Some(Position { line: 9, column: 8 }));
    }

    #[test]
    fn json_fields_are_located_at_their_values() {
        let text = "{\n  \"name\": \"f\",\n  \"steps\": [\n    {\"name\": \"a\", \"uses\": \"x\"}\n  ]\n}\n";
        let s = FlowSource::from_text(Path::new("f.json"), text.into());
        let field = FieldPath::root().key("steps").index(0).key("uses");
        assert_eq!(position(&s, &field), Some(Position { line: 4, column: 27 }));
    }

    #[test]
    fn a_key_that_should_not_be_there_is_located_at_the_key() {
        let field = FieldPath::root().key("steps").index(0).key("with").key("contnet");
        let toml = "name = \"f\"\n[[steps]]\nwith = { path = \"/x\", contnet = \"hi\" }\n";
        let s = FlowSource::from_text(Path::new("f.toml"), toml.into());
        let at = s.key_diagnostic(&field, "x").position;
        assert_eq!(at, Some(Position { line: 3, column: 23 }));
        let json = "{\"steps\": [{\"with\": {\"contnet\": 1}}]}";
        let s = FlowSource::from_text(Path::new("f.json"), json.into());
        let at = s.key_diagnostic(&field, "x").position;
        assert_eq!(at, Some(Position { line: 1, column: 22 }));
    }

    #[test]
    fn missing_fields_fall_back_to_the_nearest_parent() {
        let text = "name = \"f\"\n[[steps]]\nname = \"a\"\n";
        let s = FlowSource::from_text(Path::new("f.toml"), text.into());
        let field = FieldPath::root().key("steps").index(0).key("with").key("path");
        assert!(position(&s, &field).is_some());
    }
}
#[cfg(test)]
mod field_at_tests {
    use super::*;

    #[test]
    fn the_field_at_an_offset_is_found_in_tables_with_headers_too() {
        let text = "name = \"x\"\n[[mounts]]\nname = \"m\"\naccess = 5\n[[steps]]\nname = \"a\"\nwith = { message = 7 }\n[[steps]]\n[steps.limits]\ntime = 1\n";
        let at = |needle: &str| toml_field_at(text, text.find(needle).unwrap()).to_string();
        assert_eq!(at("\"x\""), "name");
        assert_eq!(at("5"), "mounts[0].access");
        assert_eq!(at("7"), "steps[0].with.message");
        assert_eq!(at("\"a\""), "steps[0].name");
        assert_eq!(at("1\n"), "steps[1].limits.time");
    }
}
