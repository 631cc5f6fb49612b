//! The errno type of the syscall layer: a raw number with nix's names.
//!
//! A newtype rather than `nix::errno::Errno` itself: the kernel may answer
//! with a number nix does not know (it is kept, and shown as `errno N`),
//! and the reports show the bare name (`ECHILD`) where nix's Display adds
//! the description.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno::of(nix::errno::Errno::EPERM);
    pub const ENOENT: Errno = Errno::of(nix::errno::Errno::ENOENT);
    pub const ESRCH: Errno = Errno::of(nix::errno::Errno::ESRCH);
    pub const EINTR: Errno = Errno::of(nix::errno::Errno::EINTR);
    pub const EBADF: Errno = Errno::of(nix::errno::Errno::EBADF);
    pub const ECHILD: Errno = Errno::of(nix::errno::Errno::ECHILD);
    pub const EAGAIN: Errno = Errno::of(nix::errno::Errno::EAGAIN);
    pub const EACCES: Errno = Errno::of(nix::errno::Errno::EACCES);
    pub const EFAULT: Errno = Errno::of(nix::errno::Errno::EFAULT);
    pub const EEXIST: Errno = Errno::of(nix::errno::Errno::EEXIST);
    pub const EPIPE: Errno = Errno::of(nix::errno::Errno::EPIPE);
    pub const EINVAL: Errno = Errno::of(nix::errno::Errno::EINVAL);
    pub const ENOSYS: Errno = Errno::of(nix::errno::Errno::ENOSYS);
    pub const E2BIG: Errno = Errno::of(nix::errno::Errno::E2BIG);
    pub const ENOSPC: Errno = Errno::of(nix::errno::Errno::ENOSPC);
    pub const EOPNOTSUPP: Errno = Errno::of(nix::errno::Errno::EOPNOTSUPP);

    const fn of(e: nix::errno::Errno) -> Errno {
        Errno(e as i32)
    }

    /// errno of the last libc call on this thread.
    pub fn last() -> Errno {
        Errno(nix::errno::Errno::last_raw())
    }

    fn known(self) -> Option<nix::errno::Errno> {
        match nix::errno::Errno::from_raw(self.0) {
            nix::errno::Errno::UnknownErrno => None,
            e => Some(e),
        }
    }

    /// `ECHILD: No child processes` (nix's wording), `errno N` for a
    /// number nix does not know.
    pub fn described(self) -> String {
        match self.known() {
            Some(e) => e.to_string(),
            None => format!("errno {}", self.0),
        }
    }

    /// The same number as an `std::io::Error` (`No child processes (os
    /// error 10)`).
    pub fn io_error(self) -> std::io::Error {
        std::io::Error::from_raw_os_error(self.0)
    }
}

/// The bare name, `ECHILD` (nix's Debug of its errno), or `errno N`.
impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known() {
            Some(e) => fmt::Debug::fmt(&e, f),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(e: rustix::io::Errno) -> Self {
        Errno(e.raw_os_error())
    }
}

impl From<nix::errno::Errno> for Errno {
    fn from(e: nix::errno::Errno) -> Self {
        Errno(e as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the reports showed from the hand table this replaced
    /// (numbers of x86_64), unchanged.
    #[test]
    fn names_are_the_reported_ones() {
        let table = [
            (1, "EPERM"),
            (2, "ENOENT"),
            (3, "ESRCH"),
            (4, "EINTR"),
            (9, "EBADF"),
            (10, "ECHILD"),
            (11, "EAGAIN"),
            (12, "ENOMEM"),
            (13, "EACCES"),
            (14, "EFAULT"),
            (16, "EBUSY"),
            (17, "EEXIST"),
            (20, "ENOTDIR"),
            (22, "EINVAL"),
            (28, "ENOSPC"),
            (7, "E2BIG"),
            (38, "ENOSYS"),
            (95, "EOPNOTSUPP"),
            (87, "EUSERS"),
        ];
        for (n, name) in table {
            assert_eq!(Errno(n).to_string(), name);
            assert_eq!(format!("{:?}", Errno(n)), name);
        }
        assert_eq!(Errno::EAGAIN.to_string(), "EAGAIN");
        assert_eq!(Errno(0).to_string(), "errno 0");
        assert_eq!(Errno(4095).to_string(), "errno 4095");
        assert_eq!(Errno::ECHILD.described(), "ECHILD: No child processes");
        assert_eq!(Errno(4095).described(), "errno 4095");
    }
}
