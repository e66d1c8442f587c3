//! What a failed flow does, in one order:
//!
//! 1. the customized actions the failure triggers, newest step first (a
//!    step's own `this-step` actions when it is the one that failed, and
//!    the `any-step` actions of every step that ran up to it; a step whose
//!    failure is ignored triggers nothing);
//! 2. under `on-failure = "rollback"`, the journaled revert of every change
//!    the flow made, newest first;
//! 3. then the flow's rollback action.
//!
//! Undo runs backwards: an action undoes what its step did, and the later
//! steps' effects (a service started from the new files) must be undone
//! before the earlier ones (the files). So actions run newest step first,
//! before the revert takes the files they may need away; and the flow's
//! action runs last, on the restored files (starting the previous
//! version). Each action's outcome is reported and recorded; a failing one
//! does not stop the rest, and the flow then ends
//! "failed-rollback-incomplete". What actions change in mounts is
//! journaled as the rollback's own and never reverted (the flow's action
//! in the journal resumed after the revert, which ends by stating the
//! rollback's outcome again: a crash during it leaves a run that
//! `recover` closes without touching what the action did).

use super::{Ctx, Journaled, Role, StepReport};
use crate::cancel::Cancel;
use crate::events::{ActionTrigger, Event, StepStatus};
use crate::flow::{OnFailure, Plan, PlannedStep, Trigger};
use std::time::Instant;

/// The failure that ended a flow.
pub(super) struct Failure {
    /// The step that failed, by index; none when the run was interrupted
    /// between steps.
    pub index: Option<usize>,
    /// Its name (or the last step that ran), for messages.
    pub step: String,
    /// Why it failed.
    pub error: String,
    /// What the failure does.
    pub policy: OnFailure,
    /// Whether the run was interrupted (Ctrl-C, SIGTERM).
    pub interrupted: bool,
}

impl Failure {
    /// What an interrupt during step `index` would be: the failure
    /// `recover` names the actions of, if the engine stops during it.
    pub fn stopped_in(index: usize, step: &str) -> Failure {
        Failure {
            index: Some(index),
            step: step.to_owned(),
            error: "the engine stopped".to_owned(),
            policy: OnFailure::Rollback,
            interrupted: true,
        }
    }

    /// A run interrupted between steps: it rolls back as if the next step
    /// had failed before it started.
    pub fn interrupted_between(reports: &[StepReport]) -> Failure {
        Failure {
            index: None,
            step: reports.last().map(|r| r.name.clone()).unwrap_or_default(),
            error: "the run was interrupted".to_owned(),
            policy: OnFailure::Rollback,
            interrupted: true,
        }
    }
}

/// How one action went.
#[derive(Debug, Clone)]
pub struct ActionReport {
    /// Its name.
    pub name: String,
    /// The step it belongs to; none for the flow's rollback action.
    pub step: Option<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// An action a failure runs.
pub(super) struct Planned<'p> {
    /// Its index in the journal.
    index: usize,
    action: &'p PlannedStep,
    /// The step it belongs to; none for the flow's rollback action.
    step: Option<&'p str>,
    trigger: ActionTrigger,
}

impl Planned<'_> {
    /// Whether it is the flow's rollback action, which runs after the
    /// revert.
    pub fn after_revert(&self) -> bool {
        self.step.is_none()
    }
}

/// The actions `failure` runs, in order: the customized actions it
/// triggers, newest step first; then, if it reverts, the flow's rollback
/// action (its records, in the journal resumed after the rollback's, after
/// the steps' actions'). `statuses`: how each step so far ended.
pub(super) fn actions_of<'p>(plan: &'p Plan, statuses: &[StepStatus], failure: &Failure) -> Vec<Planned<'p>> {
    let mut out = Vec::new();
    let mut index = plan.steps.len();
    for (s, status) in statuses.iter().enumerate().rev() {
        if *status == StepStatus::Skipped {
            continue;
        }
        let step = &plan.steps[s];
        for action in &step.actions {
            let trigger = match action.trigger {
                Trigger::AnyStep => ActionTrigger::AnyStep,
                Trigger::ThisStep if failure.index == Some(s) => ActionTrigger::ThisStep,
                Trigger::ThisStep => continue,
            };
            out.push(Planned {
                index,
                action: &action.action,
                step: Some(&step.name),
                trigger,
            });
            index += 1;
        }
    }
    if let Some(action) = plan.rollback.action.as_deref()
        && failure.policy == OnFailure::Rollback
    {
        out.push(Planned {
            index: plan.steps.len() + plan.steps.iter().map(|s| s.actions.len()).sum::<usize>(),
            action,
            step: None,
            trigger: ActionTrigger::Rollback,
        });
    }
    out
}

/// What the journal records of `planned` before any of them runs.
pub(super) fn recorded(planned: &[Planned]) -> Vec<crate::journal::FailureAction> {
    planned
        .iter()
        .map(|p| crate::journal::FailureAction {
            index: p.index,
            name: p.action.name.clone(),
        })
        .collect()
}

/// Runs `planned` in order.
pub(super) async fn run_actions(
    ctx: &Ctx<'_>,
    journal: Option<&Journaled>,
    planned: &[&Planned<'_>],
    failure: &Failure,
) -> Vec<ActionReport> {
    let mut out = Vec::new();
    for p in planned {
        out.push(run_action(ctx, journal, p.action, (p.index, p.step, p.trigger), failure).await);
    }
    out
}

async fn run_action(
    ctx: &Ctx<'_>,
    journal: Option<&Journaled>,
    action: &PlannedStep,
    (index, step, trigger): (usize, Option<&str>, ActionTrigger),
    failure: &Failure,
) -> ActionReport {
    ctx.events.emit(Event::ActionStarted {
        action: action.name.clone(),
        step: step.map(str::to_owned),
        trigger,
        plugin: action.uses.clone(),
    });
    let start = Instant::now();
    // What failed, for the action (its parameters; its commands'
    // environment as STEPBACK_*).
    let context = vec![
        ("stepback.failed-step".to_owned(), failure.step.clone()),
        ("stepback.error".to_owned(), failure.error.clone()),
        ("stepback.trigger".to_owned(), trigger.as_str().to_owned()),
    ];
    // A second interruption must not cut the rollback short: actions
    // run to their own limits.
    let run = ctx
        .execute(
            action,
            Role::Action(index, &action.name),
            journal,
            Cancel::new(),
            context,
        )
        .await;
    let (status, summary, error) = match run.result {
        Ok(summary) => (StepStatus::Succeeded, summary, None),
        Err(e) => (StepStatus::Failed, None, Some(e.message)),
    };
    ctx.events.emit(Event::ActionFinished {
        action: action.name.clone(),
        status,
        duration_us: crate::events::micros_since(start),
        summary,
        error: error.clone(),
        log: run.log,
    });
    ActionReport {
        name: action.name.clone(),
        step: step.map(str::to_owned),
        error,
    }
}
