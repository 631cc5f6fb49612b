//! Process hygiene for fuzz executions: signal masks, SIGCHLD disposition,
//! leftover children (reaped with focused waits only: generic waits cannot
//! see CLONE_WAIT_PID children), fd counts.

use crate::harness::executor;
pub use crate::sys::io::{read_exact, readable_within, write_all};
/// The calling thread's signal mask, to restore later (the kernel's 64-bit
/// mask).
pub struct SavedMask(u64);

/// rt_sigprocmask itself, not glibc's sigprocmask: glibc silently keeps its
/// internal signals 32 (SIGCANCEL) and 33 (SIGSETXID) unblocked, and a
/// fuzzed exit_signal of 32 or 33 (default action: terminate) then killed
/// the worker (found by clone3_flags, exit_signal 33). Nothing in these
/// processes uses thread cancellation or set*id across threads, the only
/// users of those two signals.
fn rt_sigprocmask(how: i32, set: Option<u64>) -> u64 {
    let mut old: u64 = 0;
    let new = set.unwrap_or(0);
    // SAFETY: the kernel reads 8 bytes at `new` (when given) and writes 8
    // bytes at `old`, both u64s on this frame; 8 is its sigset size.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            if set.is_some() {
                &new as *const u64
            } else {
                std::ptr::null()
            },
            &mut old as *mut u64,
            8usize,
        );
    }
    old
}

fn sigbit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Block every blockable signal in the calling thread. A fuzzed
/// `exit_signal` (1..=64) is sent to the parent when the child exits; with
/// everything blocked it stays pending (see [`drain_pending_signals`])
/// instead of running a default action or an inherited handler. SIGKILL and
/// SIGSTOP cannot be blocked: callers route those through a disposable
/// process.
pub fn block_all_signals() -> SavedMask {
    SavedMask(rt_sigprocmask(libc::SIG_BLOCK, Some(u64::MAX)))
}

/// Block every blockable signal but SIGCHLD in the calling thread (for
/// executions whose child can only send SIGCHLD, see clone3::Scope).
pub fn block_all_but_sigchld() -> SavedMask {
    SavedMask(rt_sigprocmask(
        libc::SIG_BLOCK,
        Some(!sigbit(libc::SIGCHLD)),
    ))
}

/// Put a mask saved by [`block_all_signals`] back.
pub fn restore_mask(m: SavedMask) {
    rt_sigprocmask(libc::SIG_SETMASK, Some(m.0));
}

/// Consume every pending signal (they are blocked, so nothing ran). Returns
/// the signal numbers taken.
pub fn drain_pending_signals() -> Vec<i32> {
    let mut taken = Vec::new();
    let mut pending: u64 = 0;
    // SAFETY: rt_sigpending writes 8 bytes into `pending`, a u64 on this
    // frame.
    if unsafe { libc::syscall(libc::SYS_rt_sigpending, &mut pending as *mut u64, 8usize) } != 0 {
        return taken;
    }
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    for _ in 0..4096 {
        // SAFETY: rt_sigtimedwait reads the 8-byte set and the timespec, both
        // on this frame, and (info = NULL) writes nothing; with a zero timeout
        // it only dequeues signals that are pending and blocked. Raw, like
        // rt_sigprocmask above, so that 32 and 33 are taken too.
        let s = unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &pending as *const u64,
                std::ptr::null_mut::<libc::siginfo_t>(),
                &zero as *const libc::timespec,
                8usize,
            )
        };
        if s <= 0 {
            break;
        }
        taken.push(s as i32);
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

pub use crate::sys::proc::single_threaded;

/// Our own children right now (all threads), zombies included.
pub fn own_children() -> Vec<i32> {
    // Single-threaded (the usual case): one file, no directory walk.
    let pid = std::process::id() as i32;
    if single_threaded() {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{pid}/children")) {
            return s
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
        }
    }
    crate::sys::proc::children(pid)
}

/// Children of the calling thread, and of the thread-group leader when that
/// is another thread (orphans reparented to a subreaper go to its leader,
/// kernel/exit.c find_new_reaper). For a multi-threaded process whose other
/// threads never fork (libFuzzer's): one /proc read instead of a walk over
/// every thread.
///
/// The calling thread's file stays open (see [`open_thread_children`]) and
/// is read with pread from offset 0, which makes the seq_file list afresh:
/// one syscall per listing instead of open, read and close.
pub fn thread_children() -> Vec<i32> {
    let parse = |s: &str| {
        s.split_whitespace()
            .filter_map(|x| x.parse::<i32>().ok())
            .collect::<Vec<i32>>()
    };
    let pid = std::process::id() as i32;
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    let mut v = CHILDREN_FILE
        .with(|c| {
            let mut c = c.borrow_mut();
            ensure_children_file(&mut c, pid, tid);
            let (_, _, f) = c.as_ref()?;
            let mut buf = Vec::with_capacity(256);
            let mut chunk = [0u8; 4096];
            loop {
                match std::os::unix::fs::FileExt::read_at(f, &mut chunk, buf.len() as u64) {
                    Ok(0) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return None,
                }
            }
            Some(parse(&String::from_utf8_lossy(&buf)))
        })
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/thread-self/children")
                .map(|s| parse(&s))
                .unwrap_or_default()
        });
    if tid != pid {
        v.extend(
            std::fs::read_to_string(format!("/proc/self/task/{pid}/children"))
                .map(|s| parse(&s))
                .unwrap_or_default(),
        );
    }
    v
}

thread_local! {
    /// (pid, tid, /proc/thread-self/children of that task): a forked copy of
    /// this thread (another pid) opens its own.
    static CHILDREN_FILE: std::cell::RefCell<ChildrenFile> = const { std::cell::RefCell::new(None) };
}

type ChildrenFile = Option<(i32, i32, std::fs::File)>;

fn ensure_children_file(c: &mut ChildrenFile, pid: i32, tid: i32) {
    if c.as_ref().is_none_or(|(p, t, _)| (*p, *t) != (pid, tid)) {
        *c = std::fs::File::open("/proc/thread-self/children")
            .ok()
            .map(|f| (pid, tid, f));
    }
}

/// Open the calling thread's children file now, if it is not (it then stays
/// open, part of the fd table a leak check compares against).
pub fn open_thread_children() {
    let pid = std::process::id() as i32;
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    CHILDREN_FILE.with(|c| ensure_children_file(&mut c.borrow_mut(), pid, tid));
}

/// Kill and reap every child we have, with focused waits (`waitid(P_PID,
/// pid, WEXITED|__WALL)`), until /proc lists none. Returns the pids reaped.
pub fn reap_all_children() -> Vec<i32> {
    reap_children_with(own_children)
}

/// [`reap_all_children`] for the children `list` names (it is called again
/// after each round, until it names none): the harness's
/// [`executor::kill_and_reap`] (SIGKILL and a focused wait, by pidfd).
pub fn reap_children_with(list: impl Fn() -> Vec<i32>) -> Vec<i32> {
    executor::kill_and_reap(list)
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
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
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
