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

use super::StepReport;
use super::execute::{Ctx, Role};
use super::journaled::{Finished, Journaled, RolledBack};
use crate::cancel::Cancel;
use crate::events::{ActionTrigger, Event, StepStatus};
use crate::flow::{OnFailure, Plan, PlannedStep, Trigger};
use crate::grant::Mount;
use crate::journal::{Ending, RollbackReport};
use std::time::Instant;

/// How the journal of a run ended, and what its failure ran.
pub(super) struct Ended {
    /// The actions run, in the order they ran.
    pub actions: Vec<ActionReport>,
    /// The rollback's report, if the run was rolled back.
    pub rollback: Option<RollbackReport>,
    /// Every step succeeded, but the commit could not be recorded (the run
    /// was rolled back).
    pub uncommitted: bool,
}

/// Ends the journal of a run whose steps ran (`reports`): committed,
/// or, after a `failure`, what it triggers, in the order above.
pub(super) async fn end(
    ctx: &Ctx<'_>,
    journal: Option<Journaled>,
    (failure, reports): (Option<&Failure>, &[StepReport]),
    writable: &[&Mount],
) -> Ended {
    let statuses: Vec<StepStatus> = reports.iter().map(|r| r.status).collect();
    let planned = failure
        .map(|f| actions_of(ctx.plan, &statuses, f))
        .unwrap_or_default();
    if let (Some(f), Some(j)) = (failure, journal.as_ref()) {
        record_failure(ctx, j, f, &planned);
    }
    let (before, after): (Vec<_>, Vec<_>) = planned.iter().partition(|p| !p.after_revert());
    let mut actions = Vec::new();
    if let Some(failure) = failure {
        actions.extend(run_actions(ctx, journal.as_ref(), &before, failure).await);
    }
    let revert = failure.is_some_and(|f| f.policy == OnFailure::Rollback);
    let ending = match after.is_empty() {
        true => Ending::Final,
        false => Ending::ActionFollows,
    };
    let (rollback, rolled) = match finish(ctx, journal, revert, ending) {
        Some(Finished::RolledBack(report, rolled)) => (Some(report), Some(rolled)),
        Some(Finished::Committed) | None => (None, None),
    };
    let uncommitted = rolled.as_ref().is_some_and(|r| r.uncommitted);
    if let Some(failure) = failure
        && !after.is_empty()
    {
        let rolled = rolled.zip(rollback.as_ref());
        actions.extend(rollback_action(ctx, rolled, &after, failure, writable).await);
    }
    Ended {
        actions,
        rollback,
        uncommitted,
    }
}

/// Records in the journal that `failure` ended the flow, and the actions
/// it is about to run (`recover` names them if the engine stops).
fn record_failure(ctx: &Ctx<'_>, journal: &Journaled, failure: &Failure, planned: &[Planned]) {
    let policy = match failure.policy {
        OnFailure::Stop => "stop",
        OnFailure::Continue => "continue",
        _ => "rollback",
    };
    let recorded = journal.lock().failed(
        (&failure.step, policy),
        failure.interrupted,
        self::recorded(planned),
    );
    if let Err(e) = recorded {
        ctx.events.emit(Event::Warning {
            message: format!("could not record the failure in the journal: {e}"),
        });
    }
}

/// Commits the run, or rolls it back (`revert`); without a journal, says
/// that nothing was rolled back.
fn finish(ctx: &Ctx<'_>, journal: Option<Journaled>, revert: bool, ending: Ending) -> Option<Finished> {
    if journal.is_none() && revert {
        ctx.events.emit(Event::Warning {
            message: "the journal is off: the flow's changes were not rolled back".into(),
        });
    }
    journal.map(|j| j.finish((revert, ending), &ctx.events))
}

/// Runs the flow's rollback action after the rollback (`rolled`, with its
/// report; none without a journal): its records follow the rollback's,
/// and end the run by stating its outcome again.
async fn rollback_action(
    ctx: &Ctx<'_>,
    rolled: Option<(RolledBack, &RollbackReport)>,
    after: &[&Planned<'_>],
    failure: &Failure,
    writable: &[&Mount],
) -> Vec<ActionReport> {
    let resumed = match rolled.map(|(rolled, report)| (rolled.resume(writable), report)) {
        Some((Ok(resumed), report)) => Some((resumed, report)),
        // What it changed could not be journaled, so not rolled back if
        // it failed, nor known to `recover` if the engine stopped in it.
        Some((Err((e, unresumed)), report)) => {
            let why = format!("not run: the run's mounts cannot be opened again to journal it ({e})");
            let indexes: Vec<usize> = after.iter().map(|p| p.index).collect();
            if let Err(e) = unresumed.close(&indexes, &why, report) {
                ctx.events.emit(Event::Warning {
                    message: format!("could not record the end of the rollback: {e}"),
                });
            }
            return after.iter().map(|p| not_run(ctx, p, &why)).collect();
        }
        None => None,
    };
    let journal = resumed.as_ref().map(|(r, _)| &r.journal);
    let actions = run_actions(ctx, journal, after, failure).await;
    if let Some((resumed, report)) = resumed
        && let Err(e) = resumed.close(report)
    {
        ctx.events.emit(Event::Warning {
            message: format!("could not record the end of the flow's rollback action: {e}"),
        });
    }
    actions
}

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
async fn run_actions(
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

/// An action that does not run, and why, reported as a failed one.
fn not_run(ctx: &Ctx<'_>, p: &Planned<'_>, why: &str) -> ActionReport {
    let name = p.action.name.clone();
    ctx.events.emit(Event::ActionStarted {
        action: name.clone(),
        step: p.step.map(str::to_owned),
        trigger: p.trigger,
        plugin: p.action.uses.clone(),
    });
    ctx.events.emit(Event::ActionFinished {
        action: name.clone(),
        status: StepStatus::Failed,
        duration_us: 0,
        summary: None,
        error: Some(why.to_owned()),
        log: Vec::new(),
    });
    ActionReport {
        name,
        step: p.step.map(str::to_owned),
        error: Some(why.to_owned()),
    }
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
