//! A census of what a command's jail leaves it: a probe command reports
//! its capability sets, `NoNewPrivs`, its seccomp mode, the namespaces it
//! is in, its `/dev`, the kernel settings it could write and the
//! namespaces it could make, every mount it can write or open devices on,
//! and every Unix socket of the host's (and three of the test's own) it
//! can connect to, and the report must be exactly the
//! documented one (README, Commands, "The jail") — as root, as root with
//! an engine started holding every capability in its inheritable and
//! ambient sets (which, for root, `execve` would pass on), and without
//! root. A new hole shows as a difference, not as a missing case.

use crate::support::{Env, Run, flow_head, shared_cache};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use stepback::exit;

/// The probe: one `key: value` line per fact, written into the mount
/// (`CENSUS`, replaced by its host path: commands see host paths).
const PROBE: &str = r#"
exec > CENSUS
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | sed 's/:/: /'
for ns in mnt pid ipc uts net; do echo "ns $ns: $(readlink /proc/self/ns/$ns)"; done
echo "dev:" $(ls -A /dev | sort)
for d in /dev/null /dev/zero /dev/full /dev/random /dev/urandom; do [ -c "$d" ] || echo "not a device: $d"; done
head -c 1 /dev/zero | od -An -tx1 | sed 's/^ */zero reads: /'
if (mknod /dev/shm/node b 8 0) 2>/dev/null; then echo "mknod works"; fi
if unshare -U true 2>/dev/null; then echo "a user namespace made"; fi
if unshare -m true 2>/dev/null; then echo "a mount namespace made"; fi
echo "threads:" $(printf 'b\na\n' | sort --parallel=2 -S 1M)
if [ -n "$(ls -A STATE 2>/dev/null)" ]; then echo "state: visible"; else echo "state: hidden"; fi
if chmod 0666 /dev/null 2>/dev/null; then echo "the host's /dev/null changed"; fi
if [ -e /proc/$$/fd/9 ]; then echo "inherited fd 9: $(readlink /proc/$$/fd/9)"; fi
for f in /proc/sys/kernel/hostname /proc/sys/kernel/core_pattern /proc/sysrq-trigger /proc/sys/vm/drop_caches; do
  if (printf x > "$f") 2>/dev/null; then echo "writable: $f"; fi
done
if hostname stepback-probe 2>/dev/null; then echo "hostname set"; fi
python3 -c "import fcntl; fcntl.fcntl(open('/etc/hostname'), fcntl.F_SETLEASE, fcntl.F_RDLCK); print('a lease on /etc/hostname')" 2>/dev/null
awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1); break }
       if ($6 ~ /(^|,)rw(,|$)/) print "writable mount:", $5, t, ($6 ~ /nodev/ ? "nodev" : "DEVICES"), ($6 ~ /nosuid/ ? "nosuid" : "SETUID")
       else if ($6 !~ /nodev/) print "device mount:", $5 }' /proc/self/mountinfo | sed "s|MOUNT_PATH|MOUNT|" | sort
python3 - SOCKETS <<'END'
import errno, resource, socket, sys
print("core limit:", resource.getrlimit(resource.RLIMIT_CORE))
try:
    socket.socket(5, socket.SOCK_DGRAM)  # AppleTalk: a module, where there are modules
    print("an AppleTalk socket made")
except OSError as e:
    print("other families:", errno.errorcode[e.errno])
try:
    socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    print("a datagram pair made")
except OSError as e:
    print("datagram pairs: cannot make one:", e)
socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    socket.socket(socket.AF_UNIX).close()
except OSError as e:
    print("unix sockets: cannot make one:", e)
    sys.exit()
for path in sys.argv[1:]:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        try:
            socket.socket(socket.AF_UNIX, kind).connect(path)
            print("socket reachable:", path)
            break
        except OSError as e:
            if e.errno == errno.EPROTOTYPE:
                continue
            break
END
"#;

/// The capabilities a command keeps (`KEPT_CAPS` in
/// `engine/src/sandbox/exec/namespace.rs`): CHOWN, DAC_OVERRIDE, FOWNER,
/// FSETID, KILL, SETGID, SETUID, NET_BIND_SERVICE.
const KEPT: &str = "00000000000004fb";

/// A state directory outside `/tmp` (which the command's own `/tmp`
/// hides anyway), as an operator's is, for `env`.
fn state_dir(env: &Env) -> PathBuf {
    let name = env.dir.path().file_name().unwrap().to_owned();
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("jail-state")
        .join(name)
}

/// A Unix socket the test listens on; its file (and an emptied
/// directory of `/run` it made) removed when dropped.
pub struct Listening {
    path: PathBuf,
    listener: UnixListener,
}

impl Listening {
    pub fn at(path: PathBuf) -> Listening {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        Listening { path, listener }
    }

    /// How many connections came so far.
    pub fn accepted(&self) -> usize {
        std::iter::from_fn(|| self.listener.accept().ok()).count()
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent().filter(|d| d.starts_with("/run")) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A directory of `/run` of this test process's own.
fn run_dir() -> PathBuf {
    PathBuf::from(format!("/run/stepback-test-{}", std::process::id()))
}

/// Every Unix socket with a path the host has bound (in this network
/// namespace), and three of the test's own: in `/run`, in `/tmp` (beside
/// the mount) and on the disk's filesystem, which the command sees
/// read-only.
fn sockets(env: &Env) -> (Vec<Listening>, Vec<String>) {
    let name = env.dir.path().file_name().unwrap().to_str().unwrap().to_owned();
    let disk = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.sock"));
    let listening = [
        run_dir().join(format!("{name}.sock")),
        env.path("host.sock"),
        disk,
    ]
    .map(Listening::at);
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let mut paths: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter(|p| p.starts_with('/'))
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths.dedup();
    (listening.into(), paths)
}

/// The probe's flow, for a run whose state directory is `state`, and the
/// test's own listening sockets (open while it runs).
fn probe_flow(env: &Env, state: &Path) -> (String, Vec<Listening>) {
    env.mkdir("m");
    let (listeners, paths) = sockets(env);
    let probe = PROBE
        .replace("CENSUS", env.path("m/census").to_str().unwrap())
        .replace("MOUNT_PATH", env.path("m").to_str().unwrap())
        .replace("SOCKETS", &paths.join(" "))
        .replace("STATE", state.to_str().unwrap());
    let flow = format!(
        "{}\n[[steps]]\nname = \"census\"\nuses = \"builtin:run-script\"\nmounts = [\"m\"]\nexec = [\"sh\"]\nwith = {{ interpreter = \"sh\", inline = '''{probe}''' }}\n",
        flow_head("census", &["m"], &[])
    );
    (env.flow(flow).to_str().unwrap().to_owned(), listeners)
}

/// What the probe reported, as lines, after `run` succeeded (its state
/// directory outside the scratch one removed).
fn census(env: &Env, run: &Run) -> Vec<String> {
    let _ = std::fs::remove_dir_all(state_dir(env));
    run.expect_code(exit::SUCCESS);
    let text = std::fs::read_to_string(env.path("m/census")).expect("the probe's report");
    text.lines().map(str::to_owned).collect()
}

/// The report the documentation promises: capabilities `effective` (all
/// of the kept ones as root, none without), no new privileges, a
/// namespace of its own of every kind but the user's, and no kernel
/// setting writable.
fn expected(effective: &str) -> Vec<String> {
    let own = |ns: &str| {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        format!("ns {ns}: not {}", host.display())
    };
    let mut lines = vec![
        "CapInh: 0000000000000000".to_owned(),
        format!("CapPrm: {effective}"),
        format!("CapEff: {effective}"),
        format!("CapBnd: {KEPT}"),
        "CapAmb: 0000000000000000".to_owned(),
        "NoNewPrivs: 1".to_owned(),
        "Seccomp: 2".to_owned(),
    ];
    lines.extend(["mnt", "pid", "ipc", "uts", "net"].map(own));
    lines.push("dev: fd full null ptmx pts random shm stderr stdin stdout tty urandom zero".to_owned());
    lines.push("zero reads: 00".to_owned());
    lines.push("threads: a b".to_owned());
    // Stepback's own state (other runs' journals and backups) is hidden.
    lines.push("state: hidden".to_owned());
    // Device nodes open only in the command's own /dev: the few bound
    // there, and its private devpts's terminals.
    for node in ["full", "null", "random", "tty", "urandom", "zero"] {
        lines.push(format!("device mount: /dev/{node}"));
    }
    // What it can write: its own mounts, each without devices (but the
    // terminals) or set-id programs; the step's overlay.
    lines.extend(
        [
            "/dev/pts devpts DEVICES nosuid",
            "/dev/shm tmpfs nodev nosuid",
            "/run tmpfs nodev nosuid",
            "/tmp tmpfs nodev nosuid",
            "MOUNT overlay nodev nosuid",
        ]
        .map(|m| format!("writable mount: {m}")),
    );
    // No socket of the host's, nor of the test's own (in /run, /tmp, on
    // the disk), is reachable: none is granted.
    // No core dump (a `|program` core pattern would run it on the host).
    lines.push("core limit: (1, 1)".to_owned());
    // No socket of a family whose module the kernel would load.
    lines.push("other families: EPERM".to_owned());
    // A datagram pair could send to any socket's address; a stream pair
    // reaches nothing and is made.
    lines.push("datagram pairs: cannot make one: [Errno 13] Permission denied".to_owned());
    lines.push("unix sockets: cannot make one: [Errno 13] Permission denied".to_owned());
    lines
}

/// The report with each namespace line checked against the host's and
/// rewritten as `ns NAME: not HOST` (the ids themselves vary).
fn normalized(report: Vec<String>) -> Vec<String> {
    report
        .into_iter()
        .map(|line| match line.strip_prefix("ns ") {
            Some(rest) => {
                let (ns, id) = rest.split_once(": ").unwrap();
                let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
                match host.to_str() == Some(id) {
                    true => format!("ns {ns}: the host's {id}"),
                    false => format!("ns {ns}: not {}", host.display()),
                }
            }
            None => line,
        })
        .collect()
}

#[test]
fn a_root_command_holds_only_the_documented_privileges() {
    let env = Env::new();
    let state = state_dir(&env);
    let (flow, _listening) = probe_flow(&env, &state);
    // Started holding a descriptor that does not close on exec (fd 9), as
    // a service manager's socket or a shell's redirection would be.
    let engine = env.command(
        &["--state-dir", state.to_str().unwrap(), "run", &flow],
        &shared_cache(),
    );
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", "exec 9</etc/hostname; exec \"$0\" \"$@\""])
        .arg(engine.get_program())
        .args(engine.get_args())
        .envs(engine.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(env.dir.path());
    let run = Run(sh.output().unwrap());
    assert!(
        state.join("runs").is_dir(),
        "the run's state is in {}",
        state.display()
    );
    assert_eq!(normalized(census(&env, &run)), expected(KEPT));
}

/// An engine started with the capabilities that undo the jail or reach
/// around it inheritable and ambient (a service manager or container
/// runtime can leave them) changes nothing: the jail is built from the
/// grant, not from what the engine holds. (Named, not `+all`: a container
/// may lack some in its bounding set.)
#[test]
fn an_engine_holding_extra_inheritable_and_ambient_capabilities_passes_none_on() {
    let env = Env::new();
    let state = state_dir(&env);
    let (flow, _listening) = probe_flow(&env, &state);
    let caps = "+sys_admin,+dac_read_search,+net_admin,+net_raw,+sys_module,+mknod,+sys_ptrace,\
                +sys_time,+setfcap,+linux_immutable,+bpf,+perfmon,+sys_rawio,+chown";
    let args = ["--state-dir", state.to_str().unwrap(), "run", &flow];
    let run = env.stepback_setpriv(&["--inh-caps", caps, "--ambient-caps", caps], &args);
    assert_eq!(normalized(census(&env, &run)), expected(KEPT));
}

#[test]
fn a_command_without_root_holds_no_privileges() {
    const NOBODY: u32 = 65534;
    let env = Env::new();
    let (flow, _listening) = probe_flow(&env, &env.path("state"));
    let run = env.stepback_as(NOBODY, &["run", &flow]);
    assert_eq!(normalized(census(&env, &run)), expected("0000000000000000"));
}

/// A socket the step grants is the one a command reaches: bound into its
/// private `/run`, where the host's others are not; nothing the command
/// writes there reaches the host's; `show` quotes the grant; and a path
/// that is not a socket is refused at its line.
#[test]
fn a_command_reaches_only_the_sockets_its_step_grants() {
    let env = Env::new();
    env.mkdir("m");
    let name = env.dir.path().file_name().unwrap().to_str().unwrap().to_owned();
    let granted = Listening::at(run_dir().join(format!("{name}-granted.sock")));
    let other = Listening::at(run_dir().join(format!("{name}-other.sock")));
    let script = format!(
        "import socket
for p in ['{}', '{}']:
    try:
        socket.socket(socket.AF_UNIX).connect(p); print('reached', p)
    except OSError as e:
        print('refused', p, e.strerror)
open('/run/written', 'w').write('x')",
        granted.path.display(),
        other.path.display()
    );
    let flow = |sockets: &str| {
        format!(
            "{}\n[[steps]]\nname = \"c\"\nuses = \"builtin:run-command\"\nmounts = [\"m\"]\nexec = [\"python3\"]\n{sockets}\n[steps.with]\nprogram = \"python3\"\nargs = [\"-c\", '''{script}''']\n",
            flow_head("sockets", &["m"], &[])
        )
    };
    let run = env.stepback(&["run", "-v", env.flow(flow("")).to_str().unwrap()]);
    run.expect_code(exit::SUCCESS).expect_stderr(&format!(
        "stdout: refused {} Permission denied",
        granted.path.display()
    ));
    assert_eq!(
        (granted.accepted(), other.accepted()),
        (0, 0),
        "nothing granted, nothing reached"
    );
    assert!(
        !Path::new("/run/written").exists(),
        "the command wrote the host's /run"
    );

    let grant = format!("sockets = [\"{}\"]", granted.path.display());
    let run = env.stepback(&["run", "-v", env.flow(flow(&grant)).to_str().unwrap()]);
    run.expect_code(exit::SUCCESS)
        .expect_stderr(&format!("stdout: reached {}", granted.path.display()))
        .expect_stderr(&format!(
            "stdout: refused {} No such file or directory",
            other.path.display()
        ));
    assert_eq!((granted.accepted(), other.accepted()), (1, 0));
    assert!(
        !Path::new("/run/written").exists(),
        "the command wrote the host's /run"
    );
    env.stepback(&["show", &run.run_id()]).expect_stdout(&format!(
        "COMMANDS REACH: sockets = [\"{}\"]",
        granted.path.display()
    ));

    env.run_flow(&flow("sockets = [\"/etc/hostname\", \"run/x.sock\"]"))
        .expect_code(exit::INVALID_INPUT)
        .expect_stderr("\"/etc/hostname\" is not a Unix socket")
        .expect_stderr("socket \"run/x.sock\" is not an absolute path");
}
