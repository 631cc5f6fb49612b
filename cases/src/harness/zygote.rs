//! The fork server: case processes forked from a warmed-up parent instead
//! of a re-exec of the case binary per case (about 130 ms per exec inside a
//! TCG guest, most of a VM run).
//!
//! # Design: a single-threaded zygote, children made with CLONE_PARENT
//!
//! The test process (T) runs libtest-mimic with one thread per trial, so it
//! is multi-threaded while cases run. fork() there would copy whatever lock
//! another thread holds at that instant (libtest's stdout lock while it
//! prints a result, the stderr lock, allocator and std internals) into a
//! child that then runs arbitrary case code: a deadlock waiting to happen.
//! So T forks one zygote (Z) while it is still single-threaded, right after
//! the probe and before libtest starts its threads. Z holds the whole case
//! table and the probe in memory, and never starts a thread; a fork of Z is
//! a copy of a single-threaded process, in which the case body may do
//! anything (allocate, spawn threads, print), exactly as after the exec it
//! replaces.
//!
//! T's trial threads talk to Z over one SOCK_SEQPACKET socketpair, one
//! exchange at a time (a mutex): the request is the case name with the
//! write ends of the case's stdout and stderr pipes attached (SCM_RIGHTS);
//! the reply is the new pid (or -errno). Z makes the case process (C) with
//! `clone3(CLONE_PARENT)`: C is T's child, not Z's, so everything after the
//! spawn is what it was with exec: T holds C by a pidfd (opened on its own
//! unreaped child, race-free), watches it with the timeout, kills its tree
//! and reaps it by pidfd; orphans of a killed C come to T (a subreaper); C's
//! exit_signal is Z's, SIGCHLD; C's death signal follows T's main thread
//! (Z's parent). Z itself never has a child and never waits.
//!
//! In C, before the case runs: stdin is /dev/null, stdout and stderr are the
//! pipes, every other fd is closed (what exec did with the close-on-exec
//! fds), C leads its own process group, then [`super::engine`]'s case
//! process code runs (subreaper, death signal, announce channel, the body,
//! the leak check, the result line), as after an exec. What differs from an
//! exec: no WAITCONF_PROBE in C's environment (the probe is in memory), and
//! C's argv is T's.
//!
//! `WAITCONF_SPAWN=exec` keeps the exec path (for comparison, and as a
//! fallback); a zygote that cannot start (T already multi-threaded, a
//! failed socketpair) falls back to it with a note on stderr.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;

use rustix::net::{
    recvmsg, sendmsg, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use super::case::Case;
use super::config::Probe;
use super::executor::{self, Proc, Supervised};
use crate::sys::clone::{
    self, clone3, flags::CLONE_PARENT, flags::CLONE_PIDFD, Clone3Request, Program,
};

/// The longest case name a request carries.
const MAX_NAME: usize = 4096;

/// The running fork server, as the test process holds it.
pub struct Zygote {
    proc: Proc,
    sock: Mutex<Option<OwnedFd>>,
}

/// What a case process runs once it is set up: the engine's case process
/// code for this case and probe (it never returns).
pub type RunCase = fn(&Case, Probe) -> !;

impl Zygote {
    /// Fork the zygote. The calling process must be single-threaded (see
    /// the module doc).
    pub fn start(cases: Vec<Case>, probe: Probe, run: RunCase) -> Result<Zygote, String> {
        if !crate::sys::proc::single_threaded() {
            return Err("the test process is already multi-threaded".into());
        }
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        let parent = std::process::id();
        // Nothing buffered may be copied into Z (and from there into every
        // case process).
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let req = Clone3Request::new(CLONE_PIDFD, libc::SIGCHLD as u64);
        let z = clone3(
            &req,
            Program::Run(Box::new(move || {
                // Every fd T holds, T's end of this socket first (T's death, or
                // its drop, is then EOF here) and T's ends of the other servers'
                // sockets (which would otherwise keep those open after T lets
                // go): Z keeps stdio and its own end only.
                // SAFETY: Z's private copies, owned by nothing in Z (the OwnedFds
                // stay in T's frames, which Z never returns to).
                close_from_except(3, Some(theirs.as_raw_fd()));
                serve(theirs, cases, probe, parent, run)
            })),
        );
        let mut z = z.map_err(|e| format!("clone3 (zygote): {e}"))?;
        let fd = z.pidfd.take().ok_or("clone3 gave no pidfd")?;
        Ok(Zygote {
            proc: Proc::from_pidfd(z.pid, fd),
            sock: Mutex::new(Some(ours)),
        })
    }

    /// The zygote's pid.
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Fork the case process for `name`: a child of the calling process,
    /// with its stdout and stderr piped to us.
    pub fn spawn(&self, name: &str) -> Result<Supervised, String> {
        let (out_r, out_w) = clone::pipe();
        let (err_r, err_w) = clone::pipe();
        // The watch drains them only every DRAIN_TICK while the case runs.
        crate::sys::io::widen_pipe(&out_r);
        crate::sys::io::widen_pipe(&err_r);
        let reply = {
            let guard = self.sock.lock().unwrap_or_else(|e| e.into_inner());
            let sock = guard.as_ref().ok_or("the fork server was stopped")?;
            let fds = [out_w.as_fd(), err_w.as_fd()];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut cmsg = SendAncillaryBuffer::new(&mut space);
            cmsg.push(SendAncillaryMessage::ScmRights(&fds));
            sendmsg(
                sock,
                &[IoSlice::new(name.as_bytes())],
                &mut cmsg,
                SendFlags::NOSIGNAL,
            )
            .map_err(|e| format!("fork server request: {e}"))?;
            let mut b = [0u8; 4];
            match rustix::io::read(sock, &mut b) {
                Ok(4) => i32::from_le_bytes(b),
                Ok(_) => return Err(format!("the fork server (pid {}) is gone", self.pid())),
                Err(e) => return Err(format!("fork server reply: {e}")),
            }
        };
        // Only the case process holds the write ends now: its exit (and its
        // leaked children's) ends the pipes.
        drop((out_w, err_w));
        if reply <= 0 {
            return Err(format!(
                "clone3 (case process): {}",
                crate::sys::Errno(-reply)
            ));
        }
        // Our own unreaped child (CLONE_PARENT): the pid is still its own.
        let proc =
            Proc::open(reply).map_err(|e| format!("pidfd_open(case process {reply}): {e}"))?;
        Ok(Supervised {
            proc,
            stdout: out_r,
            stderr: err_r,
        })
    }

    /// Stop the server (EOF on its socket) and reap it. Returns how it
    /// ended when that was not a clean exit.
    pub fn stop(self) -> Option<String> {
        drop(self.sock.lock().unwrap_or_else(|e| e.into_inner()).take());
        if !self
            .proc
            .await_exit(Some(std::time::Duration::from_secs(5)))
        {
            let _ = self.proc.kill();
        }
        match self.proc.reap() {
            crate::sys::wait::WaitOutcome::Reported {
                event: crate::sys::wait::Event::Exited(0),
                ..
            } => None,
            other => Some(format!("the fork server ended: {other}")),
        }
    }
}

/// Several fork servers, taken in turn: one server makes one case process at
/// a time (a request, a fork, a reply), and every trial thread queued on it
/// (perf shows them contending for its mutex). With one server per CPU the
/// harness alone (every body left out) took 0.78 of the time in a TCG guest
/// (paired rounds: docs/measurements.md, sixth session). Each server is forked
/// from the still single-threaded test process, holds only its own socket,
/// and is stopped in the reverse order.
pub struct Pool {
    servers: Vec<Zygote>,
    next: std::sync::atomic::AtomicUsize,
}

impl Pool {
    /// Start `n` servers (at least one). A server after the first that cannot
    /// start is left out with a note; the first one's failure is the error.
    pub fn start(n: usize, cases: &[Case], probe: &Probe, run: RunCase) -> Result<Pool, String> {
        let mut servers = Vec::new();
        for i in 0..n.max(1) {
            match Zygote::start(cases.to_vec(), probe.clone(), run) {
                Ok(z) => servers.push(z),
                Err(e) if i == 0 => return Err(e),
                Err(e) => {
                    eprintln!(
                        "wait-conformance: fork server {i} did not start ({e}): going on with {i}"
                    );
                    break;
                }
            }
        }
        Ok(Pool {
            servers,
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// [`Zygote::spawn`] on the next server in turn.
    pub fn spawn(&self, name: &str) -> Result<Supervised, String> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.servers.len();
        self.servers[i].spawn(name)
    }

    /// Stop every server, the last started first (an earlier one's socket is
    /// then held by T alone). Returns how each ended that did not exit cleanly.
    pub fn stop(self) -> Vec<String> {
        self.servers
            .into_iter()
            .rev()
            .filter_map(Zygote::stop)
            .collect()
    }
}

/// How many fork servers a run starts: one per CPU the test process may use, at most
/// [`MAX_SERVERS`].
pub fn pool_size() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_SERVERS)
}

/// The most fork servers a run starts.
pub const MAX_SERVERS: usize = 4;

/// Z's loop: one request, one case process, one reply; until EOF.
fn serve(sock: OwnedFd, cases: Vec<Case>, probe: Probe, parent: u32, run: RunCase) -> i32 {
    if executor::isolate_self(Some(parent), false).is_err() {
        return 1;
    }
    // Z's own fds: stdin /dev/null (inherited by every case process, as the
    // exec path gives it), nothing but the socket beyond stdio.
    if let Ok(null) = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
    loop {
        let mut name = vec![0u8; MAX_NAME];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let got = match recvmsg(
            &sock,
            &mut [IoSliceMut::new(&mut name)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => m.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return 1,
        };
        if got == 0 {
            return 0;
        }
        let mut fds: Vec<OwnedFd> = Vec::new();
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(r) = m {
                fds.extend(r);
            }
        }
        let name = String::from_utf8_lossy(&name[..got]).into_owned();
        let reply: i32 = match (
            cases.iter().find(|c| c.name == name),
            <[OwnedFd; 2]>::try_from(fds),
        ) {
            (Some(case), Ok([out, err])) => fork_case(case, &probe, parent, run, out, err),
            (None, _) => -libc::ENOENT,
            (_, Err(_)) => -libc::EBADF,
        };
        if rustix::io::write(&sock, &reply.to_le_bytes()).is_err() {
            return 1;
        }
    }
}

/// Make one case process (a child of T, see the module doc). Returns its
/// pid or -errno.
fn fork_case(
    case: &Case,
    probe: &Probe,
    parent: u32,
    run: RunCase,
    out: OwnedFd,
    err: OwnedFd,
) -> i32 {
    let case = case.clone();
    let probe = probe.clone();
    let (out_raw, err_raw) = (out.as_raw_fd(), err.as_raw_fd());
    let body = move || -> i32 {
        // SAFETY: C's private copies of the two write ends Z received; the
        // OwnedFds in Z's frames are never dropped in C (it never returns
        // there), so these are the only owners.
        let _ = rustix::stdio::dup2_stdout(unsafe { std::os::fd::BorrowedFd::borrow_raw(out_raw) });
        let _ = rustix::stdio::dup2_stderr(unsafe { std::os::fd::BorrowedFd::borrow_raw(err_raw) });
        close_from(3);
        // Subreaper, death signal armed before checking that T is still
        // the parent (else nobody supervises: exit), own process group.
        if executor::isolate_self(Some(parent), true).is_err() {
            return 1;
        }
        run(&case, probe)
    };
    // CLONE_PARENT: the case process is T's child. Its exit_signal is Z's
    // (SIGCHLD); the argument is ignored.
    let req = Clone3Request::new(CLONE_PARENT, 0);
    let r = clone3(&req, Program::Run(Box::new(body)));
    drop((out, err));
    match r {
        Ok(sp) => sp.pid,
        Err(e) => -e.0,
    }
}

/// Close every fd from `low` up (what exec does with close-on-exec fds; the
/// case process keeps only stdio).
fn close_from(low: u32) {
    close_from_except(low, None)
}

/// Close every fd from `low` up but `keep`.
fn close_from_except(low: u32, keep: Option<i32>) {
    let close_range = |first: u32, last: u32| -> bool {
        if first > last {
            return true;
        }
        // SAFETY: close_range(2) takes three integers; neither rustix nor nix
        // wraps it. Called in a fresh process (a case process, or a fork server
        // right after its fork) in which nothing owns an fd in the range (the
        // OwnedFds copied from the parent's frames are never dropped here).
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) == 0 }
    };
    let done = match keep {
        // k >= low >= 0, so k - 1 and k + 1 stay in range.
        Some(k) if k >= low as i32 => {
            close_range(low, k as u32 - 1) && close_range(k as u32 + 1, u32::MAX)
        }
        _ => close_range(low, u32::MAX),
    };
    if !done {
        // Before 5.9: walk /proc/self/fd.
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for fd in fds
            .into_iter()
            .filter(|&fd| fd >= low as i32 && Some(fd) != keep)
        {
            // SAFETY: as above; an fd already closed (the directory's own)
            // gives EBADF, which is ignored.
            unsafe { libc::close(fd) };
        }
    }
}
