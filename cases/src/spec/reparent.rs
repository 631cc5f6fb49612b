//! Reparenting: the parent of a hidden child exits, and the child goes to a
//! subreaper or to the init of a pid namespace; pid-namespace teardown with
//! a hidden child alive or already a zombie.

use std::os::fd::{AsFd, AsRawFd};

use super::open::expected_generic;
use super::util::{self, want};
use crate::harness::*;
use crate::model::Lineage;
use crate::sys::clone::{flags::*, pipe, Clone3Request, Program};
use crate::sys::signal as sig;
use crate::sys::wait::{wait, Event, WaitCall, WaitOpts as O, WaitTarget};
use crate::sys::{pidfd, proc};

const MANAGER: &str = "use case 1: a process manager 'needs to reap all children assigned to it' and 'might not \
                       know about processes that got re-parented to it'; a hidden orphan it cannot see with its \
                       generic wait would stay a zombie forever, so once reparented the child must be visible";
const TEARDOWN: &str = "when the init of a pid namespace exits, the kernel kills and reaps every process in it \
                        (zap_pid_ns_processes); init is reaped only once the namespace is empty. A hidden child, \
                        alive or a zombie, must not keep the namespace (and its exiting init) from going away";

pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for s in Subject::BOTH {
        let v = s.variant();
        out.push(
            Case::new(
                format!("reparent::subreaper::live_orphan_generic_wait::{v}"),
                Source::Design(MANAGER),
                move |ctx| orphan_to_subreaper(ctx, s, false),
            )
            .for_subject(s),
        );
        out.push(
            Case::new(
                format!("reparent::subreaper::zombie_orphan_generic_wait::{v}"),
                Source::Design(MANAGER),
                move |ctx| orphan_to_subreaper(ctx, s, true),
            )
            .for_subject(s),
        );
        out.push(
            Case::new(
                format!("reparent::pidns_init::orphan_generic_wait::{v}"),
                Source::Design(MANAGER),
                move |ctx| orphan_to_ns_init(ctx, s),
            )
            .for_subject(s)
            .need(Need::Root)
            .need(Need::Namespace("pid")),
        );
        out.push(
            Case::new(
                format!("reparent::pidns_teardown::zombie_child::{v}"),
                Source::Design(TEARDOWN),
                move |ctx| ns_teardown(ctx, s, true),
            )
            .for_subject(s)
            .need(Need::Root)
            .need(Need::Namespace("pid")),
        );
        out.push(
            Case::new(
                format!("reparent::pidns_teardown::live_child::{v}"),
                Source::Design(TEARDOWN),
                move |ctx| ns_teardown(ctx, s, false),
            )
            .for_subject(s)
            .need(Need::Root)
            .need(Need::Namespace("pid")),
        );
    }
    out.push(
        Case::new(
            "reparent::pidns_init::reboot_restart_reports_sighup",
            Source::Man(REBOOT),
            pidns_reboot,
        )
        .need(Need::Root)
        .need(Need::Namespace("pid")),
    );
    for s in Subject::BOTH {
        let v = s.variant();
        out.push(
            Case::new(
                format!("reparent::subreaper::orphan_gets_death_signal::{v}"),
                Source::Man(PDEATH),
                move |ctx| orphan_death_signal(ctx, s),
            )
            .for_subject(s),
        );
        out.push(
            Case::new(
                format!("reparent::subreaper::zombie_orphan_to_ignoring_reaper::{v}"),
                Source::Man(IGNORING_REAPER),
                move |ctx| zombie_orphan_to_ignoring_reaper(ctx, s),
            )
            .for_subject(s),
        );
    }
    out
}

const REBOOT: &str =
    "reboot(2): called from a pid namespace other than the initial one, a restart kills the \
                      namespace's init, and its parent's wait reports it killed by SIGHUP";
const PDEATH: &str =
    "prctl(2) PR_SET_PDEATHSIG: a child gets the signal when its parent exits, however it was \
                      made; its new parent (a subreaper) then reaps it";
const IGNORING_REAPER: &str = "wait(2): a process that ignores SIGCHLD gets no zombies; an orphan that is already a \
                               zombie when it is reparented to such a subreaper is released at once";

/// The init of a new pid namespace calls reboot(LINUX_REBOOT_CMD_RESTART); its parent's
/// focused reap reports what the model says (killed by SIGHUP).
fn pidns_reboot(ctx: &mut Ctx) -> Check {
    let init = ctx.spawn_with(
        Clone3Request::new(CLONE_PIDFD | CLONE_NEWPID, sig::SIGCHLD as u64),
        // Returns only on failure: the errno, offset, as the exit code.
        Program::Run(Box::new(|| 100 + crate::sys::process::reboot_restart().0)),
    )?;
    let ev = init.reap()?;
    let want = crate::model::pidns_reboot_event(true);
    if ev == want {
        Ok(())
    } else {
        fail(format!(
            "the pid-namespace init that called reboot(LINUX_REBOOT_CMD_RESTART): its parent's \
             focused reap gave {ev:?}, want {want:?} (an exit code above 100 is the errno + 100)"
        ))
    }
}

/// A plain middle process makes the subject child G, which sets PR_SET_PDEATHSIG(SIGKILL)
/// and blocks; once G says it is armed the middle exits. G is killed by the death signal and
/// reparented to the case process (a subreaper), whose focused reap reports it as the model
/// says.
fn orphan_death_signal(ctx: &mut Ctx, s: Subject) -> Check {
    let flags = ctx.flags_for(s);
    let (pid_r, pid_w) = pipe();
    // G blocks reading this; the write end stays open here, so only a signal ends it.
    let (hold_r, _hold_w) = pipe();
    let middle = ctx.spawn_job(Subject::Plain, move || {
        let (armed_r, armed_w) = pipe();
        let g = util::spawn(
            flags,
            Program::Run(Box::new(move || {
                if crate::sys::process::set_death_signal(sig::SIGKILL).is_err() {
                    return 2;
                }
                if !crate::sys::io::write_all(&armed_w, b"a") {
                    return 3;
                }
                let mut b = [0u8; 1];
                let _ = crate::sys::io::read_exact(&hold_r, &mut b);
                4
            })),
        )?;
        let mut b = [0u8; 1];
        if !crate::sys::io::read_exact(&armed_r, &mut b) {
            return Err("the child exited before arming its death signal".into());
        }
        util::send_pid(&pid_w, g.pid);
        // Exit with G alive: its death signal fires now.
        std::mem::forget(g);
        Ok(())
    })?;
    middle.finish()?;
    let gpid = util::recv_pid(&pid_r).or_else(broken)?;
    let g = Kid::adopt(gpid)?;
    g.await_exit()?;
    let ev = g.reap()?;
    let want = crate::model::death_signal_event(sig::SIGKILL);
    if ev == want {
        Ok(())
    } else {
        fail(format!(
            "the orphan with PR_SET_PDEATHSIG(SIGKILL), once its parent exited: the subreaper's \
             focused reap gave {ev:?}, want {want:?}"
        ))
    }
}

/// A plain job J becomes a subreaper; its child M makes the subject child G, which exits;
/// J then ignores SIGCHLD and M exits with G a zombie. G, reparented to J, is released at once
/// (the model): J's focused wait on it fails with ECHILD.
fn zombie_orphan_to_ignoring_reaper(ctx: &mut Ctx, s: Subject) -> Check {
    let flags = ctx.flags_for(s);
    let job = ctx.spawn_job(Subject::Plain, move || {
        crate::sys::process::become_subreaper()
            .map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {}", e.described()))?;
        let (pid_r, pid_w) = pipe();
        let (go_r, go_w) = pipe();
        let m = util::spawn(
            CLONE_PIDFD,
            Program::Run(Box::new(move || match util::spawn(flags, Program::Exit(5)) {
                Ok(g) => {
                    if let Some(fd) = g.pidfd.as_ref() {
                        let _ = util::await_exit(fd);
                    }
                    util::send_pid(&pid_w, g.pid);
                    let mut b = [0u8; 1];
                    let _ = crate::sys::io::read_exact(&go_r, &mut b);
                    // Exit with G unreaped.
                    std::mem::forget(g);
                    0
                }
                Err(_) => 1,
            })),
        )?;
        let gpid = util::recv_pid(&pid_r)?;
        let gfd = pidfd::open(gpid, false).map_err(|e| format!("pidfd_open({gpid}): {e}"))?;
        // Only now (M was made with the default disposition, so G is M's zombie until M
        // exits): J ignores SIGCHLD.
        sig::set_child_disposition(sig::ChildDisposition::Ignore)
            .map_err(|e| format!("sigaction(SIGCHLD, SIG_IGN): {}", e.described()))?;
        if !crate::sys::io::write_all(&go_w, b"g") {
            return Err("cannot let the middle process exit".into());
        }
        // M is auto-reaped (SIGCHLD ignored); its pidfd is readable once it has exited,
        // after forget_original_parent has reparented G.
        util::await_exit(util::fd_of(&m)?)?;
        std::mem::forget(m);
        let got = wait(
            WaitCall::WaitidPidfd,
            util::target(gpid, &gfd),
            O(O::WEXITED | O::WNOHANG),
        );
        let expected = if crate::model::reparented_zombie_released(true) {
            errno(crate::sys::Errno::ECHILD)
        } else {
            reported(gpid, Event::Exited(5))
        };
        want(
            "the SIGCHLD-ignoring subreaper's waitid(P_PIDFD, WEXITED|WNOHANG) on the reparented zombie",
            got,
            expected,
        )
    })?;
    job.finish()
}

/// The orphan's lineage in these rows: made by a plain middle process
/// (with CLONE_WAIT_PID when `hidden`), then reparented.
pub(crate) fn orphan_lineage(hidden: bool) -> Lineage {
    Lineage {
        wait_pid_flag: hidden,
        creator_marked: false,
        reparented: true,
    }
}

/// A plain middle process makes the subject child G and exits; G goes to
/// the case process (a subreaper), which must see it with waitid(P_ALL).
fn orphan_to_subreaper(ctx: &mut Ctx, s: Subject, zombie_first: bool) -> Check {
    let g = orphan_of_middle(
        ctx,
        Clone3Request::new(ctx.flags_for(s), sig::SIGCHLD as u64),
        zombie_first,
    )?;
    let gpid = g.pid;
    let want = expected_generic(orphan_lineage(s.hidden()), gpid, Event::Exited(5));
    let got = ctx.wait(WaitCall::WaitidAll, &g, O::WEXITED | O::WNOHANG);
    if got == want {
        return Ok(());
    }
    let _ = g.reap();
    fail(format!(
        "the subreaper's waitid(P_ALL, WEXITED|WNOHANG) after reparenting: want {want}, got {got}"
    ))
}

/// A plain middle process makes a child G with `req` (exiting with 5 at
/// once when `zombie_first`, else when released), then exits itself; G is
/// reparented to the case process (a subreaper). Returns G, adopted by
/// pidfd, after it has exited.
pub(crate) fn orphan_of_middle(
    ctx: &mut Ctx,
    req: Clone3Request,
    zombie_first: bool,
) -> Result<Kid, Stop> {
    let (pid_r, pid_w) = pipe();
    let (rel_r, rel_w) = pipe();
    let rel_fd = rel_r.as_raw_fd();
    let flags = req.args.flags;
    let middle = ctx.spawn_job(Subject::Plain, move || {
        let program = if zombie_first {
            Program::Exit(5)
        } else {
            Program::AwaitThenExit {
                fd: rel_fd,
                code: 5,
            }
        };
        let g = crate::sys::clone::clone3(&req, program)
            .map_err(|e| format!("clone3({flags:#x}): {e}"))?;
        if zombie_first {
            if let Some(fd) = g.pidfd.as_ref() {
                util::await_exit(fd)?;
            }
        }
        util::send_pid(&pid_w, g.pid);
        Ok(())
    })?;
    middle.finish()?;
    let gpid = util::recv_pid(&pid_r).or_else(broken)?;
    let mut g = Kid::adopt(gpid)?.with_release(rel_w);
    if proc::ppid(gpid) != Some(ctx.pid) {
        return broken(format!(
            "the orphan {gpid} was not reparented to the subreaper (ppid {:?})",
            proc::ppid(gpid)
        ));
    }
    g.release();
    g.await_exit()?;
    Ok(g)
}

/// The same with the init of a new pid namespace as the new parent.
fn orphan_to_ns_init(ctx: &mut Ctx, s: Subject) -> Check {
    let flags = ctx.flags_for(s);
    let lineage = orphan_lineage(s.hidden());
    let init = ctx.spawn_job_with(Clone3Request::new(CLONE_PIDFD | CLONE_NEWPID, sig::SIGCHLD as u64), move || {
        let (pid_r, pid_w) = pipe();
        let middle = util::spawn(
            CLONE_PIDFD,
            Program::Run(Box::new(move || match util::spawn(flags, Program::Exit(5)) {
                Ok(g) => {
                    let _ = g.pidfd.as_ref().map(util::await_exit);
                    util::send_pid(&pid_w, g.pid);
                    0
                }
                Err(_) => 1,
            })),
        )?;
        let mfd = util::fd_of(&middle)?;
        want("init reaps the middle process", util::reap(middle.pid, mfd), reported(middle.pid, Event::Exited(0)))?;
        let gpid = util::recv_pid(&pid_r)?;
        let gfd = pidfd::open(gpid, false).map_err(|e| format!("pidfd_open({gpid}): {e}"))?;
        let t = WaitTarget { pid: gpid, pidfd: Some(gfd.as_fd()), pgid: 0 };
        let got = wait(WaitCall::WaitidAll, t, O(O::WEXITED | O::WNOHANG));
        let want = expected_generic(lineage, gpid, Event::Exited(5));
        if got != want {
            // Reap it by pidfd so that this init can exit cleanly.
            let _ = util::reap(gpid, &gfd);
            return Err(format!("pid-namespace init's waitid(P_ALL, WEXITED|WNOHANG) after reparenting: want {want}, got {got}"));
        }
        Ok(())
    })?;
    init.finish()
}

/// The init of a new pid namespace makes the subject child and exits
/// without reaping it; the init must still become reapable.
fn ns_teardown(ctx: &mut Ctx, s: Subject, zombie: bool) -> Check {
    let flags = ctx.flags_for(s);
    // The live child blocks on this pipe; the write end stays open here
    // (and in the child's own copy), so only the namespace teardown ends it.
    let (hold_r, _hold_w) = pipe();
    let hold = hold_r.as_raw_fd();
    let init = ctx.spawn_job_with(
        Clone3Request::new(CLONE_PIDFD | CLONE_NEWPID, sig::SIGCHLD as u64),
        move || {
            let g = util::spawn(
                flags,
                if zombie {
                    Program::Exit(5)
                } else {
                    Program::AwaitThenExit { fd: hold, code: 5 }
                },
            )?;
            if zombie {
                util::await_exit(util::fd_of(&g)?)?;
                let peek = wait(
                    WaitCall::WaitidPidfd,
                    util::target(g.pid, util::fd_of(&g)?),
                    O(O::WEXITED | O::WNOHANG | O::WNOWAIT),
                );
                want(
                    "the child is a zombie before init exits",
                    peek,
                    reported(g.pid, Event::Exited(5)),
                )?;
            }
            // Exit with the child unreaped (its pidfd is closed by exit).
            std::mem::forget(g);
            Ok(())
        },
    )?;
    // Blocks until the namespace is gone. A kernel that cannot tear it down
    // leaves init stuck in exit: the row fails as soon as that is certain
    // (else the harness reports the timeout with where init is stuck).
    init.finish_with(|k| k.reap_unless_deadlocked(teardown_deadlock))
}

/// The exiting init `init` can never finish, a SIGKILL included: it sleeps
/// uninterruptibly (state I or D: no signal wakes it) in zap_pid_ns_processes
/// (wchan; its reaping loop sleeps in do_wait, so this is the loop after it,
/// which waits for the namespace's pids to be freed) while a child of its own
/// is a zombie. Only init could reap that child, and it is past its reaping
/// loop; the zombie's pid is never freed.
fn teardown_deadlock(init: i32) -> Option<String> {
    if !matches!(proc::state(init), Some('I' | 'D'))
        || proc::wchan(init)?.as_str() != "zap_pid_ns_processes"
    {
        return None;
    }
    let zombie = proc::children(init)
        .into_iter()
        .find(|&c| proc::state(c) == Some('Z'))?;
    Some(format!(
        "the namespace is never torn down: its exiting init (pid {init}) sleeps in \
         zap_pid_ns_processes, waiting for the namespace's pids to be freed, while its own child \
         pid {zombie} is a zombie that its reaping loop (kernel_wait4(-1, __WALL)) did not reap; \
         the parent's focused waitid(P_PIDFD) on init would block forever"
    ))
}
