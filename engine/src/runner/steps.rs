//! The steps of a run, in order, until one fails under a policy that
//! stops the flow, or the run is interrupted; the rest are skipped.

use super::StepReport;
use super::execute::{Ctx, Role};
use super::failure::{self, Failure};
use super::journaled::Journaled;
use crate::cancel::Cancel;
use crate::events::{Event, StepStatus};
use crate::flow::{OnFailure, PlannedStep};
use std::time::Instant;

/// Runs the steps of the flow in order; says how each ended and, if one
/// ended the flow (or the run was interrupted), that failure.
pub(super) async fn run_all(
    ctx: &Ctx<'_>,
    journal: Option<&Journaled>,
    cancel: &Cancel,
) -> (Vec<StepReport>, Option<Failure>) {
    let mut reports = Vec::with_capacity(ctx.plan.steps.len());
    let mut failure: Option<Failure> = None;
    for (index, step) in ctx.plan.steps.iter().enumerate() {
        if failure.is_none() && cancel.is_cancelled() {
            failure = Some(Failure::interrupted_between(&reports));
        }
        let report = match failure {
            Some(_) => skip(ctx, index, step),
            None => {
                let (report, failed) = run_one(ctx, journal, (index, step), &reports, cancel).await;
                failure = failed;
                report
            }
        };
        reports.push(report);
    }
    (reports, failure)
}

/// A step after the one that ended the flow: not run.
fn skip(ctx: &Ctx<'_>, index: usize, step: &PlannedStep) -> StepReport {
    let report = StepReport {
        name: step.name.clone(),
        status: StepStatus::Skipped,
        summary: None,
        failure: None,
    };
    ctx.events.emit(report.finished(index, 0, Vec::new()));
    report
}

/// Runs step `index` (`so_far`: how the earlier ones ended); its report,
/// and the failure that ends the flow if it does.
async fn run_one(
    ctx: &Ctx<'_>,
    journal: Option<&Journaled>,
    (index, step): (usize, &PlannedStep),
    so_far: &[StepReport],
    cancel: &Cancel,
) -> (StepReport, Option<Failure>) {
    ctx.events.emit(Event::StepStarted {
        index,
        step: step.name.clone(),
        plugin: step.uses.clone(),
        sha256: step.plugin.sha256.clone(),
    });
    let start = Instant::now();
    let mut statuses: Vec<StepStatus> = so_far.iter().map(|r| r.status).collect();
    statuses.push(StepStatus::Failed);
    let if_stopped = failure::recorded(&failure::actions_of(
        ctx.plan,
        &statuses,
        &Failure::stopped_in(index, &step.name),
    ));
    let role = Role::Step(index, step.revert, &if_stopped);
    let run = ctx.execute(step, role, journal, cancel.clone(), Vec::new()).await;
    let interrupted = cancel.is_cancelled();
    let mut failure = None;
    let (status, summary, error) = match run.result {
        Ok(summary) => (StepStatus::Succeeded, summary, None),
        Err(error) if step.on_failure == OnFailure::Continue && !interrupted => {
            (StepStatus::FailedIgnored, None, Some(error))
        }
        Err(error) => {
            failure = Some(Failure {
                index: Some(index),
                step: step.name.clone(),
                error: error.message.clone(),
                // An interrupted flow rolls back, whatever the step says.
                policy: match interrupted {
                    true => OnFailure::Rollback,
                    false => step.on_failure,
                },
                interrupted,
            });
            (StepStatus::Failed, None, Some(error))
        }
    };
    let report = StepReport {
        name: step.name.clone(),
        status,
        summary,
        failure: error,
    };
    let duration_us = crate::events::micros_since(start);
    ctx.events.emit(report.finished(index, duration_us, run.log));
    (report, failure)
}
