//! `builtin:run-script`: runs a script, from a file in one of the step's
//! mounts or written inline, by its shebang or a named interpreter; the
//! host captures and journals what it changes in the step's mounts.

use command_options::Options;
use serde::Deserialize;
use stepback_sdk::exec::{Command, host_path};
use stepback_sdk::{Context, Error, Info, Outcome, Step};

/// Runs the script at `path` or the `inline` one, with `args`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(extend("additionalProperties" = false, "dependentRequired" = {"inline": ["interpreter"]}))]
struct Config {
    /// Guest path of the script, inside one of the step's mounts; run by
    /// its `#!` line (whose program the step's `exec` grant must list)
    /// unless `interpreter` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-stepback-script" = true))]
    path: Option<String>,
    /// The script's text, run as `INTERPRETER INLINE-FLAG TEXT inline-script ARGS...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inline: Option<String>,
    /// The program that runs the script: a name or path of the step's
    /// `exec` grant. Required for `inline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-stepback-program" = true))]
    interpreter: Option<String>,
    /// The interpreter's flag for a script given as an argument ("-c" for
    /// shells and Python, "-e" for Perl and Node.js).
    #[serde(default = "dash_c")]
    inline_flag: String,
    /// The script's arguments; `${param}` references are already substituted.
    #[serde(default)]
    args: Vec<String>,
    #[serde(flatten)]
    options: Options,
}

fn dash_c() -> String {
    "-c".to_owned()
}

struct RunScript;

impl Step for RunScript {
    type Config = Config;

    fn info() -> Info {
        Info::new(
            "run-script",
            env!("CARGO_PKG_VERSION"),
            "Runs a script from a mount or inline, by its #! line or a named interpreter; its file changes in the step's mounts are journaled.",
        )
        .runs_commands()
    }

    fn run(config: Config, cx: &Context) -> Result<Outcome, Error> {
        let (command, what) = match (&config.path, &config.inline, &config.interpreter) {
            (Some(path), None, interpreter) => {
                let host = host_path(path).ok_or_else(|| {
                    Error::new(format!("script {path} is not inside any of the step's mounts"))
                })?;
                // Without an interpreter the host runs the script by its
                // #! line, once it has checked that the line's program is granted.
                let command = match interpreter {
                    Some(program) => Command::new(program).arg(host),
                    None => Command::new(host),
                };
                (command, path.clone())
            }
            (None, Some(script), Some(program)) => {
                let command = Command::new(program)
                    .arg(&config.inline_flag)
                    .arg(script)
                    .arg("inline-script");
                (command, "the inline script".to_owned())
            }
            _ => {
                return Err(Error::new(
                    "give the script as exactly one of `path` and `inline`",
                ));
            }
        };
        let summary = config.options.run(command.args(config.args), cx)?;
        Ok(Outcome::summary(format!("{what} {summary}")))
    }
}

stepback_sdk::export_step!(RunScript);
