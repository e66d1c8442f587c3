//! `stepback status`: which version of each application runs now, since
//! when and by which run, and how each run of it ended. An application is
//! what a flow's `[app]` names; the version running is the one the newest
//! committed run deployed (a failed run is rolled back and an undone run
//! reverted, so after either the previous version shows again, as it
//! runs again).

use super::args::OutputFormat;
use super::escape::clean;
use super::exit;
use super::out::outln;
use std::collections::BTreeMap;
use std::path::Path;
use stepback::journal::{RunState, RunStore, RunSummary};

pub fn status(state_dir: &Path, output: OutputFormat) -> u8 {
    let runs = match RunStore::new(state_dir).list() {
        Ok(runs) => runs,
        Err(e) => {
            return super::error(exit::ENGINE_ERROR, format_args!("cannot list runs: {e}"));
        }
    };
    // Each application's runs, newest first, with how each ended.
    let mut apps: BTreeMap<&str, Vec<(&RunSummary, &'static str)>> = BTreeMap::new();
    for run in runs.iter().rev() {
        if let Some(app) = &run.app {
            let outcome = run
                .dir
                .records()
                .map_or("unreadable", |records| super::show::outcome(&records));
            apps.entry(&app.name).or_default().push((run, outcome));
        }
    }
    match output {
        OutputFormat::Json => print_json(&apps),
        OutputFormat::Human => print_human(&apps),
    }
    exit::SUCCESS
}

/// The run whose version runs now: the newest committed one.
fn running<'r>(runs: &[(&'r RunSummary, &str)]) -> Option<&'r RunSummary> {
    runs.iter()
        .map(|(run, _)| *run)
        .find(|run| matches!(run.state, RunState::Committed { .. }))
}

fn version(run: &RunSummary) -> &str {
    run.app.as_ref().map_or("", |a| a.version.as_str())
}

fn print_human(apps: &BTreeMap<&str, Vec<(&RunSummary, &str)>>) {
    if apps.is_empty() {
        outln!("no application recorded: a flow names the one it deploys with [app] name and version");
    }
    for (app, runs) in apps {
        match running(runs) {
            Some(run) => outln!(
                "{}  {}  running since {} (run {})",
                clean(app),
                clean(version(run)),
                run.started,
                run.dir.id
            ),
            None => outln!(
                "{}  no version running: every run of it was rolled back or undone",
                clean(app)
            ),
        }
        for (run, outcome) in runs {
            outln!(
                "  {}  {:<12}  {outcome:<26}  run {}",
                run.started,
                clean(version(run)),
                run.dir.id
            );
        }
    }
}

fn print_json(apps: &BTreeMap<&str, Vec<(&RunSummary, &str)>>) {
    use serde_json::json;
    let apps: Vec<_> = apps
        .iter()
        .map(|(app, runs)| {
            let history: Vec<_> = runs
                .iter()
                .map(|(run, outcome)| {
                    json!({ "run": run.dir.id, "version": version(run), "started": run.started, "outcome": outcome })
                })
                .collect();
            let running = running(runs)
                .map(|run| json!({ "version": version(run), "run": run.dir.id, "since": run.started }));
            json!({ "app": app, "running": running, "history": history })
        })
        .collect();
    super::json::print_result("status", json!({ "apps": apps }));
}
