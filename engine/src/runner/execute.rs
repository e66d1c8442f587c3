//! Running one step or action in its sandbox, with the run's context
//! (its plan, parameters, pinned mounts and events), its records
//! bracketed in the journal.

use super::journaled::Journaled;
use super::start::Pinned;
use crate::cancel::Cancel;
use crate::events::{Emitter, EventSink};
use crate::flow::{Plan, PlannedStep};
use crate::grant::Mount;
use crate::journal::MountFs;
use crate::sandbox::{FailureReason, Sandbox, StepFailure, StepRequest, StepRun};
use std::sync::Arc;

/// What every step and action of a run is run with.
pub(super) struct Ctx<'a> {
    pub plan: &'a Plan,
    pub sandbox: &'a Sandbox,
    pub sink: Arc<dyn EventSink>,
    pub events: Emitter,
    pub run_id: String,
    pub params: Vec<(String, String)>,
    pub pinned: Pinned,
    pub state_dir: &'a std::path::Path,
}

/// What is run: a step (its index in the flow), or an action (its index
/// in the journal, after the steps', and its name).
#[derive(Clone, Copy)]
pub(super) enum Role<'a> {
    /// A step, by index, whether a rollback reverts its changes, and the
    /// actions an interrupt during it would run.
    Step(usize, bool, &'a [crate::journal::FailureAction]),
    Action(usize, &'a str),
}

impl Ctx<'_> {
    /// Runs a step or an action in its sandbox, its records bracketed in
    /// the journal; `extra` parameters join the flow's (an action's
    /// failure context).
    pub async fn execute(
        &self,
        step: &PlannedStep,
        role: Role<'_>,
        journal: Option<&Journaled>,
        cancel: Cancel,
        extra: Vec<(String, String)>,
    ) -> StepRun {
        if let Some(why) = moved_mount(&step.mounts, &self.pinned) {
            return StepRun {
                result: Err(StepFailure {
                    reason: FailureReason::Setup,
                    message: why,
                    details: None,
                }),
                log: Vec::new(),
            };
        }
        let mut params = self.params.clone();
        params.extend(extra);
        params.sort();
        let request = StepRequest {
            journal: journal.map(Journaled::shared),
            room: journal.map(Journaled::room),
            flow: &self.plan.name,
            step: &step.name,
            run_id: &self.run_id,
            events: self.sink.clone(),
            cancel,
            config: &step.config,
            mounts: &step.mounts,
            pinned: step
                .mounts
                .iter()
                .map(|m| self.pinned[&m.name].1.clone())
                .collect(),
            params,
            limits: step.limits,
            exec: &step.exec,
            scratch: match journal {
                Some(j) => j.dir.backup().join("exec"),
                None => self.state_dir.join("exec"),
            },
        };
        let mut run = run_step(self.sandbox, &step.plugin, request, role, journal).await;
        // A mount replaced between the check above and the sandbox's set-up
        // fails the set-up; say why, as the check would have.
        if let Err(failure) = &mut run.result
            && failure.reason == FailureReason::Setup
            && let Some(why) = moved_mount(&step.mounts, &self.pinned)
        {
            failure.message = why;
        }
        run
    }
}

/// Why a step cannot run: one of its mounts is no longer the directory the
/// run started with.
fn moved_mount(mounts: &[Mount], pinned: &Pinned) -> Option<String> {
    mounts.iter().find_map(|m| {
        let now = MountFs::open(&m.name, &m.host).map(|fs| fs.id);
        match now {
            Ok(id) if Some(id) == pinned.get(&m.name).map(|p| p.0) => None,
            Ok(_) => Some(format!(
                "mount '{}' ({}) is no longer the directory the run started with: it was replaced or moved",
                m.name,
                m.host.display()
            )),
            Err(e) => Some(format!("mount '{}' cannot be opened: {e}", m.name)),
        }
    })
}

/// Runs one step or action, with its records bracketed in the journal;
/// a journal that cannot be written fails it.
async fn run_step(
    sandbox: &Sandbox,
    plugin: &crate::sandbox::Plugin,
    request: StepRequest<'_>,
    role: Role<'_>,
    journal: Option<&Journaled>,
) -> StepRun {
    let journal_failure = |what: &str, e: std::io::Error, log| StepRun {
        result: Err(StepFailure {
            reason: FailureReason::Setup,
            message: format!("cannot {what} the journal: {e}"),
            details: None,
        }),
        log,
    };
    if let Some(j) = journal {
        let started = match role {
            Role::Step(index, revert, if_stopped) => {
                let mut j = j.lock();
                j.start_step(index, request.step, if_stopped)
                    .and_then(|()| if revert { Ok(()) } else { j.keep_step(index) })
            }
            Role::Action(index, name) => j.lock().start_action(index, name),
        };
        if let Err(e) = started {
            return journal_failure("write", e, Vec::new());
        }
    }
    let mut run = sandbox.run(plugin, request).await;
    let ended = journal.map(|j| {
        let mut j = j.lock();
        j.end_step()?;
        let unrestored = j.take_unrestored();
        if !unrestored.is_empty() && run.result.is_ok() {
            run.result = Err(StepFailure {
                reason: FailureReason::Setup,
                message: format!(
                    "a failed call left a change behind that could not be put back ({}): failing the step, so that it is rolled back",
                    unrestored.join("; ")
                ),
                details: None,
            });
        }
        match role {
            Role::Action(index, _) => {
                j.action_ended(index, run.result.as_ref().err().map(|e| e.message.clone()))
            }
            Role::Step(..) => Ok(()),
        }
    });
    match ended {
        Some(Err(e)) => journal_failure("sync", e, run.log),
        _ => run,
    }
}
