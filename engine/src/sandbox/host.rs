//! The `stepback:plugin/host` interface: logs, progress and parameters.

use super::bindings::stepback::plugin::host::{Host, Level};
use super::bindings::stepback::plugin::types;
use super::state::StepState;
use crate::events::{Event, LogLevel};
use std::time::{Duration, Instant};

/// Progress events are forwarded at most this often per unit, so a step
/// that reports per file cannot flood the output.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

impl types::Host for StepState {}

impl Host for StepState {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        self.record_log(level, message);
    }

    fn progress(&mut self, done: u64, total: Option<u64>, mut unit: String) {
        use super::state::{MAX_UNIT, MAX_UNITS};
        unit.truncate(unit.floor_char_boundary(MAX_UNIT));
        if !self.progress.contains_key(&unit) && self.progress.len() >= MAX_UNITS {
            self.dropped.progress += 1;
            return;
        }
        let now = Instant::now();
        let entry = self.progress.entry(unit.clone()).or_insert((0, None, None));
        let due = entry
            .2
            .is_none_or(|last: Instant| now - last >= PROGRESS_INTERVAL)
            || Some(done) == total;
        *entry = (done, total, if due { Some(now) } else { entry.2 });
        if due {
            self.events.emit(Event::StepProgress {
                step: self.step.clone(),
                unit,
                done,
                total,
            });
        }
    }

    fn params(&mut self) -> Vec<(String, String)> {
        self.params.clone()
    }
}
