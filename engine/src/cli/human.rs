//! Output for people: one line per step with its status and duration, the
//! log of a failed step, and with `--verbose` what happens as it happens.

use super::escape::clean;
use super::live::Live;
use super::out::{errln, outln};
use super::style::{BAD, DIM, GOOD, NOTE, paint};
use std::sync::Mutex;
use stepback::events::{Envelope, Event, EventSink, FlowStatus, LogLevel, LogLine, Problem, StepStatus};
use stepback::plugin::{CacheOutcome, PluginInfo};
use stepback::sandbox::Plugin;

pub struct Reporter {
    verbose: bool,
    /// `-q`: only what went wrong, and the verdict.
    quiet: bool,
    /// Replaying a kept run for `show RUN` (no live line, what the run
    /// was given and ran with too); with every step's log if `.logs`.
    replay: bool,
    /// Every step's log after its line, not only a failed one's (`show RUN
    /// --logs`, `plugin run`).
    every_log: bool,
    /// The plugin each step ran, by index, while replaying.
    plugins: Mutex<std::collections::HashMap<usize, (String, String)>>,
    /// Width of the step-name column, known once the flow starts.
    width: Mutex<usize>,
    /// The running step's live line, on a terminal (not with `--verbose`,
    /// which prints every log line instead).
    live: Live,
}

impl Reporter {
    pub fn new(verbose: bool) -> Self {
        Reporter {
            verbose,
            quiet: false,
            replay: false,
            every_log: false,
            plugins: Mutex::default(),
            width: Mutex::new(0),
            live: Live::new(!verbose),
        }
    }

    /// A reporter that prints only what went wrong (failed steps and
    /// actions with their logs, paths not restored, warnings) and the
    /// verdict.
    pub fn quiet() -> Self {
        Reporter {
            quiet: true,
            ..Reporter::new(false)
        }
    }

    /// A reporter of a kept run's events, for `show RUN`.
    pub fn replay(logs: bool) -> Self {
        Reporter {
            replay: true,
            every_log: logs,
            live: Live::new(false),
            ..Reporter::new(false)
        }
    }

    /// A reporter of one step tried alone (`plugin run`): its log follows
    /// its line whatever its outcome.
    pub fn every_log(verbose: bool) -> Self {
        Reporter {
            every_log: !verbose,
            ..Reporter::new(verbose)
        }
    }

    /// Whether a step's log is printed after its line: a failed step's
    /// (unless `--verbose` printed it as it came), and with `show RUN
    /// --logs` or `plugin run` every step's.
    fn prints_log(&self, failed: bool) -> bool {
        (failed && !self.verbose) || self.every_log
    }
}

impl EventSink for Reporter {
    fn emit(&self, envelope: Envelope) {
        let run_id = envelope.run_id.unwrap_or_default();
        // The live line of what starts, drawn after its permanent line (if
        // it has one: an action's, the rollback's), never under it.
        let starts = match &envelope.event {
            Event::StepStarted { step, .. } => Some(step.clone()),
            Event::ActionStarted { action, .. } => Some(format!("action {action}")),
            Event::RollbackStarted { .. } => Some("rolling back".to_owned()),
            _ => None,
        };
        if starts.is_some() {
            self.live.finish();
        }
        match &envelope.event {
            Event::StepProgress {
                unit, done, total, ..
            } => self.live.progress(unit, *done, *total),
            Event::StepLog { message, .. } => self.live.output(message),
            Event::StepFinished { .. }
            | Event::ActionFinished { .. }
            | Event::RollbackFinished { .. }
            | Event::FlowFinished { .. } => self.live.finish(),
            _ => {}
        }
        self.print(&run_id, envelope.event);
        if let Some(what) = starts {
            self.live.start(&what);
        }
    }
}

impl Reporter {
    /// The permanent lines of `event`, of run `run_id`. (Longer than most
    /// functions: one arm per kind of event, most of its lines the
    /// events' fields; an arm longer than a few lines calls a function.)
    fn print(&self, run_id: &str, event: Event) {
        if self.quiet && all_went_well(&event) {
            return;
        }
        match event {
            Event::PluginLoaded {
                plugin,
                sha256,
                cache,
                duration_us,
            } if self.verbose => {
                let how = match cache {
                    CacheOutcome::Hit => "compiled cache hit",
                    _ => "compiled and cached",
                };
                errln!(
                    "plugin {plugin} (sha256 {}): {how} in {:.1} ms",
                    &sha256[..12],
                    duration_us as f64 / 1e3
                );
            }
            Event::FlowStarted {
                flow,
                steps,
                file,
                params,
            } => self.flow_started(run_id, (&flow, &steps), &file, params),
            Event::StepStarted {
                index,
                plugin,
                sha256,
                ..
            } if self.replay => {
                self.plugins
                    .lock()
                    .expect("plugins lock")
                    .insert(index, (plugin, sha256));
            }
            Event::StepLog { step, level, message } if self.verbose => {
                errln!("  [{}] {}{}", clean(&step), level_tag(level), clean(&message));
            }
            Event::StepFinished {
                index,
                step,
                status,
                duration_us,
                summary,
                error,
                details,
                log,
            } => self.step_finished(
                (index, &step, status, duration_us),
                (summary, error, details),
                &log,
            ),
            Event::Warning { message } if self.replay => {
                outln!("{}: {}", paint(NOTE, "warning"), clean(&message))
            }
            Event::Warning { message } => errln!("{}: {}", paint(NOTE, "warning"), clean(&message)),
            Event::RollbackStarted { changes, .. } => {
                outln!("rolling back {}", super::changes(changes as usize));
            }
            Event::RollbackFinished {
                undone,
                problems,
                kept,
                not_reversed,
                duration_us,
                ..
            } => {
                print_kept(&kept, "during the run");
                print_not_reversed(&not_reversed);
                print_rollback_verdict(undone, &problems, duration_us);
            }
            Event::ActionStarted {
                action,
                step,
                trigger,
                ..
            } => {
                let whose = match step {
                    Some(step) => format!("step '{}', {}", clean(&step), trigger.as_str()),
                    None => "the flow's rollback".to_owned(),
                };
                outln!("  action  {} ({whose})", clean(&action));
            }
            Event::ActionFinished {
                action,
                status,
                duration_us,
                summary,
                error,
                log,
                ..
            } => self.action_finished((&action, status, duration_us), (summary, error), &log),
            Event::FlowFinished {
                flow,
                status,
                duration_us,
                failed_step,
                kept_steps,
                kept_actions,
                journaled,
            } => {
                let took = format_duration(duration_us);
                let at = failed_step
                    .map(|s| format!(" at step '{}'", clean(&s)))
                    .unwrap_or_default();
                let verdict = verdict(&kept_steps, &kept_actions);
                let (style, line) =
                    flow_line((&clean(&flow), status, journaled), (&took, &at, &verdict), run_id);
                outln!("{}", paint(style, line));
            }
            _ => {}
        }
    }

    fn flow_started(
        &self,
        run_id: &str,
        (flow, steps): (&str, &[String]),
        file: &std::path::Path,
        params: std::collections::BTreeMap<String, String>,
    ) {
        *self.width.lock().expect("width lock") = steps.iter().map(String::len).max().unwrap_or(0);
        let n = steps.len();
        outln!(
            "flow {}: {n} step{} (run {run_id})",
            clean(flow),
            if n == 1 { "" } else { "s" }
        );
        if self.replay {
            outln!("  from {}", clean(&file.display().to_string()));
            for (name, value) in params {
                outln!("  param {}={}", clean(&name), clean(&value));
            }
        }
    }

    /// A step's line: its verdict, time and what it said; then its
    /// details, the plugin that ran (replayed), and its log where asked.
    fn step_finished(
        &self,
        (index, step, status, duration_us): (usize, &str, StepStatus, u64),
        (summary, error, details): (Option<String>, Option<String>, Option<String>),
        log: &[LogLine],
    ) {
        let width = *self.width.lock().expect("width lock");
        let (tag, text) = match status {
            StepStatus::Succeeded => (paint(GOOD, "ok     "), summary.unwrap_or_default()),
            StepStatus::Failed => (paint(BAD, "FAILED "), error.unwrap_or_default()),
            StepStatus::FailedIgnored => (
                paint(NOTE, "failed "),
                format!(
                    "{} (ignored: on-failure = \"continue\")",
                    error.unwrap_or_default()
                ),
            ),
            StepStatus::Skipped => (paint(DIM, "skipped"), String::new()),
            _ => ("?      ".to_owned(), error.or(summary).unwrap_or_default()),
        };
        let time = match status {
            StepStatus::Skipped => String::new(),
            _ => format_duration(duration_us),
        };
        let step = clean(step);
        outln!("  {tag} {step:<width$}  {time:>7}  {}", clean(&text));
        for line in details.iter().flat_map(|d| d.lines()) {
            outln!("          {}", clean(line));
        }
        if let Some((plugin, sha256)) = self.plugins.lock().expect("plugins lock").get(&index) {
            outln!(
                "          ran {} (sha256 {})",
                clean(plugin),
                &sha256[..sha256.len().min(12)]
            );
        }
        if self.prints_log(matches!(status, StepStatus::Failed | StepStatus::FailedIgnored)) {
            print_log(log);
        }
    }

    fn action_finished(
        &self,
        (action, status, duration_us): (&str, StepStatus, u64),
        (summary, error): (Option<String>, Option<String>),
        log: &[LogLine],
    ) {
        if self.quiet {
            // Its heading was not printed.
            outln!("  action  {}", clean(action));
        }
        let failed = status != StepStatus::Succeeded;
        let (tag, text) = match failed {
            false => (paint(GOOD, "ok"), summary.unwrap_or_default()),
            true => (paint(BAD, "FAILED"), error.unwrap_or_default()),
        };
        outln!(
            "          {tag} in {}  {}",
            format_duration(duration_us),
            clean(&text)
        );
        if self.prints_log(failed) {
            print_log(log);
        }
    }
}

/// The rollback's last line, and the paths it could not restore.
fn print_rollback_verdict(undone: usize, problems: &[Problem], duration_us: u64) {
    if problems.is_empty() {
        outln!(
            "{}: {} undone in {}; every path restored",
            paint(GOOD, "rolled back"),
            super::changes(undone),
            format_duration(duration_us)
        );
        return;
    }
    outln!(
        "{}: {} path(s) could not be restored:",
        paint(BAD, "ROLLBACK INCOMPLETE"),
        problems.len()
    );
    for problem in problems {
        outln!("  {}", clean(&problem.to_string()));
    }
}

/// A run's last line, by its outcome: `flow` (cleaned), how long it
/// `took`, `at` which step it failed, the `verdict` on what the rollback
/// left.
fn flow_line(
    (flow, status, journaled): (&str, FlowStatus, bool),
    (took, at, verdict): (&str, &str, &str),
    run_id: &str,
) -> (anstyle::Style, String) {
    match status {
        FlowStatus::Succeeded => (GOOD, format!("flow {flow} succeeded in {took}")),
        FlowStatus::RolledBack => (
            NOTE,
            format!("flow {flow} failed{at} after {took}; rolled back: {verdict}"),
        ),
        FlowStatus::RollbackIncomplete => (
            BAD,
            format!(
                "flow {flow} failed{at} after {took}; ROLLBACK INCOMPLETE: see the failed actions or paths above"
            ),
        ),
        FlowStatus::NotRolledBack if !journaled => (
            BAD,
            format!(
                "flow {flow} failed{at} after {took}; NOT ROLLED BACK: the run kept no journal (--no-journal), so its changes are as the steps left them"
            ),
        ),
        FlowStatus::NotRolledBack => (
            NOTE,
            format!(
                "flow {flow} failed{at} after {took}; its changes were left in place (on-failure = \"stop\"): `stepback undo {}` reverses them",
                clean(run_id)
            ),
        ),
        FlowStatus::Uncommitted => (
            NOTE,
            format!(
                "flow {flow}: every step succeeded, but the run could not be recorded as committed, so it was rolled back ({took})"
            ),
        ),
        FlowStatus::Interrupted => (
            NOTE,
            format!(
                "flow {flow} interrupted{} after {took}; rolled back: {verdict}",
                at.replacen(" at step", " in step", 1)
            ),
        ),
        _ => (anstyle::Style::new(), format!("flow {flow} ended after {took}")),
    }
}

/// Whether `event` says only that something went as it should: what `-q`
/// leaves out.
fn all_went_well(event: &Event) -> bool {
    match event {
        Event::FlowStarted { .. } | Event::ActionStarted { .. } | Event::RollbackStarted { .. } => true,
        Event::StepFinished { status, .. } => matches!(status, StepStatus::Succeeded | StepStatus::Skipped),
        Event::ActionFinished { status, .. } => *status == StepStatus::Succeeded,
        Event::RollbackFinished {
            problems,
            kept,
            not_reversed,
            ..
        } => problems.is_empty() && kept.is_empty() && not_reversed.is_empty(),
        _ => false,
    }
}

/// What a rollback leaves: the machine as before the run, but for what
/// steps with `revert = false` and actions changed on purpose.
fn verdict(steps: &[String], actions: &[String]) -> String {
    let quoted = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("'{}'", clean(n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kept: Vec<String> = [
        (!steps.is_empty()).then(|| format!("of steps {} (revert = false)", quoted(steps))),
        (!actions.is_empty()).then(|| format!("of actions {}", quoted(actions))),
    ]
    .into_iter()
    .flatten()
    .collect();
    match kept.is_empty() {
        true => "the machine is as before the run".to_owned(),
        false => format!(
            "the machine is as before the run but for the changes {}",
            kept.join(" and ")
        ),
    }
}

fn print_log(log: &[LogLine]) {
    if log.is_empty() {
        return;
    }
    outln!("          log:");
    for line in log {
        outln!("          | {}{}", level_tag(line.level), clean(&line.message));
    }
}

fn level_tag(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace: ",
        LogLevel::Debug => "debug: ",
        LogLevel::Info => "",
        LogLevel::Warn => "warning: ",
        LogLevel::Error => "error: ",
        LogLevel::Stdout => "stdout: ",
        LogLevel::Stderr => "stderr: ",
        _ => "",
    }
}

/// A duration of `micros` as people read it: `56ms`, `2.35s`.
fn format_duration(micros: u64) -> String {
    if micros < 1_000_000 {
        format!("{}ms", micros / 1000)
    } else {
        format!("{:.2}s", micros as f64 / 1e6)
    }
}

pub fn print_inspection(
    plugin: &Plugin,
    info: &PluginInfo,
    imports: &[String],
    exports: &[String],
    registry: Option<&serde_json::Value>,
) {
    outln!(
        "{} {} ({})",
        clean(&info.name),
        clean(&info.version),
        clean(&plugin.label)
    );
    outln!("  {}", clean(&info.description));
    outln!("  sha256: {}", plugin.sha256);
    if let Some(r) = registry {
        let text = |key: &str| clean(r[key].as_str().unwrap_or("none"));
        outln!("  manifest: {}", text("manifest"));
        let signers: Vec<&str> = r["signed_by"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str())
            .collect();
        let signers = match signers.is_empty() {
            true => "nobody".to_owned(),
            false => clean(&signers.join(", ")).to_string(),
        };
        outln!("  signed by: {signers}");
        outln!("  trust: {}", text("trust"));
        outln!("  WIT: stepback:plugin@{}", text("wit"));
    }
    outln!("needs:");
    for need in &info.needs.mounts {
        outln!("  mount {:?}: {:?}", clean(&need.role), need.access);
    }
    outln!("  exec: {}, network: {}", info.needs.exec, info.needs.network);
    let defaults = stepback::plugin::defaults::list(&info.config_schema);
    if !defaults.is_empty() {
        outln!("defaults (applied to `with` before the plugin sees it):");
        for (key, value) in defaults {
            outln!("  {} = {}", clean(&key), clean(&value.to_string()));
        }
    }
    outln!("config schema:");
    let schema = serde_json::to_string_pretty(&info.config_schema).unwrap_or_default();
    for line in schema.lines() {
        outln!("  {line}");
    }
    outln!("imports:");
    for name in imports {
        outln!("  {name}");
    }
    outln!("exports:");
    for name in exports {
        outln!("  {name}");
    }
}

/// Commands whose changes no rollback reverses (`capture = "none"` or
/// `"snapshot"`, outside its paths).
pub fn print_not_reversed(commands: &[String]) {
    if commands.is_empty() {
        return;
    }
    outln!(
        "{}: {} command(s) changed the mounts outside a capture; what they changed there is as they left it:",
        paint(NOTE, "NOT REVERSED"),
        commands.len()
    );
    for c in commands {
        outln!("  {}", clean(c));
    }
}

/// Lists what a rollback moved aside: other processes' changes found at
/// paths the run had changed, made `when` (during the run, or since it
/// ended, for an undo).
pub fn print_kept(kept: &[impl std::fmt::Display], when: &str) {
    if kept.is_empty() {
        return;
    }
    outln!(
        "{} change(s) made by another process {when} were in the way and are kept aside:",
        kept.len()
    );
    for k in kept {
        outln!("  {} {}", paint(NOTE, "KEPT ASIDE"), clean(&k.to_string()));
    }
}

/// `cache list`: each compiled plugin, then their total against the limit.
pub fn print_cache(dir: &std::path::Path, entries: &[stepback::plugin::CacheEntry], limit: u64) {
    for e in entries {
        outln!(
            "{}  {:>10}  last used {}",
            &e.sha256[..12],
            bytesize::ByteSize(e.size),
            humantime::format_rfc3339_seconds(e.last_used)
        );
    }
    let total: u64 = entries.iter().map(|e| e.size).sum();
    outln!(
        "{} compiled plugin(s), {} of {} ({})",
        entries.len(),
        bytesize::ByteSize(total),
        bytesize::ByteSize(limit),
        dir.display()
    );
}

/// `cache prune`: how many went, and the disk they freed.
pub fn print_pruned(removed: &[stepback::plugin::CacheEntry], stored: &[(stepback::registry::Digest, u64)]) {
    let freed: u64 = removed.iter().map(|e| e.size).sum();
    outln!(
        "removed {} compiled plugin(s), {}",
        removed.len(),
        bytesize::ByteSize(freed)
    );
    if !stored.is_empty() {
        let freed: u64 = stored.iter().map(|(_, size)| size).sum();
        outln!(
            "removed {} blob(s) of pulled plugins no lock pins, {}",
            stored.len(),
            bytesize::ByteSize(freed)
        );
    }
}
