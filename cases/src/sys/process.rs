//! Process calls the cases make besides clone and wait: process groups,
//! execv(2), ptrace(2), the parent-death signal, RLIMIT_NPROC, the user id,
//! reboot(2) (inside a pid namespace), ioprio_set(2), chroot(2).
//!
//! Which library makes each call: setpgid, the death signal, setrlimit, the
//! user id and reboot through rustix; execv through nix (rustix has execve
//! only in its `runtime` feature, unsafe, for libc implementations); ptrace
//! through nix (rustix has none).

use std::ffi::{CStr, CString};

use super::errno::Errno;

fn rustix_pid(pid: i32) -> Result<rustix::process::Pid, Errno> {
    rustix::process::Pid::from_raw(pid).ok_or(Errno::EINVAL)
}

fn nix_pid(pid: i32) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(pid)
}

/// setpgid(pid, pgid): move `pid` (a child of ours, or us) into group
/// `pgid`. Both must be positive; 0 ("the caller", "pid itself") is not
/// offered.
pub fn setpgid(pid: i32, pgid: i32) -> Result<(), Errno> {
    rustix::process::setpgid(Some(rustix_pid(pid)?), Some(rustix_pid(pgid)?)).map_err(Errno::from)
}

/// prctl(PR_SET_PDEATHSIG, sig): this process gets `sig` when its parent exits.
pub fn set_death_signal(sig: i32) -> Result<(), Errno> {
    let s = rustix::process::Signal::from_named_raw(sig).ok_or(Errno::EINVAL)?;
    rustix::process::set_parent_process_death_signal(Some(s)).map_err(Errno::from)
}

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphans below the caller come to it.
pub fn become_subreaper() -> Result<(), Errno> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(Errno::from)
}

/// setrlimit(RLIMIT_NPROC, {n, n}).
pub fn limit_processes(n: u64) -> Result<(), Errno> {
    let l = rustix::process::Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    rustix::process::setrlimit(rustix::process::Resource::Nproc, l).map_err(Errno::from)
}

/// setresuid(uid, uid, uid) for the calling thread (the raw system call: the cases call it
/// in a single-threaded child).
pub fn become_user(uid: u32) -> Result<(), Errno> {
    let u = rustix::process::Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(u, u, u).map_err(Errno::from)
}

/// reboot(LINUX_REBOOT_CMD_RESTART). Outside the initial pid namespace it "reboots" the
/// namespace (kernel/pid_namespace.c reboot_pid_ns): returns only on failure.
pub fn reboot_restart() -> Errno {
    match rustix::system::reboot(rustix::system::RebootCommand::Restart) {
        Err(e) => e.into(),
        Ok(()) => Errno::EINVAL,
    }
}

/// ioprio_set(IOPRIO_WHO_PROCESS, 0, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, level)): gives the
/// calling process a best-effort I/O priority, and so an I/O context of its own
/// (block/ioprio.c set_task_ioprio allocates it). libc: neither rustix nor nix has ioprio.
/// ENOSYS without CONFIG_BLOCK.
pub fn set_io_priority_best_effort(level: u8) -> Result<(), Errno> {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_BE: libc::c_long = 2;
    const IOPRIO_CLASS_SHIFT: u32 = 13;
    let value = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | libc::c_long::from(level & 7);
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// chroot(2): the calling process's root directory becomes `dir`.
pub fn chroot(dir: &std::path::Path) -> Result<(), Errno> {
    rustix::process::chroot(dir).map_err(Errno::from)
}

/// execv(path, argv): returns only on failure, with the errno.
pub fn execv(path: &CStr, argv: &[CString]) -> Errno {
    match nix::unistd::execv(path, argv) {
        Err(e) => e.into(),
        Ok(never) => match never {},
    }
}

/// ptrace: attach, seize, continue, detach. The tracee is named by pid (ptrace
/// has no pidfd form).
pub mod ptrace {
    use super::{nix_pid, Errno};

    /// PTRACE_ATTACH: the tracee gets a SIGSTOP the tracer then collects.
    pub fn attach(pid: i32) -> Result<(), Errno> {
        nix::sys::ptrace::attach(nix_pid(pid)).map_err(Errno::from)
    }

    /// PTRACE_SEIZE without options: the tracee is traced but not stopped (no SIGSTOP, so no
    /// group stop of its other threads), and threads it makes later are not traced.
    pub fn seize(pid: i32) -> Result<(), Errno> {
        nix::sys::ptrace::seize(nix_pid(pid), nix::sys::ptrace::Options::empty())
            .map_err(Errno::from)
    }

    /// PTRACE_CONT without a signal.
    pub fn cont(pid: i32) -> Result<(), Errno> {
        nix::sys::ptrace::cont(nix_pid(pid), None).map_err(Errno::from)
    }

    /// PTRACE_DETACH without a signal.
    pub fn detach(pid: i32) -> Result<(), Errno> {
        nix::sys::ptrace::detach(nix_pid(pid), None).map_err(Errno::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setpgid_refuses_zero() {
        assert_eq!(setpgid(0, 1), Err(Errno::EINVAL));
        assert_eq!(setpgid(1, 0), Err(Errno::EINVAL));
    }

    #[test]
    fn execv_of_nothing_says_why() {
        let path = CString::new("/nonexistent/wait-conformance").unwrap();
        assert_eq!(execv(&path, std::slice::from_ref(&path)), Errno::ENOENT);
    }
}
