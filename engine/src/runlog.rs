//! What a run reported, kept beside its journal: the events `show RUN`
//! explains a run with (its parameters, what ran, each step's outcome,
//! error, timing and log, the rollback and the actions), replayed as `run`
//! printed them.
//!
//! The journal says how to undo; this says what happened. Each event is a
//! JSON line in the run's `events.jsonl`, written as it is emitted and not
//! synced: after a power cut its tail may be missing (the journal, synced,
//! still holds every change and how the run ended). Log lines and progress
//! are left out as they come: a step's finishing event carries its whole
//! log, bounded by the host.

use crate::events::{Envelope, Event, EventSink};
use crate::journal::RunDir;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A sink that keeps a run's events in its directory and passes them on.
pub struct RunLog {
    file: Mutex<Option<std::fs::File>>,
    next: Arc<dyn EventSink>,
}

/// The file of run `dir`'s events.
fn path(dir: &RunDir) -> PathBuf {
    dir.journal().with_file_name("events.jsonl")
}

impl RunLog {
    /// Keeps the events of run `dir`, and passes them to `next`.
    pub fn create(dir: &RunDir, next: Arc<dyn EventSink>) -> io::Result<RunLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path(dir))?;
        Ok(RunLog {
            file: Mutex::new(Some(file)),
            next,
        })
    }
}

impl EventSink for RunLog {
    fn emit(&self, envelope: Envelope) {
        if !matches!(envelope.event, Event::StepLog { .. } | Event::StepProgress { .. }) {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            let written = file.as_mut().map(|f| {
                let mut line = serde_json::to_vec(&envelope).map_err(io::Error::other)?;
                line.push(b'\n');
                f.write_all(&line)
            });
            if let Some(Err(e)) = written {
                // Said once; the run goes on without its record.
                *file = None;
                self.next.emit(Envelope {
                    event: Event::Warning {
                        message: format!("the run's record of its events stops here: {e}"),
                    },
                    ..envelope.clone()
                });
            }
        }
        self.next.emit(envelope);
    }
}

/// The events run `dir` kept, in order; none for a run of an engine that
/// kept none. A line cut short (a power cut as it was written) ends them.
pub fn read(dir: &RunDir) -> io::Result<Vec<Envelope>> {
    let file = match std::fs::File::open(path(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut events = Vec::new();
    for line in io::BufReader::new(file).lines() {
        match serde_json::from_str(&line?) {
            Ok(envelope) => events.push(envelope),
            Err(_) => break,
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Discard;

    #[test]
    fn a_runs_events_are_kept_but_its_log_lines_and_a_cut_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::journal::RunStore::new(tmp.path()).create("r1").unwrap();
        let log = RunLog::create(&dir, Arc::new(Discard)).unwrap();
        let emitter = crate::events::Emitter::for_run("r1", Arc::new(log));
        emitter.emit(Event::Warning {
            message: "kept".into(),
        });
        emitter.emit(Event::StepLog {
            step: "s".into(),
            level: crate::events::LogLevel::Info,
            message: "not kept".into(),
        });
        std::fs::OpenOptions::new()
            .append(true)
            .open(path(&dir))
            .unwrap()
            .write_all(b"{\"run_id\":\"r1\",\"ti")
            .unwrap();
        let events = read(&dir).unwrap();
        assert_eq!(events.len(), 1);
        assert!(matches!(&events[0].event, Event::Warning { message } if message == "kept"));
        assert_eq!(events[0].run_id.as_deref(), Some("r1"));
    }
}
