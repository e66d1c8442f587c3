//! Scripts for the `fsops` test guest (tests/guests/fsops), typed: one
//! script language shared by the fuzzer and the hardening tests (and the
//! others that drive raw `wasi:filesystem` calls), instead of JSON written
//! by hand at each call site, where a misspelt op or field, or a value of
//! the wrong type, is only caught when the guest reads its config.
//!
//! The guest's `Op` enum is the source of truth: this one mirrors it
//! variant for variant and field for field, with the same serde attributes,
//! so that it serializes to what the guest reads. Every field is always
//! written (the defaults the guest fills in are written out: no follow, no
//! flags, one stream, no path), which the guest accepts as it is.

use serde::Serialize;
use serde_json::Value;

/// One call of an `fsops` script. `fd` indexes the guest's descriptor
/// table: `0` is the first mount, and every `open` appends one (a failed
/// one an empty slot).
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, tag = "op")]
pub enum Op {
    Open {
        fd: usize,
        path: String,
        follow: bool,
        /// Any of create, directory, exclusive, truncate.
        oflags: Vec<String>,
        /// Any of read, write, file-integrity-sync, data-integrity-sync,
        /// requested-write-sync, mutate-directory.
        flags: Vec<String>,
    },
    Mkdir {
        fd: usize,
        path: String,
    },
    Symlink {
        fd: usize,
        target: String,
        path: String,
    },
    Link {
        fd: usize,
        follow: bool,
        path: String,
        to_fd: usize,
        to: String,
    },
    Unlink {
        fd: usize,
        path: String,
    },
    Rmdir {
        fd: usize,
        path: String,
    },
    Rename {
        fd: usize,
        path: String,
        to_fd: usize,
        to: String,
    },
    /// The modification time (seconds since the epoch; negative is before
    /// 1970) of `path`, or of the descriptor itself without one.
    SetTimes {
        fd: usize,
        path: Option<String>,
        follow: bool,
        seconds: i64,
    },
    /// `len` bytes of `byte` at `offset`, through `write`.
    Write {
        fd: usize,
        offset: u64,
        len: u64,
        byte: u8,
    },
    /// `count` output streams at `offset` (or appending), `len` bytes of
    /// `byte` written to each without waiting: writes left in flight.
    Stream {
        fd: usize,
        offset: Option<u64>,
        len: u64,
        byte: u8,
        count: u32,
    },
    SetSize {
        fd: usize,
        size: u64,
    },
    Close {
        fd: usize,
    },
    /// Waits (up to a minute) until `path` exists.
    WaitFor {
        fd: usize,
        path: String,
    },
}

fn strings(all: &[&str]) -> Vec<String> {
    all.iter().map(|s| (*s).to_owned()).collect()
}

impl Op {
    /// Opens `path` beneath `fd` with open flags `oflags` and descriptor
    /// flags `flags`, not following a final symlink (see [`Op::follow`]).
    pub fn open(fd: usize, path: impl Into<String>, oflags: &[&str], flags: &[&str]) -> Self {
        Op::Open {
            fd,
            path: path.into(),
            follow: false,
            oflags: strings(oflags),
            flags: strings(flags),
        }
    }

    pub fn mkdir(fd: usize, path: impl Into<String>) -> Self {
        Op::Mkdir {
            fd,
            path: path.into(),
        }
    }

    /// A symlink at `path` beneath `fd` pointing at `target`.
    pub fn symlink(fd: usize, target: impl Into<String>, path: impl Into<String>) -> Self {
        Op::Symlink {
            fd,
            target: target.into(),
            path: path.into(),
        }
    }

    /// A hard link `to` beneath `to_fd` of `path` beneath `fd`, not
    /// following a final symlink (see [`Op::follow`]).
    pub fn link(fd: usize, path: impl Into<String>, to_fd: usize, to: impl Into<String>) -> Self {
        Op::Link {
            fd,
            follow: false,
            path: path.into(),
            to_fd,
            to: to.into(),
        }
    }

    pub fn unlink(fd: usize, path: impl Into<String>) -> Self {
        Op::Unlink {
            fd,
            path: path.into(),
        }
    }

    pub fn rmdir(fd: usize, path: impl Into<String>) -> Self {
        Op::Rmdir {
            fd,
            path: path.into(),
        }
    }

    /// Renames `path` beneath `fd` to `to` beneath `to_fd`.
    pub fn rename(fd: usize, path: impl Into<String>, to_fd: usize, to: impl Into<String>) -> Self {
        Op::Rename {
            fd,
            path: path.into(),
            to_fd,
            to: to.into(),
        }
    }

    /// Sets the access and modification times of `path` beneath `fd`, not following a
    /// final symlink (see [`Op::follow`]).
    pub fn set_times_at(fd: usize, path: impl Into<String>, seconds: i64) -> Self {
        Op::SetTimes {
            fd,
            path: Some(path.into()),
            follow: false,
            seconds,
        }
    }

    /// Sets the access and modification times of what descriptor `fd`
    /// itself is open on.
    pub fn set_times(fd: usize, seconds: i64) -> Self {
        Op::SetTimes {
            fd,
            path: None,
            follow: false,
            seconds,
        }
    }

    /// Writes `len` bytes of `byte` at `offset` through descriptor `fd`.
    pub fn write(fd: usize, offset: u64, len: u64, byte: u8) -> Self {
        Op::Write {
            fd,
            offset,
            len,
            byte,
        }
    }

    /// Starts `count` output streams on `fd` at `offset` (appending with
    /// `None`), each given `len` bytes of `byte` without waiting.
    pub fn stream(fd: usize, offset: Option<u64>, len: u64, byte: u8, count: u32) -> Self {
        Op::Stream {
            fd,
            offset,
            len,
            byte,
            count,
        }
    }

    pub fn set_size(fd: usize, size: u64) -> Self {
        Op::SetSize { fd, size }
    }

    pub fn close(fd: usize) -> Self {
        Op::Close { fd }
    }

    /// Waits until `path` exists beneath `fd`.
    pub fn wait_for(fd: usize, path: impl Into<String>) -> Self {
        Op::WaitFor {
            fd,
            path: path.into(),
        }
    }

    /// The same call, following a final symlink if `follow`: for `open`,
    /// `link` and `set-times`, the calls that take path flags.
    pub fn follow(mut self, follow: bool) -> Self {
        match &mut self {
            Op::Open { follow: f, .. } | Op::Link { follow: f, .. } | Op::SetTimes { follow: f, .. } => {
                *f = follow
            }
            other => panic!("{other:?} takes no path flags"),
        }
        self
    }
}

/// The JSON array of `ops` that the guest reads as its `ops`, as
/// [`crate::support::fsops_flow`] and [`crate::support::fsops_steps`] take it.
pub fn script(ops: &[Op]) -> Value {
    serde_json::to_value(ops).expect("an fsops script serializes")
}
