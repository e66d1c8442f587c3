//! SHA-256 check of the source, done before anything is written.

use crate::io::{At, READ_BUFFER};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use stepback_sdk::{Error, ResultExt};

pub fn verify(path: &Path, expected: &str) -> Result<(), Error> {
    let file = File::open(path).context(format!("opening {}", path.display()))?;
    let mut file = BufReader::with_capacity(READ_BUFFER, At::new(file));
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).context(format!("reading {}", path.display()))?;
    let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(Error::new(format!(
            "sha256 mismatch for {}: expected {expected}, got {actual}",
            path.display()
        )))
    }
}
