//! The live line under the running step, on a terminal: a spinner, the
//! step (or action, or rollback), its elapsed time, and its latest news:
//! progress figures, or a command's latest output line. Drawn on stderr
//! and only when stderr is a terminal; the permanent lines (one per step)
//! go to stdout as ever, so piped or redirected output has no live line.

use super::escape::clean;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

/// The live line, if one is drawn.
pub struct Live {
    enabled: bool,
    current: Mutex<Option<Line>>,
}

struct Line {
    bar: ProgressBar,
    /// Latest progress per unit.
    progress: BTreeMap<String, (u64, Option<u64>)>,
}

impl Live {
    /// A live line when stderr is a terminal and `wanted`.
    pub fn new(wanted: bool) -> Live {
        Live {
            enabled: wanted && std::io::stderr().is_terminal(),
            current: Mutex::new(None),
        }
    }

    /// Shows `what` running, replacing any previous line.
    pub fn start(&self, what: &str) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix}  {elapsed:>4}  {wide_msg}")
                .expect("a valid template")
                .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
        );
        bar.set_prefix(clean(what).into_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        let old = self.lock().replace(Line {
            bar,
            progress: BTreeMap::new(),
        });
        if let Some(old) = old {
            old.bar.finish_and_clear();
        }
    }

    /// The running step reported progress.
    pub fn progress(&self, unit: &str, done: u64, total: Option<u64>) {
        if let Some(line) = self.lock().as_mut() {
            line.progress.insert(unit.to_owned(), (done, total));
            let text: Vec<String> = line
                .progress
                .iter()
                .map(|(unit, (done, total))| match total {
                    Some(total) => format!("{done}/{total} {unit}"),
                    None => format!("{done} {unit}"),
                })
                .collect();
            line.bar.set_message(clean(&text.join(", ")).into_owned());
        }
    }

    /// The running step (a command of it) printed `text`.
    pub fn output(&self, text: &str) {
        if let Some(line) = self.lock().as_ref() {
            line.bar.set_message(clean(text).into_owned());
        }
    }

    /// Takes the line away, before the step's permanent line is printed.
    pub fn finish(&self) {
        if let Some(line) = self.lock().take() {
            line.bar.finish_and_clear();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Line>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}
