//! Backups that name where they belong.
//!
//! A file moved or hard-linked into the backup area is named
//! `SEQ.CHANGE.MOUNT.PATH`, mount and path percent-encoded. Its directory
//! entry is then an undo record of its own, made by the very rename or link
//! that takes the original away; and on one filesystem, metadata changes
//! reach the disk in the order they were made (ext4 and XFS journal them in
//! order). So the journal record of such a capture need not be synced
//! before the change ([`JournalWriter::append_deferred`]): the next sync
//! makes it durable, and a power cut before that leaves an *orphan*, a
//! backup that no intact record names, which recovery adopts. That saves
//! one `fdatasync` per replaced or deleted file: most of what journaling
//! costs when a release overwrites thousands of files.
//!
//! An orphan is newer than every intact record (a sync after its record
//! would have made that record durable), and undos apply by sequence
//! number, newest first: orphans are undone first, in the reverse of the
//! order they were made.

use super::log::JournalWriter;
use super::record::{Change, Record, UndoOp};
use super::runs::RunDir;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use std::collections::HashSet;
use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::MetadataExt;

/// `.` separates the fields, `/` cannot be in a name, `%` escapes.
const ESCAPED: &AsciiSet = &CONTROLS.add(b'%').add(b'/').add(b'.');

/// The longest file name Linux filesystems take.
const NAME_MAX: usize = 255;

/// The self-describing name of backup `seq`, or `None` when the path is
/// too long for one (its record is then synced the usual way).
pub(super) fn name(seq: u64, change: Change, mount: &str, path: &str) -> Option<String> {
    let change = serde_json::to_value(change).ok()?;
    let name = format!(
        "{seq}.{}.{}.{}",
        change.as_str()?,
        utf8_percent_encode(mount, ESCAPED),
        utf8_percent_encode(path, ESCAPED)
    );
    (name.len() <= NAME_MAX).then_some(name)
}

/// The record a self-describing backup name stands for (without its step).
fn parse(name: &str) -> Option<(u64, Change, String, String)> {
    let decode = |field: &str| Some(percent_decode_str(field).decode_utf8().ok()?.into_owned());
    let mut fields = name.split('.');
    let seq = fields.next()?.parse().ok()?;
    let change = serde_json::from_value(serde_json::Value::String(fields.next()?.to_owned())).ok()?;
    let mount = decode(fields.next()?)?;
    let path = decode(fields.next()?)?;
    fields.next().is_none().then_some((seq, change, mount, path))
}

/// Writes (durably) the records of the run's orphaned backups, and adds
/// them to `records`, so that the rollback, the run's record and a
/// recovery interrupted later all see them. Returns how many there were.
pub fn adopt_orphans(
    run: &RunDir,
    records: &mut Vec<Record>,
    writer: &mut JournalWriter,
) -> io::Result<usize> {
    let entries = match fs::read_dir(run.backup()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let known: HashSet<u64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Undo { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    let step = records
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::Step { index, .. } => Some(*index),
            _ => None,
        })
        .unwrap_or(0);
    let mut orphans = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some((seq, change, mount, path)) = file_name.to_str().and_then(parse) else {
            continue;
        };
        if known.contains(&seq) {
            continue;
        }
        let meta = entry.metadata()?;
        orphans.push((
            seq,
            Record::Undo {
                seq,
                step,
                mount,
                change,
                undo: UndoOp::Saved {
                    path,
                    backup: file_name.to_string_lossy().into_owned(),
                    size: meta.len(),
                    ino: meta.ino(),
                    tree: meta.is_dir(),
                },
            },
        ));
    }
    orphans.sort_by_key(|(seq, _)| *seq);
    let orphans: Vec<Record> = orphans.into_iter().map(|(_, record)| record).collect();
    if !orphans.is_empty() {
        writer.append_all(orphans.iter().cloned())?;
    }
    let adopted = orphans.len();
    records.extend(orphans);
    Ok(adopted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_name_gives_back_what_it_was_made_from() {
        let n = name(42, Change::Replaced, "app.v2", "dir/100%.d/index.html").unwrap();
        assert!(!n.contains('/'), "{n}");
        assert_eq!(
            parse(&n),
            Some((
                42,
                Change::Replaced,
                "app.v2".into(),
                "dir/100%.d/index.html".into()
            ))
        );
        // Plain record-numbered backups (copies) are not orphans.
        assert_eq!(parse("42"), None);
        assert_eq!(name(1, Change::Deleted, "m", &"x".repeat(300)), None);
    }
}
