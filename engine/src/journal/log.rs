//! The journal file: append-only, one record per line as
//! `CRC32 JSON\n`, synced after every record.
//!
//! A record is acted on only after `append` returns, that is after
//! `fdatasync`; so a crash can leave at most a torn last line, which
//! [`read_journal`] drops: the change it described never happened. The
//! exception, [`JournalWriter::append_deferred`], is for records whose
//! backup names itself ([`super::orphans`]). [`JournalWriter::resume`]
//! cuts a torn tail off before anything is appended after it.

use super::record::Record;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

pub struct JournalWriter {
    file: File,
    /// Bytes written, and how many of them were on stable storage at the
    /// last sync.
    len: u64,
    synced: u64,
    /// Sync after every record (the default) or only at the end of a step
    /// and of the run; see [`crate::journal::Durability`].
    sync_each: bool,
}

/// How hard the journal works to survive a crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every record is on stable storage before its change is made:
    /// survives power loss and kernel crashes.
    #[default]
    Strict,
    /// Records are written before their change but synced only at the end
    /// of each step: survives the engine being killed, not power loss.
    Process,
}

impl JournalWriter {
    /// Creates a new journal and makes its directory entry durable.
    pub fn create(path: &Path) -> io::Result<JournalWriter> {
        let file = OpenOptions::new().append(true).create_new(true).open(path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(JournalWriter {
            file,
            len: 0,
            synced: 0,
            sync_each: true,
        })
    }

    pub fn with_durability(mut self, durability: Durability) -> JournalWriter {
        self.sync_each = durability == Durability::Strict;
        self
    }

    /// Opens a finished journal to add a record (pruning): one known to end
    /// with a whole record, so it need not be read first.
    pub fn open(path: &Path) -> io::Result<JournalWriter> {
        let file = OpenOptions::new().append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(JournalWriter {
            file,
            len,
            synced: len,
            sync_each: true,
        })
    }

    /// Reopens an existing journal to add records (recovery, undo), with
    /// its intact records. A torn tail (power lost mid-write) is cut off
    /// first, so that what is appended can be read back.
    pub fn resume(path: &Path) -> io::Result<(JournalWriter, Vec<Record>)> {
        let file = OpenOptions::new().read(true).append(true).open(path)?;
        let (records, intact) = read_intact(&file)?;
        if file.metadata()?.len() != intact {
            file.set_len(intact)?;
            file.sync_data()?;
        }
        let writer = JournalWriter {
            file,
            len: intact,
            synced: intact,
            sync_each: true,
        };
        Ok((writer, records))
    }

    /// Appends a record and, unless durability is relaxed, waits until it
    /// is on stable storage.
    pub fn append(&mut self, record: &Record) -> io::Result<()> {
        self.write(record)?;
        if self.sync_each { self.sync() } else { Ok(()) }
    }

    /// Appends a record without syncing it, whatever the durability: for
    /// records whose change leaves its own durable trace (a backup that
    /// names itself), made durable by the next sync.
    pub fn append_deferred(&mut self, record: &Record) -> io::Result<()> {
        self.write(record)
    }

    /// Makes what was appended durable where `append` would have, one
    /// sync for a batch of deferred records whose changes follow it (under
    /// [`Durability::Process`] there is nothing to do).
    pub fn sync_batch(&mut self) -> io::Result<()> {
        if self.sync_each { self.sync() } else { Ok(()) }
    }

    /// Appends records that need no individual sync (the final states
    /// written at commit), then syncs once.
    pub fn append_all(&mut self, records: impl IntoIterator<Item = Record>) -> io::Result<()> {
        let mut lines = String::new();
        for record in records {
            lines.push_str(&line(&record)?);
        }
        self.write_bytes(lines.as_bytes())?;
        self.sync()
    }

    /// The journal file, to check the room left on its filesystem.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.synced = self.len;
        Ok(())
    }

    /// For the power-loss test ([`super::Fault`]): drops half of what was
    /// written since the last sync, as a power cut would (the cut usually
    /// tears a record in two).
    pub fn lose_unsynced(&self) -> io::Result<()> {
        self.file.set_len(self.synced + (self.len - self.synced) / 2)
    }

    fn write(&mut self, record: &Record) -> io::Result<()> {
        self.write_bytes(line(record)?.as_bytes())
    }

    /// Appends whole lines or nothing: a write cut short (disk full, I/O
    /// error) is cut back, so that no torn record stands before the
    /// records written after it.
    fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self.file.write_all(bytes) {
            self.file.set_len(self.len)?;
            return Err(e);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// A record as one journal line: `CRC32 JSON\n`.
fn line(record: &Record) -> io::Result<String> {
    let json = serde_json::to_string(record).map_err(io::Error::other)?;
    Ok(format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes())))
}

/// Reads every intact record; stops at the first torn or corrupt line.
pub fn read_journal(path: &Path) -> io::Result<Vec<Record>> {
    Ok(read_intact(&File::open(path)?)?.0)
}

/// The intact records and the length of the file they fill. A line counts
/// only with its newline: a record is acted on only once all of it was
/// written.
fn read_intact(file: &File) -> io::Result<(Vec<Record>, u64)> {
    let mut records = Vec::new();
    let mut intact = 0;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        let Some(text) = line.strip_suffix(b"\n") else {
            break;
        };
        let Some(record) = std::str::from_utf8(text).ok().and_then(parse_line) else {
            break;
        };
        records.push(record);
        intact += n as u64;
    }
    Ok((records, intact))
}

/// The first and the last intact records, reading only the journal's
/// first line and its last few KiB: all that listing runs needs, and runs
/// are listed before every run, however many journals have piled up.
pub fn read_ends(path: &Path) -> io::Result<(Option<Record>, Option<Record>)> {
    const TAIL: u64 = 64 << 10;
    let mut file = BufReader::new(File::open(path)?);
    let mut first_line = String::new();
    file.read_line(&mut first_line)?;
    let first = parse_line(first_line.trim_end_matches('\n'));
    let len = file.get_ref().metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let tail = String::from_utf8_lossy(&tail);
    // Only whole lines: see `read_intact`.
    let complete = &tail[..tail.rfind('\n').map_or(0, |i| i + 1)];
    match complete.lines().rev().find_map(parse_line) {
        Some(last) => Ok((first, Some(last))),
        // A last record longer than the tail: read it all.
        None => Ok((first, read_journal(path)?.pop())),
    }
}

fn parse_line(line: &str) -> Option<Record> {
    let (crc, json) = line.split_once(' ')?;
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(json.as_bytes()) {
        return None;
    }
    serde_json::from_str(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_or_corrupt_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut w = JournalWriter::create(&path).unwrap();
        w.append(&Record::Step {
            index: 0,
            name: "a".into(),
            if_stopped: Vec::new(),
        })
        .unwrap();
        w.append(&Record::Committed).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(read_journal(&path).unwrap().len(), 2);
        text.truncate(text.len() - 3);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            read_journal(&path).unwrap(),
            vec![Record::Step {
                index: 0,
                name: "a".into(),
                if_stopped: Vec::new(),
            }]
        );
        let step = Record::Step {
            index: 0,
            name: "a".into(),
            if_stopped: Vec::new(),
        };
        assert_eq!(read_ends(&path).unwrap(), (Some(step.clone()), Some(step)));
        let flipped = text.replacen("\"a\"", "\"b\"", 1);
        std::fs::write(&path, flipped).unwrap();
        assert!(read_journal(&path).unwrap().is_empty());
    }

    #[test]
    fn resuming_cuts_a_torn_tail_so_that_later_records_can_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut w = JournalWriter::create(&path).unwrap();
        w.append(&Record::RollbackStarted { boot: None }).unwrap();
        w.append(&Record::Undone { seq: 1 }).unwrap();
        drop(w);
        // The last record without its newline is torn too.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.trim_end()).unwrap();
        let (mut w, records) = JournalWriter::resume(&path).unwrap();
        assert_eq!(records, vec![Record::RollbackStarted { boot: None }]);
        w.append(&Record::Committed).unwrap();
        assert_eq!(
            read_journal(&path).unwrap(),
            vec![Record::RollbackStarted { boot: None }, Record::Committed]
        );
    }

    #[test]
    fn the_ends_of_a_long_journal_are_read_from_its_head_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut w = JournalWriter::create(&path).unwrap();
        let step = |index| Record::Step {
            index,
            name: format!("step {index}"),
            if_stopped: Vec::new(),
        };
        w.append_all((0..3000).map(step)).unwrap();
        w.append(&Record::Committed).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 64 << 10);
        assert_eq!(
            read_ends(&path).unwrap(),
            (Some(step(0)), Some(Record::Committed))
        );
        // A last record longer than the tail is still found.
        let long = Record::RolledBack {
            problems: vec!["x".repeat(70 << 10)],
            kept: Vec::new(),
        };
        w.append(&long).unwrap();
        assert_eq!(read_ends(&path).unwrap(), (Some(step(0)), Some(long)));
    }
}
