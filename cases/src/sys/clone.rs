//! clone3 and legacy clone with full control of their arguments.
//!
//! The child never returns into the caller's frames: the raw entry point
//! switches to a fresh function (`child_entry`) right after the syscall, on the
//! stack the kernel gave it, and that function ends in `exit_group`/`exit`.
//! With `CLONE_VM` the child therefore never runs on the parent's stack: when
//! the caller did not supply one, [`clone3`] maps a private stack for it.
//!
//! Neither rustix nor nix wraps clone3(2) or a legacy clone(2) whose flag
//! word keeps its high bits (nix's `clone` takes `CloneFlags`, a c_int):
//! clone3 is inline assembly, clone goes through libc's syscall(2), and
//! the syscall numbers come from libc.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::errno::Errno;

/// `CLONE_*` bits of the legacy word and the clone3-only bits mainline knows (the protocol's
/// one table, with their names).
pub mod flags {
    pub use protocol::flags::*;
}

/// Sizes of `struct clone_args` the kernel has published.
pub const CLONE_ARGS_SIZE_VER0: usize = 64;
pub const CLONE_ARGS_SIZE_VER1: usize = 80;
pub const CLONE_ARGS_SIZE_VER2: usize = 88;

/// `struct clone_args` (VER2), exactly as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// What the child does. Programs that run with `CLONE_VM` make raw system
/// calls only (no allocation, no errno, no locks): they share memory with the
/// parent, which keeps running.
pub enum Program {
    /// `_exit(code)` at once.
    Exit(i32),
    /// Block reading one byte from `fd`, then `_exit(code)` (EOF too).
    AwaitThenExit { fd: RawFd, code: i32 },
    /// Any Rust code; its return value is the exit code. Only without
    /// `CLONE_VM`: the child then runs in a private copy of a single-threaded
    /// parent, exactly like after `fork()`.
    Run(Box<dyn FnOnce() -> i32>),
}

impl Program {
    fn is_raw(&self) -> bool {
        !matches!(self, Program::Run(_))
    }
}

/// Everything the child needs, at an address that stays valid until it is
/// reaped (the parent keeps the box inside [`Spawned`]).
struct ChildTask {
    program: Option<Program>,
    /// `exit` (this thread) instead of `exit_group`: the child is a thread of
    /// the caller's thread group (`CLONE_THREAD`).
    thread: bool,
}

/// A child created by [`clone3`] or [`clone_legacy`].
pub struct Spawned {
    pub pid: i32,
    /// The pidfd the kernel returned through `clone_args.pidfd`.
    pub pidfd: Option<OwnedFd>,
    // Kept alive until the owner drops this handle (after reaping): a
    // CLONE_VM child reads its task and runs on this stack.
    _task: Box<ChildTask>,
    _stack: Option<Vec<u8>>,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spawned(pid {})", self.pid)
    }
}

/// A clone3 request: the argument block plus the size passed to the kernel.
/// Bytes past `CLONE_ARGS_SIZE_VER2` (up to `size`) come from `tail`.
#[derive(Clone, Debug)]
pub struct Clone3Request {
    pub args: CloneArgs,
    pub size: usize,
    /// Bytes after the VER2 struct (only used when `size` exceeds it).
    pub tail: Vec<u8>,
    /// Fill `args.pidfd` with a pointer to a local slot when `CLONE_PIDFD`
    /// is set and `args.pidfd` is 0.
    pub auto_pidfd: bool,
}

impl Clone3Request {
    pub fn new(flags: u64, exit_signal: u64) -> Self {
        Clone3Request {
            args: CloneArgs {
                flags,
                exit_signal,
                ..Default::default()
            },
            size: CLONE_ARGS_SIZE_VER2,
            tail: Vec::new(),
            auto_pidfd: true,
        }
    }
}

const CHILD_STACK: usize = 256 * 1024;

/// clone3(2). Returns the child, or the errno the kernel gave.
pub fn clone3(req: &Clone3Request, program: Program) -> Result<Spawned, Errno> {
    let mut args = req.args;
    let uses_vm = args.flags & flags::CLONE_VM != 0;
    if uses_vm && !program.is_raw() {
        panic!("Program::Run needs a private address space: not allowed with CLONE_VM");
    }
    let mut stack = None;
    if uses_vm && args.stack == 0 && args.stack_size == 0 {
        let mut s = vec![0u8; CHILD_STACK];
        args.stack = s.as_mut_ptr() as u64;
        args.stack_size = CHILD_STACK as u64;
        stack = Some(s);
    }
    let mut pidfd_slot: i32 = -1;
    if req.auto_pidfd && args.flags & flags::CLONE_PIDFD != 0 && args.pidfd == 0 {
        args.pidfd = &mut pidfd_slot as *mut i32 as u64;
    }
    // The buffer the kernel reads: VER2 struct, then the caller's tail.
    let mut buf = vec![0u8; req.size.max(std::mem::size_of::<CloneArgs>())];
    // SAFETY: CloneArgs is repr(C) plain old data of exactly
    // size_of::<CloneArgs>() bytes and buf is at least that long.
    unsafe {
        std::ptr::copy_nonoverlapping(
            &args as *const CloneArgs as *const u8,
            buf.as_mut_ptr(),
            std::mem::size_of::<CloneArgs>(),
        );
    }
    for (i, b) in req.tail.iter().enumerate() {
        if let Some(slot) = buf.get_mut(std::mem::size_of::<CloneArgs>() + i) {
            *slot = *b;
        }
    }
    let task = Box::new(ChildTask {
        program: Some(program),
        thread: args.flags & flags::CLONE_THREAD != 0,
    });
    let task_ptr = &*task as *const ChildTask as usize;
    // SAFETY: buf holds `req.size` readable bytes (or more); the kernel only
    // reads `req.size` of them. The child side of raw_clone3 never returns
    // here: it calls child_entry with task_ptr, which stays valid because the
    // box lives in the returned Spawned (and, without CLONE_VM, in the child's
    // own copy of memory).
    let ret = unsafe { raw_clone3(buf.as_mut_ptr(), req.size, child_entry, task_ptr) };
    if ret < 0 {
        return Err(Errno(-ret as i32));
    }
    let mut task = task;
    drop_parent_copy(&mut task);
    let pidfd = if req.auto_pidfd && args.flags & flags::CLONE_PIDFD != 0 && req.args.pidfd == 0 {
        // SAFETY: the kernel stored a fresh pidfd that nothing else owns.
        Some(unsafe { OwnedFd::from_raw_fd(pidfd_slot) })
    } else {
        None
    };
    Ok(Spawned {
        pid: ret as i32,
        pidfd,
        _task: task,
        _stack: stack,
    })
}

/// Legacy clone(2): `flags` is passed as the full 64-bit register, so bits the
/// legacy ABI does not know reach the kernel too. No CLONE_VM here.
pub fn clone_legacy(flags_word: u64, program: Program) -> Result<Spawned, Errno> {
    assert!(
        flags_word & flags::CLONE_VM == 0,
        "clone_legacy: CLONE_VM is not supported"
    );
    let task = Box::new(ChildTask {
        program: Some(program),
        thread: false,
    });
    let task_ptr = &*task as *const ChildTask as usize;
    // SAFETY: without CLONE_VM (and a null new stack) the child runs in a
    // private copy of this single-threaded process and returns from the
    // syscall like after fork(); it then calls child_entry, which never
    // returns.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags_word, 0usize, 0usize, 0usize, 0usize) };
    if ret == 0 {
        child_entry(task_ptr);
    }
    if ret < 0 {
        return Err(Errno::last());
    }
    let mut task = task;
    drop_parent_copy(&mut task);
    Ok(Spawned {
        pid: ret as i32,
        pidfd: None,
        _task: task,
        _stack: None,
    })
}

/// A `Program::Run` closure was copied into the child with its memory; the
/// parent's copy (and whatever fds it captured) is dropped at once.
fn drop_parent_copy(task: &mut ChildTask) {
    if matches!(task.program, Some(Program::Run(_))) {
        task.program = None;
    }
}

/// The first Rust frame of every child.
extern "C" fn child_entry(task: usize) -> ! {
    // SAFETY: `task` is the address of a live ChildTask (see clone3): in a
    // private copy of memory, or shared with a parent that keeps it alive
    // until this child is reaped. Only this child takes from its own copy; a
    // CLONE_VM child only reads raw programs, which are never taken.
    let task = unsafe { &mut *(task as *mut ChildTask) };
    // Coverage runs: this task records into a slot of the case's pool.
    super::kcov::enable_in_child();
    let code = match task.program.as_ref() {
        Some(Program::Exit(c)) => *c,
        Some(Program::AwaitThenExit { fd, code }) => {
            let mut b = [0u8; 1];
            // SAFETY: fd is a pipe end the parent created for this child and
            // keeps open; rustix makes the raw syscall without touching errno.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
            while let Err(rustix::io::Errno::INTR) = rustix::io::read(fd, &mut b) {}
            *code
        }
        Some(Program::Run(_)) => match task.program.take() {
            Some(Program::Run(f)) => f(),
            _ => 127,
        },
        None => 127,
    };
    exit_now(code, task.thread)
}

/// Terminate the calling thread (or its whole thread group) with a raw
/// syscall: libc's syscall(2), because rustix has exit/exit_group only in
/// its `runtime` feature and nix only the libc `_exit`, which ends the
/// whole group.
pub fn exit_now(code: i32, thread_only: bool) -> ! {
    let nr = if thread_only {
        libc::SYS_exit
    } else {
        libc::SYS_exit_group
    };
    loop {
        // SAFETY: exit/exit_group take one integer and do not return.
        unsafe {
            libc::syscall(nr, code);
        }
    }
}

/// The raw clone3 entry point.
///
/// SAFETY (for callers): `args` must point at `size` readable bytes; `entry`
/// must never return. In the child, rsp is the new stack (or a private copy of
/// the current one), realigned to 16 bytes before `entry(arg)` is called.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_clone3(
    args: *mut u8,
    size: usize,
    entry: extern "C" fn(usize) -> !,
    arg: usize,
) -> isize {
    let ret: isize;
    // SAFETY: see the function contract. r12/r13 are preserved by the
    // syscall in both parent and child; rcx/r11 are clobbered by `syscall`.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "and rsp, -16",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 as isize => ret,
            in("rdi") args,
            in("rsi") size,
            in("r12") arg,
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
compile_error!("raw_clone3 is written for x86_64 only");

/// A pipe whose ends close on exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe2")
}
