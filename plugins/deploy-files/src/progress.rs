//! Progress in files and bytes, reported to the host every few files (a
//! host call per unit per file would cost more than copying a small file).

use stepback_sdk::Context;

pub struct Progress<'a> {
    cx: &'a Context,
    files: u64,
    bytes: u64,
    total_files: Option<u64>,
    total_bytes: Option<u64>,
    /// Files and bytes when last reported.
    reported: (u64, u64),
}

/// Report at least every this many files or bytes, and at the end.
const EVERY_FILES: u64 = 64;
const EVERY_BYTES: u64 = 4 << 20;

impl<'a> Progress<'a> {
    pub fn new(cx: &'a Context) -> Self {
        Progress {
            cx,
            files: 0,
            bytes: 0,
            total_files: None,
            total_bytes: None,
            reported: (0, 0),
        }
    }

    /// Sets the totals found by a first pass over the source.
    pub fn set_totals(&mut self, files: u64, bytes: u64) {
        self.total_files = Some(files);
        self.total_bytes = Some(bytes);
    }

    pub fn file_done(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
        let due = self.files - self.reported.0 >= EVERY_FILES
            || self.bytes - self.reported.1 >= EVERY_BYTES
            || Some(self.files) == self.total_files;
        if due {
            self.reported = (self.files, self.bytes);
            self.cx.progress(self.files, self.total_files, "files");
            self.cx.progress(self.bytes, self.total_bytes, "bytes");
        }
    }

    pub fn files(&self) -> u64 {
        self.files
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
