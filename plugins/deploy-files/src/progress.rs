//! Progress in files and bytes, reported to the host after each file.

use stepback_sdk::Context;

pub struct Progress<'a> {
    cx: &'a Context,
    files: u64,
    bytes: u64,
    total_files: Option<u64>,
    total_bytes: Option<u64>,
}

impl<'a> Progress<'a> {
    pub fn new(cx: &'a Context) -> Self {
        Progress {
            cx,
            files: 0,
            bytes: 0,
            total_files: None,
            total_bytes: None,
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
        self.cx.progress(self.files, self.total_files, "files");
        self.cx.progress(self.bytes, self.total_bytes, "bytes");
    }

    pub fn files(&self) -> u64 {
        self.files
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
