//! What a step's store holds: its WASI context, its limits, and what it
//! has reported.

use super::fs::FsLayer;
use super::limits::MemoryLimiter;
use crate::events::{Event, EventSink, LogLevel, LogLine};
use std::collections::BTreeMap;
use std::sync::Arc;
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
    pub(super) events: Arc<dyn EventSink>,
    pub(super) log: Vec<LogLine>,
    /// Latest figure per unit: done, total, when it was last forwarded.
    pub(super) progress: BTreeMap<String, (u64, Option<u64>, Option<Instant>)>,
}

impl StepState {
    pub(super) fn record_log(&mut self, level: LogLevel, message: String) {
        self.events.emit(Event::StepLog {
            step: self.step.clone(),
            level,
            message: message.clone(),
        });
        self.log.push(LogLine { level, message });
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.ctx()
    }
}
