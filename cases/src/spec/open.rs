//! The questions the seed leaves open, one row each: the hidden child's own
//! children and threads, execve, ptrace, SIGCHLD and auto-reaping, WNOWAIT,
//! stop/continue reports, __WALL/__WCLONE, pidfd readiness, legacy clone.
//! Where the seed is silent, each row asserts what its three use cases (a
//! PID-1 process manager, a library's helper processes, an event loop) need,
//! and says why.

use std::os::fd::{AsFd, OwnedFd};

use super::generic::{expect_exit, still_a_zombie};
use super::util::{self, want};
use crate::harness::*;
use crate::model::tree::hidden_from_tracer;
use crate::model::{hidden_from_waiter, Lineage, Semantics};
use crate::sys::clone::{clone3, clone_legacy, flags::*, Clone3Request, Program};
use crate::sys::process::ptrace;
use crate::sys::signal as sig;
use crate::sys::wait::{wait, Event, WaitCall, WaitOpts as O, WaitOutcome, WaitTarget};
use crate::sys::{pidfd, Errno};

const HELPER_CHILDREN: &str = "use case 2: a library's helper is an ordinary program; the flag describes its relation \
                               to the parent that holds its pidfd, so the helper's own children (made by any of its \
                               threads) must stay visible to the helper's generic waits";
const HELPER_EXEC: &str = "use case 2: helpers usually execve; the parent still holds the pidfd and must stay the only \
                           one to reap it, so the child stays hidden across execve (from any thread)";
const TRACER: &str = "a tracer (gdb, strace) collects its tracees' stops with waitpid(-1, __WALL); ptrace is a separate \
                      relation from parenthood, so hiding a child from its parent's generic waits must not hide it \
                      from a tracer";
const NOTIFY: &str =
    "use case 3: an event loop wakes on SIGCHLD or pidfd readiness; the child still asked for its \
                      exit signal, so the parent is notified as for any child";
const AUTOREAP: &str =
    "POSIX: with SIGCHLD ignored (or SA_NOCLDWAIT) children do not become zombies; nothing in the \
                        seed changes exit notification, so a hidden child is auto-reaped too";

const OUTSIDE_TRACER: &str = "ptrace(2), wait(2): a tracee's exit is reported to its tracer first; once a tracer that \
                              is not the parent has collected it, the real parent is notified and reaps it \
                              (wait_task_zombie's EXIT_TRACE path)";
const TRACER_EXITS: &str =
    "ptrace(2): when the tracer exits, its tracees are detached (exit_ptrace) and go on as \
                            their parents' ordinary children";
const PARENT_TRACER: &str =
    "ptrace(2): a parent may trace its own child; its focused waits then get the ptrace \
                             stops and the exit";
const TRACED_LEADER: &str = "ptrace(2), wait(2): a traced thread-group leader that has exited while another thread \
                             of its group runs is reported to no wait, its tracer's included, until the last \
                             thread has exited (kernel/exit.c wait_consider_task: delay_group_leader); then the \
                             group's exit is reported";
const RUSAGE: &str =
    "waitid(2) system call: the fifth argument, a struct rusage, is filled for the child \
                      reported, a WNOWAIT peek included, which leaves it a zombie";
const COREDUMP: &str =
    "core(5), wait(2): a child killed by SIGQUIT that dumps core is reported with CLD_DUMPED \
                        (WCOREDUMP), for a hidden child by its focused reap as for any other";
const PIDFD_ARG: &str = "kernel/exit.c kernel_waitid_prepare, kernel/pid.c pidfd_get_pid: waitid(P_PIDFD) with a \
                         negative fd fails with EINVAL, with an open fd that is not a pidfd with EBADF";

pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    type RowFn = fn(&mut Ctx, Subject) -> Check;
    let rows: &[(&str, Source, RowFn, &[Need])] = &[
        ("open::descendants::grandchild_generic_wait", Source::Design(HELPER_CHILDREN), grandchild_generic_wait, &[]),
        ("open::threads::thread_child_generic_wait", Source::Design(HELPER_CHILDREN), thread_child_generic_wait, &[]),
        ("open::threads::exit_group_from_thread", Source::Seed("focused waits still reap it"), exit_group_from_thread, &[]),
        ("open::execve::child_execs", Source::Design(HELPER_EXEC), child_execs, &[]),
        ("open::execve::non_leader_thread_execs", Source::Design(HELPER_EXEC), thread_execs, &[]),
        ("open::ptrace::tracer_generic_wall_wait", Source::Design(TRACER), tracer_generic, &[Need::Root]),
        ("open::ptrace::tracer_focused_wall_wait", Source::Seed("focused waits still see it"), tracer_focused, &[Need::Root]),
        ("open::ptrace::outside_tracer_collects_exit_first", Source::Man(OUTSIDE_TRACER), outside_tracer_exit, &[Need::Root]),
        ("open::ptrace::parent_traces_own_child", Source::Man(PARENT_TRACER), parent_tracer_exit, &[Need::Root]),
        ("open::ptrace::traced_leader_exits_before_thread", Source::Man(TRACED_LEADER), traced_leader_first, &[Need::Root]),
        ("open::ptrace::tracer_exits_attached", Source::Man(TRACER_EXITS), tracer_exits_attached, &[Need::Root]),
        ("open::coredump::focused_reap_reports_dumped", Source::Man(COREDUMP), core_dump, &[]),
        ("open::wnowait::focused_peek_with_rusage", Source::Man(RUSAGE), focused_peek_rusage, &[]),
        ("open::pidfd::waitid_not_a_pidfd", Source::Man(PIDFD_ARG), waitid_not_a_pidfd, &[Need::MinKernel(5, 4)]),
        ("open::sigchld::delivered_on_exit", Source::Design(NOTIFY), sigchld_delivered, &[]),
        ("open::sigchld::sig_ign_autoreap", Source::Design(AUTOREAP), sig_ign_autoreap, &[]),
        ("open::sigchld::sa_nocldwait_autoreap", Source::Design(AUTOREAP), nocldwait_autoreap, &[]),
        ("open::wnowait::generic_peek", Source::Seed("not considered by generic wait requests, WNOWAIT peeks included"), wnowait_generic_peek, &[]),
        ("open::stop::generic_wstopped", Source::Seed("not considered by generic wait requests, for any reported state"), generic_wstopped, &[]),
        ("open::stop::generic_wcontinued", Source::Seed("not considered by generic wait requests, for any reported state"), generic_wcontinued, &[]),
        ("open::wclone::exit_signal_zero_focused", Source::Man("wait(2): a child with exit signal 0 is a clone child, waited for only with __WCLONE or __WALL"), wclone_focused, &[]),
        ("open::wclone::exit_signal_zero_generic_wall", Source::Seed("__WALL widens which children, not which waits"), wclone_generic_wall, &[]),
        ("open::wclone::sigusr1_generic_wclone", Source::Seed("__WCLONE widens which children, not which waits"), wclone_generic_sigusr1, &[]),
        ("open::pidfd::poll_readable_on_exit", Source::Design(NOTIFY), pidfd_poll, &[]),
        ("open::pidfd::nonblock_eagain", Source::Man("pidfd_open(2) PIDFD_NONBLOCK: waitid(P_PIDFD) on a live child fails with EAGAIN"), pidfd_nonblock, &[Need::MinKernel(5, 10)]),
        ("open::legacy_clone::high_bit_ignored", Source::Man("clone(2) passes only the low 32 bits of flags (kernel_clone_args.flags = lower_32_bits): CLONE_WAIT_PID is clone3-only"), legacy_clone, &[]),
        ("open::vfork::vfork_vm_child", Source::Seed("not considered by generic wait requests"), vfork_child, &[]),
    ];
    for (id, source, f, needs) in rows {
        for s in Subject::BOTH {
            let f = *f;
            let mut c = Case::new(
                format!("{id}::{}", s.variant()),
                source.clone(),
                move |ctx| f(ctx, s),
            )
            .for_subject(s);
            for n in needs.iter() {
                c = c.need(*n);
            }
            out.push(c);
        }
    }
    out
}

/// The lineage of the case process's own child of this subject.
pub(crate) fn subject_lineage(s: Subject) -> Lineage {
    Lineage {
        wait_pid_flag: s.hidden(),
        creator_marked: false,
        reparented: false,
    }
}

/// Expected outcome of a generic call by the creator on a child of this
/// subject: hidden ones are not there (ECHILD), plain ones are reported.
pub(crate) fn generic_sees(s: Subject, pid: i32, ev: Event) -> WaitOutcome {
    expected_generic(subject_lineage(s), pid, ev)
}

/// What a generic wait by `lineage`'s waiter must answer, by the model's
/// design rule (`model::hidden_from_waiter`, the rule the fuzzers share).
pub(crate) fn expected_generic(lineage: Lineage, pid: i32, ev: Event) -> WaitOutcome {
    expected_generic_under(Semantics::Design, lineage, pid, ev)
}

/// The same under either semantics (the agreement test asks both).
pub(crate) fn expected_generic_under(
    sem: Semantics,
    lineage: Lineage,
    pid: i32,
    ev: Event,
) -> WaitOutcome {
    if hidden_from_waiter(sem, lineage) {
        errno(Errno::ECHILD)
    } else {
        reported(pid, ev)
    }
}

/// The lineage of the plain child a job makes (by any of its threads), the
/// job itself made with CLONE_WAIT_PID when `creator_marked`
/// (`open::descendants::*`, `open::threads::thread_child_generic_wait`).
pub(crate) fn own_child_lineage(creator_marked: bool) -> Lineage {
    Lineage {
        wait_pid_flag: false,
        creator_marked,
        reparented: false,
    }
}

/// What a tracer with no children of its own gets from `call(__WALL)` for
/// its tracee `pid` (of `tracee`'s lineage) in the attach stop, by the
/// model (`model::tree::hidden_from_tracer`): the stop, or ECHILD.
pub(crate) fn tracer_expects(
    sem: Semantics,
    tracee: Lineage,
    call: WaitCall,
    pid: i32,
) -> WaitOutcome {
    tracer_sees_under(sem, tracee, call, pid, Event::Stopped(sig::SIGSTOP))
}

fn grandchild_generic_wait(ctx: &mut Ctx, s: Subject) -> Check {
    let hidden = s.hidden();
    ctx.spawn_job(s, move || own_child_seen(hidden))?.finish()
}

/// Inside a job (itself made with CLONE_WAIT_PID when `creator_marked`): it
/// makes a plain child, which exits; the job's own `waitid(P_ALL)` must
/// answer as the model says (report it).
pub(crate) fn own_child_seen(creator_marked: bool) -> Result<(), String> {
    let lineage = own_child_lineage(creator_marked);
    let x = util::spawn(CLONE_PIDFD, Program::Exit(6))?;
    let fd = util::fd_of(&x)?;
    util::await_exit(fd)?;
    let got = wait(
        WaitCall::WaitidAll,
        util::target(x.pid, fd),
        O(O::WEXITED | O::WNOHANG),
    );
    if got != reported(x.pid, Event::Exited(6)) {
        let _ = util::reap(x.pid, fd);
    }
    want(
        "the child's own waitid(P_ALL) for its plain child",
        got,
        expected_generic(lineage, x.pid, Event::Exited(6)),
    )
}

fn thread_child_generic_wait(ctx: &mut Ctx, s: Subject) -> Check {
    let hidden = s.hidden();
    ctx.spawn_job(s, move || thread_child_seen(hidden))?
        .finish()
}

/// Inside a job (itself made with CLONE_WAIT_PID when `creator_marked`): a
/// second thread makes a plain child and ends; the main thread's
/// `waitpid(-1, WNOHANG)` must answer as the model says (report it).
pub(crate) fn thread_child_seen(creator_marked: bool) -> Result<(), String> {
    let lineage = own_child_lineage(creator_marked);
    let made =
        std::thread::spawn(|| util::spawn(CLONE_PIDFD, Program::Exit(6)).map(|x| (x.pid, x.pidfd)))
            .join()
            .map_err(|_| "thread panicked".to_string())??;
    let (pid, fd) = (made.0, made.1.ok_or("no pidfd")?);
    util::await_exit(&fd)?;
    let got = wait(WaitCall::WaitpidAny, util::target(pid, &fd), O(O::WNOHANG));
    if got != reported(pid, Event::Exited(6)) {
        let _ = util::reap(pid, &fd);
    }
    want(
        "waitpid(-1, WNOHANG) in the main thread for a child made by another thread",
        got,
        expected_generic(lineage, pid, Event::Exited(6)),
    )
}

fn exit_group_from_thread(ctx: &mut Ctx, s: Subject) -> Check {
    let k = ctx.spawn(
        s,
        Program::Run(Box::new(|| {
            std::thread::spawn(|| crate::sys::clone::exit_now(9, false));
            crate::sys::signal::pause_forever()
        })),
    )?;
    peek_then_reap(ctx, s, k, "", 9)
}

/// How the `open::threads`, `open::execve` and `open::vfork` rows end: once
/// the subject child `k` has exited, the generic peek `waitid(P_ALL,
/// WEXITED|WNOHANG|WNOWAIT)` (named after `after`) answers as the model
/// says, and the focused reap collects exit code `code`.
fn peek_then_reap(ctx: &mut Ctx, s: Subject, k: Kid, after: &str, code: i32) -> Check {
    k.await_exit()?;
    expect(
        &format!("{after}waitid(P_ALL, WEXITED|WNOHANG|WNOWAIT)"),
        ctx.wait(
            WaitCall::WaitidAll,
            &k,
            O::WEXITED | O::WNOHANG | O::WNOWAIT,
        ),
        generic_sees(s, k.pid, Event::Exited(code)),
    )?;
    expect_exit(k.reap()?, code)
}

fn child_execs(ctx: &mut Ctx, s: Subject) -> Check {
    let ex = util::ExecExit::new(33);
    let k = ctx.spawn(
        s,
        Program::Run(Box::new(move || {
            let _ = ex.exec();
            127
        })),
    )?;
    peek_then_reap(ctx, s, k, "after execve, ", 33)
}

fn thread_execs(ctx: &mut Ctx, s: Subject) -> Check {
    let ex = util::ExecExit::new(34);
    let k = ctx.spawn(
        s,
        Program::Run(Box::new(move || {
            std::thread::spawn(move || {
                let _ = ex.exec();
                crate::sys::clone::exit_now(127, false)
            });
            // de_thread ends this thread.
            crate::sys::signal::pause_forever()
        })),
    )?;
    peek_then_reap(ctx, s, k, "after a non-leader thread's execve, ", 34)
}

/// A plain tracer process attaches to the subject child and collects the
/// attach stop with a generic or a focused __WALL wait.
fn tracer(ctx: &mut Ctx, s: Subject, generic: bool) -> Check {
    let k = ctx.spawn_live(s, 8)?;
    let tracee = subject_lineage(s);
    let r = tracer_job_of(ctx, k.pid, generic, tracee)?.finish();
    expect_exit(k.reap()?, 8)?;
    r
}

/// [`tracer_job_of`] for a plain tracee.
pub(crate) fn tracer_job(ctx: &Ctx, tpid: i32, generic: bool) -> Result<Job, Stop> {
    tracer_job_of(ctx, tpid, generic, Lineage::default())
}

/// A plain job that PTRACE_ATTACHes to `tpid` (of `tracee`'s lineage),
/// collects the attach stop with `waitpid(-1, __WALL)` (generic) or
/// `waitpid(tpid, __WALL)`, and detaches; its verdict is whether the wait
/// answered as the model says ([`tracer_expects`], design).
pub(crate) fn tracer_job_of(
    ctx: &Ctx,
    tpid: i32,
    generic: bool,
    tracee: Lineage,
) -> Result<Job, Stop> {
    ctx.spawn_job(Subject::Plain, move || {
        ptrace::attach(tpid).map_err(|e| format!("PTRACE_ATTACH: {}", e.described()))?;
        let t = WaitTarget::pid(tpid);
        let call = if generic {
            WaitCall::WaitpidAny
        } else {
            WaitCall::WaitpidPid
        };
        let got = wait(call, t, O(O::WALL));
        let verdict = want(
            &call.spell(O(O::WALL)),
            got,
            tracer_expects(Semantics::Design, tracee, call, tpid),
        );
        if got != reported(tpid, Event::Stopped(sig::SIGSTOP)) {
            // Collect the stop with a focused wait so that we can detach.
            let _ = wait(WaitCall::WaitpidPid, t, O(O::WALL));
        }
        ptrace::detach(tpid).map_err(|e| format!("PTRACE_DETACH: {}", e.described()))?;
        verdict
    })
}

/// What a tracer's `call(__WALL)` for its tracee `pid` (of `tracee`'s lineage) gets when the
/// tracee has `ev` to report, by the model (`model::tree::hidden_from_tracer`).
pub(crate) fn tracer_sees(tracee: Lineage, call: WaitCall, pid: i32, ev: Event) -> WaitOutcome {
    tracer_sees_under(Semantics::Design, tracee, call, pid, ev)
}

/// The same under either semantics.
fn tracer_sees_under(
    sem: Semantics,
    tracee: Lineage,
    call: WaitCall,
    pid: i32,
    ev: Event,
) -> WaitOutcome {
    if hidden_from_tracer(sem, tracee, call) {
        errno(Errno::ECHILD)
    } else {
        reported(pid, ev)
    }
}

/// In a tracer job: PTRACE_ATTACH to `tpid`, collect the attach stop with a focused __WALL
/// wait (checked against the model), PTRACE_CONT. The tracee runs on, traced.
fn attach_and_resume(tpid: i32, tracee: Lineage) -> Result<(), String> {
    ptrace::attach(tpid).map_err(|e| format!("PTRACE_ATTACH: {}", e.described()))?;
    let call = WaitCall::WaitpidPid;
    want(
        "the tracer's waitpid(tracee, __WALL) for the attach stop",
        wait(call, WaitTarget::pid(tpid), O(O::WALL)),
        tracer_sees(tracee, call, tpid, Event::Stopped(sig::SIGSTOP)),
    )?;
    ptrace::cont(tpid).map_err(|e| format!("PTRACE_CONT: {}", e.described()))
}

/// A tracer that is not the parent (a plain sibling job) attaches to the subject child,
/// collects the attach stop and lets it run. The child exits: while the tracer has not
/// collected the exit, the real parent's (the case process's) focused WNOHANG wait finds
/// nothing, as the model says; then the tracer collects the exit with a focused __WALL wait,
/// and only then is the real parent notified: its generic peek answers as the model says,
/// and its focused reap gets the exit.
fn outside_tracer_exit(ctx: &mut Ctx, s: Subject) -> Check {
    let mut k = ctx.spawn_live(s, 9)?;
    let tpid = k.pid;
    let tracee = subject_lineage(s);
    let (attached_r, attached_w) = crate::sys::clone::pipe();
    let (collect_r, collect_w) = crate::sys::clone::pipe();
    let job = ctx.spawn_job(Subject::Plain, move || {
        attach_and_resume(tpid, tracee)?;
        if !crate::sys::io::write_all(&attached_w, b"a") {
            return Err("cannot tell the parent the tracer is attached".into());
        }
        let mut b = [0u8; 1];
        if !crate::sys::io::read_exact(&collect_r, &mut b) {
            return Err("the parent did not say when to collect the exit".into());
        }
        let call = WaitCall::WaitpidPid;
        want(
            "the tracer's waitpid(tracee, __WALL) for the tracee's exit",
            wait(call, WaitTarget::pid(tpid), O(O::WALL)),
            tracer_sees(tracee, call, tpid, Event::Exited(9)),
        )
    })?;
    let mut b = [0u8; 1];
    if !crate::sys::io::read_exact(&attached_r, &mut b) {
        // The job ended before attaching: its own verdict says why.
        job.finish()?;
        return broken("the tracer job exited without attaching or reporting why");
    }
    k.release();
    // The tracee's pidfd is readable once it is a zombie (exit_notify).
    k.await_exit()?;
    let first = if crate::model::traced_zombie_reported_to_parent() {
        reported(k.pid, Event::Exited(9))
    } else {
        WaitOutcome::NothingReady
    };
    let before = expect(
        "the parent's waitid(P_PIDFD, WEXITED|WNOHANG) while the tracer has not collected the exit",
        ctx.wait(WaitCall::WaitidPidfd, &k, O::WEXITED | O::WNOHANG),
        first,
    );
    if !crate::sys::io::write_all(&collect_w, b"c") {
        return broken("cannot tell the tracer to collect the exit");
    }
    job.finish()?;
    before?;
    generic_peek(ctx, &k, generic_sees(s, k.pid, Event::Exited(9)))?;
    expect_exit(k.reap()?, 9)
}

/// A tracer (a plain sibling job) attaches to the subject child, collects the attach stop,
/// lets it run and exits still attached: the kernel detaches the tracee (exit_ptrace), which
/// goes on as the parent's ordinary child: it exits when released, the parent's generic peek
/// answers as the model says, and its focused reap gets the exit.
fn tracer_exits_attached(ctx: &mut Ctx, s: Subject) -> Check {
    let mut k = ctx.spawn_live(s, 13)?;
    let tpid = k.pid;
    let tracee = subject_lineage(s);
    let job = ctx.spawn_job(Subject::Plain, move || {
        attach_and_resume(tpid, tracee)?;
        // Exit without PTRACE_DETACH.
        Ok(())
    })?;
    job.finish()?;
    k.release();
    k.await_exit()?;
    generic_peek(ctx, &k, generic_sees(s, k.pid, Event::Exited(13)))?;
    expect_exit(k.reap()?, 13)
}

/// The case process traces its own subject child: its focused __WALL wait gets the attach
/// stop, and after PTRACE_CONT its focused reap gets the exit.
fn parent_tracer_exit(ctx: &mut Ctx, s: Subject) -> Check {
    let mut k = ctx.spawn_live(s, 10)?;
    let tracee = subject_lineage(s);
    ptrace::attach(k.pid).or_else(|e| broken(format!("PTRACE_ATTACH: {}", e.described())))?;
    let call = WaitCall::WaitpidPid;
    expect(
        "the parent-tracer's waitpid(child, __WALL) for the attach stop",
        ctx.wait(call, &k, O::WALL),
        tracer_sees(tracee, call, k.pid, Event::Stopped(sig::SIGSTOP)),
    )?;
    ptrace::cont(k.pid).or_else(|e| broken(format!("PTRACE_CONT: {}", e.described())))?;
    k.release();
    k.await_exit()?;
    expect_exit(k.reap()?, 10)
}

/// The case process PTRACE_SEIZEs its own subject child, whose leader thread then exits
/// (exit(2)) while a second thread blocks on a pipe. Once the tracer's SIGCHLD for that exit
/// is pending the leader is a zombie: the parent-tracer's focused WNOHANG
/// wait answers as the model says for a leader with a live thread (nothing ready: the
/// wait looks at it through both the children and the ptraced lists, with ptrace set, and
/// passes it over). Released, the second thread calls exit_group(15), and the focused reap
/// gets the group's exit.
fn traced_leader_first(ctx: &mut Ctx, s: Subject) -> Check {
    use crate::sys::clone::{exit_now, pipe};
    let (go_r, go_w) = pipe();
    let (rel_r, rel_w) = pipe();
    let k = ctx.spawn(
        s,
        Program::Run(Box::new(move || {
            std::thread::spawn(move || {
                let mut b = [0u8; 1];
                let _ = crate::sys::io::read_exact(&rel_r, &mut b);
                exit_now(15, false)
            });
            let mut b = [0u8; 1];
            let _ = crate::sys::io::read_exact(&go_r, &mut b);
            exit_now(0, true)
        })),
    )?;
    // A traced task's exit is reported to its tracer at once, leader or not (exit_notify:
    // do_notify_parent with SIGCHLD once exit_state is EXIT_ZOMBIE): the SIGCHLD from the
    // child is the sign that its leader is a zombie. The case process makes no other child.
    sig::block(sig::SIGCHLD).or_else(|e| broken(format!("sigprocmask: {}", e.described())))?;
    ptrace::seize(k.pid).or_else(|e| broken(format!("PTRACE_SEIZE: {}", e.described())))?;
    if !crate::sys::io::write_all(&go_w, b"g") {
        return broken("cannot tell the child's leader thread to exit");
    }
    match sig::await_pending(sig::SIGCHLD) {
        Ok(p) if p.pid == k.pid => {}
        other => {
            return broken(format!(
                "awaiting the SIGCHLD of the leader's exit: {other:?}"
            ))
        }
    }
    let call = WaitCall::WaitidPidfd;
    let live = if !crate::model::considers(call, s.hidden()) {
        errno(Errno::ECHILD)
    } else if crate::model::leader_reported(1) {
        reported(k.pid, Event::Exited(0))
    } else {
        WaitOutcome::NothingReady
    };
    expect(
        "the parent-tracer's waitid(P_PIDFD, WEXITED|WNOHANG) once the leader has exited and \
         a thread of its group runs",
        ctx.wait(call, &k, O::WEXITED | O::WNOHANG),
        live,
    )?;
    if !crate::sys::io::write_all(&rel_w, b"r") {
        return broken("cannot release the child's second thread");
    }
    k.await_exit()?;
    // The last thread's exit_group sets SIGNAL_GROUP_EXIT: the group's status is its code.
    expect_exit(k.reap()?, 15)
}

/// The raw `waitid(P_PIDFD, WEXITED|WNOWAIT, &ru)` on the exited subject child reports it
/// (a focused wait, by the model) with its resource usage filled in, and leaves it a zombie.
fn focused_peek_rusage(ctx: &mut Ctx, s: Subject) -> Check {
    let k = ctx.spawn_exited(s, 11)?;
    let (got, usage) = crate::sys::wait::waitid_pidfd_usage(
        k.pidfd.as_fd(),
        O(O::WEXITED | O::WNOWAIT | O::WNOHANG),
    );
    let want = if crate::model::considers(WaitCall::WaitidPidfd, s.hidden()) {
        reported(k.pid, Event::Exited(11))
    } else {
        errno(Errno::ECHILD)
    };
    expect("waitid(P_PIDFD, WEXITED|WNOWAIT|WNOHANG, &ru)", got, want)?;
    if usage.maxrss_kib <= 0 {
        return fail(format!(
            "waitid(P_PIDFD, WNOWAIT, &ru) reported the child but left ru_maxrss at {}",
            usage.maxrss_kib
        ));
    }
    still_a_zombie(&k, 11)?;
    expect_exit(k.reap()?, 11)
}

/// The subject child execs `/bin/sh -c 'cd DIR && ulimit -c unlimited && kill -QUIT $$'` in
/// a fresh directory: the shell dumps core there, and the parent's focused reap reports it as
/// the model says (dumped by SIGQUIT). Skipped when core_pattern pipes to a helper or names a
/// path of its own (then the helper or that path decides whether a core is written).
fn core_dump(ctx: &mut Ctx, s: Subject) -> Check {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let pattern = pattern.trim();
    if pattern.is_empty() || pattern.starts_with('|') || pattern.contains('/') {
        return Err(Stop::Skip(format!(
            "core_pattern is {pattern:?}: only a plain file name in the dumping process's own \
             directory is predictable"
        )));
    }
    if !std::path::Path::new("/bin/sh").exists() {
        return Err(Stop::Skip("no /bin/sh".into()));
    }
    let dir = std::env::temp_dir().join(format!("wc-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).or_else(|e| broken(format!("{}: {e}", dir.display())))?;
    let script = format!(
        "cd '{}' && {{ ulimit -c unlimited || exit 99; }} && kill -QUIT $$",
        dir.display()
    );
    let c = |t: &str| std::ffi::CString::new(t).expect("no NUL");
    let (path, argv) = (c("/bin/sh"), vec![c("sh"), c("-c"), c(&script)]);
    let k = ctx.spawn(
        s,
        Program::Run(Box::new(move || {
            let _ = crate::sys::process::execv(&path, &argv);
            127
        })),
    )?;
    k.await_exit()?;
    let ev = k.reap();
    let _ = std::fs::remove_dir_all(&dir);
    let ev = ev?;
    if ev == Event::Exited(99) {
        return Err(Stop::Skip(
            "ulimit -c unlimited failed (a hard RLIMIT_CORE)".into(),
        ));
    }
    let want = crate::model::core_dump_event(sig::SIGQUIT);
    if ev == want {
        Ok(())
    } else {
        fail(format!(
            "the child killed by SIGQUIT with RLIMIT_CORE unlimited in a writable directory: its \
             focused reap gave {ev:?}, want {want:?}"
        ))
    }
}

/// `waitid(P_PIDFD)` given a pipe's fd, then no fd (-1), fails as the model says, and the
/// subject child is still there for its focused reap.
fn waitid_not_a_pidfd(ctx: &mut Ctx, s: Subject) -> Check {
    use crate::model::{pidfd_arg_error, PidfdArg};
    let k = ctx.spawn_exited(s, 12)?;
    let (r, w) = crate::sys::clone::pipe();
    let opts = O::WEXITED | O::WNOHANG;
    let want = |a| pidfd_arg_error(a).map_or(reported(k.pid, Event::Exited(12)), errno);
    expect(
        "waitid(P_PIDFD, a pipe's fd, WEXITED|WNOHANG)",
        ctx.wait_on(
            WaitCall::WaitidPidfd,
            WaitTarget::with_pidfd(k.pid, r.as_fd()),
            opts,
        ),
        want(PidfdArg::NotPidfd),
    )?;
    drop((r, w));
    // No fd: the target passes -1, which is never open.
    expect(
        "waitid(P_PIDFD, -1, WEXITED|WNOHANG)",
        ctx.wait_on(WaitCall::WaitidPidfd, WaitTarget::pid(k.pid), opts),
        want(PidfdArg::Negative),
    )?;
    still_a_zombie(&k, 12)?;
    expect_exit(k.reap()?, 12)
}

fn tracer_generic(ctx: &mut Ctx, s: Subject) -> Check {
    tracer(ctx, s, true)
}

fn tracer_focused(ctx: &mut Ctx, s: Subject) -> Check {
    tracer(ctx, s, false)
}

fn sigchld_delivered(ctx: &mut Ctx, s: Subject) -> Check {
    sig::block(sig::SIGCHLD).or_else(|e| broken(format!("sigprocmask: {}", e.described())))?;
    let k = ctx.spawn_exited(s, 3)?;
    let pid = k.pid;
    // Once the focused reap has succeeded, exit_notify has queued SIGCHLD.
    expect_exit(k.reap()?, 3)?;
    // Nothing pending (or the call failing) reads as signal -1 from pid 0,
    // what sigtimedwait's return value and a zeroed siginfo said.
    let (signo, from) = match sig::take_pending(sig::SIGCHLD) {
        Ok(Some(p)) => (p.signo, p.pid),
        Ok(None) | Err(_) => (-1, 0),
    };
    if signo == sig::SIGCHLD && from == pid {
        Ok(())
    } else {
        fail(format!("after the child's exit, want SIGCHLD from pid {pid} pending, got signal {signo} from pid {from}"))
    }
}

/// SIGCHLD's disposition for the `sigchld::*_autoreap` rows: SA_NOCLDWAIT
/// when `nocldwait`, else SIG_IGN.
pub(crate) fn ignore_children(nocldwait: bool) -> Check {
    let d = if nocldwait {
        sig::ChildDisposition::NoCldWait
    } else {
        sig::ChildDisposition::Ignore
    };
    sig::set_child_disposition(d).or_else(|e| broken(format!("sigaction: {}", e.described())))
}

/// The generic WNOWAIT peek `waitid(P_ALL, WEXITED|WNOWAIT|WNOHANG)` on
/// the exited child `k`, which must answer `want`.
pub(crate) fn generic_peek(ctx: &Ctx, k: &Kid, want: WaitOutcome) -> Check {
    expect(
        "waitid(P_ALL, WEXITED|WNOWAIT|WNOHANG)",
        ctx.wait(WaitCall::WaitidAll, k, O::WEXITED | O::WNOWAIT | O::WNOHANG),
        want,
    )
}

fn autoreap(ctx: &mut Ctx, s: Subject, nocldwait: bool) -> Check {
    ignore_children(nocldwait)?;
    let k = ctx.spawn_exited(s, 3)?;
    // Blocking focused wait: once the child is released it fails ECHILD.
    expect(
        "waitid(P_PIDFD, WEXITED) on an auto-reaped child",
        ctx.wait(WaitCall::WaitidPidfd, &k, O::WEXITED),
        errno(Errno::ECHILD),
    )
}

fn sig_ign_autoreap(ctx: &mut Ctx, s: Subject) -> Check {
    autoreap(ctx, s, false)
}

fn nocldwait_autoreap(ctx: &mut Ctx, s: Subject) -> Check {
    autoreap(ctx, s, true)
}

fn wnowait_generic_peek(ctx: &mut Ctx, s: Subject) -> Check {
    let k = ctx.spawn_exited(s, 3)?;
    generic_peek(ctx, &k, generic_sees(s, k.pid, Event::Exited(3)))?;
    still_a_zombie(&k, 3)?;
    expect_exit(k.reap()?, 3)
}

fn generic_wstopped(ctx: &mut Ctx, s: Subject) -> Check {
    let k = ctx.spawn_live(s, 3)?;
    k.signal(sig::SIGSTOP)?;
    // Wait (focused, without consuming) until the stop is reportable.
    expect(
        "waitid(P_PIDFD, WSTOPPED|WNOWAIT)",
        ctx.wait(WaitCall::WaitidPidfd, &k, O::WSTOPPED | O::WNOWAIT),
        reported(k.pid, Event::Stopped(sig::SIGSTOP)),
    )?;
    expect(
        "waitid(P_ALL, WSTOPPED|WNOHANG)",
        ctx.wait(WaitCall::WaitidAll, &k, O::WSTOPPED | O::WNOHANG),
        generic_sees(s, k.pid, Event::Stopped(sig::SIGSTOP)),
    )?;
    k.signal(sig::SIGKILL)?;
    match k.reap()? {
        Event::Killed(sig::SIGKILL) => Ok(()),
        other => fail(format!("focused reap after SIGKILL: {other:?}")),
    }
}

fn generic_wcontinued(ctx: &mut Ctx, s: Subject) -> Check {
    let k = ctx.spawn_live(s, 3)?;
    k.signal(sig::SIGSTOP)?;
    expect(
        "waitid(P_PIDFD, WSTOPPED)",
        ctx.wait(WaitCall::WaitidPidfd, &k, O::WSTOPPED),
        reported(k.pid, Event::Stopped(sig::SIGSTOP)),
    )?;
    k.signal(sig::SIGCONT)?;
    expect(
        "waitid(P_PIDFD, WCONTINUED|WNOWAIT)",
        ctx.wait(WaitCall::WaitidPidfd, &k, O::WCONTINUED | O::WNOWAIT),
        reported(k.pid, Event::Continued),
    )?;
    expect(
        "waitpid(-1, WCONTINUED|WNOHANG)",
        ctx.wait(WaitCall::WaitpidAny, &k, O::WCONTINUED | O::WNOHANG),
        generic_sees(s, k.pid, Event::Continued),
    )?;
    expect_exit(k.reap()?, 3)
}

fn spawn_signal(ctx: &Ctx, s: Subject, exit_signal: i32, code: i32) -> Result<Kid, Stop> {
    super::clone3::ignore_exit_signal(exit_signal as u64);
    let k = ctx.spawn_with(
        Clone3Request::new(ctx.flags_for(s), exit_signal as u64),
        Program::Exit(code),
    )?;
    k.await_exit()?;
    Ok(k)
}

fn wclone_focused(ctx: &mut Ctx, s: Subject) -> Check {
    let k = spawn_signal(ctx, s, 0, 3)?;
    let exited = reported(k.pid, Event::Exited(3));
    focused_wclone(ctx, &k, " on an exit_signal 0 child", exited)
}

/// `open::wclone::exit_signal_zero_focused` on the exited clone child `k`
/// (exit signal 0, or an autoreap child): `waitid(P_PIDFD, WEXITED)` (named
/// with `about`) fails ECHILD, and `waitid(P_PIDFD, WEXITED|__WCLONE)`
/// answers `with_wclone`.
pub(crate) fn focused_wclone(ctx: &Ctx, k: &Kid, about: &str, with_wclone: WaitOutcome) -> Check {
    expect(
        &format!("waitid(P_PIDFD, WEXITED){about}"),
        ctx.wait(WaitCall::WaitidPidfd, k, O::WEXITED),
        errno(Errno::ECHILD),
    )?;
    expect(
        "waitid(P_PIDFD, WEXITED|__WCLONE)",
        ctx.wait(WaitCall::WaitidPidfd, k, O::WEXITED | O::WCLONE),
        with_wclone,
    )
}

fn wclone_generic_wall(ctx: &mut Ctx, s: Subject) -> Check {
    let k = spawn_signal(ctx, s, 0, 3)?;
    expect(
        "waitid(P_ALL, WEXITED|__WALL|WNOHANG)",
        ctx.wait(WaitCall::WaitidAll, &k, O::WEXITED | O::WALL | O::WNOHANG),
        generic_sees(s, k.pid, Event::Exited(3)),
    )?;
    if s.hidden() {
        expect_exit(k.reap_with(O::WALL)?, 3)
    } else {
        Ok(())
    }
}

fn wclone_generic_sigusr1(ctx: &mut Ctx, s: Subject) -> Check {
    let k = spawn_signal(ctx, s, sig::SIGUSR1, 3)?;
    expect(
        "waitpid(-1, __WCLONE|WNOHANG)",
        ctx.wait(WaitCall::WaitpidAny, &k, O::WCLONE | O::WNOHANG),
        generic_sees(s, k.pid, Event::Exited(3)),
    )?;
    if s.hidden() {
        expect_exit(k.reap_with(O::WCLONE)?, 3)
    } else {
        Ok(())
    }
}

fn pidfd_poll(ctx: &mut Ctx, s: Subject) -> Check {
    let mut k = ctx.spawn_live(s, 3)?;
    if pidfd::has_exited(k.pidfd.as_fd()) {
        return fail("the pidfd of a live child polls readable");
    }
    k.release();
    match pidfd::poll_exit(k.pidfd.as_fd(), None) {
        Ok(true) => expect_exit(k.reap()?, 3),
        other => fail(format!("poll(pidfd) after exit: {other:?}")),
    }
}

/// A second pidfd of the live child `k`, opened PIDFD_NONBLOCK.
pub(crate) fn nonblocking_pidfd(k: &Kid) -> Result<OwnedFd, Stop> {
    pidfd::open(k.pid, true).or_else(|e| broken(format!("pidfd_open(PIDFD_NONBLOCK): {e}")))
}

/// `waitid(P_PIDFD, opts)` on `k` through its PIDFD_NONBLOCK pidfd `fd`.
pub(crate) fn wait_nonblocking(ctx: &Ctx, k: &Kid, fd: &OwnedFd, opts: u32) -> WaitOutcome {
    let t = WaitTarget::with_pidfd(k.pid, fd.as_fd()).in_group(ctx.pgid);
    ctx.wait_on(WaitCall::WaitidPidfd, t, opts)
}

fn pidfd_nonblock(ctx: &mut Ctx, s: Subject) -> Check {
    let k = ctx.spawn_live(s, 3)?;
    let fd = nonblocking_pidfd(&k)?;
    expect(
        "waitid(P_PIDFD nonblocking, WEXITED) on a live child",
        wait_nonblocking(ctx, &k, &fd, O::WEXITED),
        errno(Errno::EAGAIN),
    )?;
    expect_exit(k.reap()?, 3)
}

fn legacy_clone(ctx: &mut Ctx, s: Subject) -> Check {
    let high = if s.hidden() { ctx.bit() } else { 0 };
    legacy_clone_with(ctx, high, &format!("{high:#x}"), "")
}

/// clone(2) with SIGCHLD and the flag bits `high` (spelled `named`) makes
/// an ordinary child: the generic `waitid(P_ALL, WEXITED)` (named with
/// `about`) reports its exit.
pub(crate) fn legacy_clone_with(ctx: &Ctx, high: u64, named: &str, about: &str) -> Check {
    let child = clone_legacy(sig::SIGCHLD as u64 | high, Program::Exit(5))
        .or_else(|e| fail(format!("clone(SIGCHLD|{named}): {e}")))?;
    let t = WaitTarget::pid(child.pid).in_group(ctx.pgid);
    expect(
        &format!("waitid(P_ALL, WEXITED) after legacy clone{about}"),
        ctx.wait_on(WaitCall::WaitidAll, t, O::WEXITED),
        reported(child.pid, Event::Exited(5)),
    )
}

fn vfork_child(ctx: &mut Ctx, s: Subject) -> Check {
    // CLONE_VFORK: clone3 returns once the child has exited.
    let req = Clone3Request::new(
        ctx.flags_for(s) | CLONE_VM | CLONE_VFORK,
        sig::SIGCHLD as u64,
    );
    let k = match clone3(&req, Program::Exit(4)) {
        Ok(sp) => Kid::adopt_spawned(sp)?,
        Err(e) => return broken(format!("clone3(CLONE_VM|CLONE_VFORK): {e}")),
    };
    peek_then_reap(ctx, s, k, "", 4)
}
