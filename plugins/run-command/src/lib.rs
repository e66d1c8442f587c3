//! `builtin:run-command`: runs one program of the step's exec grant, with
//! the host capturing and journaling what it changes in the step's mounts.

use command_options::Options;
use serde::Deserialize;
use stepback_sdk::exec::Command;
use stepback_sdk::{Context, Error, Info, Outcome, Step};

/// Runs `program` with `args`; fails unless it exits with a code in
/// `accept`, after up to `retries` more attempts.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(extend("additionalProperties" = false))]
struct Config {
    /// The program: a name or path the step's `exec` grant lists.
    #[schemars(extend("x-stepback-program" = true))]
    program: String,
    /// Its arguments; `${param}` references are already substituted.
    #[serde(default)]
    args: Vec<String>,
    #[serde(flatten)]
    options: Options,
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
        let command = Command::new(&config.program).args(config.args);
        let summary = config.options.run(command, cx)?;
        Ok(Outcome::summary(format!("{} {summary}", config.program)))
    }
}

stepback_sdk::export_step!(RunCommand);
