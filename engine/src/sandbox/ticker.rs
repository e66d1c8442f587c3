//! The epoch clock behind time limits: a thread that advances the engine's
//! epoch every tick, so running guests yield to the async runtime, where a
//! step's deadline can fire.

use std::time::Duration;
use wasmtime::{Engine, EngineWeak};

/// How often guests yield; also the precision of time limits.
pub const TICK: Duration = Duration::from_millis(10);

/// Starts the ticker; it stops by itself once the engine is dropped.
pub fn start(engine: &Engine) {
    let weak: EngineWeak = engine.weak();
    std::thread::Builder::new()
        .name("stepback-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch thread");
}
