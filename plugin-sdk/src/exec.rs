//! Running programs from a step: the flow lists the programs a step may
//! run (`exec = [...]`); the host runs them natively and journals the
//! changes they make to the step's mounts, so that a failed flow reverses
//! them like any other.

use crate::bindings::stepback::plugin::exec as wit;
use std::time::Duration;

/// A program to run, built up and then [`Command::run`].
///
/// ```no_run
/// # fn f() -> Result<(), stepback_sdk::Error> {
/// use stepback_sdk::exec::Command;
/// let done = Command::new("systemctl").args(["restart", "app"]).run()?;
/// if !done.success() {
///     return Err(stepback_sdk::Error::new(format!("systemctl exited with {}", done.code())));
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Command {
    inner: wit::Command,
}

impl Command {
    /// A program of the step's grant, by the name the flow gives it or its
    /// absolute path.
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            inner: wit::Command {
                program: program.into(),
                args: Vec::new(),
                env: Vec::new(),
                cwd: None,
                stdin: None,
                timeout_ms: None,
            },
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.inner.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable (the command starts with only `PATH`,
    /// `HOME` and `LANG`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.env.push((key.into(), value.into()));
        self
    }

    /// Runs it in `dir`, a guest path inside one of the step's mounts
    /// (by default: the first mount's root).
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.inner.cwd = Some(dir.into());
        self
    }

    /// Writes `input` to its standard input.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.inner.stdin = Some(input.into());
        self
    }

    /// Kills it, and all it started, after `timeout` (by default: when the
    /// step's own time limit is up). Its file changes are then discarded.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.inner.timeout_ms = Some(timeout.as_millis().min(u64::MAX as u128) as u64);
        self
    }

    /// Runs it to the end. Its output goes to the step's log line by line
    /// as it comes; its changes to the step's mounts are applied (and
    /// journaled) once it has exited.
    pub fn run(&self) -> Result<Completion, crate::Error> {
        wit::run(&self.inner).map(Completion).map_err(|e| {
            let message = match e {
                wit::ExecError::NotGranted(m)
                | wit::ExecError::Invalid(m)
                | wit::ExecError::SpawnFailed(m)
                | wit::ExecError::ApplyFailed(m) => m,
            };
            crate::Error::new(format!("{}: {message}", self.inner.program))
        })
    }
}

/// Where commands find what the step sees at `guest_path` (commands see
/// mounts at their host paths); `None` outside every mount. For arguments
/// that name files of the step's mounts.
pub fn host_path(guest_path: &str) -> Option<String> {
    wit::host_path(guest_path)
}

/// A command that ran.
#[derive(Debug, Clone)]
pub struct Completion(wit::Completion);

impl Completion {
    /// Its exit code (128 + N when signal N killed it); `-1` if it timed out.
    pub fn code(&self) -> i32 {
        match self.0.status {
            wit::Status::Exited(code) => code,
            wit::Status::TimedOut => -1,
        }
    }

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self.0.status, wit::Status::Exited(0))
    }

    /// Whether its timeout passed (it was killed, its changes discarded).
    pub fn timed_out(&self) -> bool {
        matches!(self.0.status, wit::Status::TimedOut)
    }

    /// The last lines of its output (at most 64 KiB).
    pub fn output_tail(&self) -> &str {
        &self.0.output_tail
    }

    /// How many changes to the step's mounts it made (applied and journaled).
    pub fn changes(&self) -> u64 {
        self.0.changes
    }
}

/// When a command counts as done: the exit codes accepted, and how often
/// to try again (a health check waiting for a service to come up).
#[derive(Debug, Clone)]
pub struct Expect {
    /// Exit codes that mean success.
    pub accept: Vec<i32>,
    /// Further attempts after a failed one (a rejected code or a timeout).
    pub retries: u32,
    /// Time between attempts.
    pub delay: Duration,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            accept: vec![0],
            retries: 0,
            delay: Duration::from_secs(1),
        }
    }
}

impl Command {
    /// Runs it until it exits with an accepted code, at most
    /// `1 + expect.retries` times; each failed attempt is logged. The error
    /// of the last attempt carries its output tail.
    pub fn run_expecting(&self, expect: &Expect, cx: &crate::Context) -> Result<Completion, crate::Error> {
        let attempts = expect.retries.saturating_add(1);
        let mut attempt = 1;
        loop {
            let done = self.run()?;
            if !done.timed_out() && expect.accept.contains(&done.code()) {
                return Ok(done);
            }
            let what = match done.timed_out() {
                true => "timed out".to_owned(),
                false => format!("exited with {}", done.code()),
            };
            if attempt >= attempts {
                let tried = match attempts {
                    1 => String::new(),
                    n => format!(" (attempt {n} of {n})"),
                };
                return Err(crate::Error::new(format!("{} {what}{tried}", self.inner.program))
                    .with_details(done.output_tail().to_owned()));
            }
            cx.warn(format!(
                "{} {what} (attempt {attempt} of {attempts}); trying again in {:?}",
                self.inner.program, expect.delay
            ));
            std::thread::sleep(expect.delay);
            attempt += 1;
        }
    }
}
