//! What a run reports as it goes. The CLI prints these for people or as
//! JSON lines; a program embedding the library implements [`EventSink`].

use crate::plugin::CacheOutcome;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    /// A line the guest wrote to its standard output.
    Stdout,
    /// A line the guest wrote to its standard error (panic messages land here).
    Stderr,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Succeeded,
    Failed,
    /// Failed under `on-failure = "continue"`: the flow went on.
    FailedIgnored,
    /// Not run because an earlier step stopped the flow.
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowStatus {
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    PluginLoaded {
        plugin: String,
        sha256: String,
        cache: CacheOutcome,
        millis: f64,
    },
    FlowStarted {
        flow: String,
        run_id: String,
        /// Step names, in order.
        steps: Vec<String>,
    },
    StepStarted {
        index: usize,
        step: String,
        plugin: String,
    },
    StepLog {
        step: String,
        level: LogLevel,
        message: String,
    },
    StepProgress {
        step: String,
        unit: String,
        done: u64,
        total: Option<u64>,
    },
    StepFinished {
        index: usize,
        step: String,
        status: StepStatus,
        millis: f64,
        summary: Option<String>,
        error: Option<String>,
        details: Option<String>,
        log: Vec<LogLine>,
    },
    /// A failed flow's changes are being reversed.
    RollbackStarted {
        run_id: String,
        /// Undo records in the journal.
        changes: u64,
    },
    RollbackFinished {
        run_id: String,
        undone: usize,
        /// Paths that could not be restored, with the reason.
        problems: Vec<String>,
        /// Changes other processes made to paths the run had changed,
        /// moved aside into the run's backup area (where each one is
        /// kept is in its line) so that restoring the path lost nothing.
        kept: Vec<String>,
        millis: f64,
    },
    /// Something went wrong that does not change the run's outcome.
    Warning { message: String },
    FlowFinished {
        flow: String,
        run_id: String,
        status: FlowStatus,
        millis: f64,
        failed_step: Option<String>,
    },
}

/// Receives a run's events, in order, from the thread running the flow.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
}

/// Drops every event.
pub struct Discard;

impl EventSink for Discard {
    fn emit(&self, _event: Event) {}
}
