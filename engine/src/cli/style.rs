//! Colours for people. Every line is written through anstream, which keeps
//! or strips the styles per stream: `--color always|never` decides, and
//! under `auto` (the default) a stream that is not a terminal, `NO_COLOR`
//! or `TERM=dumb` strips them, `CLICOLOR_FORCE` (but `0`) keeps them. So a
//! tag is always painted here and the stream has the last word.

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

/// The `--color` choice, for every stream of this process. Under `auto`,
/// decided here per stream (a terminal, and not `TERM=dumb`), not by
/// anstream: it takes any `CLICOLOR_FORCE` as forcing, `0` included, where
/// the environment's choice (`args.rs`) has had its say already.
pub fn choose(choice: super::args::ColorChoice) {
    use super::args::ColorChoice as C;
    use std::io::IsTerminal;
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    let auto = |terminal: bool| match terminal && !dumb {
        true => anstream::ColorChoice::Always,
        false => anstream::ColorChoice::Never,
    };
    let chosen = match choice {
        C::Auto => [
            auto(std::io::stdout().is_terminal()),
            auto(std::io::stderr().is_terminal()),
        ],
        C::Always => [anstream::ColorChoice::Always; 2],
        C::Never => [anstream::ColorChoice::Never; 2],
    };
    let _ = CHOSEN.set(chosen);
}

/// The choice for stdout and stderr, once [`choose`] made it.
static CHOSEN: std::sync::OnceLock<[anstream::ColorChoice; 2]> = std::sync::OnceLock::new();

/// Whether stderr (`err`) or stdout keeps the styles written to it.
pub fn for_stream(err: bool) -> anstream::ColorChoice {
    CHOSEN
        .get()
        .map_or(anstream::ColorChoice::Never, |c| c[usize::from(err)])
}
