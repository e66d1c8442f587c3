//! The capture strategies and the recorder's guards, against a real
//! temporary directory and no guest: what each leaves on disk and in the
//! journal when the call it captured succeeded, failed, or never came.

use crate::journal::record::{Record, UndoOp, voided};
use crate::journal::recorder::{Batch, Call, Capture, Entry, NewEntry, SharedRecorder};
use crate::journal::{Durability, Fault, FileId, MountFs, RunDir, RunJournal, RunStore, SpaceReserve};
use cap_std::fs::Dir;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A run journal on mount `m` (in `tmp`, holding `files`), its step 0
/// begun, and the mount's root.
fn begun(tmp: &Path, files: &[(&str, &str)]) -> (Arc<Mutex<RunJournal>>, RunDir, Dir) {
    begun_with(tmp, files, Fault::None)
}

/// [`begun`], with `fault` injected.
fn begun_with(tmp: &Path, files: &[(&str, &str)], fault: Fault) -> (Arc<Mutex<RunJournal>>, RunDir, Dir) {
    let m = tmp.join("m");
    std::fs::create_dir(&m).unwrap();
    for (name, contents) in files {
        std::fs::write(m.join(name), contents).unwrap();
    }
    let m = m.canonicalize().unwrap();
    let run = RunStore::new(&tmp.join("state")).create("r").unwrap();
    let mounts = vec![MountFs::open("m", &m).unwrap()];
    let room = Arc::new(SpaceReserve::new(0));
    let mut journal = RunJournal::begin(
        &run,
        ("f", None),
        String::new(),
        mounts,
        Durability::Strict,
        fault,
        room,
    )
    .unwrap();
    journal.start_step(0, "s", &[]).unwrap();
    let root = Dir::open_ambient_dir(&m, cap_std::ambient_authority()).unwrap();
    (Arc::new(Mutex::new(journal)), run, root)
}

fn entry<'a>(root: &'a Dir, name: &'a str) -> Entry<'a> {
    Entry {
        mount: "m",
        dir: root,
        dir_id: FileId::of(&root.dir_metadata().unwrap()),
        dir_rel: "",
        name,
    }
}

/// The step's records, once it ended: the undo records by number, and
/// those voided.
fn ended(journal: &Arc<Mutex<RunJournal>>, run: &RunDir) -> (Vec<(u64, UndoOp)>, Vec<u64>) {
    journal.lock().unwrap().end_step().unwrap();
    let records = run.records().unwrap();
    let mut void: Vec<u64> = voided(&records).into_iter().collect();
    void.sort();
    let undos = records
        .into_iter()
        .filter_map(|r| match r {
            Record::Undo { seq, undo, .. } => Some((seq, undo)),
            _ => None,
        })
        .collect();
    (undos, void)
}

#[test]
fn a_truncation_moves_the_original_aside_and_a_dropped_call_puts_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, run, root) = begun(tmp.path(), &[("f", "original")]);
    let rec: SharedRecorder = journal.clone();
    let meta = root.symlink_metadata("f").unwrap();
    let (call, capture) = Call::begin(&rec, |r| r.before_truncate(&entry(&root, "f"), &meta)).unwrap();
    // Moved, not copied: the name is free for the new file.
    assert_eq!(capture, Capture::MovedAside);
    assert!(!root.exists("f"));
    drop(call);
    assert_eq!(root.read_to_string("f").unwrap(), "original");
    let (undos, void) = ended(&journal, &run);
    let saved: Vec<u64> = undos
        .iter()
        .filter(|(_, u)| matches!(u, UndoOp::Saved { .. }))
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(saved.len(), 1, "{undos:?}");
    assert!(
        void.contains(&saved[0]),
        "the failed call's record stands: {void:?}"
    );
}

/// Found by review: a failed call whose original could not be put back
/// left the step succeeding with the original in the backup area. Its
/// record stands and the journal says so, for the runner to fail the step.
#[test]
fn a_failed_call_whose_original_cannot_be_put_back_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, run, root) = begun(tmp.path(), &[("f", "original")]);
    let rec: SharedRecorder = journal.clone();
    let meta = root.symlink_metadata("f").unwrap();
    let (call, _) = Call::begin(&rec, |r| r.before_truncate(&entry(&root, "f"), &meta)).unwrap();
    // Another process takes the name with a directory: the move back fails.
    root.create_dir("f").unwrap();
    drop(call);
    let unrestored = journal.lock().unwrap().take_unrestored();
    assert!(
        unrestored.len() == 1 && unrestored[0].contains("putting f back"),
        "{unrestored:?}"
    );
    let (undos, void) = ended(&journal, &run);
    assert!(
        undos
            .iter()
            .any(|(seq, u)| matches!(u, UndoOp::Saved { .. }) && !void.contains(seq)),
        "the record stands for the rollback: {undos:?} {void:?}"
    );
    assert!(journal.lock().unwrap().take_unrestored().is_empty(), "taken once");
}

#[test]
fn what_the_run_made_needs_no_capture_when_it_is_changed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, run, root) = begun(tmp.path(), &[]);
    let rec: SharedRecorder = journal.clone();
    let (call, ()) = Call::begin(&rec, |r| r.before_create(&entry(&root, "new"), NewEntry::File)).unwrap();
    root.write("new", "made").unwrap();
    let id = FileId::of(&root.symlink_metadata("new").unwrap());
    call.succeeded(Some(id), None).unwrap();
    let meta = root.symlink_metadata("new").unwrap();
    let (call, ()) = Call::begin(&rec, |r| r.before_write_open(&entry(&root, "new"), &meta)).unwrap();
    call.succeeded(None, None).unwrap();
    let (undos, void) = ended(&journal, &run);
    assert!(void.is_empty(), "{void:?}");
    let kinds: Vec<&UndoOp> = undos.iter().map(|(_, u)| u).collect();
    assert!(
        matches!(kinds[..], [UndoOp::Times { .. }, UndoOp::Created { .. }]),
        "one create and the directory's time, no copy: {kinds:?}"
    );
}

#[test]
fn a_file_with_two_names_is_copied_once_whichever_name_opens_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, run, root) = begun(tmp.path(), &[("a", "original")]);
    root.hard_link("a", &root, "b").unwrap();
    let rec: SharedRecorder = journal.clone();
    for name in ["a", "b"] {
        let meta = root.symlink_metadata(name).unwrap();
        let (call, ()) = Call::begin(&rec, |r| r.before_write_open(&entry(&root, name), &meta)).unwrap();
        call.succeeded(None, None).unwrap();
    }
    let (undos, _) = ended(&journal, &run);
    let copies = undos
        .iter()
        .filter(|(_, u)| matches!(u, UndoOp::Copied { .. }))
        .count();
    assert_eq!(copies, 1, "{undos:?}");
}

#[test]
fn a_batch_dropped_before_its_sync_voids_what_it_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, run, root) = begun(tmp.path(), &[]);
    let rec: SharedRecorder = journal.clone();
    let mut batch = Batch::new(&rec);
    let seq = batch.move_in(&entry(&root, "x"), 12345, NewEntry::File).unwrap();
    let seq = seq.expect("a move into a directory the run did not make is recorded");
    drop(batch);
    let (_, void) = ended(&journal, &run);
    assert_eq!(void, vec![seq]);
}

#[test]
fn a_synced_batch_voids_only_the_renames_it_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    let (journal, run, root) = begun(tmp.path(), &[]);
    let rec: SharedRecorder = journal.clone();
    let mut batch = Batch::new(&rec);
    let made = batch
        .move_in(&entry(&root, "x"), 1, NewEntry::File)
        .unwrap()
        .unwrap();
    let unmade = batch
        .move_in(&entry(&root, "y"), 2, NewEntry::File)
        .unwrap()
        .unwrap();
    let mut synced = batch.sync().unwrap();
    synced
        .make(made, &mut || {
            root.write("x", "moved in")?;
            Ok(FileId::of(&root.symlink_metadata("x")?))
        })
        .unwrap();
    // A rename made twice, or never recorded, is refused.
    assert!(synced.make(made, &mut || unreachable!()).is_err());
    synced.close().unwrap();
    let (_, void) = ended(&journal, &run);
    assert_eq!(void, vec![unmade]);
}

#[test]
fn a_batched_record_that_fails_leaves_nothing_for_the_next_call() {
    let tmp = tempfile::tempdir().unwrap();
    // The directory's time is record 1; the move's own record, 2, fails.
    let (journal, run, root) = begun_with(tmp.path(), &[], Fault::ErrorAtOp(2, libc::EIO));
    let rec: SharedRecorder = journal.clone();
    let mut batch = Batch::new(&rec);
    assert!(batch.move_in(&entry(&root, "x"), 1, NewEntry::File).is_err());
    drop(batch);
    // The next call (one that records nothing) ends only itself: the
    // failed capture's record of the directory's time is voided, not
    // taken for the next call's.
    let (call, ()) = Call::begin(&rec, |_| Ok(())).unwrap();
    call.succeeded(None, None).unwrap();
    let (undos, void) = ended(&journal, &run);
    assert!(matches!(undos[..], [(1, UndoOp::Times { .. })]), "{undos:?}");
    assert_eq!(void, vec![1]);
}
