//! Process hygiene for fuzz executions: signal masks, SIGCHLD disposition,
//! leftover children (reaped with focused waits only: generic waits cannot
//! see CLONE_WAIT_PID children), fd counts.

use std::os::fd::OwnedFd;

use crate::sys::wait::{wait, WaitCall, WaitOpts, WaitOutcome, WaitTarget};

/// The calling thread's signal mask, to restore later.
pub struct SavedMask(libc::sigset_t);

/// Block every blockable signal in the calling thread. A fuzzed
/// `exit_signal` (1..=64) is sent to the parent when the child exits; with
/// everything blocked it stays pending (see [`drain_pending_signals`])
/// instead of running a default action or an inherited handler. SIGKILL and
/// SIGSTOP cannot be blocked: callers route those through a disposable
/// process.
pub fn block_all_signals() -> SavedMask {
    // SAFETY: sigset_t is plain data; sigfillset/sigprocmask only write the
    // sets we pass, which live on this stack frame.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, &mut old);
        SavedMask(old)
    }
}

/// Put a mask saved by [`block_all_signals`] back.
pub fn restore_mask(m: SavedMask) {
    // SAFETY: m.0 is a valid sigset_t obtained from sigprocmask.
    unsafe {
        libc::sigprocmask(libc::SIG_SETMASK, &m.0, std::ptr::null_mut());
    }
}

/// Consume every pending signal (they are blocked, so nothing ran). Returns
/// the signal numbers taken.
pub fn drain_pending_signals() -> Vec<i32> {
    let mut taken = Vec::new();
    // SAFETY: plain-data sigsets on this frame; sigtimedwait with a zero
    // timeout only dequeues signals that are pending and blocked.
    unsafe {
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pending);
        if libc::sigpending(&mut pending) != 0 {
            return taken;
        }
        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        for _ in 0..4096 {
            let s = libc::sigtimedwait(&pending, std::ptr::null_mut(), &zero);
            if s <= 0 {
                break;
            }
            taken.push(s);
        }
    }
    taken
}

/// Whether SIGCHLD's action is SIG_IGN right now.
pub fn sigchld_ignored() -> bool {
    // SAFETY: querying the action (act = NULL) writes only `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old);
        old.sa_sigaction == libc::SIG_IGN
    }
}

/// Set SIGCHLD's action back to SIG_DFL (an exiting pid-namespace init that
/// shares our sighand leaves it at SIG_IGN: kernel/pid_namespace.c,
/// zap_pid_ns_processes).
pub fn restore_sigchld_default() {
    // SAFETY: a zeroed sigaction with SIG_DFL is a valid action.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGCHLD, &act, std::ptr::null_mut());
    }
}

/// Our own children right now (all threads), zombies included.
pub fn own_children() -> Vec<i32> {
    // Single-threaded (the usual case): one file, no directory walk.
    let pid = std::process::id() as i32;
    if let Ok(st) = std::fs::read_to_string("/proc/self/stat") {
        let threads = st.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(17)).and_then(|n| n.parse::<u32>().ok());
        if threads == Some(1) {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{pid}/children")) {
                return s.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            }
        }
    }
    crate::sys::proc::children(pid)
}

/// Kill and reap every child we have, with focused waits (`waitid(P_PID,
/// pid, WEXITED|__WALL)`), until /proc lists none. Returns the pids reaped.
pub fn reap_all_children() -> Vec<i32> {
    let mut reaped = Vec::new();
    for _round in 0..64 {
        let kids = own_children();
        if kids.is_empty() {
            break;
        }
        for pid in kids {
            // SAFETY: kill() with a pid that is our unreaped child: the pid
            // cannot be reused before we reap it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            let t = WaitTarget { pid, pidfd: -1, pgid: 0 };
            if let WaitOutcome::Reported { .. } = wait(WaitCall::WaitidPid, t, WaitOpts(WaitOpts::WEXITED | WaitOpts::WALL)) {
                reaped.push(pid);
            }
        }
    }
    reaped
}

/// The lowest free fd number: any fd leaked since the last call takes it
/// (the kernel always hands out the lowest free number), so comparing it
/// with a baseline detects a leak with two syscalls instead of a /proc walk.
pub fn lowest_free_fd() -> i32 {
    // SAFETY: F_DUPFD of fd 0 (or 2 when 0 is closed) gives a new fd we close
    // at once; no other code owns it.
    unsafe {
        let mut n = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0);
        if n < 0 {
            n = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 0);
        }
        if n >= 0 {
            libc::close(n);
        }
        n
    }
}

/// Number of open fds of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count().saturating_sub(1)).unwrap_or(0)
}

/// Mark this process a child subreaper: orphans below it come to it.
pub fn become_subreaper() -> Result<(), crate::sys::Errno> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(Into::into)
}

/// Ask for SIGKILL when the parent thread exits.
pub fn die_with_parent() {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
}

/// The calling thread's TLS base (x86_64 fs), for `CLONE_SETTLS` children:
/// instrumented fuzz builds read TLS in every function prologue
/// (`-sanitizer-coverage-stack-depth`), so a child must not start with fs=0.
pub fn current_tls() -> u64 {
    let mut addr: u64 = 0;
    // SAFETY: ARCH_GET_FS (0x1003) stores the fs base into the u64 we pass.
    unsafe {
        libc::syscall(libc::SYS_arch_prctl, 0x1003, &mut addr as *mut u64);
    }
    addr
}

/// fork(2) through glibc, so its atfork handlers make malloc usable in the
/// child of a multi-threaded parent (libFuzzer runs an RSS-watch thread).
/// The child runs `f` and exits with its return value.
pub fn fork_run(f: impl FnOnce() -> i32) -> Result<i32, crate::sys::Errno> {
    // SAFETY: in the child we only run `f` and exit without returning into
    // the caller's frames; glibc's fork handlers reset its internal locks.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(crate::sys::Errno::last());
    }
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        crate::sys::clone::exit_now(code, false);
    }
    Ok(pid)
}

/// Read exactly `buf.len()` bytes; false on EOF or error.
pub fn read_exact(fd: &OwnedFd, buf: &mut [u8]) -> bool {
    let mut off = 0;
    while off < buf.len() {
        match rustix::io::read(fd, &mut buf[off..]) {
            Ok(0) => return false,
            Ok(n) => off += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Write all of `buf`; false on error.
pub fn write_all(fd: &OwnedFd, buf: &[u8]) -> bool {
    let mut off = 0;
    while off < buf.len() {
        match rustix::io::write(fd, &buf[off..]) {
            Ok(n) => off += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Whether `fd` becomes readable within `ms` milliseconds (-1: wait forever).
pub fn readable_within(fd: &OwnedFd, ms: i32) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let ts = if ms < 0 { None } else { Some(Timespec { tv_sec: (ms / 1000) as i64, tv_nsec: ((ms % 1000) as i64) * 1_000_000 }) };
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, ts.as_ref()) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}
