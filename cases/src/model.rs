//! The model of the semantics: what a kernel with a given feature set must
//! answer to a clone3 argument block, and which children a wait call may
//! report. The case table's validation rows and the fuzz targets both ask
//! this module; it is the one statement of the rules, written from
//! kernel/fork.c (copy_clone_args_from_user, clone3_args_valid,
//! copy_process, alloc_pid), kernel/exit.c (do_wait, eligible_child) and the
//! seed patch.

#[cfg(test)]
mod agreement;
pub mod child;
pub mod tree;

use crate::sys::clone::{flags::*, CLONE_ARGS_SIZE_VER0, CLONE_ARGS_SIZE_VER2};
use crate::sys::wait::{Event, WaitCall, WaitOpts, WaitOutcome};
use crate::sys::Errno;

/// clone3-only bits mainline gave a meaning, and since when (the protocol's table).
pub use protocol::flags::MAINLINE_CLONE3_BITS;

/// The mainline name of a clone3 bit on a kernel of this version, if any.
pub fn mainline_bit_name(bit: u64, version: (u32, u32)) -> Option<(&'static str, (u32, u32))> {
    MAINLINE_CLONE3_BITS
        .iter()
        .find(|(b, _, since)| *b == bit && version >= *since)
        .map(|(_, n, s)| (*n, *s))
}

/// What the kernel under test implements, as far as the rules below care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFeatures {
    pub version: (u32, u32),
    /// The CLONE_WAIT_PID bit, when the probe found the feature working.
    pub wait_pid_bit: Option<u64>,
    /// CLONE_NEW* flags whose namespace type this kernel was built without
    /// (create_new_namespaces answers EINVAL for them).
    pub missing_ns: u64,
}

impl KernelFeatures {
    pub fn new(version: (u32, u32), wait_pid_bit: Option<u64>) -> Self {
        KernelFeatures {
            version,
            wait_pid_bit,
            missing_ns: 0,
        }
    }

    /// sizeof(struct clone_args) the kernel knows.
    pub fn clone_args_size(&self) -> usize {
        if self.version >= (5, 7) {
            CLONE_ARGS_SIZE_VER2
        } else if self.version >= (5, 5) {
            crate::sys::clone::CLONE_ARGS_SIZE_VER1
        } else {
            CLONE_ARGS_SIZE_VER0
        }
    }

    /// Every clone3 flag bit this kernel accepts.
    pub fn known_flags(&self) -> u64 {
        let mut known = CLONE_LEGACY_FLAGS;
        for (bit, _, since) in MAINLINE_CLONE3_BITS {
            if self.version >= *since {
                known |= bit;
            }
        }
        known | self.wait_pid_bit.unwrap_or(0)
    }

    /// Bits the model has rules for. A known bit outside this set (7.1's
    /// AUTOREAP/NNP/AUTOKILL, EMPTY_MNTNS) makes the model answer Unknown
    /// rather than guess.
    fn modelled_flags(&self) -> u64 {
        CLONE_LEGACY_FLAGS
            | CLONE_CLEAR_SIGHAND
            | CLONE_INTO_CGROUP
            | CLONE_AUTOREAP
            | CLONE_NNP
            | CLONE_PIDFD_AUTOKILL
            | self.wait_pid_bit.unwrap_or(0)
    }

    /// CLONE_AUTOREAP, CLONE_NNP and CLONE_PIDFD_AUTOKILL (7.1+).
    fn autoreap(&self) -> bool {
        self.version >= (7, 1)
    }

    /// CLONE_NEWTIME (one of the CSIGNAL bits) is accepted by clone3 (5.6+).
    fn newtime(&self) -> bool {
        self.version >= (5, 6)
    }

    /// CLONE_PIDFD may be combined with CLONE_THREAD (PIDFD_THREAD, 6.9+).
    fn pidfd_thread(&self) -> bool {
        self.version >= (6, 9)
    }
}

/// Where the stack points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackDesc {
    /// stack = 0, stack_size = 0 (the engine supplies one under CLONE_VM)
    None,
    /// a valid user mapping and its size
    Valid,
    /// stack = 0 but stack_size > 0
    SizeWithoutStack,
    /// stack != 0 but stack_size = 0
    StackWithoutSize,
    /// a kernel address (access_ok fails)
    KernelAddress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTidDesc {
    None,
    /// set_tid = NULL, set_tid_size = n
    NullWithSize(u64),
    /// set_tid = &array, set_tid_size = 0
    PointerWithoutSize,
    /// set_tid_size = n entries, each naming a pid already in use
    InUse(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupDesc {
    /// cgroup = 0 (stdin's fd number; only read under CLONE_INTO_CGROUP)
    Zero,
    /// a number above INT_MAX
    Huge,
    /// an fd that is not open
    Closed,
    /// an open fd of a cgroup2 directory
    Valid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidfdDesc {
    /// a valid pointer (filled in by the engine)
    Valid,
    /// an unmapped address
    Bad,
    /// the same address as parent_tid, with CLONE_PARENT_SETTID
    SameAsParentTid,
}

/// Who calls clone3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub root: bool,
    /// init of its pid namespace (SIGNAL_UNKILLABLE)
    pub ns_init: bool,
    /// depth of its pid namespace (0 = initial)
    pub ns_level: u64,
}

/// A clone3 argument block, described rather than laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clone3Desc {
    pub flags: u64,
    pub size: usize,
    /// some byte beyond the kernel's struct (within `size`) is nonzero
    pub tail_nonzero: bool,
    pub exit_signal: u64,
    pub stack: StackDesc,
    pub set_tid: SetTidDesc,
    pub cgroup: CgroupDesc,
    pub pidfd: PidfdDesc,
}

impl Clone3Desc {
    pub fn new(flags: u64, exit_signal: u64) -> Self {
        Clone3Desc {
            flags,
            size: CLONE_ARGS_SIZE_VER2,
            tail_nonzero: false,
            exit_signal,
            stack: StackDesc::None,
            set_tid: SetTidDesc::None,
            cgroup: CgroupDesc::Zero,
            pidfd: PidfdDesc::Valid,
        }
    }
}

/// What the calling process itself was made with, as far as clone3's rules
/// care (kept apart from `Caller` so that existing callers are unchanged).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallerTask {
    /// the caller was created with CLONE_AUTOREAP (signal->autoreap): it may
    /// not use CLONE_PARENT
    pub autoreap: bool,
    /// the caller's root directory is not the root of its mount namespace (chroot(2)):
    /// it may not make a user namespace
    pub chrooted: bool,
}

/// Whether a child that clone3 created with these flags is reaped by the
/// kernel when it exits (CLONE_AUTOREAP, 7.1+), so that no wait ever reports
/// its exit. Parent-wide auto-reaping (SIGCHLD ignored, SA_NOCLDWAIT) is the
/// caller's business, not this.
pub fn autoreaped_on_exit(flags: u64, k: &KernelFeatures) -> bool {
    k.autoreap() && flags & CLONE_AUTOREAP != 0
}

/// set_tid and set_tid_size as the kernel reads them when `size` ends inside
/// one of them (64 < size < 80); None otherwise. copy_struct_from_user copies
/// the first `size` bytes and zeroes the rest, so a cut field keeps its low
/// bytes (little-endian). The engine's set_tid pointer has a nonzero low
/// byte (fuzzing::clone3), so any part of it is non-null. Found by the
/// clone3_flags fuzzer (size 78, set_tid set, set_tid_size 0: EINVAL):
/// cases/regressions/clone3_flags-set-tid-cut-by-size.case.
fn set_tid_cut_by_size(d: &Clone3Desc) -> Option<(bool, u64)> {
    if d.size <= 64 || d.size >= 80 {
        return None;
    }
    let (ptr, n) = match d.set_tid {
        SetTidDesc::None => (false, 0),
        SetTidDesc::NullWithSize(n) => (false, n),
        SetTidDesc::PointerWithoutSize => (true, 0),
        SetTidDesc::InUse(n) => (true, n),
    };
    let low_bytes = |v: u64, off: usize| match d.size.saturating_sub(off) {
        0 => 0,
        k if k >= 8 => v,
        k => v & ((1u64 << (8 * k)) - 1),
    };
    Some((ptr, low_bytes(n, 72)))
}

/// The model's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// a child is created
    Created,
    /// the call fails with this errno, no child
    Fails(Errno),
    /// the model has no rule for this input
    Unknown(String),
}

/// What clone3 must answer. Checks follow the kernel's order, so that the
/// first failing check decides the errno.
pub fn clone3_verdict(d: &Clone3Desc, k: &KernelFeatures, c: &Caller) -> Verdict {
    clone3_verdict_from(d, k, c, &CallerTask::default())
}

/// The same for a caller that was itself made with some clone3 flags.
pub fn clone3_verdict_from(
    d: &Clone3Desc,
    k: &KernelFeatures,
    c: &Caller,
    t: &CallerTask,
) -> Verdict {
    use Verdict::*;
    const PAGE_SIZE: usize = 4096;
    const MAX_PID_NS_LEVEL: u64 = 32;
    // copy_clone_args_from_user
    if d.size > PAGE_SIZE {
        return Fails(Errno::E2BIG);
    }
    if d.size < CLONE_ARGS_SIZE_VER0 {
        return Fails(Errno::EINVAL);
    }
    if d.size > k.clone_args_size() && d.tail_nonzero {
        return Fails(Errno::E2BIG);
    }
    // Fields past `size` read as zero.
    let seen = |offset: usize| d.size >= offset + 8;
    let set_tid = if seen(64) && seen(72) {
        d.set_tid
    } else {
        SetTidDesc::None
    };
    let cgroup_seen = seen(80);
    let (set_tid_ptr, set_tid_size) = match set_tid {
        SetTidDesc::None => (false, 0),
        SetTidDesc::NullWithSize(n) => (false, n),
        SetTidDesc::PointerWithoutSize => (true, 0),
        SetTidDesc::InUse(n) => (true, n),
    };
    let (set_tid_ptr, set_tid_size) = set_tid_cut_by_size(d).unwrap_or((set_tid_ptr, set_tid_size));
    if set_tid_size > MAX_PID_NS_LEVEL {
        return Fails(Errno::EINVAL);
    }
    if !set_tid_ptr && set_tid_size > 0 {
        return Fails(Errno::EINVAL);
    }
    if set_tid_ptr && set_tid_size == 0 {
        return Fails(Errno::EINVAL);
    }
    if d.exit_signal & !0xff != 0 || d.exit_signal > 64 {
        return Fails(Errno::EINVAL);
    }
    let f = d.flags;
    if f & CLONE_INTO_CGROUP != 0
        && k.known_flags() & CLONE_INTO_CGROUP != 0
        && ((cgroup_seen && d.cgroup == CgroupDesc::Huge) || d.size < CLONE_ARGS_SIZE_VER2)
    {
        return Fails(Errno::EINVAL);
    }
    // clone3_args_valid
    if f & !k.known_flags() != 0 {
        return Fails(Errno::EINVAL);
    }
    let unmodelled = f & !k.modelled_flags();
    if unmodelled != 0 {
        let names: Vec<&str> = MAINLINE_CLONE3_BITS
            .iter()
            .filter(|(b, _, _)| unmodelled & b != 0)
            .map(|(_, n, _)| *n)
            .collect();
        return Unknown(format!("no rule yet for {}", names.join("|")));
    }
    if let Some(bit) = k.wait_pid_bit {
        // The seed: "Currently only allow CLONE_WAIT_PID for processes
        // created as pidfds".
        if f & bit != 0 && f & CLONE_PIDFD == 0 {
            return Fails(Errno::EINVAL);
        }
    }
    let csignal = if k.newtime() {
        CSIGNAL & !CLONE_NEWTIME
    } else {
        CSIGNAL
    };
    if f & (CLONE_DETACHED | csignal) != 0 {
        return Fails(Errno::EINVAL);
    }
    if f & (CLONE_SIGHAND | CLONE_CLEAR_SIGHAND) == (CLONE_SIGHAND | CLONE_CLEAR_SIGHAND) {
        return Fails(Errno::EINVAL);
    }
    if f & (CLONE_THREAD | CLONE_PARENT) != 0 && d.exit_signal != 0 {
        return Fails(Errno::EINVAL);
    }
    match d.stack {
        StackDesc::SizeWithoutStack | StackDesc::StackWithoutSize | StackDesc::KernelAddress => {
            return Fails(Errno::EINVAL)
        }
        StackDesc::None | StackDesc::Valid => {}
    }
    // kernel_clone
    if f & CLONE_PIDFD != 0 && f & CLONE_PARENT_SETTID != 0 && d.pidfd == PidfdDesc::SameAsParentTid
    {
        return Fails(Errno::EINVAL);
    }
    // copy_process
    if f & (CLONE_NEWNS | CLONE_FS) == (CLONE_NEWNS | CLONE_FS) {
        return Fails(Errno::EINVAL);
    }
    if f & (CLONE_NEWUSER | CLONE_FS) == (CLONE_NEWUSER | CLONE_FS) {
        return Fails(Errno::EINVAL);
    }
    if f & CLONE_THREAD != 0 && f & CLONE_SIGHAND == 0 {
        return Fails(Errno::EINVAL);
    }
    if f & CLONE_SIGHAND != 0 && f & CLONE_VM == 0 {
        return Fails(Errno::EINVAL);
    }
    if f & CLONE_PARENT != 0 && c.ns_init {
        return Fails(Errno::EINVAL);
    }
    if f & CLONE_THREAD != 0 && f & (CLONE_NEWUSER | CLONE_NEWPID) != 0 {
        return Fails(Errno::EINVAL);
    }
    if f & CLONE_PIDFD != 0 && f & CLONE_THREAD != 0 && !k.pidfd_thread() {
        return Fails(Errno::EINVAL);
    }
    if k.autoreap() {
        // copy_process (7.1+), right after the CLONE_PIDFD block, in this
        // order. An autoreap child has no exit signal (it notifies nobody),
        // is a process, and keeps its own parent.
        if f & CLONE_AUTOREAP != 0 && (f & (CLONE_THREAD | CLONE_PARENT) != 0 || d.exit_signal != 0)
        {
            return Fails(Errno::EINVAL);
        }
        // An autoreap process may not make siblings: they would inherit its
        // exit_signal 0 without being autoreaped.
        if f & CLONE_PARENT != 0 && t.autoreap {
            return Fails(Errno::EINVAL);
        }
        // no_new_privs is per task; threads share credentials.
        if f & CLONE_NNP != 0 && f & CLONE_THREAD != 0 {
            return Fails(Errno::EINVAL);
        }
        if f & CLONE_PIDFD_AUTOKILL != 0 {
            if f & CLONE_PIDFD == 0 || f & CLONE_AUTOREAP == 0 || f & CLONE_THREAD != 0 {
                return Fails(Errno::EINVAL);
            }
            // Without CLONE_NNP the child could gain privileges by exec:
            // CAP_SYS_ADMIN in the caller's user namespace is required
            // (CLONE_NEWUSER does not help; the check is on the caller's).
            if f & CLONE_NNP == 0 && !c.root {
                return Fails(Errno::EPERM);
            }
        }
    }
    // copy_creds -> create_user_ns (kernel/user_namespace.c), before the namespaces are
    // copied: a chrooted caller could escape its root through the new namespace's
    // privileges, so it gets EPERM.
    if f & CLONE_NEWUSER != 0 && t.chrooted {
        return Fails(Errno::EPERM);
    }
    let needs_admin = CLONE_NEWNS
        | CLONE_NEWUTS
        | CLONE_NEWIPC
        | CLONE_NEWPID
        | CLONE_NEWNET
        | CLONE_NEWCGROUP
        | CLONE_NEWTIME;
    if f & needs_admin != 0 && !c.root && f & CLONE_NEWUSER == 0 {
        return Fails(Errno::EPERM);
    }
    // copy_namespaces (kernel/nsproxy.c): a new IPC namespace cannot share
    // the SysV semaphore undo list (found by the clone3_flags fuzzer:
    // cases/regressions/clone3_flags-newipc-sysvsem-einval.case).
    if f & (CLONE_NEWIPC | CLONE_SYSVSEM) == (CLONE_NEWIPC | CLONE_SYSVSEM) {
        return Fails(Errno::EINVAL);
    }
    // A namespace type the kernel was built without (CONFIG_*_NS=n).
    if f & k.missing_ns != 0 {
        return Fails(Errno::EINVAL);
    }
    // alloc_pid: one set_tid entry per namespace level at most, each free.
    if set_tid_size > 0 {
        let levels = c.ns_level + 1 + u64::from(f & CLONE_NEWPID != 0);
        if set_tid_size > levels {
            return Fails(Errno::EINVAL);
        }
        if !c.root {
            return Fails(Errno::EPERM);
        }
        return Fails(Errno::EEXIST);
    }
    // copy_process stores the pidfd (put_user) before cgroup_can_fork looks
    // at the CLONE_INTO_CGROUP fd (found by the clone3_flags fuzzer:
    // cases/regressions/clone3_flags-pidfd-efault-before-cgroup.case).
    if f & CLONE_PIDFD != 0 && d.pidfd == PidfdDesc::Bad {
        return Fails(Errno::EFAULT);
    }
    if f & CLONE_INTO_CGROUP != 0 {
        match d.cgroup {
            CgroupDesc::Closed | CgroupDesc::Zero => return Fails(Errno::EBADF),
            CgroupDesc::Huge => return Fails(Errno::EINVAL),
            CgroupDesc::Valid => {}
        }
    }
    Created
}

/// What the model knows of one child, for wait predictions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildView {
    pub pid: i32,
    pub pgid: i32,
    pub hidden: bool,
    /// exit_signal is SIGCHLD (a "clone child" otherwise, see __WCLONE)
    pub sigchld: bool,
    pub state: ChildState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildState {
    Running,
    /// a zombie that will report this event
    Zombie(Event),
    /// stopped by this signal, not yet reported
    Stopped(i32),
    /// stopped, already reported
    StoppedReported,
    /// continued, not yet reported
    Continued,
}

/// Which child the call selects by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selector {
    pub call: WaitCall,
    pub pid: i32,
    pub pgid: i32,
    /// the caller's own process group
    pub own_pgid: i32,
}

impl Selector {
    /// `call` naming `pid` and group `pgid`, made by a caller in group `own_pgid`.
    pub fn new(call: WaitCall, pid: i32, pgid: i32, own_pgid: i32) -> Selector {
        Selector {
            call,
            pid,
            pgid,
            own_pgid,
        }
    }
}

/// What a wait call may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// one of these outcomes
    OneOf(Vec<WaitOutcome>),
    /// the call blocks (nothing ready, no WNOHANG)
    Blocks,
}

impl Prediction {
    /// The call reports `event` of `pid`, and nothing else.
    pub fn reported(pid: i32, event: Event) -> Prediction {
        Prediction::OneOf(vec![WaitOutcome::Reported { pid, event }])
    }
}

/// clone3 by a caller that is no root user and whose user is at its RLIMIT_NPROC
/// (copy_process: `is_rlimit_overlimit` without CAP_SYS_RESOURCE or CAP_SYS_ADMIN): an
/// argument block every other rule accepts fails with EAGAIN (a root caller is exempt).
pub fn clone3_verdict_at_nproc_limit(d: &Clone3Desc, k: &KernelFeatures, c: &Caller) -> Verdict {
    match clone3_verdict(d, k, c) {
        Verdict::Created if !c.root => Verdict::Fails(Errno::EAGAIN),
        v => v,
    }
}

/// reboot(2) by a process of a pid namespace other than the initial one
/// (kernel/pid_namespace.c reboot_pid_ns): the namespace's init is killed, and once the
/// namespace is empty its parent is told it was killed by SIGHUP for a restart, SIGINT for a
/// halt or power-off (zap_pid_ns_processes sets the group exit code).
pub fn pidns_reboot_event(restart: bool) -> Event {
    Event::Killed(if restart {
        crate::sys::signal::SIGHUP
    } else {
        crate::sys::signal::SIGINT
    })
}

/// prctl(2) PR_SET_PDEATHSIG: when the parent (the thread that made the child) exits, the
/// child gets the signal (forget_original_parent), whatever its flags; killed by SIGKILL, its
/// new parent's focused wait reports it killed.
pub fn death_signal_event(sig: i32) -> Event {
    Event::Killed(sig)
}

/// An orphan that is already a zombie when it is reparented to a reaper that ignores SIGCHLD
/// (or has SA_NOCLDWAIT) is released at once (reparent_leader -> do_notify_parent, the
/// same rule as for the reaper's own children): no wait of the reaper ever reports it, so a
/// focused wait on it fails with ECHILD.
pub fn reparented_zombie_released(reaper_ignores_sigchld: bool) -> bool {
    reaper_ignores_sigchld
}

/// A process killed by a signal whose default action dumps core (SIGQUIT, SIGSEGV...), with
/// RLIMIT_CORE unlimited and a core file it can write (a plain core_pattern, a writable
/// directory): the kernel writes the core and sets the dump bit (0x80) in the exit code, so
/// its parent's wait reports it dumped (CLD_DUMPED, WCOREDUMP).
pub fn core_dump_event(sig: i32) -> Event {
    Event::Dumped(sig)
}

/// A zombie traced by a process that is not its parent is reported to the tracer first
/// (wait_consider_task: "a zombie ptracee is only visible to its ptracer"): until the tracer
/// has collected it, its real parent's wait finds nothing to report (with WNOHANG: nothing
/// ready). False: the parent never gets it first.
pub fn traced_zombie_reported_to_parent() -> bool {
    false
}

/// A thread-group leader that has exited while other threads of its group still run is not
/// reported by any wait of its parent (wait_consider_task: delay_group_leader) until the last
/// thread has exited; then its exit is the group's.
pub fn leader_reported(live_threads: usize) -> bool {
    live_threads == 0
}

/// What `waitid(P_PIDFD, fd)` is given as its fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidfdArg {
    /// a pidfd of the child
    Pidfd,
    /// an open fd that is no pidfd (a pipe)
    NotPidfd,
    /// a number that is no open fd
    Closed,
    /// a negative number (-1: no fd)
    Negative,
}

/// waitid(2), P_PIDFD, before any child is looked at (so for a hidden child as for any
/// other): kernel_waitid_prepare refuses a negative id with EINVAL; pidfd_get_pid ->
/// pidfd_pid refuse a number that is not an open fd, and an open fd that is not a pidfd,
/// with EBADF.
pub fn pidfd_arg_error(arg: PidfdArg) -> Option<Errno> {
    match arg {
        PidfdArg::Pidfd => None,
        PidfdArg::Negative => Some(Errno::EINVAL),
        PidfdArg::NotPidfd | PidfdArg::Closed => Some(Errno::EBADF),
    }
}

/// The seed's rule (eligible_child): a hidden child is considered only by a
/// focused wait.
pub fn considers(call: WaitCall, child_hidden: bool) -> bool {
    !child_hidden || call.is_focused()
}

/// Which answer the model gives to the two questions about hiding that the
/// seed patch leaves open: does a hidden child stay hidden once it is
/// reparented, and do a hidden child's own children start out hidden?
///
/// - [`Semantics::Design`] (the default): what the case table asserts
///   (`reparent::subreaper::*`, `reparent::pidns_init::*`,
///   `open::descendants::grandchild_generic_wait`,
///   `open::threads::thread_child_generic_wait`). The flag describes the
///   relation to the parent that created the child and holds its pidfd: a
///   child reparented to a subreaper or a pid-namespace init is visible to
///   its new parent's generic waits (a PID-1 manager must be able to reap
///   it), and the flag is not inherited (a hidden helper's own children are
///   plain). Findings under Design include the seed port's known deviations.
/// - [`Semantics::Seed`]: what the 2019 patch does (PF_WAIT_PID): a per-task
///   mark set by clone3(CLONE_WAIT_PID), copied to every child the task (any
///   of its threads) creates, and never cleared: kept across reparenting
///   and execve. Findings under Seed are bugs beyond the known deviations.
///
/// Both keep a child hidden across execve (`open::execve::*`) and let every
/// focused wait reap it ([`considers`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Semantics {
    #[default]
    Design,
    Seed,
}

impl Semantics {
    /// The environment variable that selects the fuzzers' semantics
    /// (`seed` or `design`; unset or empty: design).
    pub const ENV: &'static str = protocol::env::WAIT_FUZZ_SEMANTICS;

    pub fn name(self) -> &'static str {
        match self {
            Semantics::Design => "design",
            Semantics::Seed => "seed",
        }
    }

    pub fn parse(s: &str) -> Result<Semantics, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "design" => Ok(Semantics::Design),
            "seed" => Ok(Semantics::Seed),
            other => Err(format!("{}={other:?}: want seed or design", Semantics::ENV)),
        }
    }

    /// From [`Semantics::ENV`]; Design when unset.
    pub fn from_env() -> Result<Semantics, String> {
        match std::env::var(Semantics::ENV) {
            Ok(v) => Semantics::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(Semantics::Design),
            Err(e) => Err(format!("{}: {e}", Semantics::ENV)),
        }
    }
}

impl std::fmt::Display for Semantics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a child came to be the waiter's child, as far as hiding goes.
/// (execve has no field: it changes nothing under either semantics.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lineage {
    /// created by clone3 with the CLONE_WAIT_PID bit (the call succeeded)
    pub wait_pid_flag: bool,
    /// the task that created it (whichever of its threads made the call)
    /// was marked itself: `creator.marked(semantics)`
    pub creator_marked: bool,
    /// the waiter is not the process that created it: the child was
    /// reparented (to a child subreaper or a pid-namespace init)
    pub reparented: bool,
}

impl Lineage {
    /// The per-task mark the child carries from its creation on (PF_WAIT_PID
    /// under Seed): its own flag, or under Seed also its creator's mark.
    pub fn marked(self, sem: Semantics) -> bool {
        match sem {
            Semantics::Design => self.wait_pid_flag,
            Semantics::Seed => self.wait_pid_flag || self.creator_marked,
        }
    }
}

/// Whether the waiter's generic waits skip this child (the `hidden` of its
/// [`ChildView`]). Design: only the creating parent is blind to a child it
/// made with CLONE_WAIT_PID. Seed: everyone is blind to a marked task.
pub fn hidden_from_waiter(sem: Semantics, l: Lineage) -> bool {
    match sem {
        Semantics::Design => l.marked(sem) && !l.reparented,
        Semantics::Seed => l.marked(sem),
    }
}

/// Predict one wait call against the caller's children. The caller holds a
/// valid pidfd for `sel.pid`.
pub fn predict_wait(sel: Selector, opts: WaitOpts, children: &[ChildView]) -> Prediction {
    let call = sel.call;
    let o = opts;
    let legacy_allowed = WaitOpts::WNOHANG
        | WaitOpts::WUNTRACED
        | WaitOpts::WCONTINUED
        | WaitOpts::WNOTHREAD
        | WaitOpts::WCLONE
        | WaitOpts::WALL;
    let waitid_allowed = legacy_allowed | WaitOpts::WEXITED | WaitOpts::WNOWAIT;
    if call.is_waitid() {
        if o.0 & !waitid_allowed != 0
            || o.0 & (WaitOpts::WEXITED | WaitOpts::WSTOPPED | WaitOpts::WCONTINUED) == 0
        {
            return Prediction::OneOf(vec![WaitOutcome::Failed(Errno::EINVAL)]);
        }
    } else if (o.0 & !WaitOpts::WEXITED) & !legacy_allowed != 0 {
        return Prediction::OneOf(vec![WaitOutcome::Failed(Errno::EINVAL)]);
    }
    let wants_exit = !call.is_waitid() || o.has(WaitOpts::WEXITED);
    let selected = |ch: &ChildView| match call {
        WaitCall::Wait4Any | WaitCall::WaitpidAny | WaitCall::Wait | WaitCall::WaitidAll => true,
        WaitCall::WaitidPgid | WaitCall::WaitpidNegPgid | WaitCall::Wait4NegPgid => {
            ch.pgid == sel.pgid
        }
        WaitCall::WaitidPgidZero | WaitCall::WaitpidZero => ch.pgid == sel.own_pgid,
        WaitCall::WaitpidPid | WaitCall::Wait4Pid | WaitCall::WaitidPid | WaitCall::WaitidPidfd => {
            ch.pid == sel.pid
        }
    };
    let clone_ok =
        |ch: &ChildView| o.has(WaitOpts::WALL) || (ch.sigchld != o.has(WaitOpts::WCLONE));
    // A zombie counts only for a call that waits for exits: wait_task_zombie
    // returns 0 without WEXITED before notask_error is cleared, so a caller
    // whose only candidates are zombies gets ECHILD (kernel/exit.c,
    // wait_consider_task; found by the wait_sequence fuzzer:
    // cases/regressions/wait_sequence-zombie-without-wexited-echild.case).
    let counts = |ch: &ChildView| wants_exit || !matches!(ch.state, ChildState::Zombie(_));
    let eligible: Vec<&ChildView> = children
        .iter()
        .filter(|c| selected(c) && considers(call, c.hidden) && clone_ok(c) && counts(c))
        .collect();
    if eligible.is_empty() {
        return Prediction::OneOf(vec![WaitOutcome::Failed(Errno::ECHILD)]);
    }
    let mut ready = Vec::new();
    for ch in eligible {
        let ev = match ch.state {
            ChildState::Zombie(ev) if wants_exit => Some(ev),
            ChildState::Stopped(sig) if o.has(WaitOpts::WSTOPPED) => Some(Event::Stopped(sig)),
            ChildState::Continued if o.has(WaitOpts::WCONTINUED) => Some(Event::Continued),
            _ => None,
        };
        if let Some(event) = ev {
            ready.push(WaitOutcome::Reported { pid: ch.pid, event });
        }
    }
    if !ready.is_empty() {
        Prediction::OneOf(ready)
    } else if o.has(WaitOpts::WNOHANG) {
        Prediction::OneOf(vec![WaitOutcome::NothingReady])
    } else {
        Prediction::Blocks
    }
}

/// A child of the waiter's process as the wait grid (spec/grid.rs) knows
/// it: the [`ChildView`] plus what only matters to some rows. Kept apart
/// from `ChildView` so that the fuzzers' views are unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kin {
    pub view: ChildView,
    /// the thread of the waiter's process that created the child (its
    /// real_parent), 0 for the main thread
    pub creator: u32,
    /// made with CLONE_AUTOREAP: the kernel releases it when it exits
    /// (do_notify_parent: `signal->autoreap` -> EXIT_DEAD), it is never a
    /// zombie and never a child of the waiter afterwards
    pub autoreap: bool,
}

/// Predict one wait call made by `thread` of the waiter's process.
/// __WNOTHREAD restricts the children to the calling thread's own
/// (kernel/exit.c do_wait: the loop over the thread group stops after the
/// calling thread when `wo_flags & __WNOTHREAD`); without it every thread
/// waits for the children of all threads of its group.
pub fn predict_wait_from(
    sel: Selector,
    thread: u32,
    opts: WaitOpts,
    children: &[Kin],
) -> Prediction {
    let views: Vec<ChildView> = children
        .iter()
        .filter(|k| !opts.has(WaitOpts::WNOTHREAD) || k.creator == thread)
        .map(|k| k.view)
        .collect();
    predict_wait(sel, opts, &views)
}

/// A child's exit (or death by a signal), as its parent sees it: a zombie
/// that will report `ev`, or nothing at all for an autoreap child.
pub fn kin_exits(children: &mut Vec<Kin>, pid: i32, ev: Event) {
    if let Some(i) = children.iter().position(|k| k.view.pid == pid) {
        if children[i].autoreap {
            children.remove(i);
        } else {
            children[i].view.state = ChildState::Zombie(ev);
        }
    }
}

/// A signal sent to a live child (SIGSTOP, SIGCONT, a fatal one), once it
/// has taken effect.
pub fn kin_signalled(children: &mut Vec<Kin>, pid: i32, sig: i32) {
    let Some(i) = children.iter().position(|k| k.view.pid == pid) else {
        return;
    };
    match (sig, children[i].view.state) {
        (_, ChildState::Zombie(_)) => {}
        (libc::SIGSTOP, ChildState::Running | ChildState::Continued) => {
            children[i].view.state = ChildState::Stopped(libc::SIGSTOP)
        }
        (libc::SIGSTOP, _) => {}
        (libc::SIGCONT, ChildState::Stopped(_) | ChildState::StoppedReported) => {
            children[i].view.state = ChildState::Continued
        }
        (libc::SIGCONT, _) => {}
        (sig, _) => kin_exits(children, pid, Event::Killed(sig)),
    }
}

/// How a wait that reported `got` changes the waiter's children
/// (kernel/exit.c: a reaped zombie is gone, a reported stop or continue is
/// consumed, WNOWAIT leaves everything as it was).
pub fn kin_after_wait(children: &mut Vec<Kin>, opts: WaitOpts, got: WaitOutcome) {
    let WaitOutcome::Reported { pid, event } = got else {
        return;
    };
    if opts.has(WaitOpts::WNOWAIT) {
        return;
    }
    let Some(i) = children.iter().position(|k| k.view.pid == pid) else {
        return;
    };
    match event {
        Event::Exited(_) | Event::Killed(_) | Event::Dumped(_) => {
            children.remove(i);
        }
        Event::Stopped(_) | Event::Trapped(_) => {
            children[i].view.state = ChildState::StoppedReported
        }
        Event::Continued => children[i].view.state = ChildState::Running,
    }
}

/// Why the model includes or leaves out one child for one call, in words
/// (for a row's expectation text). `None` when the child is a candidate.
pub fn why_not_considered(
    sel: Selector,
    thread: u32,
    opts: WaitOpts,
    k: &Kin,
) -> Option<&'static str> {
    let ch = &k.view;
    let call = sel.call;
    let selected = match call {
        WaitCall::Wait4Any | WaitCall::WaitpidAny | WaitCall::Wait | WaitCall::WaitidAll => true,
        WaitCall::WaitidPgid | WaitCall::WaitpidNegPgid | WaitCall::Wait4NegPgid => {
            ch.pgid == sel.pgid
        }
        WaitCall::WaitidPgidZero | WaitCall::WaitpidZero => ch.pgid == sel.own_pgid,
        _ => ch.pid == sel.pid,
    };
    if !selected {
        return Some(if call.is_focused() {
            "not the child the call names"
        } else {
            "not in the process group the call names"
        });
    }
    if opts.has(WaitOpts::WNOTHREAD) && k.creator != thread {
        return Some(
            "created by another thread: __WNOTHREAD waits only for the calling thread's children",
        );
    }
    if !considers(call, ch.hidden) {
        return Some("hidden: not considered by a generic wait (eligible_child)");
    }
    if !(opts.has(WaitOpts::WALL) || ch.sigchld != opts.has(WaitOpts::WCLONE)) {
        return Some("a clone child (exit_signal 0): considered only with __WALL or __WCLONE");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k612() -> KernelFeatures {
        KernelFeatures::new((6, 12), Some(1 << 40))
    }
    const ROOT: Caller = Caller {
        root: true,
        ns_init: false,
        ns_level: 0,
    };

    #[test]
    fn missing_namespace_type_is_einval() {
        let mut k = k612();
        k.missing_ns = CLONE_NEWNET;
        let d = Clone3Desc::new(CLONE_NEWNET, 17);
        assert_eq!(clone3_verdict(&d, &k, &ROOT), Verdict::Fails(Errno::EINVAL));
        k.missing_ns = 0;
        assert_eq!(clone3_verdict(&d, &k, &ROOT), Verdict::Created);
    }

    #[test]
    fn wait_pid_needs_pidfd() {
        let d = Clone3Desc::new(1 << 40, 17);
        assert_eq!(
            clone3_verdict(&d, &k612(), &ROOT),
            Verdict::Fails(Errno::EINVAL)
        );
        let d = Clone3Desc::new((1 << 40) | CLONE_PIDFD, 17);
        assert_eq!(clone3_verdict(&d, &k612(), &ROOT), Verdict::Created);
    }

    #[test]
    fn unknown_bit_without_feature() {
        let k = KernelFeatures::new((6, 12), None);
        let d = Clone3Desc::new((1 << 40) | CLONE_PIDFD, 17);
        assert_eq!(clone3_verdict(&d, &k, &ROOT), Verdict::Fails(Errno::EINVAL));
    }

    #[test]
    fn size_cutting_set_tid() {
        let k = k612();
        let with = |size: usize, set_tid: SetTidDesc| {
            let mut d = Clone3Desc::new(0, 17);
            d.size = size;
            d.set_tid = set_tid;
            clone3_verdict(&d, &k, &ROOT)
        };
        // the pointer is read, the size field is not (or reads 0)
        assert_eq!(
            with(78, SetTidDesc::InUse(0)),
            Verdict::Fails(Errno::EINVAL)
        );
        assert_eq!(
            with(70, SetTidDesc::PointerWithoutSize),
            Verdict::Fails(Errno::EINVAL)
        );
        assert_eq!(
            with(72, SetTidDesc::InUse(1)),
            Verdict::Fails(Errno::EINVAL)
        );
        // the size field's low byte is read
        assert_eq!(
            with(73, SetTidDesc::NullWithSize(3)),
            Verdict::Fails(Errno::EINVAL)
        );
        assert_eq!(
            with(73, SetTidDesc::InUse(1)),
            Verdict::Fails(Errno::EEXIST)
        );
        // nothing of set_tid is read
        assert_eq!(with(64, SetTidDesc::InUse(1)), Verdict::Created);
        assert_eq!(with(72, SetTidDesc::NullWithSize(3)), Verdict::Created);
    }

    #[test]
    fn sizes() {
        let k = k612();
        let mut d = Clone3Desc::new(0, 17);
        d.size = 63;
        assert_eq!(clone3_verdict(&d, &k, &ROOT), Verdict::Fails(Errno::EINVAL));
        d.size = 4097;
        assert_eq!(clone3_verdict(&d, &k, &ROOT), Verdict::Fails(Errno::E2BIG));
        d.size = 96;
        d.tail_nonzero = true;
        assert_eq!(clone3_verdict(&d, &k, &ROOT), Verdict::Fails(Errno::E2BIG));
        d.tail_nonzero = false;
        assert_eq!(clone3_verdict(&d, &k, &ROOT), Verdict::Created);
    }

    #[test]
    fn autoreap_bits_einval_before_71() {
        let k = KernelFeatures::new((6, 18), None);
        for f in [
            CLONE_AUTOREAP,
            CLONE_NNP,
            CLONE_PIDFD_AUTOKILL | CLONE_AUTOREAP | CLONE_PIDFD,
            CLONE_EMPTY_MNTNS,
        ] {
            assert_eq!(
                clone3_verdict(&Clone3Desc::new(f, 0), &k, &ROOT),
                Verdict::Fails(Errno::EINVAL),
                "{f:#x}"
            );
        }
    }

    fn k72() -> KernelFeatures {
        KernelFeatures::new((7, 2), None)
    }
    const USER: Caller = Caller {
        root: false,
        ns_init: false,
        ns_level: 0,
    };
    const THREAD: u64 = CLONE_THREAD | CLONE_SIGHAND | CLONE_VM;
    const AUTOKILL: u64 = CLONE_PIDFD_AUTOKILL | CLONE_AUTOREAP | CLONE_PIDFD;

    fn v(flags: u64, exit_signal: u64, c: &Caller) -> Verdict {
        clone3_verdict(&Clone3Desc::new(flags, exit_signal), &k72(), c)
    }

    #[test]
    fn autoreap_rules() {
        use Verdict::*;
        assert_eq!(v(CLONE_AUTOREAP, 0, &USER), Created);
        assert_eq!(v(CLONE_AUTOREAP | CLONE_PIDFD, 0, &USER), Created);
        assert_eq!(
            v(
                CLONE_AUTOREAP | CLONE_PIDFD | CLONE_VM | CLONE_VFORK,
                0,
                &USER
            ),
            Created
        );
        assert_eq!(v(CLONE_AUTOREAP, 17, &USER), Fails(Errno::EINVAL));
        assert_eq!(v(CLONE_AUTOREAP, 10, &USER), Fails(Errno::EINVAL));
        assert_eq!(
            v(CLONE_AUTOREAP | CLONE_PARENT, 0, &USER),
            Fails(Errno::EINVAL)
        );
        assert_eq!(v(CLONE_AUTOREAP | THREAD, 0, &USER), Fails(Errno::EINVAL));
        assert!(autoreaped_on_exit(CLONE_AUTOREAP | CLONE_PIDFD, &k72()));
        assert!(!autoreaped_on_exit(
            CLONE_AUTOREAP,
            &KernelFeatures::new((7, 0), None)
        ));
    }

    #[test]
    fn a_chrooted_caller_makes_no_user_namespace() {
        let chrooted = CallerTask {
            chrooted: true,
            ..Default::default()
        };
        let from = |flags: u64, t: &CallerTask| {
            clone3_verdict_from(&Clone3Desc::new(flags, 17), &k72(), &ROOT, t)
        };
        assert_eq!(
            from(CLONE_NEWUSER | CLONE_PIDFD, &chrooted),
            Verdict::Fails(Errno::EPERM)
        );
        assert_eq!(
            from(CLONE_NEWUSER | CLONE_PIDFD, &CallerTask::default()),
            Verdict::Created
        );
        assert_eq!(from(CLONE_PIDFD, &chrooted), Verdict::Created);
        // The flag checks come first: CLONE_NEWUSER|CLONE_FS stays EINVAL.
        assert_eq!(
            from(CLONE_NEWUSER | CLONE_FS, &chrooted),
            Verdict::Fails(Errno::EINVAL)
        );
    }

    #[test]
    fn parent_from_an_autoreap_caller() {
        let from = |t: CallerTask| {
            clone3_verdict_from(&Clone3Desc::new(CLONE_PARENT, 0), &k72(), &USER, &t)
        };
        assert_eq!(
            from(CallerTask {
                autoreap: true,
                ..Default::default()
            }),
            Verdict::Fails(Errno::EINVAL)
        );
        assert_eq!(from(CallerTask::default()), Verdict::Created);
        // Without CLONE_PARENT an autoreap caller makes children as usual.
        let plain = clone3_verdict_from(
            &Clone3Desc::new(CLONE_PIDFD, 17),
            &k72(),
            &USER,
            &CallerTask {
                autoreap: true,
                ..Default::default()
            },
        );
        assert_eq!(plain, Verdict::Created);
    }

    #[test]
    fn nnp_rules() {
        use Verdict::*;
        assert_eq!(v(CLONE_NNP, 17, &USER), Created);
        assert_eq!(
            v(CLONE_NNP | CLONE_PIDFD | CLONE_AUTOREAP, 0, &USER),
            Created
        );
        assert_eq!(v(CLONE_NNP | THREAD, 0, &USER), Fails(Errno::EINVAL));
        assert_eq!(
            v(CLONE_NNP | THREAD | CLONE_PIDFD, 0, &ROOT),
            Fails(Errno::EINVAL)
        );
    }

    #[test]
    fn autokill_rules() {
        use Verdict::*;
        assert_eq!(v(AUTOKILL | CLONE_NNP, 0, &USER), Created);
        assert_eq!(v(AUTOKILL, 0, &ROOT), Created);
        assert_eq!(v(AUTOKILL, 0, &USER), Fails(Errno::EPERM));
        // CLONE_NEWUSER does not stand in for CAP_SYS_ADMIN here.
        assert_eq!(v(AUTOKILL | CLONE_NEWUSER, 0, &USER), Fails(Errno::EPERM));
        assert_eq!(
            v(CLONE_PIDFD_AUTOKILL | CLONE_AUTOREAP | CLONE_NNP, 0, &USER),
            Fails(Errno::EINVAL)
        );
        assert_eq!(
            v(CLONE_PIDFD_AUTOKILL | CLONE_PIDFD | CLONE_NNP, 0, &USER),
            Fails(Errno::EINVAL)
        );
        assert_eq!(v(AUTOKILL | CLONE_NNP, 17, &USER), Fails(Errno::EINVAL));
    }

    #[test]
    fn kernel_order_of_the_71_checks() {
        use Verdict::*;
        // The autoreap checks come before the CAP_SYS_ADMIN check of AUTOKILL...
        assert_eq!(v(AUTOKILL | CLONE_PARENT, 0, &USER), Fails(Errno::EINVAL));
        // ...which comes before copy_namespaces' and alloc_pid's checks and
        // before the cgroup fd and the pidfd pointer are used.
        let mut d = Clone3Desc::new(AUTOKILL | CLONE_INTO_CGROUP, 0);
        d.cgroup = CgroupDesc::Closed;
        assert_eq!(clone3_verdict(&d, &k72(), &USER), Fails(Errno::EPERM));
        assert_eq!(clone3_verdict(&d, &k72(), &ROOT), Fails(Errno::EBADF));
        let mut d = Clone3Desc::new(AUTOKILL, 0);
        d.pidfd = PidfdDesc::Bad;
        assert_eq!(clone3_verdict(&d, &k72(), &USER), Fails(Errno::EPERM));
        assert_eq!(clone3_verdict(&d, &k72(), &ROOT), Fails(Errno::EFAULT));
        // clone3_args_valid and copy_clone_args_from_user come first.
        assert_eq!(v(AUTOKILL | CLONE_DETACHED, 0, &USER), Fails(Errno::EINVAL));
        let mut d = Clone3Desc::new(AUTOKILL, 0);
        d.size = 4097;
        assert_eq!(clone3_verdict(&d, &k72(), &USER), Fails(Errno::E2BIG));
        // copy_process's earlier checks come first too.
        assert_eq!(
            v(CLONE_AUTOREAP | CLONE_NEWNS | CLONE_FS, 0, &ROOT),
            Fails(Errno::EINVAL)
        );
        assert_eq!(
            v(CLONE_AUTOREAP | CLONE_NEWPID, 0, &USER),
            Fails(Errno::EPERM)
        );
    }

    #[test]
    fn empty_mntns_is_known_but_unmodelled_on_72() {
        assert!(matches!(
            v(CLONE_EMPTY_MNTNS, 17, &ROOT),
            Verdict::Unknown(_)
        ));
        assert_eq!(v(1 << 38, 17, &ROOT), Verdict::Fails(Errno::EINVAL));
    }

    #[test]
    fn generic_wait_skips_hidden() {
        let hidden = ChildView {
            pid: 10,
            pgid: 5,
            hidden: true,
            sigchld: true,
            state: ChildState::Zombie(Event::Exited(3)),
        };
        let plain = ChildView {
            pid: 11,
            hidden: false,
            ..hidden
        };
        let sel = |call| Selector::new(call, 10, 5, 5);
        for call in WaitCall::GENERIC {
            let opts = WaitOpts(WaitOpts::WEXITED | WaitOpts::WNOHANG);
            assert_eq!(
                predict_wait(sel(call), opts, &[hidden]),
                Prediction::OneOf(vec![WaitOutcome::Failed(Errno::ECHILD)])
            );
            assert_eq!(
                predict_wait(sel(call), opts, &[hidden, plain]),
                Prediction::reported(11, Event::Exited(3))
            );
        }
        for call in WaitCall::FOCUSED {
            let opts = WaitOpts(WaitOpts::WEXITED);
            assert_eq!(
                predict_wait(sel(call), opts, &[hidden, plain]),
                Prediction::reported(10, Event::Exited(3))
            );
        }
    }

    #[test]
    fn wnothread_and_the_creating_thread() {
        let view = ChildView {
            pid: 10,
            pgid: 5,
            hidden: false,
            sigchld: true,
            state: ChildState::Zombie(Event::Exited(3)),
        };
        let by_thread = Kin {
            view,
            creator: 1,
            autoreap: false,
        };
        let sel = |call| Selector::new(call, 10, 5, 5);
        let reported = Prediction::reported(10, Event::Exited(3));
        let echild = Prediction::OneOf(vec![WaitOutcome::Failed(Errno::ECHILD)]);
        let o = |extra| WaitOpts(WaitOpts::WEXITED | WaitOpts::WNOHANG | extra);
        for call in [WaitCall::WaitidAll, WaitCall::WaitidPid] {
            // Without __WNOTHREAD every thread waits for the group's children.
            assert_eq!(
                predict_wait_from(sel(call), 0, o(0), &[by_thread]),
                reported
            );
            assert_eq!(
                predict_wait_from(sel(call), 1, o(0), &[by_thread]),
                reported
            );
            // With it, only the creating thread.
            assert_eq!(
                predict_wait_from(sel(call), 0, o(WaitOpts::WNOTHREAD), &[by_thread]),
                echild
            );
            assert_eq!(
                predict_wait_from(sel(call), 1, o(WaitOpts::WNOTHREAD), &[by_thread]),
                reported
            );
        }
        // Hidden: the creating thread's generic wait skips it too.
        let hidden = Kin {
            view: ChildView {
                hidden: true,
                ..view
            },
            ..by_thread
        };
        assert_eq!(
            predict_wait_from(
                sel(WaitCall::WaitidAll),
                1,
                o(WaitOpts::WNOTHREAD),
                &[hidden]
            ),
            echild
        );
        assert_eq!(
            predict_wait_from(
                sel(WaitCall::WaitidPid),
                1,
                o(WaitOpts::WNOTHREAD),
                &[hidden]
            ),
            reported
        );
    }

    #[test]
    fn kin_state_steps() {
        let view = ChildView {
            pid: 10,
            pgid: 5,
            hidden: false,
            sigchld: false,
            state: ChildState::Running,
        };
        let mut v = vec![
            Kin {
                view,
                creator: 0,
                autoreap: true,
            },
            Kin {
                view: ChildView {
                    pid: 11,
                    sigchld: true,
                    ..view
                },
                creator: 0,
                autoreap: false,
            },
        ];
        kin_signalled(&mut v, 10, libc::SIGSTOP);
        assert_eq!(v[0].view.state, ChildState::Stopped(libc::SIGSTOP));
        kin_after_wait(
            &mut v,
            WaitOpts(WaitOpts::WSTOPPED | WaitOpts::WNOWAIT),
            WaitOutcome::Reported {
                pid: 10,
                event: Event::Stopped(19),
            },
        );
        assert_eq!(v[0].view.state, ChildState::Stopped(libc::SIGSTOP));
        kin_after_wait(
            &mut v,
            WaitOpts(WaitOpts::WSTOPPED),
            WaitOutcome::Reported {
                pid: 10,
                event: Event::Stopped(19),
            },
        );
        assert_eq!(v[0].view.state, ChildState::StoppedReported);
        kin_signalled(&mut v, 10, libc::SIGCONT);
        assert_eq!(v[0].view.state, ChildState::Continued);
        // An autoreap child is gone when it exits; a plain one is a zombie.
        kin_signalled(&mut v, 10, libc::SIGKILL);
        kin_exits(&mut v, 11, Event::Exited(4));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].view.state, ChildState::Zombie(Event::Exited(4)));
        kin_after_wait(
            &mut v,
            WaitOpts(WaitOpts::WEXITED),
            WaitOutcome::Reported {
                pid: 11,
                event: Event::Exited(4),
            },
        );
        assert!(v.is_empty());
    }

    const ALL: [Semantics; 2] = [Semantics::Design, Semantics::Seed];

    #[test]
    fn semantics_names_and_default() {
        assert_eq!(Semantics::default(), Semantics::Design);
        for s in ALL {
            assert_eq!(Semantics::parse(s.name()), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.name())
            );
            assert_eq!(
                serde_json::from_str::<Semantics>(&format!("\"{s}\"")).unwrap(),
                s
            );
        }
        assert_eq!(Semantics::parse(""), Ok(Semantics::Design));
        assert_eq!(Semantics::parse(" Seed\n"), Ok(Semantics::Seed));
        assert!(Semantics::parse("mixed").is_err());
    }

    #[test]
    fn own_child_hidden_under_both() {
        // What the seed states: the creating parent's generic waits skip a
        // CLONE_WAIT_PID child, and only such a child.
        for s in ALL {
            let own = Lineage {
                wait_pid_flag: true,
                ..Lineage::default()
            };
            assert!(hidden_from_waiter(s, own), "{s}");
            assert!(!hidden_from_waiter(s, Lineage::default()), "{s}");
        }
    }

    #[test]
    fn reparented_hidden_child() {
        // reparent::subreaper::*, reparent::pidns_init::*: visible to the new
        // parent by design; the seed keeps PF_WAIT_PID.
        let l = Lineage {
            wait_pid_flag: true,
            creator_marked: false,
            reparented: true,
        };
        assert!(!hidden_from_waiter(Semantics::Design, l));
        assert!(hidden_from_waiter(Semantics::Seed, l));
    }

    #[test]
    fn children_of_a_hidden_child() {
        // open::descendants::grandchild_generic_wait,
        // open::threads::thread_child_generic_wait: the helper's own plain
        // child, as the helper (its creator) sees it.
        let helper = Lineage {
            wait_pid_flag: true,
            ..Lineage::default()
        };
        for s in ALL {
            let grandchild = Lineage {
                wait_pid_flag: false,
                creator_marked: helper.marked(s),
                reparented: false,
            };
            assert_eq!(
                hidden_from_waiter(s, grandchild),
                s == Semantics::Seed,
                "{s}"
            );
            // Inherited through every generation under Seed.
            let next = Lineage {
                wait_pid_flag: false,
                creator_marked: grandchild.marked(s),
                reparented: false,
            };
            assert_eq!(next.marked(s), s == Semantics::Seed, "{s}");
            // Reparented to a subreaper, it is plain by design, hidden by the seed.
            let up = Lineage {
                reparented: true,
                ..grandchild
            };
            assert_eq!(hidden_from_waiter(s, up), s == Semantics::Seed, "{s}");
        }
    }
}
