//! Stepback runs update flows: ordered steps that change a machine, each a
//! sandboxed WebAssembly component that sees only the directories its flow
//! grants it. Every change a step makes to a read-write directory is
//! journaled before it reaches the disk, and a failed flow is rolled back
//! exactly, even after a crash.
//!
//! The pieces, in the order a run uses them:
//! - [`flow`]: reading a flow file (TOML or JSON) and validating it into a
//!   [`flow::Plan`], with errors that point at file, line and column;
//! - [`grant`]: what a flow grants a step (mounts, access, limits);
//! - [`plugin`]: finding a step's component (built in or on disk) and
//!   compiling it once, with an on-disk cache of compiled code;
//! - [`registry`]: plugins from OCI registries: the store they run from,
//!   a flow's lock of their digests, signatures and the trust policy;
//! - [`sandbox`]: one wasmtime store per step, with its mounts, limits and
//!   the host interface;
//! - [`journal`]: the undo journal every change to a mount is recorded in
//!   before it happens, and the rollback that reverses it;
//! - [`runner`]: runs a plan's steps under their failure policies, and
//!   rolls a failed flow back;
//! - [`events`]: what a run reports, for the CLI or any embedding program;
//! - [`cancel`]: stopping a run from outside;
//! - [`history`] and [`recovery`]: undoing a committed run later, and
//!   finishing runs a crash interrupted.
//!
//! For step authors, [`authoring`] creates a plugin project in Rust,
//! Python or JavaScript and builds it.
//!
//! The `stepback` binary is a thin CLI over this library.
//!
//! # Embedding
//!
//! A program runs a flow with a [`sandbox::Sandbox`] (one per process: it
//! holds the WebAssembly engine and the compiled-plugin cache), a plan
//! from [`flow::validate`], and [`runner::run`], which reports every event
//! of the run to the sink it is given:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use stepback::events::{Envelope, Event, EventSink, FlowStatus};
//! use stepback::flow::FlowSource;
//! use stepback::plugin::CompiledCache;
//! use stepback::runner::{self, RunOptions};
//! use stepback::sandbox::Sandbox;
//!
//! /// Keeps every event it is given.
//! #[derive(Default)]
//! struct Collect(Mutex<Vec<Envelope>>);
//!
//! impl EventSink for Collect {
//!     fn emit(&self, envelope: Envelope) {
//!         self.0.lock().unwrap().push(envelope);
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::create_dir(dir.path().join("site"))?;
//! // Relative host paths are relative to the flow file's directory.
//! let flow = FlowSource::from_text(
//!     &dir.path().join("flow.toml"),
//!     r#"
//!     name = "hello"
//!     [[mounts]]
//!     name = "site"
//!     host = "site"
//!     guest = "/site"
//!     access = "read-write"
//!     [[steps]]
//!     name = "greet"
//!     uses = "builtin:write-file"
//!     mounts = ["site"]
//!     with = { path = "/site/index.html", content = "hello" }
//!     "#
//!     .into(),
//! );
//! let state = dir.path().join("state");
//! let events = Arc::new(Collect::default());
//! let sandbox = Sandbox::new(CompiledCache::new(state.join("cache")), events.clone())?;
//! // The state directory is passed so that no mount may contain it.
//! let plan = stepback::flow::validate(&flow, &[], &sandbox, &[state.clone()], None).await?;
//! let report = runner::run(&plan, &sandbox, events.clone(), &RunOptions::new(&state)).await?;
//!
//! assert_eq!(report.status, FlowStatus::Succeeded);
//! assert_eq!(std::fs::read_to_string(dir.path().join("site/index.html"))?, "hello");
//! let events = events.0.lock().unwrap();
//! assert!(matches!(events.last().unwrap().event, Event::FlowFinished { .. }));
//! // Every event of the run carries its id; plugin loading came before it.
//! assert!(events.iter().filter(|e| e.run_id.is_some()).all(|e| e.run_id.as_deref() == Some(&*report.run_id)));
//! # Ok(())
//! # }
//! ```
//!
//! [`runner::RunOptions::cancel`] stops a run from another task; the
//! journal's records of a run are read with [`journal::RunStore`], and
//! what it reported (its events, kept beside the journal) with
//! [`runlog::read`].

#![warn(missing_docs)]

pub mod authoring;
pub mod cancel;
pub mod diagnostic;
pub mod events;
pub mod exit;
pub mod flow;
pub mod grant;
pub mod history;
pub mod journal;
pub mod plugin;
pub mod recovery;
pub mod registry;
pub mod runlog;
pub mod runner;
pub mod sandbox;
pub mod state;

#[cfg(test)]
mod layering;
