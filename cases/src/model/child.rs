//! The child one clone3 call made, after it exited at once: whether the
//! waiter still has it to wait for, whether its generic waits see it, what
//! it notifies with, and what its exit signal does to the process that made
//! the call. The `clone3_flags` fuzz oracle asks this after
//! [`clone3_verdict`].
//!
//! The waiter W either makes the call itself ([`Route::Direct`]) or has a
//! plain child P make it ([`Route::ViaCaller`]), after which P exits: then
//! the child is W's either because P passed CLONE_PARENT (the child is
//! P's sibling) or because P died and W, a child subreaper, inherited it.
//! In both cases W is not the child's creator: its [`Lineage`] is
//! `reparented`, and [`hidden_from_waiter`] decides under the semantics.

use serde::{Deserialize, Serialize};

use crate::model::{
    autoreaped_on_exit, clone3_verdict, hidden_from_waiter, Caller, ChildState, ChildView,
    Clone3Desc, KernelFeatures, Lineage, Semantics, Verdict,
};
use crate::sys::clone::flags::{CLONE_NEWPID, CLONE_PARENT, CLONE_SIGHAND, CLONE_THREAD};
use crate::sys::wait::Event;

/// Who makes the clone3 call, as seen from the waiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// the waiter itself
    Direct,
    /// a plain child P of the waiter (with every catchable signal blocked),
    /// which exits once the child is a zombie (or at once, with
    /// CLONE_PARENT or CLONE_THREAD); the waiter is a child subreaper
    ViaCaller,
}

/// How P ends ([`Route::ViaCaller`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallerFate {
    Exited0,
    Killed9,
    Stopped,
}

/// What the model expects of one clone3 call and its child.
#[derive(Clone, Debug)]
pub struct ChildFate {
    pub verdict: Verdict,
    /// an exiting pid-namespace init shares the waiter's sighand
    /// (CLONE_NEWPID with CLONE_SIGHAND, called directly): SIGCHLD is left at
    /// SIG_IGN and, with exit_signal SIGCHLD, the child is reaped
    /// automatically (kernel/pid_namespace.c, zap_pid_ns_processes).
    pub sigchld_ignored: bool,
    /// the child never becomes a zombie: the SIG_IGN case above, or
    /// CLONE_AUTOREAP (7.1+, [`autoreaped_on_exit`])
    pub autoreap: bool,
    /// how P ends, when there is a P and the model has a rule for the call
    pub caller_fate: Option<CallerFate>,
}

/// With `Verdict::Unknown` the model has no rule for the call: nothing that
/// depends on a child being created is expected.
pub fn clone3_child(d: &Clone3Desc, k: &KernelFeatures, c: &Caller, route: Route) -> ChildFate {
    let verdict = clone3_verdict(d, k, c);
    let created = matches!(verdict, Verdict::Created);
    let unknown = matches!(verdict, Verdict::Unknown(_));
    let pidns_init_shares = d.flags & CLONE_NEWPID != 0 && d.flags & CLONE_SIGHAND != 0;
    let direct = route == Route::Direct;
    let sigchld_ignored = created && direct && pidns_init_shares;
    let autoreap = (sigchld_ignored && d.exit_signal == libc::SIGCHLD as u64)
        || (created && autoreaped_on_exit(d.flags, k));
    let caller_fate = match route {
        _ if unknown => None,
        Route::Direct => None,
        // P gets the child's exit signal only when it is the child's parent
        // (exit_notify); SIGKILL and SIGSTOP cannot be blocked.
        Route::ViaCaller if !created || d.flags & (CLONE_PARENT | CLONE_THREAD) != 0 => {
            Some(CallerFate::Exited0)
        }
        Route::ViaCaller if d.exit_signal == libc::SIGKILL as u64 => Some(CallerFate::Killed9),
        Route::ViaCaller if d.exit_signal == libc::SIGSTOP as u64 => Some(CallerFate::Stopped),
        Route::ViaCaller => Some(CallerFate::Exited0),
    };
    ChildFate {
        verdict,
        sigchld_ignored,
        autoreap,
        caller_fate,
    }
}

/// Whether the child was made with the CLONE_WAIT_PID bit (which the kernel
/// knows), and how the waiter came to have it.
pub fn lineage(d: &Clone3Desc, k: &KernelFeatures, route: Route) -> Lineage {
    Lineage {
        wait_pid_flag: k.wait_pid_bit.is_some_and(|b| d.flags & b != 0),
        // W and P are plain children of their makers.
        creator_marked: false,
        reparented: route == Route::ViaCaller,
    }
}

/// The child clone3 returned, and how it exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exited {
    pub pid: i32,
    /// its process group (the caller's)
    pub pgid: i32,
    pub code: u8,
}

/// The waiter's children right after the child exited: the child as a
/// zombie, unless it is a thread or is reaped by the kernel.
pub fn children_after_exit(
    d: &Clone3Desc,
    k: &KernelFeatures,
    fate: &ChildFate,
    route: Route,
    sem: Semantics,
    x: Exited,
) -> Vec<ChildView> {
    let Exited { pid, pgid, code } = x;
    if d.flags & CLONE_THREAD != 0 || fate.autoreap {
        return Vec::new();
    }
    // Through P the child is ours with SIGCHLD: with CLONE_PARENT it takes
    // P's exit_signal, reparented it is reset to SIGCHLD (kernel/exit.c,
    // reparent_leader).
    let sigchld = route == Route::ViaCaller || d.exit_signal == libc::SIGCHLD as u64;
    let hidden = hidden_from_waiter(sem, lineage(d, k, route));
    vec![ChildView {
        pid,
        pgid,
        hidden,
        sigchld,
        state: ChildState::Zombie(Event::Exited(code as i32)),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::clone::flags::CLONE_PIDFD;

    const BIT: u64 = 1 << 40;
    const ROOT: Caller = Caller {
        root: true,
        ns_init: false,
        ns_level: 0,
    };
    const X: Exited = Exited {
        pid: 42,
        pgid: 1,
        code: 7,
    };

    /// The old clone3_flags oracle marked every child made with the bit
    /// hidden, whoever made it. Under Design a CLONE_PARENT child (made by
    /// P, the waiter's child) or one reparented to the waiter is visible to
    /// the waiter, as `hidden_from_waiter` says; only the seed keeps it
    /// hidden.
    #[test]
    fn child_made_by_another_is_visible_by_design() {
        let k = KernelFeatures::new((6, 12), Some(BIT));
        for d in [
            Clone3Desc::new(CLONE_PIDFD | BIT | CLONE_PARENT, 0),
            Clone3Desc::new(CLONE_PIDFD | BIT, libc::SIGSTOP as u64),
        ] {
            let fate = clone3_child(&d, &k, &ROOT, Route::ViaCaller);
            assert_eq!(fate.verdict, Verdict::Created);
            let v = |sem| children_after_exit(&d, &k, &fate, Route::ViaCaller, sem, X);
            assert!(!v(Semantics::Design)[0].hidden, "{:#x}", d.flags);
            assert!(v(Semantics::Seed)[0].hidden, "{:#x}", d.flags);
            // What the old oracle said, for both: hidden. It contradicts the
            // model's own rule under Design.
            let old_hidden = k.wait_pid_bit.is_some_and(|b| d.flags & b != 0);
            assert_ne!(
                old_hidden,
                hidden_from_waiter(Semantics::Design, lineage(&d, &k, Route::ViaCaller))
            );
        }
        // Made by the waiter itself: hidden under both.
        let d = Clone3Desc::new(CLONE_PIDFD | BIT, libc::SIGCHLD as u64);
        let fate = clone3_child(&d, &k, &ROOT, Route::Direct);
        for sem in [Semantics::Design, Semantics::Seed] {
            assert!(children_after_exit(&d, &k, &fate, Route::Direct, sem, X)[0].hidden);
        }
        // Without the feature the bit hides nothing (and clone3 refuses it).
        let k = KernelFeatures::new((6, 12), None);
        assert!(!lineage(&d, &k, Route::Direct).wait_pid_flag);
    }

    #[test]
    fn caller_fate_follows_the_exit_signal() {
        let k = KernelFeatures::new((6, 12), None);
        let fate = |flags, sig: i32| {
            clone3_child(
                &Clone3Desc::new(flags, sig as u64),
                &k,
                &ROOT,
                Route::ViaCaller,
            )
            .caller_fate
        };
        assert_eq!(fate(0, libc::SIGKILL), Some(CallerFate::Killed9));
        assert_eq!(fate(0, libc::SIGSTOP), Some(CallerFate::Stopped));
        assert_eq!(fate(CLONE_PARENT, 0), Some(CallerFate::Exited0));
        // refused: nothing is sent
        assert_eq!(fate(CLONE_PARENT, libc::SIGKILL), Some(CallerFate::Exited0));
        assert_eq!(
            clone3_child(&Clone3Desc::new(0, 17), &k, &ROOT, Route::Direct).caller_fate,
            None
        );
    }
}
