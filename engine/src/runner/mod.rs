//! Runs a validated plan's steps in order under their failure policies,
//! journaling every change they make to read-write mounts, in phases:
//! `start.rs` (locks, pinned mounts, the journal begun), `steps.rs` (each
//! step in its sandbox), `failure.rs` (what a failure runs: actions, the
//! revert, the flow's rollback action, in one documented order), and the
//! conclusion here, with the one function that decides the outcome.
//! `execute.rs` runs one step or action; `journaled.rs` carries the run's
//! journal through its states.

use crate::cancel::Cancel;
use crate::events::{Emitter, Event, EventSink, FlowStatus, StepStatus};
use crate::flow::{OnFailure, Plan};
use crate::journal::{Durability, RollbackReport};
use crate::sandbox::{Sandbox, StepFailure};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

mod execute;
mod failure;
mod journaled;
mod start;
mod steps;

use execute::Ctx;
pub use failure::ActionReport;
use failure::Failure;

/// Where and how a run keeps its journal.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where runs are journaled and locks are kept: local, private (checked), outside every
    /// mount.
    pub state_dir: PathBuf,
    /// How many committed runs keep their backups (and can be undone).
    pub keep: usize,
    /// When journal records are synced.
    pub durability: Durability,
    /// Off: nothing is recorded and a failed flow is not rolled back (for
    /// measuring the journal's cost, or flows that must not keep backups).
    pub journal: bool,
    /// Bytes kept free on every filesystem the run writes to, beyond the
    /// copies a rollback may write back (the journal's free-space reserve).
    pub reserve: u64,
    /// Stops the run from outside (see [`Cancel`]).
    pub cancel: Cancel,
    /// How long to wait for mounts another flow holds (`None`: not at all,
    /// the run fails at once as busy).
    pub wait: Option<std::time::Duration>,
}

impl RunOptions {
    /// The defaults `stepback run` uses, with records kept in `state_dir`:
    /// journaled, synced before every change, 64 MiB kept free, the newest
    /// [`crate::history::DEFAULT_KEEP`] committed runs undoable.
    pub fn new(state_dir: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            state_dir: state_dir.into(),
            keep: crate::history::DEFAULT_KEEP,
            durability: Durability::Strict,
            journal: true,
            reserve: DEFAULT_RESERVE,
            cancel: Cancel::new(),
            wait: None,
        }
    }
}

/// The free space a run keeps by default on every filesystem it writes
/// to, beyond its copies (the journal's free-space reserve).
pub const DEFAULT_RESERVE: u64 = 64 << 20;

/// Why a run did not start. Nothing was changed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// Earlier runs did not finish (the engine or the machine stopped);
    /// [`crate::recovery::recover`] must roll them back first.
    NeedsRecovery {
        /// The runs, as the state directory lists them.
        runs: Vec<crate::journal::RunSummary>,
    },
    /// A mount is locked by another flow that is running.
    Busy(crate::journal::InUse),
    /// The journal could not be set up.
    Journal(anyhow::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::NeedsRecovery { runs } => {
                let named: Vec<String> = runs
                    .iter()
                    .map(|r| format!("run {} of flow '{}'", r.dir.id, r.flow))
                    .collect();
                write!(
                    f,
                    "{} did not finish and may have left mounts half-changed: {} must be rolled back first",
                    named.join(", "),
                    if runs.len() == 1 { "it" } else { "they" }
                )
            }
            RunError::Busy(in_use) => in_use.fmt(f),
            RunError::Journal(e) => write!(f, "cannot set up the run's journal: {e:#}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Busy(in_use) => Some(in_use),
            RunError::Journal(e) => Some(e.as_ref()),
            RunError::NeedsRecovery { .. } => None,
        }
    }
}

/// What happened to one step.
#[derive(Debug)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// How it ended.
    pub status: StepStatus,
    /// What the step says it did, when it succeeded.
    pub summary: Option<String>,
    /// Why it failed, when it did.
    pub failure: Option<StepFailure>,
}

/// What happened to the flow.
#[derive(Debug)]
pub struct RunReport {
    /// The run's id, as the journal and `show` know it.
    pub run_id: String,
    /// How the run ended.
    pub status: FlowStatus,
    /// Every step, in flow order (skipped ones included).
    pub steps: Vec<StepReport>,
    /// The actions the failure ran, in the order they ran.
    pub actions: Vec<ActionReport>,
    /// Present when the flow failed and was rolled back.
    pub rollback: Option<RollbackReport>,
}

impl StepReport {
    /// The event that says how step `index` ended: built from the report,
    /// so that the two cannot disagree.
    fn finished(&self, index: usize, duration_us: u64, log: Vec<crate::events::LogLine>) -> Event {
        Event::StepFinished {
            index,
            step: self.name.clone(),
            status: self.status,
            duration_us,
            summary: self.summary.clone(),
            error: self.failure.as_ref().map(|f| f.message.clone()),
            details: self.failure.as_ref().and_then(|f| f.details.clone()),
            log,
        }
    }
}

impl RunReport {
    /// The step whose failure stopped the flow.
    pub fn failed_step(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.status == StepStatus::Failed)
    }
}

/// Runs every step of `plan`. A failing step ends the flow unless its
/// policy is "continue": the remaining steps are skipped, the actions the
/// failure triggers run (newest step first), and, under "rollback",
/// every change the flow made is reverted (newest first) and the flow's
/// rollback action runs. In phases: start, steps, what a failure runs,
/// conclusion.
pub async fn run(
    plan: &Plan,
    sandbox: &Sandbox,
    sink: Arc<dyn EventSink>,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    let begun = start::begin(plan, options, sink).await?;
    let flow_start = Instant::now();
    let ctx = Ctx {
        plan,
        sandbox,
        sink: begun.sink.clone(),
        events: Emitter::for_run(&begun.run_id, begun.sink.clone()),
        run_id: begun.run_id.clone(),
        params: plan.params.sorted(),
        pinned: begun.pinned,
        state_dir: &options.state_dir,
    };
    ctx.events.emit(Event::FlowStarted {
        flow: plan.name.clone(),
        steps: plan.steps.iter().map(|s| s.name.clone()).collect(),
        file: plan.file.clone(),
        params: ctx.params.iter().cloned().collect(),
    });
    let (reports, failure) = steps::run_all(&ctx, begun.journal.as_ref(), &options.cancel).await;
    let ended = failure::end(&ctx, begun.journal, (failure.as_ref(), &reports), &begun.writable).await;
    Ok(conclude(&ctx, options, (reports, failure), ended, flow_start))
}

/// The end of a run: old runs' backups pruned, the outcome decided and
/// said in the last event.
fn conclude(
    ctx: &Ctx<'_>,
    options: &RunOptions,
    (reports, failure): (Vec<StepReport>, Option<Failure>),
    ended: failure::Ended,
    flow_start: Instant,
) -> RunReport {
    if let Err(e) = crate::history::prune(&options.state_dir, options.keep) {
        ctx.events.emit(Event::Warning {
            message: format!("could not prune old runs' backups: {e:#}"),
        });
    }
    let failure::Ended {
        actions,
        rollback,
        uncommitted,
    } = ended;
    let incomplete = rollback.as_ref().is_some_and(|r| !r.problems.is_empty())
        || actions.iter().any(|a| a.error.is_some());
    let status = outcome(failure.as_ref(), uncommitted, incomplete, rollback.is_some());
    let revert = failure.as_ref().is_some_and(|f| f.policy == OnFailure::Rollback);
    let (kept_steps, kept_actions) = match revert {
        true => kept_on_purpose(ctx.plan, &reports, &actions),
        false => Default::default(),
    };
    ctx.events.emit(Event::FlowFinished {
        flow: ctx.plan.name.clone(),
        status,
        duration_us: crate::events::micros_since(flow_start),
        failed_step: failure.map(|f| f.step),
        kept_steps,
        kept_actions,
        journaled: options.journal,
    });
    RunReport {
        run_id: ctx.run_id.clone(),
        status,
        steps: reports,
        actions,
        rollback,
    }
}

/// What a rolled-back run did not revert on purpose: the steps that ran
/// with `revert = false`, and the actions that ran.
fn kept_on_purpose(
    plan: &Plan,
    reports: &[StepReport],
    actions: &[failure::ActionReport],
) -> (Vec<String>, Vec<String>) {
    let steps = plan
        .steps
        .iter()
        .zip(reports)
        .filter(|(step, report)| !step.revert && !matches!(report.status, StepStatus::Skipped));
    (
        steps.map(|(step, _)| step.name.clone()).collect(),
        actions.iter().map(|a| a.name.clone()).collect(),
    )
}

/// How a run ended, the one place it is decided (its last event says it,
/// and the exit code is its): a rollback that did not restore every path
/// or an action that failed needs attention above all else, whatever
/// started it (a failure, or a commit that could not be recorded); a
/// failure whose changes were not `reverted` (`on-failure = "stop"`, or
/// no journal to revert them with) left them in place.
fn outcome(failure: Option<&Failure>, uncommitted: bool, incomplete: bool, reverted: bool) -> FlowStatus {
    match failure {
        _ if incomplete => FlowStatus::RollbackIncomplete,
        _ if uncommitted => FlowStatus::Uncommitted,
        None => FlowStatus::Succeeded,
        Some(_) if !reverted => FlowStatus::NotRolledBack,
        Some(f) if f.interrupted => FlowStatus::Interrupted,
        Some(_) => FlowStatus::RolledBack,
    }
}

#[cfg(test)]
mod tests {
    use super::{Failure, FlowStatus, OnFailure, outcome};

    fn failed(policy: OnFailure, interrupted: bool) -> Failure {
        Failure {
            index: Some(0),
            step: "s".into(),
            error: "e".into(),
            policy,
            interrupted,
        }
    }

    #[test]
    fn an_incomplete_rollback_outranks_every_other_outcome() {
        // A run whose commit failed and whose rollback then left a path:
        // the event and the exit code both say it needs attention.
        assert_eq!(outcome(None, true, true, true), FlowStatus::RollbackIncomplete);
        // A failed action, whether the changes were reverted or kept.
        for (policy, reverted) in [(OnFailure::Rollback, true), (OnFailure::Stop, false)] {
            let f = failed(policy, true);
            assert_eq!(
                outcome(Some(&f), false, true, reverted),
                FlowStatus::RollbackIncomplete
            );
        }
    }

    #[test]
    fn a_busy_mount_is_one_error_with_its_cause() {
        use std::error::Error;
        let in_use = crate::journal::InUse {
            mount: "app".into(),
            host: "/srv/app".into(),
            holder: "run r of flow 'f' (pid 7)".into(),
        };
        let said = "mount 'app' (/srv/app) is in use by another flow: run r of flow 'f' (pid 7)";
        let run = super::RunError::Busy(in_use.clone());
        assert_eq!(run.to_string(), said);
        assert_eq!(run.source().map(ToString::to_string).as_deref(), Some(said));
        let undo = crate::history::UndoError::Busy(in_use.clone());
        let recover = crate::recovery::RecoverError::Busy(in_use);
        for e in [&undo as &dyn Error, &recover] {
            assert_eq!(e.to_string(), said);
            assert!(e.source().is_some());
        }
    }

    #[test]
    fn otherwise_each_outcome_is_its_own() {
        assert_eq!(outcome(None, false, false, false), FlowStatus::Succeeded);
        assert_eq!(outcome(None, true, false, true), FlowStatus::Uncommitted);
        let cases = [
            (failed(OnFailure::Rollback, false), true, FlowStatus::RolledBack),
            (failed(OnFailure::Rollback, true), true, FlowStatus::Interrupted),
            (failed(OnFailure::Stop, false), false, FlowStatus::NotRolledBack),
            // No journal: nothing was reverted, whatever the policy.
            (
                failed(OnFailure::Rollback, false),
                false,
                FlowStatus::NotRolledBack,
            ),
            (
                failed(OnFailure::Rollback, true),
                false,
                FlowStatus::NotRolledBack,
            ),
        ];
        for (f, reverted, status) in cases {
            assert_eq!(outcome(Some(&f), false, false, reverted), status);
        }
    }
}
