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
//! (kernel attack surface), joining other namespaces, and making a user
//! namespace (where a command would hold every capability again). The
//! denied calls fail with `EPERM`, as they do without the capability;
//! `clone3`, whose flags a filter cannot read, fails with `ENOSYS`, which
//! makes the C library fall back to `clone`, whose flags it can.

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

/// The filters to install, in order: the deny list (`EPERM`), and
/// `clone3` (`ENOSYS`). `None` on an architecture seccompiler does not
/// know: the command then runs without (and `Seccomp` in its status says
/// so).
pub fn filters() -> io::Result<Option<&'static [BpfProgram; 2]>> {
    static BUILT: std::sync::OnceLock<Option<[BpfProgram; 2]>> = std::sync::OnceLock::new();
    if let Some(built) = BUILT.get() {
        return Ok(built.as_ref());
    }
    let built = build()?;
    Ok(BUILT.get_or_init(|| built).as_ref())
}

fn build() -> io::Result<Option<[BpfProgram; 2]>> {
    let Ok(arch) = std::env::consts::ARCH.try_into() else {
        return Ok(None);
    };
    let new_user = || -> Result<SeccompRule, seccompiler::BackendError> {
        let flag = libc::CLONE_NEWUSER as u64;
        let condition =
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)?;
        SeccompRule::new(vec![condition])
    };
    let build = || -> Result<[BpfProgram; 2], seccompiler::BackendError> {
        let mut denied: BTreeMap<i64, Vec<SeccompRule>> =
            DENIED.iter().map(|&call| (call, Vec::new())).collect();
        // A user namespace, by `unshare` or `clone` (whose first argument
        // is the flags on every architecture seccompiler knows).
        denied.insert(libc::SYS_unshare, vec![new_user()?]);
        denied.insert(libc::SYS_clone, vec![new_user()?]);
        let eperm = SeccompAction::Errno(libc::EPERM as u32);
        let deny = SeccompFilter::new(denied, SeccompAction::Allow, eperm, arch)?;
        let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
        let enosys = SeccompAction::Errno(libc::ENOSYS as u32);
        let clone3 = SeccompFilter::new(clone3, SeccompAction::Allow, enosys, arch)?;
        Ok([deny.try_into()?, clone3.try_into()?])
    };
    build().map(Some).map_err(io::Error::other)
}

/// Installs `filters` in this process (a forked child: only system calls).
pub fn install(filters: &[BpfProgram; 2]) -> io::Result<()> {
    for filter in filters {
        seccompiler::apply_filter(filter).map_err(|e| match e {
            seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
            _ => io::Error::from_raw_os_error(libc::EINVAL),
        })?;
    }
    Ok(())
}
