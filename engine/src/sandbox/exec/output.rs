//! A command's output as lines, as they come, with bounded memory: a line
//! longer than [`MAX_LINE`] is cut into pieces, and the tail handed back to
//! the plugin keeps only the last [`MAX_TAIL`] bytes.

use crate::events::LogLevel;
use std::collections::VecDeque;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{ChildStderr, ChildStdout};

/// The longest piece of output kept as one line.
const MAX_LINE: usize = 16 << 10;
/// The most output handed back to the plugin.
pub const MAX_TAIL: usize = 64 << 10;

/// One of a command's output streams, split into lines.
struct Stream<R> {
    reader: Option<R>,
    pending: Vec<u8>,
    level: LogLevel,
}

impl<R: AsyncRead + Unpin> Stream<R> {
    fn new(reader: Option<R>, level: LogLevel) -> Stream<R> {
        Stream {
            reader,
            pending: Vec::new(),
            level,
        }
    }

    /// The next complete line (or cut piece), or what is left at the end.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(text(&line[..end]));
            }
            if self.pending.len() >= MAX_LINE {
                let piece: Vec<u8> = self.pending.drain(..MAX_LINE).collect();
                return Some(text(&piece));
            }
            let reader = self.reader.as_mut()?;
            let mut buf = [0u8; 8192];
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    self.reader = None;
                    if self.pending.is_empty() {
                        return None;
                    }
                    let rest = std::mem::take(&mut self.pending);
                    return Some(text(&rest));
                }
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }
}

fn text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.strip_suffix('\r').unwrap_or(&s).to_owned()
}

/// Standard output and error, line by line, in the order lines complete.
pub struct Lines {
    stdout: Stream<ChildStdout>,
    stderr: Stream<ChildStderr>,
}

impl Lines {
    pub fn new(stdout: Option<ChildStdout>, stderr: Option<ChildStderr>) -> Lines {
        Lines {
            stdout: Stream::new(stdout, LogLevel::Stdout),
            stderr: Stream::new(stderr, LogLevel::Stderr),
        }
    }

    /// The next line of either stream; `None` once both have ended.
    pub async fn next(&mut self) -> Option<(LogLevel, String)> {
        loop {
            let (out_open, err_open) = (self.stdout.reader.is_some(), self.stderr.reader.is_some());
            if !out_open && !err_open && self.stdout.pending.is_empty() && self.stderr.pending.is_empty() {
                return None;
            }
            tokio::select! {
                line = self.stdout.next(), if out_open || !self.stdout.pending.is_empty() => {
                    if let Some(line) = line {
                        return Some((self.stdout.level, line));
                    }
                }
                line = self.stderr.next(), if err_open || !self.stderr.pending.is_empty() => {
                    if let Some(line) = line {
                        return Some((self.stderr.level, line));
                    }
                }
            }
        }
    }
}

/// The last [`MAX_TAIL`] bytes of output, whole lines.
#[derive(Default)]
pub struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    pub fn push(&mut self, line: &str) {
        self.lines.push_back(line.to_owned());
        self.bytes += line.len() + 1;
        while self.bytes > MAX_TAIL {
            let Some(old) = self.lines.pop_front() else { break };
            self.bytes -= old.len() + 1;
        }
    }

    pub fn into_string(self) -> String {
        let mut s = Vec::from(self.lines).join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s
    }
}
