//! Where runs are kept: one directory per run under `STATE/runs`, holding
//! its journal and backup area.

use super::log::{read_ends, read_journal};
use super::record::{MountRecord, Record};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A run's directory in the state directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The run's id.
    pub id: String,
    /// Where it is.
    pub path: PathBuf,
}

impl RunDir {
    /// The run's journal.
    pub fn journal(&self) -> PathBuf {
        self.path.join("journal")
    }

    /// The run's backup area.
    pub fn backup(&self) -> PathBuf {
        self.path.join("backup")
    }

    /// Every record of the run's journal, in order.
    pub fn records(&self) -> io::Result<Vec<Record>> {
        read_journal(&self.journal())
    }
}

/// How a run ended, read from its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunState {
    /// No end record: the engine stopped mid-run, mid-rollback or mid-undo.
    Unfinished,
    /// Succeeded; `pruned` once its backups are gone and it can no longer
    /// be undone.
    Committed {
        /// Its backups are gone: it can no longer be undone.
        pruned: bool,
    },
    /// Rolled back (a failed run, or an undone one).
    RolledBack {
        /// How many paths it could not restore.
        problems: usize,
        /// Entries of other processes the rollback moved aside.
        kept: usize,
    },
}

impl RunState {
    /// How a journal's records say the run ended.
    pub fn of(records: &[Record]) -> RunState {
        Self::of_last(records.last())
    }

    /// The state a journal's last record gives.
    pub fn of_last(last: Option<&Record>) -> RunState {
        match last {
            Some(Record::Committed) => RunState::Committed { pruned: false },
            Some(Record::Pruned { .. }) => RunState::Committed { pruned: true },
            Some(Record::RolledBack { problems, kept }) => RunState::RolledBack {
                problems: problems.len(),
                kept: kept.len(),
            },
            _ => RunState::Unfinished,
        }
    }
}

/// A run as `show` lists it.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Its directory.
    pub dir: RunDir,
    /// The flow's name.
    pub flow: String,
    /// When it started, RFC 3339.
    pub started: String,
    /// Its read-write mounts.
    pub mounts: Vec<MountRecord>,
    /// The application and version it deploys, if its flow says.
    pub app: Option<super::App>,
    /// How it ended.
    pub state: RunState,
}

/// The runs kept in a state directory.
pub struct RunStore {
    root: PathBuf,
}

impl RunStore {
    /// The runs in `state_dir`.
    pub fn new(state_dir: &Path) -> RunStore {
        RunStore {
            root: state_dir.join("runs"),
        }
    }

    /// Creates the directory of a new run, durably.
    pub fn create(&self, id: &str) -> io::Result<RunDir> {
        fs::create_dir_all(&self.root)?;
        let path = self.root.join(id);
        fs::create_dir(&path)?;
        fs::create_dir(path.join("backup"))?;
        fs::File::open(&path)?.sync_all()?;
        fs::File::open(&self.root)?.sync_all()?;
        Ok(RunDir {
            id: id.to_owned(),
            path,
        })
    }

    /// Run `id`, if there is one.
    pub fn get(&self, id: &str) -> Option<RunDir> {
        let path = self.root.join(id);
        (!id.contains('/') && path.join("journal").is_file()).then(|| RunDir {
            id: id.to_owned(),
            path,
        })
    }

    /// The run `id` names: its id, a prefix of only its id, or `last` (the
    /// newest run). `Err` with the ids that match, none or several.
    pub fn find(&self, id: &str) -> io::Result<Result<RunDir, Vec<String>>> {
        if let Some(dir) = self.get(id) {
            return Ok(Ok(dir));
        }
        let ids = self.ids()?;
        let matching: Vec<String> = match id {
            "last" => ids.last().cloned().into_iter().collect(),
            _ => ids.into_iter().filter(|i| i.starts_with(id)).collect(),
        };
        Ok(match &matching[..] {
            [one] => self.get(one).ok_or_else(|| matching.clone()),
            _ => Err(matching),
        })
    }

    /// The ids of every run with a journal, oldest first.
    fn ids(&self) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let id = entry?.file_name().to_string_lossy().into_owned();
            if self.get(&id).is_some() {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Every run with a journal, oldest first (run ids sort by time).
    pub fn list(&self) -> io::Result<Vec<RunSummary>> {
        let mut runs = Vec::new();
        for id in self.ids()? {
            let Some(dir) = self.get(&id) else { continue };
            let (first, last) = read_ends(&dir.journal())?;
            let (flow, started, mounts, app) = match first {
                Some(Record::Begin {
                    flow,
                    started,
                    mounts,
                    app,
                    ..
                }) => (flow, started, mounts, app),
                _ => Default::default(),
            };
            runs.push(RunSummary {
                app,
                state: RunState::of_last(last.as_ref()),
                dir,
                flow,
                started,
                mounts,
            });
        }
        Ok(runs)
    }

    /// The runs that have no end record (a crash, or running now).
    pub fn unfinished(&self) -> io::Result<Vec<RunSummary>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| r.state == RunState::Unfinished)
            .collect())
    }
}
