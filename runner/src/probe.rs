//! `runner guest-probe`: a self-contained check, run inside the VM, that the kernel implements
//! CLONE_WAIT_PID at a given bit. It is the runner's own smoke test of a built kernel and does
//! not replace the case table.
//!
//! Steps: clone3(bit) without CLONE_PIDFD must fail with EINVAL; clone3(bit | CLONE_PIDFD)
//! creates a child that exits with 7; once it is a zombie (waitid(P_PIDFD, WNOWAIT)), the
//! generic waits waitid(P_ALL, WNOHANG) and wait4(-1, WNOHANG) must say ECHILD, and
//! waitid(P_PIDFD) must reap it with status 7. A control child without the bit must be reaped by
//! waitid(P_ALL).

use std::io;

use serde::Serialize;

const CLONE_PIDFD: u64 = 0x1000;

/// `struct clone_args` as of CLONE_ARGS_SIZE_VER2 (88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Forks with clone3; the child immediately `_exit(code)`s. Returns (pid, pidfd or -1).
fn clone3_exiting_child(flags: u64, code: i32) -> io::Result<(i32, i32)> {
    let mut pidfd: i32 = -1;
    let mut args = CloneArgs {
        flags,
        pidfd: if flags & CLONE_PIDFD != 0 {
            &mut pidfd as *mut i32 as u64
        } else {
            0
        },
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 with no CLONE_VM and no stack behaves like fork(): the child gets a copy of
    // this address space and returns 0 here. `args` and `pidfd` outlive the call; the size is
    // the struct's exact size. The child only calls the async-signal-safe `_exit`, so it never
    // touches state (locks, allocator) that another thread of the parent might have held.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: in the child; _exit ends it without running the parent's atexit handlers
            // or destructors.
            unsafe { libc::_exit(code) }
        }
        pid => Ok((pid as i32, pidfd)),
    }
}

/// waitid() returning (si_pid, si_status) or the errno.
fn waitid(idtype: libc::idtype_t, id: u32, options: i32) -> io::Result<(i32, i32)> {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter; waitid writes at most
    // sizeof(siginfo_t) bytes into it. The si_pid/si_status accessors read the fields waitid
    // filled (for WNOHANG with no child, si_pid stays 0).
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        if libc::waitid(idtype, id, &mut info, options) == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok((info.si_pid(), info.si_status()))
    }
}

fn wait4_any_nohang() -> io::Result<i32> {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer for the duration of the call; rusage is NULL.
    let r = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, std::ptr::null_mut()) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn errname(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::ECHILD) => "ECHILD".into(),
        Some(libc::EBADF) => "EBADF".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        _ => e.to_string(),
    }
}

#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub kernel_release: String,
    pub flag: String,
    pub steps: Vec<(String, String)>,
    /// works | absent | broken
    pub verdict: String,
}

pub fn probe(flag: u64) -> ProbeReport {
    let mut steps = Vec::new();
    let mut broken = Vec::new();
    let mut step = |name: &str, got: String, ok: bool, broken: &mut Vec<String>| {
        if !ok {
            broken.push(name.to_owned());
        }
        steps.push((name.to_owned(), got));
    };
    let no_pidfd = clone3_exiting_child(flag, 0);
    if let Ok((pid, _)) = no_pidfd {
        let _ = waitid(libc::P_PID, pid as u32, libc::WEXITED);
    }
    let no_pidfd_einval = matches!(&no_pidfd, Err(e) if e.raw_os_error() == Some(libc::EINVAL));
    step(
        "clone3(bit) without CLONE_PIDFD",
        match &no_pidfd {
            Ok((pid, _)) => format!("created pid {pid}"),
            Err(e) => errname(e),
        },
        no_pidfd_einval,
        &mut broken,
    );
    let verdict = match clone3_exiting_child(flag | CLONE_PIDFD, 7) {
        Err(e) => {
            let absent = e.raw_os_error() == Some(libc::EINVAL);
            step(
                "clone3(bit | CLONE_PIDFD)",
                errname(&e),
                absent,
                &mut broken,
            );
            if absent {
                "absent"
            } else {
                "broken"
            }
        }
        Ok((pid, pidfd)) => {
            step(
                "clone3(bit | CLONE_PIDFD)",
                format!("pid {pid}, pidfd {pidfd}"),
                true,
                &mut broken,
            );
            let zombie = waitid(libc::P_PIDFD, pidfd as u32, libc::WEXITED | libc::WNOWAIT);
            step(
                "waitid(P_PIDFD, WNOWAIT) until exited",
                format!("{zombie:?}"),
                zombie.is_ok(),
                &mut broken,
            );
            let all = waitid(libc::P_ALL, 0, libc::WEXITED | libc::WNOHANG);
            step(
                "waitid(P_ALL, WEXITED|WNOHANG)",
                match &all {
                    Ok((p, s)) => format!("pid {p} status {s}"),
                    Err(e) => errname(e),
                },
                matches!(&all, Err(e) if e.raw_os_error() == Some(libc::ECHILD)),
                &mut broken,
            );
            let w4 = wait4_any_nohang();
            step(
                "wait4(-1, WNOHANG)",
                match &w4 {
                    Ok(p) => format!("returned {p}"),
                    Err(e) => errname(e),
                },
                matches!(&w4, Err(e) if e.raw_os_error() == Some(libc::ECHILD)),
                &mut broken,
            );
            let reaped = waitid(libc::P_PIDFD, pidfd as u32, libc::WEXITED);
            step(
                "waitid(P_PIDFD, WEXITED)",
                match &reaped {
                    Ok((p, s)) => format!("reaped pid {p} status {s}"),
                    Err(e) => errname(e),
                },
                matches!(reaped, Ok((p, 7)) if p == pid),
                &mut broken,
            );
            // SAFETY: pidfd came from clone3 above and is closed exactly once.
            unsafe { libc::close(pidfd) };
            if broken.is_empty() {
                "works"
            } else {
                "broken"
            }
        }
    };
    // Control: without the bit, a generic wait reaps the child.
    if let Ok((pid, pidfd)) = clone3_exiting_child(CLONE_PIDFD, 3) {
        let _ = waitid(libc::P_PIDFD, pidfd as u32, libc::WEXITED | libc::WNOWAIT);
        let all = waitid(libc::P_ALL, 0, libc::WEXITED | libc::WNOHANG);
        step(
            "control: plain child, waitid(P_ALL, WEXITED|WNOHANG)",
            format!("{all:?}"),
            matches!(all, Ok((p, 3)) if p == pid),
            &mut broken,
        );
        // SAFETY: as above.
        unsafe { libc::close(pidfd) };
    }
    let verdict = if verdict == "works" && !broken.is_empty() {
        "broken"
    } else {
        verdict
    };
    ProbeReport {
        kernel_release: rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned(),
        flag: format!("{flag:#x}"),
        steps,
        verdict: verdict.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_args_is_ver2_sized() {
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
    }
    // Running the probe itself is in tests/guest_probe.rs: its generic waits must not run inside
    // the multi-threaded unit-test process, where they could reap other tests' children.
}
