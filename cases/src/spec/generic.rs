//! Generic waits: every call that waits on "any child" or "any child of a
//! group", against a hidden child alone, beside a plain sibling, exited or
//! alive, with and without WNOHANG.

use crate::harness::*;
use crate::sys::wait::{Event::Exited, WaitCall, WaitOpts, WaitOutcome};
use crate::sys::Errno;

const SEED: &str = "If CLONE_WAIT_PID is set the newly created process will not be considered by process wait \
                    requests that wait generically on children (wait4(-1), waitpid(-1), waitid(P_ALL), waitid(P_PGID), \
                    waitpid(-pgid), wait4(-pgid))";

#[derive(Clone, Copy, Debug)]
enum Situation {
    /// the subject has exited, it is the only child
    LoneExited,
    /// the subject is alive (blocked on a pipe), the only child
    LoneLive,
    /// the subject has exited, a plain sibling has exited too
    SiblingExited,
    /// the subject has exited, a plain sibling is alive
    SiblingLive,
    /// the subject has exited, its plain sibling was already reaped
    SiblingReaped,
}

/// One row: a situation, blocking or not, and the rationale.
struct Row {
    situation: Situation,
    id: &'static str,
    nohang: bool,
    says: &'static str,
}

const ROWS: &[Row] = &[
    Row { situation: Situation::LoneExited, id: "lone_exited_nohang", nohang: true,
          says: "hidden: ECHILD, the zombie stays for a focused wait; plain: reported" },
    Row { situation: Situation::LoneExited, id: "lone_exited_block", nohang: false,
          says: "hidden: ECHILD at once (no eligible child), the zombie stays; plain: reported" },
    Row { situation: Situation::LoneLive, id: "lone_live_nohang", nohang: true,
          says: "hidden: ECHILD (not 0: the live child is not eligible); plain: 0" },
    Row { situation: Situation::LoneLive, id: "lone_live_block", nohang: false,
          says: "hidden: ECHILD at once instead of blocking; plain: waits for it and reports it" },
    Row { situation: Situation::SiblingExited, id: "sibling_exited_nohang", nohang: true,
          says: "hidden: the plain sibling is reported, the hidden zombie stays; plain: either is reported" },
    Row { situation: Situation::SiblingExited, id: "sibling_exited_block", nohang: false,
          says: "hidden: the plain sibling is reported, the hidden zombie stays; plain: either is reported" },
    Row { situation: Situation::SiblingLive, id: "sibling_live_nohang", nohang: true,
          says: "hidden: 0, the hidden zombie is not ready for this call; plain: the exited child is reported" },
    Row { situation: Situation::SiblingLive, id: "sibling_live_block", nohang: false,
          says: "hidden: waits for the live sibling and reports it, never the hidden zombie; plain: either" },
    Row { situation: Situation::SiblingReaped, id: "sibling_reaped_nohang", nohang: true,
          says: "hidden: ECHILD once only the hidden zombie is left; plain: reported" },
    Row { situation: Situation::SiblingReaped, id: "sibling_reaped_block", nohang: false,
          says: "hidden: ECHILD once only the hidden zombie is left; plain: reported" },
];

pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for call in WaitCall::GENERIC {
        for row in ROWS {
            if row.nohang && !call.takes_options() {
                continue;
            }
            for s in Subject::BOTH {
                let name = format!("generic::{}::{}::{}", call.id(), row.id, s.variant());
                let (situation, nohang) = (row.situation, row.nohang);
                let source = Source::Seed(SEED);
                let _ = row.says;
                out.push(Case::new(name, source, move |ctx| run(ctx, call, situation, nohang, s)).for_subject(s));
            }
        }
    }
    out
}

fn run(ctx: &mut Ctx, call: WaitCall, situation: Situation, nohang: bool, s: Subject) -> Check {
    let opts = WaitOpts::WEXITED | if nohang { WaitOpts::WNOHANG } else { 0 };
    let spell = call.spell(WaitOpts(opts));
    let hidden = s.hidden();
    match situation {
        Situation::LoneExited => {
            let k = ctx.spawn_exited(s, 3)?;
            let got = ctx.wait(call, &k, opts);
            if hidden {
                expect(&spell, got, errno(Errno::ECHILD))?;
                still_a_zombie(&k, 3)?;
                expect_exit(k.reap()?, 3)
            } else {
                expect(&spell, got, reported(k.pid, Exited(3)))
            }
        }
        Situation::LoneLive => {
            let mut k = ctx.spawn_live(s, 3)?;
            if hidden {
                let got = ctx.wait(call, &k, opts);
                expect(&spell, got, errno(Errno::ECHILD))?;
                expect_exit(k.reap()?, 3)
            } else if nohang {
                let got = ctx.wait(call, &k, opts);
                expect(&spell, got, WaitOutcome::NothingReady)?;
                expect_exit(k.reap()?, 3)
            } else {
                k.release();
                let got = ctx.wait(call, &k, opts);
                expect(&spell, got, reported(k.pid, Exited(3)))
            }
        }
        Situation::SiblingExited => {
            let a = ctx.spawn_exited(s, 3)?;
            let b = ctx.spawn_exited(Subject::Plain, 4)?;
            let got = ctx.wait(call, &a, opts);
            if hidden {
                expect(&spell, got, reported(b.pid, Exited(4)))?;
                still_a_zombie(&a, 3)?;
                expect_exit(a.reap()?, 3)
            } else {
                reap_the_other(got, &spell, a, 3, b, 4)
            }
        }
        Situation::SiblingLive => {
            let a = ctx.spawn_exited(s, 3)?;
            let mut b = ctx.spawn_live(Subject::Plain, 4)?;
            if nohang {
                let got = ctx.wait(call, &a, opts);
                if hidden {
                    expect(&spell, got, WaitOutcome::NothingReady)?;
                    still_a_zombie(&a, 3)?;
                    expect_exit(b.reap()?, 4)?;
                    expect_exit(a.reap()?, 3)
                } else {
                    expect(&spell, got, reported(a.pid, Exited(3)))?;
                    expect_exit(b.reap()?, 4)
                }
            } else {
                b.release();
                let got = ctx.wait(call, &a, opts);
                if hidden {
                    expect(&spell, got, reported(b.pid, Exited(4)))?;
                    still_a_zombie(&a, 3)?;
                    expect_exit(a.reap()?, 3)
                } else {
                    reap_the_other(got, &spell, a, 3, b, 4)
                }
            }
        }
        Situation::SiblingReaped => {
            let a = ctx.spawn_exited(s, 3)?;
            let b = ctx.spawn_exited(Subject::Plain, 4)?;
            expect_exit(b.reap()?, 4)?;
            let got = ctx.wait(call, &a, opts);
            if hidden {
                expect(&spell, got, errno(Errno::ECHILD))?;
                expect_exit(a.reap()?, 3)
            } else {
                expect(&spell, got, reported(a.pid, Exited(3)))
            }
        }
    }
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
    if ev == Exited(code) { Ok(()) } else { fail(format!("focused reap: want Exited({code}), got {ev:?}")) }
}

/// Two plain children exited: the call reports one of them; reap the other.
fn reap_the_other(got: WaitOutcome, spell: &str, a: Kid, ca: i32, b: Kid, cb: i32) -> Check {
    if got == reported(a.pid, Exited(ca)) {
        expect_exit(b.reap()?, cb)
    } else if got == reported(b.pid, Exited(cb)) {
        expect_exit(a.reap()?, ca)
    } else {
        let (pa, pb) = (a.pid, b.pid);
        let _ = a.reap();
        let _ = b.reap();
        fail(format!("{spell}: want pid {pa} Exited({ca}) or pid {pb} Exited({cb}), got {got}"))
    }
}
