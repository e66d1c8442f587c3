//! What a step's store holds: its WASI context, its limits, and what it
//! has reported.

use super::fs::FsLayer;
use super::limits::MemoryLimiter;
use crate::events::{Emitter, Event, LogLevel, LogLine};
use std::collections::BTreeMap;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The WASI context and resource table, apart from the rest of the state
/// so that the filesystem layer can borrow them next to its own state.
pub struct Wasi {
    pub(super) ctx: WasiCtx,
    pub(super) table: ResourceTable,
}

impl WasiView for Wasi {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

pub struct StepState {
    pub(super) wasi: Wasi,
    pub(super) fs: FsLayer,
    pub(super) limiter: MemoryLimiter,
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

impl StepState {
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

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.ctx()
    }
}
