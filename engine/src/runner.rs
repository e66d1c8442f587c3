//! Runs a validated plan's steps in order under their failure policies.

use crate::events::{Event, EventSink, FlowStatus, StepStatus};
use crate::flow::{OnFailure, Plan};
use crate::sandbox::{Sandbox, StepFailure, StepRequest};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What happened to one step.
#[derive(Debug)]
pub struct StepReport {
    pub name: String,
    pub status: StepStatus,
    pub summary: Option<String>,
    pub failure: Option<StepFailure>,
}

/// What happened to the flow.
#[derive(Debug)]
pub struct RunReport {
    pub run_id: String,
    pub status: FlowStatus,
    pub steps: Vec<StepReport>,
}

impl RunReport {
    /// The step whose failure stopped the flow.
    pub fn failed_step(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.status == StepStatus::Failed)
    }
}

/// Runs every step of `plan`; a failing step with `on-failure = "stop"`
/// ends the flow and the remaining steps are reported as skipped.
pub async fn run(plan: &Plan, sandbox: &Sandbox, events: &dyn EventSink) -> RunReport {
    let run_id = new_run_id();
    let flow_start = Instant::now();
    events.emit(Event::FlowStarted {
        flow: plan.name.clone(),
        run_id: run_id.clone(),
        steps: plan.steps.iter().map(|s| s.name.clone()).collect(),
    });
    let params = plan.params.sorted();
    let mut reports = Vec::with_capacity(plan.steps.len());
    let mut stopped = false;
    for (index, step) in plan.steps.iter().enumerate() {
        if stopped {
            events.emit(Event::StepFinished {
                index,
                step: step.name.clone(),
                status: StepStatus::Skipped,
                millis: 0.0,
                summary: None,
                error: None,
                details: None,
                log: Vec::new(),
            });
            reports.push(StepReport {
                name: step.name.clone(),
                status: StepStatus::Skipped,
                summary: None,
                failure: None,
            });
            continue;
        }
        events.emit(Event::StepStarted {
            index,
            step: step.name.clone(),
            plugin: step.uses.clone(),
        });
        let start = Instant::now();
        let run = sandbox
            .run(
                &step.plugin,
                StepRequest {
                    flow: &plan.name,
                    step: &step.name,
                    run_id: &run_id,
                    config: &step.config,
                    mounts: &step.mounts,
                    params: params.clone(),
                    limits: step.limits,
                },
            )
            .await;
        let (status, summary, failure) = match run.result {
            Ok(summary) => (StepStatus::Succeeded, summary, None),
            Err(failure) if step.on_failure == OnFailure::Continue => {
                (StepStatus::FailedIgnored, None, Some(failure))
            }
            Err(failure) => {
                stopped = true;
                (StepStatus::Failed, None, Some(failure))
            }
        };
        events.emit(Event::StepFinished {
            index,
            step: step.name.clone(),
            status,
            millis: start.elapsed().as_secs_f64() * 1e3,
            summary: summary.clone(),
            error: failure.as_ref().map(|f| f.message.clone()),
            details: failure.as_ref().and_then(|f| f.details.clone()),
            log: run.log,
        });
        reports.push(StepReport {
            name: step.name.clone(),
            status,
            summary,
            failure,
        });
    }
    let status = if stopped {
        FlowStatus::Failed
    } else {
        FlowStatus::Succeeded
    };
    let report = RunReport {
        run_id,
        status,
        steps: reports,
    };
    events.emit(Event::FlowFinished {
        flow: plan.name.clone(),
        run_id: report.run_id.clone(),
        status,
        millis: flow_start.elapsed().as_secs_f64() * 1e3,
        failed_step: report.failed_step().map(|s| s.name.clone()),
    });
    report
}

/// A sortable, unique-enough id: UTC time to the second, then the low bits
/// of the nanoseconds and the process id.
fn new_run_id() -> String {
    let now = SystemTime::now();
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let nanos = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{stamp}-{:04x}", (nanos ^ std::process::id()) & 0xffff)
}
