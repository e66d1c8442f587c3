//! What a run reports as it goes. The CLI prints these for people or as
//! JSON lines; a program embedding the library implements [`EventSink`].
//! A leaf: it depends on nothing else in the crate.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How important a step's log line is, or which of its output streams it
/// came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LogLevel {
    /// Detail for whoever debugs the plugin.
    Trace,
    /// Detail for the step author.
    Debug,
    /// What the step is doing.
    Info,
    /// Something the operator should know even if the step succeeds.
    Warn,
    /// Something went wrong (whether the step fails is its own call).
    Error,
    /// A line the guest wrote to its standard output.
    Stdout,
    /// A line the guest wrote to its standard error (panic messages land here).
    Stderr,
}

/// One line of a step's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// How important the line is, or which output stream it came from.
    pub level: LogLevel,
    /// The text as the step wrote it (control characters included: a
    /// reporter for people escapes them).
    pub message: String,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum StepStatus {
    /// The step did its work.
    Succeeded,
    /// Failed, and stopped the flow.
    Failed,
    /// Failed under `on-failure = "continue"`: the flow went on.
    FailedIgnored,
    /// Not run because an earlier step stopped the flow.
    Skipped,
}

/// How a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FlowStatus {
    /// Every step succeeded (or failed under `on-failure = "continue"`);
    /// the run is committed.
    Succeeded,
    /// A step failed and stopped the flow; the actions it triggered ran,
    /// every change was reverted and the flow's rollback action ran, all
    /// of it successfully.
    #[serde(rename = "failed-rolled-back")]
    RolledBack,
    /// A step failed and stopped the flow, and the rollback did not all
    /// succeed: an action failed, or a path could not be restored (the
    /// rest of the rollback still ran). Needs attention.
    #[serde(rename = "failed-rollback-incomplete")]
    RollbackIncomplete,
    /// A step failed under `on-failure = "stop"` (or in a run without a
    /// journal): the actions it triggered ran, and the flow's changes
    /// were left in place; a journaled run is committed, so it can be
    /// undone later.
    #[serde(rename = "failed-not-rolled-back")]
    NotRolledBack,
    /// The run was cancelled ([`crate::cancel::Cancel`]): the step running
    /// then was stopped, and the flow rolled back as if it had failed.
    #[serde(rename = "interrupted-rolled-back")]
    Interrupted,
    /// Every step succeeded, but the run could not be recorded as
    /// committed (its journal could not be written): it was rolled back,
    /// so the machine is as before the run rather than in a state no
    /// record describes.
    Uncommitted,
}

/// A path a rollback could not restore, or another process's change it
/// found in the way and kept aside (then `kept_at` says where).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Problem {
    /// The mount (empty when the problem is the journal's).
    pub mount: String,
    /// The path in it (empty when not known).
    pub path: String,
    /// What went wrong, or what was found.
    pub reason: String,
    /// Where what was in the way was moved to, in the run's backup area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_at: Option<std::path::PathBuf>,
}

impl Problem {
    /// A problem at `path` of `mount`.
    pub fn new(mount: &str, path: &str, reason: impl Into<String>) -> Problem {
        Problem {
            mount: mount.to_owned(),
            path: path.to_owned(),
            reason: reason.into(),
            kept_at: None,
        }
    }

    /// What was found, kept aside at `at`.
    pub fn kept_at(self, at: std::path::PathBuf) -> Problem {
        Problem {
            kept_at: Some(at),
            ..self
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.mount.is_empty() || !self.path.is_empty() {
            write!(f, "{}:/{}: ", self.mount, self.path)?;
        }
        f.write_str(&self.reason)?;
        match &self.kept_at {
            Some(at) => write!(f, "; kept at {}", at.display()),
            None => Ok(()),
        }
    }
}

/// Problems as runs recorded before they were typed kept them: lines.
fn problems_or_lines<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Problem>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Typed(Problem),
        Line(String),
    }
    Ok(Vec::<Either>::deserialize(d)?
        .into_iter()
        .map(|e| match e {
            Either::Typed(p) => p,
            Either::Line(line) => Problem::new("", "", line),
        })
        .collect())
}

/// Why an action runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ActionTrigger {
    /// Its step failed (`trigger = "this-step"`).
    ThisStep,
    /// Its step or a later one failed (`trigger = "any-step"`).
    AnyStep,
    /// The flow's rollback action, after the revert.
    Rollback,
}

impl ActionTrigger {
    /// As the flow file and the action's `stepback.trigger` say it.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionTrigger::ThisStep => "this-step",
            ActionTrigger::AnyStep => "any-step",
            ActionTrigger::Rollback => "rollback",
        }
    }
}

/// Whether loading a plugin compiled it or reused compiled code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CacheOutcome {
    /// Compiled code was loaded from the cache.
    Hit,
    /// The component was compiled (and the result cached).
    Compiled,
}

/// Something that happened, in the order it happened. As JSON, `event`
/// names the variant in kebab-case (`step-finished`) and the fields keep
/// their names (snake_case, as every key the CLI prints). Durations are
/// microseconds of wall-clock time, whole, in `duration_us`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Event {
    /// A plugin's component is ready to run (while a flow is validated).
    PluginLoaded {
        /// As the flow names it: `builtin:NAME` or a path.
        plugin: String,
        /// Of the component's bytes, hex.
        sha256: String,
        /// Whether compiled code was reused.
        cache: CacheOutcome,
        /// Time to load (and compile, on a cache miss).
        #[serde(alias = "millis", deserialize_with = "whole_micros")]
        duration_us: u64,
    },
    /// The run has its journal and its locks, and starts its first step.
    FlowStarted {
        /// The flow's name.
        flow: String,
        /// Step names, in order.
        steps: Vec<String>,
        /// The flow's file.
        #[serde(default)]
        file: std::path::PathBuf,
        /// Every parameter with the value it has in this run (the flow's
        /// default where none was given), by name.
        #[serde(default)]
        params: std::collections::BTreeMap<String, String>,
    },
    /// A step begins.
    StepStarted {
        /// Position in the flow, from 0.
        index: usize,
        /// The step's name.
        step: String,
        /// As the flow names it.
        plugin: String,
        /// Of the plugin's component, hex: what ran.
        #[serde(default)]
        sha256: String,
    },
    /// A line of a step's log, as it is written (bounded per step: see
    /// [`Event::StepFinished`]'s `log`).
    StepLog {
        /// The step's name.
        step: String,
        /// Its level, or the output stream it came from.
        level: LogLevel,
        /// The line, without its newline.
        message: String,
    },
    /// How far a step has got: at most every 100 ms per unit, and always
    /// when `done` reaches `total`.
    StepProgress {
        /// The step's name.
        step: String,
        /// What is counted (`files`, `bytes`), as the step names it.
        unit: String,
        /// How many `unit`s are done.
        done: u64,
        /// `None` when the step does not know.
        total: Option<u64>,
    },
    /// A step ended (or was skipped).
    StepFinished {
        /// Position in the flow, from 0.
        index: usize,
        /// The step's name.
        step: String,
        /// How it ended.
        status: StepStatus,
        /// Wall time of the step, its host calls included; 0 if skipped.
        #[serde(alias = "millis", deserialize_with = "whole_micros")]
        duration_us: u64,
        /// What the step says it did, when it succeeded.
        summary: Option<String>,
        /// Why it failed (the plugin's message, or the limit it hit).
        error: Option<String>,
        /// More about the failure, when there is more.
        details: Option<String>,
        /// The step's whole log, with lines about what was dropped beyond
        /// the host's bounds.
        log: Vec<LogLine>,
    },
    /// A failed flow's changes are being reversed.
    RollbackStarted {
        /// Changes to undo, counted as `show` lists them.
        changes: u64,
    },
    /// The rollback ended; the flow is back where it started unless `problems` lists paths.
    RollbackFinished {
        /// Changes this rollback undid, counted as `show` lists them (a
        /// directory's listing and times go with the changes in it).
        undone: usize,
        /// Paths that could not be restored, with the reason.
        #[serde(deserialize_with = "problems_or_lines")]
        problems: Vec<Problem>,
        /// Changes other processes made to paths the run had changed,
        /// moved aside into the run's backup area (`kept_at`) so that
        /// restoring the path lost nothing.
        #[serde(deserialize_with = "problems_or_lines")]
        kept: Vec<Problem>,
        /// Commands that ran uncaptured (`capture = "none"`): what they
        /// changed was not reversed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_reversed: Vec<String>,
        /// Wall time of the rollback and its verification.
        #[serde(alias = "millis", deserialize_with = "whole_micros")]
        duration_us: u64,
    },
    /// A failure runs an action: a step's customized action (newest step
    /// first, before the revert) or the flow's rollback action (after it).
    ActionStarted {
        /// The action's name.
        action: String,
        /// The step it belongs to; none for the flow's rollback action.
        step: Option<String>,
        /// Why it runs.
        trigger: ActionTrigger,
        /// As the flow names its plugin.
        plugin: String,
    },
    /// An action ended. A failed one does not stop the rest of the
    /// rollback; the flow then ends "failed-rollback-incomplete".
    ActionFinished {
        /// The action's name.
        action: String,
        /// Succeeded or failed.
        status: StepStatus,
        /// Wall time.
        #[serde(alias = "millis", deserialize_with = "whole_micros")]
        duration_us: u64,
        /// Its summary line, when it succeeded.
        summary: Option<String>,
        /// Why it failed.
        error: Option<String>,
        /// Its log, bounded like a step's.
        log: Vec<LogLine>,
    },
    /// Something went wrong that does not change the run's outcome.
    Warning {
        /// What, in one line.
        message: String,
    },
    /// The last event of a run.
    FlowFinished {
        /// The flow's name.
        flow: String,
        /// How the run ended.
        status: FlowStatus,
        /// Wall time from the first step to the end of the rollback.
        #[serde(alias = "millis", deserialize_with = "whole_micros")]
        duration_us: u64,
        /// The step whose failure stopped the flow.
        failed_step: Option<String>,
        /// After a rollback: the steps that ran with `revert = false`, whose
        /// changes stay, so that the machine is not quite as before the run.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept_steps: Vec<String>,
        /// After a rollback: the actions that ran, whose changes stay too.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept_actions: Vec<String>,
        /// Whether the run kept a journal: without one, a failure's
        /// changes stay (the status says `failed-not-rolled-back`) and
        /// the run cannot be undone.
        #[serde(default = "journaled")]
        journaled: bool,
    },
}

/// An event as a sink receives it: what happened, in which run, and when.
/// As JSON, the event's own fields sit beside `run_id` and `time`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Envelope {
    /// The version of the format ([`SCHEMA`]); runs recorded before it
    /// was written read as version 1.
    #[serde(default = "first_schema")]
    pub schema: u32,
    /// The run it belongs to; `None` for what happens outside a run (a
    /// plugin loaded while a flow is validated).
    pub run_id: Option<String>,
    /// When it happened: RFC 3339, UTC, to the millisecond.
    pub time: String,
    #[serde(flatten)]
    /// What happened.
    pub event: Event,
}

/// Microseconds since `start`: what `duration_us` holds.
pub(crate) fn micros_since(start: std::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Reads `duration_us`, and the fractional `millis` that runs recorded
/// before it kept in their `events.jsonl`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Duration {
    Micros(u64),
    /// Only under its old name, `millis`.
    Millis(f64),
}

fn whole_micros<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(match Duration::deserialize(d)? {
        Duration::Micros(us) => us,
        Duration::Millis(ms) => (ms.max(0.0) * 1e3).round() as u64,
    })
}

/// Receives events, in order, from the thread running the flow.
pub trait EventSink: Send + Sync {
    /// Receives one event; called from the thread running the flow, in order. It should not
    /// block for long: the run waits.
    fn emit(&self, envelope: Envelope);
}

/// Drops every event.
pub struct Discard;

impl EventSink for Discard {
    fn emit(&self, _envelope: Envelope) {}
}

/// The version of every JSON object Stepback prints, events and the CLI's
/// results alike (`"schema": 1`), described by
/// `engine/schema/output-1.schema.json`: a field's meaning does not change
/// within a version; new fields and events may appear.
pub const SCHEMA: u32 = 1;

fn first_schema() -> u32 {
    1
}

/// Runs recorded before `journaled` was said kept a journal: a run without
/// one keeps no record either.
fn journaled() -> bool {
    true
}

/// Stamps events with their run and time on the way to a sink.
#[derive(Clone)]
pub(crate) struct Emitter {
    run_id: Option<Arc<str>>,
    sink: Arc<dyn EventSink>,
}

impl Emitter {
    /// Events outside any run.
    pub(crate) fn new(sink: Arc<dyn EventSink>) -> Emitter {
        Emitter { run_id: None, sink }
    }

    /// Events of run `run_id`, to `sink`.
    pub(crate) fn for_run(run_id: &str, sink: Arc<dyn EventSink>) -> Emitter {
        Emitter {
            run_id: Some(run_id.into()),
            sink,
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        self.sink.emit(Envelope {
            schema: SCHEMA,
            run_id: self.run_id.as_deref().map(str::to_owned),
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            event,
        });
    }
}
