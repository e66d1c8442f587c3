//! Captures a guest's stdout or stderr for the step's log. Output past the
//! cap is dropped and counted rather than failing the guest's write, so a
//! chatty plugin cannot fail a step or exhaust the host's memory.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes kept per stream and step.
const CAP: usize = 1 << 20;

#[derive(Default)]
struct Buffer {
    kept: Vec<u8>,
    dropped: u64,
}

#[derive(Clone, Default)]
pub struct CapturedOutput(Arc<Mutex<Buffer>>);

impl CapturedOutput {
    /// The captured text, one entry per line, with a note if some was dropped.
    pub fn lines(&self) -> Vec<String> {
        let buffer = self.0.lock().expect("output lock");
        let mut lines: Vec<String> = String::from_utf8_lossy(&buffer.kept)
            .lines()
            .map(str::to_owned)
            .collect();
        if buffer.dropped > 0 {
            lines.push(format!("[{} more bytes not kept]", buffer.dropped));
        }
        lines
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut buffer = self.0.lock().expect("output lock");
        let room = CAP.saturating_sub(buffer.kept.len()).min(buf.len());
        buffer.kept.extend_from_slice(&buf[..room]);
        buffer.dropped += (buf.len() - room) as u64;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
