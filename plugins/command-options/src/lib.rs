//! The `with` keys that `builtin:run-command` and `builtin:run-script`
//! share: environment, working directory, input, timeout, accepted exit
//! codes and retries. Flattened into each plugin's config; the plugin
//! closes its schema (`additionalProperties: false`) so that a misspelt
//! key is still refused at validation.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use stepback_sdk::exec::{Command, Completion, Expect};
use stepback_sdk::{Context, Error};

/// How to run the command, and when it counts as done.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Options {
    /// Environment variables added to `PATH`, `HOME` and `LANG`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory: a guest path inside one of the step's mounts
    /// (default: the first mount's root).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Text written to the command's standard input.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Kill it (and all it started) after this long, e.g. "30s"; its file
    /// changes are then discarded.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Exit codes that count as success.
    #[serde(default = "success")]
    pub accept: Vec<i32>,
    /// Attempts after a failed one (a rejected exit code or a timeout),
    /// for health checks that wait for a service.
    #[serde(default)]
    pub retries: u32,
    /// Time between attempts, e.g. "2s".
    #[serde(default = "one_second")]
    pub retry_delay: String,
}

fn success() -> Vec<i32> {
    vec![0]
}

fn one_second() -> String {
    "1s".to_owned()
}

fn duration(field: &str, text: &str) -> Result<Duration, Error> {
    humantime::parse_duration(text).map_err(|e| Error::new(format!("{field} {text:?}: {e} (try \"30s\")")))
}

impl Options {
    /// Runs `command` with these options until it is accepted or out of
    /// attempts; the step's summary line on success.
    pub fn run(self, mut command: Command, cx: &Context) -> Result<String, Error> {
        for (key, value) in self.env {
            command = command.env(key, value);
        }
        if let Some(cwd) = self.cwd {
            command = command.cwd(cwd);
        }
        if let Some(input) = self.stdin {
            command = command.stdin(input);
        }
        if let Some(timeout) = &self.timeout {
            command = command.timeout(duration("timeout", timeout)?);
        }
        let expect = Expect {
            accept: self.accept,
            retries: self.retries,
            delay: duration("retry-delay", &self.retry_delay)?,
        };
        let done: Completion = command.run_expecting(&expect, cx)?;
        Ok(format!(
            "exited with {}, {} change(s)",
            done.code(),
            done.changes()
        ))
    }
}
