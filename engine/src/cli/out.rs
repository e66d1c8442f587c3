//! Printing that survives a closed pipe (`stepback show | head -1`):
//! `println!` panics when the reader has gone. A command that only reports
//! (`show`, `validate`, `plugin inspect`) then ends at once, quietly, with
//! the status of a process a broken pipe stopped (128 + SIGPIPE); one that
//! changes the machine (`run`, `recover`, `undo`) goes on without output,
//! since stopping it halfway would leave a run to recover.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP_ON_BROKEN_PIPE: AtomicBool = AtomicBool::new(true);
static GONE: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

/// The command changes the machine: a closed output must not stop it.
pub fn keep_going_on_broken_pipe() {
    STOP_ON_BROKEN_PIPE.store(false, Ordering::Relaxed);
}

/// Writes to stdout (`err`: stderr), handling a closed pipe as above.
pub fn write(err: bool, args: std::fmt::Arguments) {
    let gone = &GONE[usize::from(err)];
    if gone.load(Ordering::Relaxed) {
        return;
    }
    // anstream keeps or strips colours (`style.rs`).
    let written = match err {
        false => anstream::AutoStream::new(std::io::stdout(), super::style::for_stream(false))
            .lock()
            .write_fmt(args),
        true => anstream::AutoStream::new(std::io::stderr(), super::style::for_stream(true))
            .lock()
            .write_fmt(args),
    };
    if let Err(e) = written
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        if STOP_ON_BROKEN_PIPE.load(Ordering::Relaxed) {
            std::process::exit(super::exit::BROKEN_PIPE.into());
        }
        gone.store(true, Ordering::Relaxed);
    }
}

/// `println!` that survives a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::write(false, format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that survives a closed pipe.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::out::write(true, format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, outln};
