//! What a run did, read from the engine's JSON output (schema 1).

use serde::Deserialize;
use std::fmt;

/// One run of a step: how it ended, what it logged, what it changed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Run {
    /// The engine's exit code (0 when the step succeeded).
    pub exit_code: i32,
    /// How the run ended.
    pub outcome: Outcome,
    /// The step's error, when it failed.
    pub error: Option<String>,
    /// Everything the step logged, its commands' output included, in order.
    pub log: Vec<LogLine>,
    /// The changes the run's journal holds (after a rollback of a failed
    /// step, none: they were reversed).
    pub changes: Vec<Change>,
    /// With [`crate::Step::rollback`], what the rollback did.
    pub rollback: Option<Rollback>,
    /// All the engine printed, for messages.
    pub output: String,
}

/// How a run ended: the `outcome` of the engine's JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Outcome {
    /// The step succeeded; its changes stay (unless rolled back after).
    Succeeded,
    /// The step failed and every change it made was reversed.
    FailedRolledBack,
    /// The step failed and some of its changes could not be reversed.
    FailedRollbackIncomplete,
    /// The step failed and its changes were kept.
    FailedNotRolledBack,
    /// The run was interrupted and rolled back.
    InterruptedRolledBack,
    /// The step succeeded and [`crate::Step::rollback`] undid its changes.
    Undone,
    /// Any other outcome (a newer engine's).
    #[serde(other)]
    Other,
}

/// One line of the step's log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogLine {
    /// Its level, or which output stream of a command it came from.
    pub level: Level,
    /// The line.
    pub message: String,
}

/// A log line's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    /// A command's standard output.
    Stdout,
    /// A command's standard error.
    Stderr,
}

/// A change the journal holds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Change {
    /// The mount it is in.
    pub mount: String,
    /// The path inside the mount.
    pub path: String,
    /// What changed, as `stepback show` words it (`created`, `replaced`, ...).
    pub change: String,
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rollback {
    /// How many changes it reversed.
    pub undone: u64,
    /// Paths it could not restore.
    pub problems: Vec<Problem>,
    /// Other processes' changes it moved aside rather than lose.
    pub kept: Vec<Problem>,
    /// Changes made with `revert = false`, which it left.
    pub not_reversed: Vec<String>,
}

/// A path a rollback could not restore, or kept aside.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Problem {
    /// The mount it is in.
    pub mount: String,
    /// The path inside the mount.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The engine refused to run the step at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The engine's exit code.
    pub exit_code: i32,
    /// Its error message.
    pub message: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stepback refused the step (exit {}): {}",
            self.exit_code, self.message
        )
    }
}

impl std::error::Error for Refused {}

/// The result line of `plugin run --output json`.
#[derive(Deserialize)]
struct Result {
    outcome: Outcome,
    changes: Vec<Change>,
    rollback: Option<Rollback>,
}

/// The step's `step-finished` event.
#[derive(Deserialize)]
struct Finished {
    error: Option<String>,
    log: Vec<LogLine>,
}

impl Run {
    /// Reads a run from what the engine printed.
    pub(crate) fn parse(exit_code: i32, stdout: &str, stderr: &str) -> std::result::Result<Run, Refused> {
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let kind = |k: &str| lines.iter().find(|v| v["kind"] == k);
        if let Some(error) = kind("error") {
            let message = error["message"].as_str().unwrap_or_default().to_owned();
            return Err(Refused { exit_code, message });
        }
        let Some(result) = kind("plugin-run") else {
            return Err(Refused {
                exit_code,
                message: format!("no result in what stepback printed:\n{stdout}{stderr}"),
            });
        };
        let result: Result = serde_json::from_value(result.clone()).map_err(|e| Refused {
            exit_code,
            message: format!("a result this crate cannot read ({e}): {result}"),
        })?;
        let finished: Option<Finished> = lines
            .iter()
            .find(|v| v["event"] == "step-finished")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let (error, log) = finished.map_or((None, Vec::new()), |f| (f.error, f.log));
        Ok(Run {
            exit_code,
            outcome: result.outcome,
            error,
            log,
            changes: result.changes,
            rollback: result.rollback,
            output: format!("{stdout}{stderr}"),
        })
    }

    /// Whether any line of the log contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.iter().any(|line| line.message.contains(text))
    }
}

/// A summary for assertion messages: the outcome, the error, the log and
/// the changes.
impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "outcome {:?} (exit {})", self.outcome, self.exit_code)?;
        if let Some(error) = &self.error {
            writeln!(f, "error: {error}")?;
        }
        for line in &self.log {
            writeln!(f, "  [{:?}] {}", line.level, line.message)?;
        }
        for change in &self.changes {
            writeln!(f, "  {} {}: {}", change.mount, change.path, change.change)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_read_from_the_events_and_the_result() {
        let stdout = r#"{"schema":1,"event":"step-started","step":"s"}
{"schema":1,"event":"step-finished","step":"s","status":"failed","error":"boom","log":[{"level":"stderr","message":"oops"}]}
{"schema":1,"kind":"plugin-run","run":"r","outcome":"failed-rolled-back","changes":[],"rollback":null}
"#;
        let run = Run::parse(1, stdout, "").unwrap();
        assert_eq!(run.outcome, Outcome::FailedRolledBack);
        assert_eq!(run.error.as_deref(), Some("boom"));
        assert!(run.logged("oops") && !run.logged("absent"));
        assert_eq!(run.log[0].level, Level::Stderr);
        assert!(run.to_string().contains("error: boom"), "{run}");
    }

    #[test]
    fn a_refusal_and_unreadable_output_are_errors() {
        let refused = r#"{"schema":1,"kind":"error","message":"mount \"x\" is not granted","exit_code":2}"#;
        assert_eq!(
            Run::parse(2, refused, "").unwrap_err(),
            Refused {
                exit_code: 2,
                message: "mount \"x\" is not granted".into()
            }
        );
        let garbage = Run::parse(101, "thread 'main' panicked", "at src/x.rs").unwrap_err();
        assert!(
            garbage.message.contains("no result") && garbage.message.contains("panicked"),
            "{garbage}"
        );
    }
}
