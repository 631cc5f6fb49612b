//! Focused waits: each call that names one child reaps the hidden child with
//! the exact status or siginfo, as it does a plain one. The rows are data
//! (spec/grid.rs); what each call must answer comes from the model.

use super::grid::{self, call, call_as, call_in_thread, KidSpec, Situation, Start, Step, Variant};
use crate::harness::*;
use crate::sys::signal as sig;
use crate::sys::wait::{WaitCall, WaitOpts as O};

const SEED: &str =
    "A process created with CLONE_WAIT_PID can only be waited upon with a focussed wait call";
const SEED_CLOSED: &str = "This ensures that processes can be reaped even if all file descriptors referring to it are closed";
const GENERIC_PEEK: u32 = O::WEXITED | O::WNOHANG | O::WNOWAIT;

/// The step, and for the autoreap child (a clone child, exit_signal 0) the
/// same call with __WALL, which alone tells "never a zombie" from "not
/// considered".
fn with_wall(v: Variant, opts: u32) -> Vec<Step> {
    let mut s = vec![call(opts)];
    if v == Variant::Autoreap {
        s.push(call(opts | O::WALL));
    }
    s
}

fn wall_if_autoreap(v: Variant, opts: u32) -> u32 {
    if v == Variant::Autoreap {
        opts | O::WALL
    } else {
        opts
    }
}

/// The rows: id, the kids, whether the subject's hiding must show, the
/// script (for the call under test and the subject's variant).
pub fn situations() -> Vec<Situation> {
    use Start::*;
    let s = KidSpec::subject;
    fn killed(v: Variant, sig: i32) -> Vec<Step> {
        let mut st = vec![Step::Signal(0, sig), call(O::WEXITED)];
        if v == Variant::Autoreap {
            st.extend([Step::Settle(0), call(O::WEXITED | O::WALL)]);
        }
        st
    }
    grid::situations! {
        "exit_code", [s(Exited(7))], Invisible, |_, v| with_wall(v, O::WEXITED);
        "killed_sigkill", [s(Live(7))], Invisible, |_, v| killed(v, sig::SIGKILL);
        "killed_sigterm", [s(Live(7))], Invisible, |_, v| killed(v, sig::SIGTERM);
        "live_nohang", [s(Live(7))], Invisible, |_, v| with_wall(v, O::WEXITED | O::WNOHANG);
        "stop_continue_exit", [s(Live(7))], Invisible, |_, v| {
            let w = |o| wall_if_autoreap(v, o);
            let mut st = vec![Step::Signal(0, sig::SIGSTOP)];
            if v == Variant::Autoreap {
                st.push(call(O::WSTOPPED | O::WNOHANG));
            }
            st.extend([
                call(w(O::WSTOPPED)),
                Step::Signal(0, sig::SIGCONT),
                call(w(O::WCONTINUED)),
                Step::Release(0),
                call(w(O::WEXITED)),
            ]);
            st
        };
        // A generic waitid WNOWAIT peek first (it sees the plain child, not
        // the hidden one), then the call's own peeks (waitid) or its EINVAL
        // for WNOWAIT (wait4, waitpid), then the reap.
        "wnowait_peek", [s(Exited(7))], Shows, |c, v| {
            let mut st = vec![call_as(WaitCall::WaitidAll, GENERIC_PEEK, grid::Group::Own)];
            if c.is_waitid() {
                st.extend([call(O::WEXITED | O::WNOWAIT), call(O::WEXITED | O::WNOWAIT)]);
                if v == Variant::Autoreap {
                    st.push(call(O::WEXITED | O::WNOWAIT | O::WALL));
                }
            } else {
                st.push(call(O::WNOWAIT));
            }
            st.push(call(O::WEXITED));
            st
        };
        "reaped_then_echild", [s(Exited(7))], Invisible, |_, v| {
            let w = |o| wall_if_autoreap(v, o);
            vec![call(w(O::WEXITED)), call(w(O::WEXITED | O::WNOHANG))]
        };
        "pidfd_closed", [s(Exited(7))], Invisible, |_, v| {
            let mut st = vec![Step::DropPidfd(0)];
            st.extend(with_wall(v, O::WEXITED));
            st
        };
        // __WNOTHREAD: the child was made by this very thread.
        "wnothread_own_child", [s(Exited(7))], Invisible, |_, v| with_wall(v, O::WEXITED | O::WNOTHREAD);
        // The child made by a second thread of the case process: any thread
        // reaps it without __WNOTHREAD, only its creator with it.
        "thread_child_exit_code", [s(Exited(7)).by_thread()], Invisible, |_, v| with_wall(v, O::WEXITED);
        "thread_child_exit_code_in_thread", [s(Exited(7)).by_thread()], Invisible, |_, v| vec![call_in_thread(wall_if_autoreap(v, O::WEXITED))];
        "thread_child_wnothread", [s(Exited(7)).by_thread()], Invisible, |_, v| with_wall(v, O::WEXITED | O::WNOTHREAD);
        "thread_child_wnothread_in_thread", [s(Exited(7)).by_thread()], Invisible, |_, v| vec![call_in_thread(wall_if_autoreap(v, O::WEXITED | O::WNOTHREAD))];
    }
}

fn source(sit: &Situation, v: Variant) -> Source {
    match (sit.id, v) {
        ("live_nohang" | "stop_continue_exit", Variant::Autoreap) => Source::Man(super::mainline::WCLONE),
        (_, Variant::Autoreap) => Source::Man(super::mainline::AUTOREAP),
        ("pidfd_closed", _) => Source::Seed(SEED_CLOSED),
        ("exit_code" | "live_nohang" | "wnowait_peek", _) => Source::Seed(SEED),
        (id, _) if id.contains("wnothread") || id.starts_with("thread_child") => {
            Source::Man("wait(2) __WNOTHREAD: wait only for children of the calling thread; without it, for those of every thread of the group")
        }
        _ => Source::Man("wait(2)/waitid(2) report this state of the named child"),
    }
}

pub fn cases() -> Vec<Case> {
    grid::cases("focused", &WaitCall::FOCUSED, situations, source)
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_vacuous_rows() {
        let bad = super::grid::vacuity(&crate::sys::wait::WaitCall::FOCUSED, super::situations);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
