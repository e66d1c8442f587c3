//! The start of a run: nothing left to recover, the mounts locked for it
//! (waiting for another flow where asked), pinned as they are now, and the
//! journal begun, with the run's events kept beside it.

use super::journaled::Journaled;
use super::{RunError, RunOptions};
use crate::events::{Emitter, Event, EventSink};
use crate::flow::Plan;
use crate::grant::{Access, Mount};
use crate::journal::{MountFs, MountLocks};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A run that may start changing its mounts.
pub(super) struct Begun<'p> {
    pub run_id: String,
    /// The flow's read-write mounts.
    pub writable: Vec<&'p Mount>,
    /// Held until the run ends.
    pub _locks: MountLocks,
    pub pinned: Pinned,
    pub journal: Option<Journaled>,
    /// Where the run's events go: `sink`, and its event log.
    pub sink: Arc<dyn EventSink>,
}

/// Begins a run of `plan`, its events to `sink`.
pub(super) async fn begin<'p>(
    plan: &'p Plan,
    options: &RunOptions,
    sink: Arc<dyn EventSink>,
) -> Result<Begun<'p>, RunError> {
    crate::state::ensure_private(&options.state_dir).map_err(RunError::Journal)?;
    let pending = crate::recovery::abandoned(&options.state_dir).map_err(RunError::Journal)?;
    if !pending.is_empty() {
        return Err(RunError::NeedsRecovery { runs: pending });
    }
    let run_id = new_run_id();
    let writable: Vec<&Mount> = plan
        .mounts
        .iter()
        .filter(|m| m.access == Access::ReadWrite)
        .collect();
    let holder = format!(
        "run {run_id} of flow '{}' (pid {})",
        plan.name,
        std::process::id()
    );
    let lock_list: Vec<_> = writable
        .iter()
        .map(|m| (m.name.clone(), m.host.clone()))
        .collect();
    let events = Emitter::for_run(&run_id, sink.clone());
    let locks = lock_mounts(options, &lock_list, &holder, &events).await?;
    let pinned = pin(&plan.mounts).map_err(RunError::Journal)?;
    let journal = match options.journal {
        true => Some(Journaled::open(&run_id, plan, &writable, options).map_err(RunError::Journal)?),
        false => None,
    };
    let sink = keep_events(journal.as_ref(), sink, &events);
    Ok(Begun {
        run_id,
        writable,
        _locks: locks,
        pinned,
        journal,
        sink,
    })
}

/// The run's events, kept with its journal for `show RUN` (said in a
/// warning where they cannot be).
fn keep_events(
    journal: Option<&Journaled>,
    sink: Arc<dyn EventSink>,
    events: &Emitter,
) -> Arc<dyn EventSink> {
    match journal.map(|j| crate::runlog::RunLog::create(&j.dir, sink.clone())) {
        Some(Ok(log)) => Arc::new(log),
        Some(Err(e)) => {
            events.emit(Event::Warning {
                message: format!("the run's events are not kept for `show`: {e}"),
            });
            sink
        }
        None => sink,
    }
}

/// Locks `mounts` for the run `holder` names, waiting as long as
/// `options.wait` says for those another flow holds (said once, in a
/// warning), unless the run is cancelled meanwhile.
async fn lock_mounts(
    options: &RunOptions,
    mounts: &[(String, std::path::PathBuf)],
    holder: &str,
    events: &Emitter,
) -> Result<MountLocks, RunError> {
    let deadline = options.wait.map(|wait| Instant::now().checked_add(wait));
    let mut said = false;
    loop {
        let in_use = match MountLocks::acquire(&options.state_dir, mounts, holder) {
            Ok(locks) => return Ok(locks),
            Err(e) => match crate::journal::InUse::of(&e) {
                Some(in_use) => in_use,
                None => return Err(RunError::Journal(e)),
            },
        };
        let waiting = match deadline {
            None => false,
            Some(None) => true,
            Some(Some(deadline)) => Instant::now() < deadline,
        };
        if !waiting || options.cancel.is_cancelled() {
            return Err(RunError::Busy(in_use));
        }
        if !said {
            said = true;
            events.emit(Event::Warning {
                message: format!("waiting: {in_use}"),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A mount's directory as the run opened it when it started: its
/// identity, and the open directory every step's preopen is made from.
pub(super) type Pinned = std::collections::HashMap<String, (crate::journal::FileId, Arc<std::fs::File>)>;

/// Opens every mount's directory when the run starts, following no
/// symlink: every step must find the same directories (a mount replaced by
/// another directory, or by a symlink, between steps would escape the
/// journal), and each step's preopen is this very directory.
pub(super) fn pin(mounts: &[Mount]) -> anyhow::Result<Pinned> {
    mounts
        .iter()
        .map(|m| {
            let fs = MountFs::open(&m.name, &m.host)?;
            Ok((m.name.clone(), (fs.id, Arc::new(fs.dir.into_std_file()))))
        })
        .collect()
}

/// A sortable, unique-enough id: UTC time to the millisecond, then the low bits
/// of the nanoseconds and the process id.
fn new_run_id() -> String {
    let now = SystemTime::now();
    let stamp: String = humantime::format_rfc3339_millis(now)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let nanos = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{stamp}-{:04x}", (nanos ^ std::process::id()) & 0xffff)
}
