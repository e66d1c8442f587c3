//! Every unknown key of a flow file at once. Serde stops at the first
//! (`deny_unknown_fields`), which would hide every other problem until it
//! is fixed: each one found is reported, with the key it most likely
//! meant, blanked out of a copy of the text (spaces in place of its
//! characters, so that every later position stays where it is), and the
//! copy parsed again. The same guess ends every message about a name a
//! flow uses and does not declare (a parameter, a mount).

use super::model::FlowFile;
use super::source::{FlowSource, Format};
use super::standin::{Filled, Standins};
use crate::diagnostic::{Diagnostic, Diagnostics, closest};

/// More unknown keys than anyone would fix one by one: the rest wait.
const MOST: usize = 64;

/// A flow as far as it could be read, with a diagnostic for each unknown
/// key, missing key and value of the wrong type it had.
pub struct Parsed {
    /// The flow (with stand-ins where keys were missing or wrong).
    pub flow: FlowFile,
    /// What was wrong with it, in the file's order.
    pub problems: Vec<Diagnostic>,
    /// Where stand-ins went, for the checks of meaning to keep out of.
    pub standins: Standins,
}

/// The flow, with a diagnostic for each unknown key (blanked out to parse
/// the rest) and each missing key or wrong type (given a stand-in,
/// [`super::standin`]); `Err` with those and the first other problem when
/// it cannot be parsed even so.
pub fn parse_all(source: &FlowSource) -> Result<Parsed, Diagnostics> {
    let mut found = Vec::new();
    let mut standins = Standins::default();
    let mut text = source.text.clone();
    // Each turn changes the copy; stand-ins of ours replaced count too.
    for _ in 0..MOST * 4 {
        let copy = FlowSource {
            text: text.clone(),
            ..source.clone()
        };
        let mut d = match copy.parse() {
            Ok(flow) => {
                let problems = in_order(found);
                return Ok(Parsed {
                    flow,
                    problems,
                    standins,
                });
            }
            Err(d) => d,
        };
        d.message = without_type_names(&d.message, source.format);
        let next = match unknown_field(&d.message) {
            Some((key, expected)) => {
                let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
                if let Some(meant) = closest(&key, &expected) {
                    d.message.push_str(&format!("; did you mean `{meant}`?"));
                }
                let offset = d.position.map(|p| offset_of(&text, p.line, p.column));
                offset.and_then(|o| blank(&text, source.format, o))
            }
            None if source.format == Format::Toml => match standins.fill(&text) {
                Some(Filled::Ours(next)) => {
                    text = next;
                    continue;
                }
                Some(Filled::Reported(next, field)) => {
                    d.field = field;
                    Some(next)
                }
                None => None,
            },
            None => None,
        };
        // Where the operator wrote it, and the line as written.
        if let Some(p) = d.position {
            let at = standins.original(offset_of(&text, p.line, p.column));
            d = d.at_offset(&source.text, at);
        }
        let again = found
            .last()
            .is_some_and(|last: &Diagnostic| last.message == d.message && last.position == d.position);
        if !again {
            found.push(d);
        }
        match next {
            Some(next) if !again && found.len() < MOST && next != text => text = next,
            _ => break,
        }
    }
    // Out of turns on stand-ins of ours alone: say so, never "0 errors".
    if found.is_empty() {
        let why = "the flow could not be read: too many missing keys or values of the wrong type";
        found.push(Diagnostic::new(&source.path, "", why));
    }
    Err(Diagnostics(in_order(found)))
}

/// serde's "expected struct StepDecl" (a name of the engine's, not the
/// operator's) in the flow's terms: a table in TOML, an object in JSON.
fn without_type_names(message: &str, format: Format) -> String {
    let Some((before, after)) = message.split_once("expected struct ") else {
        return message.to_owned();
    };
    let rest = after.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
    let what = match format {
        Format::Toml => "a table",
        _ => "an object",
    };
    format!("{before}expected {what}{rest}")
}

/// Diagnostics in the order of the file (serde meets keys in its own).
fn in_order(mut found: Vec<Diagnostic>) -> Vec<Diagnostic> {
    found.sort_by_key(|d| d.position.map(|p| (p.line, p.column)));
    found
}

/// The key and the keys expected instead, from serde's "unknown field
/// `nmae`, expected one of `name`, `uses`" (or "expected `name`").
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    Some((key.to_owned(), expected))
}

/// What a message about an unknown `word` ends with: the `known` ones
/// (`what`: "declared", "defined"), or none, and the one most likely
/// meant.
pub(super) fn known_ones(word: &str, what: &str, known: &[&str]) -> String {
    let list = match known.is_empty() {
        true => "none".to_owned(),
        false => known.join(", "),
    };
    match closest(word, known) {
        Some(meant) => format!("({what}: {list}); did you mean `{meant}`?"),
        None => format!("({what}: {list})"),
    }
}

/// The byte offset of 1-based `line` and `column` (in characters).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text.split_inclusive('\n').take(line - 1).map(str::len).sum();
    text[start..]
        .char_indices()
        .nth(column - 1)
        .map_or(text.len(), |(i, _)| start + i)
}

/// `text` with the key at byte `offset` and its value blanked out; `None`
/// where they cannot be found.
fn blank(text: &str, format: Format, offset: usize) -> Option<String> {
    let (start, end) = match format {
        Format::Toml => toml_entry(text, offset)?,
        Format::Json => json_entry(text, offset)?,
    };
    let blanked: String = text[start..end]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    Some(format!("{}{blanked}{}", &text[..start], &text[end..]))
}

/// Where the TOML entry whose key starts at `offset` is: `key = value`,
/// or a table header with every line up to the next header.
fn toml_entry(text: &str, offset: usize) -> Option<(usize, usize)> {
    use toml::de::{DeTable, DeValue};
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    if text[line_start..].trim_start().starts_with('[') {
        let next = text[offset..]
            .match_indices('\n')
            .map(|(i, _)| offset + i + 1)
            .find(|&i| text[i..].trim_start().starts_with('['))
            .unwrap_or(text.len());
        return Some((line_start, next));
    }
    // One part of a dotted key that begins its line (`limits.tiem = "1s"`,
    // `foo.bar = 1`): the whole line is the entry, or what is left of it
    // is no longer TOML.
    if dotted(text, offset) && !text[line_start..offset].contains(['{', ',', '=']) {
        let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        return Some((line_start, end));
    }
    fn find(table: &DeTable, offset: usize) -> Option<usize> {
        table.iter().find_map(|(key, value)| {
            if key.span().start == offset {
                return Some(value.span().end);
            }
            match value.get_ref() {
                DeValue::Table(t) => find(t, offset),
                DeValue::Array(a) => a.iter().find_map(|v| match v.get_ref() {
                    DeValue::Table(t) => find(t, offset),
                    _ => None,
                }),
                _ => None,
            }
        })
    }
    let doc = DeTable::parse(text).ok()?;
    Some((offset, find(doc.get_ref(), offset)?))
}

/// Whether the key at `offset` is one part of a dotted key.
fn dotted(text: &str, offset: usize) -> bool {
    let before = text[..offset].trim_end_matches([' ', '\t']);
    let after = text[offset..]
        .trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        .trim_start_matches([' ', '\t']);
    before.ends_with('.') || after.starts_with('.')
}

/// Where the JSON property whose key ends near `offset` (serde_json points
/// just past it) is, with one comma beside it.
fn json_entry(text: &str, offset: usize) -> Option<(usize, usize)> {
    use jsonc_parser::ast::{ObjectProp, Value};
    use jsonc_parser::common::Ranged;
    fn find<'a>(value: &'a Value<'a>, offset: usize) -> Option<&'a ObjectProp<'a>> {
        match value {
            Value::Object(o) => o.properties.iter().find_map(|p| {
                let key = p.name.range();
                match key.start < offset && offset <= key.end + 1 {
                    true => Some(p),
                    false => find(&p.value, offset),
                }
            }),
            Value::Array(a) => a.elements.iter().find_map(|e| find(e, offset)),
            _ => None,
        }
    }
    let parsed = jsonc_parser::parse_to_ast(text, &Default::default(), &Default::default()).ok()?;
    let prop = find(parsed.value.as_ref()?, offset)?;
    let (start, end) = (prop.range().start, prop.range().end);
    let after = text[end..].len() - text[end..].trim_start().len();
    if text[end + after..].starts_with(',') {
        return Some((start, end + after + 1));
    }
    let before = text[..start].trim_end();
    before.ends_with(',').then(|| (before.len() - 1, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn all(name: &str, text: &str) -> Vec<String> {
        let source = FlowSource::from_text(Path::new(name), text.into());
        match parse_all(&source) {
            Ok(parsed) => parsed.problems,
            Err(d) => d.0,
        }
        .iter()
        .map(|d| format!("{}:{} {}", d.position.map_or(0, |p| p.line), d.field, d.message))
        .collect()
    }

    #[test]
    fn every_unknown_key_is_reported_with_what_was_meant() {
        let text = "name = \"x\"\nnmae = \"y\"\n[[steps]]\nname = \"s\"\nuse = \"builtin:fail\"\nlimits = { memroy = \"1MiB\" }\n";
        let found = all("f.toml", text);
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(
            found[0].starts_with("2: unknown field `nmae`") && found[0].ends_with("did you mean `name`?"),
            "{}",
            found[0]
        );
        // The step's typo leaves it without `uses`: both are said.
        assert!(
            found[1].starts_with("3:steps[0].uses missing field `uses`"),
            "{}",
            found[1]
        );
        assert!(
            found[2].starts_with("5: unknown field `use`") && found[2].ends_with("did you mean `uses`?"),
            "{}",
            found[2]
        );
        assert!(
            found[3].starts_with("6: unknown field `memroy`") && found[3].ends_with("did you mean `memory`?"),
            "{}",
            found[3]
        );
    }

    #[test]
    fn an_unknown_table_goes_with_all_it_holds() {
        let text = "name = \"x\"\n[rollbak]\nenabled = false\nlist = [\n 1,\n]\n[[steps]]\nname = \"s\"\nuses = \"builtin:fail\"\nrevret = false\n";
        let found = all("f.toml", text);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with("2: unknown field `rollbak`")
                && found[0].ends_with("did you mean `rollback`?"),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("10: unknown field `revret`")
                && found[1].ends_with("did you mean `revert`?"),
            "{}",
            found[1]
        );
    }

    #[test]
    fn json_keys_too() {
        let found = all(
            "f.json",
            r#"{"name": "x", "nmae": 1, "steps": [{"name": "s", "uses": "u", "withh": {}}]}"#,
        );
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].contains("`nmae`") && found[0].ends_with("did you mean `name`?"));
        assert!(found[1].contains("`withh`") && found[1].ends_with("did you mean `with`?"));
    }

    #[test]
    fn a_key_far_from_every_expected_one_has_no_guess() {
        let found = all("f.toml", "name = \"x\"\nzzzzzz = 1\nsteps = []\n");
        assert_eq!(found.len(), 1);
        assert!(!found[0].contains("did you mean"), "{}", found[0]);
    }
}
