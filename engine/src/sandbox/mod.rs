//! The sandbox: one fresh wasmtime store per step, holding only the
//! step's mounts, a memory limit and a wall-time limit.
//!
//! A plugin's failure, trap, panic or limit hit becomes a [`StepFailure`];
//! nothing a guest does can crash the engine.

mod bindings;
mod capability;
// Shared with the SDK, whose errors say the names from the start.
#[path = "../../../plugin-sdk/src/errno.rs"]
mod errno;
mod exec;
mod fs;
mod host;
mod limits;
mod linker;
mod output;
mod outside;
mod state;
mod ticker;

pub use crate::grant::Limits;
pub use capability::{Refusal, check as check_grant};
pub use exec::probe as probe_capture;

use crate::events::{Emitter, Event, EventSink, LogLevel, LogLine};
use crate::grant::{Access, Exec, Mount};
use crate::journal::RunJournal;
use crate::plugin::{CacheOutcome, CompiledCache, MountNeed, Needs, PluginInfo, PluginSource};
use anyhow::{Context, anyhow, bail};
use bindings::stepback::plugin::types;
use bindings::{Step, StepPre};
use output::CapturedOutput;
use state::StepState;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

/// How long `describe` may take; it should only return constants.
const DESCRIBE_TIME: Duration = Duration::from_secs(10);

/// A compiled plugin, ready to instantiate many times.
pub struct Plugin {
    /// As the flow names it.
    pub label: String,
    /// Of the component's bytes, hex.
    pub sha256: String,
    /// Whether it came from the compiled cache.
    pub cache: CacheOutcome,
    component: Component,
    pre: StepPre<StepState>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("label", &self.label)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// What a step is run with.
pub struct StepRequest<'a> {
    /// The run's journal; `None` runs the step unjournaled.
    pub journal: Option<Arc<Mutex<RunJournal>>>,
    /// The free-space reserve the step's writes must leave.
    pub room: Option<Arc<crate::journal::SpaceReserve>>,
    /// The flow's name, for the step's context.
    pub flow: &'a str,
    /// The step's name.
    pub step: &'a str,
    /// The run's id.
    pub run_id: &'a str,
    /// Where the step's logs and progress go, stamped with `run_id`.
    pub events: Arc<dyn EventSink>,
    /// Stops the step when the run is cancelled.
    pub cancel: crate::cancel::Cancel,
    /// The `with` table, as JSON.
    pub config: &'a str,
    /// The mounts granted to the step.
    pub mounts: &'a [Mount],
    /// The mounts' directories, opened when the run started, in the order
    /// of `mounts` (empty: open them by path): the step's preopens are
    /// these very directories, whatever their paths lead to now.
    pub pinned: Vec<Arc<std::fs::File>>,
    /// The flow's parameters, sorted.
    pub params: Vec<(String, String)>,
    /// What the step may spend.
    pub limits: Limits,
    /// The commands it may run.
    pub exec: &'a Exec,
    /// A directory of the run's own, outside every mount, where its
    /// commands' file changes are held until they are applied.
    pub scratch: std::path::PathBuf,
}

/// Why a step failed, for reports and policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// The plugin returned an error.
    Plugin,
    /// The guest trapped or panicked.
    Trap,
    /// It ran out of time.
    TimeLimit,
    /// It asked for more memory than its limit.
    MemoryLimit,
    /// The sandbox could not be set up (e.g. a mount vanished).
    Setup,
    /// The run was cancelled ([`crate::cancel::Cancel`]) while the step ran.
    Cancelled,
}

/// A step's failure.
#[derive(Debug, Clone)]
pub struct StepFailure {
    /// Why.
    pub reason: FailureReason,
    /// One line for the operator.
    pub message: String,
    /// More, when there is more (the guest's stderr for a panic).
    pub details: Option<String>,
}

/// The result of running one step.
#[derive(Debug)]
pub struct StepRun {
    /// The plugin's summary line on success.
    pub result: Result<Option<String>, StepFailure>,
    /// Host-interface logs, then the guest's stdout and stderr.
    pub log: Vec<LogLine>,
}

/// The wasmtime engine, the linker and the compiled cache: created once per
/// process and shared by every step.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<StepState>,
    cache: CompiledCache,
    /// Where plugin loading is reported (outside any run).
    events: Emitter,
}

impl Sandbox {
    /// The engine (with its epoch ticker) and linker every step uses; plugin loading is
    /// reported to `events`.
    pub fn new(cache: CompiledCache, events: Arc<dyn EventSink>) -> anyhow::Result<Sandbox> {
        let mut config = Config::new();
        config.epoch_interruption(true).wasm_component_model(true);
        let engine = Engine::new(&config)?;
        ticker::start(&engine);
        let linker = linker::build(&engine)?;
        Ok(Sandbox {
            engine,
            linker,
            cache,
            events: Emitter::new(events),
        })
    }

    /// Compiles (or loads from the cache) and links a plugin. Refuses core
    /// modules, imports the host does not provide, and components that do
    /// not export the `step` world.
    pub fn load(&self, source: &PluginSource) -> anyhow::Result<Plugin> {
        let label = source.label();
        let start = Instant::now();
        // A stored plugin's remembered digest must still be the one it
        // was pulled at; otherwise it is read, and refused, below.
        let recalled = source
            .stamp()
            .and_then(|stamp| self.cache.recall(&self.engine, &stamp))
            .filter(|(_, sha)| source.expected_sha256().is_none_or(|e| e == sha));
        let (component, cache, sha256) = match recalled {
            Some((component, sha256)) => (component, CacheOutcome::Hit, sha256),
            None => self.compile(source, &label)?,
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("plugin {label} cannot be linked: {e:#}"))?;
        let pre = StepPre::new(pre)
            .map_err(|e| anyhow!("plugin {label} does not export the stepback:plugin/step world: {e:#}"))?;
        self.events.emit(Event::PluginLoaded {
            plugin: label.clone(),
            sha256: sha256.clone(),
            cache,
            duration_us: crate::events::micros_since(start),
        });
        Ok(Plugin {
            label,
            sha256,
            cache,
            component,
            pre,
        })
    }

    /// Reads, checks and compiles a plugin (or loads it from the cache).
    fn compile(
        &self,
        source: &PluginSource,
        label: &str,
    ) -> anyhow::Result<(Component, CacheOutcome, String)> {
        let (bytes, stamp) = source.read()?;
        // Refused before compiling (seconds, and a large cache entry, for
        // a big component) when its imports cannot be linked anyway.
        let imports =
            crate::plugin::component_imports(&bytes).with_context(|| format!("reading plugin {label}"))?;
        if let Some(why) = linker::refusal(label, &imports) {
            bail!(why);
        }
        self.cache
            .load(&self.engine, &bytes, stamp)
            .with_context(|| format!("compiling plugin {label}"))
    }

    /// The plugin's imports and exports as WIT names, for `plugin inspect`.
    pub fn interfaces(&self, plugin: &Plugin) -> (Vec<String>, Vec<String>) {
        let ty = plugin.component.component_type();
        let imports = ty.imports(&self.engine).map(|(n, _)| n.to_owned()).collect();
        let exports = ty.exports(&self.engine).map(|(n, _)| n.to_owned()).collect();
        (imports, exports)
    }

    /// Asks the plugin to describe itself, in a sandbox with no mounts.
    pub async fn describe(&self, plugin: &Plugin) -> anyhow::Result<PluginInfo> {
        let limits = Limits {
            time: DESCRIBE_TIME,
            ..Limits::default()
        };
        let (mut store, _, stderr) = self.store(
            ("describe", self.events.clone()),
            (&[], &[]),
            (None, None),
            (&Exec::default(), std::env::temp_dir()),
            Vec::new(),
            limits,
        )?;
        let called = tokio::time::timeout(limits.time, async {
            let step = plugin.pre.instantiate_async(&mut store).await?;
            step.call_describe(&mut store).await
        })
        .await;
        let info = match called {
            Ok(Ok(info)) => info,
            Ok(Err(trap)) => {
                let failure = trap_failure(&trap, &store, &stderr, limits, &plugin.label);
                bail!(
                    "plugin {} failed to describe itself: {}",
                    plugin.label,
                    failure.message
                )
            }
            Err(_) => bail!(
                "plugin {} did not describe itself within {:?}",
                plugin.label,
                limits.time
            ),
        };
        let config_schema = serde_json::from_str(&info.config_schema)
            .with_context(|| format!("plugin {} describes an invalid JSON Schema", plugin.label))?;
        Ok(PluginInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            config_schema,
            needs: Needs {
                mounts: info
                    .needs
                    .mounts
                    .into_iter()
                    .map(|m| MountNeed {
                        role: m.role,
                        access: access_from_wit(m.access),
                    })
                    .collect(),
                exec: info.needs.exec,
                network: info.needs.network,
            },
        })
    }

    /// Runs one step in a fresh store.
    pub async fn run(&self, plugin: &Plugin, request: StepRequest<'_>) -> StepRun {
        let limits = request.limits;
        let (mut store, stdout, stderr) = match self.store(
            (
                request.step,
                Emitter::for_run(request.run_id, request.events.clone()),
            ),
            (request.mounts, &request.pinned),
            (request.journal.clone(), request.room.clone()),
            (request.exec, request.scratch.clone()),
            request.params.clone(),
            limits,
        ) {
            Ok(parts) => parts,
            Err(e) => {
                let failure = StepFailure {
                    reason: FailureReason::Setup,
                    message: format!("could not set up the sandbox: {e:#}"),
                    details: None,
                };
                return StepRun {
                    result: Err(failure),
                    log: Vec::new(),
                };
            }
        };
        let context = step_context(&request);
        let called = tokio::time::timeout(limits.time, async {
            let step: Step = plugin.pre.instantiate_async(&mut store).await?;
            step.call_run(&mut store, request.config, &context).await
        });
        let called = tokio::select! {
            called = called => Some(called),
            () = request.cancel.cancelled() => None,
        };
        let result = match called {
            None => Err(StepFailure {
                reason: FailureReason::Cancelled,
                message: format!("step '{}' was stopped: the run was cancelled", request.step),
                details: None,
            }),
            Some(Ok(Ok(Ok(outcome)))) => Ok(outcome.summary),
            Some(Ok(Ok(Err(error)))) => Err(plugin_failure(&error, &request)),
            Some(Ok(Err(trap))) => Err(trap_failure(&trap, &store, &stderr, limits, request.step)),
            Some(Err(_)) => Err(StepFailure {
                reason: FailureReason::TimeLimit,
                message: format!(
                    "step '{}' exceeded its {} time limit",
                    request.step,
                    humantime::format_duration(limits.time)
                ),
                details: None,
            }),
        };
        capability::fs_view(store.data_mut()).settle();
        let log = step_log(&mut store, (&stdout, &stderr));
        StepRun { result, log }
    }

    fn store(
        &self,
        (step, events): (&str, Emitter),
        (mounts, pinned): (&[Mount], &[Arc<std::fs::File>]),
        (journal, room): (
            Option<Arc<Mutex<RunJournal>>>,
            Option<Arc<crate::journal::SpaceReserve>>,
        ),
        (exec, scratch): (&Exec, std::path::PathBuf),
        params: Vec<(String, String)>,
        limits: Limits,
    ) -> anyhow::Result<(Store<StepState>, CapturedOutput, CapturedOutput)> {
        let stdout = CapturedOutput::default();
        let stderr = CapturedOutput::default();
        let state = capability::prepare(&capability::Setup {
            step,
            mounts,
            exec,
            scratch,
            pinned,
            journal,
            room,
            params,
            limits,
            events,
            stdout: &stdout,
            stderr: &stderr,
        })?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_async_yield_and_update(1);
        Ok((store, stdout, stderr))
    }
}

/// What the step is told of itself: its flow, name, run and mounts.
fn step_context(request: &StepRequest<'_>) -> types::StepContext {
    types::StepContext {
        flow: request.flow.to_owned(),
        step: request.step.to_owned(),
        run_id: request.run_id.to_owned(),
        mounts: request
            .mounts
            .iter()
            .map(|m| types::Mount {
                name: m.name.clone(),
                guest_path: m.guest.clone(),
                access: access_to_wit(m.access),
            })
            .collect(),
    }
}

/// A step that failed itself: its message and details in the host's
/// terms, with a hint where it names a path outside its mounts.
fn plugin_failure(error: &types::StepError, request: &StepRequest<'_>) -> StepFailure {
    let message = errno::in_host_terms(&error.message);
    let guests: Vec<&str> = request.mounts.iter().map(|m| m.guest.as_str()).collect();
    let details = error.details.as_deref().map(errno::in_host_terms);
    // A step running commands names host programs and the jail's own
    // paths: no hint for those.
    let hint = match request.exec.programs.is_empty() {
        true => outside::hint(&message, &guests),
        false => None,
    };
    let details = match (details, hint) {
        (Some(d), Some(hint)) => Some(format!("{d}\n{hint}")),
        (d, hint) => d.or(hint),
    };
    StepFailure {
        reason: FailureReason::Plugin,
        message,
        details,
    }
}

/// The step's log: what it logged (and how much was dropped), the opens
/// it was refused, then its standard output and error, line by line.
fn step_log(
    store: &mut Store<StepState>,
    (stdout, stderr): (&CapturedOutput, &CapturedOutput),
) -> Vec<LogLine> {
    let mut log = std::mem::take(&mut store.data_mut().host.log);
    log.extend(store.data().host.dropped_line());
    log.extend(store.data().fs.refused_line().map(|message| LogLine {
        level: LogLevel::Warn,
        message,
    }));
    for (level, output) in [(LogLevel::Stdout, stdout), (LogLevel::Stderr, stderr)] {
        log.extend(
            output
                .lines()
                .into_iter()
                .filter(|line| !line.trim().is_empty())
                .map(|message| LogLine { level, message }),
        );
    }
    log
}

/// Explains a trap: a memory-limit hit, a panic (its message is on the
/// guest's stderr), or another trap.
fn trap_failure(
    trap: &wasmtime::Error,
    store: &Store<StepState>,
    stderr: &CapturedOutput,
    limits: Limits,
    step: &str,
) -> StepFailure {
    if store.data().limiter.was_hit() {
        return StepFailure {
            reason: FailureReason::MemoryLimit,
            message: format!(
                "step '{step}' exceeded its {} memory limit",
                bytesize::ByteSize(limits.memory)
            ),
            details: None,
        };
    }
    let lines = stderr.lines();
    let panic = lines
        .iter()
        .position(|l| l.contains("panicked at"))
        .and_then(|i| lines.get(i + 1))
        .filter(|m| !m.is_empty());
    let message = match panic {
        Some(message) => format!("plugin panicked: {message}"),
        None => format!("plugin trapped: {}", trap.root_cause()),
    };
    StepFailure {
        reason: FailureReason::Trap,
        message,
        details: Some(format!("{trap:?}")),
    }
}

fn access_to_wit(access: Access) -> types::Access {
    match access {
        Access::ReadOnly => types::Access::ReadOnly,
        Access::ReadWrite => types::Access::ReadWrite,
    }
}

fn access_from_wit(access: types::Access) -> Access {
    match access {
        types::Access::ReadOnly => Access::ReadOnly,
        types::Access::ReadWrite => Access::ReadWrite,
    }
}
