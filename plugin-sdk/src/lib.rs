//! The Stepback step SDK: what a step author depends on.
//!
//! A step is a WebAssembly component built for `wasm32-wasip2`. It reads and
//! writes files with plain `std::fs` on the guest paths of the mounts its
//! flow grants it; the host sees and journals every change. This crate hides
//! the WIT bindings behind a small surface:
//!
//! ```no_run
//! use stepback_sdk::{Context, Error, Info, Outcome, Step};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Config { path: String }
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
//! Build it with `cargo build --release --target wasm32-wasip2` and
//! `crate-type = ["cdylib"]`.

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
        path: "../wit",
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
