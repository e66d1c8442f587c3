//! A missing key or a value of the wrong type ends serde's parse of a
//! flow, which would hide every later problem until it is fixed. Each one
//! found is reported, and a copy of the text gets a stand-in in its place
//! (`key = ""` on a line of its own, or a value of the type expected), so
//! that the copy parses further. A stand-in of the wrong type is itself
//! replaced, silently: it is ours, not the operator's.
//!
//! What the flow's meaning is then checked against is partly made up, so
//! the checks of meaning say nothing inside a declaration that needed a
//! stand-in ([`Standins::covers`]). TOML only: JSON flows are written by
//! programs, which do not leave keys out.

use super::model::FlowFile;
use std::ops::Range;

/// The stand-ins put in a copy of the text so far.
#[derive(Default)]
pub struct Standins {
    /// Each change to the copy, in order: at offset `at`, `removed` bytes
    /// replaced by `inserted` bytes.
    edits: Vec<(usize, usize, usize)>,
    /// Where the stand-ins are in the copy.
    ours: Vec<Range<usize>>,
    /// The fields that needed one (`steps[1].uses`).
    needed: Vec<String>,
}

/// What a parse error became.
pub enum Filled {
    /// The operator's problem, in field `.1`: report it; the copy parses
    /// on as `.0`.
    Reported(String, String),
    /// A stand-in of ours had the wrong type: the copy parses on as `.0`.
    Ours(String),
}

impl Standins {
    /// The copy `text` with a stand-in for the first problem its parse
    /// meets; `None` when that is not a missing key or a wrong type (or it
    /// cannot be placed).
    pub fn fill(&mut self, text: &str) -> Option<Filled> {
        let error = toml::from_str::<FlowFile>(text).err()?;
        let span = error.span()?;
        let message = error.message();
        if let Some(key) = missing_key(message) {
            // A table of ours (standing in for a value of the wrong type)
            // lacks its keys: ours too, not the operator's problem.
            let ours = self.ours.iter().any(|r| r.contains(&span.start));
            let (at, line) = insertion(text, span.start, key)?;
            let next = self.splice(text, at..at, &line);
            if ours {
                return Some(Filled::Ours(next));
            }
            // The stand-in's own field, found at its value.
            let value = at + line.find('"')?;
            let field = super::source::toml_field_at(&next, value).to_string();
            self.needed.push(field.clone());
            return Some(Filled::Reported(next, field));
        }
        let value = standin_for(message)?;
        let ours = self.ours.iter().any(|r| r.contains(&span.start));
        // Padded to the length it replaces (newlines kept), so that what
        // follows stays where it was.
        let kept_lines: String = text[span.clone()].chars().filter(|c| *c == '\n').collect();
        let pad = span.len().saturating_sub(value.len() + kept_lines.len());
        let replacement = format!("{value}{}{kept_lines}", " ".repeat(pad));
        let field = super::source::toml_field_at(text, span.start).to_string();
        let next = self.splice(text, span, &replacement);
        Some(match ours {
            true => Filled::Ours(next),
            false => {
                self.needed.push(field.clone());
                Filled::Reported(next, field)
            }
        })
    }

    /// `text` with `range` replaced by `with`, remembered as ours.
    fn splice(&mut self, text: &str, range: Range<usize>, with: &str) -> String {
        let (at, removed, inserted) = (range.start, range.len(), with.len());
        let mut enclosing = Vec::new();
        for (i, r) in self.ours.iter_mut().enumerate() {
            if r.start >= range.end {
                *r = r.start + inserted - removed..r.end + inserted - removed;
            } else if r.start <= at && r.end >= range.end && (r.start, r.end) != (at, range.end) {
                // A stand-in of ours around the change (a key put in a
                // table of ours) stays ours, grown by it.
                *r = r.start..r.end + inserted - removed;
                enclosing.push(i);
            }
        }
        let mut i = 0;
        self.ours.retain(|r| {
            let keep = enclosing.contains(&i) || r.end <= at || r.start >= at + inserted;
            i += 1;
            keep
        });
        self.ours.push(at..at + inserted);
        self.edits.push((at, removed, inserted));
        format!("{}{with}{}", &text[..at], &text[range.end..])
    }

    /// The offset in the original text of `offset` in the copy.
    pub fn original(&self, mut offset: usize) -> usize {
        for &(at, removed, inserted) in self.edits.iter().rev() {
            if offset >= at + inserted {
                offset = offset - inserted + removed;
            } else if offset > at {
                offset = at;
            }
        }
        offset
    }

    /// Whether `field` (`steps[1].uses.x`) is one that needed a stand-in,
    /// or lies inside one.
    pub fn covers(&self, field: &str) -> bool {
        self.needed.iter().any(|needed| {
            field
                .strip_prefix(needed.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }
}

/// The key of serde's "missing field `uses`".
fn missing_key(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split_once('`')
        .map(|(key, _)| key)
}

/// Where a line `key = ""` goes in the table whose span starts at
/// `start`: after its header line, after the `{` of an inline table, or
/// at the top for the root table.
fn insertion(text: &str, start: usize, key: &str) -> Option<(usize, String)> {
    let rest = &text[start..];
    if rest.starts_with('{') {
        return Some((start + 1, format!(" {key} = \"\",")));
    }
    let root = start == 0 && !rest.starts_with('[');
    if root {
        return Some((0, format!("{key} = \"\"\n")));
    }
    rest.starts_with('[').then_some(())?;
    match rest.find('\n') {
        Some(end) => Some((start + end + 1, format!("{key} = \"\"\n"))),
        None => Some((text.len(), format!("\n{key} = \"\""))),
    }
}

/// A value of the type serde's message says it expected: "expected a
/// boolean", "expected one of `read-only`, `read-write`" (the last, which
/// asks for the least of a grant's checks)...
fn standin_for(message: &str) -> Option<String> {
    // toml's own message for an enum given a number, a boolean...
    if message.starts_with("wanted string or table") {
        return Some("\"\"".to_owned());
    }
    let expected = message.split_once("expected ")?.1;
    // A variant: "one of `a`, `b`", "`a` or `b`", "`a`".
    if expected.starts_with("one of `") || expected.starts_with('`') {
        let last = expected.split('`').skip(1).step_by(2).last()?;
        return Some(format!("\"{last}\""));
    }
    let kinds: [(&[&str], &str); 5] = [
        (&["a string", "string"], "\"\""),
        (&["a boolean", "bool"], "false"),
        (&["a sequence", "an array", "sequence"], "[]"),
        (&["struct", "a map", "map", "a table"], "{}"),
        (
            &["i64", "u64", "usize", "i32", "u32", "an integer", "integer"],
            "0",
        ),
    ];
    kinds
        .iter()
        .find(|(words, _)| words.iter().any(|w| expected.starts_with(w)))
        .map(|(_, value)| (*value).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_back_through_insertions() {
        let mut s = Standins::default();
        let text = "ab\ncd\n";
        let next = s.splice(text, 3..3, "x = \"\"\n");
        assert_eq!(next, "ab\nx = \"\"\ncd\n");
        assert_eq!(s.original(10), 3);
        assert_eq!(s.original(next.find("cd").unwrap()), text.find("cd").unwrap());
        assert_eq!(s.original(1), 1);
        assert_eq!(s.original(5), 3, "inside the stand-in: where it was put");
    }

    #[test]
    fn stand_ins_have_the_type_asked_for() {
        for (message, standin) in [
            ("invalid type: integer `5`, expected a string", "\"\""),
            ("invalid type: string \"x\", expected a boolean", "false"),
            (
                "unknown variant ``, expected one of `read-only`, `read-write`",
                "\"read-write\"",
            ),
            ("invalid type: string \"\", expected a sequence", "[]"),
            (
                "unknown variant ``, expected `read-only` or `read-write`",
                "\"read-write\"",
            ),
            ("wanted string or table", "\"\""),
        ] {
            assert_eq!(standin_for(message).as_deref(), Some(standin), "{message}");
        }
        assert_eq!(standin_for("something else"), None);
    }
}
