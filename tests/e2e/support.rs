//! Helpers shared by the end-to-end tests.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use stepback::exit;
use tempfile::TempDir;

/// A scratch directory with its own state dir. The compiled-plugin cache
/// is shared by all tests (entries are keyed by content), so each plugin
/// is compiled once per test run.
pub struct Env {
    pub dir: TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, contents).unwrap();
        p
    }

    /// Writes `flow.toml` in the scratch directory.
    pub fn flow(&self, text: impl AsRef<str>) -> PathBuf {
        self.write("flow.toml", text.as_ref())
    }

    /// Runs `stepback ARGS` with this env's state dir and the shared cache.
    pub fn stepback(&self, args: &[&str]) -> Run {
        self.stepback_with_cache(args, &shared_cache())
    }

    /// Starts `stepback run FLOW` in the background and returns once its
    /// flow has made `m/started` (a step that waits for the test to act).
    pub fn spawn_until_started(&self, flow: &str) -> std::process::Child {
        let child = self
            .command(&["run", flow], &shared_cache())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting stepback");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !self.path("m/started").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the flow never made m/started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child
    }

    pub fn stepback_with_cache(&self, args: &[&str], cache: &Path) -> Run {
        checked(
            args,
            Run(self.command(args, cache).output().expect("running stepback")),
        )
    }

    /// `stepback ARGS` with extra environment variables (fault injection).
    pub fn stepback_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut command = self.command(args, &shared_cache());
        command.envs(vars.iter().copied());
        checked(args, Run(command.output().expect("running stepback")))
    }

    /// The contents of file `rel`.
    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub fn command(&self, args: &[&str], cache: &Path) -> Command {
        let mut command = Command::new(test_bin());
        command
            .args(args)
            .env("STEPBACK_STATE_DIR", self.path("state"))
            .env("STEPBACK_CACHE_DIR", cache)
            // Not this machine's /etc/stepback/config.toml.
            .env("STEPBACK_CONFIG", "")
            .current_dir(self.dir.path());
        command
    }

    /// Makes user and group `id` the owner of everything in the
    /// environment.
    pub fn give_to(&self, id: u32) {
        let chown = Command::new("chown")
            .args(["-R", &format!("{id}:{id}")])
            .arg(self.dir.path())
            .status()
            .expect("chown");
        assert!(chown.success());
    }

    /// `stepback ARGS` run as user and group `id` instead of root, with a
    /// cache of its own; everything in the environment is given to `id`
    /// first.
    pub fn stepback_as(&self, id: u32, args: &[&str]) -> Run {
        self.give_to(id);
        let id = id.to_string();
        self.stepback_setpriv(&["--reuid", &id, "--regid", &id, "--clear-groups"], args)
    }

    /// `stepback ARGS` started by `setpriv SETPRIV` (as another user, or
    /// with fewer capabilities), with a cache of its own.
    pub fn stepback_setpriv(&self, setpriv: &[&str], args: &[&str]) -> Run {
        let mut command = Command::new("setpriv");
        command
            .args(setpriv)
            .arg(test_bin_for_anyone())
            .args(args)
            .env("STEPBACK_STATE_DIR", self.path("state"))
            .env("STEPBACK_CACHE_DIR", self.path("cache"))
            .env("STEPBACK_CONFIG", "")
            .current_dir(self.dir.path());
        checked(
            args,
            Run(command.output().expect("running stepback through setpriv")),
        )
    }

    /// `stepback run flow.toml`.
    pub fn run_flow(&self, text: &str) -> Run {
        let flow = self.flow(text);
        self.stepback(&["run", flow.to_str().unwrap()])
    }
}

/// `run`, after checking that with `--output json` each line it printed
/// is what `engine/schema/output-1.schema.json` describes: every test that
/// reads JSON checks the schema too.
fn checked(args: &[&str], run: Run) -> Run {
    let json = args.windows(2).any(|w| w == ["--output", "json"]) || args.contains(&"--output=json");
    if json && !run.killed() {
        for line in run.stdout().lines() {
            check_schema(line);
        }
    }
    run
}

/// The output schema, `engine/schema/output-1.schema.json`.
pub fn output_schema() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/output-1.schema.json");
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// The name of the schema's definition of `value`: `event-NAME` for an
/// event, `result-KIND` for a command's result.
pub fn schema_name(value: &serde_json::Value) -> String {
    match (value["event"].as_str(), value["kind"].as_str()) {
        (Some(event), None) => format!("event-{event}"),
        (None, Some(kind)) => format!("result-{kind}"),
        _ => panic!("neither an event nor a result: {value}"),
    }
}

/// Panics, saying where, unless `line` is one object the output schema
/// describes (checked against its own definition, for a message that
/// says which field is wrong).
pub fn check_schema(line: &str) {
    type Validators = BTreeMap<String, jsonschema::Validator>;
    static VALIDATORS: std::sync::OnceLock<Validators> = std::sync::OnceLock::new();
    let validators = VALIDATORS.get_or_init(|| {
        let schema = output_schema();
        let defs = schema["$defs"].as_object().unwrap();
        defs.keys()
            .map(|name| {
                let one = serde_json::json!({ "$ref": format!("#/$defs/{name}"), "$defs": defs });
                (
                    name.clone(),
                    jsonschema::validator_for(&one).expect("a JSON Schema"),
                )
            })
            .collect()
    });
    let value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let name = schema_name(&value);
    let validator = validators
        .get(&name)
        .unwrap_or_else(|| panic!("the output schema has no {name}: {line}"));
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "not as the output schema says:\n{line}\n{}",
        errors.join("\n")
    );
}

/// The binary to test: `STEPBACK_TEST_BIN`, a copy, so that a long
/// fuzzing run goes on while the tree is rebuilt; or the one cargo built.
fn test_bin() -> std::ffi::OsString {
    std::env::var_os("STEPBACK_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_stepback").into())
}

/// The binary to test where any user can run it: the build tree may be
/// in a home directory closed to others. A hard link (or a copy) in the
/// system's temporary directory, made once per test run.
fn test_bin_for_anyone() -> PathBuf {
    static LINKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LINKED
        .get_or_init(|| {
            let bin = PathBuf::from(test_bin());
            // One per binary tested, replaced by each run: a link left
            // behind would keep an old build's file alive.
            let tag = {
                use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
                BuildHasherDefault::<DefaultHasher>::default().hash_one(&bin)
            };
            let dir = std::env::temp_dir().join(format!("stepback-e2e-bin-{tag:016x}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            let linked = dir.join("stepback");
            let _ = std::fs::remove_file(&linked);
            if std::fs::hard_link(&bin, &linked).is_err() {
                std::fs::copy(&bin, &linked).unwrap();
            }
            std::fs::set_permissions(&linked, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            linked
        })
        .clone()
}

/// The compiled-plugin cache all tests share (entries are keyed by
/// content, so each plugin is compiled once per test run).
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-compiled-cache")
}

/// What a `stepback` invocation did.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().expect("exited, not killed")
    }

    /// Whether the process was killed by a signal (an injected crash aborts).
    pub fn killed(&self) -> bool {
        self.0.status.code().is_none()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts the exit code (one of `stepback::exit`'s), showing the
    /// output when it differs.
    pub fn expect_code(&self, code: impl Into<i32>) -> &Self {
        assert_eq!(
            self.code(),
            code.into(),
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// The events of a run made with `--output json`, one per line.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Each step's name and status, in order, from `--output json` events.
    pub fn step_statuses(&self) -> Vec<(String, String)> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "step-finished")
            .map(|e| {
                (
                    e["step"].as_str().unwrap().to_owned(),
                    e["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    pub fn expect_stdout(&self, needle: &str) -> &Self {
        assert!(
            self.stdout().contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout()
        );
        self
    }

    pub fn expect_stderr(&self, needle: &str) -> &Self {
        assert!(
            self.stderr().contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr()
        );
        self
    }
}

/// The head of a flow file: its name, then a mount of `./NAME` seen as
/// `/NAME` for each name, read-write for `rw` and read-only for `ro`.
/// Steps follow it.
pub fn flow_head(flow: &str, rw: &[&str], ro: &[&str]) -> String {
    let mut head = format!("name = \"{flow}\"\n");
    let mounts = rw
        .iter()
        .map(|m| (m, "read-write"))
        .chain(ro.iter().map(|m| (m, "read-only")));
    for (name, access) in mounts {
        head.push_str(&format!(
            "[[mounts]]\nname = \"{name}\"\nhost = \"{name}\"\nguest = \"/{name}\"\naccess = \"{access}\"\n"
        ));
    }
    head
}

/// The path of a test-only guest component.
pub fn guest(name: &str) -> String {
    format!("{}/{name}.wasm", env!("STEPBACK_PLUGIN_DIR"))
}

/// Asserts two snapshots are equal, naming the paths that differ rather
/// than dumping file contents.
pub fn assert_same(before: &BTreeMap<PathBuf, Node>, after: &BTreeMap<PathBuf, Node>, what: &str) {
    let differing: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(differing.is_empty(), "{what}: these paths differ: {differing:?}");
}

/// What a tree holds: every path with its type and contents or target.
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(PathBuf),
}

/// A tree's contents: every path (the root's own entry left out) with its
/// type and contents or target; a projection of [`snapshot_full`], the one
/// walk every snapshot is taken by.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    snapshot_full(root)
        .into_iter()
        .filter(|(rel, _)| !rel.as_os_str().is_empty())
        .map(|(rel, full)| (rel, full.node))
        .collect()
}

/// Every entry of a tree with its mode and modification time.
pub type Snapshot = BTreeMap<PathBuf, (Node, u32, i128)>;

/// A tree with every entry's mode and modification time (the root
/// included), to check that a rollback restores more than contents; a
/// projection of [`snapshot_full`].
pub fn snapshot_meta(root: &Path) -> Snapshot {
    snapshot_full(root)
        .into_iter()
        .map(|(rel, full)| (rel, (full.node, full.mode, full.mtime)))
        .collect()
}

/// Asserts two meta snapshots are equal, naming what differs.
pub fn assert_same_meta(before: &Snapshot, after: &Snapshot, what: &str) {
    let differing: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .map(|p| {
            let show = |v: Option<&(Node, u32, i128)>| match v {
                None => "absent".to_string(),
                Some((node, mode, mtime)) => {
                    let kind = match node {
                        Node::Dir => "dir".to_string(),
                        Node::File(b) => format!("file {}B", b.len()),
                        Node::Symlink(t) => format!("symlink->{}", t.display()),
                    };
                    format!("{kind} mode {mode:o} mtime {mtime}")
                }
            };
            format!(
                "{}: {} => {}",
                p.display(),
                show(before.get(p)),
                show(after.get(p))
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "{what}: {} path(s) differ:\n{}",
        differing.len(),
        differing.join("\n")
    );
}

/// Everything the guarantee covers about one entry of a tree.
#[derive(Debug, PartialEq, Eq)]
pub struct Full {
    pub node: Node,
    pub mode: u32,
    pub owner: (u32, u32),
    /// Nanoseconds since the epoch (negative before 1970).
    pub mtime: i128,
    /// Allocated 512-byte blocks: a sparse file must stay sparse.
    pub blocks: u64,
    /// Sorted extended attributes (user.*, trusted.*, security.*).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The first path (in sorted order) of the entry's hard-link group.
    pub link_group: PathBuf,
    /// How many names the file has, inside the tree or not (a link left
    /// in a backup area shows here); 0 for directories.
    pub links: u64,
}

/// A tree with everything the guarantee covers, the root included.
pub type FullSnapshot = BTreeMap<PathBuf, Full>;

pub fn snapshot_full(root: &Path) -> FullSnapshot {
    use std::os::unix::fs::MetadataExt;
    let mut paths = vec![PathBuf::new()];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            paths.push(path.strip_prefix(root).unwrap().to_path_buf());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    paths.sort();
    let mut groups: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for rel in paths {
        let path = root.join(&rel);
        let m = fs::symlink_metadata(&path).unwrap();
        let node = if m.file_type().is_symlink() {
            Node::Symlink(fs::read_link(&path).unwrap())
        } else if m.is_dir() {
            Node::Dir
        } else if m.is_file() {
            Node::File(fs::read(&path).unwrap())
        } else {
            Node::File(format!("special file, type {:o}", m.mode() & 0o170000).into_bytes())
        };
        let group = groups
            .entry((m.dev(), m.ino()))
            .or_insert_with(|| rel.clone())
            .clone();
        out.insert(
            rel,
            Full {
                node,
                mode: m.mode(),
                owner: (m.uid(), m.gid()),
                mtime: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                blocks: if m.is_dir() { 0 } else { m.blocks() },
                xattrs: xattrs(&path),
                link_group: group,
                links: if m.is_dir() { 0 } else { m.nlink() },
            },
        );
    }
    out
}

/// The extended attributes of `path` (not following a symlink), sorted.
pub fn xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return Vec::new();
    };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = names[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let mut value = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap_or(0);
            value.truncate(len);
            (name.to_vec(), value)
        })
        .collect();
    out.sort();
    out
}

/// Asserts two full snapshots are equal, naming what differs.
pub fn assert_same_full(before: &FullSnapshot, after: &FullSnapshot, what: &str) {
    if let Some(diff) = diff_full(before, after, what) {
        panic!("{diff}");
    }
}

/// What differs between two full snapshots, if anything.
pub fn diff_full(before: &FullSnapshot, after: &FullSnapshot, what: &str) -> Option<String> {
    let differing: Vec<String> = before
        .keys()
        .chain(after.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|p| before.get(*p) != after.get(*p))
        .map(|p| {
            let show = |v: Option<&Full>| match v {
                None => "absent".to_string(),
                Some(f) => {
                    let kind = match &f.node {
                        Node::Dir => "dir".to_string(),
                        Node::File(b) => format!("file {}B", b.len()),
                        Node::Symlink(t) => format!("symlink->{}", t.display()),
                    };
                    format!(
                        "{kind} mode {:o} owner {}:{} mtime {} blocks {} xattrs {:?} group {} links {}",
                        f.mode,
                        f.owner.0,
                        f.owner.1,
                        f.mtime,
                        f.blocks,
                        f.xattrs,
                        f.link_group.display(),
                        f.links
                    )
                }
            };
            format!(
                "/{}:\n    before {}\n    after  {}",
                p.display(),
                show(before.get(p)),
                show(after.get(p))
            )
        })
        .collect();
    (!differing.is_empty()).then(|| {
        format!(
            "{what}: {} path(s) differ:\n{}",
            differing.len(),
            differing.join("\n")
        )
    })
}

/// A flow (JSON) with read-write mount `m` whose one step runs the `fsops`
/// test guest with `ops` (descriptor 0 is `/m`), failing after it if `fail`.
pub fn fsops_flow(env: &Env, ops: &serde_json::Value, fail: bool) -> PathBuf {
    fsops_steps(env, std::slice::from_ref(ops), fail)
}

/// Like [`fsops_flow`], with one step per script; with `fail`, the last
/// step fails.
pub fn fsops_steps(env: &Env, scripts: &[serde_json::Value], fail: bool) -> PathBuf {
    let steps: Vec<_> = scripts
        .iter()
        .enumerate()
        .map(|(i, ops)| {
            serde_json::json!({
                "name": format!("script-{i}"),
                "uses": guest("fsops"),
                "mounts": ["m"],
                "with": {"ops": ops, "fail": fail && i + 1 == scripts.len()},
            })
        })
        .collect();
    let flow = serde_json::json!({
        "name": "fsops",
        "mounts": [{"name": "m", "host": "m", "guest": "/m", "access": "read-write"}],
        "steps": steps,
    });
    env.write("flow.json", serde_json::to_string_pretty(&flow).unwrap())
}

/// Sets the access and modification times of `path` itself (not what a
/// symlink points to), any time the filesystem holds: before 1970 too.
pub fn set_mtime(path: &Path, seconds: i64, nanos: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: seconds,
        tv_nsec: nanos,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Gives every entry beneath `root` (and `root`) a distinct old mtime,
/// deepest first, so that a change to any of them shows.
pub fn fix_times(root: &Path) {
    let mut all = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        all.push(dir.clone());
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            } else {
                all.push(p);
            }
        }
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_500_000_000 + i as i64 * 7, 123_456_789);
    }
}

/// Processes whose command line holds `needle` (not the shells that run
/// it: `sh -c '... sleep 1234'`), as "PID: command line".
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && !cmdline.contains("-c") {
                found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Waits up to two minutes for `done`, failing with `what`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits up to five seconds for every process holding `needle` to go.
pub fn assert_gone(needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = processes_with(needle);
        if left.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "still running: {left:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl Env {
    /// Starts `stepback run FLOW` in the background, output discarded, and
    /// returns once a process holding `needle` (a command of the flow's)
    /// runs.
    pub fn spawn_until_running(&self, flow: &Path, needle: &str) -> std::process::Child {
        let child = self
            .command(&["run", flow.to_str().unwrap()], &shared_cache())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting stepback");
        wait_until(needle, || !processes_with(needle).is_empty());
        child
    }
}

impl Run {
    /// The run's id, from the human output's first line.
    pub fn run_id(&self) -> String {
        let out = self.stdout();
        out.split("(run ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap_or_else(|| panic!("no run id in {out}"))
            .to_owned()
    }
}

/// The number environment variable `name` holds (a test's budget, a
/// seed), or `default` when it is unset or not a number.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// README's `examples/deploy-service` copied into `env` (with the webapp
/// release it deploys), `edit` applied to its flow file, and its 1.4.2
/// deployed and running.
pub fn deploy_service(env: &Env, edit: impl Fn(&str) -> String) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for dir in [
        "deploy-service/app",
        "deploy-service/services",
        "deploy-service/db",
        "webapp/dist",
    ] {
        env.mkdir(dir);
    }
    let flow = fs::read_to_string(examples.join("deploy-service/flow.toml")).unwrap();
    env.write("deploy-service/flow.toml", edit(&flow));
    fs::copy(
        examples.join("webapp/dist/webapp-1.4.2.tar.gz"),
        env.path("webapp/dist/webapp-1.4.2.tar.gz"),
    )
    .unwrap();
    env.stepback(&["run", "deploy-service/flow.toml", "--param", "healthy=yes"])
        .expect_code(exit::SUCCESS);
}
