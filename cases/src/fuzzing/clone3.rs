//! `clone3_flags`: one arbitrary clone3 call, the child exits at once, then
//! three wait steps (a focused WNOWAIT sync, one generic wait, one focused
//! reap). The oracle is the model: `model::clone3_verdict` for the call,
//! `model::child` for what becomes of the child (a zombie or autoreaped,
//! hidden from our generic waits or not: `hidden_from_waiter` under
//! [`Env::semantics`], a CLONE_PARENT or reparented child being one we did
//! not make; how the disposable caller ends), `model::predict_wait` for
//! every wait step; [`check`] replays the steps the executor recorded
//! through the same [`WaitDriver`] the executor used. This module keeps the
//! input, its execution and the wording of findings.
//!
//! Containment (the executor runs in a process that has no other children:
//! the fuzz worker or a regression row's isolated process):
//! - `CLONE_PARENT`, and an `exit_signal` of SIGKILL or SIGSTOP (sent to
//!   the caller when the child exits), go through a disposable caller `P`
//!   forked for this one call; the child then ends up ours (its real parent,
//!   or reparented to us, a subreaper) and is checked here.
//! - every other signal is blocked while executing, and drained afterwards;
//! - `CLONE_SETTLS` children get the caller's own TLS base, `CLONE_VM`
//!   children a private stack (sys::clone), `CLONE_THREAD` children are
//!   awaited through `CLONE_CHILD_CLEARTID` + futex;
//! - a SIGCHLD action left at SIG_IGN is detected, compared with the model
//!   ([`Expected::sigchld_ignored`]) and restored.
//!
//! Where it runs: the fuzz worker (any input), a regression row's isolated
//! process, or, for inputs that cannot disturb the caller
//! ([`Clone3Case::harmless_to_caller`]), libFuzzer's own process, whose
//! other child (the worker, if it exists) is a bystander the executor leaves
//! alone ([`Scope`]) and that none of the input's waits may consider
//! ([`unseen_by_waits`]).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use super::common::{apply_outcome, call_id, describe_prediction, matches, predict, Out};
use super::isolate;
use crate::model::child::{self, Route};
pub use crate::model::child::{CallerFate as Ev2, ChildFate as Expected};
use crate::model::{
    clone3_verdict, Caller, CgroupDesc, ChildView, Clone3Desc, KernelFeatures, PidfdDesc,
    Prediction, Selector, Semantics, SetTidDesc, StackDesc, Verdict,
};
use crate::sys::clone::{clone3, flags::*, Clone3Request, Program, CLONE_ARGS_SIZE_VER2};
use crate::sys::wait::{wait, Event, WaitCall, WaitOpts, WaitTarget};
use crate::sys::{pidfd, Errno};

/// Environment variable that allows, on the host, executions that create
/// namespaces or `CLONE_VM` children. Without it such flag words are only
/// executed when the model says the kernel rejects them.
pub const RISKY_ENV: &str = protocol::env::WAIT_FUZZ_RISKY;

/// Bits whose successful use creates namespaces or shares our memory.
pub const RISKY_BITS: u64 = CLONE_VM
    | CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
    | CLONE_NEWTIME;

/// Bits with which a created child could disturb the process that made the
/// call beyond "a child that exits at once": shared memory, a suspended
/// caller (VFORK), a child that is not the caller's (PARENT) or is one of its
/// threads (THREAD), shared signal handlers (SIGHAND), namespaces (which,
/// for a pid-namespace init sharing our sighand, leave SIGCHLD at SIG_IGN),
/// a tracer's attention (PTRACE). Inputs with any of them run in the worker.
pub const CALLER_DISTURBING_BITS: u64 = RISKY_BITS
    | CLONE_VFORK
    | CLONE_PARENT
    | CLONE_THREAD
    | CLONE_SIGHAND
    | CLONE_PTRACE
    | CLONE_EMPTY_MNTNS;

/// Bits whose meaning the model knows and none of which disturbs the caller:
/// the rest of the legacy word (the CSIGNAL and DETACHED bits are rejected
/// by clone3), and the clone3-only bits up to CLONE_PIDFD_AUTOKILL.
const CALLER_SAFE_BITS: u64 = (CLONE_LEGACY_FLAGS
    | CLONE_CLEAR_SIGHAND
    | CLONE_INTO_CGROUP
    | CLONE_AUTOREAP
    | CLONE_NNP
    | CLONE_PIDFD_AUTOKILL)
    & !CALLER_DISTURBING_BITS;

/// Where [`execute_in`] runs, and what it must leave alone there.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Children of the caller that are not the executor's (the fuzz worker,
    /// when executing in libFuzzer's process): never killed, reaped or
    /// reported. The caller guarantees, with [`unseen_by_waits`], that no
    /// wait of the input considers them.
    pub bystanders: Vec<i32>,
    /// The caller is a multi-threaded process whose other threads never
    /// create children (libFuzzer's): list children through
    /// /proc/thread-self (and the thread-group leader, which inherits
    /// orphans) instead of walking every thread.
    pub only_this_thread_forks: bool,
    /// The input's child notifies with SIGCHLD or nothing
    /// ([`Clone3Case::harmless_to_caller`]), in libFuzzer's process: block
    /// every signal but SIGCHLD, drain nothing. SIGCHLD at SIG_DFL is then
    /// discarded when sent (no other thread is woken to take it, and without
    /// a handler it interrupts nothing); libFuzzer's SIGALRM, SIGINT, ...
    /// cannot interrupt a wait step (EINTR), and are delivered (or taken by
    /// another thread) as usual instead of being drained.
    pub sigchld_only: bool,
}

impl Scope {
    /// The executor's children now: ours minus the bystanders.
    pub fn children(&self) -> Vec<i32> {
        let mut v = if self.only_this_thread_forks {
            isolate::thread_children()
        } else {
            isolate::own_children()
        };
        v.retain(|p| !self.bystanders.contains(p));
        v
    }
}

/// Whether no wait step of `case` considers `bystander` (a running child of
/// the caller that is not the input's), according to the model: each step,
/// predicted against the bystander alone, fails with ECHILD (nothing
/// eligible) or EINVAL (bad options). Then its presence changes no answer:
/// eligibility is per child, and a child no step considers adds neither an
/// event nor the "something to wait for" that turns ECHILD into 0 or a block.
pub fn unseen_by_waits(case: &Clone3Case, bystander: &ChildView, own_pgid: i32) -> bool {
    use crate::sys::wait::WaitOutcome;
    // Any pid but the bystander's stands for the input's child.
    let pid = if bystander.pid == i32::MAX {
        i32::MAX - 1
    } else {
        i32::MAX
    };
    plan(case).into_iter().all(|(_, call, opts)| {
        // The executor's substitution (P_PIDFD without a pidfd) is focused too.
        let p = predict(Selector { call, pid, pgid: own_pgid, own_pgid }, opts, std::slice::from_ref(bystander));
        matches!(&p, Prediction::OneOf(v) if v.iter().all(|o| matches!(o, WaitOutcome::Failed(e) if *e == Errno::ECHILD || *e == Errno::EINVAL)))
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stack {
    None,
    Valid,
    SizeWithoutStack,
    StackWithoutSize,
    KernelAddress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetTid {
    None,
    NullWithSize(u64),
    PointerWithoutSize,
    /// n entries, each pid 1 (in use in every pid namespace we are in)
    InUse(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cgroup {
    Zero,
    Huge,
    Closed,
    /// our own cgroup2 directory
    Valid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pidfd {
    Valid,
    Bad,
    SameAsParentTid,
}

/// One fuzz input, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clone3Case {
    pub flags: u64,
    pub size: usize,
    /// (offset after the VER2 struct, byte) written into the tail
    pub tail_byte: Option<(usize, u8)>,
    pub exit_signal: u64,
    pub stack: Stack,
    pub set_tid: SetTid,
    pub cgroup: Cgroup,
    pub pidfd: Pidfd,
    pub exit_code: u8,
    #[serde(with = "call_id")]
    pub generic: WaitCall,
    /// extra option bits of the generic wait (__WALL/__WCLONE)
    pub generic_opts: u32,
    #[serde(with = "call_id")]
    pub focused: WaitCall,
    pub focused_opts: u32,
}

/// What the executor needs to know about where it runs.
#[derive(Clone, Debug)]
pub struct Env {
    pub features: KernelFeatures,
    pub caller: Caller,
    pub allow_risky: bool,
    /// an open fd of our cgroup2 directory, if there is one
    pub cgroup_fd: Option<RawFd>,
    /// whether the waiter's generic waits see a hidden child it did not
    /// make (CLONE_PARENT, reparented): `model::hidden_from_waiter`
    pub semantics: Semantics,
}

/// The calling process's privileges and pid-namespace depth.
pub fn detect_caller() -> Caller {
    Caller {
        root: rustix::process::geteuid().is_root(),
        ns_init: rustix::process::getpid().is_init(),
        ns_level: crate::sys::proc::pid_ns_level() as u64,
    }
}

impl Env {
    /// Look around: caller privileges and namespace depth, the opt-in, our
    /// cgroup, the semantics from `WAIT_FUZZ_SEMANTICS` (unset: design; a
    /// value that is neither panics). The cgroup fd, when opened, stays open
    /// for the process life.
    pub fn detect(features: KernelFeatures) -> Env {
        let semantics = Semantics::from_env().unwrap_or_else(|e| panic!("{e}"));
        Env::detect_with(features, semantics)
    }

    /// The same with the semantics given (a regression replays under the
    /// semantics saved with it).
    pub fn detect_with(features: KernelFeatures, semantics: Semantics) -> Env {
        let allow_risky = std::env::var(RISKY_ENV).map(|v| v == "1").unwrap_or(false);
        Env {
            features,
            caller: detect_caller(),
            allow_risky,
            cgroup_fd: open_own_cgroup(),
            semantics,
        }
    }
}

/// Our cgroup2 directory: the cgroup2 mount from mountinfo (which may be
/// /sys/fs/cgroup or, on hybrid hosts, /sys/fs/cgroup/unified) plus our
/// path from the `0::` line of /proc/self/cgroup. Checked by fs magic.
fn open_own_cgroup() -> Option<RawFd> {
    let s = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = s
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim()
        .to_string();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (root, mnt) = mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let f: Vec<&str> = pre.split_whitespace().collect();
        Some((f.get(3)?.to_string(), f.get(4)?.to_string()))
    })?;
    let rel = path
        .strip_prefix(root.trim_end_matches('/'))
        .unwrap_or(&path);
    let f = std::fs::File::open(format!("{mnt}/{}", rel.trim_start_matches('/'))).ok()?;
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let st = rustix::fs::fstatfs(&f).ok()?;
    if st.f_type as i64 != CGROUP2_SUPER_MAGIC {
        return None;
    }
    Some(std::os::fd::IntoRawFd::into_raw_fd(f))
}

impl Clone3Case {
    /// A call with `flags` and `exit_signal` and nothing else unusual: a
    /// VER2-sized struct without tail, no stack, set_tid or cgroup, a valid
    /// pidfd pointer; the child exits with 7; waits `waitid(P_ALL)` then
    /// `waitid(P_PIDFD)`, no extra options.
    pub fn plain(flags: u64, exit_signal: u64) -> Clone3Case {
        Clone3Case {
            flags,
            size: CLONE_ARGS_SIZE_VER2,
            tail_byte: None,
            exit_signal,
            stack: Stack::None,
            set_tid: SetTid::None,
            cgroup: Cgroup::Zero,
            pidfd: Pidfd::Valid,
            exit_code: 7,
            generic: WaitCall::WaitidAll,
            generic_opts: 0,
            focused: WaitCall::WaitidPidfd,
            focused_opts: 0,
        }
    }

    /// The model's description of this argument block.
    pub fn desc(&self) -> Clone3Desc {
        let tail_nonzero = match self.tail_byte {
            Some((off, b)) => b != 0 && CLONE_ARGS_SIZE_VER2 + off < self.size,
            None => false,
        };
        Clone3Desc {
            flags: self.flags,
            size: self.size,
            tail_nonzero,
            exit_signal: self.exit_signal,
            stack: match self.stack {
                Stack::None => StackDesc::None,
                Stack::Valid => StackDesc::Valid,
                Stack::SizeWithoutStack => StackDesc::SizeWithoutStack,
                Stack::StackWithoutSize => StackDesc::StackWithoutSize,
                Stack::KernelAddress => StackDesc::KernelAddress,
            },
            set_tid: match self.set_tid {
                SetTid::None => SetTidDesc::None,
                SetTid::NullWithSize(n) => SetTidDesc::NullWithSize(n),
                SetTid::PointerWithoutSize => SetTidDesc::PointerWithoutSize,
                SetTid::InUse(n) => SetTidDesc::InUse(n),
            },
            cgroup: match self.cgroup {
                Cgroup::Zero => CgroupDesc::Zero,
                Cgroup::Huge => CgroupDesc::Huge,
                Cgroup::Closed => CgroupDesc::Closed,
                Cgroup::Valid => CgroupDesc::Valid,
            },
            pidfd: match self.pidfd {
                Pidfd::Valid => PidfdDesc::Valid,
                Pidfd::Bad => PidfdDesc::Bad,
                Pidfd::SameAsParentTid => PidfdDesc::SameAsParentTid,
            },
        }
    }

    /// Make the case executable here, deterministically: a cgroup fd we do
    /// not have becomes a closed one; on the host without the opt-in, risky
    /// bits are cleared from flag words the model says the kernel accepts.
    /// The fuzz targets normalise before anything else, so what is printed
    /// and saved is what ran.
    pub fn normalise(&mut self, env: &Env) {
        // set_tid "in use" cannot be realised for a new pid namespace: its
        // level is empty, so the entry for it (pid 1) would be free and the
        // kernel would create the child. Found by clone3_flags
        // (CLONE_NEWUSER|CLONE_NEWPID, set_tid = {1}): an engine limit, not
        // a kernel or model bug, so such inputs drop CLONE_NEWPID.
        if self.flags & CLONE_NEWPID != 0 && matches!(self.set_tid, SetTid::InUse(_)) {
            self.flags &= !CLONE_NEWPID;
        }
        if self.cgroup == Cgroup::Valid && env.cgroup_fd.is_none() {
            self.cgroup = Cgroup::Closed;
        }
        if !env.allow_risky
            && self.flags & RISKY_BITS != 0
            && !matches!(
                clone3_verdict(&self.desc(), &env.features, &env.caller),
                Verdict::Fails(_)
            )
        {
            self.flags &= !RISKY_BITS;
        }
    }

    /// Whether the input may run in a process that must survive it intact
    /// (libFuzzer's): whatever the kernel answers, at most a child process
    /// that exits at once, notifies with SIGCHLD or nothing, and is the
    /// caller's own. Decided on the input alone, not on the model's verdict
    /// (which is what is under test). `extra_bits`: bits the campaign uses as
    /// CLONE_WAIT_PID (the configured bit, bit 40); the feature's bit, when
    /// the kernel has it, is added here.
    pub fn harmless_to_caller(&self, env: &Env, extra_bits: u64) -> bool {
        let allowed = CALLER_SAFE_BITS
            | ((extra_bits | env.features.wait_pid_bit.unwrap_or(0)) & !CALLER_DISTURBING_BITS);
        self.flags & !allowed == 0
            && (self.exit_signal == 0 || self.exit_signal == libc::SIGCHLD as u64)
    }

    /// Whether executing may create a namespace or CLONE_VM child.
    pub fn risky(&self, env: &Env) -> bool {
        self.flags & RISKY_BITS != 0
            && !matches!(
                clone3_verdict(&self.desc(), &env.features, &env.caller),
                Verdict::Fails(_)
            )
    }

    fn via_disposable_caller(&self) -> bool {
        self.flags & CLONE_PARENT != 0
            || self.exit_signal == libc::SIGKILL as u64
            || self.exit_signal == libc::SIGSTOP as u64
    }

    fn thread(&self) -> bool {
        self.flags & CLONE_THREAD != 0
    }
}

impl std::fmt::Display for Clone3Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "clone3(flags = {}, size = {}, exit_signal = {}, stack = {:?}, set_tid = {:?}, cgroup = {:?}, pidfd = {:?}{})",
            flag_names(self.flags), self.size, self.exit_signal, self.stack, self.set_tid, self.cgroup, self.pidfd,
            match self.tail_byte { Some((o, b)) => format!(", tail[{o}] = {b:#x}"), None => String::new() })?;
        writeln!(f, "child: _exit({})", self.exit_code)?;
        for (label, call, opts) in plan(self) {
            writeln!(f, "{label}: {}", call.spell(opts))?;
        }
        Ok(())
    }
}

/// `CLONE_PIDFD|CLONE_VM|0x10000000000`-style spelling of a flag word (the protocol's names).
pub fn flag_names(f: u64) -> String {
    protocol::flags::names(f)
}

/// The three wait steps, in order: (label, call, options).
pub fn plan(case: &Clone3Case) -> [(&'static str, WaitCall, WaitOpts); 3] {
    let extra = |o: u32| o & (WaitOpts::WALL | WaitOpts::WCLONE);
    let g = case.generic;
    let mut gopts = WaitOpts::WNOHANG | extra(case.generic_opts);
    if g.is_waitid() {
        gopts |= WaitOpts::WEXITED;
    }
    let mut fopts = extra(case.focused_opts);
    if case.focused.is_waitid() {
        fopts |= WaitOpts::WEXITED;
    }
    [
        (
            "sync",
            WaitCall::WaitidPid,
            WaitOpts(WaitOpts::WEXITED | WaitOpts::WNOWAIT | WaitOpts::WALL),
        ),
        ("generic", g, WaitOpts(gopts)),
        ("focused", case.focused, WaitOpts(fopts)),
    ]
}

/// How the executor makes the call: through the disposable caller P for
/// CLONE_PARENT and for an exit signal that would kill or stop us.
fn route(case: &Clone3Case) -> Route {
    if case.via_disposable_caller() {
        Route::ViaCaller
    } else {
        Route::Direct
    }
}

/// What the model expects of the call (`model::child::clone3_child`). With
/// `Verdict::Unknown` the model has no rule for the call: nothing that
/// depends on a child being created is expected (the executor makes no wait
/// step and [`check`] compares only what the model knows).
pub fn expected(case: &Clone3Case, env: &Env) -> Expected {
    child::clone3_child(&case.desc(), &env.features, &env.caller, route(case))
}

/// The caller's children as the model sees them right after the child
/// exited (`model::child::children_after_exit`). `pid` is the child clone3
/// returned.
pub fn initial_children(
    case: &Clone3Case,
    env: &Env,
    exp: &Expected,
    pid: i32,
    own_pgid: i32,
) -> Vec<ChildView> {
    let x = child::Exited {
        pid,
        pgid: own_pgid,
        code: case.exit_code,
    };
    child::children_after_exit(
        &case.desc(),
        &env.features,
        exp,
        route(case),
        env.semantics,
        x,
    )
}

/// The model side of the wait steps: the children it believes we have.
pub struct WaitDriver {
    pub children: Vec<ChildView>,
    pub pid: i32,
    pub own_pgid: i32,
}

impl WaitDriver {
    pub fn prediction(&self, call: WaitCall, opts: WaitOpts) -> Prediction {
        predict(
            Selector {
                call,
                pid: self.pid,
                pgid: self.own_pgid,
                own_pgid: self.own_pgid,
            },
            opts,
            &self.children,
        )
    }
    pub fn observe(&mut self, opts: WaitOpts, out: Out) {
        apply_outcome(&mut self.children, opts, out)
    }
}

/// One executed (or skipped) wait step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepObs {
    pub label: String,
    /// the call made (`WaitCall::id`): the plan's, or waitid_pid when a
    /// P_PIDFD step had no pidfd (the child was already gone)
    pub call: String,
    /// None: not executed (the model said it would block)
    pub out: Option<Out>,
}

/// Everything one execution observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clone3Obs {
    /// Some(Ok(pid)) / Some(Err(errno)); None: the disposable caller died
    /// before it could report
    pub result: Option<Result<i32, i32>>,
    pub own_pgid: i32,
    pub caller_fate: Option<Ev2>,
    pub steps: Vec<StepObs>,
    /// children left after the steps (reaped by the executor)
    pub leftovers: Vec<i32>,
    pub sigchld_ignored: bool,
    /// signals that arrived (blocked) during the execution
    pub signals: Vec<i32>,
    /// the execution was refused (risky on the host)
    pub refused: Option<String>,
}

/// The request plus the memory it points into, kept alive until the child
/// is gone.
struct Built {
    req: Clone3Request,
    _stack: Option<Vec<u8>>,
    _set_tid: Vec<i32>,
    slot: Box<i32>,
    futex: Box<AtomicU32>,
}

fn build(case: &Clone3Case, env: &Env) -> Built {
    let mut req = Clone3Request::new(case.flags, case.exit_signal);
    req.size = case.size;
    if case.size > CLONE_ARGS_SIZE_VER2 {
        let mut tail = vec![0u8; (case.size - CLONE_ARGS_SIZE_VER2).min(8192)];
        if let Some((off, b)) = case.tail_byte {
            if let Some(s) = tail.get_mut(off) {
                *s = b;
            }
        }
        req.tail = tail;
    }
    let mut stack = None;
    match case.stack {
        Stack::None => {}
        Stack::Valid => {
            let mut s = vec![0u8; 64 * 1024];
            req.args.stack = s.as_mut_ptr() as u64;
            req.args.stack_size = s.len() as u64;
            stack = Some(s);
        }
        Stack::SizeWithoutStack => req.args.stack_size = 4096,
        Stack::StackWithoutSize => {
            let mut s = vec![0u8; 4096];
            req.args.stack = s.as_mut_ptr() as u64;
            stack = Some(s);
        }
        Stack::KernelAddress => {
            req.args.stack = 0xffff_8000_0000_0000;
            req.args.stack_size = 4096;
        }
    }
    let mut set_tid = Vec::new();
    // The array starts at an address whose low byte is not zero: a size that
    // cuts the pointer field passes its low bytes, which are then never all
    // zero (the model relies on it: model::set_tid_cut_by_size).
    let mut array = |len: usize| {
        set_tid = vec![1i32; len + 1];
        let skip = usize::from(set_tid.as_ptr() as usize & 0xff == 0);
        set_tid[skip..].as_ptr() as u64
    };
    match case.set_tid {
        SetTid::None => {}
        SetTid::NullWithSize(n) => req.args.set_tid_size = n,
        SetTid::PointerWithoutSize => req.args.set_tid = array(1),
        SetTid::InUse(n) => {
            req.args.set_tid = array((n as usize).clamp(1, 64));
            req.args.set_tid_size = n;
        }
    }
    req.args.cgroup = match case.cgroup {
        Cgroup::Zero => 0,
        Cgroup::Huge => 1 << 40,
        Cgroup::Closed => 1_000_000,
        Cgroup::Valid => env.cgroup_fd.map(|f| f as u64).unwrap_or(1_000_000),
    };
    let mut slot = Box::new(-1i32);
    match case.pidfd {
        Pidfd::Valid => {}
        Pidfd::Bad => {
            req.auto_pidfd = false;
            req.args.pidfd = 8;
        }
        Pidfd::SameAsParentTid => {
            req.auto_pidfd = false;
            req.args.pidfd = &mut *slot as *mut i32 as u64;
            req.args.parent_tid = req.args.pidfd;
        }
    }
    if case.flags & CLONE_SETTLS != 0 {
        req.args.tls = isolate::current_tls();
    }
    let futex = Box::new(AtomicU32::new(1));
    if case.thread() {
        // The engine's own addition: the kernel clears this word and wakes
        // it when the thread is gone (mm_release), so we know when its stack
        // is free.
        req.args.flags |= CLONE_CHILD_CLEARTID;
        req.args.child_tid = &*futex as *const AtomicU32 as u64;
    }
    Built {
        req,
        _stack: stack,
        _set_tid: set_tid,
        slot,
        futex,
    }
}

fn await_thread(word: &AtomicU32) {
    loop {
        let v = word.load(Ordering::SeqCst);
        if v == 0 {
            return;
        }
        // SAFETY: FUTEX_WAIT on a live, aligned u32 we own; returns at once
        // if the value already changed.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                v,
                std::ptr::null::<libc::timespec>(),
            );
        }
    }
}

/// Run the case in this process. The caller must have no other children
/// and SIGCHLD at SIG_DFL. Every child created is reaped before returning.
pub fn execute(case: &Clone3Case, env: &Env) -> Clone3Obs {
    execute_in(case, env, &Scope::default())
}

/// [`execute`] in a process whose only other children are `scope.bystanders`.
pub fn execute_in(case: &Clone3Case, env: &Env, scope: &Scope) -> Clone3Obs {
    // SAFETY: getpgrp has no arguments and cannot fail.
    let own_pgid = unsafe { libc::getpgrp() };
    let mut obs = Clone3Obs {
        result: None,
        own_pgid,
        caller_fate: None,
        steps: Vec::new(),
        leftovers: Vec::new(),
        sigchld_ignored: false,
        signals: Vec::new(),
        refused: None,
    };
    if !env.allow_risky && case.risky(env) {
        obs.refused = Some(format!(
            "creates a namespace or CLONE_VM child: set {RISKY_ENV}=1 to allow"
        ));
        return obs;
    }
    let exp = expected(case, env);
    let mask = if scope.sigchld_only {
        isolate::block_all_but_sigchld()
    } else {
        isolate::block_all_signals()
    };
    // The child's pidfd, and memory the child may still use.
    let mut keep: Option<(Option<OwnedFd>, Built, Option<crate::sys::clone::Spawned>)> = None;
    if case.via_disposable_caller() {
        exec_disposable(case, env, &mut obs);
    } else {
        let built = build(case, env);
        match clone3(&built.req, Program::Exit(case.exit_code as i32)) {
            Err(e) => obs.result = Some(Err(e.0)),
            Ok(sp) => {
                obs.result = Some(Ok(sp.pid));
                if case.thread() {
                    await_thread(&built.futex);
                }
                let mut fd = None;
                if case.flags & CLONE_PIDFD != 0
                    && case.pidfd == Pidfd::SameAsParentTid
                    && *built.slot >= 0
                {
                    // SAFETY: the kernel stored a fresh pidfd in our slot
                    // (auto_pidfd was off) that nothing else owns.
                    fd = Some(unsafe { OwnedFd::from_raw_fd(*built.slot) });
                }
                keep = Some((fd, built, Some(sp)));
            }
        }
    }
    let unknown = matches!(exp.verdict, Verdict::Unknown(_));
    // Without a rule the model predicts no wait: a child, if any, is only
    // reaped below (focused waits), as a leftover.
    if let (Some(Ok(pid)), false) = (obs.result, unknown) {
        let mut d = WaitDriver {
            children: initial_children(case, env, &exp, pid, own_pgid),
            pid,
            own_pgid,
        };
        // A pidfd for P_PIDFD: clone3's, else one opened now (ESRCH when the
        // child is already reaped).
        let have_fd = keep.as_ref().is_some_and(|(slotfd, _, sp)| {
            slotfd.is_some() || sp.as_ref().is_some_and(|s| s.pidfd.is_some())
        });
        let own_fd: Option<OwnedFd> = if case.thread() || have_fd {
            None
        } else {
            pidfd::open(pid, false).ok()
        };
        let fd = keep
            .as_ref()
            .and_then(|(slotfd, _, sp)| {
                slotfd.as_ref().map(|f| f.as_fd()).or_else(|| {
                    sp.as_ref()
                        .and_then(|s| s.pidfd.as_ref().map(|f| f.as_fd()))
                })
            })
            .filter(|_| !case.thread())
            .or_else(|| own_fd.as_ref().map(|f| f.as_fd()));
        for (label, call, opts) in plan(case) {
            let call = if call == WaitCall::WaitidPidfd && fd.is_none() {
                WaitCall::WaitidPid
            } else {
                call
            };
            let pred = d.prediction(call, opts);
            if pred == Prediction::Blocks {
                obs.steps.push(StepObs {
                    label: label.into(),
                    call: call.id().into(),
                    out: None,
                });
                continue;
            }
            let out: Out = wait(
                call,
                WaitTarget {
                    pid,
                    pidfd: fd,
                    pgid: own_pgid,
                },
                opts,
            )
            .into();
            d.observe(opts, out);
            obs.steps.push(StepObs {
                label: label.into(),
                call: call.id().into(),
                out: Some(out),
            });
        }
    }
    obs.leftovers = isolate::reap_children_with(|| scope.children());
    drop(keep);
    obs.sigchld_ignored = isolate::sigchld_ignored();
    if obs.sigchld_ignored {
        isolate::restore_sigchld_default();
    }
    if !scope.sigchld_only {
        obs.signals = isolate::drain_pending_signals();
    }
    isolate::restore_mask(mask);
    obs
}

/// CLONE_PARENT, or an exit_signal that would kill or stop us: a disposable
/// caller P makes the call and reports; the child ends up ours.
fn exec_disposable(case: &Clone3Case, env: &Env, obs: &mut Clone3Obs) {
    let (rep_r, rep_w) = crate::sys::clone::pipe();
    let rep_w_raw = rep_w.as_raw_fd();
    let c = case.clone();
    let e = env.clone();
    let p = clone3(
        &Clone3Request::new(0, libc::SIGCHLD as u64),
        Program::Run(Box::new(move || {
            // SAFETY: our private copy of the report pipe's write end.
            let rep_w = unsafe { OwnedFd::from_raw_fd(rep_w_raw) };
            let built = build(&c, &e);
            let (rel_r, rel_w) = crate::sys::clone::pipe();
            let prog = if c.flags & CLONE_VFORK != 0 {
                Program::Exit(c.exit_code as i32)
            } else {
                Program::AwaitThenExit {
                    fd: rel_r.as_raw_fd(),
                    code: c.exit_code as i32,
                }
            };
            let r = clone3(&built.req, prog);
            let val: i64 = match &r {
                Ok(sp) => sp.pid as i64,
                Err(e) => -(e.0 as i64),
            };
            isolate::write_all(&rep_w, &val.to_le_bytes());
            if let Ok(sp) = r {
                isolate::write_all(&rel_w, &[1]);
                if c.flags & (CLONE_PARENT | CLONE_THREAD) == 0 {
                    // Wait (without reaping) until the child is a zombie:
                    // its exit_signal reaches us before we exit.
                    let t = WaitTarget::pid(sp.pid);
                    let _ = wait(
                        WaitCall::WaitidPid,
                        t,
                        WaitOpts(WaitOpts::WEXITED | WaitOpts::WNOWAIT | WaitOpts::WALL),
                    );
                }
                std::mem::forget(sp);
            }
            0
        })),
    );
    drop(rep_w);
    let p = match p {
        Ok(p) => p,
        Err(e) => {
            obs.refused = Some(format!("could not fork the disposable caller: {e}"));
            return;
        }
    };
    let t = WaitTarget::pid(p.pid);
    let fate = wait(
        WaitCall::WaitidPid,
        t,
        WaitOpts(WaitOpts::WEXITED | WaitOpts::WSTOPPED),
    );
    obs.caller_fate = Some(match fate {
        crate::sys::wait::WaitOutcome::Reported {
            event: Event::Exited(0),
            ..
        } => Ev2::Exited0,
        crate::sys::wait::WaitOutcome::Reported {
            event: Event::Killed(9),
            ..
        } => Ev2::Killed9,
        crate::sys::wait::WaitOutcome::Reported {
            event: Event::Stopped(_),
            ..
        } => {
            // Our stopped, unreaped child: its pid is still its own.
            if let Ok(stopped) = crate::harness::executor::Proc::open(p.pid) {
                let _ = stopped.kill();
            }
            let _ = wait(WaitCall::WaitidPid, t, WaitOpts(WaitOpts::WEXITED));
            Ev2::Stopped
        }
        other => {
            obs.refused = Some(format!("disposable caller ended unexpectedly: {other}"));
            Ev2::Exited0
        }
    });
    let mut buf = [0u8; 8];
    if isolate::readable_within(&rep_r, 0) && isolate::read_exact(&rep_r, &mut buf) {
        let v = i64::from_le_bytes(buf);
        obs.result = Some(if v >= 0 {
            Ok(v as i32)
        } else {
            Err((-v) as i32)
        });
    }
}

/// The oracle: does this observation agree with the model? Err(detail).
pub fn check(case: &Clone3Case, env: &Env, obs: &Clone3Obs) -> Result<(), String> {
    if let Some(r) = &obs.refused {
        return if r.starts_with("creates") {
            Ok(())
        } else {
            Err(format!("harness: {r}"))
        };
    }
    let exp = expected(case, env);
    let unknown = matches!(exp.verdict, Verdict::Unknown(_));
    let mut problems = Vec::new();
    let verdict_str = format!("{:?}", exp.verdict);
    match (&exp.verdict, obs.result) {
        (Verdict::Created, Some(Ok(_))) | (Verdict::Unknown(_), _) => {}
        (Verdict::Fails(e), Some(Err(got))) if e.0 == got => {}
        // CLONE_VFORK: the caller resumes when the child releases its mm,
        // before the child's exit_signal is sent; SIGKILL or SIGSTOP may then
        // end or stop it before it reports (found by clone3_flags with
        // CLONE_VFORK, exit_signal SIGSTOP: an engine race, not a finding).
        (Verdict::Created, None)
            if matches!(exp.caller_fate, Some(Ev2::Killed9 | Ev2::Stopped))
                && case.flags & CLONE_VFORK != 0 => {}
        (_, got) => problems.push(format!(
            "clone3: model says {verdict_str}, kernel {}",
            match got {
                Some(Ok(pid)) => format!("created pid {pid}"),
                Some(Err(e)) => format!("failed with {}", Errno(e)),
                None => "result unknown (the caller died before reporting)".into(),
            }
        )),
    }
    if exp.caller_fate.is_some() && obs.caller_fate != exp.caller_fate && obs.result.is_some() {
        problems.push(format!(
            "disposable caller: expected {:?}, got {:?}",
            exp.caller_fate, obs.caller_fate
        ));
    }
    let mut expected_left: Vec<i32> = Vec::new();
    if let (Some(Ok(pid)), true) = (obs.result, unknown) {
        // No rule: the executor made no wait step; the child, unless
        // something reaped it, was left over (and reaped with a focused wait).
        if !obs.steps.is_empty() {
            problems.push(format!(
                "executor made {} wait step(s) without a model rule",
                obs.steps.len()
            ));
        }
        if obs.leftovers.iter().any(|p| *p != pid) {
            problems.push(format!(
                "children left after the call: {:?}, only the child {pid} may be",
                obs.leftovers
            ));
        }
    } else if let Some(Ok(pid)) = obs.result {
        let mut d = WaitDriver {
            children: initial_children(case, env, &exp, pid, obs.own_pgid),
            pid,
            own_pgid: obs.own_pgid,
        };
        for (i, (label, call, opts)) in plan(case).into_iter().enumerate() {
            let Some(step) = obs.steps.get(i) else {
                problems.push(format!("{label}: not executed"));
                break;
            };
            // The executor's one substitution: P_PIDFD without a pidfd.
            let call = if call == WaitCall::WaitidPidfd && step.call == WaitCall::WaitidPid.id() {
                WaitCall::WaitidPid
            } else {
                call
            };
            if step.call != call.id() {
                problems.push(format!(
                    "{label}: executor made {} instead of {}",
                    step.call,
                    call.id()
                ));
                break;
            }
            let pred = d.prediction(call, opts);
            match step.out {
                None if pred == Prediction::Blocks => {}
                None => problems.push(format!(
                    "{label}: {} skipped, but the model predicts {}",
                    call.spell(opts),
                    describe_prediction(&pred)
                )),
                Some(out) => {
                    if !matches(&pred, out) {
                        problems.push(format!(
                            "{label}: {} returned {out}, model predicts {}",
                            call.spell(opts),
                            describe_prediction(&pred)
                        ));
                    }
                    d.observe(opts, out);
                }
            }
        }
        expected_left = d.children.iter().map(|c| c.pid).collect();
    }
    let mut left = obs.leftovers.clone();
    left.sort_unstable();
    expected_left.sort_unstable();
    let unknown_ok =
        (obs.result.is_none() && left.len() <= 1) || (unknown && matches!(obs.result, Some(Ok(_))));
    if left != expected_left && !unknown_ok {
        problems.push(format!(
            "children left after the waits: {left:?}, model expects {expected_left:?}"
        ));
    }
    // Whether SIGCHLD ends at SIG_IGN depends on the child the model cannot
    // describe when it has no rule and the kernel created one.
    let sigchld_known = !(unknown && matches!(obs.result, Some(Ok(_)) | None));
    if sigchld_known && obs.sigchld_ignored != exp.sigchld_ignored {
        problems.push(format!(
            "SIGCHLD action SIG_IGN afterwards: {}, model expects {}",
            obs.sigchld_ignored, exp.sigchld_ignored
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChildState;

    fn env(version: (u32, u32), bit: Option<u64>) -> Env {
        Env {
            features: KernelFeatures::new(version, bit),
            caller: Caller {
                root: true,
                ns_init: false,
                ns_level: 0,
            },
            allow_risky: false,
            cgroup_fd: None,
            semantics: Semantics::Design,
        }
    }

    fn case(flags: u64, exit_signal: u64) -> Clone3Case {
        Clone3Case::plain(flags, exit_signal)
    }

    #[test]
    fn harmless_to_caller() {
        let e = env((6, 12), Some(1 << 40));
        let sig = libc::SIGCHLD as u64;
        assert!(case(CLONE_PIDFD, sig).harmless_to_caller(&e, 0));
        assert!(case(CLONE_PIDFD | (1 << 40), sig).harmless_to_caller(&e, 0));
        assert!(case(
            CLONE_PIDFD | CLONE_FILES | CLONE_SETTLS | CLONE_INTO_CGROUP,
            0
        )
        .harmless_to_caller(&e, 0));
        // whatever the model says of them
        for f in [
            CLONE_VM,
            CLONE_VFORK,
            CLONE_PARENT,
            CLONE_THREAD,
            CLONE_SIGHAND,
            CLONE_NEWPID,
            CLONE_NEWUSER,
            CLONE_PTRACE,
            CLONE_EMPTY_MNTNS,
        ] {
            assert!(
                !case(f | CLONE_PIDFD, sig).harmless_to_caller(&e, 0),
                "{}",
                flag_names(f)
            );
        }
        // a bit nobody named, an exit signal other than SIGCHLD or none
        assert!(!case(1 << 45, sig).harmless_to_caller(&e, 0));
        assert!(case(1 << 45, sig).harmless_to_caller(&e, 1 << 45));
        for s in [
            libc::SIGKILL as u64,
            libc::SIGSTOP as u64,
            libc::SIGUSR1 as u64,
            65,
            1 << 40,
        ] {
            assert!(
                !case(CLONE_PIDFD, s).harmless_to_caller(&e, 0),
                "exit_signal {s}"
            );
        }
    }

    #[test]
    fn bystander_worker() {
        let own = 100;
        let w = |sigchld: bool, pgid: i32| ChildView {
            pid: 555,
            pgid,
            hidden: false,
            sigchld,
            state: ChildState::Running,
        };
        let mut c = case(CLONE_PIDFD, libc::SIGCHLD as u64);
        // P_ALL without __WALL/__WCLONE: sees a SIGCHLD worker, not a clone one
        assert!(!unseen_by_waits(&c, &w(true, 555), own));
        assert!(unseen_by_waits(&c, &w(false, 555), own));
        for o in [WaitOpts::WALL, WaitOpts::WCLONE] {
            c.generic_opts = o;
            assert!(!unseen_by_waits(&c, &w(false, 555), own));
        }
        // waits on our group: only a worker in our group
        for g in [
            WaitCall::WaitpidZero,
            WaitCall::WaitidPgid,
            WaitCall::Wait4NegPgid,
        ] {
            c.generic = g;
            c.generic_opts = WaitOpts::WALL;
            assert!(unseen_by_waits(&c, &w(true, 555), own), "{g:?}");
            assert!(!unseen_by_waits(&c, &w(true, own), own), "{g:?}");
        }
        // focused waits never select it
        c.generic = WaitCall::WaitpidZero;
        for f in WaitCall::FOCUSED {
            c.focused = f;
            c.focused_opts = WaitOpts::WALL;
            assert!(unseen_by_waits(&c, &w(true, 555), own), "{f:?}");
        }
        // wait() takes no options: a clone child is not its business
        c.generic = WaitCall::Wait;
        assert!(unseen_by_waits(&c, &w(false, 555), own));
        assert!(!unseen_by_waits(&c, &w(true, 555), own));
    }

    #[test]
    fn autoreap_child_is_no_zombie() {
        let k = case(CLONE_PIDFD | CLONE_AUTOREAP, 0);
        let e72 = env((7, 2), None);
        let x = expected(&k, &e72);
        assert_eq!(x.verdict, Verdict::Created);
        assert!(x.autoreap);
        assert!(initial_children(&k, &e72, &x, 42, 1).is_empty());
        // before 7.1 the bit is unknown: EINVAL, nothing to reap
        let x = expected(&k, &env((6, 12), None));
        assert!(matches!(x.verdict, Verdict::Fails(_)));
        assert!(!x.autoreap);
        let x = expected(&case(CLONE_PIDFD, libc::SIGCHLD as u64), &e72);
        assert!(!x.autoreap);
    }

    #[test]
    fn unknown_is_not_created() {
        let e72 = env((7, 2), None);
        let mut k = case(
            CLONE_EMPTY_MNTNS | CLONE_NEWPID | CLONE_VM | CLONE_SIGHAND,
            libc::SIGCHLD as u64,
        );
        let x = expected(&k, &e72);
        assert!(matches!(x.verdict, Verdict::Unknown(_)), "{:?}", x.verdict);
        assert!(!x.sigchld_ignored && !x.autoreap && x.caller_fate.is_none());
        // the kernel may create a child or not; no wait step, the child left over
        let obs = |result, leftovers: Vec<i32>, sigchld_ignored| Clone3Obs {
            result,
            own_pgid: 1,
            caller_fate: None,
            steps: Vec::new(),
            leftovers,
            sigchld_ignored,
            signals: Vec::new(),
            refused: None,
        };
        assert_eq!(check(&k, &e72, &obs(Some(Ok(42)), vec![42], true)), Ok(()));
        assert_eq!(check(&k, &e72, &obs(Some(Ok(42)), vec![], false)), Ok(()));
        assert_eq!(check(&k, &e72, &obs(Some(Err(22)), vec![], false)), Ok(()));
        assert!(check(&k, &e72, &obs(Some(Ok(42)), vec![42, 43], false)).is_err());
        assert!(check(&k, &e72, &obs(Some(Err(22)), vec![43], false)).is_err());
        // through the disposable caller: its fate is not judged either
        k.flags = CLONE_EMPTY_MNTNS | CLONE_PARENT;
        k.exit_signal = 0;
        assert!(matches!(expected(&k, &e72).verdict, Verdict::Unknown(_)));
        let mut o = obs(Some(Ok(42)), vec![42], false);
        o.caller_fate = Some(Ev2::Stopped);
        assert_eq!(check(&k, &e72, &o), Ok(()));
    }

    /// The old oracle marked every child made with the bit hidden, also a
    /// CLONE_PARENT child, which the executor (not its creator P) waits for:
    /// under design semantics that contradicted `model::hidden_from_waiter`.
    /// Now the oracle asks the model: design expects the generic wait to
    /// reap it, seed expects ECHILD and the focused wait to reap it.
    #[test]
    fn clone_parent_child_hidden_only_under_seed() {
        let bit = 1u64 << 40;
        let k = case(CLONE_PIDFD | bit | CLONE_PARENT, 0);
        let steps = plan(&k);
        let obs = |generic: Out, focused: Out| Clone3Obs {
            result: Some(Ok(42)),
            own_pgid: 1,
            caller_fate: Some(Ev2::Exited0),
            steps: vec![
                StepObs {
                    label: "sync".into(),
                    call: steps[0].1.id().into(),
                    out: Some(Out::Reported {
                        pid: 42,
                        event: Event::Exited(7),
                    }),
                },
                StepObs {
                    label: "generic".into(),
                    call: steps[1].1.id().into(),
                    out: Some(generic),
                },
                StepObs {
                    label: "focused".into(),
                    call: steps[2].1.id().into(),
                    out: Some(focused),
                },
            ],
            leftovers: vec![],
            sigchld_ignored: false,
            signals: vec![],
            refused: None,
        };
        let reaped = Out::Reported {
            pid: 42,
            event: Event::Exited(7),
        };
        let design_kernel = obs(reaped, Out::Failed(libc::ECHILD));
        let seed_kernel = obs(Out::Failed(libc::ECHILD), reaped);
        let mut e = env((6, 12), Some(bit));
        assert_eq!(check(&k, &e, &design_kernel), Ok(()));
        let err = check(&k, &e, &seed_kernel).unwrap_err();
        assert!(err.starts_with("generic: waitid(P_ALL"), "{err}");
        e.semantics = Semantics::Seed;
        assert_eq!(check(&k, &e, &seed_kernel), Ok(()));
        assert!(check(&k, &e, &design_kernel).is_err());
        // The executor's own child keeps the old answer under both.
        let own = case(CLONE_PIDFD | bit, libc::SIGCHLD as u64);
        for sem in [Semantics::Design, Semantics::Seed] {
            e.semantics = sem;
            let x = expected(&own, &e);
            assert!(initial_children(&own, &e, &x, 42, 1)[0].hidden, "{sem}");
        }
    }
}
