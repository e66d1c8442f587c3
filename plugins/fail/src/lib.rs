//! `builtin:fail`: fails with a given message, for tests and demos of
//! failure policies.

use serde::Deserialize;
use stepback_sdk::{Context, Error, Info, Outcome, Step};

/// Fails the step with `message`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    #[serde(default = "default_message")]
    message: String,
}

fn default_message() -> String {
    "failed on purpose".into()
}

struct Fail;

impl Step for Fail {
    type Config = Config;

    fn info() -> Info {
        Info::new(
            "fail",
            env!("CARGO_PKG_VERSION"),
            "Fails with the given message; for testing failure policies.",
        )
    }

    fn run(config: Config, cx: &Context) -> Result<Outcome, Error> {
        cx.error(format!("failing on purpose: {}", config.message));
        Err(Error::new(config.message))
    }
}

stepback_sdk::export_step!(Fail);
