//! Generic waits: every call that waits on "any child" or "any child of a
//! group". The rows are data (spec/grid.rs): a small tree, a script, and the
//! variant of the subject child; what each call must answer comes from the
//! model.

use super::grid::{
    self, call, call_as, call_in_thread, call_other_group, peek, waitid_twin, Group, KidSpec,
    Situation, Start, Step, Variant,
};
use crate::harness::*;
use crate::sys::wait::{Event::Exited, WaitCall, WaitOpts as O};

const SEED: &str = "If CLONE_WAIT_PID is set the newly created process will not be considered by process wait \
                    requests that wait generically on children (wait4(-1), waitpid(-1), waitid(P_ALL), waitid(P_PGID), \
                    waitpid(-pgid), wait4(-pgid))";
const WNOTHREAD: &str = "wait(2): children of other threads in the same thread group are waited for too, unless \
                         __WNOTHREAD; the seed: not considered by generic wait requests, whichever thread makes them";

const NOHANG: u32 = O::WEXITED | O::WNOHANG;
const BLOCK: u32 = O::WEXITED;
const PEEK: u32 = O::WEXITED | O::WNOHANG | O::WNOWAIT;

/// A WNOWAIT peek that can see hiding: waitid takes WNOWAIT itself; wait4
/// and waitpid reject it (EINVAL), so their rows peek with the waitid call
/// of the same selection first, then make their own call twice.
fn wnowait_steps(c: WaitCall, group: Group) -> Vec<Step> {
    let own = |opts| {
        if group == Group::Other {
            call_other_group(opts)
        } else {
            call(opts)
        }
    };
    if c.is_waitid() {
        vec![own(PEEK), own(PEEK), own(NOHANG)]
    } else {
        vec![
            call_as(waitid_twin(c), PEEK, group),
            own(O::WNOWAIT),
            own(NOHANG),
        ]
    }
}

/// The rows: id, the kids, whether the subject's hiding must show, the
/// script (for the call under test and the subject's variant), and
/// `needs_options` where the row needs a call that takes options.
pub fn situations() -> Vec<Situation> {
    use Start::*;
    let s = KidSpec::subject;
    let p = KidSpec::sibling;
    grid::situations! {
        "lone_exited_nohang", [s(Exited(3))], Shows, |_, _| vec![call(NOHANG)], needs_options;
        "lone_exited_block", [s(Exited(3))], Shows, |_, _| vec![call(BLOCK)];
        "lone_live_nohang", [s(Live(3))], Shows, |_, _| vec![call(NOHANG)], needs_options;
        "lone_live_block", [s(Live(3))], Shows, |_, _| vec![Step::Release(0), call(BLOCK)];
        "sibling_exited_nohang", [s(Exited(3)), p(Exited(4))], Shows, |_, _| vec![call(NOHANG)], needs_options;
        "sibling_exited_block", [s(Exited(3)), p(Exited(4))], Shows, |_, _| vec![call(BLOCK)];
        "sibling_live_nohang", [s(Exited(3)), p(Live(4))], Shows, |_, _| vec![call(NOHANG)], needs_options;
        "sibling_live_block", [s(Exited(3)), p(Live(4))], Shows, |_, _| vec![Step::Release(1), call(BLOCK)];
        "sibling_reaped_nohang", [s(Exited(3)), p(Reaped(4))], Shows, |_, _| vec![call(NOHANG)], needs_options;
        "sibling_reaped_block", [s(Exited(3)), p(Reaped(4))], Shows, |_, _| vec![call(BLOCK)];
        // The subject in a process group of its own, a plain sibling in the
        // case's: P_PGID,other_pgid and P_PGID,0 select different children.
        "other_group_exited_nohang", [s(Exited(3)).in_other_group(), p(Exited(4))], Shows, |_, _| vec![call_other_group(NOHANG)], needs_options;
        "other_group_exited_block", [s(Exited(3)).in_other_group(), p(Exited(4))], Shows, |_, _| vec![call_other_group(BLOCK)];
        "other_group_wnowait", [s(Exited(3)).in_other_group(), p(Exited(4))], Shows, |c, _| wnowait_steps(c, Group::Other), needs_options;
        // WNOWAIT peeks, for every call (wait4/waitpid through their waitid twin).
        "lone_exited_wnowait", [s(Exited(3))], Shows, |c, _| wnowait_steps(c, Group::Own), needs_options;
        "sibling_exited_wnowait", [s(Exited(3)), p(Exited(4))], Shows, |c, _| wnowait_steps(c, Group::Own), needs_options;
        // A second thread blocks in the call; the subject exits first (the
        // call must keep blocking if it is hidden: the thread has not
        // returned, the subject is a zombie for a focused peek), then the
        // sibling (the call returns it).
        "blocked_in_thread_sibling_exits_later", [s(Live(3)), p(Live(4))], Shows, |_, _| {
            vec![
                Step::BlockInThread {
                    opts: BLOCK,
                    group: Group::Own,
                },
                Step::Release(0),
                Step::Settle(0),
                peek(0),
                Step::Release(1),
                Step::Settle(1),
            ]
        };
        // The hidden child alive next to a plain zombie; both alive.
        "subject_live_sibling_exited_nohang", [s(Live(3)), p(Exited(4))], Invisible, |_, _| vec![call(NOHANG)], needs_options;
        "subject_live_sibling_exited_block", [s(Live(3)), p(Exited(4))], Invisible, |_, _| vec![call(BLOCK)];
        "both_live_nohang", [s(Live(3)), p(Live(4))], Invisible, |_, _| vec![call(NOHANG)], needs_options;
        // The subject made by a second thread of the case process.
        "thread_child_exited_nohang", [s(Exited(3)).by_thread()], Shows, |_, _| vec![call(NOHANG)], needs_options;
        "thread_child_exited_block", [s(Exited(3)).by_thread()], Shows, |_, _| vec![call(BLOCK)];
        "thread_child_exited_nohang_in_thread", [s(Exited(3)).by_thread()], Shows, |_, _| vec![call_in_thread(NOHANG)], needs_options;
        // __WNOTHREAD from a thread that did not make the child: ECHILD,
        // hidden or not.
        "thread_child_wnothread", [s(Exited(3)).by_thread()], Invisible, |_, _| vec![call(NOHANG | O::WNOTHREAD)], needs_options;
        "thread_child_wnothread_in_thread", [s(Exited(3)).by_thread()], Shows, |_, _| vec![call_in_thread(NOHANG | O::WNOTHREAD)], needs_options;
    }
}

fn source(sit: &Situation, v: Variant) -> Source {
    match v {
        Variant::Autoreap if sit.id.starts_with("lone_live") => {
            Source::Man(super::mainline::WCLONE)
        }
        Variant::Autoreap if sit.id.starts_with("sibling") => {
            Source::Man(super::mainline::SELECTIVE)
        }
        Variant::Autoreap => Source::Man(super::mainline::AUTOREAP),
        _ if sit.id.starts_with("thread_child") => Source::Man(WNOTHREAD),
        _ => Source::Seed(SEED),
    }
}

pub fn cases() -> Vec<Case> {
    grid::cases("generic", &WaitCall::GENERIC, situations, source)
}

/// The exited hidden child is still there for a focused wait.
pub(crate) fn still_a_zombie(k: &Kid, code: i32) -> Check {
    expect(
        "afterwards, waitid(P_PIDFD, WEXITED|WNOHANG|WNOWAIT) on the hidden child",
        k.peek_exited(),
        reported(k.pid, Exited(code)),
    )
}

pub(crate) fn expect_exit(ev: crate::sys::wait::Event, code: i32) -> Check {
    if ev == Exited(code) {
        Ok(())
    } else {
        fail(format!("focused reap: want Exited({code}), got {ev:?}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_vacuous_rows() {
        let bad = super::grid::vacuity(&crate::sys::wait::WaitCall::GENERIC, super::situations);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
