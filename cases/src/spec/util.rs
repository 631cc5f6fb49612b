//! Small helpers for code that runs inside jobs (children running Rust
//! code), where a failure is a message rather than a Stop.

use std::os::fd::{AsFd, OwnedFd};

use crate::sys::clone::{clone3, Clone3Request, Program, Spawned};
use crate::sys::pidfd;
use crate::sys::wait::{wait, WaitCall, WaitOpts, WaitOutcome, WaitTarget};

pub fn spawn(flags: u64, program: Program) -> Result<Spawned, String> {
    clone3(
        &Clone3Request::new(flags, crate::sys::signal::SIGCHLD as u64),
        program,
    )
    .map_err(|e| format!("clone3({flags:#x}): {e}"))
}

pub fn fd_of(sp: &Spawned) -> Result<&OwnedFd, String> {
    sp.pidfd.as_ref().ok_or_else(|| "no pidfd".to_string())
}

pub fn target(pid: i32, fd: &OwnedFd) -> WaitTarget<'_> {
    WaitTarget {
        pid,
        pidfd: Some(fd.as_fd()),
        pgid: 0,
    }
}

pub fn await_exit(fd: &OwnedFd) -> Result<(), String> {
    pidfd::poll_exit(fd.as_fd(), None)
        .map(|_| ())
        .map_err(|e| format!("poll(pidfd): {e}"))
}

pub fn want(what: &str, got: WaitOutcome, expected: WaitOutcome) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{what}: want {expected}, got {got}"))
    }
}

/// Focused reap by pidfd, for cleanup inside a job.
pub fn reap(pid: i32, fd: &OwnedFd) -> WaitOutcome {
    wait(
        WaitCall::WaitidPidfd,
        target(pid, fd),
        WaitOpts(WaitOpts::WEXITED | WaitOpts::WALL),
    )
}

/// Write a pid to a pipe / read it back.
pub fn send_pid(w: &OwnedFd, pid: i32) {
    let _ = crate::sys::io::write(w, &pid.to_ne_bytes());
}

pub fn recv_pid(r: &OwnedFd) -> Result<i32, String> {
    let mut b = [0u8; 4];
    match crate::sys::io::read(r, &mut b) {
        Ok(4) => Ok(i32::from_ne_bytes(b)),
        other => Err(format!("reading a pid from the pipe: {other:?}")),
    }
}

/// argv for re-executing this binary as a tiny program that exits with
/// `code` (`--wc-exit`), prepared before forking.
pub struct ExecExit {
    path: std::ffi::CString,
    args: Vec<std::ffi::CString>,
}

impl ExecExit {
    pub fn new(code: i32) -> Self {
        let exe = std::fs::read_link("/proc/self/exe").expect("/proc/self/exe");
        let path = std::ffi::CString::new(exe.into_os_string().into_encoded_bytes()).expect("path");
        let args = vec![
            std::ffi::CString::new("wait-conformance-exit").unwrap(),
            std::ffi::CString::new(crate::harness::engine::EXIT_ARG).unwrap(),
            std::ffi::CString::new(code.to_string()).unwrap(),
        ];
        ExecExit { path, args }
    }

    /// execv; returns only on failure.
    pub fn exec(&self) -> String {
        format!(
            "execv: {}",
            crate::sys::process::execv(&self.path, &self.args).io_error()
        )
    }
}
