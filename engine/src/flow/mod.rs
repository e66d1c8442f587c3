//! Flow files: their model, how they are read, and how they are validated
//! into a [`Plan`] that the runner executes without further checks.

mod field;
mod model;
mod params;
mod plan;
mod remote;
mod source;
mod validate;

pub use field::FieldPath;
pub use model::{FlowFile, LimitsDecl, MountDecl, OnFailure, ParamDecl, StepDecl};
pub use params::Params;
pub use plan::{Plan, PlannedStep};
pub use source::{FlowSource, Format};
pub use validate::validate;
