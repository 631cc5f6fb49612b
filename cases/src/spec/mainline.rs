//! Mainline's answer to the seed's use cases (Linux 7.1): CLONE_AUTOREAP
//! (bit 34), CLONE_NNP (bit 35) and CLONE_PIDFD_AUTOKILL (bit 36).
//!
//! Two kinds of rows live here:
//! - `mainline::...`: what the three flags do, their validation (every
//!   combination, through the model, as the fuzzers see it), PIDFD_GET_INFO.
//! - the comparison: each situation of the CLONE_WAIT_PID tables
//!   (`reparent::`, `open::`) once more, with the same name stem and the
//!   last component `autoreap`, asserting what CLONE_AUTOREAP is meant to do
//!   there. A runner joins them by stem: situation | plain | hidden
//!   (CLONE_WAIT_PID) | autoreap. The `generic::` and `focused::` autoreap
//!   rows are the wait grid's third variant (spec/grid.rs), with the
//!   expectation from the model.
//!
//! An autoreap child must have exit_signal 0, so it is a "clone child": waits
//! without __WALL or __WCLONE do not consider it at all, live or not. The
//! comparison rows make each call exactly as the CLONE_WAIT_PID rows make it;
//! where that alone cannot tell "never a zombie" from "not considered", the
//! row also makes it with __WALL.
//!
//! Facts from linux-source-7.2 (7.2.13): the rules are in copy_process
//! (kernel/fork.c); the autoreap decision is do_notify_parent's
//! (kernel/signal.c: `!tsk->ptrace && tsk->signal->autoreap` -> no signal,
//! EXIT_DEAD); PIDFD_INFO_EXIT is recorded in release_task (pidfs_exit), so
//! it is there once the pidfd polls POLLHUP; AUTOKILL is pidfs_file_release
//! sending SIGKILL when the clone3 file (PIDFD_AUTOKILL set on it) is
//! released.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::generic::expect_exit;
use super::util::{self, want};
use crate::harness::*;
use crate::model::{
    autoreaped_on_exit, clone3_verdict_from, Caller, CallerTask, Clone3Desc, KernelFeatures,
    Verdict,
};
use crate::sys::clone::{clone3, exit_now, flags::*, pipe, Clone3Request, Program};
use crate::sys::process::ptrace;
use crate::sys::signal as sig;
use crate::sys::wait::{wait, Event, WaitCall, WaitOpts as O, WaitOutcome, WaitTarget};
use crate::sys::{io, pidfd, pidfd_info, proc, thread, Errno};

const NEED: Need = Need::MinKernel(7, 1);

pub(crate) const AUTOREAP: &str = "commit 12ae2c81b21c 'clone: add CLONE_AUTOREAP' (7.1): 'makes a child process auto-reap on exit \
                        without ever becoming a zombie'; 'the parent [can] monitor the child's exit via poll() and \
                        retrieve exit status via PIDFD_GET_INFO'; 'No exit signal is delivered so exit_signal must be zero'";
pub(crate) const WCLONE: &str = "wait(2): a child whose exit signal is not SIGCHLD is a clone child, considered only with __WCLONE \
                      or __WALL; CLONE_AUTOREAP demands exit_signal 0. With __WALL the exit is still never reported \
                      (CLONE_AUTOREAP: 'without ever becoming a zombie')";
pub(crate) const SELECTIVE: &str = "commit 12ae2c81b21c: SIGCHLD's SIG_IGN/SA_NOCLDWAIT 'applies to all children ... unsuitable for \
                         libraries or applications that need selective auto-reaping of specific children while still \
                         being able to wait() on others'";
const REPARENT: &str = "commit 12ae2c81b21c: 'Since the flag lives on the child it survives reparenting: if the original \
                        parent exits and the child is reparented to a subreaper or init the child still auto-reaps when \
                        it eventually exits' (selftest autoreap_reparent)";
const NOT_INHERITED: &str =
    "commit 12ae2c81b21c: 'The flag is not inherited by the autoreap process's own children' \
                             (selftest autoreap_no_inherit)";
const THREADS: &str = "selftest autoreap_multithreaded: 'an autoreap child with multiple threads is properly autoreaped \
                       only after all threads have exited'; the status is the one wait would have reported";
const PARENT_RULE: &str = "commit 12ae2c81b21c: 'CLONE_AUTOREAP is rejected in combination with CLONE_PARENT. If a \
                           CLONE_AUTOREAP child were to clone(CLONE_PARENT) the new grandchild would ... become a zombie \
                           that never sends a signal and is never autoreaped'";
const PTRACE: &str = "ptrace is a relation of its own: the tracer collects its tracee's exit as for any tracee \
                      (wait_task_zombie); when it lets go the autoreap happens (do_notify_parent, __ptrace_detach), \
                      so the real parent never holds a zombie";
const AUTOKILL: &str = "commit c8134b5f13ae 'pidfd: add CLONE_PIDFD_AUTOKILL' (7.1): 'When the last reference to the \
                        struct file created by clone3() is closed the kernel sends SIGKILL to the child. A pidfd obtained \
                        via pidfd_open() for the same process does not keep the child alive and does not trigger autokill'; \
                        'dup()/fork() share the same struct file so they extend the child's lifetime'";
const NNP: &str = "CLONE_NNP (7.1, uapi: 'Set no_new_privs on child'); selftests nnp_sets_no_new_privs and \
                   autoreap_no_new_privs_unset; no_new_privs is inherited across fork and cannot be unset (prctl(2))";
const INFO: &str = "pidfs (fs/pidfs.c): PIDFD_INFO_EXIT is filled in by pidfs_exit() from release_task(), i.e. once the \
                    process has been reaped, by its parent or by the kernel";
const VALIDATION: &str = "kernel/fork.c copy_process (7.1+): CLONE_AUTOREAP with CLONE_THREAD, CLONE_PARENT or an \
                          exit_signal; CLONE_PARENT from an autoreap process; CLONE_NNP with CLONE_THREAD; \
                          CLONE_PIDFD_AUTOKILL without CLONE_PIDFD or CLONE_AUTOREAP or with CLONE_THREAD: EINVAL; \
                          CLONE_PIDFD_AUTOKILL without CLONE_NNP and without CAP_SYS_ADMIN: EPERM";

/// clone3 flags of an autoreap child watched through its pidfd.
const AR: u64 = CLONE_PIDFD | CLONE_AUTOREAP;

pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    out.extend(reparent_cases());
    out.extend(open_cases());
    out.extend(mainline_cases());
    out.extend(validation_cases());
    out.into_iter().map(|c| c.need(NEED)).collect()
}

// ---------------------------------------------------------------------------
// Helpers: autoreap children and how they end.

/// clone3(CLONE_PIDFD | CLONE_AUTOREAP | extra, exit_signal 0).
fn spawn_ar(ctx: &Ctx, extra: u64, program: Program) -> Result<Kid, Stop> {
    ctx.spawn_with(Clone3Request::new(AR | extra, 0), program)
}

/// A live autoreap child, blocked until `Kid::release`, then exiting `code`.
fn live_ar(ctx: &Ctx, code: i32) -> Result<Kid, Stop> {
    let (r, w) = pipe();
    let k = spawn_ar(
        ctx,
        0,
        Program::AwaitThenExit {
            fd: r.as_raw_fd(),
            code,
        },
    )?;
    drop(r);
    Ok(k.with_release(w))
}

/// An autoreap child that exits with `code`; returns once the kernel has
/// released it, having checked that it never was a zombie.
fn exited_ar(ctx: &Ctx, code: i32) -> Result<Kid, Stop> {
    let k = spawn_ar(ctx, 0, Program::Exit(code))?;
    ended(k.pid, &k.pidfd)?;
    Ok(k)
}

/// Once the pidfd polled readable (the process exited): no wait of its
/// parent finds a zombie. Deterministic: the autoreap decision is taken in
/// exit_notify under tasklist_lock, which the wait call takes too.
fn no_zombie(pid: i32, fd: &OwnedFd) -> Check {
    let t = WaitTarget {
        pid,
        pidfd: Some(fd.as_fd()),
        pgid: 0,
    };
    let opts = O(O::WEXITED | O::WNOHANG | O::WNOWAIT | O::WALL);
    match wait(WaitCall::WaitidPidfd, t, opts) {
        WaitOutcome::Failed(Errno::ECHILD) => Ok(()),
        got => fail(format!(
            "after its exit, {} on the autoreap child gave {got}: want -1 ECHILD (it must never be a zombie)",
            WaitCall::WaitidPidfd.spell(opts)
        )),
    }
}

/// The process behind `fd` exited, was never a zombie, and is released.
pub(crate) fn ended(pid: i32, fd: &OwnedFd) -> Check {
    pidfd::poll_exit(fd.as_fd(), None).or_else(|e| broken(format!("poll(pidfd): {e}")))?;
    no_zombie(pid, fd)?;
    pidfd_info::await_released(fd.as_fd())
        .or_else(|e| broken(format!("poll(pidfd) for POLLHUP: {e}")))
}

/// PIDFD_GET_INFO(PIDFD_INFO_EXIT) tells how it ended.
pub(crate) fn info_says(fd: &OwnedFd, want: Event) -> Check {
    match pidfd_info::exit_info(fd) {
        Ok(Some(ev)) if ev == want => Ok(()),
        Ok(Some(ev)) => fail(format!("ioctl(PIDFD_GET_INFO, PIDFD_INFO_EXIT): want {want:?}, got {ev:?}")),
        Ok(None) => fail("ioctl(PIDFD_GET_INFO, PIDFD_INFO_EXIT) of a released process: no PIDFD_INFO_EXIT in the mask"),
        Err(e) => fail(format!("ioctl(PIDFD_GET_INFO, PIDFD_INFO_EXIT): {e}")),
    }
}

/// Let a live autoreap child go and check its end.
fn finish_ar(mut k: Kid, want: Event) -> Check {
    k.release();
    ended(k.pid, &k.pidfd)?;
    info_says(&k.pidfd, want)
}

/// A job (child running Rust code, reporting a verdict) made with
/// CLONE_AUTOREAP: nobody can reap it, so its status comes from pidfs.
struct ArJob(Job);

fn spawn_ar_job(
    ctx: &Ctx,
    extra: u64,
    f: impl FnOnce() -> Result<(), String> + 'static,
) -> Result<ArJob, Stop> {
    ctx.spawn_job_with(Clone3Request::new(AR | extra, 0), f)
        .map(ArJob)
}

impl ArJob {
    fn finish(self) -> Check {
        self.0.finish_with(|kid| {
            ended(kid.pid, &kid.pidfd)?;
            match pidfd_info::exit_info(&kid.pidfd) {
                Ok(Some(ev)) => Ok(ev),
                other => broken(format!("autoreap job: PIDFD_INFO_EXIT gave {other:?}")),
            }
        })
    }
}

/// Inside a job: the same end checks, as messages.
fn ended_in_job(pid: i32, fd: &OwnedFd, want_ev: Event) -> Result<(), String> {
    ended(pid, fd).map_err(stop_msg)?;
    info_says(fd, want_ev).map_err(stop_msg)
}

/// A child that echoes every byte it reads, so that a round trip proves it
/// was alive, and not even doomed, when the byte was sent: a SIGKILL queued
/// before the write kills it on its way back to user mode, before it could
/// echo. EOF on the way back means it died.
struct Echo {
    to: OwnedFd,
    from: OwnedFd,
}

fn echo_program() -> (Program, Echo) {
    let (a_r, a_w) = pipe();
    let (b_r, b_w) = pipe();
    let prog = Program::Run(Box::new(move || {
        let mut b = [0u8; 1];
        loop {
            match io::read(&a_r, &mut b) {
                Ok(1) => {
                    let _ = io::write(&b_w, &b);
                }
                Err(Errno::EINTR) => continue,
                _ => return 0,
            }
        }
    }));
    (prog, Echo { to: a_w, from: b_r })
}

impl Echo {
    /// One round trip: Ok(true) if the child echoed, Ok(false) if it is gone.
    fn alive(&self) -> Result<bool, Stop> {
        match io::write(&self.to, b"p") {
            Ok(_) => {}
            // No reader left: it is gone.
            Err(Errno::EPIPE) => return Ok(false),
            Err(e) => return broken(format!("write to the echo child: {e}")),
        }
        let mut b = [0u8; 1];
        loop {
            match io::read(&self.from, &mut b) {
                Ok(1) => return Ok(true),
                Ok(_) => return Ok(false),
                Err(Errno::EINTR) => continue,
                Err(e) => return broken(format!("read from the echo child: {e}")),
            }
        }
    }
}

fn block_sigchld() -> Check {
    sig::block(sig::SIGCHLD).or_else(|e| broken(format!("sigprocmask: {}", e.described())))
}

/// Take a pending SIGCHLD, if any (zero timeout): the sender's pid.
fn take_sigchld() -> Option<i32> {
    sig::take_pending(sig::SIGCHLD)
        .ok()
        .flatten()
        .map(|p| p.pid)
}

fn stop_msg(s: Stop) -> String {
    match s {
        Stop::Fail(m) | Stop::Skip(m) | Stop::Broken(m) => m,
    }
}

// The comparison rows of the generic and focused tables are generated by
// the wait grid (spec/grid.rs, variant `autoreap`) from the same situations.

// ---------------------------------------------------------------------------
// The comparison: reparenting.

fn reparent_cases() -> Vec<Case> {
    vec![
        Case::new(
            "reparent::subreaper::live_orphan_generic_wait::autoreap",
            Source::Man(REPARENT),
            live_orphan_to_subreaper,
        ),
        Case::new(
            "reparent::subreaper::zombie_orphan_generic_wait::autoreap",
            Source::Man(AUTOREAP),
            exits_before_its_parent,
        ),
        Case::new(
            "reparent::pidns_init::orphan_generic_wait::autoreap",
            Source::Man(REPARENT),
            orphan_to_ns_init,
        )
        .need(Need::Root),
        Case::new(
            "reparent::pidns_teardown::zombie_child::autoreap",
            Source::Man(AUTOREAP),
            |ctx| ns_teardown(ctx, true),
        )
        .need(Need::Root),
        Case::new(
            "reparent::pidns_teardown::live_child::autoreap",
            Source::Man(AUTOREAP),
            |ctx| ns_teardown(ctx, false),
        )
        .need(Need::Root),
    ]
}

/// A plain middle process makes a live autoreap child G and exits; G goes
/// to the case process (a subreaper) and, when it exits, is still reaped by
/// the kernel: the subreaper's generic wait finds nothing.
fn live_orphan_to_subreaper(ctx: &mut Ctx) -> Check {
    let g = super::reparent::orphan_of_middle(ctx, Clone3Request::new(AR, 0), false)?;
    expect(
        "the subreaper's waitid(P_ALL, WEXITED|WNOHANG) after the reparented autoreap child exited",
        ctx.wait(WaitCall::WaitidAll, &g, O::WEXITED | O::WNOHANG),
        errno(Errno::ECHILD),
    )?;
    ended(g.pid, &g.pidfd)?;
    info_says(&g.pidfd, Event::Exited(5))
}

/// The situation of the hidden `zombie_orphan` row: the child exits before
/// its parent. An autoreap child is gone at once, so nothing is left to be
/// reparented.
fn exits_before_its_parent(ctx: &mut Ctx) -> Check {
    let middle = ctx.spawn_job(Subject::Plain, move || {
        let g = clone3(&Clone3Request::new(AR, 0), Program::Exit(5))
            .map_err(|e| format!("clone3: {e}"))?;
        let fd = util::fd_of(&g)?;
        ended_in_job(g.pid, fd, Event::Exited(5))
    })?;
    middle.finish()?;
    let left = proc::children(ctx.pid);
    if !left.is_empty() {
        return fail(format!("processes reparented to the subreaper: {left:?}"));
    }
    let t = WaitTarget::pid(-1).in_group(ctx.pgid);
    expect(
        "the subreaper's waitid(P_ALL, WEXITED|WNOHANG)",
        ctx.wait_on(WaitCall::WaitidAll, t, O::WEXITED | O::WNOHANG),
        errno(Errno::ECHILD),
    )
}

/// The init of a new pid namespace inherits a live autoreap orphan; when it
/// exits, init's generic wait finds nothing.
fn orphan_to_ns_init(ctx: &mut Ctx) -> Check {
    let init = ctx.spawn_job_with(Clone3Request::new(CLONE_PIDFD | CLONE_NEWPID, sig::SIGCHLD as u64), move || {
        let (pid_r, pid_w) = pipe();
        let (rel_r, rel_w) = pipe();
        let rel_fd = rel_r.as_raw_fd();
        let middle = util::spawn(
            CLONE_PIDFD,
            Program::Run(Box::new(move || match clone3(&Clone3Request::new(AR, 0), Program::AwaitThenExit { fd: rel_fd, code: 5 }) {
                Ok(g) => {
                    util::send_pid(&pid_w, g.pid);
                    0
                }
                Err(_) => 1,
            })),
        )?;
        drop(rel_r);
        let mfd = util::fd_of(&middle)?;
        want("init reaps the middle process", util::reap(middle.pid, mfd), reported(middle.pid, Event::Exited(0)))?;
        let gpid = util::recv_pid(&pid_r)?;
        let gfd = pidfd::open(gpid, false).map_err(|e| format!("pidfd_open({gpid}): {e}"))?;
        let _ = io::write(&rel_w, b"x");
        util::await_exit(&gfd)?;
        let t = WaitTarget { pid: gpid, pidfd: Some(gfd.as_fd()), pgid: 0 };
        let got = wait(WaitCall::WaitidAll, t, O(O::WEXITED | O::WNOHANG));
        want("pid-namespace init's waitid(P_ALL, WEXITED|WNOHANG) after the reparented autoreap child exited", got, errno(Errno::ECHILD))?;
        ended_in_job(gpid, &gfd, Event::Exited(5))
    })?;
    init.finish()
}

/// The init of a new pid namespace makes an autoreap child and exits
/// without waiting: the namespace goes away.
fn ns_teardown(ctx: &mut Ctx, exited: bool) -> Check {
    let (hold_r, _hold_w) = pipe();
    let hold = hold_r.as_raw_fd();
    let init = ctx.spawn_job_with(
        Clone3Request::new(CLONE_PIDFD | CLONE_NEWPID, sig::SIGCHLD as u64),
        move || {
            let prog = if exited {
                Program::Exit(5)
            } else {
                Program::AwaitThenExit { fd: hold, code: 5 }
            };
            let g = clone3(&Clone3Request::new(AR, 0), prog).map_err(|e| format!("clone3: {e}"))?;
            if exited {
                ended_in_job(g.pid, util::fd_of(&g)?, Event::Exited(5))?;
            }
            std::mem::forget(g);
            Ok(())
        },
    )?;
    // Blocks until the namespace is gone (a timeout says where it is stuck).
    init.finish()
}

// ---------------------------------------------------------------------------
// The comparison: the open questions.

type OpenFn = fn(&mut Ctx) -> Check;

fn open_cases() -> Vec<Case> {
    #[rustfmt::skip]
    let rows: &[(&str, &str, OpenFn, &[Need])] = &[
        ("open::descendants::grandchild_generic_wait", NOT_INHERITED, o_grandchild, &[]),
        ("open::threads::thread_child_generic_wait", NOT_INHERITED, o_thread_child, &[]),
        ("open::threads::exit_group_from_thread", THREADS, o_exit_group_from_thread, &[]),
        ("open::execve::child_execs", AUTOREAP, o_child_execs, &[]),
        ("open::execve::non_leader_thread_execs", AUTOREAP, o_thread_execs, &[]),
        ("open::ptrace::tracer_generic_wall_wait", PTRACE, o_tracer_generic, &[Need::Root]),
        ("open::ptrace::tracer_focused_wall_wait", PTRACE, o_tracer_focused, &[Need::Root]),
        ("open::sigchld::delivered_on_exit", AUTOREAP, o_sigchld, &[]),
        ("open::sigchld::sig_ign_autoreap", AUTOREAP, o_sig_ign, &[]),
        ("open::sigchld::sa_nocldwait_autoreap", AUTOREAP, o_nocldwait, &[]),
        ("open::wnowait::generic_peek", AUTOREAP, o_wnowait_generic, &[]),
        ("open::stop::generic_wstopped", WCLONE, o_generic_wstopped, &[]),
        ("open::stop::generic_wcontinued", WCLONE, o_generic_wcontinued, &[]),
        ("open::wclone::exit_signal_zero_focused", WCLONE, o_wclone_focused, &[]),
        ("open::wclone::exit_signal_zero_generic_wall", WCLONE, o_wclone_generic_wall, &[]),
        ("open::wclone::sigusr1_generic_wclone", AUTOREAP, o_wclone_sigusr1, &[]),
        ("open::pidfd::poll_readable_on_exit", AUTOREAP, o_pidfd_poll, &[]),
        ("open::pidfd::nonblock_eagain", WCLONE, o_pidfd_nonblock, &[]),
        ("open::legacy_clone::high_bit_ignored", "clone(2) passes only the low 32 bits of flags: CLONE_AUTOREAP is clone3-only", o_legacy_clone, &[]),
        ("open::vfork::vfork_vm_child", AUTOREAP, o_vfork, &[]),
    ];
    rows.iter()
        .map(|(stem, src, f, needs)| {
            let f = *f;
            let mut c = Case::new(format!("{stem}::autoreap"), Source::Man(src), f);
            for n in needs.iter() {
                c = c.need(*n);
            }
            c
        })
        .collect()
}

/// The autoreap child's own plain child is an ordinary zombie for it.
fn o_grandchild(ctx: &mut Ctx) -> Check {
    spawn_ar_job(ctx, 0, || super::open::own_child_seen(false))?.finish()
}

fn o_thread_child(ctx: &mut Ctx) -> Check {
    spawn_ar_job(ctx, 0, || super::open::thread_child_seen(false))?.finish()
}

fn generic_wall_peek(ctx: &Ctx, k: &Kid, what: &str) -> Check {
    let opts = O::WEXITED | O::WNOHANG | O::WNOWAIT | O::WALL;
    expect(
        &format!("{what}, {}", WaitCall::WaitidAll.spell(O(opts))),
        ctx.wait(WaitCall::WaitidAll, k, opts),
        errno(Errno::ECHILD),
    )
}

fn o_exit_group_from_thread(ctx: &mut Ctx) -> Check {
    let k = spawn_ar(
        ctx,
        0,
        Program::Run(Box::new(|| {
            std::thread::spawn(|| exit_now(9, false));
            sig::pause_forever()
        })),
    )?;
    ended(k.pid, &k.pidfd)?;
    generic_wall_peek(ctx, &k, "after exit_group from a thread")?;
    info_says(&k.pidfd, Event::Exited(9))
}

fn o_child_execs(ctx: &mut Ctx) -> Check {
    let ex = util::ExecExit::new(33);
    let k = spawn_ar(
        ctx,
        0,
        Program::Run(Box::new(move || {
            let _ = ex.exec();
            127
        })),
    )?;
    ended(k.pid, &k.pidfd)?;
    generic_wall_peek(ctx, &k, "after execve")?;
    info_says(&k.pidfd, Event::Exited(33))
}

fn o_thread_execs(ctx: &mut Ctx) -> Check {
    let ex = util::ExecExit::new(34);
    let k = spawn_ar(
        ctx,
        0,
        Program::Run(Box::new(move || {
            std::thread::spawn(move || {
                let _ = ex.exec();
                exit_now(127, false)
            });
            // de_thread ends this thread.
            sig::pause_forever()
        })),
    )?;
    ended(k.pid, &k.pidfd)?;
    generic_wall_peek(ctx, &k, "after a non-leader thread's execve")?;
    info_says(&k.pidfd, Event::Exited(34))
}

/// A plain tracer attaches to the autoreap child and collects the attach
/// stop with a generic or focused __WALL wait, then detaches.
fn o_tracer(ctx: &mut Ctx, generic: bool) -> Check {
    let k = live_ar(ctx, 8)?;
    let job = super::open::tracer_job(ctx, k.pid, generic)?;
    let r = job.finish();
    finish_ar(k, Event::Exited(8))?;
    r
}

fn o_tracer_generic(ctx: &mut Ctx) -> Check {
    o_tracer(ctx, true)
}

fn o_tracer_focused(ctx: &mut Ctx) -> Check {
    o_tracer(ctx, false)
}

/// 'No exit signal is delivered'.
fn o_sigchld(ctx: &mut Ctx) -> Check {
    block_sigchld()?;
    let k = exited_ar(ctx, 3)?;
    if let Some(from) = take_sigchld() {
        return fail(format!("SIGCHLD from pid {from} pending after the autoreap child {} exited: no exit signal is delivered", k.pid));
    }
    info_says(&k.pidfd, Event::Exited(3))
}

fn o_disposition(ctx: &mut Ctx, nocldwait: bool) -> Check {
    super::open::ignore_children(nocldwait)?;
    let k = exited_ar(ctx, 3)?;
    expect(
        "waitid(P_PIDFD, WEXITED|__WALL) on the auto-reaped child",
        ctx.wait(WaitCall::WaitidPidfd, &k, O::WEXITED | O::WALL),
        errno(Errno::ECHILD),
    )?;
    info_says(&k.pidfd, Event::Exited(3))
}

fn o_sig_ign(ctx: &mut Ctx) -> Check {
    o_disposition(ctx, false)
}

fn o_nocldwait(ctx: &mut Ctx) -> Check {
    o_disposition(ctx, true)
}

fn o_wnowait_generic(ctx: &mut Ctx) -> Check {
    let k = exited_ar(ctx, 3)?;
    super::open::generic_peek(ctx, &k, errno(Errno::ECHILD))?;
    generic_wall_peek(ctx, &k, "and with __WALL")?;
    info_says(&k.pidfd, Event::Exited(3))
}

/// Stop reports are untouched by CLONE_AUTOREAP; a generic wait sees them
/// only with __WALL (the child is a clone child).
fn o_generic_wstopped(ctx: &mut Ctx) -> Check {
    let k = live_ar(ctx, 3)?;
    k.signal(sig::SIGSTOP)?;
    expect(
        "waitid(P_PIDFD, WSTOPPED|WNOWAIT|__WALL)",
        ctx.wait(
            WaitCall::WaitidPidfd,
            &k,
            O::WSTOPPED | O::WNOWAIT | O::WALL,
        ),
        reported(k.pid, Event::Stopped(sig::SIGSTOP)),
    )?;
    expect(
        "waitid(P_ALL, WSTOPPED|WNOHANG)",
        ctx.wait(WaitCall::WaitidAll, &k, O::WSTOPPED | O::WNOHANG),
        errno(Errno::ECHILD),
    )?;
    expect(
        "waitid(P_ALL, WSTOPPED|WNOHANG|__WALL)",
        ctx.wait(WaitCall::WaitidAll, &k, O::WSTOPPED | O::WNOHANG | O::WALL),
        reported(k.pid, Event::Stopped(sig::SIGSTOP)),
    )?;
    k.signal(sig::SIGKILL)?;
    ended(k.pid, &k.pidfd)?;
    info_says(&k.pidfd, Event::Killed(sig::SIGKILL))
}

fn o_generic_wcontinued(ctx: &mut Ctx) -> Check {
    let k = live_ar(ctx, 3)?;
    k.signal(sig::SIGSTOP)?;
    expect(
        "waitid(P_PIDFD, WSTOPPED|__WALL)",
        ctx.wait(WaitCall::WaitidPidfd, &k, O::WSTOPPED | O::WALL),
        reported(k.pid, Event::Stopped(sig::SIGSTOP)),
    )?;
    k.signal(sig::SIGCONT)?;
    expect(
        "waitid(P_PIDFD, WCONTINUED|WNOWAIT|__WALL)",
        ctx.wait(
            WaitCall::WaitidPidfd,
            &k,
            O::WCONTINUED | O::WNOWAIT | O::WALL,
        ),
        reported(k.pid, Event::Continued),
    )?;
    expect(
        "waitpid(-1, WCONTINUED|WNOHANG)",
        ctx.wait(WaitCall::WaitpidAny, &k, O::WCONTINUED | O::WNOHANG),
        errno(Errno::ECHILD),
    )?;
    expect(
        "waitpid(-1, WCONTINUED|WNOHANG|__WALL)",
        ctx.wait(
            WaitCall::WaitpidAny,
            &k,
            O::WCONTINUED | O::WNOHANG | O::WALL,
        ),
        reported(k.pid, Event::Continued),
    )?;
    finish_ar(k, Event::Exited(3))
}

fn o_wclone_focused(ctx: &mut Ctx) -> Check {
    let k = exited_ar(ctx, 3)?;
    // Autoreaped: not even __WCLONE finds it; PIDFD_INFO_EXIT still tells.
    super::open::focused_wclone(ctx, &k, "", errno(Errno::ECHILD))?;
    info_says(&k.pidfd, Event::Exited(3))
}

fn o_wclone_generic_wall(ctx: &mut Ctx) -> Check {
    let k = exited_ar(ctx, 3)?;
    expect(
        "waitid(P_ALL, WEXITED|__WALL|WNOHANG)",
        ctx.wait(WaitCall::WaitidAll, &k, O::WEXITED | O::WALL | O::WNOHANG),
        errno(Errno::ECHILD),
    )?;
    info_says(&k.pidfd, Event::Exited(3))
}

/// The hidden row's situation (an exit signal other than SIGCHLD) cannot be
/// built: clone3 refuses an autoreap child any exit signal.
fn o_wclone_sigusr1(_ctx: &mut Ctx) -> Check {
    super::clone3::ignore_exit_signal(sig::SIGUSR1 as u64);
    match clone3(
        &Clone3Request::new(AR, sig::SIGUSR1 as u64),
        Program::Exit(3),
    ) {
        Err(Errno::EINVAL) => Ok(()),
        Err(e) => fail(format!(
            "clone3(CLONE_PIDFD|CLONE_AUTOREAP, exit_signal SIGUSR1): want EINVAL, got {e}"
        )),
        Ok(child) => {
            let t = WaitTarget::pid(child.pid);
            let _ = wait(WaitCall::WaitidPid, t, O(O::WEXITED | O::WALL));
            fail(format!("clone3(CLONE_PIDFD|CLONE_AUTOREAP, exit_signal SIGUSR1) created pid {}: want EINVAL", child.pid))
        }
    }
}

fn o_pidfd_poll(ctx: &mut Ctx) -> Check {
    let mut k = live_ar(ctx, 3)?;
    if pidfd::has_exited(k.pidfd.as_fd()) {
        return fail("the pidfd of a live autoreap child polls readable");
    }
    k.release();
    match pidfd::poll_exit(k.pidfd.as_fd(), None) {
        Ok(true) => {}
        other => return fail(format!("poll(pidfd) after exit: {other:?}")),
    }
    ended(k.pid, &k.pidfd)?;
    info_says(&k.pidfd, Event::Exited(3))
}

fn o_pidfd_nonblock(ctx: &mut Ctx) -> Check {
    let k = live_ar(ctx, 3)?;
    let fd = super::open::nonblocking_pidfd(&k)?;
    expect(
        "waitid(P_PIDFD nonblocking, WEXITED) on a live autoreap child",
        super::open::wait_nonblocking(ctx, &k, &fd, O::WEXITED),
        errno(Errno::ECHILD),
    )?;
    expect(
        "waitid(P_PIDFD nonblocking, WEXITED|__WALL) on a live autoreap child",
        super::open::wait_nonblocking(ctx, &k, &fd, O::WEXITED | O::WALL),
        errno(Errno::EAGAIN),
    )?;
    finish_ar(k, Event::Exited(3))
}

fn o_legacy_clone(ctx: &mut Ctx) -> Check {
    super::open::legacy_clone_with(ctx, CLONE_AUTOREAP, "CLONE_AUTOREAP", " with bit 34")
}

fn o_vfork(ctx: &mut Ctx) -> Check {
    let req = Clone3Request::new(AR | CLONE_VM | CLONE_VFORK, 0);
    let k = match clone3(&req, Program::Exit(4)) {
        Ok(sp) => Kid::adopt_spawned(sp)?,
        Err(e) => return broken(format!("clone3(CLONE_AUTOREAP|CLONE_VM|CLONE_VFORK): {e}")),
    };
    ended(k.pid, &k.pidfd)?;
    generic_wall_peek(ctx, &k, "after the vfork child exited")?;
    info_says(&k.pidfd, Event::Exited(4))
}

// ---------------------------------------------------------------------------
// mainline:: rows: what the three flags do beyond the comparison.

fn mainline_cases() -> Vec<Case> {
    type F = fn(&mut Ctx) -> Check;
    let rows: &[(&str, &str, F, &[Need])] = &[
        ("mainline::autoreap::basic_exit_info", AUTOREAP, m_basic, &[]),
        ("mainline::autoreap::without_pidfd", "commit 12ae2c81b21c: 'Without CLONE_PIDFD it provides a fire-and-forget pattern' (selftest autoreap_without_pidfd)", m_without_pidfd, &[]),
        ("mainline::autoreap::generic_wall_live_nohang", WCLONE, m_generic_wall_live_nohang, &[]),
        ("mainline::autoreap::generic_wall_block_then_echild", WCLONE, m_generic_wall_block, &[]),
        ("mainline::autoreap::focused_wall_block_then_echild", WCLONE, m_focused_wall_block, &[]),
        ("mainline::autoreap::leader_exits_before_thread", THREADS, m_leader_first, &[]),
        ("mainline::autoreap::reparented_orphan_sends_no_sigchld", REPARENT, m_reparented_no_sigchld, &[]),
        ("mainline::autoreap::nested_autoreap_child", NOT_INHERITED, m_nested, &[]),
        ("mainline::autoreap::ptrace_tracer_collects_exit", PTRACE, m_tracer_collects, &[Need::Root]),
        ("mainline::autoreap::ptrace_tracer_exits_with_zombie", PTRACE, m_tracer_leaves, &[Need::Root]),
        ("mainline::pidfd_info::live_child_no_exit_info", INFO, m_info_live, &[]),
        ("mainline::pidfd_info::plain_zombie_exit_info_after_reap", INFO, m_info_plain_zombie, &[]),
        ("mainline::nnp::child_has_no_new_privs", NNP, m_nnp_child, &[]),
        ("mainline::nnp::autoreap_child_with_nnp", NNP, m_nnp_autoreap, &[]),
        ("mainline::nnp::autoreap_alone_leaves_it_unset", NNP, m_autoreap_no_nnp, &[]),
        ("mainline::nnp::inherited_by_grandchild", NNP, m_nnp_inherited, &[]),
        ("mainline::nnp::cannot_be_cleared", NNP, m_nnp_sticky, &[]),
        ("mainline::autokill::last_close_kills", AUTOKILL, m_ak_last_close, &[]),
        ("mainline::autokill::last_close_kills_without_nnp_as_root", AUTOKILL, m_ak_last_close_root, &[Need::Root]),
        ("mainline::autokill::pidfd_open_close_no_effect", AUTOKILL, m_ak_pidfd_open, &[]),
        ("mainline::autokill::dup_keeps_alive", AUTOKILL, m_ak_dup, &[]),
        ("mainline::autokill::forked_copy_keeps_alive", AUTOKILL, m_ak_fork, &[]),
        ("mainline::autokill::creator_exit_kills", AUTOKILL, m_ak_creator_exit, &[]),
    ];
    rows.iter()
        .map(|(name, src, f, needs)| {
            let f = *f;
            let mut c = Case::new(*name, Source::Man(src), f);
            for n in needs.iter() {
                c = c.need(*n);
            }
            c
        })
        .collect()
}

fn m_basic(ctx: &mut Ctx) -> Check {
    let k = exited_ar(ctx, 42)?;
    if proc::children(ctx.pid).contains(&k.pid) {
        return fail("the released autoreap child is still listed among the caller's children");
    }
    info_says(&k.pidfd, Event::Exited(42))
}

fn m_without_pidfd(_ctx: &mut Ctx) -> Check {
    let (r, w) = pipe();
    let sp = clone3(
        &Clone3Request::new(CLONE_AUTOREAP, 0),
        Program::AwaitThenExit {
            fd: r.as_raw_fd(),
            code: 4,
        },
    )
    .or_else(|e| fail(format!("clone3(CLONE_AUTOREAP) without CLONE_PIDFD: {e}")))?;
    drop(r);
    if sp.pidfd.is_some() {
        return broken("clone3 without CLONE_PIDFD handed out a pidfd");
    }
    // Kid::adopt_spawned opens a pidfd for it (it is alive, blocked).
    let k = Kid::adopt_spawned(sp)?.with_release(w);
    finish_ar(k, Event::Exited(4))
}

fn m_generic_wall_live_nohang(ctx: &mut Ctx) -> Check {
    let k = live_ar(ctx, 3)?;
    expect(
        "waitid(P_ALL, WEXITED|WNOHANG|__WALL) with a live autoreap child",
        ctx.wait(WaitCall::WaitidAll, &k, O::WEXITED | O::WNOHANG | O::WALL),
        WaitOutcome::NothingReady,
    )?;
    finish_ar(k, Event::Exited(3))
}

/// A blocking __WALL wait on a lone live autoreap child returns ECHILD once
/// the child is gone, never a report.
fn m_generic_wall_block(ctx: &mut Ctx) -> Check {
    let mut k = live_ar(ctx, 3)?;
    k.release();
    expect(
        "waitid(P_ALL, WEXITED|__WALL) (blocking)",
        ctx.wait(WaitCall::WaitidAll, &k, O::WEXITED | O::WALL),
        errno(Errno::ECHILD),
    )?;
    ended(k.pid, &k.pidfd)?;
    info_says(&k.pidfd, Event::Exited(3))
}

fn m_focused_wall_block(ctx: &mut Ctx) -> Check {
    let mut k = live_ar(ctx, 3)?;
    k.release();
    expect(
        "waitid(P_PIDFD, WEXITED|__WALL) (blocking)",
        ctx.wait(WaitCall::WaitidPidfd, &k, O::WEXITED | O::WALL),
        errno(Errno::ECHILD),
    )?;
    ended(k.pid, &k.pidfd)?;
    info_says(&k.pidfd, Event::Exited(3))
}

/// The leader thread exits (exit(2), not exit_group) while another thread
/// lives: not released, not readable, until the last thread exits; then
/// PIDFD_INFO_EXIT holds the status a wait would have reported for the same
/// story told by a plain child (since the last thread's exit sets
/// SIGNAL_GROUP_EXIT, kernel/exit.c synchronize_group_exit, that is the last
/// thread's code, 6 here). The other thread learns that the leader's thread
/// is gone through CLONE_CHILD_CLEARTID (the kernel zeroes the word and
/// wakes its futex when the leader's thread exits).
fn m_leader_first(ctx: &mut Ctx) -> Check {
    let (pk, prel) = leader_first(ctx, CLONE_PIDFD, sig::SIGCHLD as u64)?;
    io::write(&prel, b"x").or_else(|e| broken(format!("release: {e}")))?;
    let plain_ev = pk.reap()?;
    let (k, release) = leader_first(ctx, AR, 0)?;
    if pidfd::has_exited(k.pidfd.as_fd()) {
        return fail("the pidfd polls readable while a thread of the autoreap process lives");
    }
    expect(
        "waitid(P_PIDFD, WEXITED|WNOHANG|WNOWAIT|__WALL) while a thread lives",
        ctx.wait(
            WaitCall::WaitidPidfd,
            &k,
            O::WEXITED | O::WNOHANG | O::WNOWAIT | O::WALL,
        ),
        WaitOutcome::NothingReady,
    )?;
    if let Ok(Some(ev)) = pidfd_info::exit_info(&k.pidfd) {
        return fail(format!(
            "PIDFD_INFO_EXIT ({ev:?}) while a thread of the process lives"
        ));
    }
    io::write(&release, b"x").or_else(|e| broken(format!("release: {e}")))?;
    ended(k.pid, &k.pidfd)?;
    info_says(&k.pidfd, plain_ev).map_err(|s| {
        Stop::Fail(format!(
            "{} (a plain child's focused wait reported {plain_ev:?})",
            stop_msg(s)
        ))
    })
}

/// A child whose leader thread has exited (returned once it has) while a
/// second thread waits for a byte on the returned pipe, then exits(6).
fn leader_first(ctx: &Ctx, flags: u64, exit_signal: u64) -> Result<(Kid, OwnedFd), Stop> {
    let word: &'static AtomicU32 = Box::leak(Box::new(AtomicU32::new(1)));
    let (gone_r, gone_w) = pipe();
    let (rel_r, rel_w) = pipe();
    let mut req = Clone3Request::new(flags | CLONE_CHILD_CLEARTID, exit_signal);
    req.args.child_tid = word as *const AtomicU32 as u64;
    let k = ctx.spawn_with(
        req,
        Program::Run(Box::new(move || {
            std::thread::spawn(move || {
                loop {
                    let v = word.load(Ordering::SeqCst);
                    if v == 0 {
                        break;
                    }
                    // Not FUTEX_PRIVATE: the kernel's wake is a shared one.
                    let _ = thread::futex_wait_shared(word, v);
                }
                let _ = io::write(&gone_w, b"g");
                let mut b = [0u8; 1];
                let _ = io::read(&rel_r, &mut b);
                exit_now(6, true)
            });
            exit_now(5, true)
        })),
    )?;
    let mut b = [0u8; 1];
    match io::read(&gone_r, &mut b) {
        Ok(1) => Ok((k, rel_w)),
        other => broken(format!(
            "waiting for the leader's thread to exit: {other:?}"
        )),
    }
}

/// Reparented, the orphan gets exit_signal SIGCHLD (reparent_leader), so a
/// generic wait considers it while it lives; its exit still sends nothing
/// and leaves nothing.
fn m_reparented_no_sigchld(ctx: &mut Ctx) -> Check {
    block_sigchld()?;
    let (pid_r, pid_w) = pipe();
    let (rel_r, rel_w) = pipe();
    let rel_fd = rel_r.as_raw_fd();
    let middle = ctx.spawn_job(Subject::Plain, move || {
        let g = clone3(
            &Clone3Request::new(AR, 0),
            Program::AwaitThenExit {
                fd: rel_fd,
                code: 5,
            },
        )
        .map_err(|e| format!("clone3: {e}"))?;
        util::send_pid(&pid_w, g.pid);
        Ok(())
    })?;
    middle.finish()?;
    // The middle process's own SIGCHLD.
    while take_sigchld().is_some() {}
    let gpid = util::recv_pid(&pid_r).or_else(broken)?;
    let mut g = Kid::adopt(gpid)?.with_release(rel_w);
    if proc::ppid(gpid) != Some(ctx.pid) {
        return broken(format!(
            "the orphan {gpid} was not reparented to the subreaper"
        ));
    }
    expect(
        "the subreaper's waitid(P_ALL, WEXITED|WNOHANG) while the reparented autoreap child lives (kernel/exit.c reparent_leader: exit_signal = SIGCHLD)",
        ctx.wait(WaitCall::WaitidAll, &g, O::WEXITED | O::WNOHANG),
        WaitOutcome::NothingReady,
    )?;
    g.release();
    ended(g.pid, &g.pidfd)?;
    if let Some(from) = take_sigchld() {
        return fail(format!(
            "the subreaper got SIGCHLD from pid {from} when the reparented autoreap child exited"
        ));
    }
    info_says(&g.pidfd, Event::Exited(5))
}

/// An autoreap child may make autoreap children of its own (it only cannot
/// make siblings): explicit opt-in works at any depth.
fn m_nested(ctx: &mut Ctx) -> Check {
    spawn_ar_job(ctx, 0, || {
        let g = clone3(&Clone3Request::new(AR, 0), Program::Exit(6))
            .map_err(|e| format!("clone3 from an autoreap process: {e}"))?;
        ended_in_job(g.pid, util::fd_of(&g)?, Event::Exited(6))
    })?
    .finish()
}

/// A tracer attached to an autoreap child collects its exit like any
/// tracee's; then the kernel releases it: the real parent holds nothing.
fn m_tracer(ctx: &mut Ctx, collect: bool) -> Check {
    let mut k = live_ar(ctx, 8)?;
    let tpid = k.pid;
    let (ready_r, ready_w) = pipe();
    let job = ctx.spawn_job(Subject::Plain, move || {
        ptrace::attach(tpid).map_err(|e| format!("PTRACE_ATTACH: {}", e.described()))?;
        let t = WaitTarget::pid(tpid);
        want(
            "the tracer's waitpid(pid, __WALL) for the attach stop",
            wait(WaitCall::WaitpidPid, t, O(O::WALL)),
            reported(tpid, Event::Stopped(sig::SIGSTOP)),
        )?;
        ptrace::cont(tpid).map_err(|e| format!("PTRACE_CONT: {}", e.described()))?;
        let _ = io::write(&ready_w, b"r");
        let opts = if collect {
            O::WEXITED | O::WALL
        } else {
            O::WEXITED | O::WALL | O::WNOWAIT
        };
        want(
            &format!("the tracer's {}", WaitCall::WaitidPid.spell(O(opts))),
            wait(WaitCall::WaitidPid, t, O(opts)),
            reported(tpid, Event::Exited(8)),
        )
        // Without `collect` the tracer exits with its tracee a zombie.
    })?;
    let mut b = [0u8; 1];
    if !matches!(io::read(&ready_r, &mut b), Ok(1)) {
        let r = job.finish();
        finish_ar(k, Event::Exited(8))?;
        return r.and(broken("the tracer did not get ready"));
    }
    k.release();
    job.finish()?;
    ended(k.pid, &k.pidfd)?;
    info_says(&k.pidfd, Event::Exited(8))
}

fn m_tracer_collects(ctx: &mut Ctx) -> Check {
    m_tracer(ctx, true)
}

fn m_tracer_leaves(ctx: &mut Ctx) -> Check {
    m_tracer(ctx, false)
}

fn m_info_live(ctx: &mut Ctx) -> Check {
    let k = live_ar(ctx, 3)?;
    let info = pidfd_info::get_info(&k.pidfd, pidfd_info::PIDFD_INFO_EXIT)
        .or_else(|e| fail(format!("PIDFD_GET_INFO: {e}")))?;
    if info.mask & pidfd_info::PIDFD_INFO_EXIT != 0 {
        return fail(format!(
            "PIDFD_GET_INFO of a live child has PIDFD_INFO_EXIT (exit_code {:#x})",
            info.exit_code
        ));
    }
    if info.mask & pidfd_info::PIDFD_INFO_PID == 0
        || info.pid as i32 != k.pid
        || info.ppid as i32 != ctx.pid
    {
        return fail(format!(
            "PIDFD_GET_INFO of a live child: mask {:#x} pid {} ppid {}; want pid {} ppid {}",
            info.mask, info.pid, info.ppid, k.pid, ctx.pid
        ));
    }
    finish_ar(k, Event::Exited(3))
}

/// For comparison with a hidden child, whose status only a focused wait
/// collects: pidfs records the exit when the zombie is reaped.
fn m_info_plain_zombie(ctx: &mut Ctx) -> Check {
    let k = ctx.spawn_exited(Subject::Plain, 3)?;
    if let Ok(Some(ev)) = pidfd_info::exit_info(&k.pidfd) {
        return fail(format!(
            "PIDFD_INFO_EXIT ({ev:?}) for a zombie not yet reaped"
        ));
    }
    let fd = k
        .pidfd
        .try_clone()
        .or_else(|e| broken(format!("dup: {e}")))?;
    expect_exit(k.reap()?, 3)?;
    info_says(&fd, Event::Exited(3))
}

fn nnp_now() -> Result<bool, String> {
    thread::no_new_privs().map_err(|e| format!("prctl(PR_GET_NO_NEW_PRIVS): {e}"))
}

fn parent_without_nnp() -> Check {
    match nnp_now() {
        Ok(false) => Ok(()),
        Ok(true) => broken("the case process already has no_new_privs"),
        Err(e) => broken(e),
    }
}

fn m_nnp_child(ctx: &mut Ctx) -> Check {
    parent_without_nnp()?;
    let job = ctx.spawn_job_with(
        Clone3Request::new(CLONE_PIDFD | CLONE_NNP, sig::SIGCHLD as u64),
        || {
            if nnp_now()? {
                Ok(())
            } else {
                Err("the CLONE_NNP child has no_new_privs unset".into())
            }
        },
    )?;
    job.finish()?;
    if nnp_now().or_else(broken)? {
        return fail("the parent got no_new_privs after creating a CLONE_NNP child");
    }
    Ok(())
}

fn m_nnp_autoreap(ctx: &mut Ctx) -> Check {
    parent_without_nnp()?;
    spawn_ar_job(ctx, CLONE_NNP, || {
        if nnp_now()? {
            Ok(())
        } else {
            Err("the CLONE_AUTOREAP|CLONE_NNP child has no_new_privs unset".into())
        }
    })?
    .finish()
}

fn m_autoreap_no_nnp(ctx: &mut Ctx) -> Check {
    parent_without_nnp()?;
    spawn_ar_job(ctx, 0, || {
        if nnp_now()? {
            Err("a plain CLONE_AUTOREAP child has no_new_privs set".into())
        } else {
            Ok(())
        }
    })?
    .finish()
}

fn m_nnp_inherited(ctx: &mut Ctx) -> Check {
    parent_without_nnp()?;
    let job = ctx.spawn_job_with(
        Clone3Request::new(CLONE_PIDFD | CLONE_NNP, sig::SIGCHLD as u64),
        || {
            let x = util::spawn(
                CLONE_PIDFD,
                Program::Run(Box::new(
                    || if matches!(nnp_now(), Ok(true)) { 0 } else { 1 },
                )),
            )?;
            let fd = util::fd_of(&x)?;
            want(
                "the CLONE_NNP child's plain child exits 0 iff it has no_new_privs",
                util::reap(x.pid, fd),
                reported(x.pid, Event::Exited(0)),
            )
        },
    )?;
    job.finish()
}

fn m_nnp_sticky(ctx: &mut Ctx) -> Check {
    parent_without_nnp()?;
    let job = ctx.spawn_job_with(Clone3Request::new(CLONE_PIDFD | CLONE_NNP, sig::SIGCHLD as u64), || {
        match thread::set_no_new_privs(false) {
            Err(Errno::EINVAL) => {}
            other => return Err(format!("prctl(PR_SET_NO_NEW_PRIVS, 0) in the CLONE_NNP child: want EINVAL, got {other:?}")),
        }
        if nnp_now()? { Ok(()) } else { Err("no_new_privs was cleared".into()) }
    })?;
    job.finish()
}

/// An autokill child (CLONE_NNP: no privilege needed) that echoes.
fn autokill_echo(ctx: &Ctx, nnp: bool) -> Result<(Kid, Echo), Stop> {
    let (prog, echo) = echo_program();
    let k = spawn_ar(
        ctx,
        CLONE_PIDFD_AUTOKILL | if nnp { CLONE_NNP } else { 0 },
        prog,
    )?;
    match echo.alive()? {
        true => Ok((k, echo)),
        false => broken("the autokill child died before its pidfd was closed"),
    }
}

/// It was killed by SIGKILL, never a zombie; `obs` is a pidfd_open() pidfd.
fn killed_by_autokill(pid: i32, obs: &OwnedFd, echo: &Echo) -> Check {
    if echo.alive()? {
        return fail("the autokill child still answers after the last reference to its clone3 pidfd was closed");
    }
    ended(pid, obs)?;
    info_says(obs, Event::Killed(sig::SIGKILL))
}

fn observe(pid: i32) -> Result<OwnedFd, Stop> {
    pidfd::open(pid, false).or_else(|e| broken(format!("pidfd_open({pid}): {e}")))
}

fn ak_last_close(ctx: &mut Ctx, nnp: bool) -> Check {
    let (k, echo) = autokill_echo(ctx, nnp)?;
    let obs = observe(k.pid)?;
    let Kid { pid, pidfd: fd, .. } = k;
    drop(fd);
    killed_by_autokill(pid, &obs, &echo)
}

fn m_ak_last_close(ctx: &mut Ctx) -> Check {
    ak_last_close(ctx, true)
}

fn m_ak_last_close_root(ctx: &mut Ctx) -> Check {
    ak_last_close(ctx, false)
}

fn m_ak_pidfd_open(ctx: &mut Ctx) -> Check {
    let (k, echo) = autokill_echo(ctx, true)?;
    drop(observe(k.pid)?);
    if !echo.alive()? {
        return fail("closing a pidfd_open() pidfd killed the autokill child");
    }
    let obs = observe(k.pid)?;
    let Kid { pid, pidfd: fd, .. } = k;
    drop(fd);
    killed_by_autokill(pid, &obs, &echo)
}

fn m_ak_dup(ctx: &mut Ctx) -> Check {
    let (k, echo) = autokill_echo(ctx, true)?;
    let obs = observe(k.pid)?;
    let Kid { pid, pidfd: fd, .. } = k;
    let copy = fd.try_clone().or_else(|e| broken(format!("dup: {e}")))?;
    drop(fd);
    if !echo.alive()? {
        return fail(
            "closing the clone3 pidfd killed the autokill child while a dup() of it was open",
        );
    }
    drop(copy);
    killed_by_autokill(pid, &obs, &echo)
}

fn m_ak_fork(ctx: &mut Ctx) -> Check {
    let (k, echo) = autokill_echo(ctx, true)?;
    let obs = observe(k.pid)?;
    // A plain job inherits the clone3 pidfd (the same struct file) and
    // holds it until released.
    let mut holder = ctx.spawn_live(Subject::Plain, 0)?;
    let Kid { pid, pidfd: fd, .. } = k;
    drop(fd);
    if !echo.alive()? {
        let _ = holder.signal(sig::SIGKILL);
        let _ = holder.reap();
        return fail(
            "closing the clone3 pidfd killed the autokill child while a forked process held it",
        );
    }
    holder.release();
    expect_exit(holder.reap()?, 0)?;
    killed_by_autokill(pid, &obs, &echo)
}

/// The creator exits without closing the pidfd: exit closes it, the child
/// is killed (before or after reparenting) and left as no zombie anywhere.
fn m_ak_creator_exit(ctx: &mut Ctx) -> Check {
    let (prog, echo) = echo_program();
    let (pid_r, pid_w) = pipe();
    let (go_r, go_w) = pipe();
    let middle = ctx.spawn_job(Subject::Plain, move || {
        let g = clone3(
            &Clone3Request::new(AR | CLONE_PIDFD_AUTOKILL | CLONE_NNP, 0),
            prog,
        )
        .map_err(|e| format!("clone3: {e}"))?;
        util::send_pid(&pid_w, g.pid);
        let mut b = [0u8; 1];
        let _ = io::read(&go_r, &mut b);
        // Exit holding the pidfd.
        std::mem::forget(g);
        Ok(())
    })?;
    let gpid = util::recv_pid(&pid_r).or_else(broken)?;
    let obs = observe(gpid)?;
    if !echo.alive()? {
        let _ = io::write(&go_w, b"g");
        let _ = middle.finish();
        return broken("the autokill child died while its creator held the pidfd");
    }
    io::write(&go_w, b"g").or_else(|e| broken(format!("go: {e}")))?;
    middle.finish()?;
    killed_by_autokill(gpid, &obs, &echo)
}

// ---------------------------------------------------------------------------
// Validation: every combination of the three bits with CLONE_PIDFD, an exit
// signal or none, as a process, a thread or a sibling, from three callers.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// the case process's own privileges
    AsIs,
    /// a process that dropped every capability (capset)
    NoCaps,
    /// a process made with CLONE_AUTOREAP
    AutoreapCaller,
}

impl Who {
    fn id(self) -> &'static str {
        match self {
            Who::AsIs => "as_is",
            Who::NoCaps => "no_caps",
            Who::AutoreapCaller => "autoreap_caller",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Process,
    /// CLONE_THREAD | CLONE_SIGHAND | CLONE_VM
    Thread,
    /// CLONE_PARENT
    Sibling,
}

fn combo_id(bits: u64, pidfd: bool) -> String {
    let mut v = Vec::new();
    if pidfd {
        v.push("pidfd");
    }
    for (b, n) in [
        (CLONE_AUTOREAP, "autoreap"),
        (CLONE_NNP, "nnp"),
        (CLONE_PIDFD_AUTOKILL, "autokill"),
    ] {
        if bits & b != 0 {
            v.push(n);
        }
    }
    v.join("_")
}

fn validation_cases() -> Vec<Case> {
    let mut out = Vec::new();
    let bits = [CLONE_AUTOREAP, CLONE_NNP, CLONE_PIDFD_AUTOKILL];
    for who in [Who::AsIs, Who::NoCaps, Who::AutoreapCaller] {
        for mask in 1u32..8 {
            let b: u64 = bits
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, b)| *b)
                .sum();
            for pidfd in [true, false] {
                for sigchld in [false, true] {
                    for shape in [Shape::Process, Shape::Thread, Shape::Sibling] {
                        let mut flags = b | if pidfd { CLONE_PIDFD } else { 0 };
                        flags |= match shape {
                            Shape::Process => 0,
                            Shape::Thread => CLONE_THREAD | CLONE_SIGHAND | CLONE_VM,
                            Shape::Sibling => CLONE_PARENT,
                        };
                        let es = if sigchld { sig::SIGCHLD as u64 } else { 0 };
                        // A sibling made from a plain caller is the parent's
                        // business (clone3.rs), not one of these rules'.
                        let sibling_made = shape == Shape::Sibling
                            && who != Who::AutoreapCaller
                            && b & (CLONE_AUTOREAP | CLONE_PIDFD_AUTOKILL) == 0
                            && !sigchld;
                        if sibling_made {
                            continue;
                        }
                        let name = format!(
                            "mainline::clone3::{}::{}::{}::{}",
                            who.id(),
                            combo_id(b, pidfd),
                            if sigchld { "sigchld" } else { "sig0" },
                            match shape {
                                Shape::Process => "process",
                                Shape::Thread => "thread",
                                Shape::Sibling => "sibling",
                            }
                        );
                        let src = if shape == Shape::Sibling {
                            PARENT_RULE
                        } else {
                            VALIDATION
                        };
                        out.push(Case::new(name, Source::Model(src), move |ctx| {
                            validate(ctx, flags, es, who)
                        }));
                    }
                }
            }
        }
    }
    out
}

fn drop_all_caps() -> Result<(), String> {
    thread::drop_all_capabilities().map_err(|e| format!("capset(0): {e}"))
}

/// Ask the model, make the call from the chosen caller (a job, so that an
/// unexpected sibling is the case process's child and is caught), compare.
fn validate(ctx: &mut Ctx, flags: u64, exit_signal: u64, who: Who) -> Check {
    let caller = Caller {
        root: who != Who::NoCaps && thread::is_root(),
        ns_init: false,
        ns_level: proc::pid_ns_level() as u64,
    };
    let task = CallerTask {
        autoreap: who == Who::AutoreapCaller,
        chrooted: false,
    };
    let desc = Clone3Desc::new(flags, exit_signal);
    let verdict = clone3_verdict_from(&desc, &ctx.features, &caller, &task);
    if let Verdict::Unknown(why) = &verdict {
        return Err(Stop::Skip(format!("model: {why}")));
    }
    let features = ctx.features.clone();
    let body = move || -> Result<(), String> {
        if who == Who::NoCaps {
            drop_all_caps()?;
        }
        let what = format!(
            "clone3(flags {flags:#x}, exit_signal {exit_signal}) from the {} caller",
            who.id()
        );
        let got = clone3(&Clone3Request::new(flags, exit_signal), Program::Exit(0));
        check_created(&what, &verdict, got, flags, &features)
    };
    match who {
        Who::AutoreapCaller => spawn_ar_job(ctx, 0, body)?.finish(),
        _ => ctx.spawn_job(Subject::Plain, body)?.finish(),
    }
}

fn check_created(
    what: &str,
    verdict: &Verdict,
    got: Result<crate::sys::clone::Spawned, Errno>,
    flags: u64,
    k: &KernelFeatures,
) -> Result<(), String> {
    match (verdict, got) {
        (Verdict::Fails(e), Err(g)) if *e == g => Ok(()),
        (want, Err(g)) => Err(format!("{what}: model says {want:?}, kernel said {g}")),
        (Verdict::Created, Ok(child)) => {
            // exit_signal may be 0: __WALL. An autoreap child leaves
            // nothing: the blocking wait ends with ECHILD once it is gone.
            let t = WaitTarget::pid(child.pid);
            let got = wait(WaitCall::WaitidPid, t, O(O::WEXITED | O::WALL));
            let want_ev = if autoreaped_on_exit(flags, k) {
                errno(Errno::ECHILD)
            } else {
                reported(child.pid, Event::Exited(0))
            };
            want(
                &format!(
                    "{what} created pid {}; waitid(P_PID, WEXITED|__WALL)",
                    child.pid
                ),
                got,
                want_ev,
            )?;
            if let Some(fd) = child.pidfd.as_ref() {
                // A kernel-reaped child's status is in pidfs.
                if autoreaped_on_exit(flags, k) {
                    ended_in_job(child.pid, fd, Event::Exited(0))?;
                }
            }
            Ok(())
        }
        (want, Ok(child)) => {
            let t = WaitTarget::pid(child.pid);
            let _ = wait(WaitCall::WaitidPid, t, O(O::WEXITED | O::WALL));
            Err(format!(
                "{what}: model says {want:?}, kernel created pid {}",
                child.pid
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn names(v: Vec<Case>) -> HashSet<String> {
        v.into_iter().map(|c| c.name).collect()
    }

    /// Every stem of the generic and focused tables has an autoreap row, and
    /// every autoreap row has a hidden sibling (same stem).
    #[test]
    fn comparison_stems_match() {
        let mut mine = names(cases());
        // The generic and focused autoreap rows come from the wait grid.
        for c in super::super::generic::cases()
            .into_iter()
            .chain(super::super::focused::cases())
        {
            if c.name.ends_with("::autoreap") {
                assert!(c.needs.contains(&Need::MinKernel(7, 1)), "{}", c.name);
                mine.insert(c.name);
            }
        }
        let mut theirs = HashSet::new();
        for v in [
            super::super::generic::cases(),
            super::super::focused::cases(),
            super::super::reparent::cases(),
            super::super::open::cases(),
        ] {
            theirs.extend(names(v));
        }
        for n in &theirs {
            if let Some(stem) = n.strip_suffix("::hidden") {
                if stem.starts_with("generic::") || stem.starts_with("focused::") {
                    assert!(
                        mine.contains(&format!("{stem}::autoreap")),
                        "no autoreap row for {stem}"
                    );
                }
            }
        }
        for n in &mine {
            if let Some(stem) = n.strip_suffix("::autoreap") {
                assert!(
                    theirs.contains(&format!("{stem}::hidden")),
                    "autoreap row {n} has no hidden sibling"
                );
            }
        }
    }

    #[test]
    fn every_row_needs_71() {
        for c in cases() {
            assert!(c.needs.contains(&Need::MinKernel(7, 1)), "{}", c.name);
        }
    }

    #[test]
    fn names_are_unique() {
        let v = cases();
        let n = v.len();
        assert_eq!(names(v).len(), n);
    }

    #[test]
    fn validation_rows_have_model_answers_on_72() {
        let k = KernelFeatures::new((7, 2), None);
        for who in [Who::AsIs, Who::NoCaps, Who::AutoreapCaller] {
            let caller = Caller {
                root: who == Who::AsIs,
                ns_init: false,
                ns_level: 0,
            };
            let task = CallerTask {
                autoreap: who == Who::AutoreapCaller,
                chrooted: false,
            };
            for f in [
                CLONE_AUTOREAP,
                CLONE_NNP | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM,
                CLONE_PIDFD_AUTOKILL | CLONE_PIDFD | CLONE_AUTOREAP,
            ] {
                let v = clone3_verdict_from(&Clone3Desc::new(f, 0), &k, &caller, &task);
                assert!(!matches!(v, Verdict::Unknown(_)), "{f:#x}: {v:?}");
            }
        }
    }
}
