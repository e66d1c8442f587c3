//! Colours for people. Every line is written through anstream, which keeps
//! or strips the styles per stream: `--color always|never` decides, and
//! under `auto` (the default) a stream that is not a terminal, `NO_COLOR`
//! or `TERM=dumb` strips them, `CLICOLOR_FORCE` keeps them. So a tag is
//! always painted here and the stream has the last word.

use anstyle::{AnsiColor, Style};
use std::fmt::Display;

/// What went well: `ok`, "succeeded", "every path restored".
pub const GOOD: Style = AnsiColor::Green.on_default();
/// Needs a look but is not a failure: an ignored failure, something kept
/// aside, a warning, a rollback that restored everything.
pub const NOTE: Style = AnsiColor::Yellow.on_default();
/// Went wrong: a failed step or action, a path not restored, an error.
pub const BAD: Style = AnsiColor::Red.on_default().bold();
/// Of little interest: skipped steps, what a replay adds.
pub const DIM: Style = Style::new().dimmed();

/// `text` in `style` (pad it before painting: the codes have width).
pub fn paint(style: Style, text: impl Display) -> String {
    format!("{style}{text}{style:#}")
}

/// The `--color` choice, for every stream of this process.
pub fn choose(choice: super::args::ColorChoice) {
    use super::args::ColorChoice as C;
    let choice = match choice {
        C::Auto => anstream::ColorChoice::Auto,
        C::Always => anstream::ColorChoice::Always,
        C::Never => anstream::ColorChoice::Never,
    };
    choice.write_global();
}
