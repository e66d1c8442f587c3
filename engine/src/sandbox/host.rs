//! The `stepback:plugin/host` interface: logs, progress and parameters.

use super::bindings::stepback::plugin::host::{Host, Level};
use super::bindings::stepback::plugin::types;
use crate::events::{Emitter, Event, LogLevel, LogLine};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Progress events are forwarded at most this often per unit, so a step
/// that reports per file cannot flood the output.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// The host interface's per-step state: the step's log and progress,
/// bounded, and its parameters.
pub struct HostState {
    pub(super) step: String,
    pub(super) params: Vec<(String, String)>,
    pub(super) events: Emitter,
    pub(super) log: Vec<LogLine>,
    /// Latest figure per unit: done, total, when it was last forwarded.
    pub(super) progress: BTreeMap<String, (u64, Option<u64>, Option<Instant>)>,
    /// Bytes of `log` messages kept so far.
    pub(super) log_bytes: usize,
    /// What the step reported beyond its budget.
    pub(super) dropped: Dropped,
}

impl HostState {
    pub(super) fn new(step: &str, params: Vec<(String, String)>, events: Emitter) -> HostState {
        HostState {
            step: step.to_owned(),
            params,
            events,
            log: Vec::new(),
            progress: BTreeMap::new(),
            log_bytes: 0,
            dropped: Dropped::default(),
        }
    }
}

/// How much a step may report through the host interface: a plugin that
/// logs or reports progress without end must not exhaust the host's
/// memory (its own is capped by the memory limit, the host's is not).
pub(super) const MAX_LOG_LINES: usize = 10_000;
pub(super) const MAX_LOG_BYTES: usize = 4 << 20;
/// A longer line is cut to this many bytes.
pub(super) const MAX_LINE: usize = 16 << 10;
/// Distinct progress units a step may report, and the length of one.
pub(super) const MAX_UNITS: usize = 16;
pub(super) const MAX_UNIT: usize = 64;

/// What a step reported beyond its budget, dropped and counted.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Dropped {
    pub lines: u64,
    pub bytes: u64,
    pub progress: u64,
}

impl HostState {
    pub(super) fn record_log(&mut self, level: LogLevel, mut message: String) {
        if self.log.len() >= MAX_LOG_LINES || self.log_bytes + message.len().min(MAX_LINE) > MAX_LOG_BYTES {
            self.dropped.lines += 1;
            self.dropped.bytes += message.len() as u64;
            return;
        }
        if message.len() > MAX_LINE {
            let cut = message.len() - MAX_LINE;
            message.truncate(message.floor_char_boundary(MAX_LINE));
            message.push_str(&format!(" [{cut} more bytes cut]"));
        }
        self.events.emit(Event::StepLog {
            step: self.step.clone(),
            level,
            message: message.clone(),
        });
        self.log_bytes += message.len();
        self.log.push(LogLine { level, message });
    }

    /// The line that says what was dropped, if anything was.
    pub(super) fn dropped_line(&self) -> Option<LogLine> {
        let d = self.dropped;
        (d.lines + d.progress > 0).then(|| LogLine {
            level: LogLevel::Warn,
            message: format!(
                "the step reported more than the host keeps: {} log line(s) ({} bytes) and {} progress report(s) in new units dropped (a step keeps {MAX_LOG_LINES} lines, {} MiB of log, {MAX_UNITS} progress units)",
                d.lines,
                d.bytes,
                d.progress,
                MAX_LOG_BYTES >> 20
            ),
        })
    }
}

impl types::Host for HostState {}

impl Host for HostState {
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
