//! Output for people: one line per step with its status and duration, the
//! log of a failed step, and with `--verbose` what happens as it happens.

use super::escape::clean;
use super::live::Live;
use super::out::{errln, outln};
use std::sync::Mutex;
use stepback::events::{Envelope, Event, EventSink, FlowStatus, LogLevel, LogLine, StepStatus};
use stepback::plugin::{CacheOutcome, PluginInfo};
use stepback::sandbox::Plugin;

pub struct Reporter {
    verbose: bool,
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
            width: Mutex::new(0),
            live: Live::new(!verbose),
        }
    }
}

impl EventSink for Reporter {
    fn emit(&self, envelope: Envelope) {
        let run_id = envelope.run_id.unwrap_or_default();
        match &envelope.event {
            Event::StepStarted { step, .. } => self.live.start(step),
            Event::ActionStarted { action, .. } => self.live.start(&format!("action {action}")),
            Event::RollbackStarted { .. } => self.live.start("rolling back"),
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
        match envelope.event {
            Event::PluginLoaded {
                plugin,
                sha256,
                cache,
                millis,
            } if self.verbose => {
                let how = match cache {
                    CacheOutcome::Hit => "compiled cache hit",
                    _ => "compiled and cached",
                };
                errln!(
                    "plugin {plugin} (sha256 {}): {how} in {millis:.1} ms",
                    &sha256[..12]
                );
            }
            Event::FlowStarted { flow, steps } => {
                *self.width.lock().expect("width lock") = steps.iter().map(String::len).max().unwrap_or(0);
                let n = steps.len();
                outln!(
                    "flow {}: {n} step{} (run {run_id})",
                    clean(&flow),
                    if n == 1 { "" } else { "s" }
                );
            }
            Event::StepLog { step, level, message } if self.verbose => {
                errln!("  [{}] {}{}", clean(&step), level_tag(level), clean(&message));
            }
            Event::StepFinished {
                step,
                status,
                millis,
                summary,
                error,
                log,
                ..
            } => {
                let width = *self.width.lock().expect("width lock");
                let (tag, text) = match status {
                    StepStatus::Succeeded => ("ok", summary.unwrap_or_default()),
                    StepStatus::Failed => ("FAILED", error.unwrap_or_default()),
                    StepStatus::FailedIgnored => (
                        "failed",
                        format!(
                            "{} (ignored: on-failure = \"continue\")",
                            error.unwrap_or_default()
                        ),
                    ),
                    StepStatus::Skipped => ("skipped", String::new()),
                    _ => ("?", error.or(summary).unwrap_or_default()),
                };
                let time = if status == StepStatus::Skipped {
                    String::new()
                } else {
                    format_millis(millis)
                };
                let step = clean(&step);
                outln!("  {tag:<7} {step:<width$}  {time:>7}  {}", clean(&text));
                if matches!(status, StepStatus::Failed | StepStatus::FailedIgnored) && !self.verbose {
                    print_log(&log);
                }
            }
            Event::Warning { message } => errln!("warning: {}", clean(&message)),
            Event::RollbackStarted { changes, .. } => {
                outln!(
                    "rolling back {changes} recorded change{}",
                    if changes == 1 { "" } else { "s" }
                );
            }
            Event::RollbackFinished {
                undone,
                problems,
                kept,
                not_reversed,
                millis,
                ..
            } => {
                print_kept(&kept);
                print_not_reversed(&not_reversed);
                if problems.is_empty() {
                    outln!(
                        "rolled back: {undone} changes undone in {}; every path restored",
                        format_millis(millis)
                    );
                } else {
                    outln!(
                        "ROLLBACK INCOMPLETE: {} path(s) could not be restored:",
                        problems.len()
                    );
                    for problem in problems {
                        outln!("  {}", clean(&problem));
                    }
                }
            }
            Event::ActionStarted {
                action,
                step,
                trigger,
                ..
            } => {
                let whose = match step {
                    Some(step) => format!("step '{}', {trigger}", clean(&step)),
                    None => "the flow's rollback".to_owned(),
                };
                outln!("  action  {} ({whose})", clean(&action));
            }
            Event::ActionFinished {
                status,
                millis,
                summary,
                error,
                log,
                ..
            } => {
                let (tag, text) = match status {
                    StepStatus::Succeeded => ("ok", summary.unwrap_or_default()),
                    _ => ("FAILED", error.unwrap_or_default()),
                };
                outln!("          {tag} in {}  {}", format_millis(millis), clean(&text));
                if tag == "FAILED" && !self.verbose {
                    print_log(&log);
                }
            }
            Event::FlowFinished {
                flow,
                status,
                millis,
                failed_step,
                ..
            } => {
                let flow = clean(&flow);
                let took = format_millis(millis);
                let at = failed_step
                    .map(|s| format!(" at step '{}'", clean(&s)))
                    .unwrap_or_default();
                match status {
                    FlowStatus::Succeeded => outln!("flow {flow} succeeded in {took}"),
                    FlowStatus::RolledBack => {
                        outln!(
                            "flow {flow} failed{at} after {took}; rolled back: the machine is as before the run"
                        )
                    }
                    FlowStatus::RollbackIncomplete => outln!(
                        "flow {flow} failed{at} after {took}; ROLLBACK INCOMPLETE: see the failed actions or paths above"
                    ),
                    FlowStatus::NotRolledBack => outln!(
                        "flow {flow} failed{at} after {took}; its changes were left in place (on-failure = \"stop\"): `stepback undo {}` reverses them",
                        clean(&run_id)
                    ),
                    FlowStatus::Uncommitted => outln!(
                        "flow {flow}: every step succeeded, but the run could not be recorded as committed, so it was rolled back ({took})"
                    ),
                    FlowStatus::Interrupted => outln!(
                        "flow {flow} interrupted{} after {took}; rolled back",
                        at.replacen(" at step", " in step", 1)
                    ),
                    _ => outln!("flow {flow} ended after {took}"),
                }
            }
            _ => {}
        }
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

fn format_millis(millis: f64) -> String {
    if millis < 1000.0 {
        format!("{millis:.0}ms")
    } else {
        format!("{:.2}s", millis / 1000.0)
    }
}

pub fn print_inspection(plugin: &Plugin, info: &PluginInfo, imports: &[String], exports: &[String]) {
    outln!(
        "{} {} ({})",
        clean(&info.name),
        clean(&info.version),
        clean(&plugin.label)
    );
    outln!("  {}", clean(&info.description));
    outln!("  sha256: {}", plugin.sha256);
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
        "NOT REVERSED: {} command(s) changed the mounts outside a capture; what they changed there is as they left it:",
        commands.len()
    );
    for c in commands {
        outln!("  {}", clean(c));
    }
}

/// Lists what a rollback moved aside: other processes' changes found at
/// paths the run had changed.
pub fn print_kept(kept: &[impl std::fmt::Display]) {
    if kept.is_empty() {
        return;
    }
    outln!(
        "{} change(s) made by another process during the run were in the way and are kept aside:",
        kept.len()
    );
    for k in kept {
        outln!("  KEPT ASIDE {}", clean(&k.to_string()));
    }
}
