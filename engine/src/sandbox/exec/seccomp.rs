//! The system calls a command may not make, whatever capabilities it
//! holds: a seccomp filter, built by `seccompiler` (rust-vmm's, which
//! Firecracker jails its VMMs with) in the engine and installed by the
//! program's process last, right before `exec`.
//!
//! A deny list, not an allow list: update commands are any program an
//! operator grants (package managers, interpreters, vendors' installers),
//! so what they need is open-ended, while what no update command needs is
//! known: the mount API (a command must not change its view of the files),
//! opening files by handle, loading code into the kernel (modules, kexec,
//! BPF), performance counters, the kernel keyring, the clock, rebooting,
//! swap, accounting, quotas, the kernel log, `userfaultfd` and `io_uring`
//! (kernel attack surface), joining other namespaces, making a user
//! namespace (where a command would hold every capability again), and
//! taking a lease on a file (`F_SETLEASE`: other processes opening it
//! would wait for the command), and sockets of any family but Unix, IPv4,
//! IPv6 and netlink (making one of another loads its module, as root). The
//! denied calls fail with `EPERM`, as they do without the capability;
//! `clone3`, whose flags a filter cannot read, fails with `ENOSYS`, which
//! makes the C library fall back to `clone`, whose flags it can. On
//! x86_64 the same calls by their x32 numbers are denied too.
//!
//! Unless the step grants sockets, a command cannot make a Unix socket
//! (`socket(AF_UNIX, ...)` fails with `EACCES`): a socket's path on a
//! read-only mount still connects, so the jail's view of the files alone
//! does not keep a command from local services whose sockets lie outside
//! the private `/run` and `/tmp`. Connected pairs (`socketpair` of
//! streams, which event loops and process spawners use) stay: they reach
//! nothing; a datagram pair, which can send to any address, does not.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use std::collections::BTreeMap;
use std::io;

/// The calls refused outright.
const DENIED: &[i64] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_settimeofday,
    libc::SYS_adjtimex,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_setns,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
];

/// The filters: the deny list (`EPERM`), `clone3` (`ENOSYS`), and Unix
/// sockets (`EACCES`, installed unless the step grants sockets). `None` on
/// an architecture seccompiler does not know: the command then runs
/// without (and `Seccomp` in its status says so).
pub fn filters() -> io::Result<Option<&'static Filters>> {
    static BUILT: std::sync::OnceLock<Option<Filters>> = std::sync::OnceLock::new();
    if let Some(built) = BUILT.get() {
        return Ok(built.as_ref());
    }
    let built = build()?;
    Ok(BUILT.get_or_init(|| built).as_ref())
}

/// The filters [`filters`] builds.
pub type Filters = [BpfProgram; 3];

/// The x32 numbers of the calls of `calls` (x86_64's, with the x32 bit),
/// beside them.
fn with_x32(calls: impl Iterator<Item = i64>) -> impl Iterator<Item = i64> {
    calls.flat_map(|call| match cfg!(target_arch = "x86_64") {
        true => vec![call, call | 0x4000_0000],
        false => vec![call],
    })
}

fn build() -> io::Result<Option<Filters>> {
    let Ok(arch) = std::env::consts::ARCH.try_into() else {
        return Ok(None);
    };
    let new_user = || -> Result<SeccompRule, seccompiler::BackendError> {
        let flag = libc::CLONE_NEWUSER as u64;
        let condition =
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)?;
        SeccompRule::new(vec![condition])
    };
    let unix = || -> Result<SeccompRule, seccompiler::BackendError> {
        let family = libc::AF_UNIX as u64;
        let condition = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, family)?;
        SeccompRule::new(vec![condition])
    };
    let build = || -> Result<Filters, seccompiler::BackendError> {
        let mut denied: BTreeMap<i64, Vec<SeccompRule>> = with_x32(DENIED.iter().copied())
            .map(|call| (call, Vec::new()))
            .collect();
        // A user namespace, by `unshare` or `clone` (whose first argument
        // is the flags on every architecture seccompiler knows).
        for call in with_x32([libc::SYS_unshare, libc::SYS_clone].into_iter()) {
            denied.insert(call, vec![new_user()?]);
        }
        // A lease on a host file, which would hold every other process
        // that opens it until the command lets go.
        let lease = SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            libc::F_SETLEASE as u64,
        )?;
        for call in with_x32([libc::SYS_fcntl].into_iter()) {
            denied.insert(call, vec![SeccompRule::new(vec![lease.clone()])?]);
        }
        // Sockets of families no update command needs: making one makes
        // the kernel load its module (as root, outside the jail) where the
        // family is not built in.
        let family_needed = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK]
            .map(|f| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, f as u64));
        let other_family = SeccompRule::new(family_needed.into_iter().collect::<Result<Vec<_>, _>>()?)?;
        for call in with_x32([libc::SYS_socket, libc::SYS_socketpair].into_iter()) {
            denied.insert(call, vec![other_family.clone()]);
        }
        let eperm = SeccompAction::Errno(libc::EPERM as u32);
        let deny = SeccompFilter::new(denied, SeccompAction::Allow, eperm, arch)?;
        let clone3 = with_x32([libc::SYS_clone3].into_iter())
            .map(|call| (call, Vec::new()))
            .collect();
        let enosys = SeccompAction::Errno(libc::ENOSYS as u32);
        let clone3 = SeccompFilter::new(clone3, SeccompAction::Allow, enosys, arch)?;
        // A datagram pair too: each end can send to, or connect to, any
        // address (a stream or seqpacket pair is connected for good).
        let datagram_pair = || -> Result<SeccompRule, seccompiler::BackendError> {
            let family =
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::AF_UNIX as u64)?;
            let kind = SeccompCondition::new(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(0xf),
                libc::SOCK_DGRAM as u64,
            )?;
            SeccompRule::new(vec![family, kind])
        };
        let mut sockets: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for call in with_x32([libc::SYS_socket].into_iter()) {
            sockets.insert(call, vec![unix()?]);
        }
        for call in with_x32([libc::SYS_socketpair].into_iter()) {
            sockets.insert(call, vec![datagram_pair()?]);
        }
        let eacces = SeccompAction::Errno(libc::EACCES as u32);
        let sockets = SeccompFilter::new(sockets, SeccompAction::Allow, eacces, arch)?;
        Ok([deny.try_into()?, clone3.try_into()?, sockets.try_into()?])
    };
    build().map(Some).map_err(io::Error::other)
}

/// Installs `filters` in this process (a forked child: only system calls);
/// the last, which refuses Unix sockets, unless `sockets` (granted).
pub fn install(filters: &Filters, sockets: bool) -> io::Result<()> {
    let installed = match sockets {
        true => &filters[..2],
        false => &filters[..],
    };
    for filter in installed {
        seccompiler::apply_filter(filter).map_err(|e| match e {
            seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
            _ => io::Error::from_raw_os_error(libc::EINVAL),
        })?;
    }
    Ok(())
}
