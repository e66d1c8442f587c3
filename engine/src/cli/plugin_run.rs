//! `stepback plugin run`: one step alone, for an author trying a plugin.
//! The step is a flow of one step ([`stepback::flow::OneStep`]), so it is
//! validated, journaled and rolled back by the same code as any flow's;
//! this module only reads the arguments and prints what became of it.

use super::args::{OutputFormat, PluginRunArgs};
use super::out::{errln, outln};
use super::{Input, exit, json, show};
use serde_json::json;
use std::sync::Arc;
use stepback::events::EventSink;
use stepback::flow::{ONE_STEP_FLOW, OneStep};
use stepback::journal::{RollbackReport, RunStore};
use stepback::runner::{self, RunOptions};

pub async fn run(
    args: &PluginRunArgs,
    engine: super::Engine<'_>,
    events: Arc<dyn EventSink>,
    options: &RunOptions,
    output: OutputFormat,
) -> u8 {
    let with = match config(&args.with) {
        Ok(with) => with,
        Err(why) => return super::error(exit::INVALID_INPUT, format_args!("--with: {why}")),
    };
    let step = OneStep {
        plugin: args.plugin.clone(),
        with,
        mounts: args.mounts.clone(),
        exec: args.exec.clone(),
    };
    let source = step.source();
    let input = Input {
        flow: &source.path.clone(),
        params: &[],
        output,
    };
    let plan = match super::plan_of(Ok(source), &input, engine).await {
        Ok(plan) => plan,
        Err(code) => {
            errln!(
                "(`{ONE_STEP_FLOW}` is the flow of one step made of the arguments: `steps[0].with` is --with, `mounts` are --mount, `exec` is --exec)"
            );
            return code;
        }
    };
    let report = match runner::run(&plan, engine.0, events, options).await {
        Ok(report) => report,
        Err(e) => return super::error(exit::of_run_error(&e), e),
    };
    let mut code = super::interrupted(exit::of_run(&report));
    let undone = match args.rollback && code == exit::SUCCESS {
        true => match stepback::history::undo_run(&options.state_dir, &report.run_id, false) {
            Ok(undone) => Some(undone),
            Err(e) => {
                return super::error(
                    exit::of_undo_error(&e),
                    format_args!("the step ran, but its rollback did not: {e}"),
                );
            }
        },
        false => None,
    };
    code = code.max(undone.as_ref().map_or(exit::SUCCESS, exit::of_rollback));
    print_result(&options.state_dir, &report.run_id, undone.as_ref(), output);
    code
}

/// The step's `with` table, from `--with`: a JSON object, or `@FILE`
/// holding one.
fn config(arg: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let (text, from) = match arg.strip_prefix('@') {
        Some(file) => (
            std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?,
            format!(" in {file}"),
        ),
        None => (arg.to_owned(), String::new()),
    };
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(with)) => Ok(with),
        Ok(other) => Err(format!(
            "expected a JSON object (the step's `with` table){from}, got {}",
            kind(&other)
        )),
        Err(e) => Err(format!("not JSON{from}: {e}")),
    }
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// What the step changed, as its journal holds it (and what the rollback
/// undid, if it ran): the lines `show RUN` prints, or with `--output json`
/// one `plugin-run` result after the run's events.
fn print_result(
    state_dir: &std::path::Path,
    run: &str,
    undone: Option<&RollbackReport>,
    output: OutputFormat,
) {
    let records = match RunStore::new(state_dir).find(run) {
        Ok(Ok(dir)) => dir.records().unwrap_or_default(),
        _ => Vec::new(),
    };
    match output {
        OutputFormat::Human => {
            outln!("changes, as the journal holds them (`stepback show {run}` shows them again):");
            show::print_changes(&records);
            if let Some(report) = undone {
                super::human::print_kept(&report.kept, "since the run");
                super::human::print_not_reversed(&report.not_reversed);
            }
        }
        OutputFormat::Json => json::print_result(
            "plugin-run",
            json!({
                "run": run,
                "outcome": show::outcome(&records),
                "changes": show::changes(&records),
                "rollback": undone.map(json::rollback),
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::config;

    #[test]
    fn with_takes_a_json_object_and_says_what_else_it_got() {
        assert_eq!(config(r#"{"a": 1}"#).unwrap()["a"], 1);
        assert!(config("[1]").unwrap_err().contains("got an array"));
        assert!(config("{oops").unwrap_err().starts_with("not JSON"));
        let e = config("@/nonexistent/with.json").unwrap_err();
        assert!(e.contains("cannot read /nonexistent/with.json"), "{e}");
    }
}
