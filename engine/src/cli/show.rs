//! `stepback show`: the record of runs.

use super::args::OutputFormat;
use super::escape::clean;
use super::exit;
use super::out::outln;
use std::path::Path;
use stepback::journal::{Record, RunState, RunStore};

/// What `show RUN` prints beside the journal's changes.
#[derive(Clone, Copy)]
pub struct Detail {
    /// Every step's log, not only a failed one's.
    pub logs: bool,
    /// The journal's records as they are, instead.
    pub records: bool,
}

pub fn show(
    state_dir: &Path,
    run: Option<&str>,
    (limit, detail): (Option<usize>, Detail),
    output: OutputFormat,
) -> u8 {
    let store = RunStore::new(state_dir);
    let Some(id) = run else {
        return list(&store, limit, output);
    };
    let dir = match store.find(id) {
        Ok(Ok(dir)) => dir,
        Ok(Err(matching)) => {
            let why = match matching.is_empty() {
                true => format!(
                    "no run {id:?} in {}; `stepback show` lists the runs",
                    state_dir.join("runs").display()
                ),
                false => format!("{id:?} names {} runs: {}", matching.len(), matching.join(", ")),
            };
            return super::error(exit::INVALID_INPUT, why);
        }
        Err(e) => {
            return super::error(exit::ENGINE_ERROR, format_args!("cannot list runs: {e}"));
        }
    };
    let records = match dir.records() {
        Ok(records) => records,
        Err(e) => {
            return super::error(
                exit::ENGINE_ERROR,
                format_args!("cannot read the journal of run {}: {e}", dir.id),
            );
        }
    };
    if detail.records {
        for record in &records {
            outln!("{}", serde_json::to_string(record).expect("records serialize"));
        }
        return exit::SUCCESS;
    }
    match output {
        OutputFormat::Human => {
            print_header(&dir.id, &records);
            replay(&dir, detail);
            print_changes(&records);
        }
        OutputFormat::Json => {
            let events = stepback::runlog::read(&dir).unwrap_or_default();
            super::json::print_run(
                &dir.id,
                outcome(&records),
                &events,
                (changes(&records), super::json::actions(&records)),
            );
        }
    }
    exit::SUCCESS
}

/// What the run printed, from the events it kept (none for a run of an
/// engine that kept none).
fn replay(dir: &stepback::journal::RunDir, detail: Detail) {
    use stepback::events::EventSink;
    match stepback::runlog::read(dir) {
        Ok(events) if !events.is_empty() => {
            outln!("as it ran:");
            let reporter = super::human::Reporter::replay(detail.logs);
            for event in events {
                reporter.emit(event);
            }
            outln!("changes, as the journal holds them:");
        }
        Ok(_) => {}
        Err(e) => outln!("(its events cannot be read: {e})"),
    }
}

/// Each change the journal holds, by step, mount and path, described as
/// the human listing describes it.
pub(super) fn changes(records: &[Record]) -> Vec<serde_json::Value> {
    super::changes::list(records)
        .into_iter()
        .map(|c| serde_json::json!({ "step": c.step, "mount": c.mount, "path": c.path, "change": c.what }))
        .collect()
}

/// Lists runs newest first (like `git log`), at most `limit`.
fn list(store: &RunStore, limit: Option<usize>, output: OutputFormat) -> u8 {
    let runs = match store.list() {
        Ok(runs) => runs,
        Err(e) => {
            return super::error(exit::ENGINE_ERROR, format_args!("cannot list runs: {e}"));
        }
    };
    let shown: Vec<_> = runs
        .iter()
        .rev()
        .take(limit.unwrap_or(usize::MAX))
        .map(|run| {
            (
                run,
                run.dir
                    .records()
                    .map_or("unreadable", |records| outcome(&records)),
            )
        })
        .collect();
    if output == OutputFormat::Json {
        super::json::print_runs(&shown);
        return exit::SUCCESS;
    }
    if runs.is_empty() {
        outln!("no runs recorded");
    }
    for (run, outcome) in shown {
        outln!(
            "{}  {:<20}  {}  {outcome:<26}  {}",
            run.dir.id,
            clean(&run.flow),
            run.started,
            state_text(run.state)
        );
    }
    exit::SUCCESS
}

/// The run's final state as `run` reported it (the `flow-finished`
/// event's status), when its records say: `succeeded`,
/// `failed-rolled-back`, `failed-rollback-incomplete`,
/// `failed-not-rolled-back` or `interrupted-rolled-back`.
fn final_state(records: &[Record]) -> Option<&'static str> {
    let failed = records.iter().find_map(|r| match r {
        Record::Failed { interrupted, .. } => Some(*interrupted),
        _ => None,
    });
    let action_failed = records
        .iter()
        .any(|r| matches!(r, Record::ActionEnded { error: Some(_), .. }));
    // Ranked as the runner ranks them: a failed action needs attention
    // whatever the policy.
    Some(match (RunState::of(records), failed) {
        (RunState::Committed { .. }, None) => "succeeded",
        (RunState::Committed { .. }, Some(_)) if action_failed => "failed-rollback-incomplete",
        (RunState::Committed { .. }, Some(_)) => "failed-not-rolled-back",
        (RunState::RolledBack { problems, .. }, Some(_)) if problems > 0 || action_failed => {
            "failed-rollback-incomplete"
        }
        (RunState::RolledBack { .. }, Some(true)) => "interrupted-rolled-back",
        (RunState::RolledBack { .. }, Some(false)) => "failed-rolled-back",
        _ => return None,
    })
}

/// How the run ended, in one word: its [`final_state`], or what became of
/// it after (`undone`), or how a run without one ended.
pub(super) fn outcome(records: &[Record]) -> &'static str {
    let committed = records.iter().any(|r| matches!(r, Record::Committed));
    match RunState::of(records) {
        RunState::RolledBack { .. } if committed => "undone",
        state => final_state(records).unwrap_or(match state {
            RunState::Unfinished => "unfinished",
            // No failure recorded: its commit failed, or the engine
            // stopped mid-step and recovery rolled it back.
            RunState::RolledBack { .. } => "rolled-back",
            _ => "unknown",
        }),
    }
}

fn state_text(state: RunState) -> String {
    match state {
        RunState::Unfinished => "unfinished (needs `stepback recover`)".into(),
        RunState::Committed { pruned: false } => "committed (can be undone)".into(),
        RunState::Committed { pruned: true } => "committed (backups pruned)".into(),
        RunState::RolledBack { problems: 0, kept: 0 } => "rolled back".into(),
        RunState::RolledBack { problems: 0, kept } => {
            format!("rolled back, {kept} change(s) by other processes kept aside")
        }
        RunState::RolledBack { problems, .. } => format!("rolled back, {problems} path(s) NOT restored"),
        _ => "in an unknown state".into(),
    }
}

fn print_header(id: &str, records: &[Record]) {
    if let Some(Record::Begin { flow, started, .. }) = records.first() {
        outln!(
            "run {id} of flow '{}', started {started}: {}{}",
            clean(flow),
            state_text(RunState::of(records)),
            final_state(records)
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        );
    }
}

/// The journal's records of run changes, step by step. (One arm per
/// kind of record, each a line or two: longer than most functions, and
/// read as the list of what `show` says of each.)
pub(super) fn print_changes(records: &[Record]) {
    let mut undone = std::collections::HashSet::new();
    // Counted as a rollback counts what it undid (and as they are listed).
    let counted: std::collections::HashSet<u64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Undo {
                seq, change, undo, ..
            } if stepback::journal::is_change(*change, undo) => Some(*seq),
            _ => None,
        })
        .collect();
    let listed: std::collections::HashMap<usize, _> = super::changes::list(records)
        .into_iter()
        .map(|c| (c.at, c))
        .collect();
    let mut reverted = false;
    // The failure's actions by index, to name one that ended.
    let mut actions = std::collections::HashMap::new();
    let mut started = std::collections::HashSet::new();
    for (at, record) in records.iter().enumerate() {
        match record {
            Record::Step {
                index,
                name,
                if_stopped,
            } => {
                // Named if the engine stopped here: `recover` ends them.
                actions.extend(if_stopped.iter().map(|a| (a.index, a.name.as_str())));
                outln!("step {index} '{}':", clean(name))
            }
            Record::Failed {
                step,
                policy,
                interrupted,
                actions: planned,
            } => {
                actions.extend(planned.iter().map(|a| (a.index, a.name.as_str())));
                outln!(
                    "{} in step '{}' (on-failure = \"{}\"):",
                    if *interrupted { "interrupted" } else { "failed" },
                    clean(step),
                    clean(policy)
                )
            }
            Record::Action { name, index } => {
                started.insert(*index);
                outln!(
                    "action '{}' (the rollback's own changes, not reverted):",
                    clean(name)
                )
            }
            Record::NotReverted { .. } => outln!("  (revert = false: kept when the flow is rolled back)"),
            Record::ActionEnded { error: None, .. } => outln!("  action succeeded"),
            Record::ActionEnded {
                error: Some(e),
                index,
            } => match actions.get(index) {
                // One that never started has no heading of its own.
                Some(name) if !started.contains(index) => {
                    outln!("ACTION '{}' FAILED: {}", clean(name), clean(e))
                }
                _ => outln!("  ACTION FAILED: {}", clean(e)),
            },
            Record::Uncaptured { command, .. } => {
                outln!("  NOT REVERSIBLE: {}", clean(command))
            }
            Record::Reach { what, .. } => outln!("  COMMANDS REACH: {}", clean(what)),
            Record::Unenforced { what, .. } => {
                outln!("  LIMITS NOT ENFORCED: {}", clean(what))
            }
            Record::Undo { .. } | Record::Left { .. } | Record::Made { .. } | Record::Wrote { .. } => {
                match listed.get(&at) {
                    Some(c) if c.mount.is_empty() => outln!("  {}", clean(&c.what)),
                    Some(c) => {
                        let what = clean(&c.what);
                        outln!("  {what:<40} {}:/{}", c.mount, clean(c.path));
                    }
                    None => {}
                }
            }
            Record::Undone { seq } if counted.contains(seq) => {
                undone.insert(*seq);
            }
            Record::Undone { .. } => {}
            // Said once: the end after the flow's rollback action says it
            // again.
            Record::RolledBack { .. } if reverted => {}
            Record::RolledBack { problems, kept } | Record::Reverted { problems, kept } => {
                reverted |= matches!(record, Record::Reverted { .. });
                outln!("rollback: {} undone", super::changes(undone.len()));
                for p in problems {
                    outln!("  NOT RESTORED {}", clean(p));
                }
                for k in kept {
                    outln!("  KEPT ASIDE {}", clean(k));
                }
            }
            Record::Committed => outln!("committed"),
            Record::Pruned { keep: Some(keep) } => {
                outln!("backups pruned (the newest {keep} committed runs kept theirs)")
            }
            Record::Pruned { keep: None } => outln!("backups pruned"),
            Record::RollbackStarted { .. } => outln!("rollback started"),
            Record::Begin { .. }
            | Record::Final { .. }
            | Record::Applied { .. }
            | Record::NotApplied { .. }
            | Record::StepEnded { .. }
            | Record::Void { .. } => {}
            // Records of a newer engine: nothing to show.
            _ => {}
        }
    }
}
