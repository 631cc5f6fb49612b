//! Pipe I/O for the rows and the executors: read, write, poll for input.
//!
//! All through rustix (it has every call here). Errors come back as the
//! layer's [`Errno`]; the `*_exact`/`*_all` forms retry EINTR and short
//! transfers and answer only whether the whole buffer went through.

use std::os::fd::AsFd;

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::errno::Errno;

/// read(2) once.
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> Result<usize, Errno> {
    rustix::io::read(fd, buf).map_err(Errno::from)
}

/// write(2) once.
pub fn write(fd: impl AsFd, buf: &[u8]) -> Result<usize, Errno> {
    rustix::io::write(fd, buf).map_err(Errno::from)
}

/// Read exactly `buf.len()` bytes; false on EOF or error.
pub fn read_exact(fd: impl AsFd, buf: &mut [u8]) -> bool {
    let mut off = 0;
    while off < buf.len() {
        match read(fd.as_fd(), &mut buf[off..]) {
            Ok(0) => return false,
            Ok(n) => off += n,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Write all of `buf`; false on error.
pub fn write_all(fd: impl AsFd, buf: &[u8]) -> bool {
    let mut off = 0;
    while off < buf.len() {
        match write(fd.as_fd(), &buf[off..]) {
            Ok(n) => off += n,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Whether `fd` becomes readable within `ms` milliseconds (-1: wait
/// forever, 0: right now); EINTR retries.
pub fn readable_within(fd: impl AsFd, ms: i32) -> bool {
    let ts = if ms < 0 {
        None
    } else {
        Some(Timespec {
            tv_sec: (ms / 1000) as i64,
            tv_nsec: ((ms % 1000) as i64) * 1_000_000,
        })
    };
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, ts.as_ref()) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// The capacity [`widen_pipe`] asks for: the default /proc/sys/fs/pipe-max-size.
pub const WIDE_PIPE: usize = 1 << 20;

/// Raise the pipe's capacity to [`WIDE_PIPE`] (F_SETPIPE_SZ) where the kernel
/// allows it, else leave it; returns the capacity it has.
pub fn widen_pipe(fd: impl AsFd) -> Option<usize> {
    let _ = rustix::pipe::fcntl_setpipe_size(fd.as_fd(), WIDE_PIPE);
    rustix::pipe::fcntl_getpipe_size(fd).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_carries_bytes_and_says_when_ready() {
        let (r, w) = super::super::clone::pipe();
        assert!(!readable_within(&r, 0));
        assert!(write_all(&w, b"abc"));
        assert!(readable_within(&r, 0));
        let mut b = [0u8; 3];
        assert!(read_exact(&r, &mut b));
        assert_eq!(&b, b"abc");
        drop(w);
        assert_eq!(read(&r, &mut b), Ok(0));
        assert!(!read_exact(&r, &mut b));
    }

    #[test]
    fn a_widened_pipe_holds_a_megabyte() {
        let (r, w) = super::super::clone::pipe();
        let cap = widen_pipe(&w).expect("F_GETPIPE_SZ");
        assert!(cap >= 65536, "{cap}");
        // Root is not held to /proc/sys/fs/pipe-max-size nor to the per-user quota.
        if rustix::process::geteuid().is_root() {
            assert_eq!(cap, WIDE_PIPE);
            // A megabyte goes in with nobody reading.
            assert!(write_all(&w, &vec![7u8; WIDE_PIPE]));
            let mut b = vec![0u8; WIDE_PIPE];
            assert!(read_exact(&r, &mut b));
            assert!(b.iter().all(|&x| x == 7));
        }
    }
}
