//! Announcing kernel waits: when switched on (by the harness, in a case
//! process), every wait-family call and pidfd exit poll writes one line
//! before it enters the kernel and one after it leaves, to a pipe the
//! supervisor drains while the case runs. On a timeout the supervisor knows
//! whether the case was stuck inside such a call (a kernel that did not
//! return: FAIL) or elsewhere (the harness's own hang: BROKEN).
//!
//! Off by default: the fuzzers and the supervisor itself never announce.
//! The switch is process memory, so children made by fork/clone3 inherit
//! it, and CLONE_VM children share it; each line names the caller's pid and
//! tid. A line is one write(2) below PIPE_BUF, so lines from several
//! processes on the same pipe never interleave.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use serde::{Deserialize, Serialize};

/// The fd announcements go to; -1 when off.
static FD: AtomicI32 = AtomicI32::new(-1);

/// One announcement line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// "enter" or "left"
    pub wc_wait: String,
    pub pid: i32,
    pub tid: i32,
    /// the call as C source (only on "enter")
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub call: String,
    /// the pidfd a poll waits on (-1 for none), for the supervisor to name
    /// its process from /proc/<pid>/fdinfo
    #[serde(default = "minus_one")]
    pub pidfd: RawFd,
}

impl Mark {
    /// Thread `tid` of `pid` enters `call` (polling `pidfd`, -1 for none).
    pub fn enter(pid: i32, tid: i32, call: String, pidfd: RawFd) -> Mark {
        Mark {
            wc_wait: ENTER.into(),
            pid,
            tid,
            call,
            pidfd,
        }
    }

    /// Thread `tid` of `pid` has left its call.
    pub fn left(pid: i32, tid: i32) -> Mark {
        Mark {
            wc_wait: LEFT.into(),
            ..Mark::enter(pid, tid, String::new(), -1)
        }
    }

    /// The mark as one JSON line (without the newline).
    pub fn line(&self) -> String {
        serde_json::to_string(self).expect("a mark serialises")
    }
}

/// This thread's (pid, tid).
fn me() -> (i32, i32) {
    (
        rustix::process::getpid().as_raw_nonzero().get(),
        super::thread::gettid(),
    )
}

fn minus_one() -> RawFd {
    -1
}

pub const ENTER: &str = "enter";
pub const LEFT: &str = "left";

/// Announce on `fd` from now on (`None`: stop). The fd must stay open
/// while announcing is on.
pub fn announce_to(fd: Option<RawFd>) {
    FD.store(fd.unwrap_or(-1), Ordering::SeqCst);
}

/// Whether announcing is on.
pub fn on() -> bool {
    FD.load(Ordering::Relaxed) >= 0
}

fn write_mark(fd: RawFd, m: &Mark) {
    let mut line = m.line();
    line.push('\n');
    if line.len() <= 4096 {
        // SAFETY: fd was handed to announce_to, which requires it to
        // stay open while announcing is on.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = rustix::io::write(bfd, line.as_bytes());
    }
}

/// Says "left" when dropped (also on unwinding).
pub struct Inside {
    fd: RawFd,
}

impl Drop for Inside {
    fn drop(&mut self) {
        if self.fd >= 0 {
            let (pid, tid) = me();
            write_mark(self.fd, &Mark::left(pid, tid));
        }
    }
}

/// Announce entering `call` (spelled only when announcing is on); the
/// returned guard announces leaving it.
pub fn enter(call: impl FnOnce() -> String, pidfd: Option<BorrowedFd<'_>>) -> Inside {
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let (pid, tid) = me();
        let m = Mark::enter(pid, tid, call(), pidfd.map_or(-1, |fd| fd.as_raw_fd()));
        write_mark(fd, &m);
    }
    Inside { fd }
}

/// Which threads are inside an announced call after these lines, in the
/// order they entered: (pid, tid, call, pidfd) of each "enter" not followed
/// by a "left" of the same tid. Lines that are not marks are ignored.
pub fn inside(lines: &str) -> Vec<Mark> {
    let mut open: Vec<Mark> = Vec::new();
    for l in lines.lines() {
        let Ok(m) = serde_json::from_str::<Mark>(l) else {
            continue;
        };
        // A tid is in at most one call: the last enter wins.
        open.retain(|o| !(o.tid == m.tid && o.pid == m.pid));
        if m.wc_wait == ENTER {
            open.push(m);
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_follows_enter_and_left_per_thread() {
        let e = |pid, tid, call: &str| Mark::enter(pid, tid, call.into(), -1).line();
        let l = |pid, tid| Mark::left(pid, tid).line();
        let text = [
            e(10, 10, "waitpid(-1, &st, 0)"),
            l(10, 10),
            "{\"status\":\"pass\",\"detail\":\"\"}".into(),
            e(10, 11, "waitid(P_ALL, 0, &si, WEXITED)"),
            e(12, 12, "poll(pidfd 5, POLLIN)"),
            l(12, 12),
            "not json".into(),
        ]
        .join("\n");
        let open = inside(&text);
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!((open[0].pid, open[0].tid), (10, 11));
        assert_eq!(open[0].call, "waitid(P_ALL, 0, &si, WEXITED)");
        assert!(inside("").is_empty());
    }

    #[test]
    fn a_result_line_is_not_a_mark() {
        assert!(serde_json::from_str::<Mark>("{\"status\":\"pass\",\"detail\":\"\"}").is_err());
    }
}
