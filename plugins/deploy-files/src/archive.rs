//! Extraction of tar (optionally gzipped) and zip archives, in two passes:
//! plan and check every entry, then write.

use crate::io::{At, READ_BUFFER};
use crate::progress::Progress;
use crate::safe_path::{check_not_through, check_symlink, entry_path};
use crate::tree::{prepare_slot, symlink, write_file};
use flate2::read::GzDecoder;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use stepback_sdk::{Error, ResultExt};

enum Kind {
    Dir,
    File,
    Symlink(PathBuf),
    HardLink(PathBuf),
}

/// One checked entry, relative to the destination.
struct Planned {
    path: PathBuf,
    kind: Kind,
    size: u64,
}

/// Checks a whole archive's entries before anything is written.
#[derive(Default)]
struct Plan {
    entries: Vec<Planned>,
    symlinks: Vec<PathBuf>,
    files: u64,
    bytes: u64,
}

impl Plan {
    fn add(&mut self, name: &Path, kind: Kind, size: u64) -> Result<(), Error> {
        let path = entry_path(name)?;
        check_not_through(&path, &self.symlinks)?;
        match &kind {
            Kind::Symlink(target) => {
                check_symlink(&path, target)?;
                self.symlinks.push(path.clone());
            }
            Kind::HardLink(target) => {
                entry_path(target)?;
            }
            Kind::File => {
                self.files += 1;
                self.bytes += size;
            }
            Kind::Dir => {}
        }
        self.entries.push(Planned { path, kind, size });
        Ok(())
    }
}

fn open_tar(path: &Path, gzip: bool) -> Result<tar::Archive<Box<dyn Read>>, Error> {
    let file = File::open(path).context(format!("opening {}", path.display()))?;
    let file = BufReader::with_capacity(READ_BUFFER, At::new(file));
    let reader: Box<dyn Read> = if gzip {
        Box::new(GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(tar::Archive::new(reader))
}

pub fn extract_tar(archive: &Path, dest: &Path, gzip: bool, progress: &mut Progress) -> Result<(), Error> {
    let bad = |e: std::io::Error| Error::new(format!("reading archive {}: {e}", archive.display()));
    let mut plan = Plan::default();
    let mut reader = open_tar(archive, gzip)?;
    for entry in reader.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.into_owned();
        let link = || -> Result<PathBuf, Error> {
            Ok(entry
                .link_name()
                .map_err(bad)?
                .ok_or_else(|| Error::new(format!("link entry {} has no target", name.display())))?
                .into_owned())
        };
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink(link()?),
            tar::EntryType::Link => Kind::HardLink(link()?),
            other => {
                return Err(Error::new(format!(
                    "archive entry {} has unsupported type {other:?}",
                    name.display()
                )));
            }
        };
        plan.add(&name, kind, entry.size())?;
    }
    progress.set_totals(plan.files, plan.bytes);

    fs::create_dir_all(dest).context(format!("creating {}", dest.display()))?;
    let mut reader = open_tar(archive, gzip)?;
    for (entry, planned) in reader.entries().map_err(bad)?.zip(&plan.entries) {
        let mut entry = entry.map_err(bad)?;
        let mtime = entry
            .header()
            .mtime()
            .ok()
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        place(dest, planned, &mut entry, mtime, progress)?;
    }
    Ok(())
}

pub fn extract_zip(archive: &Path, dest: &Path, progress: &mut Progress) -> Result<(), Error> {
    let bad = |e: zip::result::ZipError| Error::new(format!("reading archive {}: {e}", archive.display()));
    let file = File::open(archive).context(format!("opening {}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(bad)?;
    let mut plan = Plan::default();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(bad)?;
        let name = PathBuf::from(entry.name());
        let kind = if entry.is_dir() {
            Kind::Dir
        } else if entry.is_symlink() {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .context(format!("reading symlink entry {}", name.display()))?;
            Kind::Symlink(PathBuf::from(target))
        } else {
            Kind::File
        };
        plan.add(&name, kind, entry.size())?;
    }
    progress.set_totals(plan.files, plan.bytes);

    fs::create_dir_all(dest).context(format!("creating {}", dest.display()))?;
    for (i, planned) in plan.entries.iter().enumerate() {
        let mut entry = zip.by_index(i).map_err(bad)?;
        place(dest, planned, &mut entry, None, progress)?;
    }
    Ok(())
}

/// Writes one checked entry beneath `dest`.
fn place(
    dest: &Path,
    planned: &Planned,
    data: &mut dyn Read,
    mtime: Option<SystemTime>,
    progress: &mut Progress,
) -> Result<(), Error> {
    let path = dest.join(&planned.path);
    match &planned.kind {
        Kind::Dir => fs::create_dir_all(&path).context(format!("creating {}", path.display())),
        Kind::File => {
            let bytes = write_file(data, &path, mtime, planned.size)?;
            progress.file_done(bytes);
            Ok(())
        }
        Kind::Symlink(target) => {
            prepare_slot(&path)?;
            symlink(target, &path)
        }
        Kind::HardLink(target) => {
            prepare_slot(&path)?;
            fs::hard_link(dest.join(target), &path).context(format!("creating hard link {}", path.display()))
        }
    }
}
