//! pidfd helpers: open, poll for exit, send signals.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use super::errno::Errno;

/// pidfd_open(2); `nonblock` asks for PIDFD_NONBLOCK (O_NONBLOCK).
pub fn open(pid: i32, nonblock: bool) -> Result<OwnedFd, Errno> {
    let flags = if nonblock {
        rustix::process::PidfdFlags::NONBLOCK
    } else {
        rustix::process::PidfdFlags::empty()
    };
    let pid = rustix::process::Pid::from_raw(pid).ok_or(Errno::EINVAL)?;
    rustix::process::pidfd_open(pid, flags).map_err(Errno::from)
}

/// Poll the pidfd for POLLIN (the process has exited). `None` blocks.
/// Returns whether it became readable within the timeout.
/// Announced when a case process switched that on ([`super::announce`]).
pub fn poll_exit(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<bool, Errno> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let _inside = super::announce::enter(
        || match timeout {
            None => format!(
                "poll(pidfd {}, POLLIN, -1) awaiting the exit",
                fd.as_raw_fd()
            ),
            Some(d) => format!(
                "poll(pidfd {}, POLLIN, {} ms) awaiting the exit",
                fd.as_raw_fd(),
                d.as_millis()
            ),
        },
        Some(fd),
    );
    let ts = timeout.map(|d| Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: d.subsec_nanos() as i64,
    });
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, ts.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(!fds[0].revents().is_empty()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the process behind the pidfd has exited right now.
pub fn has_exited(fd: BorrowedFd<'_>) -> bool {
    poll_exit(fd, Some(Duration::ZERO)).unwrap_or(false)
}

/// pidfd_send_signal(2) with any signal number: libc, because rustix only
/// takes its named signals (the cases also send realtime and invalid
/// numbers) and nix has no pidfd_send_signal.
pub fn send_signal(fd: impl AsFd, sig: i32) -> Result<(), Errno> {
    // SAFETY: the syscall reads an fd, an integer, a NULL siginfo and flags 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_fd().as_raw_fd(),
            sig,
            std::ptr::null::<u8>(),
            0u32,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
