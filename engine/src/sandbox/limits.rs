//! Per-step resource limits, and the limiter that tells a memory-limit hit
//! apart from any other trap.

use std::time::Duration;
use wasmtime::ResourceLimiter;

/// What one step may use. Defaults suit deploy-sized work; a step
/// overrides them with `[steps.limits]` in the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall time of the whole step, host calls included.
    pub time: Duration,
    /// Bytes of linear memory, per memory of the component.
    pub memory: u64,
    /// Descriptors and directory listings the step may hold at once: each
    /// costs the host a file descriptor or memory, which the memory limit
    /// does not cover; past it, opens fail with `insufficient-memory`.
    pub descriptors: usize,
}

impl Limits {
    pub const DEFAULT_TIME: Duration = Duration::from_secs(300);
    pub const DEFAULT_MEMORY: u64 = 512 << 20;
    pub const DEFAULT_DESCRIPTORS: usize = 256;
    /// Far below the engine's own descriptor limit, which it raises to
    /// the system's hard limit when it starts.
    pub const MAX_DESCRIPTORS: usize = 4096;
    /// Below this a Rust component cannot even start.
    pub const MIN_MEMORY: u64 = 2 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Self::DEFAULT_TIME,
            memory: Self::DEFAULT_MEMORY,
            descriptors: Self::DEFAULT_DESCRIPTORS,
        }
    }
}

/// Refuses memory growth past the limit and remembers that it did, so the
/// trap that follows (a Rust guest aborts on allocation failure) is
/// reported as a memory-limit hit.
pub struct MemoryLimiter {
    limit: usize,
    hit: bool,
}

impl MemoryLimiter {
    pub fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            hit: false,
        }
    }

    pub fn was_hit(&self) -> bool {
        self.hit
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
