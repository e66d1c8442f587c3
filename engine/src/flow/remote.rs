//! Network and FUSE filesystems in a mount's reach: a call there can block
//! inside the kernel for as long as the server or the FUSE daemon takes
//! (a hung NFS server: forever), where no time limit reaches it, and the
//! rollback would block the same way. Local filesystems answer every call
//! Stepback makes in bounded time (special files, which can block an
//! open, are never opened), so those are the only ones a flow may mount.

use std::path::{Path, PathBuf};

/// Filesystem types whose calls wait on another machine or process.
const REMOTE: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "9p",
    "afs",
    "glusterfs",
    "lustre",
    "davfs",
];

fn is_remote(fstype: &str) -> bool {
    REMOTE.contains(&fstype) || fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse.")
}

/// The network or FUSE filesystems that `host` is on or that are mounted
/// beneath it, as (mount point, type), from `/proc/self/mountinfo`.
pub(super) fn remote_filesystems(host: &Path) -> Vec<(PathBuf, String)> {
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => remote_in(&text, host),
        // Without it (not Linux, no /proc), nothing is known to be remote.
        Err(_) => Vec::new(),
    }
}

fn remote_in(mountinfo: &str, host: &Path) -> Vec<(PathBuf, String)> {
    let mounts: Vec<(PathBuf, &str)> = mountinfo.lines().filter_map(parse_line).collect();
    // The filesystem `host` is on: the last-mounted of the longest mount
    // point above it.
    let holder = mounts
        .iter()
        .filter(|(point, _)| host.starts_with(point))
        .max_by_key(|(point, _)| point.as_os_str().len());
    let beneath = mounts
        .iter()
        .filter(|(point, _)| point.starts_with(host) && point != host);
    holder
        .into_iter()
        .chain(beneath)
        .filter(|(_, fstype)| is_remote(fstype))
        .map(|(point, fstype)| (point.clone(), (*fstype).to_owned()))
        .collect()
}

/// Mount point and filesystem type of one line of `mountinfo`:
/// `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER`.
fn parse_line(line: &str) -> Option<(PathBuf, &str)> {
    let mut fields = line.split(' ');
    let point = fields.nth(4)?;
    let fstype = fields.skip_while(|f| *f != "-").nth(1)?;
    Some((PathBuf::from(unescape(point)), fstype))
}

/// Mount points escape space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out).to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /srv/data rw - nfs4 server:/export rw,vers=4.2
31 22 0:41 / /srv/app rw - ext4 /dev/vdb rw
32 31 0:42 / /srv/app/cache rw - fuse.sshfs me@host:/c rw
33 22 0:43 / /srv/my\\040files rw - cifs //nas/share rw
";

    fn remote(host: &str) -> Vec<(PathBuf, String)> {
        remote_in(MOUNTINFO, Path::new(host))
    }

    #[test]
    fn a_directory_on_a_network_filesystem_is_found() {
        assert_eq!(
            remote("/srv/data/releases"),
            [("/srv/data".into(), "nfs4".into())]
        );
        assert_eq!(
            remote("/srv/my files/x"),
            [("/srv/my files".into(), "cifs".into())]
        );
    }

    #[test]
    fn a_fuse_mount_beneath_a_local_directory_is_found() {
        assert_eq!(
            remote("/srv/app"),
            [("/srv/app/cache".into(), "fuse.sshfs".into())]
        );
        assert_eq!(
            remote("/srv"),
            [
                ("/srv/data".into(), "nfs4".into()),
                ("/srv/app/cache".into(), "fuse.sshfs".into()),
                ("/srv/my files".into(), "cifs".into()),
            ]
        );
    }

    #[test]
    fn local_directories_are_not() {
        assert!(remote("/srv/app/releases").is_empty());
        assert!(remote("/srv/database").is_empty());
        assert!(remote("/srv/data2").is_empty());
    }

    #[test]
    fn this_machines_temp_dir_is_local() {
        assert!(remote_filesystems(&std::env::temp_dir()).is_empty());
    }
}
