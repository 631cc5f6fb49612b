//! Signals: the numbers the cases name, the SIGCHLD disposition, the
//! calling thread's mask and its pending signals, and pause(2).
//!
//! Which library makes each call: rustix names the signals and has
//! pause(2), but no sigaction, sigprocmask or sigtimedwait outside its
//! `runtime` feature (meant for libc implementations, every call unsafe);
//! nix has sigaction and the thread mask; neither has sigtimedwait(2) nor a
//! disposition for realtime signal numbers (nix's `Signal` is a closed enum
//! of the named ones), so those two go through libc.

use rustix::process::Signal as Named;

use super::errno::Errno;

pub const SIGTRAP: i32 = Named::TRAP.as_raw();
pub const SIGHUP: i32 = Named::HUP.as_raw();
pub const SIGINT: i32 = Named::INT.as_raw();
pub const SIGQUIT: i32 = Named::QUIT.as_raw();
pub const SIGKILL: i32 = Named::KILL.as_raw();
pub const SIGUSR1: i32 = Named::USR1.as_raw();
pub const SIGSEGV: i32 = Named::SEGV.as_raw();
pub const SIGTERM: i32 = Named::TERM.as_raw();
pub const SIGCHLD: i32 = Named::CHILD.as_raw();
pub const SIGCONT: i32 = Named::CONT.as_raw();
pub const SIGSTOP: i32 = Named::STOP.as_raw();

/// The highest signal number (`_NSIG - 1` on x86_64).
pub const SIGRTMAX: i32 = 64;

fn named(sig: i32) -> Result<nix::sys::signal::Signal, Errno> {
    nix::sys::signal::Signal::try_from(sig).map_err(Errno::from)
}

/// How a process treats its children's SIGCHLD when they exit without
/// anyone waiting: both make the kernel auto-reap them (POSIX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildDisposition {
    /// `SIG_IGN` for SIGCHLD.
    Ignore,
    /// `SIG_DFL` with `SA_NOCLDWAIT`.
    NoCldWait,
}

/// sigaction(SIGCHLD, ...) with one of the auto-reaping dispositions.
pub fn set_child_disposition(d: ChildDisposition) -> Result<(), Errno> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = match d {
        ChildDisposition::NoCldWait => {
            SigAction::new(SigHandler::SigDfl, SaFlags::SA_NOCLDWAIT, SigSet::empty())
        }
        ChildDisposition::Ignore => {
            SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty())
        }
    };
    // SAFETY: SIG_IGN and SIG_DFL are dispositions, not handlers: no code
    // of ours runs in signal context, which is what nix's sigaction asks
    // the caller to make sound.
    unsafe { sigaction(Signal::SIGCHLD, &act) }
        .map(drop)
        .map_err(Errno::from)
}

/// Ignore signal `sig` (`SIG_IGN`), any number from 1 to [`SIGRTMAX`]
/// except the two that cannot be caught. `EINVAL` for the rest.
pub fn ignore(sig: i32) -> Result<(), Errno> {
    if !(1..=SIGRTMAX).contains(&sig) || sig == SIGKILL || sig == SIGSTOP {
        return Err(Errno::EINVAL);
    }
    // libc: realtime numbers have no nix `Signal` (see the module note).
    // SAFETY: SIG_IGN installs no handler; `sig` is a catchable signal.
    let r = unsafe { libc::signal(sig, libc::SIG_IGN) };
    if r == libc::SIG_ERR {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Block `sig` in the calling thread (sigprocmask/pthread_sigmask).
pub fn block(sig: i32) -> Result<(), Errno> {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(named(sig)?);
    set.thread_block().map_err(Errno::from)
}

/// A signal taken from the pending set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub signo: i32,
    /// `si_pid`: who sent it (for SIGCHLD, the child).
    pub pid: i32,
}

/// Take `sig` from the calling thread's pending signals if it is there
/// (sigtimedwait with a zero timeout): `Ok(None)` when it is not.
pub fn take_pending(sig: i32) -> Result<Option<Pending>, Errno> {
    timed_wait(
        sig,
        Some(libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }),
    )
}

/// Wait until `sig` (blocked in the calling thread) is pending, and take it (sigtimedwait
/// without a timeout): the first one there, from whichever sender.
pub fn await_pending(sig: i32) -> Result<Pending, Errno> {
    // Without a timeout sigtimedwait does not give up (EAGAIN).
    timed_wait(sig, None)?.ok_or(Errno::EAGAIN)
}

/// sigtimedwait(2) for `sig` with `timeout` (None: none), again after EINTR; `Ok(None)` when
/// the timeout passed (EAGAIN).
fn timed_wait(sig: i32, timeout: Option<libc::timespec>) -> Result<Option<Pending>, Errno> {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(named(sig)?);
    let ts = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value of this plain C type.
        let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // libc: neither rustix (outside `runtime`) nor nix has sigtimedwait.
        // SAFETY: set and si are valid for the duration of the call; ts is null or points
        // at `timeout`, which outlives it.
        let got = unsafe { libc::sigtimedwait(set.as_ref(), &mut si, ts) };
        if got < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::EAGAIN => return Ok(None),
                e => return Err(e),
            }
        }
        // SAFETY: sigtimedwait filled the siginfo of the signal it returned;
        // every signal's siginfo has si_pid at this offset (kill and SIGCHLD
        // layouts share it).
        let pid = unsafe { si.si_pid() };
        return Ok(Some(Pending { signo: got, pid }));
    }
}

/// pause(2) until the process ends (another thread exits the group or
/// execs): for a thread that must only wait.
pub fn pause_forever() -> ! {
    loop {
        rustix::event::pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_the_x86_64_ones() {
        assert_eq!(
            (SIGTRAP, SIGKILL, SIGUSR1, SIGSEGV, SIGTERM, SIGCHLD, SIGCONT, SIGSTOP),
            (5, 9, 10, 11, 15, 17, 18, 19)
        );
    }

    #[test]
    fn ignore_refuses_what_cannot_be_ignored() {
        for sig in [0, -1, SIGKILL, SIGSTOP, SIGRTMAX + 1] {
            assert_eq!(ignore(sig), Err(Errno::EINVAL), "signal {sig}");
        }
    }

    #[test]
    fn a_blocked_signal_is_taken_once() {
        // In a thread of its own: the mask and the pending set are per thread.
        std::thread::spawn(|| {
            block(SIGUSR1).unwrap();
            assert_eq!(take_pending(SIGUSR1), Ok(None));
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGUSR1).unwrap();
            let me = rustix::process::getpid().as_raw_nonzero().get();
            assert_eq!(
                take_pending(SIGUSR1),
                Ok(Some(Pending {
                    signo: SIGUSR1,
                    pid: me
                }))
            );
            assert_eq!(take_pending(SIGUSR1), Ok(None));
        })
        .join()
        .unwrap();
    }
}
