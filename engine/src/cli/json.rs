//! Output for programs: JSON lines on stdout, one object per event of a
//! run, and one result object for each other command (and for any
//! command that fails: an `error`), all versioned by
//! [`stepback::events::SCHEMA`] and described by
//! `engine/schema/output-1.schema.json`.

use super::out::outln;
use serde_json::json;
use stepback::diagnostic::Diagnostic;
use stepback::events::{Envelope, EventSink};
use stepback::journal::RollbackReport;
use stepback::plugin::{CacheEntry, PluginInfo};
use stepback::sandbox::Plugin;

pub struct Reporter;

impl EventSink for Reporter {
    fn emit(&self, envelope: Envelope) {
        let line = serde_json::to_string(&envelope).expect("events serialize");
        outln!("{line}");
    }
}

/// `plugin inspect`: what the plugin says of itself and what it imports
/// and exports.
pub fn print_inspection(
    plugin: &Plugin,
    info: &PluginInfo,
    imports: &[String],
    exports: &[String],
    registry: Option<serde_json::Value>,
) {
    let value = json!({
        "plugin": plugin.label,
        "sha256": plugin.sha256,
        "info": info,
        "imports": imports,
        "exports": exports,
        "registry": registry,
    });
    print_result("plugin", value);
}

fn cache_entries(entries: &[CacheEntry]) -> Vec<serde_json::Value> {
    let entry = |e: &CacheEntry| {
        json!({
            "sha256": e.sha256,
            "bytes": e.size,
            "last_used": humantime::format_rfc3339_seconds(e.last_used).to_string(),
        })
    };
    entries.iter().map(entry).collect()
}

/// `cache list`.
pub fn print_cache(dir: &std::path::Path, entries: &[CacheEntry], limit: u64) {
    let value = json!({
        "dir": dir,
        "limit_bytes": limit,
        "total_bytes": entries.iter().map(|e| e.size).sum::<u64>(),
        "entries": cache_entries(entries),
    });
    print_result("cache", value);
}

/// `cache prune`.
pub fn print_pruned(removed: &[CacheEntry], stored: &[(stepback::registry::Digest, u64)]) {
    let stored: Vec<_> = stored
        .iter()
        .map(|(digest, bytes)| json!({ "digest": digest, "bytes": bytes }))
        .collect();
    let value = json!({
        "freed_bytes": removed.iter().map(|e| e.size).sum::<u64>(),
        "removed": cache_entries(removed),
        "store_removed": stored,
    });
    print_result("cache-prune", value);
}

/// Prints one result object of kind `kind`.
pub fn print_result(kind: &str, mut value: serde_json::Value) {
    value["schema"] = json!(stepback::events::SCHEMA);
    value["kind"] = json!(kind);
    outln!("{}", serde_json::to_string(&value).expect("results serialize"));
}

/// Why the command failed (also said on stderr), with its exit code.
pub fn print_error(exit_code: u8, message: &str) {
    print_result("error", json!({ "message": message, "exit_code": exit_code }));
}

/// `validate` (and `run` of a flow that is not valid): the flow and every
/// problem found, each with where it is.
pub fn print_validation(flow: &std::path::Path, plan: Result<&stepback::flow::Plan, &[Diagnostic]>) {
    let diagnostic = |d: &Diagnostic| {
        json!({
            "file": d.file,
            "line": d.position.map(|p| p.line),
            "column": d.position.map(|p| p.column),
            "field": d.field,
            "message": d.message,
        })
    };
    let value = match plan {
        Ok(plan) => json!({
            "flow": flow,
            "valid": true,
            "name": plan.name,
            "steps": plan.steps.len(),
            "mounts": plan.mounts.len(),
            "diagnostics": [],
        }),
        Err(diagnostics) => json!({
            "flow": flow,
            "valid": false,
            "diagnostics": diagnostics.iter().map(diagnostic).collect::<Vec<_>>(),
        }),
    };
    print_result("validation", value);
}

/// What a rollback (`undo`'s or `recover`'s) did.
pub fn rollback(report: &RollbackReport) -> serde_json::Value {
    json!({
        "undone": report.undone,
        "problems": report.problems,
        "kept": report.kept,
        "not_reversed": report.not_reversed,
    })
}

/// `undo RUN`.
pub fn print_undo(run: &str, report: &RollbackReport) {
    let mut value = rollback(report);
    value["run"] = json!(run);
    print_result("undo", value);
}

/// `recover`: each run it rolled back.
pub fn print_recovery(recovered: &[stepback::recovery::Recovered]) {
    let runs: Vec<_> = recovered
        .iter()
        .map(|r| {
            let mut value = match &r.report {
                Some(report) => rollback(report),
                // Kept, as its failure said: nothing undone.
                None => rollback(&RollbackReport::default()),
            };
            value["run"] = json!(r.run.dir.id);
            value["flow"] = json!(r.run.flow);
            value["adopted"] = json!(r.adopted);
            value["rolled_back"] = json!(r.report.is_some());
            value["actions_not_done"] = r
                .actions
                .iter()
                .map(|a| json!({ "action": a.name, "why": a.how.to_string() }))
                .collect();
            value
        })
        .collect();
    print_result("recovery", json!({ "runs": runs }));
}

/// `show`: the runs, newest first, each with how it ended.
pub fn print_runs(runs: &[(&stepback::journal::RunSummary, &str)]) {
    let runs: Vec<_> = runs
        .iter()
        .map(|(run, outcome)| {
            json!({
                "run": run.dir.id,
                "flow": run.flow,
                "started": run.started,
                "outcome": outcome,
                "finished": !matches!(run.state, stepback::journal::RunState::Unfinished),
            })
        })
        .collect();
    print_result("runs", json!({ "runs": runs }));
}

/// `show RUN`: how it ended, what it reported (its events, as `run
/// --output json` printed them) and each change the journal holds.
pub fn print_run(
    run: &str,
    outcome: &str,
    events: &[Envelope],
    (changes, actions): (Vec<serde_json::Value>, Vec<serde_json::Value>),
) {
    print_result(
        "run",
        json!({ "run": run, "outcome": outcome, "events": events, "changes": changes, "actions": actions }),
    );
}

/// How each action of the run's failure ended, from its journal: the
/// `action_ended` records (the run's own, or `recover`'s for one the
/// engine never got to), named by the failure's or the step's plan.
pub fn actions(records: &[stepback::journal::Record]) -> Vec<serde_json::Value> {
    use stepback::journal::Record;
    let mut names = std::collections::HashMap::new();
    let mut out = Vec::new();
    for record in records {
        match record {
            Record::Step { if_stopped, .. } => {
                names.extend(if_stopped.iter().map(|a| (a.index, a.name.clone())))
            }
            Record::Failed { actions, .. } => names.extend(actions.iter().map(|a| (a.index, a.name.clone()))),
            Record::Action { index, name } => {
                names.insert(*index, name.clone());
            }
            Record::ActionEnded { index, error } => {
                let name = names
                    .get(index)
                    .cloned()
                    .unwrap_or_else(|| format!("action {index}"));
                out.push(json!({ "action": name, "error": error }));
            }
            _ => {}
        }
    }
    out
}
