//! The Stepback step SDK: what a step author depends on.
//!
//! A step is a WebAssembly component built for `wasm32-wasip2`. It reads and
//! writes files with plain `std::fs` on the guest paths of the mounts its
//! flow grants it; the host sees and journals every change, and a failed
//! flow reverses them: a step has no rollback code of its own. This crate
//! hides the WIT bindings (`stepback:plugin`, carried inside it) behind a
//! small surface.
//!
//! # A whole plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "touch"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! stepback-sdk = "0.1"
//! serde = { version = "1", features = ["derive"] }
//! schemars = "1"
//!
//! [profile.release]
//! opt-level = "s"
//! lto = true
//! strip = true
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use stepback_sdk::{Context, Error, Info, Outcome, Step};
//!
//! /// The step's `with` table; its JSON Schema is derived from this type.
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     /// The file to create, on a mount's guest path.
//!     path: String,
//! }
//!
//! struct Touch;
//!
//! impl Step for Touch {
//!     type Config = Config;
//!     fn info() -> Info {
//!         Info::new("touch", env!("CARGO_PKG_VERSION"), "Creates an empty file.").writes("target")
//!     }
//!     fn run(config: Config, cx: &Context) -> Result<Outcome, Error> {
//!         std::fs::write(&config.path, b"")?;
//!         cx.info(format!("touched {}", config.path));
//!         Ok(Outcome::summary("1 file"))
//!     }
//! }
//!
//! stepback_sdk::export_step!(Touch);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the
//! component is `target/wasm32-wasip2/release/touch.wasm`, and a flow runs
//! it with `uses = "path/to/touch.wasm"`.
//!
//! # The schema from a Rust type
//!
//! [`Step::Config`] derives `schemars::JsonSchema`: `stepback validate`
//! (and every run) checks a flow's `with` table against it, with the
//! file, line and column of what is wrong, before anything runs. Doc
//! comments become the fields' descriptions; `#[serde(default)]` makes a
//! field optional; `#[serde(deny_unknown_fields)]` turns a typo into an
//! error with a "did you mean".
//!
//! # Failing a step
//!
//! Return an [`Error`]: the step fails with its message (and
//! [`Error::with_details`], shown under it), and the flow's failure policy
//! applies (by default, everything the flow changed is rolled back). An
//! `std::io::Error` converts with `?`; [`ResultExt::context`] says what was
//! being done. A panic or trap fails the step too, with a less helpful
//! message.
//!
//! ```no_run
//! # use stepback_sdk::{Error, ResultExt};
//! # fn f() -> Result<(), Error> {
//! let text = std::fs::read_to_string("/app/VERSION").context("reading the release's version")?;
//! if text.trim().is_empty() {
//!     return Err(Error::new("the release has no version").with_details("/app/VERSION is empty"));
//! }
//! # Ok(()) }
//! ```
//!
//! # Logs and progress
//!
//! [`Context::info`], [`Context::warn`] (and `debug`, `error`) add lines to
//! the step's log, which `stepback show RUN` keeps and a failed step
//! prints; [`Context::progress`] reports how far the step is (`done` of
//! `total` `unit`s), shown live by the CLI and sent as events with
//! `--output json`. [`Context::param`] reads the flow's parameters
//! (`--param release=1.4`, and `stepback.failed-step` and the like in a
//! failure's actions).
//!
//! # Commands
//!
//! [`exec::Command`] runs a program the flow grants the step
//! (`exec = ["systemctl"]`), jailed, with its changes to the step's mounts
//! journaled like the step's own; [`exec::Command::run_expecting`] fails
//! the step on a bad exit with the output's tail.
//!
//! # Versions
//!
//! The crate's version follows the WIT package it carries
//! (`stepback:plugin`, in `wit/`): `stepback-sdk` 0.1.x builds plugins
//! against `stepback:plugin@0.1.*`, which every 0.1 host runs. A WIT
//! version that adds an interface comes with an SDK release that exposes
//! it, in the same series; a WIT version that breaks plugins starts a new
//! series of both (0.2). The engine's tests keep the WIT inside this crate
//! identical to the one the host is built from, and the crate's major and
//! minor version equal to the WIT package's.

#![warn(missing_docs)]

mod context;
mod errno;
mod error;
pub mod exec;
mod info;

pub use context::{Access, Context, Mount};
pub use error::{Error, ResultExt};
pub use info::{Info, Outcome};
pub use schemars;
pub use serde;
pub use serde_json;

/// Generated bindings for the `step` world; used by [`export_step!`].
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "stepback:plugin/step",
        pub_export_macro: true,
        default_bindings_module: "stepback_sdk::bindings",
    });
}

/// A step plugin. Implement it on a unit struct and export it with
/// [`export_step!`].
pub trait Step {
    /// The step's `with` table. Its JSON Schema, derived with `schemars`,
    /// is what `stepback validate` checks flows against, so a bad config is
    /// reported with its file, line and column before anything runs.
    type Config: serde::de::DeserializeOwned + schemars::JsonSchema;

    /// Name, version, description and needs of the plugin.
    fn info() -> Info;

    /// Does the step's work. Return an [`Error`] to fail the step; a panic
    /// fails it too, with a less helpful message.
    fn run(config: Self::Config, cx: &Context) -> Result<Outcome, Error>;
}

/// Runtime glue behind [`export_step!`]; not part of the public API.
#[doc(hidden)]
pub mod __rt {
    use super::bindings::stepback::plugin::types as wit;
    use super::{Context, Step};

    pub use super::bindings::Guest;

    pub fn describe<S: Step>() -> wit::PluginInfo {
        S::info().into_wit::<S::Config>()
    }

    pub fn run<S: Step>(config: String, context: wit::StepContext) -> Result<wit::Outcome, wit::StepError> {
        let cx = Context::from_wit(context);
        let config: S::Config = serde_json::from_str(&config).map_err(|e| wit::StepError {
            message: format!("invalid step config: {e}"),
            details: None,
        })?;
        S::run(config, &cx).map(Into::into).map_err(Into::into)
    }
}

/// Exports a [`Step`] implementation as the component's `step` world.
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        const _: () = {
            struct __StepbackStep;
            impl $crate::__rt::Guest for __StepbackStep {
                fn describe() -> $crate::bindings::stepback::plugin::types::PluginInfo {
                    $crate::__rt::describe::<$step>()
                }
                fn run(
                    config: ::std::string::String,
                    context: $crate::bindings::stepback::plugin::types::StepContext,
                ) -> ::std::result::Result<
                    $crate::bindings::stepback::plugin::types::Outcome,
                    $crate::bindings::stepback::plugin::types::StepError,
                > {
                    $crate::__rt::run::<$step>(config, context)
                }
            }
    $crate::bindings::export!(__StepbackStep with_types_in $crate::bindings);
        };
    };
}
