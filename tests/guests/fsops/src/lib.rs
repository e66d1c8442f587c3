//! A plugin that makes raw `wasi:filesystem` calls from a script, for the
//! engine's tests: each call's path and flags reach the host exactly as
//! written (`.`, `..`, empty and trailing-slash paths, any flag set), with
//! no libc in between. The hardening tests replay the attacks they guard
//! against with it, and the fuzzer feeds it random scripts.
//!
//! Descriptors live in a table: index `i < preopens` is the `i`th mount in
//! the order the host lists them; every `open` that succeeds appends one
//! (a failed one appends an empty slot, so indices stay predictable).
//! Calls that fail are logged and the script goes on; descriptors and
//! streams stay open until a `close` or the end of the step.

use serde::Deserialize;
use stepback_sdk::{Context, Error, Info, Outcome, Step};
use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, NewTimestamp, OpenFlags, PathFlags};
use wasip2::io::streams::OutputStream;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    ops: Vec<Op>,
    /// Fail the step after the script, so that the flow rolls back.
    #[serde(default)]
    fail: bool,
}

#[derive(Deserialize, schemars::JsonSchema, Debug)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, tag = "op")]
enum Op {
    Open {
        fd: usize,
        path: String,
        #[serde(default)]
        follow: bool,
        /// Any of create, directory, exclusive, truncate.
        #[serde(default)]
        oflags: Vec<String>,
        /// Any of read, write, file-integrity-sync, data-integrity-sync,
        /// requested-write-sync, mutate-directory.
        #[serde(default)]
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
        #[serde(default)]
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
    /// Sets the access and modification times (seconds since the epoch;
    /// negative is before 1970) of `path`, or of the descriptor itself
    /// without one, as `touch` does.
    SetTimes {
        fd: usize,
        path: Option<String>,
        #[serde(default)]
        follow: bool,
        seconds: i64,
    },
    /// Writes `len` bytes of `byte` at `offset` through `write`.
    Write {
        fd: usize,
        offset: u64,
        len: u64,
        byte: u8,
    },
    /// Starts `count` output streams at `offset` (or appending), writing
    /// `len` bytes of `byte` to each without waiting: writes left in flight.
    Stream {
        fd: usize,
        offset: Option<u64>,
        len: u64,
        byte: u8,
        #[serde(default = "one")]
        count: u32,
    },
    SetSize {
        fd: usize,
        size: u64,
    },
    Close {
        fd: usize,
    },
    /// Waits (up to a minute) until `path` exists: lets a test change the
    /// mount from outside while the step runs.
    WaitFor {
        fd: usize,
        path: String,
    },
}

fn one() -> u32 {
    1
}

struct FsOps;

impl Step for FsOps {
    type Config = Config;

    fn info() -> Info {
        Info::new(
            "fsops",
            "0.0.0",
            "Makes raw wasi:filesystem calls from a script, for tests.",
        )
    }

    fn run(config: Config, cx: &Context) -> Result<Outcome, Error> {
        let mut fds: Vec<Option<Descriptor>> = get_directories().into_iter().map(|(d, _)| Some(d)).collect();
        let mut streams: Vec<OutputStream> = Vec::new();
        let mut failed = 0;
        for (i, op) in config.ops.iter().enumerate() {
            let result = apply(op, &mut fds, &mut streams);
            if let Err(e) = &result {
                failed += 1;
                cx.info(format!("op {i} {op:?}: {e:?}"));
            }
        }
        let summary = format!("{} calls, {failed} failed", config.ops.len());
        if config.fail {
            return Err(Error::new(format!("{summary}; failing on purpose")));
        }
        Ok(Outcome::summary(summary))
    }
}

fn get(fds: &[Option<Descriptor>], fd: usize) -> Result<&Descriptor, ErrorCode> {
    fds.get(fd)
        .and_then(Option::as_ref)
        .ok_or(ErrorCode::BadDescriptor)
}

fn path_flags(follow: bool) -> PathFlags {
    if follow {
        PathFlags::SYMLINK_FOLLOW
    } else {
        PathFlags::empty()
    }
}

fn apply(
    op: &Op,
    fds: &mut Vec<Option<Descriptor>>,
    streams: &mut Vec<OutputStream>,
) -> Result<(), ErrorCode> {
    match op {
        Op::Open {
            fd,
            path,
            follow,
            oflags,
            flags,
        } => {
            let mut o = OpenFlags::empty();
            for f in oflags {
                o |= match f.as_str() {
                    "create" => OpenFlags::CREATE,
                    "directory" => OpenFlags::DIRECTORY,
                    "exclusive" => OpenFlags::EXCLUSIVE,
                    "truncate" => OpenFlags::TRUNCATE,
                    _ => return Err(ErrorCode::Invalid),
                };
            }
            let mut d = DescriptorFlags::empty();
            for f in flags {
                d |= match f.as_str() {
                    "read" => DescriptorFlags::READ,
                    "write" => DescriptorFlags::WRITE,
                    "file-integrity-sync" => DescriptorFlags::FILE_INTEGRITY_SYNC,
                    "data-integrity-sync" => DescriptorFlags::DATA_INTEGRITY_SYNC,
                    "requested-write-sync" => DescriptorFlags::REQUESTED_WRITE_SYNC,
                    "mutate-directory" => DescriptorFlags::MUTATE_DIRECTORY,
                    _ => return Err(ErrorCode::Invalid),
                };
            }
            match get(fds, *fd).and_then(|dir| dir.open_at(path_flags(*follow), path, o, d)) {
                Ok(opened) => {
                    fds.push(Some(opened));
                    Ok(())
                }
                Err(e) => {
                    fds.push(None);
                    Err(e)
                }
            }
        }
        Op::Mkdir { fd, path } => get(fds, *fd)?.create_directory_at(path),
        Op::Symlink { fd, target, path } => get(fds, *fd)?.symlink_at(target, path),
        Op::Link {
            fd,
            follow,
            path,
            to_fd,
            to,
        } => get(fds, *fd)?.link_at(path_flags(*follow), path, get(fds, *to_fd)?, to),
        Op::Unlink { fd, path } => get(fds, *fd)?.unlink_file_at(path),
        Op::Rmdir { fd, path } => get(fds, *fd)?.remove_directory_at(path),
        Op::Rename { fd, path, to_fd, to } => get(fds, *fd)?.rename_at(path, get(fds, *to_fd)?, to),
        Op::SetTimes {
            fd,
            path,
            follow,
            seconds,
        } => {
            let when = NewTimestamp::Timestamp(wasip2::clocks::wall_clock::Datetime {
                seconds: *seconds as u64,
                nanoseconds: 0,
            });
            let d = get(fds, *fd)?;
            match path {
                Some(p) => d.set_times_at(path_flags(*follow), p, when, when),
                None => d.set_times(when, when),
            }
        }
        Op::Write {
            fd,
            offset,
            len,
            byte,
        } => get(fds, *fd)?
            .write(&vec![*byte; *len as usize], *offset)
            .map(drop),
        Op::Stream {
            fd,
            offset,
            len,
            byte,
            count,
        } => {
            let d = get(fds, *fd)?;
            for _ in 0..*count {
                let stream = match offset {
                    Some(o) => d.write_via_stream(*o)?,
                    None => d.append_via_stream()?,
                };
                let mut left = *len;
                while left > 0 {
                    let room = stream.check_write().map_err(|_| ErrorCode::Io)?;
                    if room == 0 {
                        break; // in flight: leave it so
                    }
                    let n = room.min(left);
                    stream
                        .write(&vec![*byte; n as usize])
                        .map_err(|_| ErrorCode::Io)?;
                    left -= n;
                }
                streams.push(stream);
            }
            Ok(())
        }
        Op::SetSize { fd, size } => get(fds, *fd)?.set_size(*size),
        Op::WaitFor { fd, path } => {
            for _ in 0..3000 {
                match get(fds, *fd)?.stat_at(PathFlags::empty(), path) {
                    Ok(_) => return Ok(()),
                    Err(ErrorCode::NoEntry) => {
                        wasip2::clocks::monotonic_clock::subscribe_duration(20_000_000).block()
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(ErrorCode::NoEntry)
        }
        Op::Close { fd } => match fds.get_mut(*fd) {
            Some(slot) => {
                slot.take();
                Ok(())
            }
            None => Err(ErrorCode::BadDescriptor),
        },
    }
}

stepback_sdk::export_step!(FsOps);
