//! Runs a validated plan's steps in order under their failure policies,
//! journaling every change they make to read-write mounts; what a failure
//! does then (actions, the revert, the flow's rollback action, in one
//! documented order) is `failure.rs`'s.

use crate::cancel::Cancel;
use crate::events::{Emitter, Event, EventSink, FlowStatus, StepStatus};
use crate::flow::{OnFailure, Plan, PlannedStep};
use crate::grant::{Access, Mount};
use crate::journal::{
    Durability, Ending, Fault, MountFs, MountLocks, Problem, RollbackReport, Room, RunDir, RunJournal,
    RunStore, rollback,
};
use crate::sandbox::{FailureReason, Sandbox, StepFailure, StepRequest, StepRun};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

mod failure;

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
/// rollback action runs.
pub async fn run(
    plan: &Plan,
    sandbox: &Sandbox,
    sink: Arc<dyn EventSink>,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    crate::state::ensure_private(&options.state_dir).map_err(RunError::Journal)?;
    let pending = crate::recovery::abandoned(&options.state_dir).map_err(RunError::Journal)?;
    if !pending.is_empty() {
        return Err(RunError::NeedsRecovery { runs: pending });
    }
    let run_id = new_run_id();
    let writable: Vec<&Mount> = plan
        .mounts
        .iter()
        .filter(|m| m.access == Access::ReadWrite)
        .collect();
    let holder = format!(
        "run {run_id} of flow '{}' (pid {})",
        plan.name,
        std::process::id()
    );
    let lock_list: Vec<_> = writable
        .iter()
        .map(|m| (m.name.clone(), m.host.clone()))
        .collect();
    let _locks = lock_mounts(
        options,
        &lock_list,
        &holder,
        &Emitter::for_run(&run_id, sink.clone()),
    )
    .await?;
    let pinned = pin(&plan.mounts).map_err(RunError::Journal)?;
    let journal = match options.journal {
        true => Some(Journaled::open(&run_id, plan, &writable, options).map_err(RunError::Journal)?),
        false => None,
    };

    // The run's events are kept with its journal, for `show RUN`.
    let sink: Arc<dyn EventSink> = match journal
        .as_ref()
        .map(|j| crate::runlog::RunLog::create(&j.dir, sink.clone()))
    {
        Some(Ok(log)) => Arc::new(log),
        Some(Err(e)) => {
            Emitter::for_run(&run_id, sink.clone()).emit(Event::Warning {
                message: format!("the run's events are not kept for `show`: {e}"),
            });
            sink
        }
        None => sink,
    };
    let flow_start = Instant::now();
    let ctx = Ctx {
        plan,
        sandbox,
        sink: sink.clone(),
        events: Emitter::for_run(&run_id, sink.clone()),
        run_id: run_id.clone(),
        params: plan.params.sorted(),
        pinned,
        state_dir: &options.state_dir,
    };
    ctx.events.emit(Event::FlowStarted {
        flow: plan.name.clone(),
        steps: plan.steps.iter().map(|s| s.name.clone()).collect(),
        file: plan.file.clone(),
        params: ctx.params.iter().cloned().collect(),
    });
    let mut reports = Vec::with_capacity(plan.steps.len());
    let mut failure: Option<Failure> = None;
    for (index, step) in plan.steps.iter().enumerate() {
        if failure.is_none() && options.cancel.is_cancelled() {
            failure = Some(Failure::interrupted_between(&reports));
        }
        if failure.is_some() {
            ctx.events.emit(Event::StepFinished {
                index,
                step: step.name.clone(),
                status: StepStatus::Skipped,
                duration_us: 0,
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
        ctx.events.emit(Event::StepStarted {
            index,
            step: step.name.clone(),
            plugin: step.uses.clone(),
            sha256: step.plugin.sha256.clone(),
        });
        let start = Instant::now();
        let mut so_far: Vec<StepStatus> = reports.iter().map(|r| r.status).collect();
        so_far.push(StepStatus::Failed);
        let if_stopped = failure::recorded(&failure::actions_of(
            plan,
            &so_far,
            &Failure::stopped_in(index, &step.name),
        ));
        let run = ctx
            .execute(
                step,
                Role::Step(index, step.revert, &if_stopped),
                journal.as_ref(),
                options.cancel.clone(),
                Vec::new(),
            )
            .await;
        let interrupted = options.cancel.is_cancelled();
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
        ctx.events.emit(Event::StepFinished {
            index,
            step: step.name.clone(),
            status,
            duration_us: crate::events::micros_since(start),
            summary: summary.clone(),
            error: error.as_ref().map(|f| f.message.clone()),
            details: error.as_ref().and_then(|f| f.details.clone()),
            log: run.log,
        });
        reports.push(StepReport {
            name: step.name.clone(),
            status,
            summary,
            failure: error,
        });
    }
    let statuses: Vec<StepStatus> = reports.iter().map(|r| r.status).collect();
    let planned = failure
        .as_ref()
        .map(|f| failure::actions_of(plan, &statuses, f))
        .unwrap_or_default();
    if let (Some(f), Some(j)) = (&failure, journal.as_ref()) {
        let policy = match f.policy {
            OnFailure::Stop => "stop",
            OnFailure::Continue => "continue",
            _ => "rollback",
        };
        if let Err(e) = j
            .lock()
            .failed((&f.step, policy), f.interrupted, failure::recorded(&planned))
        {
            ctx.events.emit(Event::Warning {
                message: format!("could not record the failure in the journal: {e}"),
            });
        }
    }
    let (before, after): (Vec<_>, Vec<_>) = planned.iter().partition(|p| !p.after_revert());
    let mut actions = Vec::new();
    if let Some(failure) = &failure {
        actions.extend(failure::run_actions(&ctx, journal.as_ref(), &before, failure).await);
    }
    let revert = failure.as_ref().is_some_and(|f| f.policy == OnFailure::Rollback);
    let ending = match after.is_empty() {
        true => Ending::Final,
        false => Ending::ActionFollows,
    };
    let finished = match journal {
        Some(journal) => journal.finish((revert, ending), &ctx.events),
        None => {
            if revert {
                ctx.events.emit(Event::Warning {
                    message: "the journal is off: the flow's changes were not rolled back".into(),
                });
            }
            Finished {
                rollback: None,
                uncommitted: false,
                after: None,
            }
        }
    };
    let (rollback, uncommitted) = (finished.rollback, finished.uncommitted);
    if let (Some(failure), false) = (&failure, after.is_empty()) {
        // The action's records follow the rollback's, and end the run by
        // stating its outcome again.
        let resumed = match finished
            .after
            .map(|after| (after.dir.clone(), after.resume(&writable)))
        {
            Some((_, Ok(journal))) => Some(journal),
            Some((dir, Err(e))) => {
                ctx.events.emit(Event::Warning {
                    message: format!("the flow's rollback action runs unjournaled: {e:#}"),
                });
                end_unresumed(&dir, rollback.as_ref(), &ctx.events);
                None
            }
            None => None,
        };
        actions.extend(failure::run_actions(&ctx, resumed.as_ref(), &after, failure).await);
        if let (Some(journal), Some(report)) = (resumed, rollback.as_ref())
            && let Err(e) = journal.close(report)
        {
            ctx.events.emit(Event::Warning {
                message: format!("could not record the end of the flow's rollback action: {e}"),
            });
        }
    }
    if let Err(e) = crate::history::prune(&options.state_dir, options.keep) {
        ctx.events.emit(Event::Warning {
            message: format!("could not prune old runs' backups: {e:#}"),
        });
    }
    let incomplete = rollback.as_ref().is_some_and(|r| !r.problems.is_empty())
        || actions.iter().any(|a| a.error.is_some());
    let status = outcome(failure.as_ref(), uncommitted, incomplete, rollback.is_some());
    let (kept_steps, kept_actions) = match revert {
        true => kept_on_purpose(plan, &reports, &actions),
        false => Default::default(),
    };
    let report = RunReport {
        run_id,
        status,
        steps: reports,
        actions,
        rollback,
    };
    ctx.events.emit(Event::FlowFinished {
        flow: plan.name.clone(),
        status,
        duration_us: crate::events::micros_since(flow_start),
        failed_step: failure.map(|f| f.step),
        kept_steps,
        kept_actions,
        journaled: options.journal,
    });
    Ok(report)
}

/// Locks `mounts` for the run `holder` names, waiting as long as
/// `options.wait` says for those another flow holds (said once, in a
/// warning), unless the run is cancelled meanwhile.
async fn lock_mounts(
    options: &RunOptions,
    mounts: &[(String, std::path::PathBuf)],
    holder: &str,
    events: &Emitter,
) -> Result<MountLocks, RunError> {
    let deadline = options.wait.map(|wait| Instant::now().checked_add(wait));
    let mut said = false;
    loop {
        let in_use = match MountLocks::acquire(&options.state_dir, mounts, holder) {
            Ok(locks) => return Ok(locks),
            Err(e) => match crate::journal::InUse::of(&e) {
                Some(in_use) => in_use,
                None => return Err(RunError::Journal(e)),
            },
        };
        let waiting = match deadline {
            None => false,
            Some(None) => true,
            Some(Some(deadline)) => Instant::now() < deadline,
        };
        if !waiting || options.cancel.is_cancelled() {
            return Err(RunError::Busy(in_use));
        }
        if !said {
            said = true;
            events.emit(Event::Warning {
                message: format!("waiting: {in_use}"),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
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

/// What every step and action of a run is run with.
struct Ctx<'a> {
    plan: &'a Plan,
    sandbox: &'a Sandbox,
    sink: Arc<dyn EventSink>,
    events: Emitter,
    run_id: String,
    params: Vec<(String, String)>,
    pinned: Pinned,
    state_dir: &'a std::path::Path,
}

/// What is run: a step (its index in the flow), or an action (its index
/// in the journal, after the steps', and its name).
#[derive(Clone, Copy)]
enum Role<'a> {
    /// A step, by index, whether a rollback reverts its changes, and the
    /// actions an interrupt during it would run.
    Step(usize, bool, &'a [crate::journal::FailureAction]),
    Action(usize, &'a str),
}

impl Ctx<'_> {
    /// Runs a step or an action in its sandbox, its records bracketed in
    /// the journal; `extra` parameters join the flow's (an action's
    /// failure context).
    async fn execute(
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
            journal: journal.map(|j| j.journal.clone()),
            room: journal.map(|j| j.room.clone()),
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

/// A mount's directory as the run opened it when it started: its
/// identity, and the open directory every step's preopen is made from.
type Pinned = std::collections::HashMap<String, (crate::journal::FileId, Arc<std::fs::File>)>;

/// Opens every mount's directory when the run starts, following no
/// symlink: every step must find the same directories (a mount replaced by
/// another directory, or by a symlink, between steps would escape the
/// journal), and each step's preopen is this very directory.
fn pin(mounts: &[Mount]) -> anyhow::Result<Pinned> {
    mounts
        .iter()
        .map(|m| {
            let fs = MountFs::open(&m.name, &m.host)?;
            Ok((m.name.clone(), (fs.id, Arc::new(fs.dir.into_std_file()))))
        })
        .collect()
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
    let run = sandbox.run(plugin, request).await;
    let ended = journal.map(|j| {
        let mut j = j.lock();
        j.end_step()?;
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

/// A run's journal and where it is kept.
struct Journaled {
    journal: Arc<Mutex<RunJournal>>,
    room: Arc<Room>,
    dir: RunDir,
    /// Injected faults (tests), for the run and its rollback alike.
    fault: Fault,
}

impl Journaled {
    fn open(
        run_id: &str,
        plan: &Plan,
        writable: &[&Mount],
        options: &RunOptions,
    ) -> anyhow::Result<Journaled> {
        let dir = RunStore::new(&options.state_dir).create(run_id)?;
        let mounts = writable
            .iter()
            .map(|m| MountFs::open(&m.name, &m.host))
            .collect::<std::io::Result<Vec<_>>>()?;
        let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let room = Arc::new(Room::new(options.reserve));
        let fault = Fault::from_env();
        let journal = RunJournal::begin(
            &dir,
            (&plan.name, plan.app.clone()),
            started,
            mounts,
            options.durability,
            fault,
            room.clone(),
        )?;
        Ok(Journaled {
            journal: Arc::new(Mutex::new(journal)),
            room,
            dir,
            fault,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunJournal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits a successful run, or rolls a stopped one back.
    /// A run whose commit fails is rolled back too: it would otherwise be
    /// an unfinished run, which blocks the next one until `recover` rolls
    /// it back. Returns the rollback's report, whether that was why, and
    /// the journal to go on with after a rollback (for the flow's
    /// rollback action).
    fn finish(self, (stopped, ending): (bool, Ending), events: &Emitter) -> Finished {
        let Journaled {
            journal,
            dir,
            fault,
            room,
            ..
        } = self;
        let mut journal = Arc::try_unwrap(journal)
            .ok()
            .expect("every step's store is dropped when it ends")
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        let mut uncommitted = false;
        if !stopped {
            match journal.commit() {
                Ok(()) => {
                    return Finished {
                        rollback: None,
                        uncommitted: false,
                        after: None,
                    };
                }
                Err(e) => {
                    events.emit(Event::Warning {
                        message: format!(
                            "every step succeeded, but the run could not be recorded as committed ({e}): rolling it back"
                        ),
                    });
                    uncommitted = true;
                }
            }
        }
        events.emit(Event::RollbackStarted {
            changes: journal.changes_to_revert(),
        });
        let started = Instant::now();
        let seq = journal.changes();
        let mut writer = journal.into_writer();
        let report = match dir.records() {
            Ok(records) => rollback(&dir, &records, &mut writer, (fault, ending)),
            Err(e) => RollbackReport {
                undone: 0,
                problems: vec![Problem {
                    mount: String::new(),
                    path: dir.journal().display().to_string(),
                    reason: format!("cannot read the journal: {e}"),
                    kept_at: None,
                }],
                kept: Vec::new(),
                not_reversed: Vec::new(),
            },
        };
        events.emit(Event::RollbackFinished {
            undone: report.undone,
            problems: report.problems.clone(),
            kept: report.kept.clone(),
            not_reversed: report.not_reversed.clone(),
            duration_us: crate::events::micros_since(started),
        });
        Finished {
            rollback: Some(report),
            uncommitted,
            after: Some(After {
                writer,
                dir,
                seq,
                fault,
                room,
            }),
        }
    }
}

/// How a run's journal ended.
struct Finished {
    rollback: Option<RollbackReport>,
    uncommitted: bool,
    /// After a rollback: the journal's writer, to record the flow's
    /// rollback action.
    after: Option<After>,
}

/// A rolled-back run's journal, to go on with.
struct After {
    writer: crate::journal::JournalWriter,
    dir: RunDir,
    seq: u64,
    fault: Fault,
    room: Arc<Room>,
}

impl After {
    /// The journal reopened for the flow's rollback action, on the run's
    /// writable mounts.
    fn resume(self, writable: &[&Mount]) -> anyhow::Result<Journaled> {
        let mounts = writable
            .iter()
            .map(|m| MountFs::open(&m.name, &m.host))
            .collect::<std::io::Result<Vec<_>>>()?;
        let journal = RunJournal::resume(
            self.writer,
            &self.dir,
            mounts,
            (self.seq, self.fault, self.room.clone()),
        )?;
        Ok(Journaled {
            journal: Arc::new(Mutex::new(journal)),
            room: self.room,
            dir: self.dir,
            fault: self.fault,
        })
    }
}

/// Ends the journal of run `dir`, whose flow's rollback action could not
/// have it resumed (and runs without), by stating how its rollback ended.
fn end_unresumed(dir: &RunDir, rollback: Option<&RollbackReport>, events: &Emitter) {
    let ended = crate::journal::JournalWriter::resume(&dir.journal()).and_then(|(mut writer, _)| {
        crate::journal::end_rollback(&mut writer, rollback.unwrap_or(&RollbackReport::default()))
    });
    if let Err(e) = ended {
        events.emit(Event::Warning {
            message: format!("could not record the end of the rollback: {e}"),
        });
    }
}

impl Journaled {
    /// Ends the records of the flow's rollback action by stating again how
    /// the rollback ended: the run's state is its last record's.
    fn close(self, report: &RollbackReport) -> std::io::Result<()> {
        let journal = Arc::try_unwrap(self.journal)
            .ok()
            .expect("the action's store is dropped when it ends")
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        crate::journal::end_rollback(&mut journal.into_writer(), report)
    }
}

/// A sortable, unique-enough id: UTC time to the millisecond, then the low bits
/// of the nanoseconds and the process id.
fn new_run_id() -> String {
    let now = SystemTime::now();
    let stamp: String = humantime::format_rfc3339_millis(now)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let nanos = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{stamp}-{:04x}", (nanos ^ std::process::id()) & 0xffff)
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
