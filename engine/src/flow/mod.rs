//! Flow files: their model, how they are read, and how they are validated
//! into a [`Plan`] that the runner executes without further checks.

mod field;
mod identity;
mod model;
mod params;
mod plan;
mod remote;
mod single;
mod source;
mod standin;
mod unknown;
mod validate;

pub use field::FieldPath;
pub use model::{
    ActionDecl, FlowFile, LimitsDecl, MountDecl, OnFailure, ParamDecl, RollbackDecl, StepDecl, Trigger,
};
pub use params::Params;
pub use plan::{Plan, PlannedAction, PlannedStep, RollbackPlan};
pub use single::{MountArg, ONE_STEP_FLOW, OneStep};
pub use source::{FlowSource, Format};
pub use validate::validate;
