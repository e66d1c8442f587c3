//! Text that comes from plugins or the filesystem (log lines, messages,
//! summaries, file names) is printed with its control characters escaped,
//! so that it cannot move the cursor, recolour the terminal or fake a line
//! of Stepback's own output (a newline followed by `flow ... succeeded`).

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1: newlines, escapes,
/// carriage returns included) written as a Rust-style escape.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(clean("plain: ünïcode \\ \"q\""), "plain: ünïcode \\ \"q\"");
        assert_eq!(
            clean("x\nflow web succeeded\r\x1b[2K\u{9b}\u{7f}\t"),
            "x\\nflow web succeeded\\r\\u{1b}[2K\\u{9b}\\u{7f}\\t"
        );
    }
}
