//! Turns a parsed flow into a [`Plan`], collecting every problem with its
//! position instead of stopping at the first.

use super::field::FieldPath;
use super::model::{ActionDecl, FlowFile, MountDecl, OnFailure, StepDecl, Trigger};
use super::params::Params;
use super::plan::{Plan, PlannedAction, PlannedStep, RollbackPlan};
use super::source::FlowSource;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::grant::{Access, Capture, Exec, Grant, Limits, Mount, Program, SnapshotPath};
use crate::plugin::{PluginInfo, PluginSource};
use crate::registry::{PluginRef, Remote};
use crate::sandbox::{Plugin, Refusal, Sandbox};
use jsonschema::paths::LocationSegment;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Reads, parses and checks a flow against the plugins it uses. Nothing is
/// changed on the machine: plugins are only asked to describe themselves.
///
/// `engine_dirs` are the directories Stepback keeps its own state in (the
/// state and compiled-cache directories): no mount may contain them or lie
/// inside them, or a step could rewrite the journal a rollback trusts or
/// the native code a later run loads.
///
/// `remote` resolves registry plugins (`uses = "oci://…"`); without one, a
/// flow that names any is invalid.
pub async fn validate(
    source: &FlowSource,
    overrides: &[(String, String)],
    sandbox: &Sandbox,
    engine_dirs: &[PathBuf],
    remote: Option<&Remote>,
) -> Result<Plan, Diagnostics> {
    let super::unknown::Parsed {
        flow,
        problems,
        standins,
    } = super::unknown::parse_all(source)?;
    let mut v = Validator {
        source,
        problems,
        standins,
        declared_mounts: flow.mounts.iter().map(|m| m.name.clone()).collect(),
        engine_dirs: engine_dirs.iter().map(|d| canonical_lenient(d)).collect(),
        loaded: HashMap::new(),
        remote,
    };
    let params = v.params(&flow, overrides);
    let mounts = v.mounts(&flow.mounts, &params);
    let steps = v.steps(&flow, &params, &mounts, sandbox).await;
    let rollback = RollbackPlan {
        enabled: flow.rollback.enabled,
        action: match &flow.rollback.action {
            Some(action) => {
                let field = FieldPath::root().key("rollback").key("action");
                if action.trigger.is_some() {
                    v.report(
                        &field.key("trigger"),
                        "the flow's rollback action runs whenever the flow is rolled back: `trigger` is for steps' actions",
                    );
                }
                let decl = action.as_step("rollback action".to_owned());
                v.runnable(&field, &decl, &params, &mounts, sandbox)
                    .await
                    .map(Box::new)
            }
            None => None,
        },
    };
    if let Some(remote) = remote {
        for stale in remote.unused_entries(&source.path) {
            v.report(&FieldPath::root(), stale);
        }
    }
    let app = v.app(flow.app.as_ref(), &params);
    if v.problems.is_empty() {
        Ok(Plan {
            name: flow.name,
            file: source.path.clone(),
            params,
            mounts: mounts.into_values().collect(),
            steps,
            rollback,
            app,
        })
    } else {
        // In the file's order (those about the file as a whole first).
        v.problems.sort_by_key(|d| d.position.map(|p| (p.line, p.column)));
        Err(Diagnostics(v.problems))
    }
}

struct Validator<'a> {
    source: &'a FlowSource,
    problems: Vec<Diagnostic>,
    /// Where parsing put stand-ins for missing keys and wrong types.
    standins: super::standin::Standins,
    /// Every mount name the flow declares, valid or not: a step naming an
    /// invalid mount is not told the mount is undefined as well.
    declared_mounts: HashSet<String>,
    /// Stepback's own directories, canonical.
    engine_dirs: Vec<PathBuf>,
    /// Plugins loaded so far, by `uses` (`None`: it could not be).
    loaded: HashMap<String, Option<(Arc<Plugin>, PluginInfo)>>,
    /// Where registry plugins come from.
    remote: Option<&'a Remote>,
}

/// `path` with symlinks resolved as far as it exists: a state directory
/// need not exist yet to be protected.
fn canonical_lenient(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(c) = std::fs::canonicalize(existing) {
            return missing.iter().rev().fold(c, |acc: PathBuf, part| acc.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

impl Validator<'_> {
    fn report(&mut self, field: &FieldPath, message: impl Into<String>) {
        let d = self.source.diagnostic(field, message);
        self.push(d);
    }

    /// Adds problem `d`, unless it is about a stand-in for a missing key or
    /// a wrong type (reported already: what it says of the stand-in would
    /// only confuse).
    fn push(&mut self, d: Diagnostic) {
        if !self.standins.covers(&d.field) {
            self.problems.push(d);
        }
    }

    /// `[app]`, its version's parameters substituted; neither may be empty.
    fn app(&mut self, app: Option<&super::model::AppDecl>, params: &Params) -> Option<crate::journal::App> {
        let app = app?;
        let field = FieldPath::root().key("app");
        let version = match params.substitute(&app.version) {
            Ok(version) => version,
            Err(e) => {
                self.report(&field.key("version"), e);
                return None;
            }
        };
        for (key, value) in [("name", &app.name), ("version", &version)] {
            if value.trim().is_empty() {
                self.report(&field.key(key), format!("the app's {key} is empty"));
                return None;
            }
        }
        Some(crate::journal::App {
            name: app.name.clone(),
            version,
        })
    }

    fn params(&mut self, flow: &FlowFile, overrides: &[(String, String)]) -> Params {
        let mut values = BTreeMap::new();
        for (name, decl) in &flow.params {
            if let Some(default) = &decl.default {
                values.insert(name.clone(), default.clone());
            }
        }
        for (name, value) in overrides {
            if flow.params.contains_key(name) {
                values.insert(name.clone(), value.clone());
            } else {
                let declared: Vec<&str> = flow.params.keys().map(String::as_str).collect();
                let d = Diagnostic::new(
                    &self.source.path,
                    "params",
                    format!(
                        "override {name}={value}: the flow declares no parameter `{name}` {}",
                        super::unknown::known_ones(name, "declared", &declared)
                    ),
                );
                self.push(d);
            }
        }
        let unset: Vec<&String> = flow
            .params
            .keys()
            .filter(|name| !values.contains_key(*name))
            .collect();
        for name in unset {
            let field = FieldPath::root().key("params").key(name);
            self.report(
                &field,
                format!("parameter `{name}` has no default and was given no value"),
            );
            // Said once, here: its uses keep `${name}` as written, and the
            // rest of what holds them is still checked.
            values.insert(name.clone(), format!("${{{name}}}"));
        }
        Params(values)
    }

    fn mounts(&mut self, decls: &[MountDecl], params: &Params) -> BTreeMap<String, Mount> {
        let mut mounts = BTreeMap::new();
        let mut guests = HashSet::new();
        for (i, decl) in decls.iter().enumerate() {
            let field = FieldPath::root().key("mounts").index(i);
            if mounts.contains_key(&decl.name) {
                self.report(
                    &field.key("name"),
                    format!("duplicate mount name {:?}", decl.name),
                );
                continue;
            }
            // Written as a step's paths will be compared with it: no
            // trailing `/` or `//` (`/a/` would hold no `/a/x`).
            let plain = decl.guest == "/" || !(decl.guest.ends_with('/') || decl.guest.contains("//"));
            if !is_clean_absolute(&decl.guest) || !plain {
                self.report(
                    &field.key("guest"),
                    format!(
                        "guest path {:?} must be absolute, without `.`, `..`, `//` or a trailing `/`",
                        decl.guest
                    ),
                );
                continue;
            }
            if !guests.insert(decl.guest.clone()) {
                self.report(
                    &field.key("guest"),
                    format!("guest path {:?} is used by another mount", decl.guest),
                );
                continue;
            }
            let written = match params.substitute(&decl.host) {
                Ok(host) => host,
                Err(e) => {
                    self.report(&field.key("host"), e);
                    continue;
                }
            };
            let host = match std::fs::canonicalize(self.source.base_dir().join(&written)) {
                Ok(p) if p.is_dir() => p,
                Ok(p) => {
                    let why = format!("host path {} is not a directory", self.as_written(&written, &p));
                    self.report(&field.key("host"), why);
                    continue;
                }
                Err(e) => {
                    let why = format!(
                        "host path {}: {e}",
                        self.as_written(&written, Path::new(&written))
                    );
                    self.report(&field.key("host"), why);
                    continue;
                }
            };
            let mount = Mount {
                name: decl.name.clone(),
                host,
                guest: decl.guest.clone(),
                access: decl.access,
            };
            if let Some(problem) = self.layout_problem(&mount, mounts.values()) {
                self.report(&field.key("host"), problem);
                continue;
            }
            mounts.insert(decl.name.clone(), mount);
        }
        mounts
    }

    /// A host path as the flow wrote it (`written`, parameters
    /// substituted), with where it led (`found`) when that says more: the
    /// directory a relative path is resolved against, or what it resolved to.
    fn as_written(&self, written: &str, found: &Path) -> String {
        let base = self.source.base_dir();
        let base = std::fs::canonicalize(&base).unwrap_or(base);
        match (Path::new(written).is_relative(), found == Path::new(written)) {
            (true, true) => format!(
                "{written:?} (relative to the flow's directory, {})",
                base.display()
            ),
            (_, false) => format!("{written:?} ({})", found.display()),
            (false, true) => format!("{written:?}"),
        }
    }

    /// Why `mount` cannot be mounted beside `others`, if it cannot: it holds
    /// or lies in Stepback's own directories; it is another mount's
    /// directory again; it overlaps another mount where either is
    /// read-write (a step could then change one mount through the other,
    /// replacing it by a symlink or moving it, behind the journal); or it
    /// reaches a network or FUSE filesystem ([`super::remote`]).
    fn layout_problem<'m>(&self, mount: &Mount, others: impl Iterator<Item = &'m Mount>) -> Option<String> {
        let host = &mount.host;
        let shown = host.display();
        if let Some((point, fstype)) = super::remote::remote_filesystems(host).into_iter().next() {
            let place = match host.starts_with(&point) {
                true => "is on",
                false => "contains",
            };
            return Some(format!(
                "host path {shown} {place} a {fstype} filesystem ({}): a call there can block in the kernel past any time limit, and so could the rollback. Mount a directory on a local filesystem",
                point.display()
            ));
        }
        for dir in &self.engine_dirs {
            // By identity too: a bind mount of an ancestor under another
            // path holds the directory all the same.
            if dir.starts_with(host) || super::identity::holds(host, dir) {
                return Some(format!(
                    "host path {shown} contains {}, where Stepback keeps its journals and compiled plugins: a step could forge them. Mount a directory that does not contain it, or keep Stepback's state and cache elsewhere",
                    dir.display()
                ));
            }
            if host.starts_with(dir) || super::identity::holds(dir, host) {
                return Some(format!(
                    "host path {shown} lies inside {}, where Stepback keeps its journals and compiled plugins: mount a directory outside it",
                    dir.display()
                ));
            }
        }
        for other in others {
            if &other.host == host {
                return Some(format!(
                    "host path {shown} is mounted already, as '{}': mount a directory once and list that mount in every step that needs it",
                    other.name
                ));
            }
            let (outer, inner) = match () {
                _ if host.starts_with(&other.host) => (other, mount),
                _ if other.host.starts_with(host) => (mount, other),
                _ => continue,
            };
            if mount.access == Access::ReadWrite || other.access == Access::ReadWrite {
                return Some(format!(
                    "host path {shown} overlaps mount '{}' ({}): '{}' lies inside '{}' and one of them is read-write, so a step could change one through the other behind the journal. Mount only '{}', or directories beside each other",
                    other.name,
                    other.host.display(),
                    inner.name,
                    outer.name,
                    outer.name
                ));
            }
        }
        None
    }

    async fn steps(
        &mut self,
        flow: &FlowFile,
        params: &Params,
        mounts: &BTreeMap<String, Mount>,
        sandbox: &Sandbox,
    ) -> Vec<PlannedStep> {
        if flow.steps.is_empty() && !self.standins.covers("steps") {
            self.report(
                &FieldPath::root().key("name"),
                "the flow has no steps; add at least one [[steps]]",
            );
        }
        let mut names = HashSet::new();
        let mut planned = Vec::new();
        let default_policy = match flow.rollback.enabled {
            true => OnFailure::Rollback,
            false => OnFailure::Stop,
        };
        for (i, decl) in flow.steps.iter().enumerate() {
            let field = FieldPath::root().key("steps").index(i);
            if !names.insert(decl.name.as_str()) {
                self.report(&field.key("name"), format!("duplicate step name {:?}", decl.name));
            }
            if decl.on_failure == Some(OnFailure::Rollback) && !flow.rollback.enabled {
                self.report(
                    &field.key("on-failure"),
                    "on-failure = \"rollback\", but the flow turns its rollback off ([rollback] enabled = false)",
                );
            }
            let actions = self.actions(&field, decl, params, mounts, sandbox).await;
            if let Some(mut step) = self.runnable(&field, decl, params, mounts, sandbox).await {
                step.on_failure = decl.on_failure.unwrap_or(default_policy);
                step.actions = actions;
                planned.push(step);
            }
        }
        planned
    }

    /// A step's customized actions, each checked like a step.
    async fn actions(
        &mut self,
        field: &FieldPath,
        decl: &StepDecl,
        params: &Params,
        mounts: &BTreeMap<String, Mount>,
        sandbox: &Sandbox,
    ) -> Vec<PlannedAction> {
        let mut planned = Vec::new();
        for (j, action) in decl.actions.iter().enumerate() {
            let field = field.key("actions").index(j);
            let name = action_name(&decl.name, action, j);
            if let Some(step) = self
                .runnable(&field, &action.as_step(name), params, mounts, sandbox)
                .await
            {
                planned.push(PlannedAction {
                    action: step,
                    trigger: action.trigger.unwrap_or_default(),
                });
            }
        }
        planned
    }

    /// A step or an action: its plugin loaded (once per `uses`) and
    /// described, its grant and config checked.
    async fn runnable(
        &mut self,
        field: &FieldPath,
        decl: &StepDecl,
        params: &Params,
        mounts: &BTreeMap<String, Mount>,
        sandbox: &Sandbox,
    ) -> Option<PlannedStep> {
        if !self.loaded.contains_key(&decl.uses) {
            let plugin = self.load(&field.key("uses"), &decl.uses, sandbox).await;
            self.loaded.insert(decl.uses.clone(), plugin);
        }
        let plugin = self.loaded[&decl.uses].clone();
        self.step(field, decl, plugin, params, mounts)
    }

    async fn load(
        &mut self,
        field: &FieldPath,
        uses: &str,
        sandbox: &Sandbox,
    ) -> Option<(Arc<Plugin>, PluginInfo)> {
        let result = async {
            let source = match (PluginRef::from_uses(uses), self.remote) {
                (None, _) => PluginSource::resolve(uses, &self.source.base_dir())?,
                (Some(Err(malformed)), _) => anyhow::bail!(malformed),
                (Some(Ok(_)), None) => anyhow::bail!("{uses}: this program loads no plugins from registries"),
                (Some(Ok(reference)), Some(remote)) => {
                    remote.source(&self.source.path, uses, &reference).await?
                }
            };
            let plugin = sandbox.load(&source)?;
            let info = sandbox.describe(&plugin).await?;
            anyhow::Ok((Arc::new(plugin), info))
        }
        .await;
        result.map_err(|e| self.report(field, format!("{e:#}"))).ok()
    }

    fn step(
        &mut self,
        field: &FieldPath,
        decl: &StepDecl,
        plugin: Option<(Arc<Plugin>, PluginInfo)>,
        params: &Params,
        mounts: &BTreeMap<String, Mount>,
    ) -> Option<PlannedStep> {
        let before = self.problems.len();
        let mut granted = Vec::new();
        let mut all_granted = true;
        for (j, name) in decl.mounts.iter().enumerate() {
            match mounts.get(name) {
                Some(m) => granted.push(m.clone()),
                None if self.declared_mounts.contains(name) => all_granted = false,
                None => {
                    all_granted = false;
                    let mut defined: Vec<&str> = self.declared_mounts.iter().map(String::as_str).collect();
                    defined.sort();
                    self.report(
                        &field.key("mounts").index(j),
                        format!(
                            "undefined mount {name:?} {}",
                            super::unknown::known_ones(name, "defined", &defined)
                        ),
                    );
                }
            }
        }
        let mut config = Value::Object(decl.with.clone());
        self.substitute(&field.key("with"), &mut config, params);
        let limits = self.limits(field, decl);
        let exec = self.exec(field, decl, (&granted, mounts));
        // Without the plugin, only the checks above can be made.
        let (plugin, info) = plugin?;
        crate::plugin::defaults::apply(&info.config_schema, &mut config);
        let grant = Grant {
            mounts: granted,
            exec,
        };
        if all_granted {
            self.check_needs(field, &info, &grant);
        }
        self.check_schema(&field.key("with"), &info, &config);
        self.check_programs(&field.key("with"), &info, &config, &grant);
        let Grant {
            mounts: granted,
            exec,
        } = grant;
        (self.problems.len() == before).then(|| PlannedStep {
            name: decl.name.clone(),
            uses: decl.uses.clone(),
            plugin,
            info,
            config: config.to_string(),
            mounts: granted,
            exec,
            on_failure: OnFailure::Rollback,
            limits,
            actions: Vec::new(),
            revert: decl.revert,
        })
    }

    /// Whether the step's grant gives the plugin what it needs, asked of
    /// each capability.
    fn check_needs(&mut self, field: &FieldPath, info: &PluginInfo, granted: &Grant) {
        for refusal in crate::sandbox::check_grant(&info.needs, granted) {
            let (key, why) = match refusal {
                Refusal::Plugin(why) => ("uses", why),
                Refusal::Mounts(why) => ("mounts", why),
                Refusal::Exec(why) => ("exec", why),
            };
            self.report(&field.key(key), format!("plugin {} {why}", info.name));
        }
    }

    /// The step's exec grant: each program resolved to the file that
    /// runs (a name through `PATH`, as the engine has it), and the
    /// overlays that capture commands tried on its read-write mounts.
    fn exec(
        &mut self,
        field: &FieldPath,
        decl: &StepDecl,
        (mounts, all): (&[Mount], &BTreeMap<String, Mount>),
    ) -> Exec {
        let mut programs = Vec::new();
        for (j, name) in decl.exec.iter().enumerate() {
            match resolve_program(name, all).and_then(|path| pin(name, path, all)) {
                Ok(program) => programs.push(program),
                Err(why) => {
                    self.report(&field.key("exec").index(j), why);
                    // It stands in for itself, so that what follows judges
                    // the config against the grant as written, not against
                    // one without it ("the step grants none").
                    programs.push(Program {
                        name: name.clone(),
                        path: PathBuf::from(name),
                        pinned: None,
                    });
                }
            }
        }
        for (j, name) in decl.exec_env.iter().enumerate() {
            if !crate::grant::changes_code(name) {
                self.report(
                    &field.key("exec-env").index(j),
                    format!(
                        "{name:?} is not a variable that changes what code a program runs: a plugin may set it without a grant (those that need one: {})",
                        crate::grant::code_env_shown()
                    ),
                );
            }
        }
        let sockets = self.sockets(field, decl);
        let capture = decl.capture.unwrap_or_default();
        if decl.exec.is_empty() {
            for (key, set) in [
                ("exec-env", !decl.exec_env.is_empty()),
                ("sockets", !decl.sockets.is_empty()),
                ("network", decl.network),
                ("capture", decl.capture.is_some()),
                ("snapshot", !decl.snapshot.is_empty()),
            ] {
                if set {
                    self.report(
                        &field.key(key),
                        format!(
                            "`{key}` applies to the step's commands, but it grants none (`exec = [...]`)"
                        ),
                    );
                }
            }
        } else if capture == Capture::Overlay
            && let Some(scratch) = self.engine_dirs.first()
            && let Err(why) = crate::sandbox::probe_capture(mounts, scratch)
        {
            let key = if decl.capture.is_some() { "capture" } else { "exec" };
            self.report(
                &field.key(key),
                format!(
                    "the step's commands cannot be captured here: {why}. Set capture = \"snapshot\" with the paths they change (`snapshot = [...]`), or capture = \"none\" to run them uncaptured (their changes are then not reversible)"
                ),
            );
        }
        let snapshot = self.snapshot(field, decl, capture, mounts);
        Exec {
            programs,
            hidden: self.engine_dirs.clone(),
            env: decl.exec_env.clone(),
            sockets,
            network: decl.network,
            capture,
            snapshot,
        }
    }

    /// The Unix sockets a step's commands may connect to: each an
    /// absolute path to a socket, as the host has it now (its directories'
    /// links resolved: `/var/run` is usually `/run`).
    fn sockets(&mut self, field: &FieldPath, decl: &StepDecl) -> Vec<PathBuf> {
        let mut sockets = Vec::new();
        for (j, path) in decl.sockets.iter().enumerate() {
            match socket(path) {
                Ok(found) => sockets.push(found),
                Err(why) => self.report(&field.key("sockets").index(j), why),
            }
        }
        sockets
    }

    /// The paths a step's snapshots cover: each in one of its read-write
    /// mounts; listed exactly when `capture = "snapshot"`.
    fn snapshot(
        &mut self,
        field: &FieldPath,
        decl: &StepDecl,
        capture: Capture,
        mounts: &[Mount],
    ) -> Vec<SnapshotPath> {
        match (capture, decl.snapshot.is_empty()) {
            (Capture::Snapshot, true) => {
                self.report(
                    &field.key("capture"),
                    "capture = \"snapshot\" needs the paths to copy: snapshot = [\"/guest/path\", ...]",
                );
                return Vec::new();
            }
            (Capture::Snapshot, false) => {}
            (_, true) => return Vec::new(),
            (_, false) => {
                self.report(
                    &field.key("snapshot"),
                    "`snapshot` applies with capture = \"snapshot\" only",
                );
                return Vec::new();
            }
        }
        let mut paths = Vec::new();
        for (j, guest) in decl.snapshot.iter().enumerate() {
            let found = mounts.iter().find_map(|m| {
                let host = m.host_path(guest)?;
                let rel = host.strip_prefix(&m.host).ok()?.to_str()?.to_owned();
                Some((m, rel))
            });
            match found {
                Some((m, rel)) if m.access == Access::ReadWrite => paths.push(SnapshotPath {
                    mount: m.name.clone(),
                    rel,
                }),
                Some((m, _)) => self.report(
                    &field.key("snapshot").index(j),
                    format!("{guest:?} is in mount '{}', which the step may only read", m.name),
                ),
                None => self.report(
                    &field.key("snapshot").index(j),
                    format!("{guest:?} is not an absolute guest path (without `.` or `..`) in one of the step's mounts"),
                ),
            }
        }
        paths
    }

    /// Whether every program the config names is in the step's grant: a
    /// command outside it is refused before anything runs. The plugin's
    /// schema marks the properties that name programs
    /// (`"x-stepback-program": true`), and those that name a script in a
    /// mount (`"x-stepback-script": true`) whose `#!` line names one when
    /// no program is named.
    fn check_programs(&mut self, field: &FieldPath, info: &PluginInfo, config: &Value, grant: &Grant) {
        let Some(properties) = info.config_schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let marked = |mark: &'static str| {
            properties
                .iter()
                .filter_map(move |(key, schema)| Some((key, schema.get(mark)?, config.get(key)?.as_str()?)))
        };
        let mut named = false;
        for (key, _, name) in marked("x-stepback-program") {
            named = true;
            if grant.exec.find(name).is_none() {
                self.report(
                    &field.key(key),
                    format!(
                        "program {name:?} is not in the step's exec grant ({}): add it to `exec`",
                        grant.exec.listed()
                    ),
                );
            }
        }
        if named {
            return;
        }
        for (key, _, guest) in marked("x-stepback-script") {
            let host = grant.mounts.iter().find_map(|m| m.host_path(guest));
            // A script an earlier step makes is checked when it runs.
            let Some(text) = host.and_then(|p| std::fs::read(p).ok()) else {
                continue;
            };
            let why = match crate::grant::shebang(&text) {
                None => format!("script {guest} has no #! line: name its interpreter"),
                Some((program, _)) if grant.exec.find(&program).is_none() => format!(
                    "the #! line of {guest} runs {program:?}, which is not in the step's exec grant ({}): add it to `exec`",
                    grant.exec.listed()
                ),
                Some(_) => continue,
            };
            self.report(&field.key(key), why);
        }
    }

    fn substitute(&mut self, field: &FieldPath, value: &mut Value, params: &Params) {
        match value {
            Value::String(s) => match params.substitute(s) {
                Ok(done) => *s = done,
                Err(e) => self.report(field, e),
            },
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.substitute(&field.index(i), item, params);
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    self.substitute(&field.key(k), item, params);
                }
            }
            _ => {}
        }
    }

    /// Checks a step's config against its plugin's schema. An unknown key
    /// is named with the keys the plugin knows and the one most likely
    /// meant; the "required" error for the key it was meant to be is not
    /// said twice.
    fn check_schema(&mut self, field: &FieldPath, info: &PluginInfo, config: &Value) {
        use jsonschema::error::ValidationErrorKind;
        let validator = match jsonschema::validator_for(&info.config_schema) {
            Ok(v) => v,
            Err(e) => {
                self.report(
                    &field.clone(),
                    format!("plugin {} has an invalid config schema: {e}", info.name),
                );
                return;
            }
        };
        let errors: Vec<_> = validator.iter_errors(config).collect();
        let schema = &info.config_schema;
        // The keys each error's object has that its schema does not know,
        // and those it knows.
        let keys: Vec<(Vec<&String>, Vec<String>)> = errors
            .iter()
            .map(|e| {
                (
                    unknown_keys(schema, config, e),
                    known_keys(schema, config, &e.instance_path),
                )
            })
            .collect();
        let mut meant = HashSet::new();
        for (error, (unknown, known)) in errors.iter().zip(&keys) {
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            for key in unknown {
                if let Some(m) = crate::diagnostic::closest(key, &known) {
                    meant.insert((error.instance_path.to_string(), m.to_owned()));
                }
            }
        }
        let plugin = &info.name;
        for (error, (unknown, known)) in errors.iter().zip(&keys) {
            let at = config_field(field, config, &error.instance_path);
            let path = error.instance_path.to_string();
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            for key in unknown {
                let list = super::unknown::known_ones(key, "it knows", &known);
                let d = self.source.key_diagnostic(
                    &at.key(key),
                    format!("unknown key `{key}` {list} (config of plugin {plugin})"),
                );
                self.push(d);
            }
            if let Some((key, why)) = wrong_tag(schema, config, error) {
                self.report(&at.key(&key), format!("{why} (config of plugin {plugin})"));
                continue;
            }
            match &error.kind {
                _ if !unknown.is_empty() => {}
                ValidationErrorKind::Required { property }
                    if property
                        .as_str()
                        .is_some_and(|p| meant.contains(&(path.clone(), p.to_owned()))) => {}
                _ => self.report(&at, format!("{error} (config of plugin {plugin})")),
            }
        }
    }

    fn limits(&mut self, field: &FieldPath, decl: &StepDecl) -> Limits {
        let mut limits = Limits::default();
        let field = field.key("limits");
        if let Some(time) = &decl.limits.time {
            match humantime::parse_duration(time) {
                Ok(d) if !d.is_zero() => limits.time = d,
                Ok(_) => self.report(&field.key("time"), "time limit must be above zero"),
                Err(e) => self.report(
                    &field.key("time"),
                    format!("invalid duration {time:?}: {e} (try \"30s\" or \"5m\")"),
                ),
            }
        }
        if let Some(memory) = &decl.limits.memory {
            match memory.parse::<bytesize::ByteSize>() {
                Ok(size) if size.as_u64() >= Limits::MIN_MEMORY => limits.memory = size.as_u64(),
                Ok(size) => self.report(
                    &field.key("memory"),
                    format!(
                        "memory limit {size} is below the minimum of {}",
                        bytesize::ByteSize(Limits::MIN_MEMORY)
                    ),
                ),
                Err(e) => self.report(
                    &field.key("memory"),
                    format!("invalid size {memory:?}: {e} (try \"64MiB\")"),
                ),
            }
        }
        if let Some(cpu) = &decl.limits.cpu {
            match humantime::parse_duration(cpu) {
                Ok(d) if !d.is_zero() => limits.cpu = Some(d),
                Ok(_) => self.report(&field.key("cpu"), "CPU time limit must be above zero"),
                Err(e) => self.report(
                    &field.key("cpu"),
                    format!("invalid duration {cpu:?}: {e} (try \"10s\" or \"2m\")"),
                ),
            }
        }
        if let Some(n) = decl.limits.processes {
            match u32::try_from(n) {
                Ok(n) if (1..=Limits::MAX_PROCESSES).contains(&n) => limits.processes = n,
                _ => self.report(
                    &field.key("processes"),
                    format!(
                        "process limit {n} is out of range: 1 to {}",
                        Limits::MAX_PROCESSES
                    ),
                ),
            }
        }
        if let Some(n) = decl.limits.descriptors {
            match usize::try_from(n) {
                Ok(n) if (1..=Limits::MAX_DESCRIPTORS).contains(&n) => limits.descriptors = n,
                _ => self.report(
                    &field.key("descriptors"),
                    format!(
                        "descriptor limit {n} is out of range: 1 to {}",
                        Limits::MAX_DESCRIPTORS
                    ),
                ),
            }
        }
        limits
    }
}

/// Socket `path` of a step's `sockets`, its directory's links resolved.
fn socket(path: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::FileTypeExt;
    let given = Path::new(path);
    let (Some(dir), Some(name)) = (given.parent(), given.file_name()) else {
        return Err(format!("socket {path:?} is not an absolute path to a socket"));
    };
    if !given.is_absolute()
        || given
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!("socket {path:?} is not an absolute path (without `..`)"));
    }
    let found = std::fs::canonicalize(dir)
        .map_err(|e| format!("socket {path:?}: its directory: {e}"))?
        .join(name);
    match std::fs::symlink_metadata(&found) {
        Ok(meta) if meta.file_type().is_socket() => Ok(found),
        Ok(_) => Err(format!("{path:?} is not a Unix socket")),
        Err(e) => Err(format!("socket {path:?}: {e}")),
    }
}

/// Program `name` at `path`, pinned by its digest when it lies in a
/// read-write mount of the flow (`mounts`), where a step could rewrite it.
fn pin(name: &str, path: PathBuf, mounts: &BTreeMap<String, Mount>) -> Result<Program, String> {
    let real = std::fs::canonicalize(&path).map_err(|e| format!("program {name:?}: {e}"))?;
    let writable = mounts
        .values()
        .any(|m| m.access == crate::grant::Access::ReadWrite && real.starts_with(&m.host));
    let pinned = match writable {
        false => None,
        true => Some(
            crate::grant::file_digest(&real).map_err(|e| format!("program {name:?}: cannot read it: {e}"))?,
        ),
    };
    Ok(Program {
        name: name.to_owned(),
        path,
        pinned,
    })
}

/// The file program `name` runs: an absolute path as it is, a bare name
/// through the engine's `PATH`; a regular file that may be executed.
fn resolve_program(name: &str, mounts: &BTreeMap<String, Mount>) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let runnable =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let found = if name.contains('/') {
        if !Path::new(name).is_absolute() {
            return Err(format!(
                "program {name:?} must be a bare name (found through PATH) or an absolute path"
            ));
        }
        if !runnable(Path::new(name)) {
            return Err(not_runnable(name, mounts));
        }
        PathBuf::from(name)
    } else if name.is_empty() {
        return Err("empty program name".to_owned());
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| runnable(p))
            .ok_or_else(|| {
                format!(
                    "program {name:?} is not found in PATH ({})",
                    path.to_string_lossy()
                )
            })?
    };
    // Not canonical: a multi-call program (busybox) tells what to be by
    // the name it is run as.
    Ok(found)
}

/// Why absolute path `name` cannot be run. A path that is not there but
/// lies under a mount's guest path was most likely meant as one: `exec`
/// names a program by its host path, which the message gives, with what
/// is there.
fn not_runnable(name: &str, mounts: &BTreeMap<String, Mount>) -> String {
    match std::fs::symlink_metadata(name).and_then(|_| std::fs::metadata(name)) {
        Ok(meta) => format!("program {name:?} {}", unrunnable(&meta)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let meant = mounts
                .values()
                .find_map(|m| Some((m, m.host_path(name).filter(|h| *h != Path::new(name))?)));
            let Some((m, host)) = meant else {
                return match std::fs::symlink_metadata(name) {
                    Ok(_) => format!("program {name:?} is a symlink to nothing"),
                    Err(_) => format!("program {name:?} does not exist"),
                };
            };
            let there = match std::fs::metadata(&host) {
                Ok(meta)
                    if meta.is_file()
                        && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0 =>
                {
                    "name that".to_owned()
                }
                Ok(meta) => format!("which {}", unrunnable(&meta)),
                Err(_) => "which does not exist either".to_owned(),
            };
            format!(
                "program {name:?} does not exist on the host: `exec` names a program by its host path, and {name} is in mount {:?} (seen at {}), whose host directory is {}: on the host it is {}, {there}",
                m.name,
                m.guest,
                m.host.display(),
                host.display()
            )
        }
        Err(e) => format!("program {name:?}: {e}"),
    }
}

/// Why a file that is there cannot be run.
fn unrunnable(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::PermissionsExt;
    if meta.is_dir() {
        "is a directory".to_owned()
    } else if !meta.is_file() {
        "is not a regular file".to_owned()
    } else {
        format!(
            "is not executable (mode {:o}): `chmod +x` it",
            meta.permissions().mode() & 0o7777
        )
    }
}

/// How an action is named in messages unless it names itself.
fn action_name(step: &str, action: &ActionDecl, index: usize) -> String {
    let trigger = match action.trigger.unwrap_or_default() {
        Trigger::ThisStep => "on its failure",
        Trigger::AnyStep => "on any failure",
    };
    format!("{step}: action {} ({trigger})", index + 1)
}

fn is_clean_absolute(guest: &str) -> bool {
    let path = Path::new(guest);
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// The field of a step's config that `instance` (a schema error's
/// location in it) names, under `field` (the step's `with`).
fn config_field(field: &FieldPath, config: &Value, instance: &jsonschema::paths::Location) -> FieldPath {
    let mut at = field.clone();
    let mut node = config;
    for segment in instance {
        let key = match segment {
            LocationSegment::Property(p) => p.to_string(),
            LocationSegment::Index(i) => i.to_string(),
        };
        match node {
            Value::Array(items) => {
                let i = key.parse().unwrap_or(0);
                at = at.index(i);
                node = items.get(i).unwrap_or(&Value::Null);
            }
            _ => {
                at = at.key(&key);
                node = node.get(&key).unwrap_or(&Value::Null);
            }
        }
    }
    at
}

/// The schema of the object at `instance` in `config`, and the object.
fn object_at<'s, 'c>(
    schema: &'s Value,
    config: &'c Value,
    instance: &jsonschema::paths::Location,
) -> Option<(&'s Value, &'c serde_json::Map<String, Value>)> {
    use crate::plugin::defaults::{Inside, schema_at};
    let segments: Vec<Option<String>> = instance
        .into_iter()
        .map(|segment| match segment {
            LocationSegment::Property(p) => Some(p.to_string()),
            LocationSegment::Index(_) => None,
        })
        .collect();
    let path = segments
        .iter()
        .map(|s| s.as_deref().map_or(Inside::Item, Inside::Key));
    let object = config.pointer(&instance.to_string()).and_then(Value::as_object)?;
    Some((schema_at(schema, path)?, object))
}

/// The keys the schema knows for the object at `instance` in `config`
/// (none where it takes any).
fn known_keys(schema: &Value, config: &Value, instance: &jsonschema::paths::Location) -> Vec<String> {
    object_at(schema, config, instance)
        .and_then(|(at, object)| crate::plugin::defaults::known_keys(schema, at, object))
        .unwrap_or_default()
}

/// Where a `oneOf`/`anyOf` of tagged variants fits no branch because the
/// object's tag names none: the tag's key, and what to say of it.
fn wrong_tag(
    schema: &Value,
    config: &Value,
    error: &jsonschema::ValidationError,
) -> Option<(String, String)> {
    use jsonschema::error::ValidationErrorKind;
    if !matches!(
        error.kind,
        ValidationErrorKind::OneOfNotValid { .. } | ValidationErrorKind::AnyOf { .. }
    ) {
        return None;
    }
    let (at, object) = object_at(schema, config, &error.instance_path)?;
    let (key, values) = crate::plugin::defaults::tag(schema, at)?;
    let given = object.get(&key)?.as_str()?;
    if values.iter().any(|v| v == given) {
        return None;
    }
    let known: Vec<&str> = values.iter().map(String::as_str).collect();
    let list = super::unknown::known_ones(given, "it is one of", &known);
    Some((key, format!("{given:?} names no variant {list}")))
}

/// The keys a schema error is about that the object it is at should not
/// have: those its `additionalProperties: false` refuses, and, where no
/// `oneOf`/`anyOf` branch fits, those no branch (or none the tags pick)
/// knows, so that a misspelt key of a variant is named as one.
fn unknown_keys<'c>(
    schema: &Value,
    config: &'c Value,
    error: &jsonschema::ValidationError,
) -> Vec<&'c String> {
    use jsonschema::error::ValidationErrorKind;
    let object = config
        .pointer(&error.instance_path.to_string())
        .and_then(Value::as_object);
    let Some(object) = object else { return Vec::new() };
    match &error.kind {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            object.keys().filter(|k| unexpected.contains(k)).collect()
        }
        ValidationErrorKind::OneOfNotValid { .. } | ValidationErrorKind::AnyOf { .. } => {
            let known = known_keys(schema, config, &error.instance_path);
            match known.is_empty() {
                true => Vec::new(),
                false => object.keys().filter(|k| !known.contains(k)).collect(),
            }
        }
        _ => Vec::new(),
    }
}
