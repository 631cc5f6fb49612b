//! ioctl(PIDFD_GET_INFO) (6.13+): what pidfs knows about the process behind
//! a pidfd, including, once the process has been reaped, how it ended
//! (`PIDFD_INFO_EXIT`, 6.15+). The layout is `struct pidfd_info` of
//! include/uapi/linux/pidfd.h (PIDFD_INFO_SIZE_VER3, 88 bytes).
//!
//! When the exit information appears: pidfs records it in release_task()
//! (pidfs_exit), i.e. when the process is reaped, not when it exits. A
//! pidfd polls readable (POLLIN) from exit_notify() on, which is earlier;
//! it polls POLLHUP once the task is gone (detach_pid wakes the pidfd's
//! waiters again), and from then on PIDFD_INFO_EXIT is always there. Use
//! [`await_released`] before asking for the exit information of a process
//! the kernel reaps by itself.

use std::os::fd::{AsFd, BorrowedFd};

use super::errno::Errno;
use super::wait::Event;

/// Mask bits (`PIDFD_INFO_*`).
pub const PIDFD_INFO_PID: u64 = 1 << 0;
pub const PIDFD_INFO_CREDS: u64 = 1 << 1;
pub const PIDFD_INFO_CGROUPID: u64 = 1 << 2;
pub const PIDFD_INFO_EXIT: u64 = 1 << 3;
pub const PIDFD_INFO_COREDUMP: u64 = 1 << 4;
pub const PIDFD_INFO_SUPPORTED_MASK: u64 = 1 << 5;

/// `struct pidfd_info`, exactly as the kernel writes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidfdInfo {
    pub mask: u64,
    pub cgroupid: u64,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub ruid: u32,
    pub rgid: u32,
    pub euid: u32,
    pub egid: u32,
    pub suid: u32,
    pub sgid: u32,
    pub fsuid: u32,
    pub fsgid: u32,
    /// A wait status word (as wait4 reports it), valid with PIDFD_INFO_EXIT.
    pub exit_code: i32,
    pub coredump_mask: u32,
    pub coredump_signal: u32,
    pub coredump_code: u32,
    pub coredump_pad: u32,
    pub supported_mask: u64,
}

pub const PIDFD_INFO_SIZE_VER3: usize = 88;
const _: () = assert!(std::mem::size_of::<PidfdInfo>() == PIDFD_INFO_SIZE_VER3);

/// `PIDFD_GET_INFO = _IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: rustix::ioctl::Opcode =
    rustix::ioctl::opcode::read_write::<PidfdInfo>(0xFF, 11);

impl PidfdInfo {
    /// How the process ended, when the kernel filled PIDFD_INFO_EXIT.
    pub fn exit(&self) -> Option<Event> {
        (self.mask & PIDFD_INFO_EXIT != 0).then(|| decode_status(self.exit_code))
    }
}

/// Decode a wait status word the way wait4 callers do (libc's macros: see
/// the note in [`super::wait`]).
pub fn decode_status(st: i32) -> Event {
    // Not a final status: show the raw word.
    super::wait::final_event(st).unwrap_or(Event::Exited(-1000 - st))
}

/// ioctl(pidfd, PIDFD_GET_INFO, &info) with `info.mask = mask`.
pub fn get_info(pidfd: impl AsFd, mask: u64) -> Result<PidfdInfo, Errno> {
    let mut info = PidfdInfo {
        mask,
        ..Default::default()
    };
    // SAFETY: the opcode encodes _IOWR with size_of::<PidfdInfo>() (88,
    // PIDFD_INFO_SIZE_VER3); the kernel reads `mask` and writes at most that
    // many bytes (copy_struct_to_user) into `info`, a live, exclusively
    // borrowed repr(C) struct of plain integers, for which any bytes are a
    // valid value.
    let r = unsafe {
        rustix::ioctl::ioctl(
            pidfd.as_fd(),
            rustix::ioctl::Updater::<PIDFD_GET_INFO, PidfdInfo>::new(&mut info),
        )
    };
    r.map(|()| info).map_err(Errno::from)
}

/// The exit of the process behind `pidfd` as pidfs recorded it; `Ok(None)`
/// while it has not been reaped.
pub fn exit_info(pidfd: impl AsFd) -> Result<Option<Event>, Errno> {
    get_info(pidfd, PIDFD_INFO_EXIT).map(|i| i.exit())
}

/// Block until the process behind `pidfd` has been released (reaped, by
/// anyone: the pidfd reports POLLHUP). Asks poll for no event at all, so
/// that the POLLIN of a mere exit does not wake it; POLLHUP is always
/// reported. A zombie nobody reaps keeps this blocked (the caller's timeout
/// decides).
pub fn await_released(pidfd: BorrowedFd<'_>) -> Result<(), Errno> {
    use rustix::event::{poll, PollFd, PollFlags};
    loop {
        let mut fds = [PollFd::new(&pidfd, PollFlags::empty())];
        match poll(&mut fds, None) {
            Ok(_) if fds[0].revents().contains(PollFlags::HUP) => return Ok(()),
            Ok(_) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the process behind `pidfd` has been released right now.
pub fn is_released(pidfd: BorrowedFd<'_>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&pidfd, PollFlags::empty())];
    matches!(poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(n) if n > 0)
        && fds[0].revents().contains(PollFlags::HUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_matches_uapi() {
        // _IOWR(0xFF, 11, 88 bytes) on x86_64.
        assert_eq!(PIDFD_GET_INFO as u64, 0xC058_FF0B);
    }

    #[test]
    fn status_words() {
        assert_eq!(decode_status(42 << 8), Event::Exited(42));
        assert_eq!(decode_status(libc::SIGKILL), Event::Killed(libc::SIGKILL));
        assert_eq!(
            decode_status(libc::SIGSEGV | 0x80),
            Event::Dumped(libc::SIGSEGV)
        );
    }
}
