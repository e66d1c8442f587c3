//! `stepback show`: the record of runs.

use super::args::OutputFormat;
use super::escape::clean;
use super::exit;
use super::out::{errln, outln};
use std::path::Path;
use stepback::journal::{Change, Record, RunState, RunStore, UndoOp};

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
            match matching.is_empty() {
                true => errln!(
                    "error: no run {id:?} in {}; `stepback show` lists the runs",
                    state_dir.join("runs").display()
                ),
                false => errln!(
                    "error: {id:?} names {} runs: {}",
                    matching.len(),
                    matching.join(", ")
                ),
            }
            return exit::INVALID_INPUT;
        }
        Err(e) => {
            errln!("error: cannot list runs: {e}");
            return exit::ENGINE_ERROR;
        }
    };
    let records = match dir.records() {
        Ok(records) => records,
        Err(e) => {
            errln!("error: cannot read the journal of run {}: {e}", dir.id);
            return exit::ENGINE_ERROR;
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
            super::json::print_run(&dir.id, outcome(&records), &events, changes(&records));
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
fn changes(records: &[Record]) -> Vec<serde_json::Value> {
    let voided = stepback::journal::voided(records);
    records
        .iter()
        .filter_map(|r| {
            match r {
            Record::Undo {
                seq,
                step,
                mount,
                change,
                undo,
            } if !voided.contains(seq) => describe(*change, undo).map(|what| {
                serde_json::json!({ "step": step, "mount": mount, "path": undo.path(), "change": what })
            }),
            _ => None,
        }
        })
        .collect()
}

/// Lists runs newest first (like `git log`), at most `limit`.
fn list(store: &RunStore, limit: Option<usize>, output: OutputFormat) -> u8 {
    let runs = match store.list() {
        Ok(runs) => runs,
        Err(e) => {
            errln!("error: cannot list runs: {e}");
            return exit::ENGINE_ERROR;
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
    Some(match (RunState::of(records), failed) {
        (RunState::Committed { .. }, None) => "succeeded",
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

/// The journal's records of run changes, step by step.
fn print_changes(records: &[Record]) {
    let mut undone = std::collections::HashSet::new();
    let voided = stepback::journal::voided(records);
    let mut reverted = false;
    // The failure's actions by index, to name one that ended.
    let mut actions = std::collections::HashMap::new();
    let mut started = std::collections::HashSet::new();
    for record in records {
        match record {
            Record::Step { index, name } => outln!("step {index} '{}':", clean(name)),
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
            Record::Undo { seq, .. } if voided.contains(seq) => {}
            Record::Undo {
                mount, change, undo, ..
            } => {
                if let Some(line) = describe(*change, undo) {
                    let line = clean(&line);
                    outln!("  {line:<40} {mount}:/{}", clean(undo.path()));
                }
            }
            Record::Undone { seq } => {
                undone.insert(*seq);
            }
            // Said once: the end after the flow's rollback action says it
            // again.
            Record::RolledBack { .. } if reverted => {}
            Record::RolledBack { problems, kept } | Record::Reverted { problems, kept } => {
                reverted |= matches!(record, Record::Reverted { .. });
                outln!("rollback: {} changes undone", undone.len());
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
            | Record::Left { .. }
            | Record::Made { .. }
            | Record::Wrote { .. }
            | Record::Applied { .. }
            | Record::NotApplied { .. }
            | Record::StepEnded { .. }
            | Record::Void { .. } => {}
            // Records of a newer engine: nothing to show.
            _ => {}
        }
    }
}

/// One line per change a step made; bookkeeping records (directory times
/// saved because an entry inside changed) are not shown.
fn describe(change: Change, undo: &UndoOp) -> Option<String> {
    Some(match (change, undo) {
        (Change::Created, _) => "created".into(),
        (Change::Replaced, UndoOp::Saved { size, .. } | UndoOp::Copied { size, .. }) => {
            format!("replaced (was {size} bytes)")
        }
        (Change::Modified, UndoOp::Copied { size, .. }) => format!("modified in place (was {size} bytes)"),
        (Change::Deleted, UndoOp::Saved { tree: true, .. }) => "deleted directory".into(),
        (Change::Deleted, UndoOp::Saved { size, .. } | UndoOp::Copied { size, .. }) => {
            format!("deleted file ({size} bytes)")
        }
        (Change::Deleted | Change::Replaced, UndoOp::RemovedDir { .. }) => "deleted directory".into(),
        (Change::Deleted | Change::Replaced, UndoOp::RemovedSymlink { target, .. }) => {
            format!("deleted symlink (-> {target})")
        }
        (Change::Renamed, UndoOp::Renamed { from, .. }) => format!("renamed from /{from}"),
        (_, UndoOp::Attributes { mode, .. }) => format!("mode or owner changed (was {:o})", mode & 0o7777),
        (_, UndoOp::Snapshot { backup: Some(_), .. }) => "snapshot before a command (restored whole)".into(),
        (_, UndoOp::Snapshot { backup: None, .. }) => "absent before a command (removed on rollback)".into(),
        (Change::Touched, _) | (Change::Renamed, _) => return None,
        (_, _) => "changed".into(),
    })
}
