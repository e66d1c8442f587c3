//! Command-line parsing and dispatch. Each command reads its inputs, calls
//! the library, and maps the outcome to an exit code.

mod args;
mod authoring;
mod changes;
mod config;
mod escape;
mod exit;
mod human;
mod json;
mod live;
mod out;
mod plugin_run;
mod registry;
mod show;
mod status;
mod style;

use args::{CacheCommand, Cli, Command, KeyCommand, OutputFormat, PluginCommand, SyncMode};
use out::{errln, outln};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use stepback::cancel::Cancel;
use stepback::events::EventSink;
use stepback::flow::{self, FlowSource};
use stepback::history::UndoError;
use stepback::journal::Durability;
use stepback::plugin::{CompiledCache, PluginSource};
use stepback::registry::Remote;
use stepback::runner::{RunError, RunOptions};
use stepback::sandbox::Sandbox;
use stepback::{runner, state};

/// `1 change`, `3 changes`: how every command counts what a rollback or an
/// undo reversed (as `show` lists changes, see `journal::is_change`).
fn changes(n: usize) -> String {
    match n {
        1 => "1 change".into(),
        n => format!("{n} changes"),
    }
}

pub fn main() -> ExitCode {
    let cli = args::parse();
    style::choose(cli.color);
    OUTPUT.set(cli.output).expect("set once, here");
    raise_descriptor_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ENGINE_ERROR);
        }
    };
    ExitCode::from(runtime.block_on(dispatch(cli)))
}

/// How this command prints its result: set once, before anything is printed.
static OUTPUT: std::sync::OnceLock<OutputFormat> = std::sync::OnceLock::new();

/// Says what went wrong, on stderr (and with `--output json`, as an
/// `error` result on stdout too, so that a program reading stdout learns
/// why there is no other), and returns the exit code `code`.
fn error(code: u8, message: impl std::fmt::Display) -> u8 {
    errln!("{}: {message}", style::paint(style::BAD, "error"));
    if OUTPUT.get() == Some(&OutputFormat::Json) {
        json::print_error(code, &message.to_string());
    }
    code
}

/// Raises the soft limit on open descriptors to the hard one (often 1024
/// against 500,000): the engine holds the descriptors of every step's
/// guest (`limits.descriptors`) beside its own. If this fails, a step that
/// meets the lower limit gets I/O errors, and the journal still holds.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

/// A [`Cancel`] that the first Ctrl-C or SIGTERM triggers. The second
/// says what a third would do; the third stops the engine where it is and
/// leaves the rest of the rollback to `stepback recover` (the journal
/// covers a rollback cut short like a crash).
fn interrupt_cancels() -> Cancel {
    let cancel = Cancel::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => { TERMINATED_BY_SIGTERM.store(true, std::sync::atomic::Ordering::SeqCst) }
        }
        errln!(
            "interrupted: stopping the running step, then rolling back every change (two more interrupts stop the engine at once, leaving the rest to `stepback recover`)"
        );
        trigger.cancel();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        errln!(
            "interrupted again: the rollback goes on; one more interrupt stops the engine at once, leaving the rest to `stepback recover`"
        );
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        errln!("stopping now: run `stepback recover` to finish the rollback");
        std::process::exit(interrupted(exit::INTERRUPTED).into());
    });
    cancel
}

/// Whether the first interrupt was SIGTERM (rather than Ctrl-C).
static TERMINATED_BY_SIGTERM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Exit code `code`, as the interrupt that caused it says: 143 for SIGTERM.
fn interrupted(code: u8) -> u8 {
    match code == exit::INTERRUPTED && TERMINATED_BY_SIGTERM.load(std::sync::atomic::Ordering::SeqCst) {
        true => exit::TERMINATED,
        false => code,
    }
}

/// `stepback completions SHELL`.
fn completions(shell: clap_complete::Shell) -> u8 {
    let mut command = args::command();
    clap_complete::generate(shell, &mut command, "stepback", &mut std::io::stdout());
    exit::SUCCESS
}

/// `stepback man`.
fn man() -> u8 {
    match clap_mangen::Man::new(args::command()).render(&mut std::io::stdout()) {
        Ok(()) => exit::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::BROKEN_PIPE,
        Err(e) => error(
            exit::ENGINE_ERROR,
            format_args!("cannot write the manual page: {e}"),
        ),
    }
}

/// Runs the command `cli` names and says its exit code. (One arm per
/// command, each handing its arguments to the library: long only because
/// there are many commands.)
async fn dispatch(cli: Cli) -> u8 {
    let trying = matches!(
        cli.command,
        Command::Plugin {
            command: PluginCommand::Run(_)
        }
    );
    let events: Arc<dyn EventSink> = match cli.output {
        OutputFormat::Human if cli.quiet => Arc::new(human::Reporter::quiet()),
        OutputFormat::Human if trying => Arc::new(human::Reporter::every_log(cli.verbose)),
        OutputFormat::Human => Arc::new(human::Reporter::new(cli.verbose)),
        OutputFormat::Json => Arc::new(json::Reporter),
    };
    let state_dir = cli.state_dir.clone().unwrap_or_else(state::default_state_dir);
    let cache_dir = cli
        .cache_dir
        .clone()
        .unwrap_or_else(|| state::cache_dir(&state_dir));
    let engine_dirs = [state_dir.clone(), cache_dir.clone()];
    // What the remembered locks pin keeps its compiled code (a lock that
    // cannot be read pins nothing here: `cache prune` says so).
    let store = stepback::registry::Store::new(&state_dir);
    let cache = CompiledCache::new(cache_dir.clone())
        .with_limit(cli.cache_limit)
        .pinning(move || store.pinned().map(|p| p.components).unwrap_or_default());
    match &cli.command {
        Command::Completions { shell } => return completions(*shell),
        Command::Man => return man(),
        Command::Plugin {
            command: PluginCommand::New { name, lang, dir },
        } => return authoring::new(name, *lang, dir.as_deref(), cli.output),
        Command::Key {
            command: KeyCommand::Generate { file },
        } => return registry::generate(file, cli.output),
        Command::Plugin {
            command: PluginCommand::List,
        } => return registry::list(&state_dir, cli.output),
        Command::Plugin {
            command: PluginCommand::Push { file, reference },
        } => return registry::push(file, reference, &cli).await,
        Command::Plugin {
            command: PluginCommand::Sign { reference, key },
        } => return registry::sign(reference, key, &cli).await,
        _ => {}
    }
    if let Command::Cache { command } = &cli.command {
        let store = stepback::registry::Store::new(&state_dir);
        return cache_command((&cache, &store), command, cli.cache_limit, cli.output);
    }
    let sandbox = match Sandbox::new(cache, events.clone()) {
        Ok(s) => s,
        Err(e) => {
            return error(
                exit::ENGINE_ERROR,
                format_args!("cannot set up the WebAssembly engine: {e:#}"),
            );
        }
    };
    if trying
        || matches!(
            cli.command,
            Command::Run(_) | Command::Undo { .. } | Command::Recover
        )
    {
        out::keep_going_on_broken_pipe();
    }
    match &cli.command {
        Command::Run(args) => {
            let options = RunOptions {
                state_dir: state_dir.clone(),
                keep: args.keep,
                journal: !args.no_journal,
                reserve: args.reserve,
                durability: match args.sync {
                    SyncMode::Strict => Durability::Strict,
                    SyncMode::Process => Durability::Process,
                },
                cancel: interrupt_cancels(),
                wait: args.wait,
            };
            let input = Input {
                flow: &args.flow.flow,
                params: &args.flow.params,
                output: cli.output,
            };
            let remote = registry::locked(&cli, &state_dir, args.offline);
            run(input, (&sandbox, &engine_dirs, &remote), events.clone(), &options).await
        }
        Command::Lock(args) => registry::lock(args, &cli, &state_dir, (&sandbox, &engine_dirs)).await,
        Command::Plugin {
            command: PluginCommand::Pull { reference },
        } => registry::pull(reference, &cli, &state_dir, &sandbox).await,
        Command::Undo { run, force } => undo(&state_dir, run, *force, cli.output),
        Command::Recover => recover(&state_dir, cli.output),
        Command::Status => status::status(&state_dir, cli.output),
        Command::Show {
            run,
            limit,
            logs,
            records,
        } => show::show(
            &state_dir,
            run.as_deref(),
            (
                *limit,
                show::Detail {
                    logs: *logs,
                    records: *records,
                },
            ),
            cli.output,
        ),
        Command::Validate(args) => {
            let input = Input {
                flow: &args.flow.flow,
                params: &args.flow.params,
                output: cli.output,
            };
            let remote = registry::locked(&cli, &state_dir, args.offline);
            validate(input, (&sandbox, &engine_dirs, &remote)).await
        }
        Command::Plugin {
            command: PluginCommand::Inspect { plugin },
        } => inspect(plugin, &sandbox, (&cli, &state_dir)).await,
        Command::Plugin {
            command: PluginCommand::Build { dir },
        } => authoring::build(dir, &sandbox, cli.output).await,
        Command::Plugin {
            command: PluginCommand::Test { dir },
        } => authoring::test(dir, &sandbox, &cache_dir, cli.output).await,
        Command::Plugin {
            command: PluginCommand::Run(args),
        } => {
            let options = RunOptions {
                cancel: interrupt_cancels(),
                ..RunOptions::new(state_dir.clone())
            };
            let remote = Remote::locking(
                stepback::registry::Store::new(&state_dir),
                stepback::registry::TrustPolicy::read(&cli.trust),
                cli.plain_http.clone(),
            );
            plugin_run::run(
                args,
                (&sandbox, &engine_dirs, &remote),
                events.clone(),
                &options,
                cli.output,
            )
            .await
        }
        Command::Cache { .. }
        | Command::Completions { .. }
        | Command::Man
        | Command::Key { .. }
        | Command::Plugin {
            command:
                PluginCommand::New { .. }
                | PluginCommand::List
                | PluginCommand::Push { .. }
                | PluginCommand::Sign { .. },
        } => {
            unreachable!("handled before the engine is set up")
        }
    }
}

/// What a flow is validated with: the engine, its own directories (no
/// mount may reach them), and where registry plugins come from.
type Engine<'a> = (&'a Sandbox, &'a [PathBuf], &'a Remote);

/// A flow as the command line names it, with its parameters, and how to
/// print what becomes of it.
struct Input<'a> {
    flow: &'a Path,
    params: &'a [(String, String)],
    output: OutputFormat,
}

/// The flow's plan; where it is not valid, every problem is printed (as
/// JSON too, with `--output json`) and the exit code returned.
async fn plan(input: &Input<'_>, engine: Engine<'_>) -> Result<flow::Plan, u8> {
    plan_of(FlowSource::read(input.flow), input, engine).await
}

/// [`plan`] of a flow already read (or not readable: `source`'s error).
async fn plan_of(
    source: Result<FlowSource, stepback::diagnostic::Diagnostic>,
    input: &Input<'_>,
    (sandbox, engine_dirs, remote): Engine<'_>,
) -> Result<flow::Plan, u8> {
    let planned = match source {
        Ok(source) => flow::validate(&source, input.params, sandbox, engine_dirs, Some(remote)).await,
        Err(d) => Err(stepback::diagnostic::Diagnostics(vec![d])),
    };
    planned.map_err(|diagnostics| {
        errln!("{diagnostics}");
        if diagnostics.0.iter().any(|d| d.field.starts_with("params")) {
            errln!("(a parameter's value is given with --param NAME=VALUE)");
        }
        registry::hints(diagnostics.0.iter().map(|d| d.message.as_str()), input.flow);
        if input.output == OutputFormat::Json {
            json::print_validation(input.flow, Err(&diagnostics.0));
        }
        exit::INVALID_INPUT
    })
}

async fn run(input: Input<'_>, engine: Engine<'_>, events: Arc<dyn EventSink>, options: &RunOptions) -> u8 {
    let sandbox = engine.0;
    let plan = match plan(&input, engine).await {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    match runner::run(&plan, sandbox, events, options).await {
        Ok(report) => interrupted(exit::of_run(&report)),
        Err(e) => {
            let hint = match e {
                RunError::NeedsRecovery { .. } => "; run `stepback recover`",
                _ => "",
            };
            error(exit::of_run_error(&e), format_args!("{e}{hint}"))
        }
    }
}

fn undo(state_dir: &Path, run: &str, force: bool, output: OutputFormat) -> u8 {
    // Said by its id, however it was named (`last`, a prefix).
    let id = match stepback::journal::RunStore::new(state_dir).find(run) {
        Ok(Ok(dir)) => dir.id,
        _ => run.to_owned(),
    };
    let run = id.as_str();
    match stepback::history::undo_run(state_dir, run, force) {
        Ok(report) if output == OutputFormat::Json => {
            json::print_undo(run, &report);
            exit::of_rollback(&report)
        }
        Ok(report) => {
            outln!("run {run} undone: {} reversed", changes(report.undone));
            human::print_kept(&report.kept, "since the run");
            human::print_not_reversed(&report.not_reversed);
            for problem in &report.problems {
                outln!("  {} {problem}", style::paint(style::BAD, "NOT RESTORED"));
            }
            exit::of_rollback(&report)
        }
        Err(e) => {
            let hint = match e {
                UndoError::NoSuchRun(_) => "; `stepback show` lists the runs",
                UndoError::Unfinished(_) => "; `stepback recover` rolls it back",
                UndoError::Drifted(_) => {
                    "\n(`stepback undo RUN --force` undoes it anyway, keeping those changes aside)"
                }
                _ => "",
            };
            error(exit::of_undo_error(&e), format_args!("{e}{hint}"))
        }
    }
}

fn recover(state_dir: &Path, output: OutputFormat) -> u8 {
    let recovered = match stepback::recovery::recover(state_dir) {
        Ok(r) => r,
        Err(e) => {
            return error(exit::of_recover_error(&e), format_args!("{e}"));
        }
    };
    if output == OutputFormat::Json {
        json::print_recovery(&recovered);
        return recovered.iter().map(recovery_code).max().unwrap_or(exit::SUCCESS);
    }
    if recovered.is_empty() {
        // Unfinished runs left alone are running: their flows hold their mounts.
        let running = stepback::journal::RunStore::new(state_dir)
            .unfinished()
            .unwrap_or_default();
        match running.is_empty() {
            true => outln!("nothing to recover: every run finished"),
            false => {
                for run in running {
                    outln!(
                        "nothing to recover: run {} of flow '{}' is still running (it holds its mounts)",
                        run.dir.id,
                        escape::clean(&run.flow)
                    );
                }
            }
        }
        return exit::SUCCESS;
    }
    let mut code = exit::SUCCESS;
    for r in &recovered {
        let (id, flow) = (&r.run.dir.id, &r.run.flow);
        match &r.report {
            None => outln!(
                "run {id} of flow '{flow}': kept, as its failure said (on-failure = \"stop\"): `stepback undo {id}` reverses it"
            ),
            Some(report) => {
                outln!(
                    "run {id} of flow '{flow}': rolled back ({} undone)",
                    changes(report.undone)
                );
                if r.adopted > 0 {
                    outln!(
                        "  {} of them were known only by their backups: the journal lost their records (power loss?)",
                        r.adopted
                    );
                }
                human::print_kept(&report.kept, "during the run or since it stopped");
                human::print_not_reversed(&report.not_reversed);
                for problem in &report.problems {
                    outln!("  {} {problem}", style::paint(style::BAD, "NOT RESTORED"));
                }
            }
        }
        for action in &r.actions {
            let tag = match action.how {
                stepback::recovery::Left::Failed(_) => "ACTION FAILED",
                _ => "ACTION NOT RUN",
            };
            outln!(
                "  {tag} '{}': {}; run what it does by hand",
                escape::clean(&action.name),
                escape::clean(&action.how.to_string())
            );
        }
        code = code.max(recovery_code(r));
    }
    code
}

/// How one run's recovery ended: 4 where a path is not restored or an
/// action of its failure did not run or failed.
fn recovery_code(r: &stepback::recovery::Recovered) -> u8 {
    match (&r.report, r.actions.is_empty()) {
        (_, false) => exit::ROLLBACK_INCOMPLETE,
        (Some(report), true) => exit::of_rollback(report),
        (None, true) => exit::SUCCESS,
    }
}

async fn validate(input: Input<'_>, engine: Engine<'_>) -> u8 {
    let flow = input.flow;
    match plan(&input, engine).await {
        Ok(plan) if input.output == OutputFormat::Json => {
            json::print_validation(flow, Ok(&plan));
            exit::SUCCESS
        }
        Ok(plan) => {
            outln!(
                "{}: flow {:?} is valid: {} step{}, {} mount{}",
                flow.display(),
                plan.name,
                plan.steps.len(),
                if plan.steps.len() == 1 { "" } else { "s" },
                plan.mounts.len(),
                if plan.mounts.len() == 1 { "" } else { "s" },
            );
            exit::SUCCESS
        }
        Err(code) => code,
    }
}

/// `stepback plugin inspect`: a registry plugin is pulled into the store
/// first, and its digest, signers and the trust policy's verdict shown too.
async fn inspect(plugin: &str, sandbox: &Sandbox, (cli, state_dir): (&Cli, &Path)) -> u8 {
    let output = cli.output;
    let described = async {
        let (source, registry) = match stepback::registry::PluginRef::from_uses(plugin) {
            Some(reference) => {
                let reference = reference.map_err(anyhow::Error::msg)?;
                let (source, registry) = registry::inspected(&reference, cli, state_dir).await?;
                (source, Some(registry))
            }
            None => (PluginSource::resolve(plugin, Path::new("."))?, None),
        };
        let loaded = sandbox.load(&source)?;
        let info = sandbox.describe(&loaded).await?;
        anyhow::Ok((loaded, info, registry))
    }
    .await;
    let (loaded, info, registry) = match described {
        Ok(d) => d,
        Err(e) => {
            return error(exit::INVALID_INPUT, format_args!("{e:#}"));
        }
    };
    let (imports, exports) = sandbox.interfaces(&loaded);
    match output {
        OutputFormat::Human => human::print_inspection(&loaded, &info, &imports, &exports, registry.as_ref()),
        OutputFormat::Json => json::print_inspection(&loaded, &info, &imports, &exports, registry),
    }
    exit::SUCCESS
}

/// `stepback cache list` and `stepback cache prune` (which prunes the
/// store of pulled plugins too, sparing what a lock pins).
fn cache_command(
    (cache, store): (&CompiledCache, &stepback::registry::Store),
    command: &CacheCommand,
    limit: u64,
    output: OutputFormat,
) -> u8 {
    let result = match command {
        CacheCommand::List => cache.entries().map(|entries| match output {
            OutputFormat::Human => human::print_cache(cache.dir(), &entries, limit),
            OutputFormat::Json => json::print_cache(cache.dir(), &entries, limit),
        }),
        CacheCommand::Prune { max, older_than } => {
            let pruned = store
                .pinned()
                .and_then(|pins| Ok((store.prune(*older_than)?, pins)));
            let (stored, pins) = match pruned {
                Ok(pruned) => pruned,
                Err(e) => {
                    return error(
                        exit::ENGINE_ERROR,
                        format_args!("the plugin store in {}: {e:#}", store.dir().display()),
                    );
                }
            };
            cache
                .prune(max.unwrap_or(limit), *older_than, &|e| {
                    pins.components.contains(&e.sha256)
                })
                .map(|removed| match output {
                    OutputFormat::Human => human::print_pruned(&removed, &stored),
                    OutputFormat::Json => json::print_pruned(&removed, &stored),
                })
        }
    };
    match result {
        Ok(()) => exit::SUCCESS,
        Err(e) => error(
            exit::ENGINE_ERROR,
            format_args!("the compiled-plugin cache in {}: {e}", cache.dir().display()),
        ),
    }
}
