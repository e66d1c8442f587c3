//! Test a [Stepback](https://docs.rs/stepback) step plugin in the real
//! engine, from your own `cargo test`.
//!
//! A step's interesting behaviour is what it does to files, and that only
//! happens in the engine: the host resolves every path inside the step's
//! mounts, journals each change before it reaches the disk and reverses
//! them on failure. So this crate does not mock the host: it runs the
//! component you built alone, in the `stepback` binary, against a
//! directory of your test's, with `stepback plugin run --output json`, and
//! hands back what happened as types: the outcome, the step's log and
//! error, the changes the journal holds and what a rollback undid.
//!
//! ```no_run
//! use stepback_test::{Outcome, Step};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let run = Step::built()
//!     .with(serde_json::json!({"path": "/target/hello.txt", "text": "hello"}))
//!     .mount("target", dir.path(), "/target")
//!     .run()
//!     .unwrap();
//! assert_eq!(run.outcome, Outcome::Succeeded, "{run}");
//! assert_eq!(run.changes[0].path, "hello.txt");
//!
//! // The same, reversed at the end: the directory is as it was.
//! let run = Step::built()
//!     .with(serde_json::json!({"path": "/target/hello.txt", "text": "hello"}))
//!     .mount("target", dir.path(), "/target")
//!     .rollback()
//!     .run()
//!     .unwrap();
//! assert_eq!(run.outcome, Outcome::Undone, "{run}");
//! assert!(run.rollback.unwrap().undone >= 1);
//! ```
//!
//! # Which engine, which component
//!
//! The engine is `$STEPBACK`, else `stepback` on `PATH`. [`Step::built`]
//! is the component of the project under test: `$STEPBACK_PLUGIN` when
//! `stepback plugin test` runs the tests (it has just built it), otherwise
//! the project is built once per test process with `stepback plugin build`
//! (from `CARGO_MANIFEST_DIR`, which cargo sets for tests). [`Step::at`]
//! takes any component file.
//!
//! Each run gets a state directory of its own (its journal), removed
//! afterwards; the compiled-plugin cache is the engine's usual one, or
//! `$STEPBACK_CACHE_DIR`.
//!
//! # Versions
//!
//! The results are read from the engine's JSON output, schema 1; this
//! crate's version follows the engine's, as `stepback-sdk`'s does.

mod built;
mod run;
mod step;

pub use run::{Change, Level, LogLine, Outcome, Problem, Refused, Rollback, Run};
pub use step::Step;
