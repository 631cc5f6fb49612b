//! The one executor and hygiene layer: how the harness and the fuzz
//! executors isolate a process, supervise it, kill its tree, reap it and
//! check what it left behind.
//!
//! Every process is held by a pidfd ([`Proc`]): a pidfd stays valid across
//! reparenting and pid reuse, polls readable when the process exits, and is
//! the target of every signal sent from here. Every reap is a focused wait
//! (`waitid(P_PIDFD, fd, WEXITED | __WALL)`) on a known process: the
//! feature under test hides children from generic waits (`wait4(-1)`,
//! `waitid(P_ALL)`), so a `wait(-1)` loop could neither see them nor be
//! trusted not to steal a case's own child. Leaks are read from
//! `/proc/<pid>/task/*/children`, zombies included.
//!
//! The pieces:
//! - [`isolate_self`]: what a supervising process (a case process, the fuzz
//!   worker, the fork server) does first: child subreaper, SIGKILL when its
//!   parent dies, its own process group;
//! - [`Supervised`]: a spawned process with its stdout and stderr pipes,
//!   watched with a timeout ([`Supervised::watch`]);
//! - [`kill_descendants`], [`kill_tree`], [`reap`], [`reap_children`],
//!   [`kill_and_reap`]: the kill-tree-and-reap variants, one each;
//! - [`leftovers`]: the children a process still has, with their states.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys::wait::{wait, WaitCall, WaitOpts, WaitOutcome, WaitTarget};
use crate::sys::{pidfd, proc, Errno};

/// A process held by a pidfd.
#[derive(Debug)]
pub struct Proc {
    pid: i32,
    fd: OwnedFd,
}

impl Proc {
    /// pidfd_open(pid). Race-free for an unreaped child of the caller (its
    /// pid cannot be reused before the caller reaps it); for any other
    /// process the caller must know the pid is still the one it means.
    pub fn open(pid: i32) -> Result<Proc, Errno> {
        Ok(Proc {
            pid,
            fd: pidfd::open(pid, false)?,
        })
    }

    /// A process whose pidfd the caller already has (clone3's CLONE_PIDFD).
    pub fn from_pidfd(pid: i32, fd: OwnedFd) -> Proc {
        Proc { pid, fd }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// SIGKILL through the pidfd (never misdirected to a reused pid).
    pub fn kill(&self) -> Result<(), Errno> {
        self.signal(libc::SIGKILL)
    }

    /// Any signal through the pidfd.
    pub fn signal(&self, sig: i32) -> Result<(), Errno> {
        pidfd::send_signal(&self.fd, sig)
    }

    /// Whether the process has exited (it may still be an unreaped zombie).
    pub fn has_exited(&self) -> bool {
        pidfd::has_exited(self.fd.as_fd())
    }

    /// Wait up to `timeout` (`None`: forever) for the exit. Returns whether
    /// it exited.
    pub fn await_exit(&self, timeout: Option<Duration>) -> bool {
        pidfd::poll_exit(self.fd.as_fd(), timeout).unwrap_or(false)
    }

    /// Reap it (the caller must be its parent): a blocking focused wait,
    /// `__WALL` so that a child with exit_signal 0 is reaped too.
    pub fn reap(&self) -> WaitOutcome {
        let target = WaitTarget::with_pidfd(self.pid, self.fd.as_fd());
        wait(
            WaitCall::WaitidPidfd,
            target,
            WaitOpts(WaitOpts::WEXITED | WaitOpts::WALL),
        )
    }
}

/// What a supervising process does before anything else: become a child
/// subreaper (orphans below it come to it, never to init), ask for SIGKILL
/// when its parent thread dies, and (`own_group`) lead its own process
/// group, so that waits on the parent's group never consider it. `parent`
/// is the pid it must still have: when the parent died before the death
/// signal was armed, the process has already been reparented and must not
/// run.
pub fn isolate_self(parent: Option<u32>, own_group: bool) -> Result<(), String> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    if let Some(p) = parent {
        if std::os::unix::process::parent_id() != p {
            return Err(format!("parent {p} died before PR_SET_PDEATHSIG"));
        }
    }
    if own_group {
        own_process_group().map_err(|e| format!("setpgid(0, 0): {e}"))?;
    }
    Ok(())
}

/// Make the calling process the leader of a process group of its own
/// (`setpgid(0, 0)`).
pub fn own_process_group() -> Result<(), Errno> {
    rustix::process::setpgid(None, None).map_err(Errno::from)
}

/// SIGKILL every descendant of `root` through a pidfd opened first (it stays
/// valid across reparenting and pid reuse); three passes catch what was
/// forked meanwhile. Returns them, for [`reap`].
pub fn kill_descendants(root: i32) -> Vec<Proc> {
    let mut procs: Vec<Proc> = Vec::new();
    for _ in 0..3 {
        for d in proc::descendants(root) {
            if procs.iter().all(|p| p.pid != d) {
                if let Ok(p) = Proc::open(d) {
                    let _ = p.kill();
                    procs.push(p);
                }
            }
        }
    }
    procs
}

/// SIGKILL a process and everything below it, then reap the descendants,
/// which come to the caller (a subreaper) once their own parents are gone.
/// The root itself is left for its parent to reap. Returns what could not
/// be reaped (an unkillable task), described.
pub fn kill_tree(root: &Proc) -> Vec<String> {
    let below = kill_descendants(root.pid);
    let _ = root.kill();
    reap(below)
}

/// How long a SIGKILLed process gets to die before it counts as stuck in the
/// kernel, for all the processes of one [`reap`] together.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long the parent of a zombie that is not ours yet gets to finish
/// exiting.
const PARENT_GRACE: Duration = Duration::from_millis(500);

/// Processes known to be stuck in the kernel: they outlived [`KILL_GRACE`]
/// after a SIGKILL, or a row proved that they can never exit
/// ([`mark_stuck`]). Later reaps in this process report them without waiting
/// for them again. Each is held as (pid, start time), so a pid reused after
/// the stuck task finally went away is not mistaken for it.
static STUCK: std::sync::Mutex<Vec<(i32, u64)>> = std::sync::Mutex::new(Vec::new());

/// Record that `pid` is stuck in the kernel (see [`STUCK`]).
pub fn mark_stuck(pid: i32) {
    let Some(start) = proc::start_time(pid) else {
        return;
    };
    let mut s = STUCK.lock().unwrap_or_else(|e| e.into_inner());
    if !s.contains(&(pid, start)) {
        s.push((pid, start));
    }
}

/// Whether `pid` is (still the same) process known to be stuck.
pub fn is_stuck(pid: i32) -> bool {
    let Some(start) = proc::start_time(pid) else {
        return false;
    };
    STUCK
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&(pid, start))
}

/// The pids known to be stuck that still exist (what a case process hands
/// to the test process with its result).
pub fn stuck_pids() -> Vec<i32> {
    let s = STUCK.lock().unwrap_or_else(|e| e.into_inner()).clone();
    s.into_iter()
        .filter(|&(pid, start)| proc::start_time(pid) == Some(start))
        .map(|(pid, _)| pid)
        .collect()
}

/// Reap the given processes (children of the caller by now, or soon: a
/// subreaper inherits them when their parents die) with focused waits; give
/// them [`KILL_GRACE`] together to die (none to a process already known to
/// be stuck). Returns what is left, described; what outlived the grace is
/// recorded as stuck.
pub fn reap(procs: Vec<Proc>) -> Vec<String> {
    let mut left = Vec::new();
    let me = std::process::id() as i32;
    let deadline = Instant::now() + KILL_GRACE;
    for p in procs {
        let grace = if is_stuck(p.pid) {
            Duration::ZERO
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        if !p.await_exit(Some(grace)) {
            mark_stuck(p.pid);
            left.push(proc::stuck_report(p.pid));
            continue;
        }
        // It has exited; it becomes our child once its own parent (also
        // killed) has exited and it is reparented. ECHILD means someone else
        // is still its parent or it is already gone: retry while its parent
        // is alive. Bounded: a parent that does not finish exiting (stuck in
        // the kernel) keeps its zombie; name both and move on.
        for _ in 0..8 {
            match p.reap() {
                WaitOutcome::Failed(Errno::ECHILD) => {
                    let Some(pp) = proc::ppid(p.pid) else { break };
                    if pp == me {
                        continue;
                    }
                    let parent_gone = !is_stuck(pp)
                        && Proc::open(pp)
                            .map(|pf| pf.await_exit(Some(PARENT_GRACE)))
                            .unwrap_or(true);
                    if !parent_gone {
                        left.push(format!(
                            "pid {} is held by its parent {}",
                            p.pid,
                            proc::stuck_report(pp)
                        ));
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    left
}

/// Kill and reap every child of the calling process but `keep`; describe
/// each (killed and reaped), then what could not be reaped.
pub fn reap_children(keep: &[i32]) -> Vec<String> {
    let me = std::process::id() as i32;
    let procs: Vec<Proc> = proc::children(me)
        .into_iter()
        .filter(|c| !keep.contains(c))
        .filter_map(|c| Proc::open(c).ok())
        .inspect(|p| {
            let _ = p.kill();
        })
        .collect();
    let mut out: Vec<String> = procs
        .iter()
        .map(|p| format!("pid {} (killed and reaped)", p.pid))
        .collect();
    out.extend(reap(procs));
    out
}

/// Kill and reap the children `list` names (called again after each round,
/// until it names none; at most 64 rounds): SIGKILL through a pidfd, then a
/// focused blocking wait with `__WALL`. Returns the pids the waits
/// reported. The fuzz executors' hygiene pass: `list` is their own view of
/// their children (minus bystanders), and a child the kernel reaps by
/// itself (autoreap, SIGCHLD ignored) is simply not reported.
pub fn kill_and_reap(list: impl Fn() -> Vec<i32>) -> Vec<i32> {
    let mut reaped = Vec::new();
    for _round in 0..64 {
        let kids = list();
        if kids.is_empty() {
            break;
        }
        for pid in kids {
            // Our unreaped child: the pid is still its own.
            let Ok(p) = Proc::open(pid) else { continue };
            let _ = p.kill();
            if let WaitOutcome::Reported { .. } = p.reap() {
                reaped.push(pid);
            }
        }
    }
    reaped
}

/// SIGKILL each process and wait until each has exited (none is reaped:
/// that stays with its parent).
pub fn kill_and_await<'a>(fds: impl IntoIterator<Item = BorrowedFd<'a>> + Clone) {
    for fd in fds.clone() {
        let _ = pidfd::send_signal(fd, libc::SIGKILL);
    }
    for fd in fds {
        let _ = pidfd::poll_exit(fd, None);
    }
}

/// The children `pid` still has (all its threads, zombies included), each
/// as `pid(state)`.
///
/// A child listed in /proc but gone (or dead, X, being released) when its
/// state is read was released by the kernel in between (CLONE_AUTOREAP, SIGCHLD ignored: nobody reaps
/// those), so it is not a leftover. Counting it made a row flap on a loaded
/// guest with "left children behind: N(?)".
pub fn leftovers(pid: i32) -> Vec<String> {
    proc::children(pid)
        .into_iter()
        .filter_map(|p| {
            proc::state(p)
                .filter(|&s| s != 'X')
                .map(|s| format!("{p}({s})"))
        })
        .collect()
}

/// The leak check of a process that is about to report: kill and reap
/// whatever is still below it. `None` when nothing was; else the note for
/// the report ("left children behind: ...", and what was unkillable).
pub fn check_no_leftovers() -> Option<String> {
    let me = std::process::id() as i32;
    let states = leftovers(me);
    if states.is_empty() {
        return None;
    }
    let stuck = reap(kill_descendants(me));
    let mut note = format!("left children behind: {}", states.join(" "));
    if !stuck.is_empty() {
        note.push_str(&format!("; unkillable: {}", stuck.join("; ")));
    }
    Some(note)
}

/// A spawned process, held by its pidfd, with the read ends of its stdout
/// and stderr.
pub struct Supervised {
    pub proc: Proc,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// What [`Supervised::watch`] saw.
pub struct Watched {
    /// it exited within the timeout
    pub exited: bool,
    pub out: Vec<u8>,
    pub err: Vec<u8>,
}

impl Supervised {
    /// Wait up to `timeout` for the process to exit, draining both pipes
    /// meanwhile (a full pipe must never block it), then take what is
    /// ready in them without waiting for writers that may linger (a leaked
    /// grandchild could still hold them).
    pub fn watch(&mut self, timeout: Duration) -> Watched {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let exited = watch_pipes(
            self.proc.pidfd(),
            timeout,
            &self.stdout,
            &mut out,
            &self.stderr,
            &mut err,
        );
        out.extend(drain(&self.stdout));
        err.extend(drain(&self.stderr));
        Watched { exited, out, err }
    }
}

/// One read into `buf`; false on EOF or error (the pipe is done).
fn read_into(fd: &OwnedFd, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    loop {
        match rustix::io::read(fd, &mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// How often a watch drains the pipes while the process runs. Meanwhile its
/// lines (the case's announced waits, two per wait call) wait in the pipe,
/// whose capacity [`crate::sys::io::widen_pipe`] raises: waking the
/// supervisor for every line would cost a switch between the two processes
/// per line, which under TCG flushes the whole TLB. A process that fills the
/// pipe between two drains blocks until the next one.
pub const DRAIN_TICK: Duration = Duration::from_millis(50);

/// Wait up to `timeout` for the process behind `fd` to exit, draining its
/// pipes every [`DRAIN_TICK`] meanwhile. Returns whether it exited.
fn watch_pipes(
    fd: BorrowedFd<'_>,
    timeout: Duration,
    out: &OwnedFd,
    out_buf: &mut Vec<u8>,
    err: &OwnedFd,
    err_buf: &mut Vec<u8>,
) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = Instant::now() + timeout;
    let (mut out_open, mut err_open) = (true, true);
    loop {
        let now = Instant::now();
        if now >= deadline {
            return pidfd::has_exited(fd);
        }
        let wait = (deadline - now).min(DRAIN_TICK);
        let ts = Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: wait.subsec_nanos() as i64,
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return pidfd::poll_exit(fd, Some(deadline - now)).unwrap_or(false),
        }
        if !fds[0].revents().is_empty() {
            return true;
        }
        if out_open {
            out_open = drain_into(out, out_buf);
        }
        if err_open {
            err_open = drain_into(err, err_buf);
        }
    }
}

/// Read what `fd` holds now into `buf`, without waiting; false once the pipe
/// is done (EOF or an error).
fn drain_into(fd: &OwnedFd, buf: &mut Vec<u8>) -> bool {
    while crate::sys::io::readable_within(fd, 0) {
        if !read_into(fd, buf) {
            return false;
        }
    }
    true
}

/// What is in a pipe right now, without waiting.
pub fn drain(fd: &OwnedFd) -> Vec<u8> {
    let mut buf = Vec::new();
    drain_into(fd, &mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::clone::{clone3, Clone3Request, Program};
    use crate::sys::wait::Event;

    /// A child (held by its pidfd) that blocks until a byte is written to
    /// `release`'s pipe, then exits with `code`. (Closing the write end is
    /// no release: the child, a copy of this process, holds one too.)
    fn child_awaiting(release: &OwnedFd, code: i32) -> Proc {
        let req = Clone3Request::new(crate::sys::clone::flags::CLONE_PIDFD, libc::SIGCHLD as u64);
        let mut sp = clone3(
            &req,
            Program::AwaitThenExit {
                fd: std::os::fd::AsRawFd::as_raw_fd(release),
                code,
            },
        )
        .expect("clone3");
        let fd = sp.pidfd.take().expect("CLONE_PIDFD");
        Proc::from_pidfd(sp.pid, fd)
    }

    #[test]
    fn a_child_is_reaped_by_its_pidfd_with_its_status() {
        let (r, w) = crate::sys::clone::pipe();
        let p = child_awaiting(&r, 3);
        assert!(!p.has_exited());
        rustix::io::write(&w, b"x").unwrap();
        assert!(p.await_exit(Some(Duration::from_secs(10))));
        assert_eq!(
            p.reap(),
            WaitOutcome::Reported {
                pid: p.pid(),
                event: Event::Exited(3)
            }
        );
        // Reaped: a second focused wait has nothing to report.
        assert_eq!(p.reap(), WaitOutcome::Failed(Errno::ECHILD));
    }

    #[test]
    fn kill_and_reap_takes_exactly_the_listed_children() {
        let (r, _w) = crate::sys::clone::pipe();
        let a = child_awaiting(&r, 0);
        let b = child_awaiting(&r, 0);
        let listed = [a.pid()];
        let reaped = kill_and_reap(|| {
            proc::children(std::process::id() as i32)
                .into_iter()
                .filter(|p| listed.contains(p))
                .collect()
        });
        assert_eq!(reaped, vec![a.pid()]);
        // b was not listed: still running, still ours.
        assert!(!b.has_exited());
        b.kill().unwrap();
        assert_eq!(
            b.reap(),
            WaitOutcome::Reported {
                pid: b.pid(),
                event: Event::Killed(libc::SIGKILL)
            }
        );
    }

    #[test]
    fn watch_times_out_on_a_live_process_and_sees_an_exit() {
        let (r, w) = crate::sys::clone::pipe();
        let (out_r, out_w) = crate::sys::clone::pipe();
        let (err_r, _err_w) = crate::sys::clone::pipe();
        let mut s = Supervised {
            proc: child_awaiting(&r, 0),
            stdout: out_r,
            stderr: err_r,
        };
        rustix::io::write(&out_w, b"hello\n").unwrap();
        let seen = s.watch(Duration::from_millis(50));
        assert!(!seen.exited);
        assert_eq!(seen.out, b"hello\n");
        assert!(seen.err.is_empty());
        rustix::io::write(&w, b"x").unwrap();
        let seen = s.watch(Duration::from_secs(10));
        assert!(seen.exited);
        assert!(matches!(
            s.proc.reap(),
            WaitOutcome::Reported {
                event: Event::Exited(0),
                ..
            }
        ));
    }

    #[test]
    fn a_process_that_outlives_the_grace_is_known_stuck_until_it_is_gone() {
        // reap() does not kill: a live child stands in for one that a SIGKILL cannot end.
        let (r, w) = crate::sys::clone::pipe();
        let p = child_awaiting(&r, 0);
        let pid = p.pid();
        assert!(!is_stuck(pid));
        let left = reap(vec![Proc::open(pid).unwrap()]);
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].starts_with(&format!("pid {pid} ")), "{left:?}");
        assert!(is_stuck(pid));
        assert!(stuck_pids().contains(&pid));
        // Known stuck: reported again (without a second grace), still alive.
        assert_eq!(reap(vec![Proc::open(pid).unwrap()]).len(), 1);
        assert!(!p.has_exited());
        // Gone: no longer known (a reused pid would have another start time).
        rustix::io::write(&w, b"x").unwrap();
        assert!(p.await_exit(Some(Duration::from_secs(10))));
        assert!(matches!(
            p.reap(),
            WaitOutcome::Reported {
                event: Event::Exited(0),
                ..
            }
        ));
        assert!(!is_stuck(pid));
        assert!(!stuck_pids().contains(&pid));
    }
}
