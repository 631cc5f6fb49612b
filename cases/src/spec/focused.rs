//! Focused waits: each call that names one child reaps the hidden child with
//! the exact status or siginfo, as it does a plain one.

use std::os::fd::AsRawFd;

use super::generic::expect_exit;
use crate::harness::*;
use crate::sys::wait::{Event, WaitCall, WaitOpts as O, WaitOutcome, WaitTarget};
use crate::sys::{pidfd, Errno};

const SEED: &str = "A process created with CLONE_WAIT_PID can only be waited upon with a focussed wait call";
const SEED_CLOSED: &str = "This ensures that processes can be reaped even if all file descriptors referring to it are closed";

/// The focused table's situations; the autoreap rows (mainline.rs) run the
/// same ones.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Situation {
    ExitCode,
    Killed(i32),
    LiveNohang,
    StopContinue,
    NowaitPeek,
    ReapedThenEchild,
    PidfdClosed,
    /// __WNOTHREAD: the child was made by this very thread
    Wnothread,
}

pub(crate) const ROWS: &[(Situation, &str)] = &[
    (Situation::ExitCode, "exit_code"),
    (Situation::Killed(libc::SIGKILL), "killed_sigkill"),
    (Situation::Killed(libc::SIGTERM), "killed_sigterm"),
    (Situation::LiveNohang, "live_nohang"),
    (Situation::StopContinue, "stop_continue_exit"),
    (Situation::NowaitPeek, "wnowait_peek"),
    (Situation::ReapedThenEchild, "reaped_then_echild"),
    (Situation::PidfdClosed, "pidfd_closed"),
    (Situation::Wnothread, "wnothread_own_child"),
];

pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for call in WaitCall::FOCUSED {
        for (situation, id) in ROWS {
            for s in Subject::BOTH {
                let name = format!("focused::{}::{}::{}", call.id(), id, s.variant());
                let source = match situation {
                    Situation::PidfdClosed => Source::Seed(SEED_CLOSED),
                    Situation::ExitCode | Situation::LiveNohang => Source::Seed(SEED),
                    Situation::Wnothread => Source::Man("wait(2) __WNOTHREAD: wait only for children of the calling thread"),
                    _ => Source::Man("wait(2)/waitid(2) report this state of the named child"),
                };
                let situation = *situation;
                out.push(Case::new(name, source, move |ctx| run(ctx, call, situation, s)).for_subject(s));
            }
        }
    }
    out
}

fn run(ctx: &mut Ctx, call: WaitCall, situation: Situation, s: Subject) -> Check {
    let waitid = call.is_waitid();
    let w = |ctx: &Ctx, k: &Kid, opts: u32, want: WaitOutcome| -> Check {
        expect(&call.spell(O(opts)), ctx.wait(call, k, opts), want)
    };
    match situation {
        Situation::ExitCode => {
            let k = ctx.spawn_exited(s, 7)?;
            w(ctx, &k, O::WEXITED, reported(k.pid, Event::Exited(7)))
        }
        Situation::Killed(sig) => {
            let k = ctx.spawn_live(s, 7)?;
            k.signal(sig)?;
            w(ctx, &k, O::WEXITED, reported(k.pid, Event::Killed(sig)))
        }
        Situation::LiveNohang => {
            let k = ctx.spawn_live(s, 7)?;
            w(ctx, &k, O::WEXITED | O::WNOHANG, WaitOutcome::NothingReady)?;
            expect_exit(k.reap()?, 7)
        }
        Situation::StopContinue => {
            let mut k = ctx.spawn_live(s, 7)?;
            k.signal(libc::SIGSTOP)?;
            w(ctx, &k, O::WSTOPPED, reported(k.pid, Event::Stopped(libc::SIGSTOP)))?;
            k.signal(libc::SIGCONT)?;
            w(ctx, &k, O::WCONTINUED, reported(k.pid, Event::Continued))?;
            k.release();
            w(ctx, &k, O::WEXITED, reported(k.pid, Event::Exited(7)))
        }
        Situation::NowaitPeek => {
            let k = ctx.spawn_exited(s, 7)?;
            if waitid {
                w(ctx, &k, O::WEXITED | O::WNOWAIT, reported(k.pid, Event::Exited(7)))?;
                w(ctx, &k, O::WEXITED | O::WNOWAIT, reported(k.pid, Event::Exited(7)))?;
                w(ctx, &k, O::WEXITED, reported(k.pid, Event::Exited(7)))
            } else {
                // wait4 and waitpid do not take WNOWAIT.
                w(ctx, &k, O::WNOWAIT, errno(Errno::EINVAL))?;
                expect_exit(k.reap()?, 7)
            }
        }
        Situation::ReapedThenEchild => {
            let k = ctx.spawn_exited(s, 7)?;
            w(ctx, &k, O::WEXITED, reported(k.pid, Event::Exited(7)))?;
            w(ctx, &k, O::WEXITED | O::WNOHANG, errno(Errno::ECHILD))
        }
        Situation::Wnothread => {
            let k = ctx.spawn_exited(s, 7)?;
            w(ctx, &k, O::WEXITED | O::WNOTHREAD, reported(k.pid, Event::Exited(7)))
        }
        Situation::PidfdClosed => {
            let k = ctx.spawn_exited(s, 7)?;
            let pid = k.pid;
            drop(k);
            if call == WaitCall::WaitidPidfd {
                // A new pidfd for the same zombie.
                let fd = pidfd::open(pid, false).or_else(|e| broken(format!("pidfd_open(zombie): {e}")))?;
                let t = WaitTarget { pid, pidfd: fd.as_raw_fd(), pgid: ctx.pgid };
                expect("pidfd_open(pid) then waitid(P_PIDFD, WEXITED)", ctx.wait_on(call, t, O::WEXITED), reported(pid, Event::Exited(7)))
            } else {
                let t = WaitTarget { pid, pidfd: -1, pgid: ctx.pgid };
                expect(&call.spell(O(O::WEXITED)), ctx.wait_on(call, t, O::WEXITED), reported(pid, Event::Exited(7)))
            }
        }
    }
}
