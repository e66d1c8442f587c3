//! The command line, as clap sees it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The command line with what the derive cannot say: every command's
/// help ends with the exit codes, from their one table.
pub fn command() -> clap::Command {
    let help = super::exit::help();
    let mut command = <Cli as clap::CommandFactory>::command().after_long_help(help.clone());
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |c| c.after_long_help(help.clone()));
    }
    command
}

/// The command line this process was started with, the config file's
/// defaults under it (exits with a usage error, 2, where either is not
/// right).
pub fn parse() -> Cli {
    let command =
        super::config::apply(command()).unwrap_or_else(|why| usage_error(&format!("error: {why}\n")));
    let parsed = command.try_get_matches().and_then(|matches| {
        let mut cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
        if matches.value_source("color") == Some(clap::parser::ValueSource::DefaultValue) {
            cli.color = color_from_env().unwrap_or(cli.color);
        }
        Ok(cli)
    });
    parsed.unwrap_or_else(|e| match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => e.exit(),
        _ => usage_error(&e.render().to_string()),
    })
}

/// The colour the environment asks for, which beats the config file's
/// (flag > environment > config file > default): `NO_COLOR` none,
/// `CLICOLOR_FORCE` (not `0`) always.
fn color_from_env() -> Option<ColorChoice> {
    let set = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    match (set("NO_COLOR"), set("CLICOLOR_FORCE")) {
        (Some(_), _) => Some(ColorChoice::Never),
        (None, Some(force)) if force != "0" => Some(ColorChoice::Always),
        _ => None,
    }
}

/// Ends the process over a command line (or config file) that is not
/// right: `text` on stderr, and with `--output json` an `error` result on
/// stdout too, as every other failing command gives one.
fn usage_error(text: &str) -> ! {
    super::out::write(true, format_args!("{text}"));
    let args: Vec<String> = std::env::args().collect();
    let json = args.windows(2).any(|w| w[0] == "--output" && w[1] == "json")
        || args.iter().any(|a| a == "--output=json");
    if json {
        let message = text.lines().next().unwrap_or_default();
        let message = message.strip_prefix("error: ").unwrap_or(message);
        super::json::print_error(super::exit::INVALID_INPUT, message);
    }
    std::process::exit(super::exit::INVALID_INPUT.into())
}

/// The crate's version, the commit it was built from and the WIT package
/// its plugins are built against.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STEPBACK_COMMIT"),
    ", WIT stepback:plugin@",
    env!("STEPBACK_WIT_VERSION"),
    ")"
);

/// Runs update flows of sandboxed WebAssembly steps.
///
/// A flow is a TOML (or JSON) file listing the directories it may touch
/// and the steps that change them. Each step is a WebAssembly component
/// that sees only the mounts the flow grants it.
#[derive(Parser, Debug)]
#[command(name = "stepback", version = VERSION, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Where Stepback keeps compiled plugins and run records.
    /// [default: /var/lib/stepback for root, else $XDG_STATE_HOME/stepback]
    #[arg(long, global = true, env = "STEPBACK_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Where compiled plugins are cached. [default: STATE_DIR/cache]
    #[arg(long, global = true, env = "STEPBACK_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// How much disk compiled plugins may take; past it, the least recently
    /// used are removed when a new one is compiled.
    #[arg(long, global = true, env = "STEPBACK_CACHE_LIMIT", value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub cache_limit: u64,

    /// Also show plugin loading (compiled-cache hits) and step logs as they happen.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Print only what went wrong (failed steps and actions with their
    /// logs, paths not restored, warnings) and the final verdict.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// How to print what happens.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    /// When to colour what is printed for people: `auto` on a terminal
    /// unless NO_COLOR is set (CLICOLOR_FORCE forces it).
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// The trust policy registry plugins are checked against.
    #[arg(long, global = true, env = "STEPBACK_TRUST", value_name = "FILE", default_value = stepback::registry::DEFAULT_TRUST_PATH)]
    pub trust: PathBuf,

    /// A registry (`host:port`) to speak plain HTTP to, not HTTPS
    /// (repeatable; one on this machine, such as 127.0.0.1:5000, is
    /// always spoken to over plain HTTP).
    #[arg(
        long,
        global = true,
        env = "STEPBACK_PLAIN_HTTP",
        value_name = "REGISTRY",
        value_delimiter = ','
    )]
    pub plain_http: Vec<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// One line per step, logs of failed steps.
    Human,
    /// One JSON object per event, per line.
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always, even into a pipe or file.
    Always,
    /// Never.
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a flow: validate it, then run its steps in order, journaling
    /// every change; if a step fails and stops the flow, roll it all back.
    /// FLOW may be a directory: its `flow.toml` (or `flow.json`).
    Run(RunArgs),

    /// Roll back runs that did not finish because the engine or the
    /// machine stopped, mid-flow or mid-rollback.
    Recover,

    /// Reverse a committed run: restore every path it changed. Refuses,
    /// listing them, if any of those paths changed since the run. For a
    /// run whose rollback could not restore every path: try again.
    ///
    /// Exit codes: 0 undone; 4 undone but some paths could not be restored;
    /// 6 refused (paths changed since, or the run cannot be undone).
    Undo {
        /// The run id (as `stepback show` lists them).
        run: String,
        /// Undo even if paths changed since the run; what changed is moved
        /// aside into the run's backup area (listed), not overwritten.
        #[arg(long)]
        force: bool,
    },

    /// List recorded runs, or show every change one run made, per step,
    /// and what its rollback did.
    Show {
        /// The run: its id (as `stepback show` lists them), a prefix only
        /// it has, or `last`.
        run: Option<String>,
        /// List at most this many runs, newest first.
        #[arg(long, short = 'n', value_name = "N")]
        limit: Option<usize>,
        /// With a run: every step's and action's log, not only a failed one's.
        #[arg(long)]
        logs: bool,
        /// With a run: its journal's records as they are, one JSON object a
        /// line (the undo records with the inodes they name), for whoever
        /// debugs the journal.
        #[arg(long, conflicts_with = "logs")]
        records: bool,
    },

    /// Which version of each application runs now (a flow names it with
    /// `[app] name` and `version`), since when and by which run, and how
    /// each run of it ended.
    Status,

    /// Check a flow without running it: syntax, keys, types, parameters,
    /// mounts, plugins and each step's config against its plugin's schema.
    Validate(ValidateArgs),

    /// Pin every registry plugin (`uses = "oci://…"`) of a flow: pull each
    /// into the store, check it against the trust policy, compile it, and
    /// write the digests to the flow's lock file (NAME.lock beside it),
    /// which `run` and `validate` then run exactly.
    Lock(FlowArgs),

    /// Signing keys for publishing plugins.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },

    /// Work with plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },

    /// Work with the cache of compiled plugins.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },

    /// Print a shell's completion script: `stepback completions bash >
    /// /etc/bash_completion.d/stepback` (zsh: into a directory of `$fpath`
    /// as `_stepback`; fish: `~/.config/fish/completions/stepback.fish`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff): `stepback man > /usr/local/share/man/man1/stepback.1`,
    /// or read it now with `stepback man | man -l -`.
    Man,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub flow: FlowArgs,

    /// Wait for mounts another flow holds instead of failing (exit 5):
    /// as long as it takes, or at most DURATION (`--wait=30s`, `--wait=10m`).
    #[arg(long, value_name = "DURATION", num_args = 0..=1, require_equals = true, default_missing_value = "forever", value_parser = parse_wait)]
    pub wait: Option<std::time::Duration>,

    /// How many committed runs keep their backups and can be undone; older
    /// ones are pruned after each run.
    #[arg(long, value_name = "N", default_value_t = stepback::history::DEFAULT_KEEP)]
    pub keep: usize,

    /// When journal records reach stable storage: `strict` syncs each
    /// record before its change is made (survives power loss); `process`
    /// syncs once per step (survives the engine being killed, not power
    /// loss; faster for flows that change many existing files).
    #[arg(long, value_enum, default_value_t = SyncMode::Strict)]
    pub sync: SyncMode,

    /// Record nothing: a failed flow is NOT rolled back. For measuring the
    /// journal's cost, or first installs where there is nothing to restore.
    #[arg(long)]
    pub no_journal: bool,

    /// Free space kept on every filesystem the run writes to, beyond the
    /// copies a rollback may write back: a step's write that would leave
    /// less fails with "no space", so the rollback always has room.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub reserve: u64,

    /// Run registry plugins from the store alone: fail before anything
    /// runs if one the lock pins is not there.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub flow: FlowArgs,

    /// Check registry plugins from the store alone, fetching nothing.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Make an ed25519 signing key: FILE (secret, this user's only) and
    /// FILE.pub (the public key that operators put in their trust policy).
    Generate {
        /// Where to write the secret key; never over an existing file.
        file: PathBuf,
    },
}

/// A size such as `64MiB`, `1GB` or `4096`.
fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>()
        .map(|s| s.as_u64())
        .map_err(|e| format!("{text:?} is not a size (such as 64MiB): {e}"))
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    Strict,
    Process,
}

#[derive(Args, Debug)]
pub struct FlowArgs {
    /// The flow file (.toml, or .json).
    pub flow: PathBuf,

    /// Set an update parameter, overriding its default (repeatable).
    #[arg(short, long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List the compiled plugins, least recently used first.
    List,
    /// Remove compiled plugins: those unused for longer than
    /// `--older-than`, then the least recently used until the rest fit in
    /// `--max` (default: the cache limit).
    Prune {
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max: Option<u64>,
        /// A duration such as `30d` or `12h`.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Option<std::time::Duration>,
    },
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration (such as 30d): {e}"))
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Show what a plugin says about itself and the WIT interfaces it
    /// imports and exports.
    Inspect {
        /// `builtin:NAME`, a path to a component .wasm, or
        /// oci://REGISTRY/REPOSITORY:TAG (pulled into the store, not trusted
        /// by being inspected: the trust policy's verdict is shown).
        plugin: String,
    },

    /// Create a plugin project in Rust, Python or JavaScript that builds
    /// with `stepback plugin build` and tests itself with `stepback plugin
    /// test`; no WIT to write.
    New {
        /// The plugin's name: lowercase letters, digits and hyphens.
        name: String,
        #[arg(long, value_name = "rust|python|js")]
        lang: stepback::authoring::Lang,
        /// Where to create it (default: ./NAME); must be new or empty.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },

    /// Build a plugin project to NAME.wasm beside its plugin.toml (with the
    /// language's own tool), check it, and compile it into the cache, so
    /// that a flow's first run of it compiles nothing.
    Build {
        /// The project's directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },

    /// Build a plugin project, then run its own tests against what was
    /// built (they get `$STEPBACK`, this engine, and `$STEPBACK_PLUGIN`,
    /// the component).
    Test {
        /// The project's directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },

    /// Publish a component to a registry as a Wasm OCI artifact (config
    /// `application/vnd.wasm.config.v0+json`, one `application/wasm`
    /// layer), and print its digest.
    Push {
        /// The component .wasm.
        file: PathBuf,
        /// Where: oci://REGISTRY/REPOSITORY:TAG.
        reference: String,
    },

    /// Pull a plugin into the store (every byte hashed), check it against
    /// the trust policy, and compile it.
    Pull {
        /// oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST.
        reference: String,
    },

    /// Sign a published plugin: an ed25519 signature of its manifest's
    /// digest, pushed beside it (tag sha256-DIGEST.sig).
    Sign {
        /// oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST.
        reference: String,
        /// The secret key (`stepback key generate`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },

    /// List the plugins pulled into the store.
    List,

    /// Run one step of a plugin alone, journaled like any step of a flow,
    /// and print its log, progress and the changes it made; `--rollback`
    /// reverses them at the end (for trying a plugin out).
    Run(PluginRunArgs),
}

#[derive(Args, Debug)]
pub struct PluginRunArgs {
    /// `builtin:NAME` or a path to a component .wasm.
    pub plugin: String,

    /// The step's config (its `with` table) as a JSON object, or `@FILE`
    /// to read it from a file.
    #[arg(long = "with", value_name = "JSON|@FILE", default_value = "{}")]
    pub with: String,

    /// Grant a host directory (repeatable): `NAME=HOST:GUEST`, read-write,
    /// or `NAME=HOST:GUEST:ro`; `NAME=HOST` is seen at `/NAME`.
    #[arg(long = "mount", value_name = "NAME=HOST:GUEST[:ro]")]
    pub mounts: Vec<stepback::flow::MountArg>,

    /// A program the step may run (repeatable), as a flow's `exec` grants it.
    #[arg(long, value_name = "PROGRAM")]
    pub exec: Vec<String>,

    /// Reverse every change of the step once it has run (as `stepback
    /// undo` would), printing what was undone.
    #[arg(long)]
    pub rollback: bool,
}

/// `forever` (as long as it takes: no deadline) or a duration.
fn parse_wait(arg: &str) -> Result<std::time::Duration, String> {
    match arg {
        "forever" => Ok(std::time::Duration::MAX),
        _ => humantime::parse_duration(arg)
            .map_err(|e| format!("{e} (a duration such as 30s or 10m, or forever)")),
    }
}

fn parse_param(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {arg:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_reserve_is_the_librarys() {
        let cli = Cli::try_parse_from(["stepback", "run", "flow.toml"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not a run")
        };
        assert_eq!(args.reserve, stepback::runner::DEFAULT_RESERVE);
        assert_eq!(args.keep, stepback::history::DEFAULT_KEEP);
    }
}
