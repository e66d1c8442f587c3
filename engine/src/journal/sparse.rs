//! Copying file contents so that holes stay holes: a backup of a sparse
//! file, and the file restored from it, take no more space than the
//! original (a 4-byte write into an 8 GiB file with 4 KiB of data must not
//! copy 8 GiB).

use rustix::fs::{SeekFrom, copy_file_range, seek};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Makes `to` (the same or a new inode) hold exactly what `from` holds:
/// its length, and its data where `from` has data, holes elsewhere.
pub(crate) fn copy_contents(from: &File, to: &File) -> io::Result<()> {
    let len = from.metadata()?.len();
    // Emptied first, so that only `from`'s data extents get allocated.
    to.set_len(0)?;
    to.set_len(len)?;
    let mut offset = 0;
    while offset < len {
        let data = match seek(from, SeekFrom::Data(offset)) {
            Ok(d) => d,
            // No data after `offset`: the rest is a hole.
            Err(Errno::NXIO) => break,
            // A filesystem that cannot say: copy everything.
            Err(Errno::INVAL | Errno::NOTSUP) => offset,
            Err(e) => return Err(e.into()),
        };
        let hole = match seek(from, SeekFrom::Hole(data)) {
            Ok(h) => h.min(len),
            Err(_) => len,
        };
        copy_range(from, to, data, hole - data)?;
        offset = hole;
    }
    Ok(())
}

/// Copies `len` bytes at `offset` in `from` to the same offset in `to`.
fn copy_range(from: &File, to: &File, offset: u64, len: u64) -> io::Result<()> {
    let (mut at_in, mut at_out, mut left) = (offset, offset, len);
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        match copy_file_range(from, Some(&mut at_in), to, Some(&mut at_out), chunk) {
            Ok(0) => break,
            Ok(n) => left -= n as u64,
            // Across filesystems on old kernels, or not supported: by hand.
            Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL) => {
                return copy_by_hand(from, to, at_in, left);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_by_hand(from: &File, to: &File, mut offset: u64, mut left: u64) -> io::Result<()> {
    let mut buffer = vec![0; left.min(1 << 20) as usize];
    while left > 0 {
        let want = left.min(buffer.len() as u64) as usize;
        let n = from.read_at(&mut buffer[..want], offset)?;
        if n == 0 {
            break;
        }
        to.write_all_at(&buffer[..n], offset)?;
        offset += n as u64;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn holes_stay_holes_and_data_is_copied_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let from = File::create_new(dir.path().join("from")).unwrap();
        from.set_len(256 << 20).unwrap();
        from.write_all_at(b"middle", 100 << 20).unwrap();
        from.write_all_at(b"end", (256 << 20) - 3).unwrap();
        let to = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("to"))
            .unwrap();
        to.write_all_at(&[9; 1 << 16], 0).unwrap();
        copy_contents(&from, &to).unwrap();
        let (f, t) = (from.metadata().unwrap(), to.metadata().unwrap());
        assert_eq!(t.len(), f.len());
        assert!(
            t.blocks() <= f.blocks() + 16,
            "{} blocks, from {}",
            t.blocks(),
            f.blocks()
        );
        let mut got = [0; 6];
        to.read_exact_at(&mut got, 100 << 20).unwrap();
        assert_eq!(&got, b"middle");
        to.read_exact_at(&mut got[..3], (256 << 20) - 3).unwrap();
        assert_eq!(&got[..3], b"end");
        to.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(got, [0; 6], "what was in `to` before is gone");
    }
}
