//! clone3 argument validation: a table as complete as LTP's clone302 and
//! kselftest's clone3.c, plus the seed's own rule. Each row describes an
//! argument block; what the kernel must answer comes from the model
//! (model::clone3_verdict, keyed on the kernel's feature set), so the rows
//! and the fuzzers share one statement of the rules.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::harness::*;
use crate::model::{
    clone3_verdict, clone3_verdict_from, Caller, CallerTask, CgroupDesc, Clone3Desc, PidfdDesc,
    SetTidDesc, StackDesc, Verdict,
};
use crate::sys::clone::{clone3, flags::*, Clone3Request, Program, CLONE_ARGS_SIZE_VER2};
use crate::sys::signal as sig;
use crate::sys::wait::{wait, WaitCall, WaitOpts, WaitOutcome, WaitTarget};
use crate::sys::{pidfd, proc, Errno};

const SIGCHLD: u64 = sig::SIGCHLD as u64;

/// One row: how the argument block differs from `{flags: 0, exit_signal:
/// SIGCHLD, size: VER2}`. `exact` rows run once with exactly these flags;
/// the others run as `hidden` (CLONE_PIDFD|CLONE_WAIT_PID added) and
/// `plain` (CLONE_PIDFD added).
struct Row {
    id: &'static str,
    build: fn(&mut Clone3Desc),
    exact: bool,
    needs: &'static [Need],
    source: &'static str,
}

macro_rules! row {
    ($id:literal, $src:expr, |$d:ident| $body:expr) => {
        Row {
            id: $id,
            build: |$d: &mut Clone3Desc| {
                $body;
            },
            exact: false,
            needs: &[],
            source: $src,
        }
    };
    ($id:literal, $src:expr, needs $needs:expr, |$d:ident| $body:expr) => {
        Row {
            id: $id,
            build: |$d: &mut Clone3Desc| {
                $body;
            },
            exact: false,
            needs: $needs,
            source: $src,
        }
    };
    (exact $id:literal, $src:expr, needs $needs:expr, |$d:ident| $body:expr) => {
        Row {
            id: $id,
            build: |$d: &mut Clone3Desc| {
                $body;
            },
            exact: true,
            needs: $needs,
            source: $src,
        }
    };
}

const FORK_C: &str = "kernel/fork.c copy_clone_args_from_user";
const VALID: &str = "kernel/fork.c clone3_args_valid";
const COPY: &str = "kernel/fork.c copy_process";
const PID: &str = "kernel/pid.c alloc_pid (set_tid)";
const ROOT: &[Need] = &[Need::Root];

const ROWS: &[Row] = &[
    row!("size_zero", FORK_C, |d| d.size = 0),
    row!("size_below_ver0", FORK_C, |d| d.size = 63),
    row!("size_ver0", FORK_C, |d| d.size = 64),
    row!("size_between_ver0_ver1", FORK_C, |d| d.size = 72),
    row!("size_ver1", FORK_C, |d| d.size = 80),
    row!("size_ver2", FORK_C, |d| d.size = 88),
    row!("size_page_zero_tail", FORK_C, |d| d.size = 4096),
    row!("size_above_page", FORK_C, |d| d.size = 4097),
    row!("size_nonzero_tail", FORK_C, |d| {
        d.size = 96;
        d.tail_nonzero = true
    }),
    row!("exit_signal_zero", FORK_C, |d| d.exit_signal = 0),
    row!("exit_signal_sigusr1", FORK_C, |d| d.exit_signal =
        sig::SIGUSR1 as u64),
    row!("exit_signal_nsig", FORK_C, |d| d.exit_signal = 64),
    row!("exit_signal_above_nsig", FORK_C, |d| d.exit_signal = 65),
    row!("exit_signal_high_bits", FORK_C, |d| d.exit_signal =
        (1 << 32) | SIGCHLD),
    row!("flag_detached", VALID, |d| d.flags |= CLONE_DETACHED),
    row!("flag_csignal_bits", VALID, |d| d.flags |= 0x11),
    row!("flag_bit50_unknown", VALID, |d| d.flags |= 1 << 50),
    row!("flag_bit63_unknown", VALID, |d| d.flags |= 1 << 63),
    row!("sighand_without_vm", COPY, |d| d.flags |= CLONE_SIGHAND),
    row!("thread_without_sighand", COPY, |d| {
        d.flags |= CLONE_THREAD | CLONE_VM;
        d.exit_signal = 0
    }),
    row!("thread_with_exit_signal", VALID, |d| d.flags |=
        CLONE_THREAD | CLONE_SIGHAND | CLONE_VM),
    row!("parent_with_exit_signal", VALID, |d| d.flags |=
        CLONE_PARENT),
    row!("clear_sighand", VALID, |d| d.flags |= CLONE_CLEAR_SIGHAND),
    row!("clear_sighand_with_sighand", VALID, |d| d.flags |=
        CLONE_CLEAR_SIGHAND | CLONE_SIGHAND | CLONE_VM),
    row!("newns_with_fs", COPY, |d| d.flags |= CLONE_NEWNS | CLONE_FS),
    row!("newuser_with_fs", COPY, |d| d.flags |=
        CLONE_NEWUSER | CLONE_FS),
    row!("thread_with_newpid", COPY, |d| {
        d.flags |= CLONE_THREAD | CLONE_SIGHAND | CLONE_VM | CLONE_NEWPID;
        d.exit_signal = 0
    }),
    row!(
        "pidfd_same_as_parent_tid",
        "kernel/fork.c kernel_clone",
        |d| {
            d.flags |= CLONE_PARENT_SETTID;
            d.pidfd = PidfdDesc::SameAsParentTid
        }
    ),
    row!("pidfd_bad_pointer", COPY, |d| d.pidfd = PidfdDesc::Bad),
    row!("stack_size_without_stack", VALID, |d| d.stack =
        StackDesc::SizeWithoutStack),
    row!("stack_without_size", VALID, |d| d.stack =
        StackDesc::StackWithoutSize),
    row!("stack_kernel_address", VALID, |d| d.stack =
        StackDesc::KernelAddress),
    row!("stack_valid", VALID, |d| d.stack = StackDesc::Valid),
    row!("vm_own_stack", COPY, |d| {
        d.flags |= CLONE_VM;
        d.stack = StackDesc::Valid
    }),
    row!("vm_vfork", COPY, |d| d.flags |= CLONE_VM | CLONE_VFORK),
    row!("set_tid_null_with_size", FORK_C, |d| d.set_tid =
        SetTidDesc::NullWithSize(1)),
    row!("set_tid_without_size", FORK_C, |d| d.set_tid =
        SetTidDesc::PointerWithoutSize),
    row!("set_tid_above_max_level", FORK_C, |d| d.set_tid =
        SetTidDesc::InUse(33)),
    row!("set_tid_pid_in_use", PID, needs ROOT, |d| d.set_tid = SetTidDesc::InUse(1)),
    row!("set_tid_more_than_levels", PID, needs ROOT, |d| d.set_tid = SetTidDesc::InUse(proc::pid_ns_level() as u64 + 2)),
    row!("set_tid_ver0_ignored", FORK_C, |d| {
        d.size = 64;
        d.set_tid = SetTidDesc::NullWithSize(1)
    }),
    row!("into_cgroup_fd_above_int_max", FORK_C, |d| {
        d.flags |= CLONE_INTO_CGROUP;
        d.cgroup = CgroupDesc::Huge
    }),
    row!("into_cgroup_size_ver1", FORK_C, |d| {
        d.flags |= CLONE_INTO_CGROUP;
        d.size = 80;
        d.cgroup = CgroupDesc::Valid
    }),
    row!("into_cgroup_closed_fd", COPY, |d| {
        d.flags |= CLONE_INTO_CGROUP;
        d.cgroup = CgroupDesc::Closed
    }),
    row!(
        "into_cgroup_own_cgroup",
        COPY,
        needs & [Need::Root, Need::Cgroup2],
        |d| {
            d.flags |= CLONE_INTO_CGROUP;
            d.cgroup = CgroupDesc::Valid
        }
    ),
    row!(
        "newpid",
        COPY,
        needs & [Need::Root, Need::Namespace("pid")],
        |d| d.flags |= CLONE_NEWPID
    ),
    row!("newuser", COPY, needs & [Need::Namespace("user")], |d| d
        .flags |=
        CLONE_NEWUSER),
    row!(
        "newns_newuts_newipc",
        COPY,
        needs
            & [
                Need::Root,
                Need::Namespace("mnt"),
                Need::Namespace("uts"),
                Need::Namespace("ipc")
            ],
        |d| d.flags |= CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC
    ),
    row!(exact "wait_pid_without_pidfd",
         "Currently, CLONE_WAIT_PID can only be used in conjunction with CLONE_PIDFD",
         needs &[Need::Feature], |d| d.flags = u64::MAX),
    row!(exact "wait_pid_with_pidfd", "clone3 accepts CLONE_WAIT_PID together with CLONE_PIDFD",
         needs &[Need::Feature], |d| d.flags = u64::MAX - 1),
    row!(exact "all_high_bits", VALID, needs &[], |d| d.flags = !CLONE_LEGACY_FLAGS),
];

pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for row in ROWS {
        let variants: Vec<Option<Subject>> = if row.exact {
            vec![None]
        } else {
            Subject::BOTH.iter().copied().map(Some).collect()
        };
        for v in variants {
            let name = match v {
                Some(s) => format!("clone3::args::{}::{}", row.id, s.variant()),
                None => format!("clone3::args::{}", row.id),
            };
            let build = row.build;
            let mut c = Case::new(name, Source::Model(row.source), move |ctx| {
                let mut d = Clone3Desc::new(0, SIGCHLD);
                build(&mut d);
                // The two exact seed rows are written with sentinels for
                // "the bit alone" and "the bit with CLONE_PIDFD".
                if d.flags == u64::MAX {
                    d.flags = ctx.bit();
                } else if d.flags == u64::MAX - 1 {
                    d.flags = ctx.bit() | CLONE_PIDFD;
                } else if let Some(s) = v {
                    d.flags |= ctx.flags_for(s);
                }
                run(ctx, &d)
            });
            for n in row.needs {
                c = c.need(*n);
            }
            if let Some(s) = v {
                c = c.for_subject(s);
            }
            out.push(c);
        }
    }
    out.extend(caller_cases());
    out
}

const INIT_PARENT: &str =
    "kernel/fork.c copy_process: the init of a pid namespace (SIGNAL_UNKILLABLE) may not \
                           make siblings: CLONE_PARENT fails with EINVAL (clone(2))";
const NPROC: &str =
    "kernel/fork.c copy_process: a caller that is no root user, at its RLIMIT_NPROC, without \
                     CAP_SYS_RESOURCE or CAP_SYS_ADMIN, fails with EAGAIN (clone(2))";

const IO_LATE: &str =
    "kernel/fork.c copy_process: a child that shares its caller's I/O context (CLONE_IO, \
                       the caller has one after ioprio_set) and then fails late, at the put_user of \
                       its pidfd, drops the context again (bad_fork_cleanup_io) and fails with \
                       EFAULT (clone(2))";

const CHROOTED: &str =
    "kernel/user_namespace.c create_user_ns (from copy_process -> copy_creds): a caller whose \
                        root directory is not its mount namespace's root (chroot(2)) may not make a \
                        user namespace: CLONE_NEWUSER fails with EPERM (user_namespaces(7))";

/// Rows whose caller is set up first, in a job: the init of a new pid namespace, and an
/// unprivileged user at its process limit. Each asks the model with that caller.
fn caller_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for s in Subject::BOTH {
        let v = s.variant();
        out.push(
            Case::new(
                format!("clone3::caller::clone_parent_from_pidns_init::{v}"),
                Source::Model(INIT_PARENT),
                move |ctx| clone_parent_from_pidns_init(ctx, s),
            )
            .for_subject(s)
            .need(Need::Root)
            .need(Need::Namespace("pid")),
        );
        out.push(
            Case::new(
                format!("clone3::caller::beyond_rlimit_nproc::{v}"),
                Source::Model(NPROC),
                move |ctx| beyond_rlimit_nproc(ctx, s),
            )
            .for_subject(s)
            .need(Need::Root),
        );
        out.push(
            Case::new(
                format!("clone3::caller::shared_io_context_fails_late::{v}"),
                Source::Model(IO_LATE),
                move |ctx| shared_io_context_fails_late(ctx, s),
            )
            .for_subject(s),
        );
        out.push(
            Case::new(
                format!("clone3::caller::new_user_ns_when_chrooted::{v}"),
                Source::Model(CHROOTED),
                move |ctx| new_user_ns_when_chrooted(ctx, s),
            )
            .for_subject(s)
            .need(Need::Root)
            .need(Need::Namespace("user")),
        );
    }
    out
}

/// A job chroots into an empty directory, then asks clone3 for a child of the subject's kind
/// in a new user namespace: the model, told the caller is chrooted, says what the kernel
/// answers.
fn new_user_ns_when_chrooted(ctx: &mut Ctx, s: Subject) -> Check {
    let d = Clone3Desc::new(CLONE_NEWUSER | ctx.flags_for(s), SIGCHLD);
    let features = ctx.features.clone();
    let dir = std::env::temp_dir().join(format!("wc-chroot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).or_else(|e| broken(format!("{}: {e}", dir.display())))?;
    // Read before the chroot: /proc is not there afterwards.
    let caller = caller_now(false);
    let root = dir.clone();
    let job = ctx.spawn_job(Subject::Plain, move || {
        crate::sys::process::chroot(&root)
            .map_err(|e| format!("chroot({}): {}", root.display(), e.described()))?;
        let task = CallerTask {
            chrooted: true,
            ..Default::default()
        };
        clone3_in_job(&d, clone3_verdict_from(&d, &features, &caller, &task))
    });
    let r = job.and_then(|j| j.finish());
    let _ = std::fs::remove_dir(&dir);
    r
}

/// The case process gives itself an I/O context (ioprio_set, best effort), then asks clone3
/// for a child of the subject's kind sharing it (CLONE_IO) with an unwritable pidfd pointer:
/// the model says what the kernel answers (the failure comes after copy_io).
fn shared_io_context_fails_late(ctx: &mut Ctx, s: Subject) -> Check {
    match crate::sys::process::set_io_priority_best_effort(4) {
        Ok(()) => {}
        Err(Errno::ENOSYS) => {
            return Err(Stop::Skip(
                "ioprio_set: ENOSYS (a kernel without CONFIG_BLOCK has no I/O contexts)".into(),
            ))
        }
        Err(e) => return broken(format!("ioprio_set(IOPRIO_CLASS_BE, 4): {}", e.described())),
    }
    let mut d = Clone3Desc::new(CLONE_IO | ctx.flags_for(s), SIGCHLD);
    d.pidfd = PidfdDesc::Bad;
    run(ctx, &d)
}

/// In the calling process: make `d` with clone3 and compare with `want`; reap what was made.
fn clone3_in_job(d: &Clone3Desc, want: Verdict) -> Result<(), String> {
    let req = Clone3Request::new(d.flags, d.exit_signal);
    let got = clone3(&req, Program::Exit(0));
    let what = format!(
        "clone3(flags {:#x}, exit_signal {})",
        d.flags, d.exit_signal
    );
    match (want, got) {
        (Verdict::Fails(e), Err(g)) if e == g => Ok(()),
        (Verdict::Created, Ok(child)) => match reap_any(&child) {
            WaitOutcome::Reported { .. } => Ok(()),
            other => Err(format!(
                "{what} created pid {}; its reap gave {other}",
                child.pid
            )),
        },
        (want, Ok(child)) => {
            let _ = reap_any(&child);
            Err(format!(
                "{what}: model says {want:?}, kernel created pid {}",
                child.pid
            ))
        }
        (want, Err(g)) => Err(format!("{what}: model says {want:?}, kernel said {g}")),
    }
}

/// The init of a new pid namespace asks clone3 for a sibling (CLONE_PARENT) of the subject's
/// kind; the model, told the caller is a namespace init, says what the kernel answers. The
/// exit signal is 0: clone3_args_valid refuses CLONE_PARENT with any other before
/// copy_process, whose SIGNAL_UNKILLABLE test this row is about, is reached (a row with
/// SIGCHLD passed without reaching it; kernel coverage showed the line missed).
fn clone_parent_from_pidns_init(ctx: &mut Ctx, s: Subject) -> Check {
    let d = Clone3Desc::new(CLONE_PARENT | ctx.flags_for(s), 0);
    let features = ctx.features.clone();
    let init = ctx.spawn_job_with(
        Clone3Request::new(CLONE_PIDFD | CLONE_NEWPID, SIGCHLD),
        move || {
            let caller = caller_now(std::process::id() == 1);
            if !caller.ns_init {
                return Err("the job in a new pid namespace is not its pid 1".into());
            }
            clone3_in_job(&d, clone3_verdict(&d, &features, &caller))
        },
    )?;
    init.finish()
}

/// A job sets RLIMIT_NPROC to 0 and becomes user 65534 (nobody): clone3 of the subject's kind
/// fails as the model says for a caller at its process limit.
fn beyond_rlimit_nproc(ctx: &mut Ctx, s: Subject) -> Check {
    let d = Clone3Desc::new(ctx.flags_for(s), SIGCHLD);
    let features = ctx.features.clone();
    let job = ctx.spawn_job(Subject::Plain, move || {
        crate::sys::process::limit_processes(0)
            .map_err(|e| format!("setrlimit(RLIMIT_NPROC, 0): {}", e.described()))?;
        crate::sys::process::become_user(65534)
            .map_err(|e| format!("setresuid(65534): {}", e.described()))?;
        let caller = caller_now(false);
        clone3_in_job(
            &d,
            crate::model::clone3_verdict_at_nproc_limit(&d, &features, &caller),
        )
    })?;
    job.finish()
}

/// The calling process as the model's clone3 rules see it, read now (root or not, its pid
/// namespace's depth); `ns_init` says whether it is that namespace's init.
fn caller_now(ns_init: bool) -> Caller {
    Caller {
        root: crate::sys::thread::is_root(),
        ns_init,
        ns_level: proc::pid_ns_level() as u64,
    }
}

/// Ask the model, make the call, compare; reap what was created.
fn run(ctx: &mut Ctx, d: &Clone3Desc) -> Check {
    let caller = caller_now(ctx.pid == 1);
    let want = clone3_verdict(d, &ctx.features, &caller);
    if let Verdict::Unknown(why) = want {
        return Err(Stop::Skip(format!("model: {why}")));
    }
    ignore_exit_signal(d.exit_signal);
    let mut keep = Keep::default();
    let req = lay_out(d, &mut keep)?;
    let got = clone3(&req, Program::Exit(0));
    let what = format!(
        "clone3(flags {:#x}, size {}, exit_signal {})",
        d.flags, d.size, d.exit_signal
    );
    match (want, got) {
        (Verdict::Created, Ok(child)) => {
            // Once it has exited, a generic __WALL peek (exit_signal may not
            // be SIGCHLD) sees it or not as the model says: hidden on every
            // creation path that sets the bit.
            generic_peek(ctx, d, &child, &what)?;
            // Reap it with a focused __WALL wait.
            let (call, t) = if let Some(fd) = child.pidfd.as_ref() {
                (
                    WaitCall::WaitidPidfd,
                    WaitTarget::with_pidfd(child.pid, fd.as_fd()),
                )
            } else {
                (WaitCall::WaitidPid, WaitTarget::pid(child.pid))
            };
            match wait(call, t, WaitOpts(WaitOpts::WEXITED | WaitOpts::WALL)) {
                WaitOutcome::Reported {
                    pid,
                    event: crate::sys::wait::Event::Exited(0),
                } if pid == child.pid => Ok(()),
                other => fail(format!(
                    "{what} created pid {}, but its focused reap gave {other}",
                    child.pid
                )),
            }
        }
        (Verdict::Fails(e), Err(g)) if e == g => Ok(()),
        (want, Ok(child)) => {
            let _ = reap_any(&child);
            fail(format!(
                "{what}: model says {want:?}, kernel created pid {}",
                child.pid
            ))
        }
        (want, Err(g)) => fail(format!("{what}: model says {want:?}, kernel said {g}")),
    }
}

const GENERIC_PEEK: u32 =
    WaitOpts::WEXITED | WaitOpts::WNOHANG | WaitOpts::WNOWAIT | WaitOpts::WALL;

/// The created child, once exited, against the model's generic view of it:
/// waitid(P_ALL, WEXITED|WNOHANG|WNOWAIT|__WALL) reports it unless it is
/// hidden from its creator (model::hidden_from_waiter, considers).
fn generic_peek(
    ctx: &Ctx,
    d: &Clone3Desc,
    child: &crate::sys::clone::Spawned,
    what: &str,
) -> Check {
    use crate::model::{
        hidden_from_waiter, predict_wait, ChildState, ChildView, Lineage, Prediction, Selector,
        Semantics,
    };
    use crate::sys::wait::Event;
    let opened;
    let fd = match child.pidfd.as_ref() {
        Some(fd) => fd,
        None => {
            opened = pidfd::open(child.pid, false)
                .or_else(|e| broken(format!("pidfd_open({}): {e}", child.pid)))?;
            &opened
        }
    };
    pidfd::poll_exit(std::os::fd::AsFd::as_fd(fd), None)
        .or_else(|e| broken(format!("poll(pidfd): {e}")))?;
    // The bit only means CLONE_WAIT_PID when the probe found the feature
    // (on a kernel without it, the configured bit may be a mainline flag).
    let bit = ctx.features.wait_pid_bit.unwrap_or(0);
    let lineage = Lineage {
        wait_pid_flag: bit != 0 && d.flags & bit != 0,
        ..Lineage::default()
    };
    let view = ChildView {
        pid: child.pid,
        pgid: ctx.pgid,
        hidden: hidden_from_waiter(Semantics::Design, lineage),
        sigchld: d.exit_signal == SIGCHLD,
        state: ChildState::Zombie(Event::Exited(0)),
    };
    let sel = Selector {
        call: WaitCall::WaitidAll,
        pid: child.pid,
        pgid: ctx.pgid,
        own_pgid: ctx.pgid,
    };
    let pred = predict_wait(sel, WaitOpts(GENERIC_PEEK), &[view]);
    let got = wait(
        WaitCall::WaitidAll,
        WaitTarget::pid(child.pid).in_group(ctx.pgid),
        WaitOpts(GENERIC_PEEK),
    );
    match pred {
        Prediction::OneOf(v) if v.contains(&got) => Ok(()),
        p => fail(format!(
            "{what} created pid {}; after its exit {} gave {got}: the model says {p:?} (the child is {})",
            child.pid,
            WaitCall::WaitidAll.spell(WaitOpts(GENERIC_PEEK)),
            if view.hidden { "hidden from its creator's generic waits" } else { "plain" }
        )),
    }
}

/// Memory and fds an argument block points at, kept until the call is done.
#[derive(Default)]
struct Keep {
    stack: Vec<u8>,
    set_tid: Vec<i32>,
    cgroup: Option<OwnedFd>,
    parent_tid: Box<i32>,
}

fn lay_out(d: &Clone3Desc, keep: &mut Keep) -> Result<Clone3Request, Stop> {
    let mut req = Clone3Request::new(d.flags, d.exit_signal);
    req.size = d.size;
    if d.size > CLONE_ARGS_SIZE_VER2 {
        req.tail = vec![0; d.size - CLONE_ARGS_SIZE_VER2];
        if d.tail_nonzero {
            *req.tail.last_mut().expect("tail") = 1;
        }
    }
    let a = &mut req.args;
    match d.stack {
        StackDesc::None => {}
        StackDesc::Valid => {
            keep.stack = vec![0; 256 * 1024];
            a.stack = keep.stack.as_mut_ptr() as u64;
            a.stack_size = keep.stack.len() as u64;
        }
        StackDesc::SizeWithoutStack => a.stack_size = 4096,
        StackDesc::StackWithoutSize => {
            keep.stack = vec![0; 4096];
            a.stack = keep.stack.as_mut_ptr() as u64;
        }
        StackDesc::KernelAddress => {
            a.stack = 0xffff_8000_0000_0000;
            a.stack_size = 4096;
        }
    }
    match d.set_tid {
        SetTidDesc::None => {}
        SetTidDesc::NullWithSize(n) => a.set_tid_size = n,
        SetTidDesc::PointerWithoutSize => {
            keep.set_tid = vec![std::process::id() as i32];
            a.set_tid = keep.set_tid.as_ptr() as u64;
        }
        SetTidDesc::InUse(n) => {
            keep.set_tid = vec![std::process::id() as i32; n as usize];
            a.set_tid = keep.set_tid.as_ptr() as u64;
            a.set_tid_size = n;
        }
    }
    match d.cgroup {
        CgroupDesc::Zero => {}
        CgroupDesc::Huge => a.cgroup = 1 << 32,
        CgroupDesc::Closed => a.cgroup = 1_000_000,
        CgroupDesc::Valid => {
            let fd = own_cgroup().or_else(|e| broken(format!("setup: open own cgroup: {e}")))?;
            a.cgroup = fd.as_raw_fd() as u64;
            keep.cgroup = Some(fd);
        }
    }
    match d.pidfd {
        PidfdDesc::Valid => {}
        PidfdDesc::Bad => {
            a.pidfd = 8;
            req.auto_pidfd = false;
        }
        PidfdDesc::SameAsParentTid => {
            let p = &mut *keep.parent_tid as *mut i32 as u64;
            a.pidfd = p;
            a.parent_tid = p;
            req.auto_pidfd = false;
        }
    }
    Ok(req)
}

/// The cgroup2 directory this process is in.
fn own_cgroup() -> std::io::Result<OwnedFd> {
    let s = std::fs::read_to_string("/proc/self/cgroup")?;
    let path = s.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
    let f = std::fs::File::open(format!("/sys/fs/cgroup{path}"))?;
    Ok(f.into())
}

/// Reap a child the model did not expect, whatever its exit signal.
fn reap_any(child: &crate::sys::clone::Spawned) -> WaitOutcome {
    if let Some(fd) = child.pidfd.as_ref() {
        let _ = pidfd::poll_exit(std::os::fd::AsFd::as_fd(fd), None);
    }
    wait(
        WaitCall::WaitidPid,
        WaitTarget::pid(child.pid),
        WaitOpts(WaitOpts::WEXITED | WaitOpts::WALL),
    )
}

/// A child's exit signal other than SIGCHLD would kill the case process
/// (default action): ignore it. Ignoring it does not auto-reap (only
/// SIGCHLD's disposition does), so the rows are unchanged by this.
pub(crate) fn ignore_exit_signal(exit_signal: u64) {
    // The low 32 bits, as the old `as i32` read them; numbers that are no
    // signal, SIGKILL and SIGSTOP are refused by sig::ignore and left alone.
    let signo = exit_signal as i32;
    if signo != sig::SIGCHLD {
        let _ = sig::ignore(signo);
    }
}
