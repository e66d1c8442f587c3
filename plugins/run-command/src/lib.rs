//! `builtin:run-command`: runs one program of the step's exec grant, with
//! the host capturing and journaling what it changes in the step's mounts.

use serde::Deserialize;
use std::collections::BTreeMap;
use stepback_sdk::exec::{Command, Expect};
use stepback_sdk::{Context, Error, Info, Outcome, Step};

/// Runs `program` with `args`; fails unless it exits with a code in
/// `accept`, after up to `retries` more attempts.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    /// The program: a name or path the step's `exec` grant lists.
    #[schemars(extend("x-stepback-program" = true))]
    program: String,
    /// Its arguments; `${param}` references are already substituted.
    #[serde(default)]
    args: Vec<String>,
    /// Environment variables added to `PATH`, `HOME` and `LANG`.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Working directory: a guest path inside one of the step's mounts.
    #[serde(default)]
    cwd: Option<String>,
    /// Text written to the program's standard input.
    #[serde(default)]
    stdin: Option<String>,
    /// Kill it (and all it started) after this long, e.g. "30s".
    #[serde(default)]
    timeout: Option<String>,
    /// Exit codes that count as success.
    #[serde(default = "success")]
    accept: Vec<i32>,
    /// Attempts after a failed one (for health checks).
    #[serde(default)]
    retries: u32,
    /// Time between attempts, e.g. "2s".
    #[serde(default = "one_second")]
    retry_delay: String,
}

fn success() -> Vec<i32> {
    vec![0]
}

fn one_second() -> String {
    "1s".to_owned()
}

/// Parses a duration field, naming it in the error.
fn duration(field: &str, text: &str) -> Result<std::time::Duration, Error> {
    humantime::parse_duration(text).map_err(|e| Error::new(format!("{field} {text:?}: {e} (try \"30s\")")))
}

struct RunCommand;

impl Step for RunCommand {
    type Config = Config;

    fn info() -> Info {
        Info::new(
            "run-command",
            env!("CARGO_PKG_VERSION"),
            "Runs a program of the step's exec grant; its file changes in the step's mounts are journaled.",
        )
        .runs_commands()
    }

    fn run(config: Config, cx: &Context) -> Result<Outcome, Error> {
        let mut command = Command::new(&config.program).args(config.args);
        for (key, value) in config.env {
            command = command.env(key, value);
        }
        if let Some(cwd) = config.cwd {
            command = command.cwd(cwd);
        }
        if let Some(input) = config.stdin {
            command = command.stdin(input);
        }
        if let Some(timeout) = &config.timeout {
            command = command.timeout(duration("timeout", timeout)?);
        }
        let expect = Expect {
            accept: config.accept,
            retries: config.retries,
            delay: duration("retry-delay", &config.retry_delay)?,
        };
        let done = command.run_expecting(&expect, cx)?;
        Ok(Outcome::summary(format!(
            "{} exited with {}, {} change(s)",
            config.program,
            done.code(),
            done.changes()
        )))
    }
}

stepback_sdk::export_step!(RunCommand);
