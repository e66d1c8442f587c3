//! The live line under the running step, on a terminal: a spinner, the
//! step (or action, or rollback), its elapsed time, and its latest news:
//! progress figures (with a bar, a percentage and the time left when the
//! step knows its total; bytes in human units), or a command's latest
//! output line. Drawn on stderr
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
    /// The unit the bar measures: the first reported with a total.
    measured: Option<String>,
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
            measured: None,
        });
        if let Some(old) = old {
            old.bar.finish_and_clear();
        }
    }

    /// The running step reported progress.
    pub fn progress(&self, unit: &str, done: u64, total: Option<u64>) {
        if let Some(line) = self.lock().as_mut() {
            line.progress.insert(unit.to_owned(), (done, total));
            if let (Some(total), None) = (total, &line.measured) {
                line.measured = Some(unit.to_owned());
                line.bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix}  {elapsed:>4}  [{bar:24}] {percent:>3}%  {wide_msg}  {eta} left",
                    )
                    .expect("a valid template")
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
                    .progress_chars("=> "),
                );
                line.bar.set_length(total);
            }
            if line.measured.as_deref() == Some(unit) {
                line.bar.set_length(total.unwrap_or(done));
                line.bar.set_position(done);
            }
            let text: Vec<String> = line
                .progress
                .iter()
                .map(|(unit, figures)| figure(unit, *figures))
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

/// `done` of `total` `unit`, bytes in human units (`3.2 MiB/10.0 MiB`).
fn figure(unit: &str, (done, total): (u64, Option<u64>)) -> String {
    let amount = |n: u64| match unit {
        "bytes" => indicatif::HumanBytes(n).to_string(),
        _ => n.to_string(),
    };
    let unit = if unit == "bytes" { "" } else { unit };
    match total {
        Some(total) => format!("{}/{} {unit}", amount(done), amount(total))
            .trim_end()
            .to_owned(),
        None => format!("{} {unit}", amount(done)).trim_end().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::figure;

    #[test]
    fn figures_are_in_human_units() {
        assert_eq!(
            figure("bytes", (3 * 1024 * 1024, Some(10 * 1024 * 1024))),
            "3.00 MiB/10.00 MiB"
        );
        assert_eq!(figure("files", (3, Some(10))), "3/10 files");
        assert_eq!(figure("files", (3, None)), "3 files");
    }
}
