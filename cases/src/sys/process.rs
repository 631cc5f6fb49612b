//! Process calls the cases make besides clone and wait: process groups,
//! execv(2), ptrace(2).
//!
//! Which library makes each call: setpgid through rustix; execv through nix
//! (rustix has execve only in its `runtime` feature, unsafe, for libc
//! implementations); ptrace through nix (rustix has none).

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

/// execv(path, argv): returns only on failure, with the errno.
pub fn execv(path: &CStr, argv: &[CString]) -> Errno {
    match nix::unistd::execv(path, argv) {
        Err(e) => e.into(),
        Ok(never) => match never {},
    }
}

/// ptrace: attach, continue, detach. The tracee is named by pid (ptrace
/// has no pidfd form).
pub mod ptrace {
    use super::{nix_pid, Errno};

    /// PTRACE_ATTACH: the tracee gets a SIGSTOP the tracer then collects.
    pub fn attach(pid: i32) -> Result<(), Errno> {
        nix::sys::ptrace::attach(nix_pid(pid)).map_err(Errno::from)
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
