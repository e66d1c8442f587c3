//! Fault injection for the crash and disk-full tests: crate-private, read
//! from the `STEPBACK_FAULT` environment variable where a run, rollback,
//! undo or recovery starts, and only in a build with the `fault-injection`
//! feature (the default, for the tests). Every form counts journaled
//! operations (or undos) from 1:
//!
//! - `crash-before-op:N`: abort the process once the Nth undo record is
//!   durable, before the change it covers is made;
//! - `power-loss-before-op:N`: the same, after dropping part of what the
//!   journal holds unsynced, as a power cut would (the file system's own
//!   changes stay: the worst case for the journal);
//! - `other-process-before-op:N`: once the Nth undo record is durable,
//!   before its change, run the shell script in `STEPBACK_FAULT_SCRIPT`
//!   and wait for it: another process changing a mount at the worst moment;
//! - `crash-before-undo:N`: abort before applying the Nth undo of a rollback
//!   (of a failed run's, of `recover`'s or of `undo`'s);
//! - `power-loss-before-undo:N`: the same, after dropping what the journal
//!   holds unsynced;
//! - `enospc-at-op:N` / `eio-at-op:N`: fail the Nth capture with "no space
//!   left on device" / an I/O error, as a full or failing disk would;
//! - `eio-at-commit:1`: fail the commit of a run whose steps all succeeded.
//!
//! And `STEPBACK_FAULT_BOOT=ID` makes the engine take `ID` for the boot it
//! runs in, so that a test can recover after a power cut "in another boot"
//! (see [`super::markers`]).

use super::log::JournalWriter;
use std::io;

/// A fault to inject (see the module docs for the forms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    #[default]
    /// No fault: the default.
    None,
    /// Abort once the Nth undo record is durable, before its change.
    CrashBeforeOp(u64),
    /// The same, after dropping what the journal holds unsynced.
    PowerLossBeforeOp(u64),
    /// Run `STEPBACK_FAULT_SCRIPT` once the Nth undo record is durable,
    /// before its change.
    OtherProcessBeforeOp(u64),
    /// Abort before the Nth undo of a rollback.
    CrashBeforeUndo(u64),
    /// The same, after dropping what the journal holds unsynced.
    PowerLossBeforeUndo(u64),
    /// Fail the Nth capture with this errno.
    ErrorAtOp(u64, i32),
    /// Fail the commit of a run whose steps all succeeded.
    ErrorAtCommit,
}

impl Fault {
    /// The environment variable `from_env` reads.
    pub const VAR: &'static str = "STEPBACK_FAULT";

    /// The fault `STEPBACK_FAULT` names; none in a build without the
    /// `fault-injection` feature.
    pub fn from_env() -> Fault {
        if !cfg!(feature = "fault-injection") {
            return Fault::None;
        }
        std::env::var(Self::VAR)
            .ok()
            .and_then(|v| Self::parse(&v))
            .unwrap_or_default()
    }

    fn parse(spec: &str) -> Option<Fault> {
        let (kind, n) = spec.split_once(':')?;
        let n: u64 = n.parse().ok()?;
        Some(match kind {
            "crash-before-op" => Fault::CrashBeforeOp(n),
            "power-loss-before-op" => Fault::PowerLossBeforeOp(n),
            "other-process-before-op" => Fault::OtherProcessBeforeOp(n),
            "crash-before-undo" => Fault::CrashBeforeUndo(n),
            "power-loss-before-undo" => Fault::PowerLossBeforeUndo(n),
            "enospc-at-op" => Fault::ErrorAtOp(n, 28),
            "eio-at-op" => Fault::ErrorAtOp(n, 5),
            "eio-at-commit" if n == 1 => Fault::ErrorAtCommit,
            _ => return None,
        })
    }

    /// Called before capturing journaled operation `n`.
    pub fn before_capture(self, n: u64) -> io::Result<()> {
        match self {
            Fault::ErrorAtOp(at, errno) if at == n => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }

    /// The boot id `STEPBACK_FAULT_BOOT` gives, in a build with fault
    /// injection.
    pub fn boot() -> Option<String> {
        if !cfg!(feature = "fault-injection") {
            return None;
        }
        std::env::var("STEPBACK_FAULT_BOOT").ok()
    }

    /// Called before a run is committed.
    pub fn before_commit(self) -> io::Result<()> {
        match self {
            Fault::ErrorAtCommit => Err(io::Error::from_raw_os_error(5)),
            _ => Ok(()),
        }
    }

    /// Called once operation `n` is captured, before its change.
    pub fn after_record(self, n: u64, journal: &JournalWriter) {
        if self == Fault::PowerLossBeforeOp(n) {
            let _ = journal.lose_unsynced();
            std::process::abort();
        }
        if self == Fault::CrashBeforeOp(n) {
            std::process::abort();
        }
        if self == Fault::OtherProcessBeforeOp(n) {
            let script = std::env::var("STEPBACK_FAULT_SCRIPT").unwrap_or_default();
            let _ = std::process::Command::new("sh").args(["-c", &script]).status();
        }
    }

    /// Called before applying undo `n` of a rollback.
    pub fn before_undo(self, n: u64, journal: &JournalWriter) {
        if self == Fault::PowerLossBeforeUndo(n) {
            let _ = journal.lose_unsynced();
            std::process::abort();
        }
        if self == Fault::CrashBeforeUndo(n) {
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms_only() {
        assert_eq!(Fault::parse("crash-before-op:3"), Some(Fault::CrashBeforeOp(3)));
        assert_eq!(Fault::parse("enospc-at-op:1"), Some(Fault::ErrorAtOp(1, 28)));
        assert_eq!(Fault::parse("crash:1"), None);
        assert_eq!(Fault::parse("crash-before-op:x"), None);
    }
}
