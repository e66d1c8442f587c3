//! Output streams on files that write while the guest waits.
//!
//! wasmtime-wasi's file streams hand each write to a background thread
//! and return at once, so a guest that opens many streams and never waits
//! leaves writes in flight after its step has ended, during and after the
//! rollback of its mount. These streams write before `write` returns (the
//! step's thread may block on file I/O: see
//! `WasiCtxBuilder::allow_blocking_current_thread`), so when a step is
//! over, so are its writes.

use crate::journal::SpaceReserve;
use bytes::Bytes;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// How much one `write` may carry, as wasmtime-wasi's own file streams.
const CAPACITY: usize = 64 << 10;

pub(super) struct FileStream {
    file: Arc<File>,
    /// The free-space reserve each write must leave.
    room: Option<Arc<SpaceReserve>>,
    /// Where the next write goes; `None`: at the end (append).
    position: Option<u64>,
    state: State,
}

enum State {
    Open,
    /// The last write failed; reported by the next call, then closed.
    Failed(io::Error),
    Closed,
}

impl FileStream {
    pub(super) fn at(file: Arc<File>, position: u64, room: Option<Arc<SpaceReserve>>) -> FileStream {
        FileStream {
            file,
            room,
            position: Some(position),
            state: State::Open,
        }
    }

    pub(super) fn append(file: Arc<File>, room: Option<Arc<SpaceReserve>>) -> FileStream {
        FileStream {
            file,
            room,
            position: None,
            state: State::Open,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(room) = &self.room {
            room.check(&*self.file, bytes.len() as u64)?;
        }
        match &mut self.position {
            Some(p) => {
                self.file.write_all_at(bytes, *p)?;
                *p += bytes.len() as u64;
                Ok(())
            }
            // The descriptor was opened without O_APPEND (WASI has no such
            // open flag), so appending is a write at the current end.
            None => {
                let end = self.file.metadata()?.len();
                self.file.write_all_at(bytes, end)
            }
        }
    }

    /// Reports a failure once, then the stream is closed.
    fn check(&mut self) -> StreamResult<()> {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Open => {
                self.state = State::Open;
                Ok(())
            }
            State::Failed(e) => Err(StreamError::LastOperationFailed(e.into())),
            State::Closed => Err(StreamError::Closed),
        }
    }
}

#[async_trait::async_trait]
impl OutputStream for FileStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.check()?;
        if let Err(e) = self.write_all(&bytes) {
            self.state = State::Failed(e);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.check()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.check().map(|()| CAPACITY)
    }
}

#[async_trait::async_trait]
impl Pollable for FileStream {
    /// Always ready: nothing is ever in flight.
    async fn ready(&mut self) {}
}
