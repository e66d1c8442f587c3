//! Stepback runs update flows: ordered steps that change a machine, each a
//! sandboxed WebAssembly component that sees only the directories its flow
//! grants it.
//!
//! The pieces, in the order a run uses them:
//! - [`flow`]: reading a flow file (TOML or JSON) and validating it into a
//!   [`flow::Plan`], with errors that point at file, line and column;
//! - [`plugin`]: finding a step's component (built in or on disk) and
//!   compiling it once, with an on-disk cache of compiled code;
//! - [`sandbox`]: one wasmtime store per step, with its mounts, limits and
//!   the host interface;
//! - [`journal`]: the undo journal every change to a mount is recorded in
//!   before it happens, and the rollback that reverses it;
//! - [`runner`]: runs a plan's steps under their failure policies, and
//!   rolls a failed flow back;
//! - [`events`]: what a run reports, for the CLI or any embedding program.
//!
//! The `stepback` binary is a thin CLI over this library.

pub mod diagnostic;
pub mod events;
pub mod flow;
pub mod history;
pub mod journal;
pub mod plugin;
pub mod recovery;
pub mod runner;
pub mod sandbox;
pub mod state;
