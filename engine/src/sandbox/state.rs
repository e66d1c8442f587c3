//! What a step's store holds: each capability's state, and its limiter.

use super::exec::ExecState;
use super::fs::FsLayer;
use super::host::HostState;
use super::limits::MemoryLimiter;
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

/// A step's store data: one part per capability ([`super::capability`]),
/// and the memory limiter.
pub struct StepState {
    pub(super) wasi: Wasi,
    pub(super) fs: FsLayer,
    pub(super) host: HostState,
    pub(super) exec: ExecState,
    pub(super) limiter: MemoryLimiter,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.ctx()
    }
}
